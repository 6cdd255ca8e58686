//! Accept loops: connection cap, TLS handshake, HTTP/1.1 and HTTP/2 serving
//! with header limits and timeouts, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::{Body, boxed};
use crate::config::Limits;
use crate::gates::context::ConnectionInfo;
use crate::proxy::forwarded::is_trusted;
use crate::stack::GatewayService;

/// What one listener serves.
#[derive(Clone)]
pub struct Listener {
    /// TLS for HTTPS listeners.
    pub tls: Option<TlsAcceptor>,
    /// The service for accepted peers.
    pub service: GatewayService,
    /// For listeners open to trusted proxies only: the ranges and the service
    /// answering everyone else.
    pub trusted_only: Option<(Arc<[IpNet]>, GatewayService)>,
}

/// Shared by every listener: the connection cap and the HTTP settings.
#[derive(Clone)]
pub struct ConnectionPolicy {
    /// Free connection slots.
    pub slots: Arc<Semaphore>,
    /// Limits and timeouts.
    pub limits: Limits,
}

/// Accepts connections until `shutdown` turns true, then returns.
pub async fn accept_loop(
    tcp: TcpListener,
    listener: Listener,
    policy: ConnectionPolicy,
    graceful: Arc<GracefulShutdown>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&policy.limits));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = policy.slots.clone().try_acquire_owned() else {
            tracing::warn!(target: "audit", security = true, event.action = "connection.refused", client.ip = %peer.ip(), "connection limit reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let listener = listener.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = policy.limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, listener, &builder, watcher, handshake_timeout).await;
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    handshake_timeout: Duration,
) {
    let service = match &listener.trusted_only {
        Some((trusted, refuse)) if !is_trusted(peer.ip(), trusted) => refuse.clone(),
        _ => listener.service.clone(),
    };
    let tls = listener.tls.is_some();
    let info = ConnectionInfo { peer, tls };
    let service = TowerToHyperService::new(WithConnection { inner: service, info });
    let result = match listener.tls {
        Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                watcher.watch(builder.serve_connection(TokioIo::new(tls_stream), service).into_owned()).await
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, client.ip = %peer.ip(), "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(client.ip = %peer.ip(), "TLS handshake timed out");
                return;
            }
        },
        None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await,
    };
    if let Err(error) = result {
        tracing::debug!(%error, client.ip = %peer.ip(), "connection ended with an error");
    }
}

/// Adapts hyper's request to the gateway: boxes the body and records the connection.
#[derive(Clone)]
struct WithConnection {
    inner: GatewayService,
    info: ConnectionInfo,
}

impl tower::Service<http::Request<Incoming>> for WithConnection {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = <GatewayService as tower::Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        let mut request = request.map(boxed::<Incoming>);
        request.extensions_mut().insert(self.info);
        self.inner.call(request)
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits sit above ours, so the gateway's 431/414 answers
    // (problem+json, audited) are what clients normally see; hyper's stop only
    // grossly oversized heads.
    let head_budget = 2 * (limits.max_header_bytes + limits.max_uri_length) + 8192;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(head_budget.max(8192))
        .max_headers(2 * limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head_budget).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}
