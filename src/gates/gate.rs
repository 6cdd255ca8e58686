//! The shape every refusing gate shares: look at the request, then either
//! pass it on (possibly changed) or answer at once.
//!
//! A gate implements [`CheckRequest`]; [`Gate`] is the tower service around
//! it, so each gate module holds only its own logic.
//!
//! ```
//! use http::{Request, Response};
//! use portcullis::body::Body;
//! use portcullis::error::{Reason, Rejection};
//! use portcullis::gates::gate::CheckRequest;
//!
//! #[derive(Clone)]
//! struct NoDelete;
//! impl CheckRequest for NoDelete {
//!     fn check(&self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
//!         if request.method() == http::Method::DELETE {
//!             return Err(Rejection::new(Reason::MethodNotAllowed { allowed: vec![] }).into_response());
//!         }
//!         Ok(())
//!     }
//! }
//! ```

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use tower::Service;

use crate::body::Body;

/// The decision of one gate.
pub trait CheckRequest: Clone {
    /// `Ok` passes the (possibly changed) request on; `Err` is the answer.
    #[allow(clippy::result_large_err, reason = "the answer is built only when refusing, and moved once")]
    fn check(&self, request: &mut Request<Body>) -> Result<(), Response<Body>>;
}

/// A gate's service: runs the check, then the inner service or the answer.
#[derive(Debug, Clone)]
pub struct Gate<S, C> {
    inner: S,
    check: C,
}

impl<S, C> Gate<S, C> {
    /// `check` in front of `inner`.
    pub fn new(inner: S, check: C) -> Self {
        Self { inner, check }
    }
}

impl<S, C> Service<Request<Body>> for Gate<S, C>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    C: CheckRequest,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, std::future::Ready<Result<Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match self.check.check(&mut request) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(answer) => Either::Right(std::future::ready(Ok(answer))),
        }
    }
}
