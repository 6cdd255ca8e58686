//! Tokens of an existing application signed with a shared HMAC secret
//! (Flask-JWT-Extended, PyJWT…), so that a team can put Portcullis in front
//! of a Flask API without changing how it issues tokens.
//!
//! Each `[[tokens.shared_secret]]` accepts exactly one algorithm (`HS256`
//! by default): the token's header must name it, so neither `none` nor
//! another HMAC nor a public-key algorithm gets through. Without an
//! `issuer`, its tokens must carry no `iss` (they are picked by that
//! absence); without an `audience`, no `aud`. `exp` and `sub` are required,
//! `nbf` is checked, and refresh tokens (`"type": "refresh"`) are refused.
//!
//! ```
//! use portcullis::config::SharedSecretIssuerConfig;
//! use portcullis::config::secrets::Secret;
//! use portcullis::identity::shared_secret::SharedSecretIssuer;
//! let config = SharedSecretIssuerConfig {
//!     secret_env: "JWT_SECRET_KEY".into(),
//!     algorithm: jsonwebtoken::Algorithm::HS256,
//!     issuer: None,
//!     audience: None,
//!     roles_claim: "role".into(),
//! };
//! let issuer = SharedSecretIssuer::new(config, &Secret::new("0123456789abcdef0123456789abcdef")).unwrap();
//! assert_eq!(issuer.issuer(), None);
//! ```

use jsonwebtoken::{DecodingKey, Validation};

use super::external::{map_claims, only_access_tokens};
use super::tokens::{AccessClaims, IDENTITY_TOKEN_TYPE, RawHeader, TokenError, classify};
use crate::config::SharedSecretIssuerConfig;
use crate::config::secrets::Secret;

/// One shared-secret issuer and its key.
pub struct SharedSecretIssuer {
    config: SharedSecretIssuerConfig,
    key: DecodingKey,
}

impl std::fmt::Debug for SharedSecretIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSecretIssuer").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl SharedSecretIssuer {
    /// The issuer of `config` with its `secret`.
    pub fn new(config: SharedSecretIssuerConfig, secret: &Secret) -> Result<Self, String> {
        let key = DecodingKey::from_secret(secret.expose().as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self { key, config })
    }

    /// The `iss` its tokens carry, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.config.issuer.as_deref()
    }

    /// Verifies a token of this issuer and maps its claims.
    pub(crate) fn verify(&self, token: &str, header: &RawHeader, leeway: u64) -> Result<AccessClaims, TokenError> {
        if header.alg.parse::<jsonwebtoken::Algorithm>().ok() != Some(self.config.algorithm) {
            return Err(TokenError::AlgorithmMismatch);
        }
        if header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(IDENTITY_TOKEN_TYPE)) {
            return Err(TokenError::WrongType);
        }
        let mut validation = Validation::new(self.config.algorithm);
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| (*s).to_owned()).collect();
        match &self.config.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer.clone(), format!("{issuer}/")]);
                validation.required_spec_claims.insert("iss".into());
            }
            None => validation.iss = None,
        }
        match &self.config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let claims =
            jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &validation).map_err(|e| classify(&e))?.claims;
        if self.config.issuer.is_none() && claims.get("iss").is_some() {
            return Err(TokenError::BadClaims("unexpected iss".into()));
        }
        if self.config.audience.is_none() && claims.get("aud").is_some() {
            return Err(TokenError::BadClaims("unexpected aud".into()));
        }
        only_access_tokens(&claims)?;
        let issuer = self.config.issuer.as_deref().unwrap_or_default();
        map_claims(&claims, issuer, self.config.audience.as_deref().unwrap_or_default(), &self.config.roles_claim)
    }
}
