//! Refresh tokens in the store: only their SHA-256 hashes, grouped in
//! families (one family per login; every refresh adds a member and uses up
//! the previous one).

use sqlx::FromRow;

use super::{Store, StoreError};

/// One refresh token row.
#[derive(Debug, Clone, FromRow)]
pub struct RefreshRecord {
    /// Row id.
    pub id: String,
    /// The login this token descends from.
    pub family_id: String,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// The user.
    pub user_id: String,
    /// Space-separated scopes.
    pub scope: String,
    /// When the user last typed a password (carried into access tokens).
    pub auth_time: i64,
    /// Creation time.
    pub created_at: i64,
    /// Expiry time.
    pub expires_at: i64,
    /// When it was exchanged for a new one.
    pub used_at: Option<i64>,
    /// When its family was revoked.
    pub revoked_at: Option<i64>,
}

/// Stores a new refresh token.
pub async fn insert(store: &Store, record: &RefreshRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, token_hash, user_id, scope, auth_time, created_at, expires_at, used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&record.id)
    .bind(&record.family_id)
    .bind(&record.token_hash)
    .bind(&record.user_id)
    .bind(&record.scope)
    .bind(record.auth_time)
    .bind(record.created_at)
    .bind(record.expires_at)
    .bind(record.used_at)
    .bind(record.revoked_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The token with hash `token_hash`, if any.
pub async fn find_by_hash(store: &Store, token_hash: &str) -> Result<Option<RefreshRecord>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, family_id, token_hash, user_id, scope, auth_time, created_at, expires_at, used_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(store.pool())
    .await?)
}

/// Marks token `id` used. False when it was already used or revoked (a
/// concurrent refresh won the race): the caller must treat that as reuse.
pub async fn mark_used(store: &Store, id: &str, now: i64) -> Result<bool, StoreError> {
    let result =
        sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(store.pool())
            .await?;
    Ok(result.rows_affected() == 1)
}

/// Revokes every token of a family. Returns how many were still live.
pub async fn revoke_family(store: &Store, family_id: &str, now: i64) -> Result<u64, StoreError> {
    let result = sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(family_id)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected())
}

/// Revokes every token of a user.
pub async fn revoke_user(store: &Store, user_id: &str, now: i64) -> Result<u64, StoreError> {
    let result = sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user_id)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected())
}

/// Deletes tokens that expired before `before`.
pub async fn purge_expired(store: &Store, before: i64) -> Result<u64, StoreError> {
    let result =
        sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1").bind(before).execute(store.pool()).await?;
    Ok(result.rows_affected())
}
