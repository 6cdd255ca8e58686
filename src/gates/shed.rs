//! Load shedding: a cap on the requests in progress in this process. Past
//! it, a request is answered `503` with `Retry-After: 1` at once, instead of
//! queueing without bound while latency grows for everyone.
//!
//! The count covers a request from the moment it enters the gateway until
//! its response headers are ready (the same span as `request_timeout`).
//!
//! ```
//! use portcullis::gates::shed::InFlight;
//! let in_flight = InFlight::new(1);
//! let first = in_flight.try_enter().expect("one slot");
//! assert!(in_flight.try_enter().is_none(), "full");
//! drop(first);
//! assert!(in_flight.try_enter().is_some());
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::{Reason, Rejection};

/// Requests that entered the gateway since the process started (every
/// [`InFlight`]), read by the password-hashing threads to tell whether
/// other requests are being served ([`crate::identity::hash_pool`]).
static STARTED: AtomicU64 = AtomicU64::new(0);

/// How many requests entered the gateway since the process started.
pub fn requests_started() -> u64 {
    STARTED.load(Ordering::Relaxed)
}

/// The shared count of requests in progress.
#[derive(Debug, Clone)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
    max: usize,
}

/// One request's slot; freed when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    /// At most `max` requests at once.
    pub fn new(max: usize) -> Self {
        Self { count: Arc::new(AtomicUsize::new(0)), max }
    }

    /// A slot, or `None` when `max` requests are already in progress.
    pub fn try_enter(&self) -> Option<Slot> {
        let previous = self.count.fetch_add(1, Ordering::AcqRel);
        STARTED.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.count.clone());
        (previous < self.max).then_some(slot)
    }

    /// Requests in progress now.
    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// Sheds requests beyond the cap of an [`InFlight`].
#[derive(Debug, Clone)]
pub struct LoadShedLayer(pub InFlight);

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LoadShed { inner, in_flight: self.0.clone() }
    }
}

/// The service of [`LoadShedLayer`].
#[derive(Debug, Clone)]
pub struct LoadShed<S> {
    inner: S,
    in_flight: InFlight,
}

pin_project! {
    /// The inner future, holding its slot until it completes.
    pub struct Holding<F> {
        #[pin]
        inner: F,
        slot: Option<Slot>,
    }
}

impl<F: Future> Future for Holding<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.slot.take();
        Poll::Ready(output)
    }
}

impl<S> Service<Request<Body>> for LoadShed<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Holding<S::Future>, std::future::Ready<Result<Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self.in_flight.try_enter() {
            Some(slot) => Either::Left(Holding { inner: self.inner.call(request), slot: Some(slot) }),
            None => Either::Right(std::future::ready(Ok(Rejection::new(Reason::Overloaded).into_response()))),
        }
    }
}
