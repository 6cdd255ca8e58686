use std::time::Duration;

use crate::util::{Portcullis, TEST_SERVER, Upstream, problem, raw_tls};

/// A protected `/secure` next to a public catch-all: every spelling of
/// `/secure` must meet the protected rule, never the public one.
async fn setup() -> (Upstream, Portcullis) {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/secure\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\n\
         [[route]]\npath = \"/{{*rest}}\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nauth = \"none\"\n",
        up = upstream.url()
    );
    (upstream, Portcullis::start(&config, &[]))
}

async fn status_of(server: &Portcullis, raw_path: &str) -> String {
    let request = format!("GET {raw_path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    let answer = raw_tls(server, request.as_bytes(), Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn every_spelling_of_a_protected_path_meets_its_rule() {
    let (upstream, server) = setup().await;
    for trick in [
        "/secure",
        "//secure",
        "/x/../secure",
        "/%73ecure",
        "/secure/.",
        "/secure/",
        "/./secure",
        "/x/%2e%2e/secure",
        "///secure//",
    ] {
        let status = status_of(&server, trick).await;
        assert!(status.starts_with("HTTP/1.1 401"), "{trick} -> {status}");
    }
    assert!(upstream.requests().is_empty(), "a trick reached the upstream: {:?}", upstream.requests());
    let logs = server.wait_for_log("request.path-normalized");
    assert!(logs.contains("\"url.path\":\"/secure\""));
}

#[tokio::test]
async fn paths_that_cannot_be_made_canonical_are_refused() {
    let (upstream, server) = setup().await;
    for trick in [
        "/secure%2f",
        "/a%2Fsecure",
        "/..;/secure",
        "/secure;x=1",
        "/a%5csecure",
        "/secure%00",
        "/..",
        "/a/../../secure",
        "/%252e%252e/secure",
        "/%zz",
    ] {
        let status = status_of(&server, trick).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{trick} -> {status}");
    }
    assert!(upstream.requests().is_empty());
    let response = server.client().get(server.url("/a%2Fb")).send().await.unwrap();
    let body = problem(response, 400, "bad-path").await;
    assert_eq!(body["detail"], "Encoded slashes are not accepted in paths.");
    server.wait_for_log("request.bad-path");
}

#[tokio::test]
async fn matching_is_case_sensitive_and_the_upstream_gets_the_canonical_path() {
    let (upstream, server) = setup().await;
    // `/Secure` is another path: it goes to the public catch-all, as documented.
    assert!(status_of(&server, "/Secure").await.starts_with("HTTP/1.1 200"));
    assert_eq!(upstream.last().path, "/Secure");
    assert!(status_of(&server, "//public/./x/../%7euser?q=%2e%2e").await.starts_with("HTTP/1.1 200"));
    assert_eq!(upstream.last().path, "/public/~user?q=%2e%2e", "canonical path, query untouched");
}

#[tokio::test]
async fn absolute_form_and_asterisk_requests() {
    let (upstream, server) = setup().await;
    let status = status_of(&server, &format!("https://localhost:{}//secure", server.https.port())).await;
    assert!(status.starts_with("HTTP/1.1 401"), "{status}");
    let answer =
        raw_tls(&server, b"OPTIONS * HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n", Duration::from_secs(5))
            .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(upstream.requests().is_empty());
}
