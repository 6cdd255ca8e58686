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

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response, header};
use http_body::Body as _;
use tower::{Layer, Service};

use crate::body::{Body, LimitedBody, boxed};
use crate::error::{Reason, Rejection};

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
    type Service = RequestLimits<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestLimits { inner, limits: *self }
    }
}

/// The service of [`RequestLimitsLayer`].
#[derive(Debug, Clone)]
pub struct RequestLimits<S> {
    inner: S,
    limits: RequestLimitsLayer,
}

impl RequestLimitsLayer {
    fn check<B>(&self, request: &Request<B>) -> Result<(), Reason> {
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

impl<S> Service<Request<Body>> for RequestLimits<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<S::Future, std::future::Ready<Result<Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self.limits.check(&request) {
            Ok(()) => futures_util::future::Either::Left(self.inner.call(request)),
            Err(reason) => {
                futures_util::future::Either::Right(std::future::ready(Ok(Rejection::new(reason).into_response())))
            }
        }
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
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit { inner, limits: *self }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limits: BodyLimitLayer,
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<S::Future, std::future::Ready<Result<Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let BodyLimitLayer { max_body, body_timeout } = self.limits;
        if declared.is_some_and(|len| len > max_body) {
            let rejection = Rejection::new(Reason::PayloadTooLarge { limit: max_body });
            return futures_util::future::Either::Right(std::future::ready(Ok(rejection.into_response())));
        }
        let request = request.map(|body| {
            if body.is_end_stream() { body } else { boxed(LimitedBody::new(body, max_body).with_timeout(body_timeout)) }
        });
        futures_util::future::Either::Left(self.inner.call(request))
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
        assert!(limits.check(&ok).is_ok());
        let many = Request::get("/a").header("a", "1").header("b", "2").header("c", "3").body(()).unwrap();
        assert!(matches!(limits.check(&many), Err(Reason::HeadersTooLarge { .. })));
        let big = Request::get("/a").header("a", "x".repeat(80)).body(()).unwrap();
        assert!(matches!(limits.check(&big), Err(Reason::HeadersTooLarge { .. })));
        let long = Request::get("/aaaaaaaaaaaaaaaaaaaa").body(()).unwrap();
        assert!(matches!(limits.check(&long), Err(Reason::UriTooLong { .. })));
    }
}
