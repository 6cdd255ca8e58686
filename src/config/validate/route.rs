//! One `[[route]]`: pattern, methods, upstream, auth, policy, forwarding.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::{Method, Uri};
use toml::Spanned;

use super::{Validator, cors_policy, header_policy};
use crate::config::diagnostic::Severity;
use crate::config::file::{FileConfig, HeadersSection, RouteSection};
use crate::config::{AuthMode, ForwardIdentity, Limits, RateLimitConfig, RouteConfig, Upstream, lint};
use crate::gates::authz::{Policy, Rule};
use crate::gates::cors::CorsPolicy;
use crate::gates::path::normalize;
use crate::gates::rate_limit::RateRule;

/// What a route inherits from the global sections.
pub(super) struct RouteDefaults<'a> {
    pub(super) limits: &'a Limits,
    pub(super) cors: Option<&'a Arc<CorsPolicy>>,
    pub(super) rate_limit: &'a RateLimitConfig,
    pub(super) rate_rules: &'a [RateRule],
}

pub(super) fn validate_route(
    v: &mut Validator<'_>,
    spanned: &Spanned<RouteSection>,
    raw: &FileConfig,
    defaults: &RouteDefaults<'_>,
) -> Option<RouteConfig> {
    let RouteDefaults { limits, cors: global_cors, rate_limit, rate_rules: default_limits } = *defaults;
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
    let max_body = v.size(r.max_body.as_ref(), "max_body", limits.max_body);
    let route = RouteConfig {
        pattern,
        methods,
        upstream: upstream?,
        auth,
        max_body,
        upstream_timeout: v.duration(r.upstream_timeout.as_ref(), "upstream_timeout", limits.upstream_timeout),
        fresh_within: r
            .fresh_within
            .as_ref()
            .map(|value| v.duration(Some(value), "fresh_within", Duration::from_secs(300))),
        policy,
        forward,
        rate_limits: match &r.rate_limit {
            Some(rules) => super::rate_rules(v, rules),
            None => default_limits.to_vec(),
        },
        rate_limit_on_store_error: super::on_store_error(
            v,
            r.rate_limit_on_store_error.as_ref(),
            rate_limit.on_store_error,
        ),
        preserve_host: r.preserve_host,
        strip_prefix,
        headers,
        cors,
        location: v.location(&r.path),
        validation: r.validate.as_ref().and_then(|section| super::validation::validate_section(v, section, max_body)),
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
            crate::config::units::format_duration(route.upstream_timeout),
            crate::config::units::format_duration(limits.request_timeout)
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
