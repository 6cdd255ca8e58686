//! Configuration: one TOML file, overridable from the environment, validated
//! into [`Config`] before anything listens.
//!
//! Loading runs in steps, each with its own module:
//! 1. [`env`] applies `PORTCULLIS_<SECTION>__<KEY>` overrides to the text;
//! 2. [`file`] deserializes the raw shape (unknown keys are errors);
//! 3. [`validate`](self) turns it into typed values, or a list of
//!    [`Diagnostic`]s with file, line and column;
//! 4. [`lint`] adds a warning for each protection turned off or risky
//!    setting, so `portcullis check` doubles as a security lint.
//!
//! Secrets are never in the file: see [`secrets`].
//!
//! ```
//! use portcullis::config::{Config, secrets::Environment};
//! let toml = r#"
//! [[route]]
//! path = "/items/{id}"
//! methods = ["GET"]
//! upstream = "http://127.0.0.1:5000"
//! auth = "none"
//! "#;
//! let config = Config::from_text("portcullis.toml", toml, &Environment::default()).unwrap();
//! assert_eq!(config.routes.len(), 1);
//! assert_eq!(config.limits.max_body, 1024 * 1024);
//! ```

pub mod diagnostic;
pub mod env;
pub mod file;
pub mod lint;
pub mod secrets;
pub mod units;
mod validate;

pub use validate::webhook_url;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http::Uri;
use http::uri::{Authority, Scheme};
use ipnet::IpNet;

use diagnostic::SourceMap;
pub use diagnostic::{Diagnostic, Severity};
use secrets::Environment;

use crate::gates::authz::Policy;
use crate::gates::cors::CorsPolicy;
use crate::gates::headers::HeaderPolicy;
use crate::gates::rate_limit::RateRule;
use crate::gates::rate_limit::store::OnStoreError;
use crate::gates::validate::ValidationPolicy;
use crate::identity::keys::SigningAlgorithm;
use crate::identity::password::PasswordPolicy;

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a file name, or `<default>`).
    pub source: String,
    /// Listeners, TLS, data directory, trusted proxies.
    pub server: ServerConfig,
    /// Sizes and timeouts.
    pub limits: Limits,
    /// The global security header policy.
    pub headers: Arc<HeaderPolicy>,
    /// The global CORS policy, if any.
    pub cors: Option<Arc<CorsPolicy>>,
    /// The store URL.
    pub store: StoreConfig,
    /// Log output.
    pub log: LogConfig,
    /// Issued and accepted tokens.
    pub tokens: TokensConfig,
    /// Passwords, login and registration.
    pub login: LoginConfig,
    /// Where rate-limit counters live.
    pub rate_limit: RateLimitConfig,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// The stored audit trail and alert rules.
    pub audit: AuditConfig,
    /// The Prometheus listener.
    pub metrics: MetricsConfig,
    /// Browser sessions and CSRF.
    pub sessions: crate::identity::sessions::SessionSettings,
    /// OpenTelemetry traces.
    pub tracing: TracingConfig,
    /// Warnings from the security lint.
    pub warnings: Vec<Diagnostic>,
    /// The `PORTCULLIS_*` overrides that were applied.
    pub overrides: Vec<String>,
}

/// `[audit]` and `[[alert]]`, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Stored events older than this are deleted (`None`: kept forever).
    pub retention: Option<Duration>,
    /// Largest disk spool, in bytes.
    pub spool_max_bytes: u64,
    /// The alert rules.
    pub alerts: Vec<AlertConfig>,
}

/// One `[[alert]]` rule, validated (the webhook may still name a variable).
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// Name.
    pub name: String,
    /// Event action or prefix ending in `*`.
    pub event: String,
    /// Events that fire it.
    pub threshold: usize,
    /// Sliding window.
    pub window: Duration,
    /// Quiet time after firing.
    pub cooldown: Duration,
    /// What is counted separately.
    pub group_by: crate::audit::alerts::GroupBy,
    /// Where to post.
    pub webhook: Option<Webhook>,
}

/// Where an alert posts.
#[derive(Debug, Clone)]
pub enum Webhook {
    /// A URL written in the file.
    Url(Uri),
    /// The name of an environment variable holding the URL.
    Env(String),
}

/// `[metrics]`, validated.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// The plain-HTTP listener for `/metrics`, if any.
    pub listen: Option<SocketAddr>,
    /// Client networks allowed on it.
    pub allow: Vec<IpNet>,
}

/// `[tracing]`, validated.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// Where spans are sent (OTLP over HTTP, protobuf); `None`: no traces.
    pub otlp_endpoint: Option<Uri>,
    /// The share of new traces recorded.
    pub sample_ratio: f64,
    /// Whether a client's `traceparent` continues its trace.
    pub accept_traceparent: bool,
    /// The `service.name` resource attribute.
    pub service_name: String,
}

/// `[rate_limit]`, validated.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// `None`: in memory; otherwise the Redis URL (no password in it).
    pub redis_url: Option<String>,
    /// The default failure policy.
    pub on_store_error: OnStoreError,
    /// Longest wait for Redis per request.
    pub store_timeout: Duration,
    /// Prefix of the Redis keys.
    pub key_prefix: String,
    /// Most tokens leased per key and round trip (0: every decision in Redis).
    pub lease: u32,
    /// Most keys tracked in memory (also by the fallback).
    pub max_keys: usize,
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HTTPS listen address.
    pub https: SocketAddr,
    /// HTTP listen address, if any.
    pub http: Option<SocketAddr>,
    /// The HTTP listener serves the gateway to trusted proxies (instead of redirecting).
    pub http_behind_proxy: bool,
    /// `https://host[:port]` used for redirects, if set.
    pub public_url: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Certificate files; `None` means self-signed.
    pub tls: Option<TlsFiles>,
}

/// Certificate chain and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[limits]`, validated.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body: u64,
    /// Largest total size of request headers in bytes.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Longest path and query in bytes.
    pub max_uri_length: usize,
    /// Time to receive the request headers.
    pub header_timeout: Duration,
    /// Time to receive a buffered request body.
    pub body_timeout: Duration,
    /// Time for the upstream to answer with headers.
    pub upstream_timeout: Duration,
    /// Time for a whole request, up to the response headers.
    pub request_timeout: Duration,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Most requests in progress at once (load shedding beyond).
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 1 << 20,
            max_header_bytes: 16 << 10,
            max_headers: 100,
            max_uri_length: 8 << 10,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_in_flight: 4096,
        }
    }
}

/// `[store]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `sqlite://…` or `postgres://…`, without a password.
    pub url: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Default level filter.
    pub level: String,
}

/// `[tokens]`, validated.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// Signing algorithm.
    pub algorithm: SigningAlgorithm,
    /// `iss` of issued tokens, expected in accepted ones.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Clock leeway.
    pub leeway: Duration,
    /// Largest token accepted, in bytes.
    pub max_token_size: usize,
    /// Directory of signing keys.
    pub keys_dir: PathBuf,
    /// Other issuers whose tokens are accepted.
    pub external: Vec<ExternalIssuerConfig>,
    /// Issuers of HMAC-signed tokens, checked with a shared secret.
    pub shared_secret: Vec<SharedSecretIssuerConfig>,
}

/// One `[[tokens.shared_secret]]`, validated (the secret itself is read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSecretIssuerConfig {
    /// The environment variable holding the secret.
    pub secret_env: String,
    /// The one accepted algorithm (HS256, HS384 or HS512).
    pub algorithm: jsonwebtoken::Algorithm,
    /// Required `iss`; `None`: tokens must carry no `iss`.
    pub issuer: Option<String>,
    /// Required `aud`; `None`: tokens must carry no `aud`.
    pub audience: Option<String>,
    /// Dotted path of the roles claim.
    pub roles_claim: String,
}

/// One `[[tokens.external]]`, validated.
#[derive(Debug, Clone)]
pub struct ExternalIssuerConfig {
    /// `iss` of its tokens.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Where its public keys are.
    pub jwks_url: http::Uri,
    /// Dotted path of the roles claim.
    pub roles_claim: String,
    /// Accepted algorithms.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
}

/// `[login]`, validated.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// Whether `POST /auth/register` is open.
    pub allow_registration: bool,
    /// Password length rules.
    pub policy: PasswordPolicy,
    /// Password hashes computed at once.
    pub max_concurrent_hashes: usize,
    /// Failed logins in a row before a lock.
    pub max_failures: u32,
    /// The first lock's length.
    pub lockout: Duration,
    /// Limits on the credential endpoints.
    pub rate_limit: Vec<RateRule>,
    /// When Redis does not answer, for those limits.
    pub rate_limit_on_store_error: OnStoreError,
}

/// Whether a route needs an authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may call.
    None,
    /// Credentials are checked when present; anonymous calls pass.
    Optional,
    /// Valid credentials are required (the default: deny by default).
    Required,
}

/// An upstream base URL, split for fast request building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// A base path prepended to forwarded paths (`""` or `/v1`).
    pub base_path: String,
}

/// How a route tells its upstream who the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardIdentity {
    /// Plain `X-User-*` headers.
    pub headers: bool,
    /// A signed identity JWT in `X-Identity-Token`, with this audience.
    pub token: Option<String>,
    /// Keep the client's own `Authorization` header.
    pub bearer: bool,
}

/// One `[[route]]`, validated.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The path pattern (`/orders/{id}`).
    pub pattern: String,
    /// Allowed methods (`HEAD` is allowed wherever `GET` is).
    pub methods: Vec<Method>,
    /// Where requests go.
    pub upstream: Upstream,
    /// Authentication requirement.
    pub auth: AuthMode,
    /// Body limit for this route.
    pub max_body: u64,
    /// Upstream timeout for this route.
    pub upstream_timeout: Duration,
    /// Require a password typed within this long, if set.
    pub fresh_within: Option<Duration>,
    /// Roles, scopes and ownership rule.
    pub policy: Arc<Policy>,
    /// How the caller's identity reaches the upstream.
    pub forward: ForwardIdentity,
    /// Rate limits.
    pub rate_limits: Vec<RateRule>,
    /// When Redis does not answer, for this route's limits.
    pub rate_limit_on_store_error: OnStoreError,
    /// Forward the client's `Host` header.
    pub preserve_host: bool,
    /// Prefix removed from the path before forwarding.
    pub strip_prefix: Option<String>,
    /// Security headers for this route.
    pub headers: Arc<HeaderPolicy>,
    /// CORS policy for this route.
    pub cors: Option<Arc<CorsPolicy>>,
    /// `file:line:column` of the route, for messages.
    pub location: String,
    /// Input validation and response filtering, if configured.
    pub validation: Option<Arc<ValidationPolicy>>,
}

impl RouteConfig {
    /// Whether `method` is allowed on this route.
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.contains(method) || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }
}

impl Config {
    /// The embedded default: HTTPS on 127.0.0.1:8443 with a self-signed
    /// certificate, HTTP on 127.0.0.1:8080 redirecting, SQLite in `./data`.
    pub fn embedded_default(env: &Environment) -> Result<Self, Vec<Diagnostic>> {
        Self::from_text("<default>", "", env)
    }

    /// Loads `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>, env: &Environment) -> Result<Self, Vec<Diagnostic>> {
        let Some(path) = path else {
            return Self::embedded_default(env);
        };
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Diagnostic {
                severity: Severity::Error,
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read the configuration file: {e}"),
            }]
        })?;
        Self::from_text(&name, &text, env)
    }

    /// Parses and validates configuration text.
    pub fn from_text(name: &str, text: &str, env: &Environment) -> Result<Self, Vec<Diagnostic>> {
        let (text, overrides) = env::apply_overrides(text, env)
            .map_err(|message| vec![SourceMap::new("<environment>", "").at(Severity::Error, None, message)])?;
        let label =
            if overrides.is_empty() { name.to_owned() } else { format!("{name} (with {})", overrides.join(", ")) };
        let map = SourceMap::new(label, &text);
        let raw: file::FileConfig = toml::from_str(&text)
            .map_err(|e| vec![map.at(Severity::Error, e.span().map(|s| s.start), e.message().trim_end().to_owned())])?;
        let mut config = validate::validate(raw, &map, name)?;
        config.overrides = overrides;
        Ok(config)
    }
}
