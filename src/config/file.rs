//! The raw shape of `portcullis.toml`, exactly as written by the user.
//!
//! Every table refuses unknown keys (`deny_unknown_fields`): a misspelled key
//! must never silently switch a protection off. Values that need a position in
//! error messages are wrapped in [`Spanned`]. Nothing here is trusted yet:
//! [`super::Config::from_file`] turns it into a validated [`super::Config`].

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`: listeners, TLS, data directory, trusted proxies.
    pub server: ServerSection,
    /// `[limits]`: sizes and timeouts.
    pub limits: LimitsSection,
    /// `[headers]`: security headers added to every response.
    pub headers: HeadersSection,
    /// `[cors]`: the cross-origin allow-list (absent: no CORS headers at all).
    pub cors: Option<Spanned<CorsSection>>,
    /// `[store]`: where users, sessions and audit events live.
    pub store: StoreSection,
    /// `[log]`: access and audit log output.
    pub log: LogSection,
    /// `[tokens]`: the tokens Portcullis issues and accepts.
    pub tokens: TokensSection,
    /// `[login]`: passwords, login and registration.
    pub login: LoginSection,
    /// `[rate_limit]`: default limits and the counter store.
    pub rate_limit: RateLimitSection,
    /// `[[route]]`: the routes to upstreams.
    #[serde(rename = "route")]
    pub routes: Vec<Spanned<RouteSection>>,
    /// `[[openapi]]`: routes derived from OpenAPI specifications.
    pub openapi: Vec<Spanned<OpenApiSection>>,
    /// `[sessions]`: browser sessions and CSRF.
    pub sessions: SessionsSection,
    /// `[audit]`: the stored audit trail.
    pub audit: AuditSection,
    /// `[metrics]`: the Prometheus listener.
    pub metrics: MetricsSection,
    /// `[[alert]]`: thresholds on security events.
    #[serde(rename = "alert")]
    pub alerts: Vec<Spanned<AlertSection>>,
    /// `[tracing]`: OpenTelemetry traces.
    pub tracing: TracingSection,
}

/// `[sessions]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    /// Whether browser sessions exist (default true).
    pub enabled: Option<bool>,
    /// The cookie name; must start with `__Host-` (default `__Host-portcullis-session`).
    pub cookie: Option<Spanned<String>>,
    /// A session unused this long ends (default `30m`).
    pub idle_timeout: Option<Spanned<String>>,
    /// A session ends this long after login (default `12h`).
    pub absolute_timeout: Option<Spanned<String>>,
    /// `lax` (default) or `strict`.
    pub same_site: Option<Spanned<String>>,
    /// Origins allowed to send cookie-authenticated unsafe requests
    /// (default: the request's own `https://<Host>`).
    pub allowed_origins: Option<Vec<Spanned<String>>>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Events older than this are deleted (default `90d`; `"forever"` keeps them).
    pub retention: Option<Spanned<String>>,
    /// Largest disk spool while the store is down (default `64MiB`).
    pub spool_max: Option<Spanned<String>>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// A plain-HTTP listener serving only `/metrics` (default `"off"`).
    pub listen: Option<Spanned<String>>,
    /// Client networks allowed on that listener (default loopback only).
    pub allow: Option<Vec<Spanned<String>>>,
}

/// `[tracing]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// The OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces` (default `"off"`).
    pub otlp_endpoint: Option<Spanned<String>>,
    /// The share of new traces recorded, 0.0–1.0 (default 1.0).
    pub sample_ratio: Option<Spanned<f64>>,
    /// Continue a trace from the client's `traceparent` header (default false).
    pub accept_traceparent: Option<bool>,
    /// The `service.name` resource attribute (default `portcullis`).
    pub service_name: Option<Spanned<String>>,
}

/// `[[alert]]`: fires when `threshold` events match within `window`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// The rule's name.
    pub name: Spanned<String>,
    /// The event action (`login.failure`) or a prefix ending in `*`.
    pub event: Spanned<String>,
    /// Events that fire the rule.
    pub threshold: Spanned<i64>,
    /// The sliding window (`5m`).
    pub window: Spanned<String>,
    /// Count separately per `user`, `ip` or `route` (default: all together).
    pub group_by: Option<Spanned<String>>,
    /// Quiet time per group after firing (default: the window).
    pub cooldown: Option<Spanned<String>>,
    /// The http(s) URL to post to; `webhook_env` names an environment
    /// variable holding it instead (chat webhooks carry a secret).
    pub webhook: Option<Spanned<String>>,
    /// The environment variable holding the webhook URL.
    pub webhook_env: Option<Spanned<String>>,
}

/// `[[openapi]]`: one route per operation of an OpenAPI 3.0 or 3.1 spec,
/// with the operation's parameters, body and response schemas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSection {
    /// The spec file (`.yaml`, `.yml` or `.json`); local `$ref`s only.
    pub spec: Spanned<String>,
    /// Upstream base URL of every operation.
    pub upstream: Spanned<String>,
    /// Prepended to every path of the spec (`/api`).
    pub prefix: Option<Spanned<String>>,
    /// Auth mode of operations that set none (default `required`).
    pub auth: Option<Spanned<String>>,
    /// Only the spec's operations are served (default true); false adds a
    /// catch-all route under `prefix` without validation.
    pub strict: Option<bool>,
    /// `off` (default), `remove` or `refuse`: response filtering by the
    /// operations' 2xx JSON response schemas.
    pub response_filter: Option<Spanned<String>>,
    /// Allow object properties the schemas do not declare (default false).
    pub allow_unknown_properties: Option<bool>,
    /// Rate limits of operations that set none (default: `[rate_limit] default`).
    pub rate_limit: Option<Vec<Spanned<RateRuleSection>>>,
    /// Policy per operation, by `operationId` (overrides `x-portcullis`).
    #[serde(default)]
    pub operations: std::collections::BTreeMap<String, OperationPolicy>,
}

/// The policy of one operation: in `[openapi.operations.<operationId>]` or
/// in the spec as the operation's `x-portcullis` object.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperationPolicy {
    /// `none`, `optional` or `required`.
    pub auth: Option<String>,
    /// The caller needs one of these roles.
    pub roles: Option<Vec<String>>,
    /// The caller needs all of these scopes.
    pub scopes: Option<Vec<String>>,
    /// A CEL ownership rule.
    pub allow_if: Option<String>,
    /// Rate limits (`rate`, `burst`, `key`, `cost`, `count`).
    pub rate_limit: Option<Vec<OperationRateRule>>,
}

/// A rate limit written in a spec (no positions there).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationRateRule {
    /// `N/unit`.
    pub rate: String,
    /// Requests at once.
    pub burst: Option<i64>,
    /// Key parts.
    pub key: Option<String>,
    /// Cost per request.
    pub cost: Option<i64>,
    /// `all` or `failures`.
    pub count: Option<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// HTTPS listen address (default `127.0.0.1:8443`).
    pub https: Option<Spanned<String>>,
    /// HTTP listen address, or `"off"` (default `127.0.0.1:8080`).
    pub http: Option<Spanned<String>>,
    /// `true` when a TLS-terminating proxy sits in front of the HTTP listener:
    /// it then serves the gateway instead of redirecting, to trusted proxies only.
    pub http_behind_proxy: Option<bool>,
    /// The public base URL (redirect target, token issuer).
    pub public_url: Option<Spanned<String>>,
    /// Data directory (SQLite database, generated certificate).
    pub data_dir: Option<String>,
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` headers are
    /// believed (and whose `Forwarded` chain is kept when forwarding).
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Certificate and key files; absent means a self-signed certificate.
    pub tls: Option<TlsSection>,
}

/// `[server.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM file holding the certificate chain, leaf first.
    pub cert: Spanned<String>,
    /// PEM file holding the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Spanned<String>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest request body (`"1MiB"`).
    pub max_body: Option<Spanned<String>>,
    /// Largest total size of the request headers (`"16KiB"`).
    pub max_header_bytes: Option<Spanned<String>>,
    /// Most request headers.
    pub max_headers: Option<Spanned<i64>>,
    /// Longest request target (path and query).
    pub max_uri_length: Option<Spanned<String>>,
    /// Time allowed for a client to send its request headers.
    pub header_timeout: Option<Spanned<String>>,
    /// Time allowed for a client to send its request body.
    pub body_timeout: Option<Spanned<String>>,
    /// Time allowed for the upstream to answer with its headers.
    pub upstream_timeout: Option<Spanned<String>>,
    /// Time allowed for a whole request, from headers to response headers.
    pub request_timeout: Option<Spanned<String>>,
    /// Most concurrent client connections.
    pub max_connections: Option<Spanned<i64>>,
    /// Most requests in progress at once; more get 503 at once (load shedding).
    pub max_in_flight: Option<Spanned<i64>>,
}

/// `[headers]` (global) or `headers = { ... }` (per route): security headers.
///
/// Each value is the header value to send, or `"off"` to send none.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    /// `Strict-Transport-Security`.
    pub strict_transport_security: Option<Spanned<String>>,
    /// `Content-Security-Policy`.
    pub content_security_policy: Option<Spanned<String>>,
    /// `X-Content-Type-Options`.
    pub x_content_type_options: Option<Spanned<String>>,
    /// `X-Frame-Options`.
    pub x_frame_options: Option<Spanned<String>>,
    /// `Referrer-Policy`.
    pub referrer_policy: Option<Spanned<String>>,
    /// `Permissions-Policy`.
    pub permissions_policy: Option<Spanned<String>>,
    /// `Cross-Origin-Opener-Policy`.
    pub cross_origin_opener_policy: Option<Spanned<String>>,
    /// `Cross-Origin-Resource-Policy`.
    pub cross_origin_resource_policy: Option<Spanned<String>>,
    /// `Cache-Control` for responses to requests that carried credentials.
    pub credentialed_cache_control: Option<Spanned<String>>,
    /// Upstream response headers to remove (default `Server`, `X-Powered-By`,
    /// `X-AspNet-Version`, `X-AspNetMvc-Version`).
    pub remove: Option<Vec<Spanned<String>>>,
}

/// `[cors]` (global) or `cors = { ... }` (per route).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSection {
    /// Origins allowed to call the API from a browser (`"*"` for any, without credentials).
    pub allowed_origins: Vec<Spanned<String>>,
    /// Request headers a browser may send.
    pub allowed_headers: Option<Vec<String>>,
    /// Response headers a browser script may read (default `X-Request-Id`).
    pub exposed_headers: Option<Vec<String>>,
    /// Whether browsers may send cookies / authorization cross-origin.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Option<Spanned<String>>,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `sqlite://…` or `postgres://…` (password from `PORTCULLIS_STORE_PASSWORD`).
    pub url: Option<Spanned<String>>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `json` (default) or `text`.
    pub format: Option<Spanned<String>>,
    /// Default level filter (`info`), overridden by `PORTCULLIS_LOG`.
    pub level: Option<String>,
}

/// `[tokens]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensSection {
    /// `EdDSA` (default), `ES256`, `RS256` or `HS256`.
    pub algorithm: Option<Spanned<String>>,
    /// The `iss` of issued tokens (default: `server.public_url`).
    pub issuer: Option<Spanned<String>>,
    /// The `aud` of access tokens (default `portcullis`).
    pub audience: Option<Spanned<String>>,
    /// Access token lifetime (default `15m`).
    pub access_ttl: Option<Spanned<String>>,
    /// Refresh token lifetime (default `14d`).
    pub refresh_ttl: Option<Spanned<String>>,
    /// Clock leeway for `exp`/`nbf` (default `30s`).
    pub leeway: Option<Spanned<String>>,
    /// Largest bearer token accepted (default `8KiB`).
    pub max_token_size: Option<Spanned<String>>,
    /// Directory of signing keys (default `<data_dir>/keys`).
    pub keys_dir: Option<String>,
    /// `[[tokens.external]]`: other issuers whose tokens are accepted.
    pub external: Vec<Spanned<ExternalIssuerSection>>,
    /// `[[tokens.shared_secret]]`: HMAC issuers whose tokens are accepted.
    pub shared_secret: Vec<Spanned<SharedSecretIssuerSection>>,
}

/// One `[[tokens.external]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerSection {
    /// The issuer URL, exactly as in its tokens' `iss`.
    pub issuer: Spanned<String>,
    /// The `aud` its tokens must carry for this gateway.
    pub audience: Spanned<String>,
    /// Its JWKS (default `<issuer>/.well-known/jwks.json`).
    pub jwks_url: Option<Spanned<String>>,
    /// Dotted path of the roles claim (default `roles`).
    pub roles_claim: Option<String>,
    /// Accepted algorithms (default RS256, ES256, EdDSA).
    pub algorithms: Option<Spanned<Vec<String>>>,
}

/// `[[tokens.shared_secret]]`: HMAC-signed tokens of an existing
/// application (Flask-JWT-Extended, PyJWT), checked with its shared secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSecretIssuerSection {
    /// Name of the environment variable holding the secret (also `<NAME>_FILE`).
    pub secret_env: Spanned<String>,
    /// `HS256` (default), `HS384` or `HS512`: the only algorithm accepted.
    pub algorithm: Option<Spanned<String>>,
    /// The `iss` its tokens carry; absent: its tokens must carry none.
    pub issuer: Option<Spanned<String>>,
    /// The `aud` its tokens carry; absent: its tokens must carry none.
    pub audience: Option<Spanned<String>>,
    /// Dotted path of the roles claim (default `roles`; a string is one role).
    pub roles_claim: Option<String>,
}

/// `[rate_limit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// `"memory"` (default) or a Redis URL (`redis://host:6379/0`,
    /// `rediss://…` for TLS) without a password.
    pub store: Option<Spanned<String>>,
    /// When Redis does not answer: `local` (default), `allow` or `deny`.
    pub on_store_error: Option<Spanned<String>>,
    /// Longest wait for Redis per request (default `50ms`).
    pub store_timeout: Option<Spanned<String>>,
    /// Prefix of the Redis keys (default `portcullis:rl:`).
    pub key_prefix: Option<Spanned<String>>,
    /// Most tokens a serving thread reserves from Redis per key and round trip (default 0: none).
    pub lease: Option<Spanned<i64>>,
    /// Limits for routes that set none.
    pub default: Option<Vec<Spanned<RateRuleSection>>>,
    /// Most keys tracked in memory (default 100,000).
    pub max_keys: Option<Spanned<i64>>,
}

/// One limit: `{ rate = "30/minute", burst = 10, key = "user" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRuleSection {
    /// `N/second`, `N/minute`, `N/hour` or `N/day`.
    pub rate: Spanned<String>,
    /// Requests allowed at once (default: N).
    pub burst: Option<Spanned<i64>>,
    /// `ip` (default), `user`, `client`, `route`, `header:<name>`, or several joined by `+`.
    pub key: Option<Spanned<String>>,
    /// What one request costs (default 1).
    pub cost: Option<Spanned<i64>>,
    /// `all` (default) or `failures` (only answers with status 400 or above).
    pub count: Option<Spanned<String>>,
    /// Callers with any of these roles are not limited.
    pub exempt_roles: Option<Vec<String>>,
    /// Clients from these networks (`10.0.0.0/8`) are not limited.
    pub exempt_networks: Option<Vec<Spanned<String>>>,
}

/// `[login]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSection {
    /// Whether `POST /auth/register` is open (default `false`).
    pub allow_registration: Option<bool>,
    /// Shortest password (default 8).
    pub min_password_length: Option<Spanned<i64>>,
    /// Longest password (default 128).
    pub max_password_length: Option<Spanned<i64>>,
    /// Password hashes computed at once (default: 2 per core).
    pub max_concurrent_hashes: Option<Spanned<i64>>,
    /// Failed logins in a row before the account is locked (default 5).
    pub max_failures: Option<Spanned<i64>>,
    /// How long the first lock lasts (default `15m`; doubles with each
    /// further failure, at most 24 hours).
    pub lockout: Option<Spanned<String>>,
    /// Limits on `/auth/login`, `/auth/register` and `/oauth/token`
    /// (default 20 per minute per address, and 10 failures at once then 30
    /// an hour per address; `[]` for none).
    pub rate_limit: Option<Vec<Spanned<RateRuleSection>>>,
    /// When Redis does not answer, for those limits (default: `[rate_limit] on_store_error`).
    pub rate_limit_on_store_error: Option<Spanned<String>>,
}

/// `forward_identity = { ... }` of a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardIdentitySection {
    /// Send `X-User-Id`, `X-User-Name`, `X-User-Roles`, `X-User-Scopes`,
    /// `X-Client-Id` (default true).
    pub headers: Option<bool>,
    /// Send a signed identity JWT in `X-Identity-Token` (default false).
    pub token: Option<bool>,
    /// The `aud` of that JWT (default: the upstream's host:port).
    pub audience: Option<String>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Path pattern: `/orders/{id}`, `/static/{*rest}`.
    pub path: Spanned<String>,
    /// Allowed methods; others get 405.
    pub methods: Option<Spanned<Vec<String>>>,
    /// Upstream base URL (`http://127.0.0.1:5000`).
    pub upstream: Option<Spanned<String>>,
    /// `none`, `optional` or `required` (the default).
    pub auth: Option<Spanned<String>>,
    /// Per-route body limit.
    pub max_body: Option<Spanned<String>>,
    /// Per-route upstream timeout.
    pub upstream_timeout: Option<Spanned<String>>,
    /// Demand a password typed within this long (step-up), e.g. `"5m"`.
    pub fresh_within: Option<Spanned<String>>,
    /// The caller needs one of these roles.
    pub roles: Option<Spanned<Vec<String>>>,
    /// The caller needs all of these scopes.
    pub scopes: Option<Spanned<Vec<String>>>,
    /// A CEL ownership rule that must be true.
    pub allow_if: Option<Spanned<String>>,
    /// How the caller's identity reaches the upstream.
    pub forward_identity: Option<ForwardIdentitySection>,
    /// Pass the client's own `Authorization` header upstream (default false).
    pub forward_token: Option<bool>,
    /// Rate limits for this route (replace `[rate_limit] default`; `[]` for none).
    pub rate_limit: Option<Vec<Spanned<RateRuleSection>>>,
    /// When Redis does not answer, for this route (default: `[rate_limit] on_store_error`).
    pub rate_limit_on_store_error: Option<Spanned<String>>,
    /// Send the client's `Host` to the upstream instead of the upstream's own.
    #[serde(default)]
    pub preserve_host: bool,
    /// A leading path part to remove before forwarding (`/api`).
    pub strip_prefix: Option<Spanned<String>>,
    /// Security header overrides for this route.
    pub headers: Option<HeadersSection>,
    /// CORS settings for this route (replaces the global `[cors]`).
    pub cors: Option<Spanned<CorsSection>>,
    /// Input validation and response filtering for this route.
    pub validate: Option<Spanned<ValidateSection>>,
}

impl RouteSection {
    /// A route at `path` with every other key unset, for routes derived
    /// from an OpenAPI spec.
    pub fn derived(path: Spanned<String>) -> Self {
        Self {
            path,
            methods: None,
            upstream: None,
            auth: None,
            max_body: None,
            upstream_timeout: None,
            fresh_within: None,
            roles: None,
            scopes: None,
            allow_if: None,
            forward_identity: None,
            forward_token: None,
            rate_limit: None,
            rate_limit_on_store_error: None,
            preserve_host: false,
            strip_prefix: None,
            headers: None,
            cors: None,
            validate: None,
        }
    }
}

/// `validate = { ... }` of a route. Each schema is an inline table (TOML
/// written as JSON Schema) or the path of a `.json`, `.yaml` or `.yml` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateSection {
    /// Schema of the JSON body.
    pub body: Option<Spanned<toml::Value>>,
    /// Schema of the query parameters (an object schema).
    pub query: Option<Spanned<toml::Value>>,
    /// Schema of the path parameters (an object schema).
    pub path: Option<Spanned<toml::Value>>,
    /// Schema of selected request headers (an object schema, lower-case names).
    pub headers: Option<Spanned<toml::Value>>,
    /// Schema of 2xx JSON answers: undeclared properties are removed.
    pub response: Option<Spanned<toml::Value>>,
    /// `remove` (default) or `refuse` (502) answers with undeclared properties.
    pub response_mode: Option<Spanned<String>>,
    /// `2020-12` (default), `draft7` or `openapi-3.0`.
    pub dialect: Option<Spanned<String>>,
    /// Allow object properties a schema does not declare (default false).
    pub allow_unknown_properties: Option<bool>,
    /// POST, PUT and PATCH need a body when `body` is set (default true).
    pub body_required: Option<bool>,
    /// Accepted body media types (default `["application/json"]`).
    pub content_types: Option<Spanned<Vec<String>>>,
    /// Deepest nesting of a JSON body (default 32, at most 128).
    pub max_depth: Option<Spanned<i64>>,
    /// Longest string in a JSON body, in characters (default 65536).
    pub max_string_length: Option<Spanned<i64>>,
    /// Most items in one array of a JSON body (default 10000).
    pub max_array_length: Option<Spanned<i64>>,
    /// Most keys in one object of a JSON body (default 1000).
    pub max_object_keys: Option<Spanned<i64>>,
}
