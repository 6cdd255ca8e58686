//! The admin panel in real headless Chromium: sign in, users, roles,
//! sessions, events; CSRF and the session cookie from a browser's side.
use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::util::browser::Browser;
use crate::util::{PASSWORD, Portcullis, TEST_SERVER, add_user, login};

const ADMIN_PASSWORD: &str = "Adm1n-panel-Passw0rd-for-tests";

async fn sign_in(browser: &Browser, server: &Portcullis) {
    let c = &browser.client;
    c.goto(&server.url("/admin")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/admin/login"), "redirected to sign in");
    browser.screenshot("login").await;
    c.find(Locator::Id("username")).await.unwrap().send_keys("admin").await.unwrap();
    c.find(Locator::Id("password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
    c.find(Locator::Css("main button[type=submit]")).await.unwrap().click().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut title = c.title().await.unwrap();
    while title != "Dashboard · Portcullis admin" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        title = c.title().await.unwrap();
    }
    if title != "Dashboard · Portcullis admin" {
        let url = c.current_url().await.unwrap();
        let source = c.source().await.unwrap();
        let logs = server.logs();
        let tail: Vec<&str> = logs.lines().rev().take(8).collect();
        panic!("not signed in: {url}\n{source}\n{tail:#?}");
    }
}

async fn page_text(browser: &Browser) -> String {
    browser.client.find(Locator::Css("main")).await.unwrap().text().await.unwrap()
}

/// The page's text once it contains `expected` (pages load after a click).
async fn wait_for_text(browser: &Browser, expected: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = match browser.client.find(Locator::Css("main")).await {
            Ok(main) => main.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(expected) || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(browser: &Browser, form: &str) {
    let button = browser.client.find(Locator::Css(&format!("{form} button[type=submit]"))).await.unwrap();
    button.click().await.unwrap();
}

#[tokio::test]
async fn an_administrator_manages_users_sessions_and_finds_the_events_in_chromium() {
    let server = Portcullis::start(TEST_SERVER, &[("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let browser = Browser::start().await;
    sign_in(&browser, &server).await;
    let c = &browser.client;
    // The session cookie is HttpOnly: scripts cannot read it.
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert!(!cookies.as_str().unwrap_or("").contains("portcullis-session"), "{cookies}");

    // A link cannot make the panel say something.
    c.goto(&server.url("/admin/users?done=Your+account+is+suspended")).await.unwrap();
    assert!(!page_text(&browser).await.contains("suspended"));

    // Create a user.
    c.goto(&server.url("/admin/users")).await.unwrap();
    c.find(Locator::Id("new-username")).await.unwrap().send_keys("dave").await.unwrap();
    c.find(Locator::Id("new-password")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    submit(&browser, "form[method=post][action='/admin/users']").await;
    let text = wait_for_text(&browser, "User created.").await;
    assert!(text.contains("User created.") && text.contains("User dave"), "{text}");

    // Change roles.
    let roles = c.find(Locator::Id("roles")).await.unwrap();
    roles.clear().await.unwrap();
    roles.send_keys("user auditor").await.unwrap();
    submit(&browser, "form[action='/admin/users/dave/roles']").await;
    let text = wait_for_text(&browser, "Roles saved.").await;
    assert!(text.contains("Roles saved.") && text.contains("auditor user"), "{text}");

    // Five wrong passwords lock dave; the administrator lifts the lock.
    let dave_login = |password: &'static str| {
        server.client().post(server.url("/auth/login")).json(&json!({"username": "dave", "password": password})).send()
    };
    for _ in 0..5 {
        assert_eq!(dave_login("wrong password").await.unwrap().status(), 401);
    }
    assert_eq!(dave_login(PASSWORD).await.unwrap().status(), 401, "locked");
    c.goto(&server.url("/admin/users/dave")).await.unwrap();
    submit(&browser, "form[action='/admin/users/dave/unlock']").await;
    assert!(wait_for_text(&browser, "Unlocked.").await.contains("Unlocked."));
    assert_eq!(dave_login(PASSWORD).await.unwrap().status(), 200, "unlocked");

    // Dave signs in elsewhere; the administrator ends that session.
    let origin = server.url("").trim_end_matches('/').to_owned();
    let dave = server
        .client()
        .post(server.url("/auth/login"))
        .header("origin", &origin)
        .json(&json!({"username": "dave", "password": PASSWORD, "session": true}))
        .send()
        .await
        .unwrap();
    let dave_cookie = dave.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let as_dave = || server.client().get(server.url("/auth/sessions")).header("cookie", dave_cookie.clone()).send();
    assert_eq!(as_dave().await.unwrap().status(), 200);
    c.goto(&server.url("/admin/users/dave")).await.unwrap();
    browser.screenshot("user").await;
    submit(&browser, "form[action$='/revoke'][action*='/sessions/']").await;
    assert!(wait_for_text(&browser, "Session ended.").await.contains("Session ended."));
    assert_eq!(as_dave().await.unwrap().status(), 401, "dave's session is over");
    c.goto(&server.url("/admin/users")).await.unwrap();
    browser.screenshot("users").await;

    // The administrator's actions are events, found with the filter.
    c.goto(&server.url("/admin/events")).await.unwrap();
    c.find(Locator::Id("action")).await.unwrap().send_keys("admin.*").await.unwrap();
    submit(&browser, "form.filters").await;
    let text = wait_for_text(&browser, "admin.session-ended").await;
    for action in ["admin.user-created", "admin.roles-changed", "admin.user-unlocked", "admin.session-ended"] {
        assert!(text.contains(action), "{action} not listed:\n{text}");
    }
    browser.screenshot("events").await;
    c.find(Locator::Css("tbody tr a")).await.unwrap().click().await.unwrap();
    let detail = wait_for_text(&browser, "Event id").await;
    assert!(detail.contains("admin.session-ended") && detail.contains("dave"), "{detail}");
    browser.screenshot("event").await;

    for page in ["clients", "keys", "config"] {
        c.goto(&server.url(&format!("/admin/{page}"))).await.unwrap();
        assert!(!page_text(&browser).await.is_empty());
        browser.screenshot(page).await;
    }
    let config = page_text(&browser).await;
    assert!(!config.contains(ADMIN_PASSWORD), "no secret in the configuration page");

    // From the panel's own origin, a request without the form's token is refused.
    let status = |body: &'static str| {
        let script = format!(
            "return fetch('/admin/users', {{method: 'POST', headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: '{body}'}}).then(r => r.status)"
        );
        async move { c.execute(&script, vec![]).await.unwrap() }
    };
    assert_eq!(status("username=eve&password=x&roles=admin").await, json!(403));
    assert_eq!(status("username=eve&password=x&roles=admin&csrf_token=forged").await, json!(403));
    let admin_token = login_admin(&server).await;
    let eve: Value = server
        .client()
        .get(server.url("/admin/api/events?action=admin.user-created&limit=500"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!eve.to_string().contains("\"eve\""), "no user eve was created");
    server.wait_for_log("\"event.action\":\"request.csrf-failed\"");
    c.goto(&server.url("/admin")).await.unwrap();
    browser.screenshot("dashboard").await;
    browser.client.clone().close().await.unwrap();
}

async fn login_admin(server: &Portcullis) -> String {
    let response = server
        .client()
        .post(server.url("/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// Serves one HTML page on a plain-HTTP port of 127.0.0.1 (another site
/// than `localhost`), for `requests` requests.
async fn foreign_site(html: String, requests: usize) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..requests {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut buffer = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                html.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    port
}

#[tokio::test]
async fn a_page_on_another_site_cannot_use_the_administrators_session() {
    let server = Portcullis::start(TEST_SERVER, &[("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    add_user(&server, "bob", &["user"]);
    let browser = Browser::start().await;
    sign_in(&browser, &server).await;
    let target = server.url("/admin/users/bob/roles");
    let html = format!(
        "<!doctype html><form method=post action=\"{target}\"><input name=roles value=admin>\
         <input name=csrf_token value=guessed></form><script>document.forms[0].submit()</script>"
    );
    let port = foreign_site(html, 4).await;
    browser.client.goto(&format!("http://127.0.0.1:{port}/prize.html")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // bob is still a plain user: the post came without the session (SameSite)
    // or was refused by the CSRF checks.
    let token = login(&server, "bob").await;
    let me: Value =
        server.client().get(server.url("/auth/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["roles"], json!(["user"]));
    browser.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn the_json_admin_api_does_what_the_panel_does() {
    let server = Portcullis::start(TEST_SERVER, &[("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)]);
    let admin = login_admin(&server).await;
    let client = server.client();
    let call = |method: reqwest::Method, path: &str| client.request(method, server.url(path)).bearer_auth(&admin);
    use reqwest::Method;

    let created = call(Method::POST, "/admin/api/users")
        .json(&json!({"username": "erin", "password": PASSWORD, "roles": ["user"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let user: Value = created.json().await.unwrap();
    assert!(user.get("password_hash").is_none() && user["roles"] == json!(["user"]));
    let again = call(Method::POST, "/admin/api/users").json(&json!({"username": "erin", "password": PASSWORD})).send();
    assert_eq!(again.await.unwrap().status(), 409);
    let weak = call(Method::POST, "/admin/api/users").json(&json!({"username": "frank", "password": "123"})).send();
    assert_eq!(weak.await.unwrap().status(), 422);

    let roles = call(Method::POST, "/admin/api/users/erin/roles").json(&json!({"roles": ["user", "auditor"]})).send();
    assert_eq!(roles.await.unwrap().status(), 204);
    assert_eq!(call(Method::POST, "/admin/api/users/erin/disable").send().await.unwrap().status(), 204);
    let detail: Value = call(Method::GET, "/admin/api/users/erin").send().await.unwrap().json().await.unwrap();
    assert_eq!(detail["user"]["roles"], json!(["auditor", "user"]));
    assert_eq!(detail["user"]["disabled"], true);
    assert_eq!(call(Method::POST, "/admin/api/users/nobody/enable").send().await.unwrap().status(), 404);

    let new_client: Value = call(Method::POST, "/admin/api/clients")
        .json(&json!({"name": "reports", "scopes": ["reports:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = new_client["client_id"].as_str().unwrap().to_owned();
    assert!(new_client["client_secret"].as_str().is_some_and(|s| s.len() > 30));
    let listed: Value = call(Method::GET, "/admin/api/clients").send().await.unwrap().json().await.unwrap();
    assert!(!listed.to_string().contains(new_client["client_secret"].as_str().unwrap()), "the secret is shown once");
    assert_eq!(call(Method::POST, &format!("/admin/api/clients/{id}/remove")).send().await.unwrap().status(), 204);

    let rotated: Value = call(Method::POST, "/admin/api/keys/rotate").send().await.unwrap().json().await.unwrap();
    let keys: Value = call(Method::GET, "/admin/api/keys").send().await.unwrap().json().await.unwrap();
    assert!(keys["keys"].as_array().unwrap().iter().any(|k| k["kid"] == rotated["kid"]));

    // Each change is an event naming the administrator and the target.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events: Value =
        call(Method::GET, "/admin/api/events?action=admin.*&limit=100").send().await.unwrap().json().await.unwrap();
    let actions: Vec<&str> = events["events"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for action in [
        "admin.user-created",
        "admin.roles-changed",
        "admin.user-disabled",
        "admin.client-created",
        "admin.client-removed",
        "admin.key-rotated",
    ] {
        assert!(actions.contains(&action), "{action} missing: {actions:?}");
    }
    let first = &events["events"][0];
    let one: Value = call(Method::GET, &format!("/admin/api/events/{}", first["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&one, first);

    // Not for users, and the panel's pages redirect strangers to sign in.
    add_user(&server, "bob", &["user"]);
    let bob = login(&server, "bob").await;
    let as_bob = client.get(server.url("/admin/api/users")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(as_bob.status(), 403);
    let no_redirects = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(server.certificate_path()).unwrap()).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirects.get(server.url("/admin/users")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/admin/login");
    let wrong_method = client.delete(server.url("/admin/users")).send().await.unwrap();
    crate::util::problem(wrong_method, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn openapi_json_describes_every_built_in_endpoint() {
    let server = Portcullis::start(TEST_SERVER, &[]);
    let spec: Value = server.client().get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().unwrap();
    for (path, methods) in portcullis::api::BUILTIN_ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is not in /openapi.json"));
        for method in *methods {
            assert!(item.get(method.to_lowercase()).is_some(), "{method} {path} is not in /openapi.json");
        }
    }
    for path in ["/admin/api/users", "/admin/api/users/{name}/roles", "/admin/api/clients", "/admin/api/keys/rotate"] {
        assert!(paths.contains_key(path), "{path} is not in /openapi.json");
    }
}
