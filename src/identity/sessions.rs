//! Browser sessions: created at a password login, checked on each request
//! that carries the session cookie, ended by logout, by an administrator,
//! by a password change or role change, or by time (idle and absolute).
//!
//! ```
//! use portcullis::identity::sessions::SessionSettings;
//! let settings = SessionSettings::default();
//! assert_eq!(settings.cookie, "__Host-portcullis-session");
//! assert!(settings.cookie_header("abc", 60).contains("Secure; HttpOnly; SameSite=Lax"));
//! ```

use std::sync::Arc;
use std::time::Duration;

use super::tokens::AccessClaims;
use super::{Identity, hash_opaque, opaque, seconds};
use crate::store::StoreError;
use crate::store::sessions::SessionRecord;

/// `[sessions]`, as the identity service uses it.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Whether browser sessions exist at all.
    pub enabled: bool,
    /// The cookie name (always `__Host-` prefixed).
    pub cookie: String,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after login, used or not.
    pub absolute_timeout: Duration,
    /// `Lax` or `Strict`.
    pub same_site: &'static str,
    /// Origins allowed to send cookie-authenticated unsafe requests
    /// (empty: the request's own `https://<Host>`).
    pub allowed_origins: Vec<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            cookie: "__Host-portcullis-session".to_owned(),
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            same_site: "Lax",
            allowed_origins: Vec::new(),
        }
    }
}

impl SessionSettings {
    /// The `Set-Cookie` value carrying `token` for `max_age` seconds (0 clears it).
    pub fn cookie_header(&self, token: &str, max_age: i64) -> String {
        format!("{}={token}; Path=/; Secure; HttpOnly; SameSite={}; Max-Age={max_age}", self.cookie, self.same_site)
    }

    /// The session cookie's value in a `Cookie` header, if there is exactly one.
    pub fn cookie_value<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        let mut found = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value);
        let first = found.next()?;
        // Two cookies of the same name: an injected one is likely; use neither.
        found.next().is_none().then_some(first)
    }
}

/// A checked session and the identity it carries.
#[derive(Debug, Clone)]
pub struct ActiveSession {
    /// The session.
    pub record: SessionRecord,
    /// The user's claims, as a token would carry them.
    pub claims: Arc<AccessClaims>,
}

/// Why a session cookie does not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session (or the cookie is malformed).
    #[error("unknown session")]
    Unknown,
    /// Ended by logout, an administrator or a password change.
    #[error("session ended")]
    Ended,
    /// Idle or absolute timeout.
    #[error("session expired")]
    Expired,
    /// The user is disabled or gone.
    #[error("the session's user is disabled or deleted")]
    UserGone,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Identity {
    /// The session settings.
    pub fn sessions(&self) -> &SessionSettings {
        &self.sessions
    }

    /// Uses `settings` for browser sessions.
    #[must_use]
    pub fn with_sessions(mut self, settings: SessionSettings) -> Self {
        self.sessions = settings;
        self
    }

    /// Opens a session for `user_id`: returns the cookie value (shown once)
    /// and the record.
    pub async fn create_session(
        &self,
        user_id: &str,
        client_ip: Option<String>,
        user_agent: Option<&str>,
    ) -> Result<(String, SessionRecord), StoreError> {
        let token = opaque("")?;
        let now = crate::store::now();
        let record = SessionRecord {
            id: uuid::Uuid::now_v7().to_string(),
            token_hash: hash_opaque(&token),
            user_id: user_id.to_owned(),
            csrf_token: opaque("")?,
            created_at: now,
            last_seen_at: now,
            expires_at: now + seconds(self.sessions.absolute_timeout),
            client_ip,
            user_agent: user_agent.map(|ua| ua.chars().filter(|c| !c.is_control()).take(200).collect()),
            revoked_at: None,
        };
        crate::store::sessions::insert(&self.store, &record).await?;
        Ok((token, record))
    }

    /// The live session behind cookie value `token`, with its user's claims.
    pub async fn session(&self, token: &str) -> Result<ActiveSession, SessionError> {
        if token.is_empty() || token.len() > 128 {
            return Err(SessionError::Unknown);
        }
        let record = crate::store::sessions::find_by_hash(&self.store, &hash_opaque(token))
            .await?
            .ok_or(SessionError::Unknown)?;
        let now = crate::store::now();
        if record.revoked_at.is_some() {
            return Err(SessionError::Ended);
        }
        if record.expires_at <= now || record.last_seen_at + seconds(self.sessions.idle_timeout) <= now {
            return Err(SessionError::Expired);
        }
        let user =
            crate::store::users::find_by_id(&self.store, &record.user_id).await?.ok_or(SessionError::UserGone)?;
        if user.is_disabled() {
            return Err(SessionError::UserGone);
        }
        // A password or role change after login ends the session.
        if user.tokens_valid_after > record.created_at {
            return Err(SessionError::Ended);
        }
        // Record activity, at most every quarter of the idle timeout (and every minute).
        let every = (seconds(self.sessions.idle_timeout) / 4).clamp(1, 60);
        if now - record.last_seen_at >= every {
            crate::store::sessions::touch(&self.store, &record.id, now).await?;
        }
        let claims = AccessClaims {
            iss: self.tokens.issuer.clone(),
            aud: self.tokens.audience.clone(),
            sub: user.id.clone(),
            exp: record.expires_at,
            iat: record.created_at,
            nbf: record.created_at,
            jti: record.id.clone(),
            roles: user.role_list(),
            scope: String::new(),
            auth_time: record.created_at,
            client_id: None,
            username: Some(user.username.clone()),
        };
        Ok(ActiveSession { record, claims: Arc::new(claims) })
    }

    /// The sessions of `user_id` that still work (the user's own tokens
    /// cut-off included).
    pub async fn live_sessions(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let now = crate::store::now();
        let cutoff =
            crate::store::users::find_by_id(&self.store, user_id).await?.map_or(i64::MAX, |u| u.tokens_valid_after);
        let sessions =
            crate::store::sessions::live_for_user(&self.store, user_id, now, now - seconds(self.sessions.idle_timeout))
                .await?;
        Ok(sessions.into_iter().filter(|s| s.created_at >= cutoff).collect())
    }

    /// Ends the session behind cookie value `token`; returns its user.
    pub async fn end_session(&self, token: &str) -> Result<Option<String>, StoreError> {
        let Some(record) = crate::store::sessions::find_by_hash(&self.store, &hash_opaque(token)).await? else {
            return Ok(None);
        };
        crate::store::sessions::revoke(&self.store, &record.id, None, crate::store::now()).await?;
        Ok(Some(record.user_id))
    }
}
