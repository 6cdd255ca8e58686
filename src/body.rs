//! The body type every gate speaks, and a body that enforces a size limit
//! while it streams.
//!
//! ```
//! use http_body_util::BodyExt;
//! use portcullis::body::{full, LimitedBody, BodyTooLarge};
//! # tokio_test_block_on(async {
//! let body = LimitedBody::new(full("0123456789"), 4);
//! let err = body.collect().await.unwrap_err();
//! assert!(err.downcast_ref::<BodyTooLarge>().is_some());
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Any error a body can produce.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response inside the gateway.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The boxed future of a gate that does work after its inner service.
pub type ResponseFuture =
    Pin<Box<dyn std::future::Future<Output = Result<http::Response<Body>, std::convert::Infallible>> + Send>>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body holding `data`.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Wraps any body into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// The error a [`LimitedBody`] yields when the body is not complete by its deadline.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body not received in time")]
pub struct BodyTimedOut;

/// The error a [`LimitedBody`] yields once more than its limit has streamed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    /// The limit in bytes.
    pub limit: u64,
}

pin_project_lite::pin_project! {
    /// A body that fails with [`BodyTooLarge`] as soon as more than `limit`
    /// bytes have passed, so a chunked upload cannot exceed the limit, and
    /// with [`BodyTimedOut`] when it is not complete by its deadline.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<B> LimitedBody<B> {
    /// Limits `inner` to `limit` bytes.
    pub fn new(inner: B, limit: u64) -> Self {
        Self { inner, remaining: limit, limit, deadline: None }
    }

    /// Also fails the body if it is not complete within `timeout`.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        self
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        *this.remaining = 0;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: *this.limit }))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                *this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The first error of type `E` in `error`'s chain (itself, then its sources).
pub fn find_cause<E: std::error::Error + Copy + 'static>(error: &(dyn std::error::Error + 'static)) -> Option<E> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(*found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limited_body_passes_bodies_up_to_the_limit() {
        let collected = LimitedBody::new(full("0123"), 4).collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"0123");
    }

    #[tokio::test]
    async fn limited_body_fails_past_the_limit() {
        let err = LimitedBody::new(full("01234"), 4).collect().await.unwrap_err();
        assert_eq!(find_cause::<BodyTooLarge>(err.as_ref()).map(|e| e.limit), Some(4));
    }

    #[tokio::test]
    async fn limited_body_fails_after_its_deadline() {
        let body = http_body_util::StreamBody::new(futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>());
        let limited = LimitedBody::new(body, 100).with_timeout(std::time::Duration::from_millis(20));
        let err = limited.collect().await.unwrap_err();
        assert!(find_cause::<BodyTimedOut>(err.as_ref()).is_some());
    }
}
