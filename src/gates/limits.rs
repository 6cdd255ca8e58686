//! Size limits and request-framing checks: the request line and headers
//! ([`RequestLimitsLayer`], before routing) and the body
//! ([`BodyLimitLayer`], per route).
//!
//! Refuses with:
//! - 414 when the path and query exceed `limits.max_uri_length`;
//! - 431 when there are more than `limits.max_headers` headers or their total
//!   size exceeds `limits.max_header_bytes`;
//! - 400 for framing that could smuggle a request past the gateway: several
//!   `Content-Length` headers (hyper refuses differing values itself and
//!   folds identical ones into one), a `Transfer-Encoding` other than `chunked`, or
//!   header names with an underscore (WSGI and CGI servers read `X_User_Id` as
//!   `X-User-Id`, which would let a client forge a header the gateway strips);
//!   hyper itself refuses conflicting lengths and obsolete line folding
//!   (bare line feeds are read as line ends, as RFC 9112 §2.2 allows; the
//!   upstream receives the request re-framed with CRLF). A request with both `Content-Length` and
//!   `Transfer-Encoding: chunked` over HTTP/1.1 is read as chunked with the
//!   length discarded and its connection closed after the answer (RFC 9112
//!   §6.3): whatever follows the chunked body is never read as a request, and
//!   the upstream receives the request re-framed by the gateway. (hyper
//!   removes the `Content-Length` before this gate runs, so the gateway cannot
//!   refuse it with 400; over HTTP/2, where both can reach the gate, it does);
//! - 413 when the body is larger than the route's `max_body`: at once from
//!   `Content-Length`, or as soon as a streamed body passes the limit.
//!
//! ```
//! use portcullis::gates::limits::check_framing;
//! let mut headers = http::HeaderMap::new();
//! headers.insert("content-length", "5".parse().unwrap());
//! headers.insert("transfer-encoding", "chunked".parse().unwrap());
//! assert!(check_framing(&headers).is_err());
//! ```

use http::{HeaderMap, Request, Response, header};
use http_body::Body as _;
use tower::Layer;

use crate::body::{Body, LimitedBody, boxed};
use crate::error::{Reason, Rejection};
use crate::gates::gate::{CheckRequest, Gate};

/// Checks request framing for smuggling ambiguities.
pub fn check_framing(headers: &HeaderMap) -> Result<(), Reason> {
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    let encodings: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if lengths > 1 {
        return Err(Reason::AmbiguousRequest { detail: "Send at most one Content-Length header." });
    }
    if lengths == 1 && !encodings.is_empty() {
        return Err(Reason::AmbiguousRequest { detail: "Send Content-Length or Transfer-Encoding, not both." });
    }
    if encodings.len() > 1 || encodings.first().is_some_and(|te| !te.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        return Err(Reason::AmbiguousRequest { detail: "The only accepted Transfer-Encoding is chunked." });
    }
    if headers.keys().any(|name| name.as_str().contains('_')) {
        return Err(Reason::AmbiguousRequest { detail: "Header names with underscores are not accepted." });
    }
    Ok(())
}

/// Header and URI limits, checked before anything else reads the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimitsLayer {
    /// Most headers.
    pub max_headers: usize,
    /// Largest total header size in bytes.
    pub max_header_bytes: usize,
    /// Longest path and query in bytes.
    pub max_uri_length: usize,
}

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = Gate<S, Self>;
    fn layer(&self, inner: S) -> Self::Service {
        Gate::new(inner, *self)
    }
}

impl CheckRequest for RequestLimitsLayer {
    fn check(&self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        self.limits(request).map_err(|reason| Rejection::new(reason).into_response())
    }
}

impl RequestLimitsLayer {
    fn limits<B>(&self, request: &Request<B>) -> Result<(), Reason> {
        let uri_length = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        if uri_length > self.max_uri_length {
            return Err(Reason::UriTooLong { limit: self.max_uri_length });
        }
        let headers = request.headers();
        if headers.len() > self.max_headers {
            return Err(Reason::HeadersTooLarge { detail: format!("Send at most {} headers.", self.max_headers) });
        }
        let size: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
        if size > self.max_header_bytes {
            return Err(Reason::HeadersTooLarge {
                detail: format!("The headers may total at most {} bytes.", self.max_header_bytes),
            });
        }
        check_framing(headers)
    }
}

/// The body limit of one route, and the time allowed to receive the body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    /// Largest body in bytes.
    pub max_body: u64,
    /// Time to receive the whole body.
    pub body_timeout: std::time::Duration,
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = Gate<S, Self>;
    fn layer(&self, inner: S) -> Self::Service {
        Gate::new(inner, *self)
    }
}

impl CheckRequest for BodyLimitLayer {
    fn check(&self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return Err(Rejection::new(Reason::PayloadTooLarge { limit: self.max_body }).into_response());
        }
        if !request.body().is_end_stream() {
            let body = std::mem::take(request.body_mut());
            *request.body_mut() = boxed(LimitedBody::new(body, self.max_body).with_timeout(self.body_timeout));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        map
    }

    #[test]
    fn framing_ambiguities_are_refused() {
        assert!(check_framing(&headers(&[("content-length", "1"), ("content-length", "1")])).is_err());
        assert!(check_framing(&headers(&[("content-length", "1"), ("transfer-encoding", "chunked")])).is_err());
        assert!(check_framing(&headers(&[("transfer-encoding", "gzip, chunked")])).is_err());
        assert!(
            check_framing(&headers(&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")])).is_err()
        );
        assert!(check_framing(&headers(&[("x_user_id", "admin")])).is_err());
        assert!(check_framing(&headers(&[("transfer-encoding", "Chunked")])).is_ok());
        assert!(check_framing(&headers(&[("content-length", "10"), ("x-user-id", "a")])).is_ok());
    }

    #[test]
    fn header_limits() {
        let limits = RequestLimitsLayer { max_headers: 2, max_header_bytes: 64, max_uri_length: 16 };
        let ok = Request::get("/a").header("a", "1").body(()).unwrap();
        assert!(limits.limits(&ok).is_ok());
        let many = Request::get("/a").header("a", "1").header("b", "2").header("c", "3").body(()).unwrap();
        assert!(matches!(limits.limits(&many), Err(Reason::HeadersTooLarge { .. })));
        let big = Request::get("/a").header("a", "x".repeat(80)).body(()).unwrap();
        assert!(matches!(limits.limits(&big), Err(Reason::HeadersTooLarge { .. })));
        let long = Request::get("/aaaaaaaaaaaaaaaaaaaa").body(()).unwrap();
        assert!(matches!(limits.limits(&long), Err(Reason::UriTooLong { .. })));
    }
}
