//! The identity service: users, passwords, login, signed access tokens,
//! rotating refresh tokens, OAuth clients, key rotation and revocation.
//!
//! Portcullis issues and checks its own tokens, so an upstream never has to.
//! Access tokens are verified without a database round trip ([`tokens`],
//! [`denylist`]); refresh tokens are opaque, stored only as hashes, rotated
//! on every use, and a reused one revokes its whole family.

mod admin;
pub mod cache;
mod clients;
pub mod denylist;
pub mod external;
pub mod hash_pool;
pub mod keys;
pub mod password;
pub mod sessions;
pub mod shared_secret;
pub mod tokens;
pub mod username;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::secrets::Secret;
use crate::config::{LoginConfig, TokensConfig};
use crate::store::tokens::RefreshRecord;
use crate::store::users::UserRecord;
use crate::store::{Store, StoreError, now};
use denylist::Denylist;
use keys::Keys;
use password::{PasswordHasher, PolicyError, Verified};
use tokens::{AccessClaims, TokenError, TokenRules};
use username::Username;

/// Prefix of refresh tokens, so leaked ones are easy to find in code scans.
pub const REFRESH_PREFIX: &str = "pcr_";
/// Prefix of OAuth client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "pcs_";

/// What a login or refresh hands back.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The signed access token.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// A new refresh token (not for client credentials).
    pub refresh_token: Option<String>,
    /// The access token's claims.
    pub claims: AccessClaims,
}

/// Why a login failed: the client sees one answer for all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginFailure {
    /// No such user (or an invalid username).
    #[error("unknown user")]
    UnknownUser,
    /// Wrong password.
    #[error("wrong password")]
    WrongPassword,
    /// The account is disabled.
    #[error("account disabled")]
    Disabled,
    /// The account is locked after too many failures (the right password
    /// does not help until the lock ends or an admin lifts it).
    #[error("account locked")]
    Locked,
    /// This failure locked the account.
    #[error("wrong password; account locked until {until}")]
    LockedNow {
        /// Unix time the lock ends.
        until: i64,
    },
    /// Something failed inside (store, hashing).
    #[error("internal error")]
    Internal,
}

/// Why a refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshFailure {
    /// Unknown token.
    #[error("unknown refresh token")]
    Unknown,
    /// An already-used token came back: its family is now revoked.
    #[error("refresh token reused; family {family} revoked")]
    Reused {
        /// The user.
        user_id: String,
        /// The revoked family.
        family: String,
    },
    /// Expired or revoked.
    #[error("refresh token expired or revoked")]
    Expired,
    /// The user is gone or disabled.
    #[error("user disabled or removed")]
    UserUnavailable,
    /// Something failed inside.
    #[error("internal error")]
    Internal,
}

/// Why user administration failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad username.
    #[error("{0}")]
    Username(#[from] username::UsernameError),
    /// Password refused by the policy.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// The username is taken.
    #[error("the username is taken")]
    Taken,
    /// No such user or client.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A role or scope name is not allowed.
    #[error("`{0}` is not a valid role or scope name (letters, digits, - _ : .)")]
    BadName(String),
    /// Store or hashing failure.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        if crate::store::users::is_conflict(&error) { Self::Taken } else { Self::Internal(error.to_string()) }
    }
}

/// The identity service, shared by every worker.
#[derive(Debug)]
pub struct Identity {
    store: Store,
    keys: Arc<Keys>,
    hasher: PasswordHasher,
    denylist: Denylist,
    tokens: TokensConfig,
    login: LoginConfig,
    rules: TokenRules,
    external: Vec<external::ExternalIssuer>,
    shared_secret: Vec<shared_secret::SharedSecretIssuer>,
    unknown_external_kid: tokio::sync::Notify,
    token_keys: cache::TokenKeys,
    verified: cache::VerifiedTokens<AccessClaims>,
    refused: cache::VerifiedTokens<TokenError>,
    sessions: sessions::SessionSettings,
}

/// Longest token whose refusal is remembered (bounds the refused cache's memory).
const MAX_REMEMBERED_REFUSAL: usize = 1024;

/// A random opaque token with `prefix`.
fn opaque(prefix: &str) -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| StoreError::InvalidUrl("no randomness".into()))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// SHA-256 of an opaque token, hex. Opaque tokens and client secrets are 256
/// random bits, so a fast hash is enough (no password to guess).
pub fn hash_opaque(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_names(names: &[String]) -> Result<String, AdminError> {
    for name in names {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'));
        if !ok {
            return Err(AdminError::BadName(name.clone()));
        }
    }
    let mut names = names.to_vec();
    names.sort();
    names.dedup();
    Ok(names.join(" "))
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl Identity {
    /// The service over `store` with `keys`.
    pub fn new(store: Store, keys: Arc<Keys>, tokens: TokensConfig, login: LoginConfig) -> Result<Self, String> {
        let hasher = PasswordHasher::new(login.max_concurrent_hashes).map_err(|e| e.to_string())?;
        Ok(Self::with_hasher(store, keys, tokens, login, hasher))
    }

    /// The service with a given hasher (tests use cheap parameters).
    pub fn with_hasher(
        store: Store,
        keys: Arc<Keys>,
        tokens: TokensConfig,
        login: LoginConfig,
        hasher: PasswordHasher,
    ) -> Self {
        let rules = TokenRules {
            issuer: tokens.issuer.clone(),
            audience: tokens.audience.clone(),
            leeway: tokens.leeway.as_secs(),
            max_size: tokens.max_token_size,
        };
        let external = tokens.external.iter().cloned().map(external::ExternalIssuer::new).collect();
        Self {
            store,
            keys,
            hasher,
            denylist: Denylist::new(100_000),
            tokens,
            login,
            rules,
            external,
            shared_secret: Vec::new(),
            unknown_external_kid: tokio::sync::Notify::new(),
            token_keys: cache::TokenKeys::default(),
            verified: cache::VerifiedTokens::new(50_000),
            refused: cache::VerifiedTokens::new(10_000),
            sessions: sessions::SessionSettings::default(),
        }
    }

    /// Accepts the tokens of these shared-secret issuers too (their secrets
    /// come from the environment at start).
    #[must_use]
    pub fn with_shared_secret_issuers(mut self, issuers: Vec<shared_secret::SharedSecretIssuer>) -> Self {
        self.shared_secret = issuers;
        self
    }

    /// The signing keys.
    pub fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Token settings.
    pub fn tokens_config(&self) -> &TokensConfig {
        &self.tokens
    }

    /// Whether `POST /auth/register` is open.
    pub fn registration_open(&self) -> bool {
        self.login.allow_registration
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    // === verification ===

    /// Verifies an access token — Portcullis's own, or one of a configured
    /// external issuer (picked by its `iss`) — including revocation.
    pub fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        let key = self.token_keys.key(token);
        let claims = match self.verified.get(key, token) {
            Some(claims) => {
                let leeway = i64::try_from(self.rules.leeway).unwrap_or(0);
                if claims.exp.saturating_add(leeway) < now() {
                    return Err(TokenError::Expired);
                }
                claims
            }
            None => {
                if let Some(refusal) = self.refused.get(key, token) {
                    return Err((*refusal).clone());
                }
                match self.verify_uncached(token) {
                    Ok(claims) => {
                        let claims = Arc::new(claims);
                        self.verified.insert(key, token, claims.clone());
                        claims
                    }
                    Err(error) => {
                        if error.is_final() && token.len() <= MAX_REMEMBERED_REFUSAL {
                            self.refused.insert(key, token, Arc::new(error.clone()));
                        }
                        return Err(error);
                    }
                }
            }
        };
        if self.denylist.is_revoked(&claims.jti, &claims.sub, claims.iat) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Every check but the cache and revocation.
    fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let parsed = tokens::parse(token, self.rules.max_size)?;
        match parsed.issuer.as_deref() {
            Some(iss) if iss == self.rules.issuer => {
                tokens::verify_parsed(&self.keys.ring(), &self.rules, token, &parsed.header)
            }
            Some(iss)
                if let Some(shared) =
                    self.shared_secret.iter().find(|s| s.issuer() == Some(iss.trim_end_matches('/'))) =>
            {
                shared.verify(token, &parsed.header, self.rules.leeway)
            }
            Some(iss) => {
                let issuer = self
                    .external
                    .iter()
                    .find(|e| e.issuer() == iss.trim_end_matches('/'))
                    .ok_or(TokenError::UnknownIssuer)?;
                let verified = issuer.verify(token, &parsed.header, self.rules.leeway);
                if verified == Err(TokenError::UnknownKey) && issuer.refresh_due(true) {
                    self.unknown_external_kid.notify_one();
                }
                verified
            }
            // Only an issuer configured without `iss` takes tokens without one.
            None => match self.shared_secret.iter().find(|s| s.issuer().is_none()) {
                Some(shared) => shared.verify(token, &parsed.header, self.rules.leeway),
                None => Err(TokenError::BadClaims("missing iss".into())),
            },
        }
    }

    /// Re-reads the signing keys (directory mode); forgets cached tokens
    /// when the key ring changed. Returns whether it changed.
    pub fn reload_keys(&self) -> Result<bool, keys::KeyError> {
        let changed = self.keys.reload()?;
        if changed {
            self.forget_verified_tokens();
        }
        Ok(changed)
    }

    /// Forgets every cached verified token.
    pub fn forget_verified_tokens(&self) {
        self.verified.clear();
        self.refused.clear();
    }

    /// Refreshes the external issuers' key sets that are due: never fetched,
    /// on schedule, or (`prompted`) because a token named an unknown key.
    pub async fn refresh_external_keys(&self, client: &crate::proxy::UpstreamClient, prompted: bool) {
        for issuer in &self.external {
            if issuer.refresh_due(prompted) {
                match issuer.refresh(client).await {
                    Ok(count) => {
                        // A replaced key may make a refused signature good.
                        self.refused.clear();
                        tracing::debug!(issuer = issuer.issuer(), keys = count, "external issuer keys fetched");
                    }
                    Err(error) => {
                        tracing::warn!(issuer = issuer.issuer(), %error, "cannot fetch the external issuer's keys")
                    }
                }
            }
        }
    }

    /// Asks for every external key set to be fetched again now (SIGHUP).
    pub fn expire_external_keys(&self) {
        for issuer in &self.external {
            issuer.expire();
        }
        self.unknown_external_kid.notify_one();
    }

    /// Woken when a token names an unknown key of an external issuer.
    pub fn unknown_external_kid(&self) -> &tokio::sync::Notify {
        &self.unknown_external_kid
    }

    /// Reloads revocations from the store (every instance, every few seconds).
    pub async fn sync_denylist(&self) -> Result<(), StoreError> {
        let now = now();
        let jtis = crate::store::revoked::live(&self.store, now).await?;
        let since = now - seconds(self.tokens.access_ttl) - seconds(self.tokens.leeway);
        let users = crate::store::users::cutoffs_since(&self.store, since).await?;
        self.denylist.replace(jtis, users);
        crate::store::revoked::purge(&self.store, now).await?;
        Ok(())
    }

    /// Deletes refresh tokens that expired more than a day ago.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        crate::store::tokens::purge_expired(&self.store, now() - 86_400).await
    }

    // === issuing ===

    fn issue_access(
        &self,
        sub: &str,
        username: Option<&str>,
        roles: Vec<String>,
        scope: String,
        auth_time: i64,
        client_id: Option<String>,
    ) -> Result<TokenPair, String> {
        let now = now();
        let ttl = seconds(self.tokens.access_ttl);
        let claims = AccessClaims {
            iss: self.tokens.issuer.clone(),
            aud: self.tokens.audience.clone(),
            sub: sub.to_owned(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            roles,
            scope,
            auth_time,
            client_id,
            username: username.map(str::to_owned),
        };
        let access_token = tokens::sign(&self.keys.ring(), &claims).map_err(|e| e.to_string())?;
        Ok(TokenPair { access_token, expires_in: self.tokens.access_ttl.as_secs(), refresh_token: None, claims })
    }

    /// A new refresh token in `family_id`, expiring at `expires_at` (the
    /// family's end: rotation never extends a session).
    async fn issue_refresh(
        &self,
        family_id: &str,
        user_id: &str,
        scope: &str,
        auth_time: i64,
        expires_at: i64,
    ) -> Result<String, StoreError> {
        let token = opaque(REFRESH_PREFIX)?;
        let now = now();
        let record = RefreshRecord {
            id: uuid::Uuid::new_v4().to_string(),
            family_id: family_id.to_owned(),
            token_hash: hash_opaque(&token),
            user_id: user_id.to_owned(),
            scope: scope.to_owned(),
            auth_time,
            created_at: now,
            expires_at,
            used_at: None,
            revoked_at: None,
        };
        crate::store::tokens::insert(&self.store, &record).await?;
        Ok(token)
    }

    /// A short-lived identity token for an upstream (`aud` = `audience`),
    /// saying who the verified caller is. Lives 60 seconds.
    pub fn identity_token(&self, caller: &AccessClaims, audience: &str) -> Result<String, String> {
        let now = now();
        let claims = serde_json::json!({
            "iss": self.tokens.issuer,
            "aud": audience,
            "sub": caller.sub,
            "exp": now + 60,
            "iat": now,
            "nbf": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "roles": caller.roles,
            "scope": caller.scope,
            "username": caller.username,
            "client_id": caller.client_id,
            "auth_time": caller.auth_time,
        });
        tokens::sign_typed(&self.keys.ring(), &claims, tokens::IDENTITY_TOKEN_TYPE).map_err(|e| e.to_string())
    }

    // === login, refresh, logout ===

    /// Checks a username and password. Unknown users, wrong passwords and
    /// disabled accounts take the same time (a dummy hash is checked when
    /// there is no account) and the caller answers them the same way.
    pub async fn check_password(&self, username: &str, password: &Secret) -> Result<UserRecord, LoginFailure> {
        let user = match Username::parse(username) {
            Ok(name) => crate::store::users::find_by_username(&self.store, name.canonical())
                .await
                .map_err(|_| LoginFailure::Internal)?,
            Err(_) => None,
        };
        let verified = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await
            .map_err(|_| LoginFailure::Internal)?;
        let Some(user) = user else { return Err(LoginFailure::UnknownUser) };
        let now = now();
        if user.locked_until.is_some_and(|until| until > now) {
            return Err(LoginFailure::Locked);
        }
        let Verified::Yes { rehash } = verified else {
            return Err(self.count_failure(&user, now).await);
        };
        if user.is_disabled() {
            return Err(LoginFailure::Disabled);
        }
        if rehash && let Ok(hash) = self.hasher.hash(password).await {
            let _ = crate::store::users::rehash(&self.store, &user.id, &hash).await;
        }
        Ok(user)
    }

    /// Counts a wrong password; past `max_failures` in a row the account is
    /// locked for `lockout`, doubled for each further failure (at most a day).
    async fn count_failure(&self, user: &UserRecord, now: i64) -> LoginFailure {
        let Ok(failures) = crate::store::users::record_failure(&self.store, &user.id).await else {
            return LoginFailure::Internal;
        };
        let max = i64::from(self.login.max_failures);
        if failures < max {
            return LoginFailure::WrongPassword;
        }
        let doublings = u32::try_from((failures - max).min(16)).unwrap_or(16);
        let lock = (seconds(self.login.lockout).saturating_mul(1 << doublings)).min(86_400);
        let until = now + lock;
        match crate::store::users::lock(&self.store, &user.id, until).await {
            Ok(()) => LoginFailure::LockedNow { until },
            Err(_) => LoginFailure::Internal,
        }
    }

    /// Logs in with a password: a new access token and a new refresh family.
    pub async fn login(&self, username: &str, password: &Secret) -> Result<(TokenPair, UserRecord), LoginFailure> {
        let user = self.check_password(username, password).await?;
        let now = now();
        crate::store::users::record_login(&self.store, &user.id, now).await.map_err(|_| LoginFailure::Internal)?;
        let mut pair = self
            .issue_access(&user.id, Some(&user.username), user.role_list(), String::new(), now, None)
            .map_err(|_| LoginFailure::Internal)?;
        let family = uuid::Uuid::new_v4().to_string();
        let expires_at = now + seconds(self.tokens.refresh_ttl);
        pair.refresh_token =
            Some(self.issue_refresh(&family, &user.id, "", now, expires_at).await.map_err(|_| LoginFailure::Internal)?);
        Ok((pair, user))
    }

    /// Exchanges a refresh token for a new pair. The old token is used up; a
    /// used one presented again revokes its whole family (RFC 9700 §4.14).
    pub async fn refresh(&self, refresh_token: &str) -> Result<(TokenPair, UserRecord), RefreshFailure> {
        let internal = |_| RefreshFailure::Internal;
        let record = crate::store::tokens::find_by_hash(&self.store, &hash_opaque(refresh_token))
            .await
            .map_err(internal)?
            .ok_or(RefreshFailure::Unknown)?;
        let now = now();
        if record.revoked_at.is_some() || record.expires_at < now {
            return Err(RefreshFailure::Expired);
        }
        let won = record.used_at.is_none()
            && crate::store::tokens::mark_used(&self.store, &record.id, now).await.map_err(internal)?;
        if !won {
            crate::store::tokens::revoke_family(&self.store, &record.family_id, now).await.map_err(internal)?;
            return Err(RefreshFailure::Reused { user_id: record.user_id, family: record.family_id });
        }
        let user = crate::store::users::find_by_id(&self.store, &record.user_id)
            .await
            .map_err(internal)?
            .filter(|u| !u.is_disabled())
            .ok_or(RefreshFailure::UserUnavailable)?;
        let mut pair = self
            .issue_access(
                &user.id,
                Some(&user.username),
                user.role_list(),
                record.scope.clone(),
                record.auth_time,
                None,
            )
            .map_err(|_| RefreshFailure::Internal)?;
        let token = self
            .issue_refresh(&record.family_id, &user.id, &record.scope, record.auth_time, record.expires_at)
            .await
            .map_err(internal)?;
        // A concurrent reuse may have revoked the family while the new token
        // was being stored: revoke again so the new token cannot outlive it.
        let revoked_meanwhile = crate::store::tokens::find_by_hash(&self.store, &record.token_hash)
            .await
            .map_err(internal)?
            .is_some_and(|r| r.revoked_at.is_some());
        if revoked_meanwhile {
            crate::store::tokens::revoke_family(&self.store, &record.family_id, now).await.map_err(internal)?;
            return Err(RefreshFailure::Expired);
        }
        pair.refresh_token = Some(token);
        Ok((pair, user))
    }

    /// Revokes a refresh token's family; returns the user it belonged to.
    pub async fn revoke_refresh(&self, refresh_token: &str) -> Result<Option<String>, StoreError> {
        let Some(record) = crate::store::tokens::find_by_hash(&self.store, &hash_opaque(refresh_token)).await? else {
            return Ok(None);
        };
        crate::store::tokens::revoke_family(&self.store, &record.family_id, now()).await?;
        Ok(Some(record.user_id))
    }

    /// Revokes an access token until it expires (tokens without a `jti`,
    /// from external issuers, cannot be revoked one by one).
    pub async fn revoke_access(&self, claims: &AccessClaims) -> Result<(), StoreError> {
        if claims.jti.is_empty() {
            return Ok(());
        }
        crate::store::revoked::insert(&self.store, &claims.jti, claims.exp).await?;
        self.denylist.revoke_token(&claims.jti, claims.exp);
        Ok(())
    }

    /// Creates an account through `POST /auth/register`: always role `user`.
    pub async fn register(&self, username: &str, password: &Secret) -> Result<UserRecord, AdminError> {
        self.add_user(username, password, &["user".to_owned()]).await
    }
}

#[cfg(test)]
mod tests;
