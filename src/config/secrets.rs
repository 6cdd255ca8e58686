//! Secrets: read only from the environment, a `.env` file, or a file named by
//! a `*_FILE` variable — never from `portcullis.toml`.
//!
//! Secret values live in [`Secret`], whose `Debug` and `Display` print
//! `[redacted]`, so a secret cannot reach a log line or an error by accident.
//!
//! ```
//! use portcullis::config::secrets::{Environment, SecretKind, read_secret};
//! let env = Environment::from_pairs([("PORTCULLIS_STORE_PASSWORD", "s3cure-and-long-enough")]);
//! let secret = read_secret(&env, "PORTCULLIS_STORE_PASSWORD", SecretKind::Password).unwrap().unwrap();
//! assert_eq!(format!("{secret}"), "[redacted]");
//! assert_eq!(secret.expose(), "s3cure-and-long-enough");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// The password of the database named by `[store] url`.
pub const STORE_PASSWORD: &str = "PORTCULLIS_STORE_PASSWORD";

/// The password of the Redis rate-limit store, if it needs one.
pub const REDIS_PASSWORD: &str = "PORTCULLIS_REDIS_PASSWORD";

/// The key that signs tokens: a PKCS#8 PEM private key, or an HS256 secret.
pub const SIGNING_KEY: &str = "PORTCULLIS_SIGNING_KEY";

/// The previous signing key, still accepted while its tokens live.
pub const SIGNING_KEY_PREVIOUS: &str = "PORTCULLIS_SIGNING_KEY_PREVIOUS";

/// The first administrator's password, used once when the store has no user.
pub const BOOTSTRAP_ADMIN_PASSWORD: &str = "PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD";

/// The Sentry DSN: high-severity events go to Sentry when it is set.
pub const SENTRY_DSN: &str = "PORTCULLIS_SENTRY_DSN";

/// Every secret variable Portcullis knows. None of them is ever a
/// configuration override, and their values are never logged.
pub const ALL_SECRETS: &[&str] =
    &[STORE_PASSWORD, SIGNING_KEY, SIGNING_KEY_PREVIOUS, BOOTSTRAP_ADMIN_PASSWORD, REDIS_PASSWORD, SENTRY_DSN];

/// A secret value. Printing it shows `[redacted]`.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What a secret is used for, which decides how strong it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A symmetric key (HMAC, cookie signing): at least 32 bytes.
    Key,
    /// A password for a service (database, Redis): no placeholder values.
    Password,
}

/// Why a secret could not be used. Never contains the secret itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// A required secret is not set.
    #[error("the secret {name} is required but not set (set {name} or {name}_FILE in the environment or .env)")]
    Missing {
        /// The variable.
        name: String,
    },
    /// The secret is set but too weak to use.
    #[error("the secret {name} is refused: {reason}")]
    Weak {
        /// The variable.
        name: String,
        /// Why it is weak.
        reason: String,
    },
    /// Both `NAME` and `NAME_FILE` are set.
    #[error("both {name} and {name}_FILE are set; set only one")]
    Ambiguous {
        /// The variable.
        name: String,
    },
    /// `NAME_FILE` names a file that cannot be read.
    #[error("{name}_FILE points to {path}, which cannot be read: {reason}")]
    Unreadable {
        /// The variable.
        name: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

/// The process environment overlaid on a `.env` file (the process wins).
///
/// Tests build one from pairs, so no test ever mutates the real environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The real environment, plus `.env` in the current directory when present.
    pub fn from_process() -> Self {
        let mut vars = BTreeMap::new();
        if let Ok(iter) = dotenvy::dotenv_iter() {
            vars.extend(iter.flatten());
        }
        vars.extend(std::env::vars());
        Self { vars }
    }

    /// An environment made of the given pairs (for tests and examples).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// One variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// All variables whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .range(prefix.to_owned()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Reads the secret `name` from `NAME` or from the file named by `NAME_FILE`.
///
/// Returns `Ok(None)` when neither is set, and an error when the value is
/// weak (see [`weakness`]) or the file cannot be read.
pub fn read_secret(env: &Environment, name: &str, kind: SecretKind) -> Result<Option<Secret>, SecretError> {
    let file_var = format!("{name}_FILE");
    let value = match (env.var(name), env.var(&file_var)) {
        (Some(_), Some(_)) => return Err(SecretError::Ambiguous { name: name.to_owned() }),
        (Some(value), None) => value.to_owned(),
        (None, Some(path)) => read_secret_file(name, Path::new(path))?,
        (None, None) => return Ok(None),
    };
    if let Some(reason) = weakness(&value, kind) {
        return Err(SecretError::Weak { name: name.to_owned(), reason });
    }
    Ok(Some(Secret::new(value)))
}

/// Like [`read_secret`], but a missing secret is an error.
pub fn require_secret(env: &Environment, name: &str, kind: SecretKind) -> Result<Secret, SecretError> {
    read_secret(env, name, kind)?.ok_or_else(|| SecretError::Missing { name: name.to_owned() })
}

fn read_secret_file(name: &str, path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
        name: name.to_owned(),
        path: path.to_owned(),
        reason: e.kind().to_string(),
    })?;
    // Files written by `echo` or editors end with a newline that is not part of the secret.
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

/// Values that people leave in place of a real secret.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "changeit",
    "secret",
    "password",
    "passw0rd",
    "default",
    "example",
    "test",
    "testing",
    "admin",
    "root",
    "dev",
    "development",
    "your-secret",
    "your_secret",
    "yoursecret",
    "your-secret-key",
    "secret-key",
    "secretkey",
    "mysecret",
    "my-secret",
    "supersecret",
    "replace-me",
    "replaceme",
    "todo",
    "xxx",
    "12345678",
    "123456789",
    "1234567890",
    "qwerty",
];

/// Why `value` is too weak to be a secret of this kind, if it is.
///
/// ```
/// use portcullis::config::secrets::{weakness, SecretKind};
/// assert!(weakness("changeme", SecretKind::Password).is_some());
/// assert!(weakness("short", SecretKind::Key).is_some());
/// assert!(weakness("0123456789abcdef0123456789abcdef-not-a-placeholder", SecretKind::Key).is_none());
/// ```
pub fn weakness(value: &str, kind: SecretKind) -> Option<String> {
    if value.is_empty() {
        return Some("it is empty".into());
    }
    let folded = value.to_ascii_lowercase();
    let core = folded.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if PLACEHOLDERS.contains(&folded.as_str()) || PLACEHOLDERS.contains(&core) || folded.contains("changeme") {
        return Some("it is a placeholder value, not a secret".into());
    }
    let mut chars = value.chars();
    let first = chars.next();
    if value.len() > 1 && chars.all(|c| Some(c) == first) {
        return Some("it repeats a single character".into());
    }
    if kind == SecretKind::Key && value.len() < 32 {
        return Some(format!("a key must be at least 32 bytes long, this one has {}", value.len()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_secret_names_the_variable() {
        let env = Environment::default();
        let err = require_secret(&env, STORE_PASSWORD, SecretKind::Password).unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_STORE_PASSWORD"));
    }

    #[test]
    fn weak_secrets_are_refused_without_echoing_them() {
        for weak in ["changeme", "CHANGEME", "<changeme>", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", "Passw0rd"] {
            let env = Environment::from_pairs([("K", weak)]);
            let err = read_secret(&env, "K", SecretKind::Password).unwrap_err();
            assert!(matches!(err, SecretError::Weak { .. }), "{weak:?} was accepted");
            if !weak.is_empty() {
                assert!(!err.to_string().contains(weak), "the error repeats the secret");
            }
        }
        let env = Environment::from_pairs([("K", "only-20-bytes-long!!")]);
        assert!(read_secret(&env, "K", SecretKind::Key).is_err());
        assert!(read_secret(&env, "K", SecretKind::Password).is_ok());
    }

    #[test]
    fn secret_from_file_and_ambiguity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "file-held-password-value\n").unwrap();
        let env = Environment::from_pairs([("K_FILE", path.to_str().unwrap())]);
        let secret = read_secret(&env, "K", SecretKind::Password).unwrap().unwrap();
        assert_eq!(secret.expose(), "file-held-password-value");
        assert_eq!(format!("{secret:?}"), "[redacted]");

        let env = Environment::from_pairs([("K_FILE", path.to_str().unwrap()), ("K", "another-password")]);
        assert!(matches!(read_secret(&env, "K", SecretKind::Password), Err(SecretError::Ambiguous { .. })));

        let env = Environment::from_pairs([("K_FILE", "/nonexistent/file")]);
        assert!(matches!(read_secret(&env, "K", SecretKind::Password), Err(SecretError::Unreadable { .. })));
    }

    #[test]
    fn prefix_listing() {
        let env = Environment::from_pairs([("A_X", "1"), ("PORTCULLIS_A", "2"), ("PORTCULLIS_B", "3"), ("Q", "4")]);
        let names: Vec<_> = env.with_prefix("PORTCULLIS_").map(|(k, _)| k).collect();
        assert_eq!(names, ["PORTCULLIS_A", "PORTCULLIS_B"]);
    }
}
