//! `[tokens]`, `[[tokens.external]]` and `[login]`.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use http::uri::Scheme;
use toml::Spanned;

use super::Validator;
use crate::config::file::FileConfig;
use crate::config::{ExternalIssuerConfig, LoginConfig, ServerConfig, SharedSecretIssuerConfig, TokensConfig};
use crate::gates::rate_limit::store::OnStoreError;
use crate::gates::rate_limit::{CountMode, KeyPart, RateRule};
use crate::identity::keys::SigningAlgorithm;
use crate::identity::password::PasswordPolicy;

pub(super) fn validate_tokens(v: &mut Validator<'_>, raw: &FileConfig, server: &ServerConfig) -> TokensConfig {
    let t = &raw.tokens;
    let algorithm = match &t.algorithm {
        None => SigningAlgorithm::EdDSA,
        Some(value) => SigningAlgorithm::parse(value.get_ref()).unwrap_or_else(|| {
            v.error(value, "`tokens.algorithm` must be \"EdDSA\", \"ES256\", \"RS256\" or \"HS256\"");
            SigningAlgorithm::EdDSA
        }),
    };
    let default_issuer =
        server.public_url.clone().unwrap_or_else(|| format!("https://localhost:{}", server.https.port()));
    let issuer = match &t.issuer {
        None => default_issuer,
        Some(value) if value.get_ref().trim().is_empty() => {
            v.error(value, "`tokens.issuer` is empty");
            default_issuer
        }
        Some(value) => value.get_ref().clone(),
    };
    let audience = match &t.audience {
        Some(value) if value.get_ref().trim().is_empty() => {
            v.error(value, "`tokens.audience` is empty");
            "portcullis".to_owned()
        }
        Some(value) => value.get_ref().clone(),
        None => "portcullis".to_owned(),
    };
    let max_token_size = v.size(t.max_token_size.as_ref(), "tokens.max_token_size", 8 << 10);
    let shared_secret = validate_shared_secrets(v, &t.shared_secret, &issuer);
    for (section, config) in t.shared_secret.iter().zip(&shared_secret) {
        if let (Some(value), Some(name)) = (&section.get_ref().issuer, &config.issuer)
            && t.external.iter().any(|e| e.get_ref().issuer.get_ref().trim_end_matches('/') == name)
        {
            v.error(value, "this issuer is also a [[tokens.external]] issuer: its tokens would reach only one of them");
        }
    }
    TokensConfig {
        algorithm,
        issuer,
        audience,
        access_ttl: v.duration(t.access_ttl.as_ref(), "tokens.access_ttl", Duration::from_secs(15 * 60)),
        refresh_ttl: v.duration(t.refresh_ttl.as_ref(), "tokens.refresh_ttl", Duration::from_secs(14 * 86_400)),
        leeway: match &t.leeway {
            Some(value) if value.get_ref() == "0s" => Duration::ZERO,
            other => v.duration(other.as_ref(), "tokens.leeway", Duration::from_secs(30)),
        },
        max_token_size: usize::try_from(max_token_size).unwrap_or(8 << 10),
        keys_dir: t.keys_dir.as_ref().map_or_else(|| server.data_dir.join("keys"), PathBuf::from),
        external: validate_externals(v, &t.external),
        shared_secret,
    }
}

fn validate_shared_secrets(
    v: &mut Validator<'_>,
    sections: &[Spanned<crate::config::file::SharedSecretIssuerSection>],
    own_issuer: &str,
) -> Vec<SharedSecretIssuerConfig> {
    let mut issuers: Vec<SharedSecretIssuerConfig> = Vec::new();
    for section in sections {
        let s = section.get_ref();
        let env_name = s.secret_env.get_ref().trim();
        if env_name.is_empty() || !env_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            v.error(&s.secret_env, "`secret_env` must name an environment variable (letters, digits, _)");
        } else if env_name.starts_with(crate::config::env::PREFIX) {
            v.error(
                &s.secret_env,
                "`secret_env` must be the application's own variable (like JWT_SECRET_KEY), not a PORTCULLIS_ one",
            );
        }
        let algorithm = match s.algorithm.as_ref().map(|a| (a, a.get_ref().as_str())) {
            None | Some((_, "HS256")) => jsonwebtoken::Algorithm::HS256,
            Some((_, "HS384")) => jsonwebtoken::Algorithm::HS384,
            Some((_, "HS512")) => jsonwebtoken::Algorithm::HS512,
            Some((value, _)) => {
                v.error(value, "`algorithm` must be HS256, HS384 or HS512 (one shared secret, one algorithm)");
                jsonwebtoken::Algorithm::HS256
            }
        };
        let issuer = s.issuer.as_ref().map(|i| i.get_ref().trim_end_matches('/').to_owned());
        if let (Some(value), Some(name)) = (&s.issuer, &issuer)
            && (name.is_empty() || name == own_issuer)
        {
            v.error(value, "`issuer` must be a non-empty issuer other than Portcullis's own");
        }
        let config = SharedSecretIssuerConfig {
            secret_env: env_name.to_owned(),
            algorithm,
            issuer,
            audience: s.audience.as_ref().map(|a| a.get_ref().clone()),
            roles_claim: s.roles_claim.clone().unwrap_or_else(|| "roles".to_owned()),
        };
        if issuers.iter().any(|other| other.issuer == config.issuer) {
            let message = "two shared-secret issuers with the same `issuer` (or both without one)";
            match &s.issuer {
                Some(value) => v.error(value, message),
                None => v.error(&s.secret_env, message),
            }
        }
        issuers.push(config);
    }
    issuers
}

fn validate_externals(
    v: &mut Validator<'_>,
    sections: &[Spanned<crate::config::file::ExternalIssuerSection>],
) -> Vec<ExternalIssuerConfig> {
    let mut external: Vec<ExternalIssuerConfig> = Vec::new();
    for section in sections {
        if let Some(config) = validate_external(v, section) {
            if external.iter().any(|other| other.issuer == config.issuer) {
                v.error(&section.get_ref().issuer, "this issuer is configured twice");
            }
            external.push(config);
        }
    }
    external
}

fn validate_external(
    v: &mut Validator<'_>,
    section: &Spanned<crate::config::file::ExternalIssuerSection>,
) -> Option<ExternalIssuerConfig> {
    let e = section.get_ref();
    let issuer = e.issuer.get_ref().trim_end_matches('/').to_owned();
    if issuer.is_empty() {
        v.error(&e.issuer, "`issuer` is empty");
        return None;
    }
    if e.audience.get_ref().trim().is_empty() {
        v.error(&e.audience, "`audience` is empty: every external token must be meant for this gateway");
        return None;
    }
    let url_text =
        e.jwks_url.as_ref().map_or_else(|| format!("{issuer}/.well-known/jwks.json"), |u| u.get_ref().clone());
    let jwks_url = match url_text.parse::<Uri>() {
        Ok(uri) if uri.scheme() == Some(&Scheme::HTTPS) && uri.host().is_some() => uri,
        Ok(uri)
            if uri.scheme() == Some(&Scheme::HTTP)
                && uri.host().is_some_and(|h| {
                    h == "localhost"
                        || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                }) =>
        {
            uri
        }
        _ => {
            match &e.jwks_url {
                Some(value) => v.error(value, "`jwks_url` must be an https URL (http only on loopback, for tests)"),
                None => v.error(&e.issuer, "the issuer is not an https URL; set `jwks_url`"),
            }
            return None;
        }
    };
    let algorithms = match &e.algorithms {
        None => vec![jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::EdDSA],
        Some(list) => {
            let mut algorithms = Vec::new();
            for name in list.get_ref() {
                match name.parse::<jsonwebtoken::Algorithm>() {
                    Ok(alg)
                        if !matches!(
                            alg,
                            jsonwebtoken::Algorithm::HS256
                                | jsonwebtoken::Algorithm::HS384
                                | jsonwebtoken::Algorithm::HS512
                        ) =>
                    {
                        algorithms.push(alg);
                    }
                    _ => v.error(
                        list,
                        format!(
                            "`{name}` is not an accepted algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                        ),
                    ),
                }
            }
            if algorithms.is_empty() {
                v.error(list, "`algorithms` is empty: no token of this issuer could ever be accepted");
            }
            algorithms
        }
    };
    Some(ExternalIssuerConfig {
        issuer,
        audience: e.audience.get_ref().clone(),
        jwks_url,
        roles_claim: e.roles_claim.clone().unwrap_or_else(|| "roles".to_owned()),
        algorithms,
    })
}

pub(super) fn validate_login(v: &mut Validator<'_>, raw: &FileConfig, on_store_error: OnStoreError) -> LoginConfig {
    let l = &raw.login;
    let defaults = PasswordPolicy::default();
    let min_length = v.count(l.min_password_length.as_ref(), "login.min_password_length", 8..=128, defaults.min_length);
    let max_length =
        v.count(l.max_password_length.as_ref(), "login.max_password_length", 8..=1024, defaults.max_length);
    if min_length > max_length
        && let Some(value) = &l.min_password_length
    {
        v.error(value, "`login.min_password_length` is above `login.max_password_length`");
    }
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    LoginConfig {
        allow_registration: l.allow_registration.unwrap_or(false),
        policy: PasswordPolicy { min_length, max_length },
        max_concurrent_hashes: v.count(l.max_concurrent_hashes.as_ref(), "login.max_concurrent_hashes", 1..=256, cores),
        max_failures: u32::try_from(v.count(l.max_failures.as_ref(), "login.max_failures", 1..=1000, 5)).unwrap_or(5),
        lockout: v.duration(l.lockout.as_ref(), "login.lockout", Duration::from_secs(15 * 60)),
        rate_limit: match &l.rate_limit {
            Some(rules) => super::rate_rules(v, rules),
            None => default_login_limits(),
        },
        rate_limit_on_store_error: super::on_store_error(v, l.rate_limit_on_store_error.as_ref(), on_store_error),
    }
}

/// 20 requests a minute per address, and failures (wrong passwords, bad
/// client secrets) 10 at once then 30 an hour per address.
fn default_login_limits() -> Vec<RateRule> {
    let requests = RateRule::new("20/minute", None, vec![KeyPart::Ip]);
    let failures = RateRule::new("30/hour", Some(10), vec![KeyPart::Ip])
        .map(|rule| RateRule { count: CountMode::Failures, ..rule });
    requests.into_iter().chain(failures).collect()
}
