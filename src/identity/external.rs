//! Tokens from external OpenID Connect issuers (Keycloak, Auth0, …).
//!
//! Each `[[tokens.external]]` names an issuer, the audience its tokens must
//! carry, where its JWKS is (`jwks_url`, default `<issuer>/.well-known/jwks.json`
//! — discovery documents are not fetched), which claim holds the roles
//! (a dotted path such as `realm_access.roles`) and the algorithms
//! accepted. The key set is fetched at start (before serving), refreshed every five minutes,
//! and again (at most every 30 seconds) when a token names an unknown `kid`:
//! such a token is refused until the refreshed set knows its key.
//!
//! A key's algorithm comes from the JWK (`alg`, or its key type and curve),
//! never from the token, and must be one of the configured algorithms.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http_body_util::BodyExt as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::tokens::{AccessClaims, RawHeader, TokenError, classify, validation};
use crate::config::ExternalIssuerConfig;

/// How often the key set is refreshed anyway.
const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// The least time between two fetches prompted by unknown `kid`s.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 << 10;

/// One external issuer and its cached keys.
pub struct ExternalIssuer {
    config: ExternalIssuerConfig,
    keys: ArcSwap<HashMap<String, (Algorithm, DecodingKey)>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

/// The algorithm a JWK is for, if it is one this issuer accepts.
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk, allowed: &[Algorithm]) -> Option<Algorithm> {
    let from_jwk = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Some(Algorithm::ES384),
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
        // Shared secrets are never taken from a published key set.
        _ => None,
    };
    let alg = from_jwk.or(implied)?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return None;
    }
    allowed.contains(&alg).then_some(alg)
}

impl ExternalIssuer {
    /// An issuer with an empty key set (see [`refresh`](Self::refresh)).
    pub fn new(config: ExternalIssuerConfig) -> Self {
        Self { config, keys: ArcSwap::from_pointee(HashMap::new()), last_fetch: Mutex::new(None) }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Fetches the key set and replaces the cache. Keeps the old set on error.
    pub async fn refresh(&self, client: &crate::proxy::UpstreamClient) -> Result<usize, String> {
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = Some(Instant::now());
        }
        let request = http::Request::get(self.config.jwks_url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(crate::body::empty())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let limited = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES);
        let bytes = limited.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| format!("not a JWK set: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature) {
                // An encryption key is never a verifying key.
                continue;
            }
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), key_algorithm(jwk, &self.config.algorithms))
            else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (alg, key));
            }
        }
        let count = keys.len();
        self.keys.store(Arc::new(keys));
        Ok(count)
    }

    /// Whether the key set is due for a refresh: on schedule, or because a
    /// token named an unknown key (throttled).
    pub fn refresh_due(&self, unknown_kid: bool) -> bool {
        let Ok(last) = self.last_fetch.lock() else { return false };
        match *last {
            None => true,
            Some(at) => at.elapsed() >= REFRESH_EVERY || (unknown_kid && at.elapsed() >= REFETCH_AT_MOST_EVERY),
        }
    }

    /// Marks the key set stale, so the next refresh fetches it.
    pub fn expire(&self) {
        if let Ok(mut last) = self.last_fetch.lock() {
            *last = None;
        }
    }

    /// Verifies a token of this issuer and maps its claims.
    pub(crate) fn verify(&self, token: &str, header: &RawHeader, leeway: u64) -> Result<AccessClaims, TokenError> {
        let keys = self.keys.load();
        let (alg, key) = header.kid.as_deref().and_then(|kid| keys.get(kid)).ok_or(TokenError::UnknownKey)?;
        if header.alg.parse::<Algorithm>().ok() != Some(*alg) {
            return Err(TokenError::AlgorithmMismatch);
        }
        if header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(super::tokens::IDENTITY_TOKEN_TYPE)) {
            return Err(TokenError::WrongType);
        }
        let mut validation = validation(*alg, &self.config.issuer, &self.config.audience, leeway);
        // Some issuers (Auth0) end `iss` with a slash.
        validation.set_issuer(&[self.config.issuer.clone(), format!("{}/", self.config.issuer)]);
        let claims =
            jsonwebtoken::decode::<serde_json::Value>(token, key, &validation).map_err(|e| classify(&e))?.claims;
        only_access_tokens(&claims)?;
        map_claims(&claims, &self.config.issuer, &self.config.audience, &self.config.roles_claim)
    }
}

/// Refuses ID and refresh tokens marked as such: Keycloak's `typ` claim,
/// Flask-JWT-Extended's `type` claim.
pub(super) fn only_access_tokens(claims: &serde_json::Value) -> Result<(), TokenError> {
    if let Some(typ) = claims.get("typ").and_then(|t| t.as_str())
        && !typ.eq_ignore_ascii_case("Bearer")
        && !typ.eq_ignore_ascii_case("at+jwt")
    {
        return Err(TokenError::WrongType);
    }
    if let Some(kind) = claims.get("type").and_then(|t| t.as_str())
        && !kind.eq_ignore_ascii_case("access")
    {
        return Err(TokenError::WrongType);
    }
    Ok(())
}

/// Maps another issuer's claims onto [`AccessClaims`]; `roles_claim` is a
/// dotted path to a list of strings or a single string.
pub(super) fn map_claims(
    claims: &serde_json::Value,
    issuer: &str,
    audience: &str,
    roles_claim: &str,
) -> Result<AccessClaims, TokenError> {
    let int = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let bad = |what: &str| TokenError::BadClaims(what.to_owned());
    let exp = int("exp").ok_or_else(|| bad("exp"))?;
    let iat = int("iat").ok_or_else(|| bad("missing iat"))?;
    let mut roles_value = claims;
    for part in roles_claim.split('.') {
        roles_value = roles_value.get(part).unwrap_or(&serde_json::Value::Null);
    }
    let roles = match roles_value {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(role) => vec![role.clone()],
        serde_json::Value::Array(list) => list
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("roles are not strings"))?,
        _ => return Err(bad("roles claim is not a list or a string")),
    };
    let scope = match (claims.get("scope"), claims.get("scp")) {
        (Some(serde_json::Value::String(s)), _) => s.clone(),
        (_, Some(serde_json::Value::Array(list))) => {
            list.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    };
    Ok(AccessClaims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        sub: text("sub").ok_or_else(|| bad("missing sub"))?,
        exp,
        iat,
        nbf: int("nbf").unwrap_or(iat),
        jti: text("jti").unwrap_or_default(),
        roles,
        scope,
        // Without auth_time the password time is unknown: never "fresh".
        auth_time: int("auth_time").unwrap_or(0),
        client_id: text("azp").or_else(|| text("client_id")),
        username: text("preferred_username"),
    })
}
