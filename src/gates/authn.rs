//! Authentication: who is calling.
//!
//! Every route has an auth mode, `required` unless the configuration says
//! otherwise (deny by default). This gate enforces the mode:
//!
//! - `none`: the request passes untouched, credentials and all, and the
//!   upstream handles its own authentication;
//! - `optional` and `required`: the gateway must recognise the caller. No
//!   credential verifier is configured in this build yet (the identity
//!   service adds bearer tokens and sessions), so no credential is ever
//!   accepted: `optional` routes pass anonymously with the client's
//!   `Authorization` and `Cookie` headers removed, and `required` routes
//!   answer 401 with `WWW-Authenticate: Bearer`. A client-supplied
//!   credential can never be mistaken for a verified one.
//!
//! ```
//! use portcullis::config::AuthMode;
//! use portcullis::gates::authn::AuthnLayer;
//! let _layer = AuthnLayer::new(AuthMode::Required);
//! ```

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower::{Layer, Service};

use crate::body::Body;
use crate::config::AuthMode;
use crate::error::{Reason, Rejection};

/// Enforces a route's [`AuthMode`].
#[derive(Debug, Clone, Copy)]
pub struct AuthnLayer {
    mode: AuthMode,
}

impl AuthnLayer {
    /// A layer for a route with `mode`.
    pub fn new(mode: AuthMode) -> Self {
        Self { mode }
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate { inner, mode: self.mode }
    }
}

/// The service of [`AuthnLayer`].
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    mode: AuthMode,
}

impl<S> Service<Request<Body>> for Authenticate<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<S::Future, std::future::Ready<Result<Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        match self.mode {
            AuthMode::None => Either::Left(self.inner.call(request)),
            AuthMode::Optional => {
                request.headers_mut().remove(header::AUTHORIZATION);
                request.headers_mut().remove(header::COOKIE);
                Either::Left(self.inner.call(request))
            }
            AuthMode::Required => {
                let presented = request.headers().contains_key(header::AUTHORIZATION);
                let reason = Reason::Unauthenticated {
                    error: presented.then_some("invalid_token"),
                    check: if presented {
                        "no credential verifier is configured for this route".to_owned()
                    } else {
                        "no credentials presented".to_owned()
                    },
                };
                Either::Right(std::future::ready(Ok(Rejection::new(reason).into_response())))
            }
        }
    }
}
