//! A private PostgreSQL for one test, on a free port in a temporary
//! directory, that can be stopped and started again (a store outage).
//! Uses the newest `/usr/lib/postgresql/*/bin` (installed by
//! `scripts/test-all.sh` when missing); as root, runs as user `postgres`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) PostgreSQL cluster.
pub struct PostgresServer {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Creates and starts a fresh cluster (trust authentication, user `postgres`).
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed: run ./scripts/test-all.sh, which installs it")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .expect("no initdb under /usr/lib/postgresql");
        let dir = tempfile::Builder::new().prefix("portcullis-pg-test").tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = Self { port, bin, dir };
        if is_root() {
            let _ = Command::new("chown").arg("postgres").arg(server.dir.path()).status();
        }
        let data = server.data();
        let ok = server
            .as_postgres(&server.bin.join("initdb"), &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(ok, "initdb failed");
        server.resume();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_postgres(&self, program: &std::path::Path, args: &[&str]) -> bool {
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (an outage).
    pub fn stop(&self) {
        let data = self.data();
        self.as_postgres(&self.bin.join("pg_ctl"), &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Starts it again on the same port, with its data.
    pub fn resume(&self) {
        let data = self.data();
        let log = self.dir.path().join("log").display().to_string();
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        assert!(
            self.as_postgres(&self.bin.join("pg_ctl"), &["-D", &data, "-l", &log, "-w", "-o", &options, "start"]),
            "pg_ctl start failed"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
