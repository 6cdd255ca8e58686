use std::time::Duration;

use crate::util::{Portcullis, TEST_SERVER, Upstream, client_trusting, plain_client, problem, tls_connect_with};

#[tokio::test]
async fn default_start_makes_and_reuses_a_self_signed_certificate() {
    let env = [("PORTCULLIS_SERVER__HTTPS", "127.0.0.1:0"), ("PORTCULLIS_SERVER__HTTP", "127.0.0.1:0")];
    let server = Portcullis::start_default(tempfile::tempdir().unwrap(), &env);
    let logs = server.logs();
    assert!(logs.contains("SELF-SIGNED"), "{logs}");
    assert!(server.dir.path().join("data/portcullis.db").is_file(), "SQLite store in ./data");
    let first = std::fs::read(server.certificate_path()).unwrap();
    let response = server.client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#);
    let response = server.client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let dir = server.stop();
    let server = Portcullis::start_default(dir, &env);
    assert_eq!(std::fs::read(server.certificate_path()).unwrap(), first, "the certificate is reused");
    assert_eq!(server.client().get(server.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn plain_http_redirects_to_the_same_path_on_https() {
    let server = Portcullis::start(TEST_SERVER, &[]);
    let http = server.http.unwrap();
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let response = plain_client()
            .request(method, format!("http://localhost:{}/a/b?c=d&e=%2F", http.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 308);
        assert_eq!(response.headers()["location"], format!("https://localhost:{}/a/b?c=d&e=%2F", server.https.port()));
    }
}

#[tokio::test]
async fn redirect_uses_public_url_not_the_client_host() {
    let config = format!("{TEST_SERVER}public_url = \"https://api.example.com\"\n");
    let server = Portcullis::start(&config, &[]);
    let response = plain_client()
        .get(format!("http://127.0.0.1:{}/x", server.http.unwrap().port()))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "https://api.example.com/x");
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/leaky\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/private\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n",
        upstream.url(),
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    let ok = client.get(server.url("/leaky")).send().await.unwrap();
    let not_found = client.get(server.url("/nope")).send().await.unwrap();
    let unauthorized = client.get(server.url("/private")).send().await.unwrap();
    for response in [&ok, &not_found, &unauthorized] {
        let h = response.headers();
        assert_eq!(h["strict-transport-security"], "max-age=31536000; includeSubDomains");
        assert_eq!(h["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert!(h.contains_key("permissions-policy"));
    }
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("server").is_none(), "upstream Server header leaked");
    assert!(ok.headers().get("x-powered-by").is_none());
    assert!(ok.headers().get("x-aspnet-version").is_none());
    assert_eq!(ok.headers()["cache-control"], "public, max-age=600", "no credentials: upstream caching kept");
    let with_credentials =
        client.get(server.url("/leaky")).header("authorization", "Basic dXBzdHJlYW06b3du").send().await.unwrap();
    assert_eq!(with_credentials.headers()["cache-control"], "no-store");
    problem(not_found, 404, "not-found").await;
    let body = problem(unauthorized, 401, "unauthenticated").await;
    assert_eq!(body["title"], "Authentication required");
}

#[tokio::test]
async fn per_route_headers_override_the_global_policy() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[headers]\nreferrer_policy = \"same-origin\"\n\
         [[route]]\npath = \"/page\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n\
         headers = {{ content_security_policy = \"default-src 'self'\", x_frame_options = \"off\" }}\n",
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let response = server.client().get(server.url("/page")).send().await.unwrap();
    assert_eq!(response.headers()["content-security-policy"], "default-src 'self'");
    assert_eq!(response.headers()["referrer-policy"], "same-origin");
    assert!(response.headers().get("x-frame-options").is_none());
    let logs = server.logs();
    assert!(logs.contains("protection turned off"), "the lint warning is logged at start-up:\n{logs}");
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_replaced_otherwise() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/a\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    let response = client.get(server.url("/a")).header("x-request-id", "trace-42.abc").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42.abc");
    assert_eq!(upstream.last().header("x-request-id"), Some("trace-42.abc"));
    let response =
        client.get(server.url("/a")).header("x-request-id", "<script>alert(1)</script>").send().await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "<script>alert(1)</script>");
    assert_eq!(id.len(), 36, "a UUID");
    assert_eq!(upstream.last().header("x-request-id"), Some(id.as_str()), "the upstream sees the same id");
    let logs = server.wait_for_log(&id);
    let line = logs.lines().find(|l| l.contains(&id) && l.contains("\"log.logger\":\"access\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["http.request.method"], "GET");
    assert_eq!(v["url.path"], "/a");
    assert_eq!(v["http.route"], "/a");
    assert_eq!(v["http.response.status_code"], 200);
    assert_eq!(v["client.ip"], "127.0.0.1");
    assert!(v["http.response.body.bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn tls_offers_h2_and_http1_with_tls13_and_tls12() {
    let server = Portcullis::start(TEST_SERVER, &[]);
    let response = server.client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let stream = tls_connect_with(&server, &[b"h2".to_vec(), b"http/1.1".to_vec()], Some(version)).await;
        let (_, connection) = stream.get_ref();
        assert_eq!(connection.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(connection.protocol_version(), Some(version.version));
    }
}

#[tokio::test]
async fn certificate_reload_on_sighup_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let write_cert = |name: &str| {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), name.to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join(format!("{name}.pem")), generated.cert.pem()).unwrap();
    };
    write_cert("first.example");
    let config = format!("{TEST_SERVER}tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n");
    let server = Portcullis::start_in(dir, &config, &[]);
    let first = client_trusting(&server.dir.path().join("first.example.pem"));
    assert_eq!(first.get(server.url("/healthz")).send().await.unwrap().status(), 200);

    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(server.dir.path().join("second.pem"), generated.cert.pem()).unwrap();
    std::fs::write(server.dir.path().join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(server.dir.path().join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    server.signal("HUP");
    server.wait_for_log("tls.certificate-reloaded");

    // The connection opened before the reload keeps working.
    assert_eq!(first.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    // New connections get the new certificate.
    let second = client_trusting(&server.dir.path().join("second.pem"));
    assert_eq!(second.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    let fresh_first = client_trusting(&server.dir.path().join("first.example.pem"));
    assert!(fresh_first.get(server.url("/healthz")).send().await.is_err(), "the old certificate is no longer served");

    // A broken file keeps the current certificate.
    std::fs::write(server.dir.path().join("cert.pem"), "not a certificate").unwrap();
    server.signal("HUP");
    server.wait_for_log("reload failed");
    assert_eq!(
        client_trusting(&server.dir.path().join("second.pem"))
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/slow\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    let mut server = Portcullis::start(&config, &[]);
    let client = server.client();
    let url = server.url("/slow");
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    while upstream.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("TERM");
    assert_eq!(in_flight.await.unwrap().unwrap(), 200, "the request in flight completed");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(server.logs().contains("stopped"));
}

#[tokio::test]
async fn readyz_reports_an_unreachable_store() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = format!("{TEST_SERVER}[store]\nurl = \"postgres://portcullis@127.0.0.1:{port}/portcullis\"\n");
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    assert_eq!(client.get(server.url("/healthz")).send().await.unwrap().status(), 200, "alive");
    let response = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
}

#[tokio::test]
async fn slow_request_bodies_get_408() {
    let upstream = Upstream::start().await;
    let route = format!(
        "[[route]]\npath = \"/in\"\nmethods = [\"POST\"]\nupstream = \"{}\"\nauth = \"none\"\n",
        upstream.url()
    );
    // The whole-request limit, and the body limit, each on its own.
    for limits in
        ["request_timeout = \"1s\"\nupstream_timeout = \"500ms\"\nbody_timeout = \"30s\"", "body_timeout = \"700ms\""]
    {
        let server = Portcullis::start(&format!("{TEST_SERVER}[limits]\n{limits}\n{route}"), &[]);
        let started = std::time::Instant::now();
        let answer = crate::util::raw_tls(
            &server,
            b"POST /in HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345",
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{limits}: {answer}");
        assert!(answer.contains("urn:portcullis:problem:request-timeout"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}

#[tokio::test]
async fn built_in_endpoints_see_the_canonical_path_and_refuse_big_bodies_as_problems() {
    let server = Portcullis::start(TEST_SERVER, &[]);
    let client = server.client();
    for path in ["//healthz", "/x/../healthz", "/%68ealthz", "/healthz/"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![b'a'; 32 << 10])).collect();
    let response = client
        .post(server.url("/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    problem(response, 413, "payload-too-large").await;
    let response =
        client.post(server.url("/auth/login")).json(&serde_json::json!({"username": 1})).send().await.unwrap();
    problem(response, 400, "bad-request").await;
}

#[tokio::test]
async fn tls_sessions_resume_on_tls13_and_tls12() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = Portcullis::start(TEST_SERVER, &[]);
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = crate::util::tls_client_config(&server, &[b"http/1.1".to_vec()], Some(version));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut stream = crate::util::tls_connect_using(&server, config.clone()).await;
            kinds.push(stream.get_ref().1.handshake_kind());
            // Reading the answer also receives TLS 1.3's session tickets.
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
            assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        }
        assert_eq!(kinds, [Some(rustls::HandshakeKind::Full), Some(rustls::HandshakeKind::Resumed)], "{version:?}");
    }
}
