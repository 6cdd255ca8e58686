use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::util::{
    BACKENDS, Backend, Portcullis, TEST_SERVER, Upstream, problem, run_cli, run_cli_with_input, store_section,
};

const PASSWORD: &str = "correct horse battery staple";

struct Setup {
    upstream: Upstream,
    server: Portcullis,
}

async fn start(backend: Backend, extra: &str) -> Setup {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}{store}{extra}\n\
         [[route]]\npath = \"/api/{{*rest}}\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"{up}\"\n\
         [[route]]\npath = \"/fresh\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nfresh_within = \"2s\"\n\
         [[route]]\npath = \"/maybe\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nauth = \"optional\"\n",
        store = store_section(backend).await,
        up = upstream.url(),
    );
    Setup { upstream, server: Portcullis::start(&config, &[]) }
}

impl Setup {
    fn cli(&self, args: &[&str]) -> String {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--config", "portcullis.toml"]);
        let (code, out) = run_cli(self.server.dir.path(), &full, &[]);
        assert_eq!(code, 0, "{args:?}: {out}");
        out
    }

    fn add_user(&self, name: &str, roles: &[&str]) {
        let mut args = vec!["users", "add", name, "--password-stdin", "--config", "portcullis.toml"];
        for role in roles {
            args.extend(["--role", role]);
        }
        let (code, out) = run_cli_with_input(self.server.dir.path(), &args, &[], &format!("{PASSWORD}\n"));
        assert_eq!(code, 0, "{out}");
    }

    async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.server.client().post(self.server.url(path)).json(&body).send().await.unwrap()
    }

    async fn login(&self, name: &str) -> Value {
        let response = self.post_json("/auth/login", json!({"username": name, "password": PASSWORD})).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.server.client().get(self.server.url(path)).bearer_auth(token).send().await.unwrap()
    }
}

fn token_header(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn login_refresh_reuse_and_logout_on_both_stores() {
    for backend in BACKENDS {
        let s = start(backend, "").await;
        s.add_user("Alice", &["user"]);
        let tokens = s.login("ALICE").await;
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 900);
        let access = tokens["access_token"].as_str().unwrap();
        let header = token_header(access);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert!(header["kid"].is_string());

        // The token opens a required route; the upstream never sees it.
        let response = s.get("/api/items", access).await;
        assert_eq!(response.status(), 200, "{backend:?}");
        assert_eq!(s.upstream.last().header("authorization"), None);

        let me: Value = s.get("/auth/me", access).await.json().await.unwrap();
        assert_eq!(me["username"], "alice", "tokens carry the canonical username");
        assert_eq!(me["roles"], json!(["user"]));

        // Refresh rotates; the used token presented again kills the family.
        let first = tokens["refresh_token"].as_str().unwrap().to_owned();
        let response = s.post_json("/auth/refresh", json!({"refresh_token": first})).await;
        assert_eq!(response.status(), 200);
        let second: Value = response.json().await.unwrap();
        let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(second_refresh, first);
        let reuse = s.post_json("/auth/refresh", json!({"refresh_token": first})).await;
        problem(reuse, 401, "invalid-refresh-token").await;
        let after = s.post_json("/auth/refresh", json!({"refresh_token": second_refresh})).await;
        problem(after, 401, "invalid-refresh-token").await;
        s.server.wait_for_log("token.refresh-reused");

        // Logout revokes the access token and the refresh family.
        let third = s.login("alice").await;
        let access = third["access_token"].as_str().unwrap();
        let response = s
            .server
            .client()
            .post(s.server.url("/auth/logout"))
            .bearer_auth(access)
            .json(&json!({"refresh_token": third["refresh_token"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        problem(s.get("/api/items", access).await, 401, "unauthenticated").await;
        let refresh = s.post_json("/auth/refresh", json!({"refresh_token": third["refresh_token"]})).await;
        problem(refresh, 401, "invalid-refresh-token").await;
    }
}

#[tokio::test]
async fn login_failures_are_one_answer_in_about_one_time() {
    let s = start(Backend::Sqlite, "").await;
    s.add_user("bob", &["user"]);
    s.add_user("carol", &["user"]);
    s.cli(&["users", "disable", "carol"]);
    let mut bodies = Vec::new();
    let mut times: Vec<(String, Duration)> = Vec::new();
    for round in 0..3 {
        for (name, password) in [("bob", "wrong password here"), ("nobody-at-all", PASSWORD), ("carol", PASSWORD)] {
            let started = Instant::now();
            let response = s.post_json("/auth/login", json!({"username": name, "password": password})).await;
            times.push((name.to_owned(), started.elapsed()));
            let mut body = problem(response, 401, "invalid-credentials").await;
            body.as_object_mut().unwrap().remove("request_id");
            if round == 0 {
                bodies.push(body);
            }
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "different answers: {bodies:?}");
    let median = |who: &str| {
        let mut t: Vec<Duration> = times.iter().filter(|(n, _)| n == who).map(|(_, d)| *d).collect();
        t.sort();
        t[1]
    };
    let (wrong, unknown) = (median("bob"), median("nobody-at-all"));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!((0.4..2.5).contains(&ratio), "unknown user {unknown:?} vs wrong password {wrong:?}");
    let logs = s.server.wait_for_log("login.failure");
    assert!(logs.contains("wrong password") && logs.contains("unknown user") && logs.contains("account disabled"));
}

/// Mints tokens with the server's own key (read from its key directory), to
/// test every claim check with a valid signature.
fn server_key(server: &Portcullis) -> (String, jsonwebtoken::EncodingKey) {
    let dir = server.dir.path().join("data/keys");
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let key: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    (key["kid"].as_str().unwrap().to_owned(), jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap())
}

/// Valid claims for the test server (it listens on port 0 in the file, so
/// its default issuer is `https://localhost:0`).
fn claims() -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "iss": "https://localhost:0", "aud": "portcullis", "sub": "attacker", "exp": now + 600, "iat": now, "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(), "roles": ["admin"], "scope": "", "auth_time": now,
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign_raw(key: &jsonwebtoken::EncodingKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, jsonwebtoken::Algorithm::EdDSA).unwrap();
    format!("{input}.{signature}")
}

#[tokio::test]
async fn jwt_attacks_are_refused_with_401_and_the_failed_check_logged() {
    let s = start(Backend::Sqlite, "").await;
    let (kid, key) = server_key(&s.server);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}).to_string();
    let valid = claims();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = valid.clone();
        change(&mut c);
        sign_raw(&key, &header, &c.to_string())
    };
    // The harness's valid token really works, so every refusal below is about its one change.
    assert_eq!(s.get("/api/x", &with(&|_| {})).await.status(), 200);

    let jwks: Value =
        s.server.client().get(s.server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    hs_header.typ = Some("at+jwt".into());
    let confused =
        jsonwebtoken::encode(&hs_header, &valid, &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()).unwrap())
            .unwrap();
    let good = with(&|_| {});
    let parts: Vec<&str> = good.split('.').collect();
    let mut raised = valid.clone();
    raised["sub"] = json!("someone-else");
    let attacker = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let attacker_key = jsonwebtoken::EncodingKey::from_ed_pem(attacker.serialize_pem().as_bytes()).unwrap();
    let embedded_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}}).to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})), parts[1]),
            "alg does not match",
        ),
        ("HS256 with the public key", confused, "alg does not match"),
        ("expired", with(&|c| c["exp"] = json!(now - 3600)), "token expired"),
        ("not yet valid", with(&|c| c["nbf"] = json!(now + 3600)), "not yet valid"),
        ("wrong issuer", with(&|c| c["iss"] = json!("https://evil.example")), "unknown issuer"),
        ("wrong audience", with(&|c| c["aud"] = json!("another-api")), "wrong audience"),
        ("tampered payload", format!("{}.{}.{}", parts[0], b64(&raised), parts[2]), "bad signature"),
        (
            "tampered header",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid, "cty": "x"})),
                parts[1],
                parts[2]
            ),
            "bad signature",
        ),
        (
            "unknown kid",
            sign_raw(
                &attacker_key,
                &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "nope"}).to_string(),
                &valid.to_string(),
            ),
            "unknown or missing kid",
        ),
        ("embedded jwk", sign_raw(&attacker_key, &embedded_header, &valid.to_string()), "unknown or missing kid"),
        ("oversized", "a".repeat(9000), "larger than the size limit"),
        ("malformed base64", "@@@.@@@.@@@".to_owned(), "malformed token"),
        (
            "missing exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "missing",
        ),
        (
            "missing sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            "missing",
        ),
        ("string exp", with(&|c| c["exp"] = json!(format!("{}", now + 600))), "bad claims"),
        (
            "duplicate key in header",
            sign_raw(&key, &header.replacen('{', r#"{"kid":"x","#, 1), &valid.to_string()),
            "duplicate JSON keys",
        ),
        (
            "duplicate key in payload",
            sign_raw(&key, &header, &valid.to_string().replacen('{', r#"{"sub":"admin","#, 1)),
            "duplicate JSON keys",
        ),
        (
            "wrong typ",
            sign_raw(&key, &json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}).to_string(), &valid.to_string()),
            "typ is not at+jwt",
        ),
    ];
    for (name, token, check) in cases {
        let response = s.get("/api/x", &token).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer error=\"invalid_token\"", "{name}");
        let body = problem(response, 401, "unauthenticated").await;
        assert_eq!(
            body["detail"], "Valid credentials are required for this route.",
            "{name}: the client learns nothing"
        );
        let logs = s.server.wait_for_log(check);
        assert!(logs.contains(check), "{name}");
    }
    assert!(s.upstream.requests().len() == 1, "only the valid token reached the upstream");
    // Two Authorization headers, and a non-bearer scheme.
    let response = s
        .server
        .client()
        .get(s.server.url("/api/x"))
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", "Bearer x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer error=\"invalid_request\"");
    let response = s.server.client().get(s.server.url("/api/x")).basic_auth("u", Some("p")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = s.server.client().get(s.server.url("/api/x")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn optional_routes_pass_anonymous_callers_but_not_bad_tokens() {
    let s = start(Backend::Sqlite, "").await;
    assert_eq!(s.server.client().get(s.server.url("/maybe")).send().await.unwrap().status(), 200);
    problem(s.get("/maybe", "not.a.token").await, 401, "unauthenticated").await;
    s.add_user("dora", &["user"]);
    let tokens = s.login("dora").await;
    assert_eq!(s.get("/maybe", tokens["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn fresh_within_demands_a_recent_password() {
    let s = start(Backend::Sqlite, "").await;
    s.add_user("erin", &["user"]);
    let tokens = s.login("erin").await;
    assert_eq!(s.get("/fresh", tokens["access_token"].as_str().unwrap()).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // A refreshed token keeps the old password time: still not fresh.
    let refreshed: Value =
        s.post_json("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await.json().await.unwrap();
    let response = s.get("/fresh", refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer error=\"insufficient_user_authentication\", max_age=2");
    problem(response, 401, "fresh-login-required").await;
    let again = s.login("erin").await;
    assert_eq!(s.get("/fresh", again["access_token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn client_credentials_introspection_and_revocation() {
    for backend in BACKENDS {
        let s = start(backend, "").await;
        let out = s.cli(&["clients", "add", "reports", "--scope", "reports:read", "--scope", "reports:write"]);
        let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_owned();
        let (id, secret) = (field("client_id:"), field("client_secret:"));
        let client = s.server.client();
        let token = |form: &[(&str, &str)]| {
            client.post(s.server.url("/oauth/token")).basic_auth(&id, Some(&secret)).form(form).send()
        };
        let response = token(&[("grant_type", "client_credentials"), ("scope", "reports:read")]).await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["scope"], "reports:read");
        assert!(body.get("refresh_token").is_none());
        let access = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(s.get("/api/reports", &access).await.status(), 200);

        let response = token(&[("grant_type", "client_credentials"), ("scope", "admin")]).await.unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_scope");
        let response = token(&[("grant_type", "password")]).await.unwrap();
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
        let response = client
            .post(s.server.url("/oauth/token"))
            .basic_auth(&id, Some("pcs_wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_client");
        let repeated = client
            .post(s.server.url("/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        assert_eq!(repeated.json::<Value>().await.unwrap()["error"], "invalid_request");

        let introspect = |t: &str| {
            client
                .post(s.server.url("/oauth/introspect"))
                .form(&[("token", t), ("client_id", &id), ("client_secret", &secret)])
                .send()
        };
        let info: Value = introspect(&access).await.unwrap().json().await.unwrap();
        assert_eq!(info["active"], true);
        assert_eq!(info["client_id"], id.as_str());
        let revoke = client
            .post(s.server.url("/oauth/revoke"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", access.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(revoke.status(), 200);
        let info: Value = introspect(&access).await.unwrap().json().await.unwrap();
        assert_eq!(info, json!({"active": false}));
        problem(s.get("/api/reports", &access).await, 401, "unauthenticated").await;
        // Unknown tokens: still 200 (RFC 7009), inactive.
        let revoke = client
            .post(s.server.url("/oauth/revoke"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", "garbage")])
            .send()
            .await
            .unwrap();
        assert_eq!(revoke.status(), 200);
        // Refresh tokens through the OAuth endpoint and introspection.
        s.add_user("frank", &["user"]);
        let tokens = s.login("frank").await;
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let info: Value = introspect(refresh).await.unwrap().json().await.unwrap();
        assert_eq!(info["token_type"], "refresh_token");
        let response = token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await.unwrap();
        assert_eq!(response.status(), 200);
        let info: Value = introspect(refresh).await.unwrap().json().await.unwrap();
        assert_eq!(info["active"], false, "a used refresh token is inactive");
    }
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid() {
    let s = start(Backend::Sqlite, "").await;
    s.add_user("gina", &["user"]);
    let old = s.login("gina").await;
    let old_access = old["access_token"].as_str().unwrap();
    let old_kid = token_header(old_access)["kid"].as_str().unwrap().to_owned();
    let out = s.cli(&["keys", "rotate"]);
    assert!(out.contains("new signing key"), "{out}");
    s.server.signal("HUP");
    s.server.wait_for_log("signing keys reloaded");
    let new = s.login("gina").await;
    let new_kid = token_header(new["access_token"].as_str().unwrap())["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(s.get("/api/x", old_access).await.status(), 200, "tokens of the retired key still verify");
    let jwks: Value =
        s.server.client().get(s.server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
    let listed = s.cli(&["keys", "list"]);
    assert!(listed.contains("retired") && listed.contains("active"), "{listed}");
}

#[tokio::test]
async fn disabled_users_and_changed_roles_are_cut_off() {
    let s = start(Backend::Sqlite, "").await;
    s.add_user("hank", &["user", "admin"]);
    let tokens = s.login("hank").await;
    let access = tokens["access_token"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.cli(&["users", "disable", "hank"]);
    // The running server learns it from the store within its sync period.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let status = s.get("/api/x", access).await.status();
        if status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "a disabled user's token still works");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.server.wait_for_log("token revoked");
    let response = s.post_json("/auth/refresh", json!({"refresh_token": tokens["refresh_token"]})).await;
    problem(response, 401, "invalid-refresh-token").await;
    problem(
        s.post_json("/auth/login", json!({"username": "hank", "password": PASSWORD})).await,
        401,
        "invalid-credentials",
    )
    .await;
    s.cli(&["users", "enable", "hank"]);
    assert_eq!(s.post_json("/auth/login", json!({"username": "hank", "password": PASSWORD})).await.status(), 200);
}

#[tokio::test]
async fn registration_is_off_by_default_and_never_grants_roles() {
    let s = start(Backend::Sqlite, "").await;
    let response = s.post_json("/auth/register", json!({"username": "ivy", "password": PASSWORD})).await;
    problem(response, 404, "not-found").await;
    let s = start(Backend::Sqlite, "[login]\nallow_registration = true\n").await;
    let response =
        s.post_json("/auth/register", json!({"username": "ivy", "password": PASSWORD, "roles": ["admin"]})).await;
    problem(response, 400, "bad-request").await;
    let response = s.post_json("/auth/register", json!({"username": "ivy", "password": "password123"})).await;
    problem(response, 422, "unprocessable").await;
    let response = s.post_json("/auth/register", json!({"username": "ivy", "password": PASSWORD})).await;
    assert_eq!(response.status(), 201);
    let me: Value =
        s.get("/auth/me", s.login("IVY").await["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["user"]));
    problem(s.post_json("/auth/register", json!({"username": "Ivy", "password": PASSWORD})).await, 409, "conflict")
        .await;
    let response = s.server.client().post(s.server.url("/auth/register")).body("username=x").send().await.unwrap();
    problem(response, 415, "unsupported-media-type").await;
}

#[tokio::test]
async fn passwords_tokens_and_client_secrets_never_reach_the_logs() {
    let s = start(Backend::Sqlite, "").await;
    s.add_user("jack", &["user"]);
    let tokens = s.login("jack").await;
    let _ = s.post_json("/auth/login", json!({"username": "jack", "password": "wrong-password-7f3a"})).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let _ = s.get("/api/x", &access).await;
    let _ = s.get("/api/x", &format!("{access}x")).await;
    let _ = s.post_json("/auth/refresh", json!({"refresh_token": refresh})).await;
    let _ = s.post_json("/auth/refresh", json!({"refresh_token": refresh})).await;
    let out = s.cli(&["clients", "add", "svc"]);
    let secret = out.lines().find_map(|l| l.strip_prefix("client_secret:")).unwrap().trim().to_owned();
    let _ = s
        .server
        .client()
        .post(s.server.url("/oauth/token"))
        .basic_auth("nope", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await;
    s.server.wait_for_log("client.authentication-failed");
    let logs = s.server.logs();
    let signature = access.rsplit('.').next().unwrap().to_owned();
    for secret in [PASSWORD, "wrong-password-7f3a", &access, &signature, &refresh, &secret] {
        assert!(!logs.contains(secret), "a secret reached the logs: {secret}");
    }
}

/// A JWKS server on loopback whose key set the test can change.
/// A JWKS endpoint serving `body`, on its own thread: the gateway fetches
/// keys before it listens, while the test's runtime is blocked starting it.
async fn jwks_server(body: std::sync::Arc<std::sync::Mutex<String>>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move { serve_jwks(tokio::net::TcpListener::from_std(listener).unwrap(), body).await });
    });
    addr
}

async fn serve_jwks(listener: tokio::net::TcpListener, body: std::sync::Arc<std::sync::Mutex<String>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let text = body.lock().unwrap().clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(hyper::body::Bytes::from(text)))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn rsa_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&encoding, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    (encoding, serde_json::to_value(jwk).unwrap())
}

#[tokio::test]
async fn tokens_of_an_external_issuer_are_accepted_with_mapped_roles() {
    let (first_key, first_jwk) = rsa_key("idp-1");
    let body = std::sync::Arc::new(std::sync::Mutex::new(json!({"keys": [first_jwk]}).to_string()));
    let addr = jwks_server(body.clone()).await;
    let extra = format!(
        "[[tokens.external]]\nissuer = \"https://idp.test/realms/main\"\naudience = \"orders-api\"\n\
         jwks_url = \"http://{addr}/certs\"\nroles_claim = \"realm_access.roles\"\n"
    );
    let s = start(Backend::Sqlite, &extra).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({
        "iss": "https://idp.test/realms/main", "aud": "orders-api", "sub": "kc-user-1", "exp": now + 300, "iat": now,
        "realm_access": {"roles": ["admin", "offline_access"]}, "preferred_username": "kim", "scope": "openid orders",
    });
    let mint = |key: &jsonwebtoken::EncodingKey, kid: &str, claims: &Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    };
    let token = mint(&first_key, "idp-1", &claims);
    let me: Value = s.get("/auth/me", &token).await.json().await.unwrap();
    assert_eq!(me["roles"], json!(["admin", "offline_access"]));
    assert_eq!(me["username"], "kim");
    assert_eq!(s.get("/api/x", &token).await.status(), 200);

    let mut wrong_audience = claims.clone();
    wrong_audience["aud"] = json!("another-api");
    problem(s.get("/api/x", &mint(&first_key, "idp-1", &wrong_audience)).await, 401, "unauthenticated").await;
    let mut unknown_issuer = claims.clone();
    unknown_issuer["iss"] = json!("https://evil.test");
    problem(s.get("/api/x", &mint(&first_key, "idp-1", &unknown_issuer)).await, 401, "unauthenticated").await;
    s.server.wait_for_log("unknown issuer");

    // The issuer rotates: a token of the new key is refused until the set is
    // fetched again (prompted here by SIGHUP).
    let (second_key, second_jwk) = rsa_key("idp-2");
    *body.lock().unwrap() = json!({"keys": [second_jwk]}).to_string();
    let rotated = mint(&second_key, "idp-2", &claims);
    problem(s.get("/api/x", &rotated).await, 401, "unauthenticated").await;
    s.server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get("/api/x", &rotated).await.status() != 200 {
        assert!(Instant::now() < deadline, "the rotated key was never fetched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // HS256 with the issuer's public modulus as a secret: never accepted.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("idp-2".into());
    let confused = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"n-of-the-public-key-as-secret").unwrap(),
    )
    .unwrap();
    problem(s.get("/api/x", &confused).await, 401, "unauthenticated").await;
}

#[tokio::test]
async fn the_first_admin_comes_from_the_environment_once() {
    let bootstrap = "first-admin-password-4c1d9e";
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/ops\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:9\"\nroles = [\"admin\"]\n"
    );
    let server = Portcullis::start(&config, &[("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", bootstrap)]);
    server.wait_for_log("user.bootstrap-admin");
    let response = server
        .client()
        .post(server.url("/auth/login"))
        .json(&json!({"username": "admin", "password": bootstrap}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let me: Value = server
        .client()
        .get(server.url("/auth/me"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["admin"]));
    assert!(!server.logs().contains(bootstrap), "the bootstrap password reached the logs");
    // With users present, the variable changes nothing on the next start.
    let dir = server.stop();
    let server =
        Portcullis::start_in(dir, &config, &[("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", "another-password-8e2f1a")]);
    let response = server
        .client()
        .post(server.url("/auth/login"))
        .json(&json!({"username": "admin", "password": "another-password-8e2f1a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(!server.logs().contains("user.bootstrap-admin"));
}

#[tokio::test]
async fn brute_force_locks_the_account_with_the_same_answer_until_unlock() {
    let s = start(Backend::Sqlite, "[login]\nmax_failures = 3\nlockout = \"10m\"\n").await;
    s.add_user("kate", &["user"]);
    let attempt =
        |password: &'static str| s.post_json("/auth/login", json!({"username": "kate", "password": password}));
    let mut bodies = Vec::new();
    for password in ["guess-one-1", "guess-two-2", "guess-three-3", PASSWORD] {
        let mut body = problem(attempt(password).await, 401, "invalid-credentials").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "a locked account answers like a wrong password");
    let logs = s.server.wait_for_log("account.locked");
    assert!(logs.contains("account locked"), "the refused right password is logged as a locked account");
    s.cli(&["users", "unlock", "kate"]);
    assert_eq!(attempt(PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn tokens_of_a_flask_app_are_accepted_with_its_shared_secret() {
    let upstream = Upstream::start().await;
    let secret = "4f1c9e7a2b6d8e0f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f";
    let config = format!(
        "{TEST_SERVER}[[tokens.shared_secret]]\nsecret_env = \"APP_JWT_SECRET\"\nroles_claim = \"role\"\n\
         [[route]]\npath = \"/items/{{id}}\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nroles = [\"user\"]\n",
        upstream.url()
    );
    let server = Portcullis::start(&config, &[("APP_JWT_SECRET", secret)]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // What Flask-JWT-Extended puts in an access token.
    let claims = json!({"fresh": false, "iat": now, "jti": "j-1", "type": "access", "sub": "alice", "nbf": now, "exp": now + 600, "role": "user"});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    let mint = |alg: jsonwebtoken::Algorithm, key: &jsonwebtoken::EncodingKey, claims: &Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, key).unwrap()
    };
    let get = |token: String| server.client().get(server.url("/items/1")).bearer_auth(token).send();
    let valid = mint(jsonwebtoken::Algorithm::HS256, &key, &claims);
    assert_eq!(get(valid.clone()).await.unwrap().status(), 200);
    assert_eq!(upstream.last().header("x-user-id"), Some("alice"));

    let with = |change: Value| {
        let mut changed = claims.clone();
        for (k, v) in change.as_object().unwrap() {
            changed[k] = v.clone();
        }
        changed
    };
    let (_, payload, _) = {
        let mut parts = valid.split('.');
        (parts.next().unwrap(), parts.next().unwrap().to_owned(), parts.next().unwrap())
    };
    let attacks = [
        ("expired", mint(jsonwebtoken::Algorithm::HS256, &key, &with(json!({"exp": now - 3600})))),
        ("HS512 with the same key", mint(jsonwebtoken::Algorithm::HS512, &key, &claims)),
        (
            "another key",
            mint(jsonwebtoken::Algorithm::HS256, &jsonwebtoken::EncodingKey::from_secret(&[7; 40]).unwrap(), &claims),
        ),
        ("alg none", format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"})))),
        ("a refresh token", mint(jsonwebtoken::Algorithm::HS256, &key, &with(json!({"type": "refresh"})))),
        ("an unexpected iss", mint(jsonwebtoken::Algorithm::HS256, &key, &with(json!({"iss": "https://evil.test"})))),
        ("an unexpected aud", mint(jsonwebtoken::Algorithm::HS256, &key, &with(json!({"aud": "other"})))),
        ("no exp", mint(jsonwebtoken::Algorithm::HS256, &key, &json!({"sub": "alice", "iat": now, "role": "user"}))),
        ("another role", mint(jsonwebtoken::Algorithm::HS256, &key, &with(json!({"role": "guest"})))),
    ];
    for (what, token) in attacks {
        let status = get(token).await.unwrap().status().as_u16();
        let expected = if what == "another role" { 403 } else { 401 };
        assert_eq!(status, expected, "{what}");
    }
    assert_eq!(upstream.requests().len(), 1, "no forged token reached the upstream");
    let logs = server.logs();
    assert!(!logs.contains(secret), "the shared secret is never logged");

    // Without the secret in the environment, `serve` stops at once and names it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), &config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config", "portcullis.toml"])
        .current_dir(dir.path())
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started without the shared secret");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("APP_JWT_SECRET"), "the message names the missing variable: {text}");
}
