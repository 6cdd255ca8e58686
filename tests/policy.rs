use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Portcullis, TEST_SERVER, Upstream, add_user, login, problem, raw_tls, run_cli};

async fn client_token(server: &Portcullis, scopes: &[&str]) -> String {
    let mut args = vec!["clients", "add", "svc", "--config", "portcullis.toml"];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let (code, out) = run_cli(server.dir.path(), &args, &[]);
    assert_eq!(code, 0, "{out}");
    let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).unwrap().trim().to_owned();
    let response = server
        .client()
        .post(server.url("/oauth/token"))
        .basic_auth(field("client_id:"), Some(field("client_secret:")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn identities_by_routes_by_methods() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}\
         [[route]]\npath = \"/orders/{{id}}\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nroles = [\"user\", \"admin\"]\n\
         [[route]]\npath = \"/orders/{{id}}\"\nmethods = [\"PUT\", \"DELETE\"]\nupstream = \"{up}\"\nroles = [\"admin\"]\n\
         [[route]]\npath = \"/profiles/{{username}}\"\nmethods = [\"GET\", \"PUT\"]\nupstream = \"{up}\"\n\
         allow_if = \"path.username == auth.username || 'admin' in auth.roles\"\n\
         [[route]]\npath = \"/reports\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nscopes = [\"reports:read\"]\n\
         [[route]]\npath = \"/public\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nauth = \"none\"\n",
        up = upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    add_user(&server, "guest1", &["guest"]);
    add_user(&server, "alice", &["user"]);
    add_user(&server, "bob", &["user"]);
    add_user(&server, "root", &["admin"]);
    let identities: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        ("guest", Some(login(&server, "guest1").await)),
        ("alice", Some(login(&server, "alice").await)),
        ("bob", Some(login(&server, "bob").await)),
        ("admin", Some(login(&server, "root").await)),
        ("client", Some(client_token(&server, &["reports:read"]).await)),
    ];
    // (method, path, expected status for: anonymous, guest, alice, bob, admin, client)
    let matrix: &[(&str, &str, [u16; 6])] = &[
        ("GET", "/orders/7", [401, 403, 200, 200, 200, 403]),
        ("PUT", "/orders/7", [401, 403, 403, 403, 200, 403]),
        ("DELETE", "/orders/7", [401, 403, 403, 403, 200, 403]),
        ("POST", "/orders/7", [405, 405, 405, 405, 405, 405]),
        ("GET", "/profiles/alice", [401, 403, 200, 403, 200, 403]),
        ("PUT", "/profiles/alice", [401, 403, 200, 403, 200, 403]),
        ("DELETE", "/profiles/alice", [405, 405, 405, 405, 405, 405]),
        ("GET", "/reports", [401, 403, 403, 403, 403, 200]),
        ("GET", "/public", [200, 200, 200, 200, 200, 200]),
        // Path tricks meet the canonical path's rule.
        ("GET", "//profiles/alice", [401, 403, 200, 403, 200, 403]),
        ("GET", "/profiles/x/../alice", [401, 403, 200, 403, 200, 403]),
        ("GET", "/profiles/%61lice", [401, 403, 200, 403, 200, 403]),
        ("GET", "/profiles/alice/.", [401, 403, 200, 403, 200, 403]),
        ("PUT", "/x/..//orders/./7", [401, 403, 403, 403, 200, 403]),
    ];
    for (method, path, expected) in matrix {
        for ((who, token), want) in identities.iter().zip(expected) {
            let mut request =
                format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: 0\r\n");
            if let Some(token) = token {
                request.push_str(&format!("authorization: Bearer {token}\r\n"));
            }
            request.push_str("\r\n");
            let answer = raw_tls(&server, request.as_bytes(), Duration::from_secs(5)).await;
            let status = answer.split(' ').nth(1).unwrap_or("none");
            assert_eq!(status, want.to_string(), "{who} {method} {path}:\n{answer}");
        }
    }
    let logs = server.wait_for_log("requires one of the roles admin");
    assert!(logs.contains("rule denied: path.username == auth.username"), "the rule is named in the audit log");
    assert!(logs.contains("requires the scopes reports:read"));
    assert!(logs.contains("\"http.route\":\"/profiles/{username}\""));
}

#[tokio::test]
async fn the_upstream_gets_the_identity_and_never_a_forged_one() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/me/{{*rest}}\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\n\
         forward_identity = {{ token = true, audience = \"orders-api\" }}\n\
         [[route]]\npath = \"/raw\"\nmethods = [\"GET\"]\nupstream = \"{up}\"\nforward_identity = {{ headers = false }}\nforward_token = true\n",
        up = upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    add_user(&server, "alice", &["user", "editor"]);
    let token = login(&server, "alice").await;
    let response = server
        .client()
        .get(server.url("/me/x"))
        .bearer_auth(&token)
        .header("x-user-id", "admin")
        .header("x-user-roles", "admin")
        .header("x-identity-token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last();
    let me: Value =
        server.client().get(server.url("/auth/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(seen.header("x-user-id"), me["sub"].as_str());
    assert_eq!(seen.header("x-user-name"), Some("alice"));
    assert_eq!(seen.header("x-user-roles"), Some("editor,user"), "roles are kept sorted");
    assert_eq!(seen.header("authorization"), None, "the bearer token stays at the gateway");
    // The identity token verifies against the JWKS, with its own typ and audience.
    let identity = seen.header("x-identity-token").unwrap().to_owned();
    assert_ne!(identity, "forged");
    let jwks: jsonwebtoken::jwk::JwkSet =
        server.client().get(server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(&identity).unwrap();
    assert_eq!(header.typ.as_deref(), Some("identity+jwt"));
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["orders-api"]);
    validation.set_issuer(&["https://localhost:0"]);
    let claims = jsonwebtoken::decode::<Value>(&identity, &key, &validation).unwrap().claims;
    assert_eq!(claims["username"], "alice");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 60);
    // It is never accepted as an access token.
    problem(
        server.client().get(server.url("/me/x")).bearer_auth(&identity).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    // forward_token passes the bearer token on; no identity headers there.
    assert_eq!(server.client().get(server.url("/raw")).bearer_auth(&token).send().await.unwrap().status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(seen.header("x-user-id"), None);
}

#[test]
fn check_reports_rule_errors_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[route]]\npath = \"/p/{id}\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:5000\"\n\
                  allow_if = \"path.owner == auth.sub\"\n\n\
                  [[route]]\npath = \"/q\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:5000\"\n\
                  allow_if = \"user.id == auth.sub\"\n\n\
                  [[route]]\npath = \"/r\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:5000\"\nauth = \"none\"\nroles = [\"admin\"]\n";
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("p.toml:5:13: error: `allow_if`: the route has no path parameter `owner` (it has: id)"),
        "{out}"
    );
    assert!(out.contains("p.toml:11:13: error: `allow_if`: unknown variable `user`"), "{out}");
    assert!(out.contains("p.toml:17:8: error: `roles`, `scopes` and `allow_if` need authentication"), "{out}");
}

#[tokio::test]
async fn flask_upstream_trusts_only_the_gateway_identity() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flask-upstream");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Flask example's venv is missing: run ./scripts/test-all.sh (it installs it from PyPI)"
    );
    let flask_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let example = std::fs::read_to_string(root.join("portcullis.toml")).unwrap();
    let config = example
        .replace("https = \"127.0.0.1:8443\"", "https = \"127.0.0.1:0\"")
        .replace("http = \"127.0.0.1:8080\"", "http = \"127.0.0.1:0\"")
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{flask_port}"));
    let server = Portcullis::start(&config, &[]);
    add_user(&server, "alice", &["user"]);
    add_user(&server, "bob", &["user"]);
    add_user(&server, "root", &["admin"]);
    let mut flask = std::process::Command::new(&python)
        .arg(root.join("app.py"))
        .env("PORT", flask_port.to_string())
        .env("GATEWAY_JWKS_URL", server.url("/.well-known/jwks.json"))
        .env("GATEWAY_ISSUER", "https://localhost:0")
        .env("IDENTITY_AUDIENCE", "records-api")
        .env("GATEWAY_CA_FILE", server.certificate_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut flask);
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(server.url("/health")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "Flask did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alice = login(&server, "alice").await;
    let admin = login(&server, "root").await;
    let own =
        client.get(server.url("/records/alice")).bearer_auth(&alice).header("x-user-id", "root").send().await.unwrap();
    assert_eq!(own.status(), 200);
    let body: Value = own.json().await.unwrap();
    assert_eq!(body["verified_username"], "alice");
    assert_eq!(body["records"][0]["title"], "alice's first record");
    assert_ne!(body["x_user_id_seen"], "root", "a forged identity header reached Flask");
    problem(client.get(server.url("/records/bob")).bearer_auth(&alice).send().await.unwrap(), 403, "forbidden").await;
    let all = client.get(server.url("/records/bob")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(all.status(), 200);
    // Straight to Flask with forged headers: refused, it trusts only the signed token.
    let direct = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{flask_port}/records/alice"))
        .header("x-user-id", "alice")
        .header("x-user-name", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
}
