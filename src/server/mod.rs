//! Start-up, listeners, certificate reload on SIGHUP and graceful shutdown on
//! SIGTERM/SIGINT.
//!
//! Serving runs on one thread per core, each with its own single-threaded
//! runtime, its own `SO_REUSEPORT` listening sockets (the kernel spreads new
//! connections over them) and its own upstream connection pool, the way
//! nginx runs worker processes: a request never hops between threads on its
//! way to the upstream and back. The main runtime keeps the control tasks
//! (signals, certificate reload).

pub mod listener;
mod metrics_listener;
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

use crate::audit::SecurityEvent;
use crate::audit::alerts::AlertRule;
use crate::config::secrets::{
    BOOTSTRAP_ADMIN_PASSWORD, Environment, REDIS_PASSWORD, STORE_PASSWORD, SecretKind, read_secret,
};
use crate::config::{Config, Webhook};
use crate::gates::rate_limit::store::{RateStores, RedisSettings};
use crate::gates::shed::InFlight;
use crate::identity::Identity;
use crate::identity::keys::Keys;
use crate::identity::shared_secret::SharedSecretIssuer;
use crate::proxy::upstream_client;
use crate::stack::{self, Shared};
use crate::store::Store;
use listener::{ConnectionPolicy, Listener, accept_loop};
use tls::ReloadingCertificate;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the gateway until SIGTERM or SIGINT.
pub async fn run(config: Config, env: &Environment) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("cannot create the data directory {}", config.server.data_dir.display()))?;
    let (identity, audit) = open_identity(&config, env, AuditRole::Server).await?;
    let identity = Arc::new(identity);
    let store = identity.store().clone();
    let certificate = ReloadingCertificate::load(&config)?;
    let acceptor = TlsAcceptor::from(tls::server_config(certificate.clone())?);
    // Build one stack up front so that a bad route table stops start-up here.
    let rates = rate_stores(&config, env)?;
    let config = Arc::new(config);
    let shared = Shared {
        identity: identity.clone(),
        rate_health: rates.health(),
        in_flight: InFlight::new(config.limits.max_in_flight),
        config: config.clone(),
    };
    let rate_store = rates.for_this_thread().map_err(anyhow::Error::msg)?;
    stack::gateway(&config, &shared, &upstream_client(Duration::from_secs(30)), &rate_store)
        .map_err(anyhow::Error::msg)?;

    let _sentry = match read_secret(env, crate::config::secrets::SENTRY_DSN, SecretKind::Password)? {
        Some(dsn) => Some(crate::audit::sentry::start(dsn.expose(), upstream_client(Duration::from_secs(30)))?),
        None => None,
    };
    crate::traces::start(&config.tracing, upstream_client(Duration::from_secs(30)), tokio::runtime::Handle::current())
        .context("cannot start exporting traces")?;
    // External issuers' keys before the first request (each fetch at most 5 s).
    let control_client = upstream_client(Duration::from_secs(30));
    identity.refresh_external_keys(&control_client, false).await;

    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let https = ReusePortListener::bind(config.server.https)?;
    let http = config.server.http.map(ReusePortListener::bind).transpose()?;
    let https_addr = https.addr;
    let http_addr = http.as_ref().map(|l| l.addr);
    let http_mode = match (&http_addr, config.server.http_behind_proxy) {
        (None, _) => "off",
        (Some(_), false) => "redirects to https",
        (Some(_), true) => "gateway for trusted proxies only",
    };

    let policy = ConnectionPolicy {
        slots: Arc::new(Semaphore::new(config.limits.max_connections)),
        limits: config.limits.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let sockets =
            WorkerSockets { https: https.socket(index)?, http: http.as_ref().map(|l| l.socket(index)).transpose()? };
        let worker = Worker {
            config: config.clone(),
            shared: shared.clone(),
            rates: rates.clone(),
            acceptor: acceptor.clone(),
            policy: policy.clone(),
            https_port: https_addr.port(),
            stop: stop_rx.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .spawn(move || worker.run(sockets))
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }

    tracing::info!(
        https = %https_addr,
        http = %http_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        http_mode,
        tls = %certificate.source().describe(),
        store = store.backend(),
        rate_limit_store = rates.health().status().backend,
        routes = config.routes.len(),
        workers,
        config = %config.source,
        "portcullis listening on https://{https_addr}{}",
        http_addr.map(|a| format!(" and http://{a} ({http_mode})")).unwrap_or_default()
    );
    for warning in &config.warnings {
        tracing::warn!(%warning, "configuration warning");
    }
    if let Some(addr) = config.metrics.listen {
        let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?;
        tracing::info!(metrics = %listener.local_addr()?, "serving /metrics");
        tokio::spawn(metrics_listener::serve(listener, config.metrics.allow.clone(), shared.clone()));
    }
    tokio::spawn(reload_on_sighup(certificate, identity.clone()));
    tokio::spawn(keep_identity_fresh(identity.clone(), control_client));

    wait_for_shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    })
    .await?;
    audit.flush(Duration::from_secs(10)).await;
    crate::traces::shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// A listening address bound once per worker with `SO_REUSEPORT`.
struct ReusePortListener {
    addr: SocketAddr,
    first: std::sync::Mutex<Option<std::net::TcpListener>>,
}

impl ReusePortListener {
    /// Binds the first socket, which fixes the port when `addr` asks for port 0.
    fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let first = reuseport_socket(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let addr = first.local_addr()?;
        Ok(Self { addr, first: std::sync::Mutex::new(Some(first)) })
    }

    /// The socket for worker `index`: the first one, or another on the same port.
    fn socket(&self, index: usize) -> anyhow::Result<std::net::TcpListener> {
        let taken = if index == 0 { self.first.lock().ok().and_then(|mut f| f.take()) } else { None };
        match taken {
            Some(socket) => Ok(socket),
            None => reuseport_socket(self.addr).with_context(|| format!("cannot listen on {}", self.addr)),
        }
    }
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The listening sockets of one worker.
struct WorkerSockets {
    https: std::net::TcpListener,
    http: Option<std::net::TcpListener>,
}

/// One serving thread: its own runtime, stacks and upstream pool.
struct Worker {
    config: Arc<Config>,
    shared: Shared,
    rates: RateStores,
    acceptor: TlsAcceptor,
    policy: ConnectionPolicy,
    https_port: u16,
    stop: watch::Receiver<bool>,
}

impl Worker {
    fn run(self, sockets: WorkerSockets) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start a worker runtime");
                return;
            }
        };
        runtime.block_on(self.serve(sockets));
    }

    async fn serve(self, sockets: WorkerSockets) {
        let config = &self.config;
        let client = upstream_client(Duration::from_secs(30));
        let gateway = match self
            .rates
            .for_this_thread()
            .and_then(|rates| stack::gateway(config, &self.shared, &client, &rates))
        {
            Ok(gateway) => gateway,
            Err(error) => {
                tracing::error!(%error, "cannot build the gateway");
                return;
            }
        };
        let graceful = Arc::new(GracefulShutdown::new());
        let mut loops = tokio::task::JoinSet::new();
        match TcpListener::from_std(sockets.https) {
            Ok(tcp) => {
                let listener =
                    Listener { tls: Some(self.acceptor.clone()), service: gateway.clone(), trusted_only: None };
                loops.spawn(accept_loop(tcp, listener, self.policy.clone(), graceful.clone(), self.stop.clone()));
            }
            Err(error) => tracing::error!(%error, "cannot use the HTTPS socket"),
        }
        if let Some(socket) = sockets.http {
            let listener = if config.server.http_behind_proxy {
                let trusted = config.server.trusted_proxies.clone().into();
                Listener { tls: None, service: gateway, trusted_only: Some((trusted, stack::refuse_untrusted(config))) }
            } else {
                Listener { tls: None, service: stack::redirect(config, self.https_port), trusted_only: None }
            };
            match TcpListener::from_std(socket) {
                Ok(tcp) => {
                    loops.spawn(accept_loop(tcp, listener, self.policy.clone(), graceful.clone(), self.stop.clone()));
                }
                Err(error) => tracing::error!(%error, "cannot use the HTTP socket"),
            }
        }
        while loops.join_next().await.is_some() {}
        let Ok(graceful) = Arc::try_unwrap(graceful) else { return };
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
        }
    }
}

/// The rate-limit stores of `[rate_limit]`, with the Redis password from
/// `PORTCULLIS_REDIS_PASSWORD`.
fn rate_stores(config: &Config, env: &Environment) -> anyhow::Result<RateStores> {
    let r = &config.rate_limit;
    let Some(url) = &r.redis_url else { return Ok(RateStores::memory(r.max_keys)) };
    let settings = RedisSettings {
        url: url.clone(),
        password: read_secret(env, REDIS_PASSWORD, SecretKind::Password)?,
        key_prefix: r.key_prefix.clone(),
        timeout: r.store_timeout,
        lease: r.lease,
    };
    RateStores::redis(settings, r.max_keys).map_err(anyhow::Error::msg)
}

/// Who writes audit events in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditRole {
    /// `portcullis serve`: its own spool, and the alert rules.
    Server,
    /// An administration command: a spool of its own, no alert rules (the
    /// servers evaluate those).
    Cli,
}

/// Opens the store (applying migrations), starts the audit writer (spooling
/// to the data directory while the store is down), loads the signing keys
/// and makes the first administrator from
/// `PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD` when the store has no user yet.
pub async fn open_identity(
    config: &Config,
    env: &Environment,
    role: AuditRole,
) -> anyhow::Result<(Identity, crate::audit::AuditWriter)> {
    let store_password = read_secret(env, STORE_PASSWORD, SecretKind::Password)?;
    let store = Store::connect(&config.store.url, store_password.as_ref()).await.context("cannot open the store")?;
    match store.migrate().await {
        Ok(()) => {}
        Err(error) if store.backend() == "postgres" => {
            // The database may be down at start: run without, report in /readyz.
            tracing::error!(error = %error, "cannot apply migrations now; will serve and report not ready");
        }
        Err(error) => return Err(error).context("cannot migrate the store"),
    }
    let (spool_file, alerts) = match role {
        AuditRole::Server => (crate::audit::spool::SPOOL_FILE, alert_rules(config, env)?),
        AuditRole::Cli => (crate::audit::spool::CLI_SPOOL_FILE, Vec::new()),
    };
    let settings = crate::audit::AuditSettings {
        retention: config.audit.retention,
        spool_max_bytes: config.audit.spool_max_bytes,
        alerts,
    };
    let audit = crate::audit::start(store.clone(), &config.server.data_dir, spool_file, settings)?;
    let grace = config.tokens.access_ttl + config.tokens.leeway + Duration::from_secs(60);
    let keys = Keys::load(env, &config.tokens.keys_dir, config.tokens.algorithm, grace)
        .context("cannot load the signing keys")?;
    let mut shared = Vec::new();
    for issuer in &config.tokens.shared_secret {
        let secret = crate::config::secrets::require_secret(env, &issuer.secret_env, SecretKind::Key)
            .with_context(|| format!("cannot accept the tokens of [[tokens.shared_secret]] {}", issuer.secret_env))?;
        shared.push(SharedSecretIssuer::new(issuer.clone(), &secret).map_err(anyhow::Error::msg)?);
    }
    let identity = Identity::new(store, Arc::new(keys), config.tokens.clone(), config.login.clone())
        .map_err(anyhow::Error::msg)?
        .with_shared_secret_issuers(shared)
        .with_sessions(config.sessions.clone());
    if let Some(password) = read_secret(env, BOOTSTRAP_ADMIN_PASSWORD, SecretKind::Password)?
        && crate::store::users::count(identity.store()).await.unwrap_or(1) == 0
    {
        identity
            .add_user("admin", &password, &["admin".to_owned()])
            .await
            .context("cannot create the bootstrap administrator")?;
        crate::audit::emit_system(&SecurityEvent::BootstrapAdminCreated);
    }
    Ok((identity, audit))
}

/// The `[[alert]]` rules, with webhook URLs from the environment where named.
fn alert_rules(config: &Config, env: &Environment) -> anyhow::Result<Vec<AlertRule>> {
    config
        .audit
        .alerts
        .iter()
        .map(|alert| {
            let webhook = match &alert.webhook {
                None => None,
                Some(Webhook::Url(uri)) => Some(uri.clone()),
                Some(Webhook::Env(name)) => {
                    let text = env.var(name).with_context(|| {
                        format!("the webhook of alert `{}` comes from {name}, which is not set", alert.name)
                    })?;
                    Some(crate::config::webhook_url(text).with_context(|| {
                        format!("{name} (webhook of alert `{}`) is not an http or https URL", alert.name)
                    })?)
                }
            };
            Ok(AlertRule {
                name: alert.name.clone(),
                action: alert.event.clone(),
                group_by: alert.group_by,
                threshold: alert.threshold,
                window: alert.window,
                cooldown: alert.cooldown,
                webhook,
            })
        })
        .collect()
}

/// Reloads the key directory, the revocation list and external issuers'
/// keys, and reports suppressed flood events, forever.
async fn keep_identity_fresh(identity: Arc<Identity>, client: crate::proxy::UpstreamClient) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = identity.unknown_external_kid().notified() => {
                identity.refresh_external_keys(&client, true).await;
                continue;
            }
        }
        crate::audit::flush_suppressed();
        identity.refresh_external_keys(&client, false).await;
        if let Err(error) = identity.sync_denylist().await {
            tracing::warn!(%error, "cannot refresh the revocation list");
        }
        round += 1;
        if round % 720 == 1 {
            // Hourly (and at start): drop refresh tokens long expired.
            if let Err(error) = identity.purge_expired().await {
                tracing::warn!(%error, "cannot purge expired refresh tokens");
            }
            // Sessions ended more than a day ago.
            if let Err(error) = crate::store::sessions::purge(identity.store(), crate::store::now() - 86_400).await {
                tracing::warn!(%error, "cannot purge ended sessions");
            }
        }
        if round.is_multiple_of(2) {
            match identity.reload_keys() {
                Ok(true) => crate::audit::emit_system(&SecurityEvent::KeysReloaded),
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "cannot reload the signing keys; keeping the current ones"),
            }
        }
    }
}

/// On SIGHUP: re-reads the TLS certificate and the signing keys.
#[cfg(unix)]
async fn reload_on_sighup(certificate: Arc<ReloadingCertificate>, identity: Arc<Identity>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        identity.expire_external_keys();
        identity.forget_verified_tokens();
        match identity.reload_keys() {
            Ok(_) => crate::audit::emit_system(&SecurityEvent::KeysReloaded),
            Err(error) => tracing::error!(%error, "cannot reload the signing keys; keeping the current ones"),
        }
        match certificate.reload() {
            Ok(()) => crate::audit::emit_system(&SecurityEvent::CertificateReloaded),
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "TLS certificate reload failed; keeping the current one")
            }
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_sighup(_certificate: Arc<ReloadingCertificate>, _identity: Arc<Identity>) {}

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
