//! The store: SQLite (default, WAL) or PostgreSQL, chosen by `[store] url`.
//!
//! The password of a PostgreSQL store comes only from
//! `PORTCULLIS_STORE_PASSWORD` (or its `_FILE`), never from the URL in the file.
//!
//! ```no_run
//! # async fn demo() -> Result<(), portcullis::store::StoreError> {
//! use portcullis::store::Store;
//! let store = Store::connect("sqlite://./data/portcullis.db", None).await?;
//! store.ping().await?;
//! # Ok(()) }
//! ```

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

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
}

/// A connection pool to the configured database.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite, one file in the data directory.
    Sqlite(SqlitePool),
    /// PostgreSQL, shared by several instances.
    Postgres(PgPool),
}

impl Store {
    /// Opens `url`: SQLite at once (creating the file and its directory when
    /// missing), PostgreSQL lazily (connections are made when first needed).
    pub async fn connect(url: &str, password: Option<&Secret>) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5));
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::InvalidUrl(format!("cannot create {}: {e}", parent.display())))?;
            }
            let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
            Ok(Self::Sqlite(pool))
        } else {
            let mut options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
            if let Some(password) = password {
                options = options.password(password.expose());
            }
            // Lazy: the gateway starts while the database is down and reports
            // it in /readyz instead of refusing to start.
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy_with(options);
            Ok(Self::Postgres(pool))
        }
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ())?,
        }
        Ok(())
    }

    /// Which backend this is (`sqlite` or `postgres`).
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}
