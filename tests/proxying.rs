use std::time::{Duration, Instant};

use crate::util::{Portcullis, TEST_SERVER, Upstream, problem};

fn route(upstream: &str, path: &str, methods: &str, extra: &str) -> String {
    format!("[[route]]\npath = \"{path}\"\nmethods = {methods}\nupstream = \"{upstream}\"\nauth = \"none\"\n{extra}\n")
}

#[tokio::test]
async fn forwarding_headers_are_set_from_what_the_gateway_saw() {
    let upstream = Upstream::start().await;
    let config = format!("{TEST_SERVER}{}", route(&upstream.url(), "/items/{id}", "[\"GET\", \"POST\"]", ""));
    let server = Portcullis::start(&config, &[]);
    let response = server
        .client()
        .get(server.url("/items/7?sort=asc&x=%2F"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6;host=evil.example")
        .header("x-user-id", "admin")
        .header("x-user-roles", "admin")
        .header("x-portcullis-identity", "forged")
        .header("x-keep-me", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.path, "/items/7?sort=asc&x=%2F");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some(format!("localhost:{}", server.https.port()).as_str()));
    assert_eq!(
        seen.header("forwarded"),
        Some(format!("for=127.0.0.1;proto=https;host=\"localhost:{}\"", server.https.port()).as_str())
    );
    assert_eq!(seen.header("host"), Some(upstream.addr.to_string().as_str()), "the upstream's own host by default");
    assert_eq!(seen.header("x-user-id"), None, "forged identity header reached the upstream");
    assert_eq!(seen.header("x-user-roles"), None);
    assert_eq!(seen.header("x-portcullis-identity"), None);
    assert_eq!(seen.header("x-keep-me"), Some("yes"));

    let response = server.client().post(server.url("/items/8")).body("{\"a\":1}").send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(upstream.last().body_len, 7);
}

#[tokio::test]
async fn hop_by_hop_headers_do_not_cross() {
    let upstream = Upstream::start().await;
    let config = format!("{TEST_SERVER}{}", route(&upstream.url(), "/a", "[\"GET\"]", ""));
    let server = Portcullis::start(&config, &[]);
    let request = "GET /a HTTP/1.1\r\nhost: localhost\r\nconnection: keep-alive, x-drop-me\r\nx-drop-me: 1\r\nkeep-alive: timeout=5\r\n\
         proxy-authorization: Basic Zm9vOmJhcg==\r\nte: trailers\r\nupgrade: websocket\r\n\r\n";
    let answer = crate::util::raw_tls(&server, request.as_bytes(), Duration::from_millis(800)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = upstream.last();
    for name in ["x-drop-me", "keep-alive", "proxy-authorization", "te", "upgrade"] {
        assert_eq!(seen.header(name), None, "{name} crossed the gateway");
    }
}

#[tokio::test]
async fn preserve_host_and_strip_prefix() {
    let upstream = Upstream::start().await;
    let extra = "preserve_host = true\nstrip_prefix = \"/api\"";
    let config =
        format!("{TEST_SERVER}{}", route(&format!("{}/v2", upstream.url()), "/api/{*rest}", "[\"GET\"]", extra));
    let server = Portcullis::start(&config, &[]);
    let response = server.client().get(server.url("/api/users/1/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.path, "/v2/users/1/", "trailing slash kept for the upstream");
    assert_eq!(seen.header("host"), Some(format!("localhost:{}", server.https.port()).as_str()));
}

#[tokio::test]
async fn unreachable_upstream_is_a_fast_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let config = format!("{TEST_SERVER}{}", route(&format!("http://{addr}"), "/a", "[\"GET\"]", ""));
    let server = Portcullis::start(&config, &[]);
    let started = Instant::now();
    let response = server.client().get(server.url("/a")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = problem(response, 502, "bad-gateway").await;
    let text = body.to_string();
    assert!(!text.contains(&addr.to_string()), "the problem leaks the upstream address: {text}");
    assert!(!text.to_lowercase().contains("refused"), "the problem leaks the error: {text}");
    server.wait_for_log("request.bad-gateway");
}

#[tokio::test]
async fn slow_upstream_is_a_504_after_the_route_timeout() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}{}",
        route(&upstream.url(), "/slow", "[\"GET\", \"POST\"]", "upstream_timeout = \"500ms\"")
    );
    let server = Portcullis::start(&config, &[]);
    let started = Instant::now();
    let response = server.client().get(server.url("/slow")).send().await.unwrap();
    let elapsed = started.elapsed();
    problem(response, 504, "gateway-timeout").await;
    assert!(elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2900), "{elapsed:?}");
    // A complete body sent to a slow upstream: still the upstream's fault.
    let response = server.client().post(server.url("/slow")).body("{\"a\":1}").send().await.unwrap();
    problem(response, 504, "gateway-timeout").await;
}

#[tokio::test]
async fn methods_not_listed_are_refused_with_allow() {
    let upstream = Upstream::start().await;
    let config = format!("{TEST_SERVER}{}", route(&upstream.url(), "/ro", "[\"GET\"]", ""));
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    for method in [reqwest::Method::POST, reqwest::Method::DELETE, reqwest::Method::PUT, reqwest::Method::PATCH] {
        let response = client.request(method, server.url("/ro")).send().await.unwrap();
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        problem(response, 405, "method-not-allowed").await;
    }
    assert_eq!(client.head(server.url("/ro")).send().await.unwrap().status(), 200);
    assert!(upstream.requests().iter().all(|s| s.method == "HEAD"), "nothing but HEAD reached the upstream");
}

#[tokio::test]
async fn cors_allow_list() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[cors]\nallowed_origins = [\"https://app.example.com\"]\nallow_credentials = true\n{}{}",
        route(&upstream.url(), "/data", "[\"GET\"]", ""),
        route(&upstream.url(), "/data", "[\"PUT\", \"DELETE\"]", "")
    );
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.url("/data"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(preflight.headers()["access-control-allow-credentials"], "true");
    let allowed = preflight.headers()["access-control-allow-methods"].to_str().unwrap();
    assert!(allowed.contains("PUT"), "the preflight answer comes from the route allowing PUT: {allowed}");
    assert!(upstream.requests().is_empty(), "the preflight was answered by the gateway");
    let simple = client.get(server.url("/data")).header("origin", "https://app.example.com").send().await.unwrap();
    assert_eq!(simple.headers()["access-control-allow-origin"], "https://app.example.com");
    let other = client.get(server.url("/data")).header("origin", "https://evil.example").send().await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn http_behind_a_trusted_proxy() {
    let upstream = Upstream::start().await;
    let routes = route(&upstream.url(), "/a", "[\"GET\"]", "");
    let trusted = format!("{TEST_SERVER}http_behind_proxy = true\ntrusted_proxies = [\"127.0.0.1\"]\n{routes}");
    let server = Portcullis::start(&trusted, &[]);
    let http = server.http.unwrap();
    let response = crate::util::plain_client()
        .get(format!("http://127.0.0.1:{}/a", http.port()))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    server.wait_for_log("\"client.ip\":\"203.0.113.9\"");

    let untrusted = format!("{TEST_SERVER}http_behind_proxy = true\ntrusted_proxies = [\"10.0.0.0/8\"]\n{routes}");
    let server = Portcullis::start(&untrusted, &[]);
    let response = crate::util::plain_client()
        .get(format!("http://127.0.0.1:{}/a", server.http.unwrap().port()))
        .send()
        .await
        .unwrap();
    problem(response, 403, "untrusted-peer").await;
}
