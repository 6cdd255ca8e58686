//! Users in the store.

use sqlx::FromRow;

use super::{Store, StoreError};

/// One user row.
#[derive(Debug, Clone, FromRow)]
pub struct UserRecord {
    /// Stable id (UUID), the `sub` of tokens.
    pub id: String,
    /// Canonical username (NFKC, lower case), unique.
    pub username: String,
    /// Username as the user wrote it.
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Space-separated roles.
    pub roles: String,
    /// 1 when disabled.
    pub disabled: i64,
    /// Consecutive failed logins.
    pub failed_logins: i64,
    /// Locked until this unix time, if locked.
    pub locked_until: Option<i64>,
    /// Access tokens issued before this unix time are refused.
    pub tokens_valid_after: i64,
    /// Creation time.
    pub created_at: i64,
    /// Last successful login.
    pub last_login_at: Option<i64>,
    /// Last password change.
    pub password_changed_at: i64,
}

impl UserRecord {
    /// The roles as a list.
    pub fn role_list(&self) -> Vec<String> {
        self.roles.split_whitespace().map(str::to_owned).collect()
    }

    /// Whether the account is disabled.
    pub fn is_disabled(&self) -> bool {
        self.disabled != 0
    }
}

/// Whether an error is a uniqueness violation (the username exists).
pub fn is_conflict(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
}

/// The columns of a [`UserRecord`], as a literal for `concat!`.
macro_rules! user_columns {
    () => {
        "id, username, display_name, password_hash, roles, disabled, failed_logins, locked_until, \
         tokens_valid_after, created_at, last_login_at, password_changed_at"
    };
}

/// Inserts a new user.
pub async fn insert(store: &Store, user: &UserRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, username, display_name, password_hash, roles, disabled, failed_logins, locked_until, \
         tokens_valid_after, created_at, last_login_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&user.id)
    .bind(&user.username)
    .bind(&user.display_name)
    .bind(&user.password_hash)
    .bind(&user.roles)
    .bind(user.disabled)
    .bind(user.failed_logins)
    .bind(user.locked_until)
    .bind(user.tokens_valid_after)
    .bind(user.created_at)
    .bind(user.last_login_at)
    .bind(user.password_changed_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The user with canonical `username`, if any.
pub async fn find_by_username(store: &Store, username: &str) -> Result<Option<UserRecord>, StoreError> {
    Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
        .bind(username)
        .fetch_optional(store.pool())
        .await?)
}

/// The user with `id`, if any.
pub async fn find_by_id(store: &Store, id: &str) -> Result<Option<UserRecord>, StoreError> {
    Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?)
}

/// Users whose username contains `search` (all when empty), by username.
pub async fn list(store: &Store, search: &str, limit: i64, offset: i64) -> Result<Vec<UserRecord>, StoreError> {
    let pattern = format!("%{}%", search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE username LIKE $1 ESCAPE '\\' ORDER BY username LIMIT $2 OFFSET $3"
    ))
    .bind(pattern)
    .bind(limit)
    .bind(offset)
    .fetch_all(store.pool())
    .await?)
}

/// Replaces the roles of user `id`. Tokens issued before now stop working,
/// so a removed role takes effect at once.
pub async fn set_roles(store: &Store, id: &str, roles: &str, now: i64) -> Result<bool, StoreError> {
    let result = sqlx::query("UPDATE users SET roles = $1, tokens_valid_after = $2 WHERE id = $3")
        .bind(roles)
        .bind(now)
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Disables user `id` and cuts off the tokens already issued.
pub async fn disable(store: &Store, id: &str, now: i64) -> Result<bool, StoreError> {
    let result = sqlx::query("UPDATE users SET disabled = 1, tokens_valid_after = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Enables user `id` again.
pub async fn enable(store: &Store, id: &str) -> Result<bool, StoreError> {
    let result = sqlx::query("UPDATE users SET disabled = 0, failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Sets a new password hash; tokens issued before now stop working.
pub async fn set_password(store: &Store, id: &str, hash: &str, now: i64) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE users SET password_hash = $1, password_changed_at = $2, tokens_valid_after = $2, \
         failed_logins = 0, locked_until = NULL WHERE id = $3",
    )
    .bind(hash)
    .bind(now)
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Replaces the hash after a login with outdated parameters (same password).
pub async fn rehash(store: &Store, id: &str, hash: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(hash).bind(id).execute(store.pool()).await?;
    Ok(())
}

/// Records a successful login.
pub async fn record_login(store: &Store, id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET last_login_at = $1, failed_logins = 0, locked_until = NULL WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Counts one more failed login for user `id` and returns the new count.
pub async fn record_failure(store: &Store, id: &str) -> Result<i64, StoreError> {
    sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    let (count,): (i64,) =
        sqlx::query_as("SELECT failed_logins FROM users WHERE id = $1").bind(id).fetch_one(store.pool()).await?;
    Ok(count)
}

/// Locks user `id` until `until` (unix seconds).
pub async fn lock(store: &Store, id: &str, until: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET locked_until = $1 WHERE id = $2").bind(until).bind(id).execute(store.pool()).await?;
    Ok(())
}

/// Lifts a lock and clears the failure count.
pub async fn unlock(store: &Store, id: &str) -> Result<bool, StoreError> {
    let result = sqlx::query("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(result.rows_affected() == 1)
}

/// How many users exist.
pub async fn count(store: &Store) -> Result<i64, StoreError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(store.pool()).await?;
    Ok(n)
}

/// Users whose tokens issued before some time after `since` are cut off:
/// (id, cut-off), for the denylist.
pub async fn cutoffs_since(store: &Store, since: i64) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT id, tokens_valid_after FROM users WHERE tokens_valid_after > $1")
        .bind(since)
        .fetch_all(store.pool())
        .await?)
}
