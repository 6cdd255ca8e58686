//! Security headers on every response, and removal of headers that leak
//! what runs behind the gateway.
//!
//! Sits just inside the context gate, outside every gate that can refuse, so
//! 401, 404, 413 and 502 answers carry the headers too. The policy of the
//! matched route (if any) travels in the response extensions as
//! [`RouteHeaderPolicy`]; other responses get the global policy.
//!
//! Defaults (Flask-Talisman parity and more):
//!
//! | header | default |
//! |---|---|
//! | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` |
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` |
//! | `X-Content-Type-Options` | `nosniff` |
//! | `X-Frame-Options` | `DENY` |
//! | `Referrer-Policy` | `no-referrer` |
//! | `Permissions-Policy` | camera, microphone, geolocation, payment, usb, browsing-topics all `()` |
//! | `Cross-Origin-Opener-Policy` | `same-origin` |
//! | `Cross-Origin-Resource-Policy` | `same-origin` |
//! | `Cache-Control` (requests with credentials, responses setting cookies) | `no-store` |
//!
//! Removed from upstream responses: `Server`, `X-Powered-By`,
//! `X-AspNet-Version`, `X-AspNetMvc-Version`.
//!
//! ```
//! use http::HeaderMap;
//! use portcullis::gates::headers::HeaderPolicy;
//! let policy = HeaderPolicy::default();
//! let mut headers = HeaderMap::new();
//! headers.insert("server", "gunicorn".parse().unwrap());
//! policy.apply(&mut headers, true);
//! assert!(headers.get("server").is_none());
//! assert_eq!(headers["x-frame-options"], "DENY");
//! assert_eq!(headers["cache-control"], "no-store");
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use tower::{Layer, Service};

use crate::body::Body;

/// The configurable security headers: config key, header name, default value.
pub const SECURITY_HEADERS: &[(&str, &str, &str)] = &[
    ("strict_transport_security", "strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("content_security_policy", "content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("x_content_type_options", "x-content-type-options", "nosniff"),
    ("x_frame_options", "x-frame-options", "DENY"),
    ("referrer_policy", "referrer-policy", "no-referrer"),
    (
        "permissions_policy",
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), browsing-topics=()",
    ),
    ("cross_origin_opener_policy", "cross-origin-opener-policy", "same-origin"),
    ("cross_origin_resource_policy", "cross-origin-resource-policy", "same-origin"),
];

/// Config key and default of the `Cache-Control` sent when credentials are involved.
pub const CREDENTIALED_CACHE_CONTROL: (&str, &str) = ("credentialed_cache_control", "no-store");

/// Upstream response headers removed by default.
pub const DEFAULT_REMOVED: &[&str] = &["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version"];

/// The value that turns a header off in the configuration.
pub const OFF: &str = "off";

/// What to set and remove on responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    /// Headers set on every response (replacing any upstream value).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed from every response.
    pub remove: Vec<HeaderName>,
    /// `Cache-Control` for responses to credentialed requests, if any.
    pub credentialed_cache_control: Option<HeaderValue>,
}

impl Default for HeaderPolicy {
    fn default() -> Self {
        Self {
            set: SECURITY_HEADERS
                .iter()
                .map(|(_, name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value)))
                .collect(),
            remove: DEFAULT_REMOVED.iter().map(|name| HeaderName::from_static(name)).collect(),
            credentialed_cache_control: Some(HeaderValue::from_static(CREDENTIALED_CACHE_CONTROL.1)),
        }
    }
}

impl HeaderPolicy {
    /// This policy with header `name` set to `value` (replacing it).
    #[must_use]
    pub fn with_header(&self, name: HeaderName, value: HeaderValue) -> Self {
        let mut policy = self.clone();
        policy.set.retain(|(n, _)| *n != name);
        policy.set.push((name, value));
        policy
    }

    /// Applies the policy. `credentialed` is true when the request carried
    /// credentials or the response sets a cookie.
    pub fn apply(&self, headers: &mut HeaderMap, credentialed: bool) {
        // Scan the (few) headers present rather than look up every name.
        let doomed: Vec<HeaderName> = headers.keys().filter(|name| self.remove.contains(name)).cloned().collect();
        for name in doomed {
            headers.remove(name);
        }
        // One growth of the map instead of several.
        headers.reserve(self.set.len() + 2);
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        let credentialed = credentialed || headers.contains_key(header::SET_COOKIE);
        if credentialed && let Some(value) = &self.credentialed_cache_control {
            headers.insert(header::CACHE_CONTROL, value.clone());
        }
    }
}

/// The header policy of the matched route, put in the response extensions by
/// the route gate.
#[derive(Debug, Clone)]
pub struct RouteHeaderPolicy(pub Arc<HeaderPolicy>);

/// Applies a [`HeaderPolicy`] to every response.
#[derive(Debug, Clone)]
pub struct SecurityHeadersLayer {
    global: Arc<HeaderPolicy>,
}

impl SecurityHeadersLayer {
    /// A layer with `global` as the policy for responses without a route.
    pub fn new(global: Arc<HeaderPolicy>) -> Self {
        Self { global }
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner, global: self.global.clone() }
    }
}

/// The service of [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeaders<S> {
    inner: S,
    global: Arc<HeaderPolicy>,
}

impl<S> Service<Request<Body>> for SecurityHeaders<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::body::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let credentialed =
            request.headers().contains_key(header::AUTHORIZATION) || request.headers().contains_key(header::COOKIE);
        let global = self.global.clone();
        let future = self.inner.call(request);
        Box::pin(future.map(move |outcome| {
            let mut response = outcome?;
            let policy = response.extensions().get::<RouteHeaderPolicy>().map_or(global, |p| p.0.clone());
            policy.apply(response.headers_mut(), credentialed);
            Ok(response)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_talisman() {
        let mut headers = HeaderMap::new();
        headers.insert("x-powered-by", HeaderValue::from_static("Express"));
        headers.insert("x-frame-options", HeaderValue::from_static("ALLOWALL"));
        HeaderPolicy::default().apply(&mut headers, false);
        for (_, name, value) in SECURITY_HEADERS {
            assert_eq!(headers[*name], *value);
        }
        assert!(!headers.contains_key("x-powered-by"));
        assert!(!headers.contains_key(header::CACHE_CONTROL), "no credentials, no cache override");
    }

    #[test]
    fn set_cookie_responses_are_not_cached() {
        let mut headers = HeaderMap::new();
        headers.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=600"));
        HeaderPolicy::default().apply(&mut headers, false);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }
}
