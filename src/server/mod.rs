//! Start-up, listeners, certificate reload on SIGHUP and graceful shutdown on
//! SIGTERM/SIGINT.

pub mod listener;
pub mod redirect;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::config::secrets::{Environment, STORE_PASSWORD, SecretKind, read_secret};
use crate::proxy::upstream_client;
use crate::stack;
use crate::store::Store;
use listener::{ConnectionPolicy, Listener, accept_loop};
use tls::ReloadingCertificate;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(config: Config, env: &Environment) -> anyhow::Result<()> {
    let store_password = read_secret(env, STORE_PASSWORD, SecretKind::Password)?;
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.server.data_dir.display()))?;
    let store = Store::connect(&config.store.url, store_password.as_ref()).await.context("cannot open the store")?;
    let certificate = ReloadingCertificate::load(&config)?;
    let acceptor = TlsAcceptor::from(tls::server_config(certificate.clone())?);
    let client = upstream_client(Duration::from_secs(30));
    let gateway = stack::gateway(&config, store.clone(), &client).map_err(anyhow::Error::msg)?;

    let https = bind(config.server.https).await?;
    let https_addr = https.local_addr()?;
    let http = match config.server.http {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let http_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
    let http_mode = match (&http_addr, config.server.http_behind_proxy) {
        (None, _) => "off",
        (Some(_), false) => "redirects to https",
        (Some(_), true) => "gateway for trusted proxies only",
    };
    tracing::info!(
        https = %https_addr,
        http = %http_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        http_mode,
        tls = %certificate.source().describe(),
        store = store.backend(),
        routes = config.routes.len(),
        config = %config.source,
        "portcullis listening on https://{https_addr}{}",
        http_addr.map(|a| format!(" and http://{a} ({http_mode})")).unwrap_or_default()
    );
    for warning in &config.warnings {
        tracing::warn!(%warning, "configuration warning");
    }

    let policy = ConnectionPolicy {
        slots: Arc::new(Semaphore::new(config.limits.max_connections)),
        limits: config.limits.clone(),
    };
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut loops = tokio::task::JoinSet::new();
    let https_listener = Listener { tls: Some(acceptor), service: gateway.clone(), trusted_only: None };
    loops.spawn(accept_loop(https, https_listener, policy.clone(), graceful.clone(), stop_rx.clone()));
    if let Some(http) = http {
        let listener = if config.server.http_behind_proxy {
            let trusted = config.server.trusted_proxies.clone().into();
            Listener {
                tls: None,
                service: gateway.clone(),
                trusted_only: Some((trusted, stack::refuse_untrusted(&config))),
            }
        } else {
            Listener { tls: None, service: stack::redirect(&config, https_addr.port()), trusted_only: None }
        };
        loops.spawn(accept_loop(http, listener, policy.clone(), graceful.clone(), stop_rx.clone()));
    }
    tokio::spawn(reload_on_sighup(certificate));

    wait_for_shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    while loops.join_next().await.is_some() {}
    let graceful = Arc::try_unwrap(graceful).map_err(|_| anyhow::anyhow!("listeners still running"))?;
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
}

#[cfg(unix)]
async fn reload_on_sighup(certificate: Arc<ReloadingCertificate>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        match certificate.reload() {
            Ok(()) => {
                tracing::info!(target: "audit", security = true, event.action = "tls.certificate-reloaded", "TLS certificate reloaded")
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "TLS certificate reload failed; keeping the current one")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_certificate: Arc<ReloadingCertificate>) {}

async fn wait_for_shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
