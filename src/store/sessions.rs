//! Browser sessions in the store. The cookie value is never stored, only
//! its SHA-256, so a copy of the database opens no session.

use sqlx::FromRow;

use super::{Store, StoreError};

/// One session row.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct SessionRecord {
    /// Public id (UUID), for listing and ending it.
    pub id: String,
    /// SHA-256 of the cookie value.
    #[serde(skip)]
    pub token_hash: String,
    /// Whose session.
    pub user_id: String,
    /// The synchronizer CSRF token.
    #[serde(skip)]
    pub csrf_token: String,
    /// Login time (unix seconds).
    pub created_at: i64,
    /// Last request (updated at most every few seconds to minutes).
    pub last_seen_at: i64,
    /// The absolute end.
    pub expires_at: i64,
    /// The address it was created from.
    pub client_ip: Option<String>,
    /// The browser it was created from (first 200 characters).
    pub user_agent: Option<String>,
    /// When it was ended, if it was.
    pub revoked_at: Option<i64>,
}

/// The columns of a [`SessionRecord`].
const COLUMNS: &str =
    "id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, client_ip, user_agent, revoked_at";

/// Inserts a new session.
pub async fn insert(store: &Store, s: &SessionRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, \
         client_ip, user_agent, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&s.id)
    .bind(&s.token_hash)
    .bind(&s.user_id)
    .bind(&s.csrf_token)
    .bind(s.created_at)
    .bind(s.last_seen_at)
    .bind(s.expires_at)
    .bind(&s.client_ip)
    .bind(&s.user_agent)
    .bind(s.revoked_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The session whose cookie hashes to `token_hash`.
pub async fn find_by_hash(store: &Store, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM sessions WHERE token_hash = $1")))
        .bind(token_hash)
        .fetch_optional(store.pool())
        .await?)
}

/// Records activity.
pub async fn touch(store: &Store, id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE id = $1").bind(id).bind(now).execute(store.pool()).await?;
    Ok(())
}

/// Ends session `id` (of `user_id`, when given); true when it was live.
pub async fn revoke(store: &Store, id: &str, user_id: Option<&str>, now: i64) -> Result<bool, StoreError> {
    let query = match user_id {
        Some(user_id) => {
            sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL AND user_id = $3")
                .bind(id)
                .bind(now)
                .bind(user_id)
        }
        None => {
            sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(id).bind(now)
        }
    };
    let result = query.execute(store.pool()).await?;
    Ok(result.rows_affected() > 0)
}

/// The live sessions of `user_id` (not ended, not past their absolute end,
/// used after `active_since`), newest first.
pub async fn live_for_user(
    store: &Store,
    user_id: &str,
    now: i64,
    active_since: i64,
) -> Result<Vec<SessionRecord>, StoreError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 \
         AND last_seen_at > $3 ORDER BY created_at DESC LIMIT 100"
    )))
    .bind(user_id)
    .bind(now)
    .bind(active_since)
    .fetch_all(store.pool())
    .await?)
}

/// Sessions not ended and not past their absolute end.
pub async fn count_live(store: &Store, now: i64) -> Result<i64, StoreError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1")
        .bind(now)
        .fetch_one(store.pool())
        .await?;
    Ok(count)
}

/// Deletes sessions that ended before `cutoff`.
pub async fn purge(store: &Store, cutoff: i64) -> Result<u64, StoreError> {
    let result = sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1")
        .bind(cutoff)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected())
}
