//! Authentication: who is calling.
//!
//! Every route has an auth mode, `required` unless the configuration says
//! otherwise (deny by default):
//!
//! - `none`: the request passes untouched, credentials and all, and the
//!   upstream handles its own authentication;
//! - `optional`: a valid bearer token makes the caller known; no token
//!   passes anonymously; an invalid token is refused (a client that sends a
//!   token expects it to count);
//! - `required`: a valid bearer token is needed.
//!
//! Tokens are Portcullis's own access tokens, checked without a database
//! round trip ([`crate::identity::tokens`]). Refusals are 401 with
//! `WWW-Authenticate: Bearer` and the RFC 6750 error code; the audit event
//! names the exact check that failed. A route with `fresh_within` also
//! demands a password typed that recently (RFC 9470 step-up:
//! `error="insufficient_user_authentication"`). The verified claims go to
//! later gates as a [`Principal`]. The proxy removes the client's
//! `Authorization` header before the upstream sees the request (unless the
//! route sets `forward_token`) and forwards the identity instead (see
//! [`crate::proxy::identity`]).
//!
//! ```no_run
//! # fn demo(identity: std::sync::Arc<portcullis::identity::Identity>) {
//! use portcullis::config::AuthMode;
//! use portcullis::gates::authn::AuthnLayer;
//! let _layer = AuthnLayer::new(AuthMode::Required, None, identity);
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, header};
use tower::Layer;

use crate::api::bearer_token;
use crate::body::Body;
use crate::config::AuthMode;
use crate::error::{Reason, Rejection};
use crate::gates::gate::{CheckRequest, Gate};
use crate::gates::session::SessionRefused;
use crate::identity::Identity;
use crate::identity::tokens::AccessClaims;

/// The authenticated caller, in the request extensions.
#[derive(Debug, Clone)]
pub struct Principal(pub Arc<AccessClaims>);

/// Enforces a route's [`AuthMode`].
#[derive(Debug, Clone)]
pub struct AuthnLayer {
    mode: AuthMode,
    fresh_within: Option<Duration>,
    identity: Arc<Identity>,
}

impl AuthnLayer {
    /// A layer for a route with `mode` (and `fresh_within`, if set).
    pub fn new(mode: AuthMode, fresh_within: Option<Duration>, identity: Arc<Identity>) -> Self {
        Self { mode, fresh_within, identity }
    }

    fn authenticate<B>(&self, request: &mut Request<B>) -> Result<(), Reason> {
        if self.mode == AuthMode::None {
            return Ok(());
        }
        let presented = request.headers().get_all(header::AUTHORIZATION).iter().count();
        let session = request.extensions().get::<Principal>().map(|p| p.0.clone());
        let claims = match (presented, bearer_token(request.headers())) {
            // Authenticated by the session cookie (see `gates::session`).
            (0, _) if session.is_some() => session.ok_or(Reason::Internal)?,
            (0, _) if self.mode == AuthMode::Optional => return Ok(()),
            (0, _) => {
                let check = match request.extensions().get::<SessionRefused>() {
                    Some(refused) => format!("session cookie: {}", refused.0),
                    None => "no credentials presented".into(),
                };
                return Err(Reason::Unauthenticated { error: None, check });
            }
            (_, None) => {
                return Err(Reason::Unauthenticated {
                    error: Some("invalid_request"),
                    check: "Authorization is not a single Bearer token".into(),
                });
            }
            (_, Some(token)) => self
                .identity
                .verify(token)
                .map_err(|e| Reason::Unauthenticated { error: Some("invalid_token"), check: e.to_string() })?,
        };
        if let Some(fresh_within) = self.fresh_within {
            let age = crate::store::now().saturating_sub(claims.auth_time);
            if u64::try_from(age).unwrap_or(u64::MAX) > fresh_within.as_secs() {
                return Err(Reason::FreshLoginRequired { max_age: fresh_within.as_secs() });
            }
        }
        request.extensions_mut().insert(Principal(claims));
        Ok(())
    }
}

impl<S> Layer<S> for AuthnLayer {
    type Service = Gate<S, Self>;
    fn layer(&self, inner: S) -> Self::Service {
        Gate::new(inner, self.clone())
    }
}

impl CheckRequest for AuthnLayer {
    fn check(&self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        self.authenticate(request).map_err(|reason| Rejection::new(reason).into_response())
    }
}
