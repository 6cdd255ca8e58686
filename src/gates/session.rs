//! Session authentication: a request without an `Authorization` header but
//! with the session cookie is authenticated by its session (looked up in
//! the store) and, for unsafe methods, must pass the CSRF checks
//! ([`crate::gates::csrf`]). The session cookie is then removed from the
//! `Cookie` header, so the upstream never sees it; the upstream gets the
//! caller's identity exactly as for a bearer token.
//!
//! Bearer tokens win: a request with an `Authorization` header is left to
//! [`crate::gates::authn`] and needs no CSRF token.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::{HeaderValue, Request, Response, header};
use tower::{Layer, Service, ServiceExt as _};

use crate::body::{Body, ResponseFuture};
use crate::error::{Reason, Rejection};
use crate::gates::authn::Principal;
use crate::gates::csrf;
use crate::gates::route::RouteService;
use crate::identity::Identity;
use crate::identity::sessions::{ActiveSession, SessionError};

/// Why a presented session cookie did not authenticate (for the 401's log line).
#[derive(Debug, Clone)]
pub struct SessionRefused(pub String);

/// Marks a request authenticated by its session cookie.
#[derive(Debug, Clone)]
pub struct SessionAuth {
    /// The session's public id.
    pub session_id: String,
}

/// Builds [`SessionGate`]s.
#[derive(Clone)]
pub struct SessionLayer {
    identity: Arc<Identity>,
}

impl SessionLayer {
    /// Sessions of `identity`.
    pub fn new(identity: Arc<Identity>) -> Self {
        Self { identity }
    }
}

impl Layer<RouteService> for SessionLayer {
    type Service = SessionGate;
    fn layer(&self, inner: RouteService) -> SessionGate {
        SessionGate { inner, identity: self.identity.clone() }
    }
}

/// The service of [`SessionLayer`].
#[derive(Clone)]
pub struct SessionGate {
    inner: RouteService,
    identity: Arc<Identity>,
}

impl Service<Request<Body>> for SessionGate {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let settings = self.identity.sessions();
        let token = match settings.cookie_value(request.headers()) {
            Some(token) if settings.enabled && !request.headers().contains_key(header::AUTHORIZATION) => {
                token.to_owned()
            }
            _ => return Box::pin(self.inner.call(request)),
        };
        remove_cookie(request.headers_mut(), &settings.cookie);
        let identity = self.identity.clone();
        let inner = self.inner.clone();
        let lookup = {
            let identity = identity.clone();
            async move { identity.session(&token).await }
        };
        Box::pin(lookup.then(move |outcome| match admit(outcome, &identity, &mut request) {
            Ok(()) => Either::Left(inner.oneshot(request)),
            Err(refusal) => Either::Right(std::future::ready(Ok(refusal))),
        }))
    }
}

/// Applies a session lookup to the request: its principal (after the CSRF
/// checks), or why the cookie did not count.
#[allow(clippy::result_large_err, reason = "the answer is built only when refusing, and moved once")]
fn admit(
    outcome: Result<ActiveSession, SessionError>,
    identity: &Identity,
    request: &mut Request<Body>,
) -> Result<(), Response<Body>> {
    match outcome {
        Ok(active) => {
            let allowed = &identity.sessions().allowed_origins;
            let host = csrf::request_host(request.uri(), request.headers());
            if let Err(reason) =
                csrf::check(request.method(), host, request.headers(), None, &active.record.csrf_token, allowed)
            {
                let mut refusal = Rejection::new(reason).into_response();
                refusal.extensions_mut().insert(Principal(active.claims));
                return Err(refusal);
            }
            request.extensions_mut().insert(SessionAuth { session_id: active.record.id.clone() });
            request.extensions_mut().insert(Principal(active.claims));
        }
        Err(SessionError::Store(error)) => {
            tracing::error!(%error, "cannot check a session");
            return Err(Rejection::new(Reason::Internal).into_response());
        }
        Err(refused) => {
            request.extensions_mut().insert(SessionRefused(refused.to_string()));
        }
    }
    Ok(())
}

/// Removes cookie `name` from the `Cookie` header(s), keeping the others.
pub fn remove_cookie(headers: &mut http::HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(n, _)| n != name))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_session_cookie_is_removed() {
        let mut headers = http::HeaderMap::new();
        headers.append(header::COOKIE, "theme=dark; __Host-s=secret".parse().unwrap());
        headers.append(header::COOKIE, "lang=en".parse().unwrap());
        remove_cookie(&mut headers, "__Host-s");
        assert_eq!(headers.get_all(header::COOKIE).iter().collect::<Vec<_>>(), ["theme=dark; lang=en"]);
        remove_cookie(&mut headers, "theme");
        remove_cookie(&mut headers, "lang");
        assert!(headers.get(header::COOKIE).is_none());
    }
}
