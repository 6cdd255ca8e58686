//! User administration (the CLI and, later, the admin panel).

use super::{AdminError, Identity, valid_names};
use crate::config::secrets::Secret;
use crate::identity::username::Username;
use crate::store::now;
use crate::store::users::UserRecord;

impl Identity {
    /// Adds a user with `roles`.
    pub async fn add_user(
        &self,
        username: &str,
        password: &Secret,
        roles: &[String],
    ) -> Result<UserRecord, AdminError> {
        let name = Username::parse(username)?;
        self.login.policy.check(password.expose(), name.canonical())?;
        let roles = valid_names(roles)?;
        let hash = self.hasher.hash(password).await.map_err(|e| AdminError::Internal(e.to_string()))?;
        let now = now();
        let user = UserRecord {
            id: uuid::Uuid::now_v7().to_string(),
            username: name.canonical().to_owned(),
            display_name: name.display().to_owned(),
            password_hash: hash,
            roles,
            disabled: 0,
            failed_logins: 0,
            locked_until: None,
            tokens_valid_after: 0,
            created_at: now,
            last_login_at: None,
            password_changed_at: now,
        };
        crate::store::users::insert(&self.store, &user).await?;
        Ok(user)
    }

    /// The user named `username`.
    pub async fn find_user(&self, username: &str) -> Result<UserRecord, AdminError> {
        let name = Username::parse(username)?;
        crate::store::users::find_by_username(&self.store, name.canonical()).await?.ok_or(AdminError::NotFound("user"))
    }

    /// Replaces a user's roles; tokens issued before stop working.
    pub async fn set_roles(&self, username: &str, roles: &[String]) -> Result<(), AdminError> {
        let user = self.find_user(username).await?;
        let now = now();
        crate::store::users::set_roles(&self.store, &user.id, &valid_names(roles)?, now).await?;
        self.denylist.cut_off_user(&user.id, now);
        Ok(())
    }

    /// Disables a user: refresh tokens revoked, access tokens cut off.
    pub async fn disable(&self, username: &str) -> Result<(), AdminError> {
        let user = self.find_user(username).await?;
        let now = now();
        crate::store::users::disable(&self.store, &user.id, now).await?;
        crate::store::tokens::revoke_user(&self.store, &user.id, now).await?;
        self.denylist.cut_off_user(&user.id, now);
        Ok(())
    }

    /// Enables a user again.
    pub async fn enable(&self, username: &str) -> Result<(), AdminError> {
        let user = self.find_user(username).await?;
        crate::store::users::enable(&self.store, &user.id).await?;
        Ok(())
    }

    /// Sets a new password: checked by the policy; all sessions end.
    pub async fn set_password(&self, username: &str, password: &Secret) -> Result<(), AdminError> {
        let user = self.find_user(username).await?;
        self.login.policy.check(password.expose(), &user.username)?;
        let hash = self.hasher.hash(password).await.map_err(|e| AdminError::Internal(e.to_string()))?;
        let now = now();
        crate::store::users::set_password(&self.store, &user.id, &hash, now).await?;
        crate::store::tokens::revoke_user(&self.store, &user.id, now).await?;
        self.denylist.cut_off_user(&user.id, now);
        Ok(())
    }

    /// Lifts a login lock.
    pub async fn unlock(&self, username: &str) -> Result<(), AdminError> {
        let user = self.find_user(username).await?;
        crate::store::users::unlock(&self.store, &user.id).await?;
        Ok(())
    }
}
