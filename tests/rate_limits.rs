use serde_json::json;

use crate::util::{Portcullis, TEST_SERVER, Upstream, add_user, login, problem, run_cli};

#[tokio::test]
async fn per_ip_limits_answer_429_with_standard_headers() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/limited\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n\
         rate_limit = [{{ rate = \"3/minute\", key = \"ip\" }}, {{ rate = \"100/hour\", key = \"route\" }}]\n",
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    for expected_remaining in [2, 1, 0] {
        // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
        let response = client
            .get(server.url("/limited"))
            .header("x-forwarded-for", format!("203.0.113.{expected_remaining}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-policy"], "\"p0\";q=3;w=60, \"p1\";q=100;w=3600");
        let ratelimit = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(ratelimit.starts_with(&format!("\"p0\";r={expected_remaining};t=")), "{ratelimit}");
    }
    let refused = client.get(server.url("/limited")).header("x-forwarded-for", "198.51.100.1").send().await.unwrap();
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert!(refused.headers()["ratelimit"].to_str().unwrap().starts_with("\"p0\";r=0;"));
    let body = problem(refused, 429, "rate-limited").await;
    assert!(body["detail"].as_str().unwrap().contains("retry in"));
    assert_eq!(upstream.requests().len(), 3, "the refused request never reached the upstream");
    server.wait_for_log("request.rate-limited");
}

#[tokio::test]
async fn user_keys_give_each_caller_its_own_bucket() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[rate_limit]\ndefault = [{{ rate = \"2/minute\", key = \"user\" }}]\n\
         [[route]]\npath = \"/api\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n\
         [[route]]\npath = \"/free\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\nrate_limit = []\n",
        upstream.url(),
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        add_user(&server, name, &[]);
        tokens.push(login(&server, name).await);
    }
    let get = |token: &str| server.client().get(server.url("/api")).bearer_auth(token.to_owned()).send();
    assert_eq!(get(&tokens[0]).await.unwrap().status(), 200);
    assert_eq!(get(&tokens[0]).await.unwrap().status(), 200);
    assert_eq!(get(&tokens[0]).await.unwrap().status(), 429);
    assert_eq!(get(&tokens[1]).await.unwrap().status(), 200, "bob has his own bucket");
    for _ in 0..5 {
        assert_eq!(
            server.client().get(server.url("/free")).send().await.unwrap().status(),
            200,
            "rate_limit = [] opts out"
        );
    }
}

#[test]
fn bad_limits_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[rate_limit]\nstore = \"redis://:hunter2-secret@127.0.0.1:6379\"\ndefault = [{ rate = \"10/fortnight\" }, { rate = \"5/minute\", key = \"cookie\" }]\n";
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("p.toml:2:9: error: `rate_limit.store` must not contain a password"), "{out}");
    assert!(!out.contains("hunter2-secret"), "the password is never echoed: {out}");
    assert!(out.contains("p.toml:3:21: error: `rate` must be like"), "{out}");
    assert!(out.contains("error: `key` must be ip, user, client, route or header:<name>"), "{out}");
}

#[tokio::test]
async fn credential_endpoints_are_limited_per_address() {
    let server = Portcullis::start(
        &format!("{TEST_SERVER}[login]\nrate_limit = [{{ rate = \"3/minute\", key = \"ip\" }}]\n"),
        &[],
    );
    let client = server.client();
    for _ in 0..3 {
        let response = client
            .post(server.url("/auth/login"))
            .json(&json!({"username": "nobody", "password": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let refused = client
        .post(server.url("/auth/login"))
        .json(&json!({"username": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    problem(refused, 429, "rate-limited").await;
    let token =
        client.post(server.url("/oauth/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(token.status(), 429, "the credential endpoints share one bucket per address");
    assert_eq!(
        client.get(server.url("/healthz")).send().await.unwrap().status(),
        200,
        "other built-ins are not limited"
    );
}
