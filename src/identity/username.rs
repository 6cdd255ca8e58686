//! Usernames: Unicode NFKC, compared case-insensitively.
//!
//! `Ａｌｉｃｅ` (full-width), `ALICE` and `alice` are one user: the canonical
//! form (NFKC, then lower case) is what the store keeps unique. The display
//! form keeps the case the user chose. Allowed: letters, digits and
//! `. _ - @ +`, 1 to 64 characters; no spaces, controls or invisible marks.
//!
//! ```
//! use portcullis::identity::username::Username;
//! let a = Username::parse("Ａｌｉｃｅ").unwrap();
//! assert_eq!(a.canonical(), "alice");
//! assert_eq!(a.display(), "Alice");
//! assert!(Username::parse("al ice").is_err());
//! ```

use unicode_normalization::UnicodeNormalization;

/// A validated username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    canonical: String,
    display: String,
}

/// Why a username was refused (safe to show the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsernameError(pub &'static str);

impl Username {
    /// Normalizes and checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let display: String = raw.nfkc().collect();
        let length = display.chars().count();
        if length == 0 || length > 64 {
            return Err(UsernameError("A username has 1 to 64 characters."));
        }
        if !display.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+')) {
            return Err(UsernameError("A username may hold letters, digits and . _ - @ + only."));
        }
        let canonical = display.to_lowercase().nfkc().collect();
        Ok(Self { canonical, display })
    }

    /// The form used for lookups and uniqueness.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The form shown to people.
    pub fn display(&self) -> &str {
        &self.display
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_of_one_name_are_one_user() {
        for variant in ["alice", "ALICE", "Alice", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
            assert_eq!(Username::parse(variant).unwrap().canonical(), "alice", "{variant}");
        }
        assert_eq!(Username::parse("Ǆemal").unwrap().canonical(), "džemal");
        assert_eq!(Username::parse("ﬁona").unwrap().canonical(), "fiona", "ligatures fold (NFKC)");
    }

    #[test]
    fn refused_names() {
        for bad in ["", " alice", "al ice", "alice\u{200b}", "a\u{0}b", "a/b", "a'b", "<script>", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Username::parse("alice.smith+tag@example.com").is_ok());
        assert!(Username::parse(&"a".repeat(64)).is_ok());
    }
}
