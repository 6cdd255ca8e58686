//! Test harness: start the real binary, a real upstream, and clients.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod postgres;
pub mod redis;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use redis::RedisServer;
pub use upstream::Upstream;

/// The listener settings every test config starts with.
pub const TEST_SERVER: &str = "[server]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\ndata_dir = \"data\"\n";

/// A running `portcullis serve`.
pub struct Portcullis {
    child: Child,
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    output: Arc<Mutex<String>>,
}

impl Portcullis {
    /// Starts the binary with `config` written to `portcullis.toml` in a fresh
    /// directory and `env` as its only environment (plus PATH).
    pub fn start(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config, env)
    }

    /// Like [`start`](Self::start), in a given directory (to restart on the same data).
    pub fn start_in(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Self {
        std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(["serve", "--config", "portcullis.toml"]);
        Self::spawn(dir, command, env)
    }

    /// Starts `portcullis serve` without a configuration file.
    pub fn start_default(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.arg("serve");
        Self::spawn(dir, command, env)
    }

    fn spawn(dir: tempfile::TempDir, mut command: Command, env: &[(&str, &str)]) -> Self {
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORTCULLIS_LOG", "debug,hyper=info,h2=info,rustls=info,sqlx=warn,hyper_util=info,tower=info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start portcullis");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = output.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.contains("portcullis listening")) {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON start line");
                let https = v["https"].as_str().unwrap().parse().unwrap();
                let http = v["http"].as_str().unwrap().parse().ok();
                return Self { child, dir, https, http, output };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("portcullis exited with {status} before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "portcullis did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process printed so far.
    pub fn logs(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the logs contain `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(Instant::now() < deadline, "no `{needle}` in the logs:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `https://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// The certificate the server presents, as PEM (the self-signed one).
    pub fn certificate_path(&self) -> PathBuf {
        self.dir.path().join("data/tls/self-signed-cert.pem")
    }

    /// An HTTPS client trusting the server's self-signed certificate.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.certificate_path())
    }

    /// Sends a signal (`HUP`, `TERM`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process and returns its directory (to restart on the same data).
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client trusting the PEM certificate at `path`, without redirects.
pub fn client_trusting(path: &Path) -> reqwest::Client {
    let pem = std::fs::read(path).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A plain-HTTP client without redirects.
pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Runs `portcullis` with `args` in `dir` and returns (exit code, stdout + stderr).
pub fn run_cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    run_cli_with_input(dir, args, env, "")
}

/// Like [`run_cli`], writing `input` to the command's standard input.
pub fn run_cli_with_input(dir: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> (i32, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The problem+json body of a response, checked for shape.
pub async fn problem(response: reqwest::Response, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["type"], format!("urn:portcullis:problem:{slug}"), "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], id);
    body
}

/// Sends raw bytes over TLS and returns what comes back until the server
/// closes or `timeout` passes.
pub async fn raw_tls(server: &Portcullis, bytes: &[u8], timeout: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tls_connect(server).await;
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS connection to the server (HTTP/1.1 ALPN), trusting its certificate.
pub async fn tls_connect(server: &Portcullis) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_with(server, &[b"http/1.1".to_vec()], None).await
}

/// A TLS connection with the given ALPN list and optional version.
pub async fn tls_connect_with(
    server: &Portcullis,
    alpn: &[Vec<u8>],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_using(server, tls_client_config(server, alpn, version)).await
}

/// A client TLS configuration trusting the server's certificate (its
/// session cache lets later connections resume).
pub fn tls_client_config(
    server: &Portcullis,
    alpn: &[Vec<u8>],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(server.certificate_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.to_vec();
    Arc::new(config)
}

/// A TLS connection with `config`.
pub async fn tls_connect_using(
    server: &Portcullis,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(server.https).await.unwrap();
    connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap()
}

/// Sends raw bytes over plain TCP to `addr` and returns the answer.
pub async fn raw_tcp(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data directory (the default).
    Sqlite,
    /// A fresh database on the PostgreSQL named by `TEST_POSTGRES_URL`.
    Postgres,
}

/// Both backends, for tests that must pass on each.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// The `[store]` table for `backend`: nothing for SQLite; for PostgreSQL, a
/// new empty database (so tests never share state).
pub async fn store_section(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => String::new(),
        Backend::Postgres => {
            let base = std::env::var("TEST_POSTGRES_URL").expect(
                "TEST_POSTGRES_URL is not set: run ./scripts/test-all.sh, which starts PostgreSQL, or point it at a server",
            );
            use sqlx::Connection as _;
            let mut connection = sqlx::PgConnection::connect(&base).await.expect("connect to the test PostgreSQL");
            let name = format!("portcullis_test_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut connection).await.unwrap();
            let (prefix, _) = base.rsplit_once('/').unwrap();
            format!("[store]\nurl = \"{prefix}/{name}\"\n")
        }
    }
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Adds user `name` with `roles` through the CLI, on the server's store.
pub fn add_user(server: &Portcullis, name: &str, roles: &[&str]) {
    let mut args = vec!["users", "add", name, "--password-stdin", "--config", "portcullis.toml"];
    for role in roles {
        args.extend(["--role", role]);
    }
    let (code, out) = run_cli_with_input(server.dir.path(), &args, &[], &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "{out}");
}

/// Logs `name` in with [`PASSWORD`] and returns the access token.
pub async fn login(server: &Portcullis, name: &str) -> String {
    let response = server
        .client()
        .post(server.url("/auth/login"))
        .json(&serde_json::json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "login {name}");
    response.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}
