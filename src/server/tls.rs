//! TLS with rustls: TLS 1.3 and 1.2 only (rustls offers only modern AEAD
//! suites with forward secrecy), ALPN `h2` and `http/1.1`, session
//! resumption by tickets and a session cache, and certificate reload without
//! dropping connections.
//!
//! Without `[server.tls]`, a self-signed certificate for `localhost`,
//! `127.0.0.1` and `::1` (plus the `public_url` host) is made on first start
//! in `<data_dir>/tls/` and reused afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// Files named in `[server.tls]`.
    Configured {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// The self-signed certificate in the data directory.
    SelfSigned {
        /// Certificate.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

impl CertificateSource {
    fn files(&self) -> (&Path, &Path) {
        match self {
            Self::Configured { cert, key } | Self::SelfSigned { cert, key } => (cert, key),
        }
    }

    /// A short description for the start-up line.
    pub fn describe(&self) -> String {
        match self {
            Self::Configured { cert, .. } => format!("certificate from {}", cert.display()),
            Self::SelfSigned { cert, .. } => format!(
                "SELF-SIGNED certificate {} (browsers will warn; configure [server.tls] for production)",
                cert.display()
            ),
        }
    }
}

/// Serves the current certificate and swaps in a new one on [`reload`](Self::reload).
#[derive(Debug)]
pub struct ReloadingCertificate {
    source: CertificateSource,
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingCertificate {
    /// Loads the certificate named by `config` (making the self-signed one if needed).
    pub fn load(config: &Config) -> anyhow::Result<Arc<Self>> {
        let source = match &config.server.tls {
            Some(files) => CertificateSource::Configured { cert: files.cert.clone(), key: files.key.clone() },
            None => ensure_self_signed(config)?,
        };
        let (cert, key) = source.files();
        let current = ArcSwap::from_pointee(load_certified_key(cert, key)?);
        Ok(Arc::new(Self { source, current }))
    }

    /// Re-reads the files. On error the current certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let (cert, key) = self.source.files();
        self.current.store(Arc::new(load_certified_key(cert, key)?));
        Ok(())
    }

    /// Where the certificate comes from.
    pub fn source(&self) -> &CertificateSource {
        &self.source
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration around a certificate.
pub fn server_config(certificate: Arc<ReloadingCertificate>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().context("TLS session tickets")?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let private_key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, private_key, &provider)
        .with_context(|| format!("the key {} does not fit the certificate {}", key.display(), cert.display()))
}

fn ensure_self_signed(config: &Config) -> anyhow::Result<CertificateSource> {
    let dir = config.server.data_dir.join("tls");
    let cert = dir.join("self-signed-cert.pem");
    let key = dir.join("self-signed-key.pem");
    if !cert.is_file() || !key.is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        if let Some(host) = config.server.public_url.as_deref().and_then(|u| u.strip_prefix("https://")) {
            let host = host.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok()).map_or(host, |(h, _)| h);
            names.push(host.trim_start_matches('[').trim_end_matches(']').to_owned());
        }
        let generated =
            rcgen::generate_simple_self_signed(names).context("cannot generate a self-signed certificate")?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, generated.cert.pem()).with_context(|| format!("cannot write {}", cert.display()))?;
    }
    Ok(CertificateSource::SelfSigned { cert, key })
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents).with_context(|| format!("cannot write {}", path.display()))
}
