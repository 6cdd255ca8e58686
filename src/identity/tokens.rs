//! Access tokens (RFC 9068 JWTs) and their verification (RFC 8725).
//!
//! An access token carries `iss`, `aud`, `sub`, `exp`, `iat`, `nbf`, `jti`,
//! `roles`, `scope` and `auth_time`, with `kid` and `typ: at+jwt` in its
//! header. Verification, in order, each failure named for the audit log:
//!
//! 1. size limit, before any parsing;
//! 2. header: well-formed, no duplicate keys, `typ` is `at+jwt` (so an
//!    identity token or any other JWT is never accepted as an access token);
//! 3. `kid` names a key in Portcullis's ring, and the header's `alg` is that
//!    key's algorithm (the algorithm is fixed by the key, never by the token:
//!    no `none`, no HS/RS confusion); `jku`, `x5u` and embedded `jwk` headers
//!    are never used;
//! 4. payload: no duplicate keys; signature; `iss`, `aud`, `exp`, `nbf`
//!    with the configured leeway; every claim present with the right type;
//! 5. not revoked (see [`super::denylist`]).

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::keys::KeyRing;

/// The `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The `typ` of the identity tokens forwarded to upstreams: never accepted
/// as an access token, and its audience is the upstream, not the gateway.
pub const IDENTITY_TOKEN_TYPE: &str = "identity+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: a user id, or a client id for client credentials.
    pub sub: String,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id (for revocation).
    pub jti: String,
    /// Roles of the user.
    pub roles: Vec<String>,
    /// Space-separated scopes.
    pub scope: String,
    /// When the user last typed a password (unix seconds).
    pub auth_time: i64,
    /// The OAuth client, for client-credentials tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The username, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// What the gateway checks tokens against.
#[derive(Debug, Clone)]
pub struct TokenRules {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Clock leeway in seconds for `exp` and `nbf`.
    pub leeway: u64,
    /// Largest token accepted, in bytes.
    pub max_size: usize,
}

/// Why a token was refused: the exact check, for the audit log. Clients only
/// ever see "invalid token".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than the size limit.
    TooLarge,
    /// Not three base64url parts of JSON.
    Malformed,
    /// A JSON object in the header or payload repeats a key.
    DuplicateKeys,
    /// `typ` is not `at+jwt`.
    WrongType,
    /// No `kid`, or a `kid` not in the key ring.
    UnknownKey,
    /// The header's `alg` differs from the key's.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `iss` is not Portcullis's.
    WrongIssuer,
    /// `aud` is not the expected audience.
    WrongAudience,
    /// A claim is missing or has the wrong type.
    BadClaims(String),
    /// The token or its user was revoked.
    Revoked,
    /// The `iss` is neither Portcullis nor a configured external issuer.
    UnknownIssuer,
}

impl TokenError {
    /// Whether the same token would always be refused for this reason (so
    /// the refusal can be remembered until the keys change): not for a token
    /// that may become valid (`nbf` ahead), whose key may still be fetched,
    /// or whose revocation is checked anew anyway.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::NotYetValid | Self::UnknownKey | Self::Revoked | Self::TooLarge)
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("token larger than the size limit"),
            Self::Malformed => f.write_str("malformed token"),
            Self::DuplicateKeys => f.write_str("duplicate JSON keys in the token"),
            Self::WrongType => f.write_str("token typ is not at+jwt"),
            Self::UnknownKey => f.write_str("unknown or missing kid"),
            Self::AlgorithmMismatch => f.write_str("alg does not match the key"),
            Self::BadSignature => f.write_str("bad signature"),
            Self::Expired => f.write_str("token expired"),
            Self::NotYetValid => f.write_str("token not yet valid (nbf)"),
            Self::WrongIssuer => f.write_str("wrong issuer"),
            Self::WrongAudience => f.write_str("wrong audience"),
            Self::BadClaims(what) => write!(f, "bad claims: {what}"),
            Self::Revoked => f.write_str("token revoked"),
            Self::UnknownIssuer => f.write_str("unknown issuer"),
        }
    }
}

/// Signs `claims` as an access token with the ring's active key.
pub fn sign(ring: &KeyRing, claims: &AccessClaims) -> Result<String, jsonwebtoken::errors::Error> {
    sign_typed(ring, claims, ACCESS_TOKEN_TYPE)
}

/// Signs `claims` with the ring's active key and the given `typ`.
pub fn sign_typed<T: Serialize>(ring: &KeyRing, claims: &T, typ: &str) -> Result<String, jsonwebtoken::errors::Error> {
    let key = ring.active();
    let mut header = Header::new(key.alg.jwt());
    header.kid = Some(key.kid.clone());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding)
}

/// The header fields verification looks at (others are ignored, never used).
#[derive(Deserialize)]
pub(crate) struct RawHeader {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
}

/// A token split and checked for shape, before any signature check.
pub(crate) struct Parsed {
    pub(crate) header: RawHeader,
    /// The `iss` claim, unverified: only used to pick who verifies.
    pub(crate) issuer: Option<String>,
}

/// Checks size, shape, base64 and JSON (no duplicate keys) of a token.
pub(crate) fn parse(token: &str, max_size: usize) -> Result<Parsed, TokenError> {
    if token.len() > max_size {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload_part), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD.decode(header_part).map_err(|_| TokenError::Malformed)?;
    let payload_json = URL_SAFE_NO_PAD.decode(payload_part).map_err(|_| TokenError::Malformed)?;
    check_no_duplicate_keys(&header_json)?;
    check_no_duplicate_keys(&payload_json)?;
    let header: RawHeader = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    #[derive(Deserialize)]
    struct Issuer {
        #[serde(default)]
        iss: Option<serde_json::Value>,
    }
    let issuer = serde_json::from_slice::<Issuer>(&payload_json)
        .map_err(|_| TokenError::Malformed)?
        .iss
        .and_then(|v| v.as_str().map(str::to_owned));
    Ok(Parsed { header, issuer })
}

/// Maps a jsonwebtoken validation error to the check that failed.
pub(crate) fn classify(error: &jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => TokenError::AlgorithmMismatch,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::BadClaims(format!("missing {claim}")),
        ErrorKind::InvalidClaimFormat(claim) => TokenError::BadClaims(format!("{claim} has the wrong type")),
        ErrorKind::Json(_) => TokenError::BadClaims("missing or mistyped claims".into()),
        _ => TokenError::Malformed,
    }
}

/// The validation every token gets: its key's algorithm only, issuer,
/// audience, `exp` and `nbf` with leeway, the registered claims required.
pub(crate) fn validation(alg: jsonwebtoken::Algorithm, issuer: &str, audience: &str, leeway: u64) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.leeway = leeway;
    validation.validate_nbf = true;
    validation.required_spec_claims = ["exp", "iss", "aud", "sub"].iter().map(|s| (*s).to_owned()).collect();
    validation
}

/// Verifies one of Portcullis's own access tokens (everything but
/// revocation) and returns its claims.
pub fn verify(ring: &KeyRing, rules: &TokenRules, token: &str) -> Result<AccessClaims, TokenError> {
    let Parsed { header, .. } = parse(token, rules.max_size)?;
    verify_parsed(ring, rules, token, &header)
}

/// [`verify`] for a token already through [`parse`].
pub(crate) fn verify_parsed(
    ring: &KeyRing,
    rules: &TokenRules,
    token: &str,
    header: &RawHeader,
) -> Result<AccessClaims, TokenError> {
    let typ_ok = header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt"));
    if !typ_ok {
        return Err(TokenError::WrongType);
    }
    let key = header.kid.as_deref().and_then(|kid| ring.get(kid)).ok_or(TokenError::UnknownKey)?;
    if header.alg.parse::<jsonwebtoken::Algorithm>().ok() != Some(key.alg.jwt()) {
        return Err(TokenError::AlgorithmMismatch);
    }
    let mut validation = validation(key.alg.jwt(), &rules.issuer, &rules.audience, rules.leeway);
    validation.required_spec_claims.insert("nbf".to_owned());
    jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| classify(&e))
}

/// Refuses JSON whose objects repeat a key: parsers disagree on which value
/// wins, so a duplicate can make two verifiers read two different tokens.
fn check_no_duplicate_keys(json: &[u8]) -> Result<(), TokenError> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    NoDuplicates::deserialize(&mut deserializer).map_err(|e| {
        if e.to_string().starts_with("duplicate key") { TokenError::DuplicateKeys } else { TokenError::Malformed }
    })?;
    deserializer.end().map_err(|_| TokenError::Malformed)
}

struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
}

#[cfg(test)]
mod tests;
