//! The `[metrics] listen` listener: plain HTTP/1.1 for a Prometheus
//! scraper, answering only `GET /metrics` and only to the `[metrics] allow`
//! networks (default loopback). At most 16 connections, 10 s each.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::stack::Shared;

/// Serves `/metrics` on `listener` forever.
pub(super) async fn serve(listener: TcpListener, allow: Vec<IpNet>, shared: Shared) {
    let slots = Arc::new(Semaphore::new(16));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !allow.iter().any(|net| net.contains(&peer.ip())) {
            tracing::warn!(peer = %peer.ip(), "metrics listener: peer not in [metrics] allow");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &shared).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(10), connection).await;
            drop(slot);
        });
    }
}

async fn answer(request: &Request<Incoming>, shared: &Shared) -> Response<axum::body::Body> {
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    crate::api::metrics::render(shared).await
}

fn plain(status: StatusCode, text: &'static str) -> Response<axum::body::Body> {
    let mut response = Response::new(axum::body::Body::from(text));
    *response.status_mut() = status;
    response
}
