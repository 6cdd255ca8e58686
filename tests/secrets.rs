use crate::util::{Portcullis, TEST_SERVER, Upstream, run_cli};

const STORE_PASSWORD: &str = "pg-password-9f8e7d6c5b4a39281706";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.secret-bearer-token-3c2b1a.sig";
const COOKIE: &str = "session=cookie-value-77aa88bb99cc";

#[tokio::test]
async fn secrets_and_credentials_never_reach_the_logs() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/open\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"{up}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/closed\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\n",
        up = upstream.url()
    );
    let server = Portcullis::start(&config, &[("PORTCULLIS_STORE_PASSWORD", STORE_PASSWORD)]);
    let client = server.client();
    for path in ["/open", "/closed", "/missing", "/a%2fb"] {
        let _ = client
            .get(server.url(path))
            .header("authorization", format!("Bearer {BEARER}"))
            .header("cookie", COOKIE)
            .send()
            .await
            .unwrap();
    }
    let _ = client
        .post(server.url("/open"))
        .header("authorization", format!("Bearer {BEARER}"))
        .body(vec![b'x'; 2 << 20])
        .send()
        .await;
    server.wait_for_log("request.payload-too-large");
    let logs = server.logs();
    for secret in [STORE_PASSWORD, BEARER, "secret-bearer-token", COOKIE, "cookie-value-77aa88bb99cc"] {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}

#[test]
fn weak_or_ambiguous_secrets_stop_start_up_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), TEST_SERVER).unwrap();
    let (code, out) =
        run_cli(dir.path(), &["serve", "--config", "p.toml"], &[("PORTCULLIS_STORE_PASSWORD", "changeme")]);
    assert_ne!(code, 0);
    assert!(out.contains("PORTCULLIS_STORE_PASSWORD") && out.contains("placeholder"), "{out}");
    std::fs::write(dir.path().join("pw"), "a-real-password-value\n").unwrap();
    let (code, out) = run_cli(
        dir.path(),
        &["serve", "--config", "p.toml"],
        &[("PORTCULLIS_STORE_PASSWORD", "a-real-password-value"), ("PORTCULLIS_STORE_PASSWORD_FILE", "pw")],
    );
    assert_ne!(code, 0);
    assert!(out.contains("both PORTCULLIS_STORE_PASSWORD and PORTCULLIS_STORE_PASSWORD_FILE"), "{out}");
    assert!(!out.contains("a-real-password-value"), "{out}");
}

#[test]
fn secrets_in_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.toml"), "[store]\nurl = \"postgres://app:s3cr3t-in-file@127.0.0.1/app\"\n")
        .unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[]);
    assert_eq!(code, 2);
    assert!(out.contains("PORTCULLIS_STORE_PASSWORD"), "{out}");
    assert!(!out.contains("s3cr3t-in-file"), "{out}");
}
