//! From the raw file shape to a typed [`Config`], collecting every error with
//! its position instead of stopping at the first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Method, Uri};
use ipnet::IpNet;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Severity, SourceMap};
use super::file::{CorsSection, FileConfig, HeadersSection, RouteSection};
use super::units::{parse_duration, parse_size};
use super::{
    AuthMode, Config, ExternalIssuerConfig, ForwardIdentity, Limits, LogConfig, LogFormat, LoginConfig, RouteConfig,
    ServerConfig, StoreConfig, TlsFiles, TokensConfig, Upstream, lint,
};
use crate::gates::authz::{Policy, Rule};
use crate::gates::cors::{AllowedOrigins, CorsPolicy};
use crate::gates::headers::{CREDENTIALED_CACHE_CONTROL, DEFAULT_REMOVED, HeaderPolicy, OFF, SECURITY_HEADERS};
use crate::gates::path::normalize;
use crate::gates::route::RouteTable;
use crate::identity::keys::SigningAlgorithm;
use crate::identity::password::PasswordPolicy;

/// Collects errors and warnings against one source text.
pub(super) struct Validator<'a> {
    pub(super) map: &'a SourceMap,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl Validator<'_> {
    pub(super) fn error<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        self.diagnostics.push(self.map.at(Severity::Error, Some(span.span().start), message));
    }

    pub(super) fn warn<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        self.diagnostics.push(self.map.at(Severity::Warning, Some(span.span().start), message));
    }

    pub(super) fn warn_nowhere(&mut self, message: impl Into<String>) {
        self.diagnostics.push(self.map.at(Severity::Warning, None, message));
    }

    fn error_nowhere(&mut self, message: impl Into<String>) {
        self.diagnostics.push(self.map.at(Severity::Error, None, message));
    }

    fn location<T>(&self, span: &Spanned<T>) -> String {
        let d = self.map.at(Severity::Error, Some(span.span().start), "");
        format!("{}:{}:{}", d.file, d.line, d.column)
    }

    fn duration(&mut self, value: Option<&Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.error(value, format!("`{key}` must be above 0"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(value, format!("`{key}`: {e}"));
                default
            }
        }
    }

    fn size(&mut self, value: Option<&Spanned<String>>, key: &str, default: u64) -> u64 {
        let Some(value) = value else { return default };
        match parse_size(value.get_ref()) {
            Ok(0) => {
                self.error(value, format!("`{key}` must be above 0"));
                default
            }
            Ok(n) => n,
            Err(e) => {
                self.error(value, format!("`{key}`: {e}"));
                default
            }
        }
    }

    fn count(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: usize,
    ) -> usize {
        let Some(value) = value else { return default };
        if range.contains(value.get_ref()) {
            usize::try_from(*value.get_ref()).unwrap_or(default)
        } else {
            self.error(value, format!("`{key}` must be between {} and {}", range.start(), range.end()));
            default
        }
    }

    fn addr(&mut self, value: Option<&Spanned<String>>, key: &str, default: &str) -> Option<SocketAddr> {
        let text = value.map_or(default, |v| v.get_ref().as_str());
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                if let Some(value) = value {
                    self.error(value, format!("`{key}` must be an address like \"127.0.0.1:8443\" or \"[::1]:8443\""));
                }
                None
            }
        }
    }
}

pub(super) fn validate(raw: FileConfig, map: &SourceMap, file_name: &str) -> Result<Config, Vec<Diagnostic>> {
    let mut v = Validator { map, diagnostics: Vec::new() };
    let server = validate_server(&mut v, &raw);
    let limits = validate_limits(&mut v, &raw);
    let global_headers = [&raw.headers];
    let headers = Arc::new(header_policy(&mut v, &global_headers));
    let cors = raw.cors.as_ref().map(|c| Arc::new(cors_policy(&mut v, c)));
    let store = validate_store(&mut v, &raw, &server);
    let log = validate_log(&mut v, &raw);
    let tokens = validate_tokens(&mut v, &raw, &server);
    let login = validate_login(&mut v, &raw);
    let mut routes = Vec::new();
    for route in &raw.routes {
        if let Some(route) = validate_route(&mut v, route, &raw, &limits, cors.as_ref()) {
            routes.push(route);
        }
    }
    if let Err((pattern, message)) = RouteTable::check(&routes) {
        match raw.routes.iter().rev().find(|r| *r.get_ref().path.get_ref() == pattern) {
            Some(route) => v.error(&route.get_ref().path, message),
            None => v.error_nowhere(message),
        }
    }
    lint::lint_file(&mut v, &raw, &server, &limits);
    let (errors, warnings): (Vec<_>, Vec<_>) = v.diagnostics.into_iter().partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        return Err(errors.into_iter().chain(warnings).collect());
    }
    Ok(Config {
        source: file_name.to_owned(),
        server,
        limits,
        headers,
        cors,
        store,
        log,
        tokens,
        login,
        routes,
        warnings,
        overrides: Vec::new(),
    })
}

fn validate_server(v: &mut Validator<'_>, raw: &FileConfig) -> ServerConfig {
    let s = &raw.server;
    let https = v
        .addr(s.https.as_ref(), "server.https", "127.0.0.1:8443")
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
    let http = match s.http.as_ref() {
        Some(value) if value.get_ref() == OFF => None,
        other => v.addr(other, "server.http", "127.0.0.1:8080"),
    };
    if let (Some(http), Some(value)) = (http, s.http.as_ref())
        && http == https
        && http.port() != 0
    {
        v.error(value, "`server.http` and `server.https` must listen on different addresses");
    }
    let public_url = s.public_url.as_ref().and_then(|value| match value.get_ref().parse::<Uri>() {
        Ok(uri)
            if uri.scheme() == Some(&Scheme::HTTPS)
                && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
                && matches!(uri.path(), "" | "/")
                && uri.query().is_none() =>
        {
            Some(format!("https://{}", uri.authority().map(Authority::as_str).unwrap_or_default()))
        }
        _ => {
            v.error(value, "`server.public_url` must be an https URL without path, like \"https://api.example.com\"");
            None
        }
    });
    let mut trusted_proxies = Vec::new();
    for entry in &s.trusted_proxies {
        let text = entry.get_ref();
        let parsed = text.parse::<IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => v.error(entry, format!("`{text}` is not an IP address or CIDR range")),
        }
    }
    let tls = s.tls.as_ref().map(|t| {
        for (value, key) in [(&t.cert, "cert"), (&t.key, "key")] {
            if !std::path::Path::new(value.get_ref()).is_file() {
                v.error(value, format!("`server.tls.{key}`: the file {} does not exist", value.get_ref()));
            }
        }
        TlsFiles { cert: PathBuf::from(t.cert.get_ref()), key: PathBuf::from(t.key.get_ref()) }
    });
    ServerConfig {
        https,
        http,
        http_behind_proxy: s.http_behind_proxy.unwrap_or(false),
        public_url,
        data_dir: PathBuf::from(s.data_dir.as_deref().unwrap_or("./data")),
        trusted_proxies,
        tls,
    }
}

fn validate_limits(v: &mut Validator<'_>, raw: &FileConfig) -> Limits {
    let l = &raw.limits;
    let d = Limits::default();
    let max_header_bytes = v.size(l.max_header_bytes.as_ref(), "limits.max_header_bytes", d.max_header_bytes as u64);
    let max_uri_length = v.size(l.max_uri_length.as_ref(), "limits.max_uri_length", d.max_uri_length as u64);
    for (value, key, n, max) in [
        (&l.max_header_bytes, "limits.max_header_bytes", max_header_bytes, 1u64 << 20),
        (&l.max_uri_length, "limits.max_uri_length", max_uri_length, 64 << 10),
    ] {
        if let Some(value) = value
            && n > max
        {
            v.error(value, format!("`{key}` may be at most {max} bytes"));
        }
    }
    Limits {
        max_body: v.size(l.max_body.as_ref(), "limits.max_body", d.max_body),
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(d.max_header_bytes),
        max_headers: v.count(l.max_headers.as_ref(), "limits.max_headers", 1..=1000, d.max_headers),
        max_uri_length: usize::try_from(max_uri_length).unwrap_or(d.max_uri_length),
        header_timeout: v.duration(l.header_timeout.as_ref(), "limits.header_timeout", d.header_timeout),
        body_timeout: v.duration(l.body_timeout.as_ref(), "limits.body_timeout", d.body_timeout),
        upstream_timeout: v.duration(l.upstream_timeout.as_ref(), "limits.upstream_timeout", d.upstream_timeout),
        request_timeout: v.duration(l.request_timeout.as_ref(), "limits.request_timeout", d.request_timeout),
        max_connections: v.count(
            l.max_connections.as_ref(),
            "limits.max_connections",
            1..=1_000_000,
            d.max_connections,
        ),
    }
}

/// A header section's value for a config key.
fn header_value<'a>(section: &'a HeadersSection, key: &str) -> Option<&'a Spanned<String>> {
    match key {
        "strict_transport_security" => section.strict_transport_security.as_ref(),
        "content_security_policy" => section.content_security_policy.as_ref(),
        "x_content_type_options" => section.x_content_type_options.as_ref(),
        "x_frame_options" => section.x_frame_options.as_ref(),
        "referrer_policy" => section.referrer_policy.as_ref(),
        "permissions_policy" => section.permissions_policy.as_ref(),
        "cross_origin_opener_policy" => section.cross_origin_opener_policy.as_ref(),
        "cross_origin_resource_policy" => section.cross_origin_resource_policy.as_ref(),
        "credentialed_cache_control" => section.credentialed_cache_control.as_ref(),
        _ => None,
    }
}

/// Resolves a header policy from sections, most specific first, over the defaults.
fn header_policy(v: &mut Validator<'_>, sections: &[&HeadersSection]) -> HeaderPolicy {
    let resolve = |v: &mut Validator<'_>, key: &str, default: &'static str| -> Option<HeaderValue> {
        match sections.iter().find_map(|s| header_value(s, key)) {
            None => Some(HeaderValue::from_static(default)),
            Some(value) if value.get_ref() == OFF => None,
            Some(value) => match HeaderValue::from_str(value.get_ref()) {
                Ok(h) => Some(h),
                Err(_) => {
                    v.error(value, format!("`{key}` is not a valid header value"));
                    None
                }
            },
        }
    };
    let mut set = Vec::new();
    for (key, name, default) in SECURITY_HEADERS {
        if let Some(value) = resolve(v, key, default) {
            set.push((HeaderName::from_static(name), value));
        }
    }
    let credentialed_cache_control = resolve(v, CREDENTIALED_CACHE_CONTROL.0, CREDENTIALED_CACHE_CONTROL.1);
    let remove = match sections.iter().find_map(|s| s.remove.as_ref()) {
        None => DEFAULT_REMOVED.iter().map(|n| HeaderName::from_static(n)).collect(),
        Some(list) => list
            .iter()
            .filter_map(|name| match HeaderName::from_bytes(name.get_ref().as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    v.error(name, format!("`{}` is not a header name", name.get_ref()));
                    None
                }
            })
            .collect(),
    };
    HeaderPolicy { set, remove, credentialed_cache_control }
}

fn cors_policy(v: &mut Validator<'_>, section: &Spanned<CorsSection>) -> CorsPolicy {
    let c = section.get_ref();
    let mut policy = CorsPolicy { allow_credentials: c.allow_credentials, ..CorsPolicy::default() };
    let any = c.allowed_origins.iter().any(|o| o.get_ref() == "*");
    if any {
        if c.allowed_origins.len() > 1 {
            v.error(section, "`allowed_origins` holds \"*\" and other origins; use one or the other");
        }
        if c.allow_credentials {
            v.error(section, "`allowed_origins = [\"*\"]` cannot be combined with `allow_credentials = true`");
        }
        policy.origins = AllowedOrigins::Any;
    } else {
        let mut list = Vec::new();
        for origin in &c.allowed_origins {
            let ok = origin.get_ref().parse::<Uri>().ok().filter(|u| {
                matches!(u.scheme_str(), Some("https" | "http"))
                    && u.authority().is_some_and(|a| !a.as_str().contains('@'))
                    && u.path() == "/"
                    && !origin.get_ref().ends_with('/')
                    && u.query().is_none()
            });
            match (ok, HeaderValue::from_str(origin.get_ref())) {
                (Some(_), Ok(value)) => list.push(value),
                _ => {
                    v.error(origin, format!("`{}` is not an origin like \"https://app.example.com\"", origin.get_ref()))
                }
            }
        }
        if list.is_empty() {
            v.error(section, "`allowed_origins` is empty: list the origins that may call, or remove the table");
        }
        policy.origins = AllowedOrigins::List(list);
    }
    if let Some(headers) = &c.allowed_headers {
        policy.allowed_headers = headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
        if policy.allowed_headers.len() != headers.len() {
            v.error(section, "`allowed_headers` holds something that is not a header name");
        }
    }
    if let Some(exposed) = &c.exposed_headers {
        policy.exposed_headers = exposed.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
        if policy.exposed_headers.len() != exposed.len() {
            v.error(section, "`exposed_headers` holds something that is not a header name");
        }
    }
    policy.max_age = v.duration(c.max_age.as_ref(), "cors.max_age", policy.max_age);
    policy
}

fn validate_store(v: &mut Validator<'_>, raw: &FileConfig, server: &ServerConfig) -> StoreConfig {
    let Some(value) = raw.store.url.as_ref() else {
        let path = server.data_dir.join("portcullis.db");
        return StoreConfig { url: format!("sqlite://{}", path.display()) };
    };
    let url = value.get_ref();
    if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        v.error(value, "`store.url` must start with sqlite: or postgres://");
    }
    if let Some(rest) = url.split_once("://").map(|(_, r)| r)
        && let Some((userinfo, _)) = rest.split_once('@')
        && userinfo.contains(':')
    {
        v.error(
            value,
            "`store.url` contains a password; secrets are never read from the file: set PORTCULLIS_STORE_PASSWORD",
        );
    }
    StoreConfig { url: url.clone() }
}

fn validate_log(v: &mut Validator<'_>, raw: &FileConfig) -> LogConfig {
    let format = match raw.log.format.as_ref() {
        None => LogFormat::Json,
        Some(value) => match value.get_ref().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => {
                v.error(value, "`log.format` must be \"json\" or \"text\"");
                LogFormat::Json
            }
        },
    };
    let level = raw.log.level.clone().unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        v.error_nowhere(format!("`log.level` = \"{level}\" is not a filter like \"info\" or \"info,access=off\""));
    }
    LogConfig { format, level }
}

fn validate_tokens(v: &mut Validator<'_>, raw: &FileConfig, server: &ServerConfig) -> TokensConfig {
    let t = &raw.tokens;
    let algorithm = match &t.algorithm {
        None => SigningAlgorithm::EdDSA,
        Some(value) => SigningAlgorithm::parse(value.get_ref()).unwrap_or_else(|| {
            v.error(value, "`tokens.algorithm` must be \"EdDSA\", \"ES256\", \"RS256\" or \"HS256\"");
            SigningAlgorithm::EdDSA
        }),
    };
    let default_issuer =
        server.public_url.clone().unwrap_or_else(|| format!("https://localhost:{}", server.https.port()));
    let issuer = match &t.issuer {
        None => default_issuer,
        Some(value) if value.get_ref().trim().is_empty() => {
            v.error(value, "`tokens.issuer` is empty");
            default_issuer
        }
        Some(value) => value.get_ref().clone(),
    };
    let audience = match &t.audience {
        Some(value) if value.get_ref().trim().is_empty() => {
            v.error(value, "`tokens.audience` is empty");
            "portcullis".to_owned()
        }
        Some(value) => value.get_ref().clone(),
        None => "portcullis".to_owned(),
    };
    let max_token_size = v.size(t.max_token_size.as_ref(), "tokens.max_token_size", 8 << 10);
    TokensConfig {
        algorithm,
        issuer,
        audience,
        access_ttl: v.duration(t.access_ttl.as_ref(), "tokens.access_ttl", Duration::from_secs(15 * 60)),
        refresh_ttl: v.duration(t.refresh_ttl.as_ref(), "tokens.refresh_ttl", Duration::from_secs(14 * 86_400)),
        leeway: match &t.leeway {
            Some(value) if value.get_ref() == "0s" => Duration::ZERO,
            other => v.duration(other.as_ref(), "tokens.leeway", Duration::from_secs(30)),
        },
        max_token_size: usize::try_from(max_token_size).unwrap_or(8 << 10),
        keys_dir: t.keys_dir.as_ref().map_or_else(|| server.data_dir.join("keys"), PathBuf::from),
        external: validate_externals(v, &t.external),
    }
}

fn validate_externals(
    v: &mut Validator<'_>,
    sections: &[Spanned<super::file::ExternalIssuerSection>],
) -> Vec<ExternalIssuerConfig> {
    let mut external: Vec<ExternalIssuerConfig> = Vec::new();
    for section in sections {
        if let Some(config) = validate_external(v, section) {
            if external.iter().any(|other| other.issuer == config.issuer) {
                v.error(&section.get_ref().issuer, "this issuer is configured twice");
            }
            external.push(config);
        }
    }
    external
}

fn validate_external(
    v: &mut Validator<'_>,
    section: &Spanned<super::file::ExternalIssuerSection>,
) -> Option<ExternalIssuerConfig> {
    let e = section.get_ref();
    let issuer = e.issuer.get_ref().trim_end_matches('/').to_owned();
    if issuer.is_empty() {
        v.error(&e.issuer, "`issuer` is empty");
        return None;
    }
    if e.audience.get_ref().trim().is_empty() {
        v.error(&e.audience, "`audience` is empty: every external token must be meant for this gateway");
        return None;
    }
    let url_text =
        e.jwks_url.as_ref().map_or_else(|| format!("{issuer}/.well-known/jwks.json"), |u| u.get_ref().clone());
    let jwks_url = match url_text.parse::<Uri>() {
        Ok(uri) if uri.scheme() == Some(&Scheme::HTTPS) && uri.host().is_some() => uri,
        Ok(uri)
            if uri.scheme() == Some(&Scheme::HTTP)
                && uri.host().is_some_and(|h| {
                    h == "localhost"
                        || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                }) =>
        {
            uri
        }
        _ => {
            match &e.jwks_url {
                Some(value) => v.error(value, "`jwks_url` must be an https URL (http only on loopback, for tests)"),
                None => v.error(&e.issuer, "the issuer is not an https URL; set `jwks_url`"),
            }
            return None;
        }
    };
    let algorithms = match &e.algorithms {
        None => vec![jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::EdDSA],
        Some(list) => {
            let mut algorithms = Vec::new();
            for name in list.get_ref() {
                match name.parse::<jsonwebtoken::Algorithm>() {
                    Ok(alg)
                        if !matches!(
                            alg,
                            jsonwebtoken::Algorithm::HS256
                                | jsonwebtoken::Algorithm::HS384
                                | jsonwebtoken::Algorithm::HS512
                        ) =>
                    {
                        algorithms.push(alg);
                    }
                    _ => v.error(
                        list,
                        format!(
                            "`{name}` is not an accepted algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                        ),
                    ),
                }
            }
            if algorithms.is_empty() {
                v.error(list, "`algorithms` is empty: no token of this issuer could ever be accepted");
            }
            algorithms
        }
    };
    Some(ExternalIssuerConfig {
        issuer,
        audience: e.audience.get_ref().clone(),
        jwks_url,
        roles_claim: e.roles_claim.clone().unwrap_or_else(|| "roles".to_owned()),
        algorithms,
    })
}

fn validate_login(v: &mut Validator<'_>, raw: &FileConfig) -> LoginConfig {
    let l = &raw.login;
    let defaults = PasswordPolicy::default();
    let min_length = v.count(l.min_password_length.as_ref(), "login.min_password_length", 8..=128, defaults.min_length);
    let max_length =
        v.count(l.max_password_length.as_ref(), "login.max_password_length", 8..=1024, defaults.max_length);
    if min_length > max_length
        && let Some(value) = &l.min_password_length
    {
        v.error(value, "`login.min_password_length` is above `login.max_password_length`");
    }
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    LoginConfig {
        allow_registration: l.allow_registration.unwrap_or(false),
        policy: PasswordPolicy { min_length, max_length },
        max_concurrent_hashes: v.count(
            l.max_concurrent_hashes.as_ref(),
            "login.max_concurrent_hashes",
            1..=256,
            2 * cores,
        ),
    }
}

fn validate_route(
    v: &mut Validator<'_>,
    spanned: &Spanned<RouteSection>,
    raw: &FileConfig,
    limits: &Limits,
    global_cors: Option<&Arc<CorsPolicy>>,
) -> Option<RouteConfig> {
    let r = spanned.get_ref();
    let pattern = r.path.get_ref().clone();
    let mut ok = validate_pattern(v, &r.path);
    let methods = match &r.methods {
        None => {
            v.error(&r.path, "the route has no `methods`: list the methods it allows, like [\"GET\"]");
            ok = false;
            Vec::new()
        }
        Some(list) if list.get_ref().is_empty() => {
            v.error(list, "`methods` is empty");
            ok = false;
            Vec::new()
        }
        Some(list) => {
            let mut methods = Vec::new();
            for m in list.get_ref() {
                match m.as_str() {
                    "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                        if let Ok(method) = m.parse::<Method>() {
                            methods.push(method);
                        }
                    }
                    _ => {
                        v.error(
                            list,
                            format!(
                                "`{m}` is not a method Portcullis routes (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)"
                            ),
                        );
                        ok = false;
                    }
                }
            }
            methods
        }
    };
    let upstream = match &r.upstream {
        None => {
            v.error(&r.path, "the route has no `upstream`");
            ok = false;
            None
        }
        Some(value) => {
            let parsed = parse_upstream(value.get_ref());
            if parsed.is_none() {
                v.error(
                    value,
                    "`upstream` must be a URL like \"http://127.0.0.1:5000\" (http or https, no query, no credentials)",
                );
                ok = false;
            }
            parsed
        }
    };
    let auth = match r.auth.as_ref() {
        None => AuthMode::Required,
        Some(value) => match value.get_ref().as_str() {
            "none" => AuthMode::None,
            "optional" => AuthMode::Optional,
            "required" => AuthMode::Required,
            _ => {
                v.error(value, "`auth` must be \"none\", \"optional\" or \"required\"");
                ok = false;
                AuthMode::Required
            }
        },
    };
    let strip_prefix = r.strip_prefix.as_ref().and_then(|value| {
        let prefix = value.get_ref();
        let literal = pattern.split('{').next().unwrap_or("");
        let valid = prefix.starts_with('/')
            && !prefix.ends_with('/')
            && literal.starts_with(prefix.as_str())
            && matches!(pattern.as_bytes().get(prefix.len()), None | Some(b'/'));
        if !valid {
            v.error(
                value,
                "`strip_prefix` must be a leading part of the route's path made of whole segments, like \"/api\"",
            );
            ok = false;
        }
        valid.then(|| prefix.clone())
    });
    let policy = route_policy(v, r, &pattern, auth, &mut ok);
    let forward = ForwardIdentity {
        headers: r.forward_identity.as_ref().and_then(|f| f.headers).unwrap_or(true),
        token: r.forward_identity.as_ref().filter(|f| f.token == Some(true)).map(|f| {
            f.audience
                .clone()
                .unwrap_or_else(|| upstream.as_ref().map_or_else(String::new, |u| u.authority.to_string()))
        }),
        bearer: r.forward_token.unwrap_or(false),
    };
    let header_sections: Vec<&HeadersSection> = r.headers.iter().chain([&raw.headers]).collect();
    let headers = Arc::new(header_policy(v, &header_sections));
    let cors = match &r.cors {
        Some(section) => Some(Arc::new(cors_policy(v, section))),
        None => global_cors.cloned(),
    };
    if cors.is_some()
        && methods.contains(&Method::OPTIONS)
        && let Some(list) = &r.methods
    {
        v.error(
            list,
            "a route with CORS cannot send OPTIONS upstream: the gateway answers OPTIONS (preflights) itself",
        );
        ok = false;
    }
    let route = RouteConfig {
        pattern,
        methods,
        upstream: upstream?,
        auth,
        max_body: v.size(r.max_body.as_ref(), "max_body", limits.max_body),
        upstream_timeout: v.duration(r.upstream_timeout.as_ref(), "upstream_timeout", limits.upstream_timeout),
        fresh_within: r
            .fresh_within
            .as_ref()
            .map(|value| v.duration(Some(value), "fresh_within", Duration::from_secs(300))),
        policy,
        forward,
        preserve_host: r.preserve_host,
        strip_prefix,
        headers,
        cors,
        location: v.location(&r.path),
    };
    if route.fresh_within.is_some()
        && route.auth != AuthMode::Required
        && let Some(value) = &r.fresh_within
    {
        v.error(value, "`fresh_within` needs `auth = \"required\"`");
        ok = false;
    }
    if route.upstream_timeout >= limits.request_timeout {
        let message = format!(
            "`upstream_timeout` ({}) must be shorter than `limits.request_timeout` ({}), or the upstream is never the one blamed",
            super::units::format_duration(route.upstream_timeout),
            super::units::format_duration(limits.request_timeout)
        );
        match &r.upstream_timeout {
            Some(value) => v.error(value, message),
            None => v.error(&r.path, message),
        }
        ok = false;
    }
    lint::lint_route(v, spanned, &route);
    ok.then_some(route)
}

/// The roles, scopes and compiled rule of a route.
fn route_policy(v: &mut Validator<'_>, r: &RouteSection, pattern: &str, auth: AuthMode, ok: &mut bool) -> Arc<Policy> {
    let names =
        |list: &Option<Spanned<Vec<String>>>, what: &str, v: &mut Validator<'_>, ok: &mut bool| -> Vec<String> {
            let Some(list) = list else { return Vec::new() };
            for name in list.get_ref() {
                if name.is_empty()
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'))
                {
                    v.error(list, format!("`{name}` is not a valid {what} name"));
                    *ok = false;
                }
            }
            list.get_ref().clone()
        };
    let roles = names(&r.roles, "role", v, ok);
    let scopes = names(&r.scopes, "scope", v, ok);
    let params: Vec<String> = pattern
        .split('{')
        .skip(1)
        .filter_map(|p| p.split('}').next())
        .map(|p| p.trim_start_matches('*').to_owned())
        .collect();
    let rule = r.allow_if.as_ref().and_then(|source| match Rule::compile(source.get_ref(), &params) {
        Ok(rule) => Some(rule),
        Err(error) => {
            // Point inside the string: past the opening quote, at the rule's offset.
            let offset = source.span().start + 1 + error.offset;
            v.diagnostics.push(v.map.at(Severity::Error, Some(offset), format!("`allow_if`: {}", error.message)));
            *ok = false;
            None
        }
    });
    let requires_something = !roles.is_empty() || !scopes.is_empty() || r.allow_if.is_some();
    if requires_something && auth == AuthMode::None {
        if let Some(value) = r.auth.as_ref() {
            v.error(
                value,
                "`roles`, `scopes` and `allow_if` need authentication: use auth = \"required\" or \"optional\"",
            );
        }
        *ok = false;
    }
    Arc::new(Policy::new(roles, scopes, rule))
}

/// A route pattern must already be canonical, so that it can match.
fn validate_pattern(v: &mut Validator<'_>, path: &Spanned<String>) -> bool {
    let text = path.get_ref();
    // Check the literal parts as a path: parameters become a placeholder segment.
    let mut literal = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('{') {
        literal.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            v.error(path, "unclosed `{` in the route path");
            return false;
        };
        literal.push('p');
        rest = &rest[start + end + 1..];
    }
    literal.push_str(rest);
    match normalize(&literal) {
        Ok(canonical) if canonical.canonical() == literal => {}
        Ok(_) => {
            v.error(path, "the route path is not canonical: write it without `//`, `.` or `..` segments, a trailing `/` or escaped letters");
            return false;
        }
        Err(e) => {
            v.error(path, format!("the route path is refused: {e}"));
            return false;
        }
    }
    if crate::api::BUILTIN_ROUTES.iter().any(|(reserved, _)| text == reserved)
        || text == "/admin"
        || ["/auth/", "/oauth/", "/.well-known/", "/admin/"].iter().any(|prefix| text.starts_with(prefix))
    {
        v.error(path, format!("`{text}` is answered by Portcullis itself and cannot be routed"));
        return false;
    }
    true
}

/// Parses `http(s)://host[:port][/base]`.
fn parse_upstream(text: &str) -> Option<Upstream> {
    let uri: Uri = text.parse().ok()?;
    let scheme = uri.scheme()?.clone();
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return None;
    }
    let authority = uri.authority()?.clone();
    if authority.as_str().contains('@') || uri.query().is_some() || authority.host().is_empty() {
        return None;
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    if !base_path.is_empty() && normalize(&base_path).ok()?.canonical() != base_path {
        return None;
    }
    Some(Upstream { scheme, authority, base_path })
}

#[cfg(test)]
mod tests;
