//! From the raw file shape to a typed [`Config`], collecting every error with
//! its position instead of stopping at the first.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Uri};
use ipnet::IpNet;
use toml::Spanned;

use super::diagnostic::{Diagnostic, Severity, SourceMap};
use super::file::{CorsSection, FileConfig, HeadersSection, RateRuleSection};
use super::secrets::REDIS_PASSWORD;
use super::units::{parse_duration, parse_size};
use super::{Config, Limits, LogConfig, LogFormat, RateLimitConfig, ServerConfig, StoreConfig, TlsFiles, lint};
use crate::gates::cors::{AllowedOrigins, CorsPolicy};
use crate::gates::headers::{CREDENTIALED_CACHE_CONTROL, DEFAULT_REMOVED, HeaderPolicy, OFF, SECURITY_HEADERS};
use crate::gates::rate_limit::store::OnStoreError;
use crate::gates::rate_limit::{CountMode, KeyPart, RateRule};
use crate::gates::route::RouteTable;

mod identity;
mod monitoring;
mod openapi;
mod route;
mod validation;

pub use monitoring::webhook_url;

/// Validates `[rate_limit]` (not its `default` list).
fn validate_rate_limit(v: &mut Validator<'_>, raw: &FileConfig) -> RateLimitConfig {
    let r = &raw.rate_limit;
    let redis_url = match &r.store {
        None => None,
        Some(store) if store.get_ref() == "memory" => None,
        Some(store) => {
            let url = store.get_ref();
            let parsed = redis::IntoConnectionInfo::into_connection_info(url.as_str());
            match parsed {
                _ if !(url.starts_with("redis://") || url.starts_with("rediss://")) => {
                    v.error(store, "`rate_limit.store` must be \"memory\" or a redis:// or rediss:// URL");
                    None
                }
                Ok(info) if info.redis_settings().password().is_some() => {
                    v.error(store, format!("`rate_limit.store` must not contain a password: set {REDIS_PASSWORD}"));
                    None
                }
                Ok(_) => Some(url.clone()),
                Err(_) => {
                    v.error(store, "`rate_limit.store` must be \"memory\" or a URL like \"redis://127.0.0.1:6379/0\"");
                    None
                }
            }
        }
    };
    let store_timeout = v.duration(r.store_timeout.as_ref(), "rate_limit.store_timeout", Duration::from_millis(50));
    if let Some(value) = &r.store_timeout
        && !(Duration::from_millis(1)..=Duration::from_secs(5)).contains(&store_timeout)
    {
        v.error(value, "`rate_limit.store_timeout` must be between 1ms and 5s");
    }
    RateLimitConfig {
        redis_url,
        on_store_error: on_store_error(v, r.on_store_error.as_ref(), OnStoreError::Local),
        store_timeout,
        key_prefix: r.key_prefix.as_ref().map_or_else(|| "portcullis:rl:".to_owned(), |p| p.get_ref().clone()),
        max_keys: v.count(r.max_keys.as_ref(), "rate_limit.max_keys", 100..=10_000_000, 100_000),
        lease: u32::try_from(v.count(r.lease.as_ref(), "rate_limit.lease", 0..=10_000, 0)).unwrap_or(0),
    }
}

/// Validates a failure policy: `local`, `allow` or `deny`.
pub(super) fn on_store_error(
    v: &mut Validator<'_>,
    value: Option<&Spanned<String>>,
    default: OnStoreError,
) -> OnStoreError {
    let Some(value) = value else { return default };
    OnStoreError::parse(value.get_ref()).unwrap_or_else(|| {
        v.error(value, "must be \"local\", \"allow\" or \"deny\"");
        default
    })
}

/// Validates a list of rate limits.
pub(super) fn rate_rules(v: &mut Validator<'_>, sections: &[Spanned<RateRuleSection>]) -> Vec<RateRule> {
    let mut rules = Vec::new();
    for section in sections {
        let s = section.get_ref();
        let key_text = s.key.as_ref().map_or("ip", |k| k.get_ref().as_str());
        let key: Option<Vec<KeyPart>> = key_text.split('+').map(|p| KeyPart::parse(p.trim())).collect();
        let Some(key) = key else {
            match &s.key {
                Some(value) => v.error(value, "`key` must be ip, user, client, route or header:<name>, joined by +"),
                None => v.error(section, "bad key"),
            }
            continue;
        };
        let burst = s.burst.as_ref().map(|b| v.count(Some(b), "burst", 1..=1_000_000, 1));
        let Some(mut rule) = RateRule::new(s.rate.get_ref(), burst.and_then(|b| u32::try_from(b).ok()), key) else {
            v.error(&s.rate, "`rate` must be like \"30/minute\" (per second, minute, hour or day, above 0)");
            continue;
        };
        rule.cost = u32::try_from(v.count(s.cost.as_ref(), "cost", 1..=1_000_000, 1)).unwrap_or(1);
        if rule.cost > rule.limit.burst
            && let Some(cost) = &s.cost
        {
            v.error(
                cost,
                format!("`cost` {} is above the burst {}: no request could ever pass", rule.cost, rule.limit.burst),
            );
        }
        rule.count = match s.count.as_ref().map(|c| (c, c.get_ref().as_str())) {
            None | Some((_, "all")) => CountMode::All,
            Some((_, "failures")) => CountMode::Failures,
            Some((value, _)) => {
                v.error(value, "`count` must be \"all\" or \"failures\"");
                CountMode::All
            }
        };
        rule.exempt_roles = s.exempt_roles.clone().unwrap_or_default();
        rule.exempt_networks = v.networks(s.exempt_networks.as_deref().unwrap_or(&[]), "exempt_networks");
        rules.push(rule);
    }
    rules
}

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

    /// Addresses or networks (`10.0.0.0/8`, `::1`).
    fn networks(&mut self, entries: &[Spanned<String>], key: &str) -> Vec<IpNet> {
        let mut networks = Vec::new();
        for entry in entries {
            let text = entry.get_ref();
            match text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from)) {
                Ok(net) => networks.push(net),
                Err(_) => self.error(entry, format!("`{key}`: `{text}` is not an IP address or CIDR range")),
            }
        }
        networks
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
    let tokens = identity::validate_tokens(&mut v, &raw, &server);
    let rate_limit = validate_rate_limit(&mut v, &raw);
    let login = identity::validate_login(&mut v, &raw, rate_limit.on_store_error);
    let default_limits = rate_rules(&mut v, raw.rate_limit.default.as_deref().unwrap_or(&[]));
    let mut routes = Vec::new();
    let defaults = route::RouteDefaults {
        limits: &limits,
        cors: cors.as_ref(),
        rate_limit: &rate_limit,
        rate_rules: &default_limits,
    };
    for route in &raw.routes {
        if let Some(route) = route::validate_route(&mut v, route, &raw, &defaults) {
            routes.push(route);
        }
    }
    for section in &raw.openapi {
        routes.extend(openapi::import(&mut v, section, &raw, &defaults));
    }
    let audit = monitoring::validate_audit(&mut v, &raw);
    let metrics = monitoring::validate_metrics(&mut v, &raw);
    let sessions = monitoring::validate_sessions(&mut v, &raw);
    let tracing = monitoring::validate_tracing(&mut v, &raw);
    lint::lint_unchecked_bodies(&mut v, &routes);
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
        rate_limit,
        routes,
        audit,
        metrics,
        sessions,
        tracing,
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
    let trusted_proxies = v.networks(&s.trusted_proxies, "server.trusted_proxies");
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
        max_in_flight: v.count(l.max_in_flight.as_ref(), "limits.max_in_flight", 1..=1_000_000, d.max_in_flight),
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
pub(super) fn header_policy(v: &mut Validator<'_>, sections: &[&HeadersSection]) -> HeaderPolicy {
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

pub(super) fn cors_policy(v: &mut Validator<'_>, section: &Spanned<CorsSection>) -> CorsPolicy {
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

#[cfg(test)]
mod tests;
