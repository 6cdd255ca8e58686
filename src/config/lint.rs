//! The security lint: warnings for every protection the configuration turns
//! off and for risky settings. `portcullis check` prints them;
//! `portcullis check --strict` fails on them.

use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::file::{FileConfig, HeadersSection, RouteSection};
use super::validate::Validator;
use super::{AuthMode, Limits, RouteConfig, ServerConfig};
use crate::gates::headers::OFF;

/// Warnings about the whole file.
pub(super) fn lint_file(v: &mut Validator<'_>, raw: &FileConfig, server: &ServerConfig, limits: &Limits) {
    lint_headers(v, &raw.headers, "[headers]");
    if let Some(cors) = &raw.cors {
        lint_cors(v, cors, "[cors]");
    }
    if server.http.is_some() && server.http_behind_proxy && server.trusted_proxies.is_empty() {
        let message = "plain HTTP is served behind a proxy but `server.trusted_proxies` is empty: every connection will be refused";
        match &raw.server.http {
            Some(http) => v.warn(http, message),
            None => v.warn_nowhere(message),
        }
    }
    if server.http_behind_proxy && server.http.is_some() {
        v.warn_nowhere("plain HTTP is served to trusted proxies: make sure they terminate TLS");
    }
    if server.tls.is_none() && raw.server.https.is_some() && !server.https.ip().is_loopback() {
        v.warn_nowhere(
            "the HTTPS listener is reachable from the network with a self-signed certificate; configure `server.tls`",
        );
    }
    let tokens = &raw.tokens;
    for (value, key, bound, what) in [
        (&tokens.access_ttl, "tokens.access_ttl", Duration::from_secs(3600), "one hour"),
        (&tokens.refresh_ttl, "tokens.refresh_ttl", Duration::from_secs(30 * 86_400), "30 days"),
        (&tokens.leeway, "tokens.leeway", Duration::from_secs(300), "5 minutes"),
    ] {
        if let Some(value) = value
            && crate::config::units::parse_duration(value.get_ref()).is_ok_and(|d| d > bound)
        {
            v.warn(value, format!("`{key}` is longer than {what}: a stolen token stays useful that long"));
        }
    }
    if let Some(value) = &tokens.algorithm
        && value.get_ref() == "HS256"
    {
        v.warn(value, "HS256 is a shared secret: anyone who can verify tokens can also mint them, and upstreams cannot use the JWKS");
    }
    if !raw.routes.is_empty()
        && raw.rate_limit.default.is_none()
        && raw.routes.iter().all(|r| r.get_ref().rate_limit.is_none())
    {
        v.warn_nowhere("no rate limits are configured: clients can send unlimited requests (see [rate_limit] default)");
    }
    if raw.login.allow_registration == Some(true) {
        v.warn_nowhere("`login.allow_registration` is on: anyone can create an account (with role `user`)");
    }
    if limits.max_body > 100 << 20
        && let Some(value) = &raw.limits.max_body
    {
        v.warn(value, "`limits.max_body` is above 100 MiB: large bodies can exhaust memory and bandwidth");
    }
    for (value, key, bound) in [
        (&raw.limits.header_timeout, "limits.header_timeout", Duration::from_secs(60)),
        (&raw.limits.request_timeout, "limits.request_timeout", Duration::from_secs(300)),
    ] {
        let effective = if key == "limits.header_timeout" { limits.header_timeout } else { limits.request_timeout };
        if effective > bound
            && let Some(value) = value
        {
            v.warn(value, format!("`{key}` is long: slow clients can hold connections open"));
        }
    }
}

fn lint_headers(v: &mut Validator<'_>, section: &HeadersSection, place: &str) {
    let values = [
        ("strict_transport_security", &section.strict_transport_security),
        ("content_security_policy", &section.content_security_policy),
        ("x_content_type_options", &section.x_content_type_options),
        ("x_frame_options", &section.x_frame_options),
        ("referrer_policy", &section.referrer_policy),
        ("permissions_policy", &section.permissions_policy),
        ("cross_origin_opener_policy", &section.cross_origin_opener_policy),
        ("cross_origin_resource_policy", &section.cross_origin_resource_policy),
        ("credentialed_cache_control", &section.credentialed_cache_control),
    ];
    for (key, value) in values {
        let Some(value) = value else { continue };
        if value.get_ref() == OFF {
            v.warn(value, format!("protection turned off: {place} `{key}` is \"off\""));
        }
    }
    if let Some(hsts) = &section.strict_transport_security
        && hsts.get_ref() != OFF
    {
        let max_age = hsts
            .get_ref()
            .split(';')
            .find_map(|part| part.trim().strip_prefix("max-age="))
            .and_then(|n| n.trim().parse::<u64>().ok());
        if max_age.is_none_or(|age| age < 31_536_000) {
            v.warn(hsts, "`strict_transport_security` max-age is below one year (31536000)");
        }
    }
    if let Some(list) = &section.remove
        && list.is_empty()
    {
        v.warn_nowhere(format!("{place} `remove` is empty: upstream `Server` and `X-Powered-By` headers will leak"));
    }
}

fn lint_cors(v: &mut Validator<'_>, cors: &Spanned<super::file::CorsSection>, place: &str) {
    if cors.get_ref().allowed_origins.iter().any(|o| o.get_ref() == "*") {
        v.warn(cors, format!("{place} allows any origin (\"*\"): any web page can call this API from a browser"));
    }
}

/// Warnings about one route.
/// Routes that take bodies no schema checks.
pub(super) fn lint_unchecked_bodies(v: &mut Validator<'_>, routes: &[RouteConfig]) {
    for route in routes {
        let with_body: Vec<&str> = route
            .methods
            .iter()
            .filter(|m| matches!(**m, Method::POST | Method::PUT | Method::PATCH))
            .map(Method::as_str)
            .collect();
        if !with_body.is_empty() && route.validation.as_ref().is_none_or(|p| p.body.is_none()) {
            v.warn_nowhere(format!(
                "route `{}` ({}) accepts {} bodies that no schema checks: they reach the upstream as sent (see validate.body)",
                route.pattern,
                route.location,
                with_body.join(", ")
            ));
        }
    }
}

pub(super) fn lint_route(v: &mut Validator<'_>, raw: &Spanned<RouteSection>, route: &RouteConfig) {
    let r = raw.get_ref();
    let unsafe_methods: Vec<&str> = route
        .methods
        .iter()
        .filter(|m| !matches!(**m, Method::GET | Method::HEAD | Method::OPTIONS))
        .map(Method::as_str)
        .collect();
    if route.auth == AuthMode::None
        && !unsafe_methods.is_empty()
        && let Some(auth) = &r.auth
    {
        v.warn(auth, format!("route `{}` allows {} without authentication", route.pattern, unsafe_methods.join(", ")));
    }
    if let Some(auth) = &r.auth
        && route.auth == AuthMode::None
        && route.pattern.contains("{*")
    {
        v.warn(auth, format!("catch-all route `{}` has auth \"none\": every path under it is public", route.pattern));
    }
    if route.upstream.scheme == http::uri::Scheme::HTTP
        && !is_local_host(route.upstream.authority.host())
        && let Some(upstream) = &r.upstream
    {
        v.warn(upstream, "the upstream is plain HTTP on a non-local host: traffic behind the gateway is not encrypted");
    }
    if let Some(headers) = &r.headers {
        lint_headers(v, headers, &format!("route `{}`", route.pattern));
    }
    if let Some(cors) = &r.cors {
        lint_cors(v, cors, &format!("route `{}`", route.pattern));
    }
}

fn is_local_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
