//! OAuth clients in the store (secrets only as SHA-256 hashes: they are 256
//! random bits, not passwords).

use sqlx::FromRow;

use super::{Store, StoreError};

/// One OAuth client row.
#[derive(Debug, Clone, FromRow)]
pub struct ClientRecord {
    /// The public client id.
    pub client_id: String,
    /// A name for people.
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub secret_hash: String,
    /// Space-separated scopes the client may ask for.
    pub scopes: String,
    /// 1 when disabled.
    pub disabled: i64,
    /// Creation time.
    pub created_at: i64,
}

/// Stores a new client.
pub async fn insert(store: &Store, client: &ClientRecord) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO oauth_clients (client_id, name, secret_hash, scopes, disabled, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&client.client_id)
        .bind(&client.name)
        .bind(&client.secret_hash)
        .bind(&client.scopes)
        .bind(client.disabled)
        .bind(client.created_at)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The client `client_id`, if any.
pub async fn find(store: &Store, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT client_id, name, secret_hash, scopes, disabled, created_at FROM oauth_clients WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(store.pool())
    .await?)
}

/// All clients, by id.
pub async fn list(store: &Store) -> Result<Vec<ClientRecord>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT client_id, name, secret_hash, scopes, disabled, created_at FROM oauth_clients ORDER BY client_id",
    )
    .fetch_all(store.pool())
    .await?)
}

/// Removes client `client_id`.
pub async fn remove(store: &Store, client_id: &str) -> Result<bool, StoreError> {
    let result =
        sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1").bind(client_id).execute(store.pool()).await?;
    Ok(result.rows_affected() == 1)
}
