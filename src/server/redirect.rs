//! The plain-HTTP listener's answer: a 308 redirect to the same path and
//! query on HTTPS.
//!
//! The target host is `server.public_url` when set; otherwise the request's
//! own `Host` (validated as a host name, its port replaced by the HTTPS port).

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::Service;

use crate::body::{Body, empty};
use crate::error::{Reason, Rejection};

/// Redirects every request to HTTPS.
#[derive(Debug, Clone)]
pub struct RedirectToHttps {
    public_url: Option<String>,
    https_port: u16,
}

impl RedirectToHttps {
    /// Redirects to `public_url`, or to the request's host on `https_port`.
    pub fn new(public_url: Option<String>, https_port: u16) -> Self {
        Self { public_url, https_port }
    }

    fn location<B>(&self, request: &Request<B>) -> Option<String> {
        let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let path = if path.starts_with('/') { path } else { "/" };
        if let Some(base) = &self.public_url {
            return Some(format!("{base}{path}"));
        }
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
            .or_else(|| request.uri().authority().cloned())?;
        if host.as_str().contains('@') {
            return None;
        }
        let name = host.host();
        let name = if name.contains(':') && !name.starts_with('[') { format!("[{name}]") } else { name.to_owned() };
        Some(if self.https_port == 443 {
            format!("https://{name}{path}")
        } else {
            format!("https://{name}:{}{path}", self.https_port)
        })
    }
}

impl Service<Request<Body>> for RedirectToHttps {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let response = match self.location(&request).and_then(|l| HeaderValue::from_str(&l).ok()) {
            Some(location) => {
                let mut response = Response::new(empty());
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            None => {
                Rejection::new(Reason::AmbiguousRequest { detail: "A valid Host header is required." }).into_response()
            }
        };
        std::future::ready(Ok(response))
    }
}

/// Refuses every request: plain HTTP from a peer that is not a trusted proxy.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefuseUntrustedPeer;

impl Service<Request<Body>> for RefuseUntrustedPeer {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<Body>) -> Self::Future {
        std::future::ready(Ok(Rejection::new(Reason::UntrustedPeer).into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(redirect: &RedirectToHttps, host: &str, path: &str) -> Option<String> {
        redirect.location(&Request::get(path).header("host", host).body(()).unwrap())
    }

    #[test]
    fn redirect_targets() {
        let r = RedirectToHttps::new(None, 8443);
        assert_eq!(location(&r, "localhost:8080", "/a?b=1").as_deref(), Some("https://localhost:8443/a?b=1"));
        assert_eq!(location(&r, "[::1]:8080", "/").as_deref(), Some("https://[::1]:8443/"));
        assert_eq!(location(&r, "evil@host", "/"), None);
        let r = RedirectToHttps::new(Some("https://api.example.com".into()), 443);
        assert_eq!(location(&r, "attacker.example", "/x").as_deref(), Some("https://api.example.com/x"));
        let r = RedirectToHttps::new(None, 443);
        assert_eq!(location(&r, "api.example.com", "/x").as_deref(), Some("https://api.example.com/x"));
    }
}
