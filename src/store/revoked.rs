//! Revoked access tokens (by `jti`), kept until the token would expire, so
//! every instance's denylist can learn them.

use super::{Store, StoreError};

/// Records `jti` as revoked until `expires_at`.
pub async fn insert(store: &Store, jti: &str, expires_at: i64) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
        .bind(jti)
        .bind(expires_at)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Revoked tokens that have not expired at `now`.
pub async fn live(store: &Store, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at >= $1")
        .bind(now)
        .fetch_all(store.pool())
        .await?)
}

/// Deletes entries for tokens that have expired anyway.
pub async fn purge(store: &Store, now: i64) -> Result<u64, StoreError> {
    let result =
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1").bind(now).execute(store.pool()).await?;
    Ok(result.rows_affected())
}
