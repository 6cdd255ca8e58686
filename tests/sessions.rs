//! Browser sessions and CSRF: the cookie, proxied routes, each CSRF rule,
//! fixation, logout, expiry.
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{PASSWORD, Portcullis, TEST_SERVER, Upstream, add_user, login, problem};

fn config(upstream: &Upstream, sessions: &str) -> String {
    format!(
        "{TEST_SERVER}[sessions]\n{sessions}\n[[route]]\npath = \"/api/{{item}}\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"{}\"\n",
        upstream.url()
    )
}

struct Browser {
    cookie: String,
    csrf: String,
}

async fn session_login(server: &Portcullis, name: &str, old_cookie: Option<&str>) -> Browser {
    let origin = server.url("").trim_end_matches('/').to_owned();
    let mut request = server
        .client()
        .post(server.url("/auth/login"))
        .header("origin", &origin)
        .json(&json!({"username": name, "password": PASSWORD, "session": true}));
    if let Some(old) = old_cookie {
        request = request.header("cookie", old);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["__Host-portcullis-session=", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.contains(flag), "{flag} missing in {set_cookie}");
    }
    let body: Value = response.json().await.unwrap();
    assert!(body.get("access_token").is_none(), "a session login gives no token");
    Browser {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

impl Browser {
    fn get(&self, server: &Portcullis, path: &str) -> reqwest::RequestBuilder {
        server.client().get(server.url(path)).header("cookie", format!("theme=dark; {}", self.cookie))
    }

    fn post(
        &self,
        server: &Portcullis,
        path: &str,
        origin: Option<&str>,
        csrf: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut request = server.client().post(server.url(path)).header("cookie", &self.cookie).json(&json!({}));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request
    }
}

#[tokio::test]
async fn a_session_authenticates_proxied_routes_and_csrf_guards_unsafe_methods() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&config(&upstream, ""), &[]);
    add_user(&server, "alice", &["user"]);
    let browser = session_login(&server, "alice", None).await;
    let own = server.url("").trim_end_matches('/').to_owned();

    assert_eq!(browser.get(&server, "/api/1").send().await.unwrap().status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.header("cookie"), Some("theme=dark"), "the session cookie never reaches the upstream");
    assert_eq!(seen.header("x-user-name"), Some("alice"), "the upstream gets the identity");

    problem(browser.post(&server, "/api/1", Some(&own), None).send().await.unwrap(), 403, "csrf-failed").await;
    problem(browser.post(&server, "/api/1", Some(&own), Some("wrong")).send().await.unwrap(), 403, "csrf-failed").await;
    let evil = browser.post(&server, "/api/1", Some("https://evil.example"), Some(&browser.csrf));
    problem(evil.send().await.unwrap(), 403, "csrf-failed").await;
    problem(browser.post(&server, "/api/1", None, Some(&browser.csrf)).send().await.unwrap(), 403, "csrf-failed").await;
    let fine = browser.post(&server, "/api/1", Some(&own), Some(&browser.csrf)).send().await.unwrap();
    assert_eq!(fine.status(), 201);
    let csrf: Value = browser.get(&server, "/auth/csrf").send().await.unwrap().json().await.unwrap();
    assert_eq!(csrf["csrf_token"], browser.csrf.as_str());

    // Bearer requests need no CSRF token.
    let token = login(&server, "alice").await;
    let bearer = server.client().post(server.url("/api/1")).bearer_auth(&token).json(&json!({})).send().await.unwrap();
    assert_eq!(bearer.status(), 201);
    server.wait_for_log("\"event.action\":\"request.csrf-failed\"");
}

#[tokio::test]
async fn login_replaces_a_planted_session_and_logout_ends_it() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&config(&upstream, ""), &[]);
    add_user(&server, "alice", &["user"]);
    let first = session_login(&server, "alice", None).await;
    let second = session_login(&server, "alice", Some(&first.cookie)).await;
    assert_ne!(first.cookie, second.cookie, "a new id at login");
    assert_eq!(first.get(&server, "/api/1").send().await.unwrap().status(), 401, "the presented session ended");
    let list: Value = second.get(&server, "/auth/sessions").send().await.unwrap().json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["current"], true);
    assert!(sessions[0].get("csrf_token").is_none() && sessions[0].get("token_hash").is_none());

    let own = server.url("").trim_end_matches('/').to_owned();
    problem(second.post(&server, "/auth/logout", Some(&own), None).send().await.unwrap(), 403, "csrf-failed").await;
    let out = second.post(&server, "/auth/logout", Some(&own), Some(&second.csrf)).send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(second.get(&server, "/api/1").send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn sessions_expire_when_idle_and_absolutely_and_with_a_password_change() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&config(&upstream, "idle_timeout = \"2s\"\nabsolute_timeout = \"4s\""), &[]);
    add_user(&server, "alice", &["user"]);
    let idle = session_login(&server, "alice", None).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(idle.get(&server, "/api/1").send().await.unwrap().status(), 401, "idle timeout");

    let busy = session_login(&server, "alice", None).await;
    for _ in 0..4 {
        assert_eq!(busy.get(&server, "/api/1").send().await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(busy.get(&server, "/api/1").send().await.unwrap().status(), 401, "absolute timeout");

    let changed = session_login(&server, "alice", None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out) = crate::util::run_cli_with_input(
        server.dir.path(),
        &["users", "passwd", "alice", "--password-stdin", "--config", "portcullis.toml"],
        &[],
        "another correct horse battery staple\n",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(changed.get(&server, "/api/1").send().await.unwrap().status(), 401, "a password change ends sessions");
}

#[tokio::test]
async fn a_foreign_page_cannot_log_a_browser_in() {
    let server = Portcullis::start(TEST_SERVER, &[]);
    add_user(&server, "alice", &["user"]);
    let form = server
        .client()
        .post(server.url("/auth/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    problem(form, 403, "csrf-failed").await;
}
