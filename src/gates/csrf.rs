//! CSRF protection for requests authenticated by the session cookie (never
//! for bearer tokens, which a browser does not attach by itself).
//!
//! An unsafe method (anything but GET, HEAD, OPTIONS, TRACE) must pass both:
//! 1. the synchronizer token: header `X-CSRF-Token` (or, for Portcullis's
//!    own forms, the `csrf_token` field) equal to the session's token,
//!    compared in constant time;
//! 2. the origin: `Origin`, else the origin of `Referer`, must be an
//!    allowed origin (default: the request's own `https://<Host>`); with
//!    neither, `Sec-Fetch-Site` must say `same-origin` or `none`; a request
//!    with none of the three is refused.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use portcullis::gates::csrf::check;
//! let host = Some("api.example.com");
//! let mut headers = HeaderMap::new();
//! headers.insert("origin", "https://api.example.com".parse().unwrap());
//! headers.insert("x-csrf-token", "t0ken".parse().unwrap());
//! assert!(check(&Method::POST, host, &headers, None, "t0ken", &[]).is_ok());
//! headers.insert("origin", "https://evil.example".parse().unwrap());
//! assert!(check(&Method::POST, host, &headers, None, "t0ken", &[]).is_err());
//! assert!(check(&Method::GET, host, &headers, None, "", &[]).is_ok());
//! ```

use http::{HeaderMap, Method, header};
use subtle::ConstantTimeEq as _;

use crate::error::Reason;

/// The header carrying the token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether `method` changes state (and so needs the checks).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// Checks a cookie-authenticated request; `form_token` is the `csrf_token`
/// field of a form body the caller has already read.
pub fn check(
    method: &Method,
    host: Option<&str>,
    headers: &HeaderMap,
    form_token: Option<&str>,
    expected: &str,
    allowed_origins: &[String],
) -> Result<(), Reason> {
    if !is_unsafe(method) {
        return Ok(());
    }
    check_origin(host, headers, allowed_origins)?;
    let mut presented = headers.get_all(CSRF_HEADER).iter();
    let token = match (presented.next(), presented.next()) {
        (Some(value), None) => value.to_str().ok(),
        (Some(_), Some(_)) => return Err(refused("two X-CSRF-Token headers")),
        (None, _) => form_token,
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(refused("no CSRF token"));
    };
    if bool::from(token.as_bytes().ct_eq(expected.as_bytes())) { Ok(()) } else { Err(refused("wrong CSRF token")) }
}

fn refused(check: &str) -> Reason {
    Reason::CsrfFailed { check: check.to_owned() }
}

/// The host the request was sent to: the URI's authority (HTTP/2), else
/// the `Host` header.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    uri.authority().map(http::uri::Authority::as_str).or_else(|| headers.get(header::HOST)?.to_str().ok())
}

/// The origin checks alone (also for a session login form); `host` is
/// [`request_host`].
pub fn check_origin(host: Option<&str>, headers: &HeaderMap, allowed_origins: &[String]) -> Result<(), Reason> {
    let own = host.map(|host| format!("https://{host}"));
    let allowed = |origin: &str| {
        allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(origin))
            || (allowed_origins.is_empty() && own.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(origin)))
    };
    let single = |name: header::HeaderName| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v.to_str().ok()),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let origin = single(header::ORIGIN).map_err(|()| refused("two Origin headers"))?;
    if let Some(origin) = origin {
        return if allowed(origin) {
            Ok(())
        } else {
            Err(refused(&format!("origin {} not allowed", printable(origin))))
        };
    }
    let referer = single(header::REFERER).map_err(|()| refused("two Referer headers"))?;
    if let Some(referer) = referer {
        let origin = referer
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?)));
        return match origin {
            Some(origin) if allowed(&origin) => Ok(()),
            _ => Err(refused("referer from a foreign origin")),
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin" | "none") => Ok(()),
        Some(_) => Err(refused("Sec-Fetch-Site is not same-origin")),
        None => Err(refused("no Origin, Referer or Sec-Fetch-Site")),
    }
}

/// An origin fit for the log: visible ASCII, at most 100 characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic()).take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Option<&str> = Some("app.example.com");

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn each_rule() {
        let post = Method::POST;
        let ok = |pairs: &[(&'static str, &str)]| check(&post, HOST, &headers(pairs), None, "secret", &[]).is_ok();
        assert!(ok(&[("origin", "https://app.example.com"), ("x-csrf-token", "secret")]));
        assert!(!ok(&[("origin", "https://app.example.com")]), "no token");
        assert!(!ok(&[("origin", "https://app.example.com"), ("x-csrf-token", "secreT")]), "wrong token");
        assert!(!ok(&[("origin", "https://evil.example"), ("x-csrf-token", "secret")]), "foreign origin");
        assert!(!ok(&[("origin", "null"), ("x-csrf-token", "secret")]), "opaque origin");
        assert!(!ok(&[("origin", "http://app.example.com"), ("x-csrf-token", "secret")]), "plain http origin");
        assert!(ok(&[("referer", "https://app.example.com/admin/users"), ("x-csrf-token", "secret")]));
        assert!(!ok(&[("referer", "https://app.example.com.evil.example/"), ("x-csrf-token", "secret")]));
        assert!(ok(&[("sec-fetch-site", "same-origin"), ("x-csrf-token", "secret")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site"), ("x-csrf-token", "secret")]));
        assert!(!ok(&[("x-csrf-token", "secret")]), "no origin information at all");
        assert!(!ok(&[("origin", "https://app.example.com"), ("x-csrf-token", "secret"), ("x-csrf-token", "secret")]));
        assert!(
            check(&post, HOST, &headers(&[("origin", "https://app.example.com")]), Some("secret"), "secret", &[])
                .is_ok(),
            "a form field"
        );
        let configured = ["https://spa.example.com".to_owned()];
        let spa = headers(&[("origin", "https://spa.example.com"), ("x-csrf-token", "secret")]);
        assert!(check(&post, HOST, &spa, None, "secret", &configured).is_ok());
        let own = headers(&[("origin", "https://app.example.com"), ("x-csrf-token", "secret")]);
        assert!(check(&post, HOST, &own, None, "secret", &configured).is_err(), "the list replaces the default");
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(check(&method, HOST, &headers(&[]), None, "secret", &[]).is_ok());
        }
    }
}
