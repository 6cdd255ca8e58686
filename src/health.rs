//! Built-in endpoints: `GET /healthz` (the process is alive) and
//! `GET /readyz` (the store answers within two seconds).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::Service;

use crate::body::{Body, full};
use crate::error::{Reason, Rejection};
use crate::gates::route::Builtin;
use crate::store::Store;

/// Answers the built-in endpoints.
#[derive(Debug, Clone)]
pub struct Health {
    store: Store,
}

impl Health {
    /// Health endpoints reporting on `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Service<Request<Body>> for Health {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let store = self.store.clone();
        let builtin = request.extensions().get::<Builtin>().copied();
        Box::pin(async move {
            Ok(match builtin {
                Some(Builtin::Healthz) => json(StatusCode::OK, r#"{"status":"ok"}"#),
                Some(Builtin::Readyz) => match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
                    Ok(Ok(())) => json(StatusCode::OK, r#"{"status":"ready","store":"ok"}"#),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "readiness check: store unreachable");
                        json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready","store":"unreachable"}"#)
                    }
                    Err(_) => json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready","store":"timeout"}"#),
                },
                None => Rejection::new(Reason::NotFound).into_response(),
            })
        })
    }
}
