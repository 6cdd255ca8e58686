//! The store: SQLite (default, WAL) or PostgreSQL, chosen by `[store] url`,
//! through one code path (sqlx's `Any` driver; the SQL is written once, with
//! `$1` placeholders, which both databases accept).
//!
//! Migrations in `migrations/` are embedded in the binary and applied at
//! start and by `portcullis migrate`. The password of a PostgreSQL store
//! comes only from `PORTCULLIS_STORE_PASSWORD` (or its `_FILE`), never from
//! the URL in the file.
//!
//! ```no_run
//! # async fn demo() -> Result<(), portcullis::store::StoreError> {
//! use portcullis::store::Store;
//! let store = Store::connect("sqlite://./data/portcullis.db", None).await?;
//! store.migrate().await?;
//! store.ping().await?;
//! # Ok(()) }
//! ```

pub mod audit;
pub mod clients;
pub mod revoked;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::secrets::Secret;

/// Why the store failed. Never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL could not be parsed.
    #[error("the store URL is invalid: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or answered with an error.
    #[error("the store failed: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("a store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// A connection pool to the configured database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: &'static str,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens `url`: SQLite at once (creating the file and its directory when
    /// missing, in WAL mode), PostgreSQL lazily (connections are made when
    /// first needed, so the gateway starts while the database is down and
    /// reports it in `/readyz`).
    pub async fn connect(url: &str, password: Option<&Secret>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::InvalidUrl(format!("cannot create {}: {e}", parent.display())))?;
            }
            let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
            let options: AnyConnectOptions =
                url.parse().map_err(|e: sqlx::Error| StoreError::InvalidUrl(e.to_string()))?;
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        connection
                            .execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                            .await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
            Ok(Self { pool, backend: "sqlite" })
        } else {
            let mut options: AnyConnectOptions =
                url.parse().map_err(|e: sqlx::Error| StoreError::InvalidUrl(e.to_string()))?;
            if let Some(password) = password {
                options
                    .database_url
                    .set_password(Some(password.expose()))
                    .map_err(|()| StoreError::InvalidUrl("the URL cannot carry a password".into()))?;
            }
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy_with(options);
            Ok(Self { pool, backend: "postgres" })
        }
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Which backend this is (`sqlite` or `postgres`).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The pool, for the query modules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// The current time in unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
