//! Signing keys: the key ring that signs and verifies Portcullis's tokens.
//!
//! Two sources, chosen at start:
//! - **Environment** (`PORTCULLIS_SIGNING_KEY` or `_FILE`): a PKCS#8 PEM
//!   private key (EdDSA, ES256, RS256) or, for HS256, a secret of at least 32
//!   bytes. `PORTCULLIS_SIGNING_KEY_PREVIOUS` may hold the key being rotated
//!   out, still accepted for verification. Rotate by moving the current key
//!   to `_PREVIOUS` and setting a new one, on every instance.
//! - **Key directory** (`[tokens] keys_dir`, default `<data_dir>/keys`): one
//!   JSON file per key, readable by the owner only. A key is made on first
//!   start; `portcullis keys rotate` adds a new one and retires the old one,
//!   which keeps verifying until the last tokens it signed have expired.
//!   Every instance re-reads the directory every 10 seconds, so a shared
//!   directory rotates a whole pool.
//!
//! The algorithm is fixed by the key, never by a token: verification looks
//! the key up by `kid` in this ring and accepts only that key's algorithm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::config::secrets::{
    Environment, SIGNING_KEY, SIGNING_KEY_PREVIOUS, Secret, SecretError, SecretKind, read_secret,
};
use crate::store::now;

/// The algorithms Portcullis signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// Ed25519 (the default).
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSA PKCS#1 v1.5 with SHA-256 (2048-bit keys).
    RS256,
    /// HMAC with SHA-256 (a shared secret: every verifier can also sign).
    HS256,
}

impl SigningAlgorithm {
    /// Parses `EdDSA`, `ES256`, `RS256` or `HS256`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            "HS256" => Some(Self::HS256),
            _ => None,
        }
    }

    /// The JWT `alg`.
    pub fn jwt(self) -> Algorithm {
        match self {
            Self::EdDSA => Algorithm::EdDSA,
            Self::ES256 => Algorithm::ES256,
            Self::RS256 => Algorithm::RS256,
            Self::HS256 => Algorithm::HS256,
        }
    }
}

/// Why keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A secret variable is missing, weak or unreadable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A key could not be parsed (the message never contains key material).
    #[error("the signing key {0} cannot be used: {1}")]
    Invalid(String, String),
    /// The key directory could not be read or written.
    #[error("the key directory {0}: {1}")]
    Directory(PathBuf, String),
    /// Rotation asked while keys come from the environment.
    #[error(
        "signing keys come from PORTCULLIS_SIGNING_KEY: rotate by moving it to PORTCULLIS_SIGNING_KEY_PREVIOUS and setting a new one"
    )]
    FromEnvironment,
}

/// One key: signs (if active) and verifies.
pub struct SigningKey {
    /// Key id, in the `kid` header of every token it signs.
    pub kid: String,
    /// Its algorithm.
    pub alg: SigningAlgorithm,
    /// When it was made (unix seconds).
    pub created_at: i64,
    /// When it was retired (unix seconds), if it was.
    pub retired_at: Option<i64>,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
    public_jwk: Option<Jwk>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl SigningKey {
    fn from_material(
        kid: String,
        alg: SigningAlgorithm,
        material: &Secret,
        created_at: i64,
        retired_at: Option<i64>,
    ) -> Result<Self, KeyError> {
        let invalid = |e: &dyn std::fmt::Display| KeyError::Invalid(kid.clone(), e.to_string());
        let (encoding, decoding) = match alg {
            SigningAlgorithm::HS256 => {
                let secret = material.expose().as_bytes();
                (
                    EncodingKey::from_secret(secret).map_err(|e| invalid(&e))?,
                    DecodingKey::from_secret(secret).map_err(|e| invalid(&e))?,
                )
            }
            _ => {
                let pem = material.expose().as_bytes();
                let pair = rcgen::KeyPair::from_pem(material.expose()).map_err(|e| invalid(&e))?;
                let public = pair.public_key_pem();
                match alg {
                    SigningAlgorithm::EdDSA => (
                        EncodingKey::from_ed_pem(pem).map_err(|e| invalid(&e))?,
                        DecodingKey::from_ed_pem(public.as_bytes()).map_err(|e| invalid(&e))?,
                    ),
                    SigningAlgorithm::ES256 => (
                        EncodingKey::from_ec_pem(pem).map_err(|e| invalid(&e))?,
                        DecodingKey::from_ec_pem(public.as_bytes()).map_err(|e| invalid(&e))?,
                    ),
                    _ => (
                        EncodingKey::from_rsa_pem(pem).map_err(|e| invalid(&e))?,
                        DecodingKey::from_rsa_pem(public.as_bytes()).map_err(|e| invalid(&e))?,
                    ),
                }
            }
        };
        let public_jwk = match alg {
            SigningAlgorithm::HS256 => None,
            _ => {
                let mut jwk = Jwk::from_decoding_key(&decoding, Some(alg.jwt())).map_err(|e| invalid(&e))?;
                jwk.common.key_id = Some(kid.clone());
                jwk.common.public_key_use = Some(PublicKeyUse::Signature);
                Some(jwk)
            }
        };
        // Prove the pair works before anything is signed with it.
        let probe =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(alg.jwt()), &serde_json::json!({"probe": 1}), &encoding)
                .map_err(|e| invalid(&e))?;
        let mut validation = jsonwebtoken::Validation::new(alg.jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&probe, &decoding, &validation).map_err(|e| invalid(&e))?;
        Ok(Self { kid, alg, created_at, retired_at, encoding, decoding, public_jwk })
    }
}

/// The keys in force: one signs, all verify.
#[derive(Debug)]
pub struct KeyRing {
    active: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
    jwks: serde_json::Value,
}

impl KeyRing {
    fn new(active: Arc<SigningKey>, verifiers: Vec<Arc<SigningKey>>) -> Self {
        let mut by_kid = HashMap::new();
        for key in verifiers.into_iter().chain([active.clone()]) {
            by_kid.insert(key.kid.clone(), key);
        }
        let mut keys: Vec<&Arc<SigningKey>> = by_kid.values().collect();
        keys.sort_by_key(|k| (k.retired_at.is_some(), std::cmp::Reverse(k.created_at)));
        let jwks = serde_json::json!({ "keys": keys.iter().filter_map(|k| k.public_jwk.as_ref()).collect::<Vec<_>>() });
        Self { active, by_kid, jwks }
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The verifying key with `kid`, if it is in force.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.by_kid.get(kid).map(AsRef::as_ref)
    }

    /// The public keys as a JWK set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Every key in force: the active one first, then the newest.
    pub fn keys(&self) -> Vec<&SigningKey> {
        let mut keys: Vec<&SigningKey> = self.by_kid.values().map(AsRef::as_ref).collect();
        keys.sort_by_key(|k| (k.retired_at.is_some(), std::cmp::Reverse(k.created_at)));
        keys
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    alg: SigningAlgorithm,
    created_at: i64,
    retired_at: Option<i64>,
    private_key: String,
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    Environment,
    Directory(PathBuf),
}

/// The live key ring and where it is reloaded from.
#[derive(Debug)]
pub struct Keys {
    source: KeySource,
    algorithm: SigningAlgorithm,
    grace: Duration,
    ring: ArcSwap<KeyRing>,
}

impl Keys {
    /// Loads the keys: from the environment when `PORTCULLIS_SIGNING_KEY` is
    /// set, otherwise from `dir` (making the first key when there is none).
    /// Retired keys keep verifying for `grace` after retirement.
    pub fn load(env: &Environment, dir: &Path, algorithm: SigningAlgorithm, grace: Duration) -> Result<Self, KeyError> {
        let kind = if algorithm == SigningAlgorithm::HS256 { SecretKind::Key } else { SecretKind::Password };
        if let Some(current) = read_secret(env, SIGNING_KEY, kind)? {
            let loaded_at = now();
            let active =
                Arc::new(SigningKey::from_material(fingerprint(&current), algorithm, &current, loaded_at, None)?);
            let previous = read_secret(env, SIGNING_KEY_PREVIOUS, kind)?
                .map(|p| SigningKey::from_material(fingerprint(&p), algorithm, &p, loaded_at - 1, Some(loaded_at)))
                .transpose()?
                .map(Arc::new);
            let ring = KeyRing::new(active, previous.into_iter().collect());
            return Ok(Self { source: KeySource::Environment, algorithm, grace, ring: ArcSwap::from_pointee(ring) });
        }
        let ring = load_directory(dir, algorithm, grace)?;
        let ring = match ring {
            Some(ring) => ring,
            None => {
                rotate_directory(dir, algorithm)?;
                load_directory(dir, algorithm, grace)?
                    .ok_or_else(|| KeyError::Directory(dir.to_owned(), "the new key was not found".into()))?
            }
        };
        Ok(Self { source: KeySource::Directory(dir.to_owned()), algorithm, grace, ring: ArcSwap::from_pointee(ring) })
    }

    /// The ring in force.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.load_full()
    }

    /// Re-reads the key directory; returns whether the active key changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let KeySource::Directory(dir) = &self.source else { return Ok(false) };
        let Some(ring) = load_directory(dir, self.algorithm, self.grace)? else { return Ok(false) };
        let changed =
            ring.active.kid != self.ring.load().active.kid || ring.by_kid.len() != self.ring.load().by_kid.len();
        self.ring.store(Arc::new(ring));
        Ok(changed)
    }

    /// Adds a new active key and retires the current one; returns the new kid.
    pub fn rotate(&self) -> Result<String, KeyError> {
        let KeySource::Directory(dir) = &self.source else { return Err(KeyError::FromEnvironment) };
        let kid = rotate_directory(dir, self.algorithm)?;
        self.reload()?;
        Ok(kid)
    }
}

/// A stable kid for a key from the environment: a hash of the material.
fn fingerprint(material: &Secret) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.expose().as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12])
}

fn read_key_files(dir: &Path) -> Result<Vec<KeyFile>, KeyError> {
    let error = |e: std::io::Error| KeyError::Directory(dir.to_owned(), e.to_string());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(error)?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(error)?;
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| KeyError::Directory(path.clone(), format!("not a key file ({})", e.classify_name())))?;
        files.push(file);
    }
    Ok(files)
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
            serde_json::error::Category::Data => "missing or wrong fields",
        }
    }
}

/// The ring from `dir`, or `None` when it holds no active key of `algorithm`.
fn load_directory(dir: &Path, algorithm: SigningAlgorithm, grace: Duration) -> Result<Option<KeyRing>, KeyError> {
    let now = now();
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let mut active: Option<Arc<SigningKey>> = None;
    let mut verifiers = Vec::new();
    for file in read_key_files(dir)? {
        if file.retired_at.is_some_and(|at| at.saturating_add(grace) < now) {
            continue;
        }
        let key = Arc::new(SigningKey::from_material(
            file.kid,
            file.alg,
            &Secret::new(file.private_key),
            file.created_at,
            file.retired_at,
        )?);
        if key.retired_at.is_none()
            && key.alg == algorithm
            && active.as_ref().is_none_or(|a| a.created_at < key.created_at)
        {
            if let Some(previous) = active.replace(key) {
                verifiers.push(previous);
            }
        } else {
            verifiers.push(key);
        }
    }
    Ok(active.map(|active| KeyRing::new(active, verifiers)))
}

/// Makes a new key in `dir` and retires the others; returns its kid.
fn rotate_directory(dir: &Path, algorithm: SigningAlgorithm) -> Result<String, KeyError> {
    let error = |e: &dyn std::fmt::Display| KeyError::Directory(dir.to_owned(), e.to_string());
    create_private_dir(dir).map_err(|e| error(&e))?;
    let now = now();
    for mut file in read_key_files(dir)? {
        if file.retired_at.is_none() {
            file.retired_at = Some(now);
            write_key_file(dir, &file).map_err(|e| error(&e))?;
        }
    }
    let mut id = [0u8; 12];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| error(&"no randomness"))?;
    let kid = URL_SAFE_NO_PAD.encode(id);
    let private_key = generate_material(algorithm).map_err(|e| error(&e))?;
    // Validate before writing, so a broken key never lands in the directory.
    SigningKey::from_material(kid.clone(), algorithm, &Secret::new(private_key.clone()), now, None)?;
    write_key_file(dir, &KeyFile { kid: kid.clone(), alg: algorithm, created_at: now, retired_at: None, private_key })
        .map_err(|e| error(&e))?;
    Ok(kid)
}

fn generate_material(algorithm: SigningAlgorithm) -> Result<String, String> {
    let signature = match algorithm {
        SigningAlgorithm::HS256 => {
            let mut secret = [0u8; 48];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no randomness".to_owned())?;
            return Ok(URL_SAFE_NO_PAD.encode(secret));
        }
        SigningAlgorithm::EdDSA => &rcgen::PKCS_ED25519,
        SigningAlgorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        SigningAlgorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
    };
    rcgen::KeyPair::generate_for(signature).map(|pair| pair.serialize_pem()).map_err(|e| e.to_string())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_key_file(dir: &Path, file: &KeyFile) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!("{}.json", file.kid));
    let temporary = dir.join(format!(".{}.json.tmp", file.kid));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut out = options.open(&temporary)?;
    out.write_all(serde_json::to_string_pretty(file).map_err(std::io::Error::other)?.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_makes_a_working_key_and_a_public_jwk() {
        for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256, SigningAlgorithm::HS256]
        {
            let dir = tempfile::tempdir().unwrap();
            let keys = Keys::load(&Environment::default(), dir.path(), alg, Duration::from_secs(60)).unwrap();
            let ring = keys.ring();
            assert_eq!(ring.active().alg, alg);
            let jwks = ring.jwks()["keys"].as_array().unwrap().clone();
            if alg == SigningAlgorithm::HS256 {
                assert!(jwks.is_empty(), "a shared secret is never published");
            } else {
                assert_eq!(jwks.len(), 1);
                assert_eq!(jwks[0]["kid"], ring.active().kid.as_str());
                assert!(jwks[0].get("d").is_none(), "private part published: {}", jwks[0]);
            }
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_verifying_until_its_grace_ends() {
        let dir = tempfile::tempdir().unwrap();
        let keys =
            Keys::load(&Environment::default(), dir.path(), SigningAlgorithm::EdDSA, Duration::from_secs(600)).unwrap();
        let first = keys.ring().active().kid.clone();
        let second = keys.rotate().unwrap();
        let ring = keys.ring();
        assert_eq!(ring.active().kid, second);
        assert!(ring.get(&first).is_some(), "the retired key still verifies");
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        // With no grace left, the retired key drops out.
        let keys = Keys::load(&Environment::default(), dir.path(), SigningAlgorithm::EdDSA, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        keys.reload().unwrap();
        assert!(keys.ring().get(&first).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let file = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
            assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn keys_from_the_environment() {
        let pem = generate_material(SigningAlgorithm::ES256).unwrap();
        let old = generate_material(SigningAlgorithm::ES256).unwrap();
        let env = Environment::from_pairs([(SIGNING_KEY, pem.as_str()), (SIGNING_KEY_PREVIOUS, old.as_str())]);
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load(&env, dir.path(), SigningAlgorithm::ES256, Duration::from_secs(60)).unwrap();
        assert_eq!(keys.ring().keys().len(), 2);
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written to the directory");
        assert!(matches!(keys.rotate(), Err(KeyError::FromEnvironment)));
        let weak = Environment::from_pairs([(SIGNING_KEY, "too-short")]);
        let err = Keys::load(&weak, dir.path(), SigningAlgorithm::HS256, Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_SIGNING_KEY"), "{err}");
        let garbage =
            Environment::from_pairs([(SIGNING_KEY, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")]);
        let err = Keys::load(&garbage, dir.path(), SigningAlgorithm::EdDSA, Duration::from_secs(60)).unwrap_err();
        assert!(!err.to_string().contains("nope"), "{err}");
    }
}
