//! The typed security events: their names, severities and ECS categories.
//!
//! ```
//! use portcullis::audit::{EventSeverity, SecurityEvent};
//! use portcullis::error::Reason;
//! let event = SecurityEvent::Refused(Reason::PayloadTooLarge { limit: 10 });
//! assert_eq!(event.name(), "request.payload-too-large");
//! assert_eq!(event.severity(), EventSeverity::Medium);
//! assert_eq!(event.category(), "web");
//! assert_eq!(event.outcome(), "failure");
//! ```

use crate::error::Reason;

/// How much attention an event deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventSeverity {
    /// Routine (a 404, a path that needed normalizing, a login).
    Low,
    /// Someone sent something they should not have, or an administrator
    /// changed something.
    Medium,
    /// Likely an attack, or the gateway could not protect or record.
    High,
}

impl EventSeverity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The number of ECS `event.severity` (higher is worse).
    pub fn number(self) -> u8 {
        match self {
            Self::Low => 2,
            Self::Medium => 5,
            Self::High => 8,
        }
    }
}

/// A security event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SecurityEvent {
    /// A gate refused the request.
    Refused(Reason),
    /// The path differed from its canonical form (`//admin`, `/x/../admin`).
    PathNormalized,
    /// A password login succeeded.
    LoginSucceeded,
    /// A password login failed (the reason is for the log only).
    LoginFailed {
        /// Unknown user, wrong password, disabled.
        reason: String,
    },
    /// Too many failed logins: the account is locked.
    AccountLocked,
    /// An administrator lifted a lock.
    AccountUnlocked,
    /// An already-used refresh token came back; its family was revoked.
    RefreshTokenReused {
        /// The revoked family.
        family: String,
    },
    /// An OAuth client failed to authenticate.
    ClientAuthenticationFailed,
    /// A token was issued to an OAuth client.
    ClientTokenIssued,
    /// A token was revoked (logout, `/oauth/revoke`).
    TokenRevoked,
    /// A browser session began (password login with a session).
    SessionStarted,
    /// A browser session was ended (logout, by its user or an administrator).
    SessionEnded,
    /// An account was created through `/auth/register`.
    UserRegistered,
    /// The first administrator was created from the bootstrap password.
    BootstrapAdminCreated,
    /// An administrator changed something; the context's subject is who.
    AdminAction {
        /// What was done, as a dotted suffix (`user-created`, `key-rotated`).
        action: &'static str,
        /// What it was done to (a username, a client id, a key id).
        target: String,
    },
    /// The signing keys changed on disk and were reloaded.
    KeysReloaded,
    /// The TLS certificate was reloaded.
    CertificateReloaded,
    /// Properties the response schema does not declare were removed from an
    /// upstream answer (a possible leak stopped).
    ResponseFieldsRemoved {
        /// JSON pointers of the removed properties (at most 20).
        pointers: Vec<String>,
    },
    /// An upstream answer broke the route's response schema.
    ResponseInvalid {
        /// The failed pointers and rules.
        rules: String,
    },
    /// The shared rate-limit store stopped answering; the failure policy applies.
    RateLimitStoreUnavailable {
        /// What went wrong (no credentials: the URL is not included).
        error: String,
    },
    /// The shared rate-limit store answers again.
    RateLimitStoreRecovered,
    /// Events of a flooding kind were counted instead of written one by one.
    EventsSuppressed {
        /// The event's name.
        action: &'static str,
        /// How many were not written.
        count: u64,
    },
    /// The audit table could not be written; events go to the disk spool.
    AuditStoreUnavailable {
        /// What went wrong.
        error: String,
    },
    /// The audit table is written again (the spool was replayed).
    AuditStoreRecovered {
        /// Events replayed from the spool.
        replayed: u64,
    },
    /// Events could not be kept (queue or spool full): counted, never silent.
    EventsLost {
        /// How many.
        count: u64,
        /// Why (`queue full`, `spool full`, `spool damaged`).
        cause: &'static str,
    },
    /// An alert rule's threshold was reached.
    AlertFired {
        /// The rule's name.
        rule: String,
        /// The group that reached it (`user=alice`), or empty.
        group: String,
        /// Events counted in the window.
        count: usize,
    },
}

impl SecurityEvent {
    /// Stable dotted name, for filtering (`request.bad-path`).
    pub fn name(&self) -> String {
        let fixed = match self {
            Self::Refused(reason) => return format!("request.{}", reason.slug()),
            Self::AdminAction { action, .. } => return format!("admin.{action}"),
            Self::PathNormalized => "request.path-normalized",
            Self::LoginSucceeded => "login.success",
            Self::LoginFailed { .. } => "login.failure",
            Self::AccountLocked => "account.locked",
            Self::AccountUnlocked => "account.unlocked",
            Self::RefreshTokenReused { .. } => "token.refresh-reused",
            Self::ClientAuthenticationFailed => "client.authentication-failed",
            Self::ClientTokenIssued => "client.token-issued",
            Self::TokenRevoked => "token.revoked",
            Self::SessionStarted => "session.started",
            Self::SessionEnded => "session.ended",
            Self::UserRegistered => "user.registered",
            Self::BootstrapAdminCreated => "user.bootstrap-admin",
            Self::KeysReloaded => "key.ring-reloaded",
            Self::CertificateReloaded => "tls.certificate-reloaded",
            Self::RateLimitStoreUnavailable { .. } => "ratelimit.store-unavailable",
            Self::ResponseFieldsRemoved { .. } => "response.fields-removed",
            Self::ResponseInvalid { .. } => "response.invalid",
            Self::RateLimitStoreRecovered => "ratelimit.store-recovered",
            Self::EventsSuppressed { .. } => "audit.events-suppressed",
            Self::AuditStoreUnavailable { .. } => "audit.store-unavailable",
            Self::AuditStoreRecovered { .. } => "audit.store-recovered",
            Self::EventsLost { .. } => "audit.events-lost",
            Self::AlertFired { .. } => "alert.fired",
        };
        fixed.to_owned()
    }

    /// The severity.
    pub fn severity(&self) -> EventSeverity {
        match self {
            Self::PathNormalized
            | Self::LoginSucceeded
            | Self::ClientTokenIssued
            | Self::TokenRevoked
            | Self::SessionStarted
            | Self::SessionEnded
            | Self::UserRegistered
            | Self::RateLimitStoreRecovered
            | Self::AuditStoreRecovered { .. }
            | Self::KeysReloaded
            | Self::CertificateReloaded => EventSeverity::Low,
            Self::EventsSuppressed { .. }
            | Self::ResponseInvalid { .. }
            | Self::LoginFailed { .. }
            | Self::ClientAuthenticationFailed
            | Self::AccountUnlocked
            | Self::AdminAction { .. }
            | Self::BootstrapAdminCreated => EventSeverity::Medium,
            Self::RateLimitStoreUnavailable { .. }
            | Self::ResponseFieldsRemoved { .. }
            | Self::RefreshTokenReused { .. }
            | Self::AccountLocked
            | Self::AuditStoreUnavailable { .. }
            | Self::EventsLost { .. }
            | Self::AlertFired { .. } => EventSeverity::High,
            Self::Refused(reason) => match reason {
                Reason::NotFound | Reason::MethodNotAllowed { .. } | Reason::RequestTimeout => EventSeverity::Low,
                Reason::BadPath { .. } | Reason::AmbiguousRequest { .. } | Reason::UntrustedPeer => EventSeverity::High,
                Reason::BadGateway
                | Reason::GatewayTimeout
                | Reason::Overloaded
                | Reason::RateLimitUnavailable
                | Reason::Internal => EventSeverity::High,
                _ => EventSeverity::Medium,
            },
        }
    }

    /// The ECS `event.category`: `authentication`, `iam`, `web`,
    /// `configuration`, `database` or `intrusion_detection`.
    pub fn category(&self) -> &'static str {
        match self {
            Self::LoginSucceeded
            | Self::LoginFailed { .. }
            | Self::AccountLocked
            | Self::RefreshTokenReused { .. }
            | Self::ClientAuthenticationFailed
            | Self::ClientTokenIssued
            | Self::TokenRevoked
            | Self::SessionStarted
            | Self::SessionEnded => "authentication",
            Self::Refused(
                Reason::Unauthenticated { .. } | Reason::InvalidCredentials | Reason::InvalidRefreshToken,
            ) => "authentication",
            Self::AccountUnlocked | Self::UserRegistered | Self::BootstrapAdminCreated | Self::AdminAction { .. } => {
                "iam"
            }
            Self::KeysReloaded | Self::CertificateReloaded => "configuration",
            Self::RateLimitStoreUnavailable { .. }
            | Self::RateLimitStoreRecovered
            | Self::EventsSuppressed { .. }
            | Self::AuditStoreUnavailable { .. }
            | Self::AuditStoreRecovered { .. }
            | Self::EventsLost { .. } => "database",
            Self::AlertFired { .. } => "intrusion_detection",
            Self::Refused(_)
            | Self::PathNormalized
            | Self::ResponseFieldsRemoved { .. }
            | Self::ResponseInvalid { .. } => "web",
        }
    }

    /// The ECS `event.outcome`: `success`, `failure` or `unknown`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Refused(_)
            | Self::LoginFailed { .. }
            | Self::AccountLocked
            | Self::RefreshTokenReused { .. }
            | Self::ClientAuthenticationFailed
            | Self::RateLimitStoreUnavailable { .. }
            | Self::AuditStoreUnavailable { .. }
            | Self::EventsLost { .. }
            | Self::ResponseInvalid { .. } => "failure",
            Self::PathNormalized | Self::EventsSuppressed { .. } | Self::AlertFired { .. } => "unknown",
            _ => "success",
        }
    }

    /// What the event was done to, when that is not the subject (the user an
    /// administrator changed).
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::AdminAction { target, .. } => Some(target),
            _ => None,
        }
    }

    /// The exact check that failed, for the log (never sent to clients).
    pub fn reason_detail(&self) -> String {
        match self {
            Self::Refused(Reason::Unauthenticated { check, .. }) => check.clone(),
            Self::Refused(Reason::Forbidden { rule }) => rule.clone(),
            Self::Refused(Reason::CsrfFailed { check }) => check.clone(),
            Self::Refused(Reason::InvalidParameters { errors } | Reason::InvalidBody { errors }) => errors
                .iter()
                .map(|e| format!("{} {}", if e.pointer.is_empty() { "/" } else { &e.pointer }, e.rule))
                .collect::<Vec<_>>()
                .join(", "),
            Self::Refused(reason) => reason.detail(),
            Self::ResponseFieldsRemoved { pointers } => format!("removed undeclared fields: {}", pointers.join(", ")),
            Self::ResponseInvalid { rules } => format!("the upstream's answer breaks its schema: {rules}"),
            Self::PathNormalized => "the path was rewritten to its canonical form".to_owned(),
            Self::LoginFailed { reason } => reason.clone(),
            Self::AccountLocked => "too many failed logins".to_owned(),
            Self::AccountUnlocked => "lock lifted by an administrator".to_owned(),
            Self::RefreshTokenReused { family } => format!("refresh token family {family} revoked"),
            Self::LoginSucceeded => "password login".to_owned(),
            Self::ClientAuthenticationFailed => "bad client id or secret".to_owned(),
            Self::ClientTokenIssued => "client credentials grant".to_owned(),
            Self::TokenRevoked => "revoked on request".to_owned(),
            Self::SessionStarted => "browser session".to_owned(),
            Self::SessionEnded => "session ended".to_owned(),
            Self::UserRegistered => "self-registration".to_owned(),
            Self::BootstrapAdminCreated => "created `admin` from PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD".to_owned(),
            Self::AdminAction { action, target } => format!("{action}: {target}"),
            Self::KeysReloaded => "signing keys reloaded".to_owned(),
            Self::CertificateReloaded => "TLS certificate reloaded".to_owned(),
            Self::RateLimitStoreUnavailable { error } => format!("Redis: {error}"),
            Self::RateLimitStoreRecovered => "Redis answers again".to_owned(),
            Self::EventsSuppressed { action, count } => format!("{count} {action} events not written one by one"),
            Self::AuditStoreUnavailable { error } => format!("events are spooled to disk: {error}"),
            Self::AuditStoreRecovered { replayed } => format!("{replayed} spooled events written"),
            Self::EventsLost { count, cause } => format!("{count} events lost: {cause}"),
            Self::AlertFired { rule, group, count } => format!("alert {rule}: {count} events {group}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dotted_and_distinct() {
        let events = [
            SecurityEvent::PathNormalized,
            SecurityEvent::LoginSucceeded,
            SecurityEvent::LoginFailed { reason: String::new() },
            SecurityEvent::AccountLocked,
            SecurityEvent::AccountUnlocked,
            SecurityEvent::AdminAction { action: "user-created", target: "bob".into() },
            SecurityEvent::KeysReloaded,
            SecurityEvent::EventsLost { count: 1, cause: "queue full" },
            SecurityEvent::AlertFired { rule: "r".into(), group: String::new(), count: 3 },
        ];
        let names: std::collections::HashSet<String> = events.iter().map(SecurityEvent::name).collect();
        assert_eq!(names.len(), events.len());
        assert!(names.iter().all(|n| n.contains('.') && !n.contains(' ')));
    }

    #[test]
    fn admin_actions_name_their_target() {
        let event = SecurityEvent::AdminAction { action: "user-unlocked", target: "alice".into() };
        assert_eq!(event.name(), "admin.user-unlocked");
        assert_eq!(event.target(), Some("alice"));
        assert_eq!(event.category(), "iam");
    }
}
