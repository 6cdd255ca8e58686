//! Security events in the log, the store and the metrics; redaction; the
//! store stopped mid-stream; alert webhooks; the metrics listener.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::postgres::PostgresServer;
use crate::util::{PASSWORD, Portcullis, TEST_SERVER, Upstream, add_user, login, run_cli, run_cli_with_input};

/// Routes that each refuse in one way.
fn routes(upstream: &Upstream) -> String {
    let u = upstream.url();
    format!(
        r#"
[login]
max_failures = 3

[[route]]
path = "/admin-only/{{id}}"
methods = ["GET"]
upstream = "{u}"
roles = ["admin"]

[[route]]
path = "/limited"
methods = ["GET"]
upstream = "{u}"
auth = "none"
rate_limit = [{{ rate = "1/minute" }}]

[[route]]
path = "/items"
methods = ["POST"]
upstream = "{u}"
auth = "none"
max_body = "64B"
validate.body = {{ type = "object", properties = {{ n = {{ type = "integer" }} }} }}
"#
    )
}

async fn login_as(server: &Portcullis, name: &str, password: &str) -> reqwest::Response {
    server
        .client()
        .post(server.url("/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Every stored event (as the admin API returns them), waiting until
/// `expected` actions are all there (the writer batches in the background).
async fn stored_events(server: &Portcullis, admin_token: &str, expected: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page: Value = server
            .client()
            .get(server.url("/admin/api/events?limit=500"))
            .bearer_auth(admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let actions: BTreeSet<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
        if expected.iter().all(|a| actions.contains(a)) || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces one of many event types through real requests and commands.
async fn exercise_events(server: &Portcullis) -> String {
    let client = server.client();
    add_user(server, "root", &["admin"]);
    add_user(server, "bob", &["user"]);
    add_user(server, "carol", &["user"]);
    let admin = login(server, "root").await;
    let bob = login(server, "bob").await;
    for _ in 0..3 {
        assert_eq!(login_as(server, "carol", "Wr0ng-S3cret-Guess!").await.status(), 401);
    }
    let forged = format!("{}.Zm9yZ2VkLXNpZ25hdHVyZS1TRUNSRVQ", &bob[..bob.rfind('.').unwrap()]);
    let get = |path: &str, token: &str| client.get(server.url(path)).bearer_auth(token.to_owned()).send();
    assert_eq!(get("/admin-only/1", &forged).await.unwrap().status(), 401);
    assert_eq!(get("/admin-only/1", &bob).await.unwrap().status(), 403);
    assert_eq!(get("//admin-only/./1", &bob).await.unwrap().status(), 403);
    assert_eq!(get("/nothing-here", &bob).await.unwrap().status(), 404);
    assert_eq!(client.get(server.url("/limited")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(server.url("/limited")).send().await.unwrap().status(), 429);
    let post = |body: &'static str| {
        client.post(server.url("/items")).header("content-type", "application/json").body(body).send()
    };
    assert_eq!(post(r#"{"n": "not a number"}"#).await.unwrap().status(), 422);
    assert_eq!(
        post(r#"{"n": 1, "padding": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#)
            .await
            .unwrap()
            .status(),
        413
    );
    let (code, out) = run_cli(server.dir.path(), &["users", "unlock", "carol", "--config", "portcullis.toml"], &[]);
    assert_eq!(code, 0, "{out}");
    let logout = client.post(server.url("/auth/logout")).bearer_auth(&bob).send().await.unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    admin
}

const EXPECTED: &[&str] = &[
    "login.success",
    "login.failure",
    "account.locked",
    "request.unauthenticated",
    "request.forbidden",
    "request.path-normalized",
    "request.not-found",
    "request.rate-limited",
    "request.invalid-body",
    "request.payload-too-large",
    "token.revoked",
    "admin.user-created",
    "admin.user-unlocked",
    "account.unlocked",
];

#[tokio::test]
async fn every_event_reaches_the_log_the_store_and_the_metrics() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&format!("{TEST_SERVER}{}", routes(&upstream)), &[]);
    let admin = exercise_events(&server).await;

    let events = stored_events(&server, &admin, EXPECTED).await;
    let stored: BTreeSet<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    let logs = server.logs();
    let metrics = server.client().get(server.url("/metrics")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let metrics = metrics.text().await.unwrap();
    for action in EXPECTED {
        assert!(stored.contains(action), "{action} is not in the store: {stored:?}");
        // Administration commands run in their own process: their events
        // go to the store, not to the server's log and metrics.
        if !action.starts_with("admin.") && *action != "account.unlocked" {
            assert!(logs.contains(&format!("\"event.action\":\"{action}\"")), "{action} is not in the log");
            assert!(metrics.contains(&format!("action=\"{action}\"")), "{action} is not in the metrics");
        }
    }
    // A stored event has its context, ECS-named in the log.
    let forbidden = events.iter().find(|e| e["action"] == "request.forbidden").unwrap();
    assert_eq!(forbidden["route"], "/admin-only/{id}");
    assert_eq!(forbidden["client_ip"], "127.0.0.1");
    assert_eq!(forbidden["severity"], "medium");
    assert_eq!(forbidden["category"], "web");
    assert!(forbidden["user"].as_str().is_some_and(|u| !u.is_empty()), "the user is known");
    let unlocked = events.iter().find(|e| e["action"] == "admin.user-unlocked").unwrap();
    assert_eq!(unlocked["target"], "carol");
    assert!(unlocked["user"].as_str().unwrap().starts_with("cli:"), "who did it");
    let line = logs.lines().find(|l| l.contains("\"event.action\":\"account.locked\"")).unwrap();
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["event.category"], "authentication");
    assert_eq!(line["event.outcome"], "failure");
    assert_eq!(line["ecs.version"], "8.11.0");
    assert!(line["@timestamp"].as_str().is_some());
    for name in [
        "portcullis_http_requests_total{route=\"/limited\",method=\"GET\",status=\"429\"}",
        "portcullis_refusals_total{gate=\"authz\",reason=\"forbidden\"}",
        "portcullis_logins_total{outcome=\"failure\"} 3",
        "portcullis_rate_limit_decisions_total{store=\"memory\",decision=\"limited\"}",
        "portcullis_upstream_duration_seconds_count{route=\"/limited\"} 1",
        "portcullis_audit_store_up 1",
        "portcullis_store_up 1",
    ] {
        assert!(metrics.contains(name), "{name} is not in the metrics:\n{metrics}");
    }

    // Filters and pages.
    let page = |query: &'static str| {
        let client = server.client();
        let url = server.url(&format!("/admin/api/events?{query}"));
        let admin = admin.clone();
        async move { client.get(url).bearer_auth(admin).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let logins = page("action=login.*").await;
    assert!(logins["events"].as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("login.")));
    assert_eq!(page("action=login.failure&user=carol").await["events"].as_array().unwrap().len(), 3);
    let first = page("action=login.failure&limit=2").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let before = first["next_before"].as_str().unwrap().to_owned();
    let rest: Value = server
        .client()
        .get(server.url(&format!("/admin/api/events?action=login.failure&limit=2&before={before}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["events"].as_array().unwrap().len(), 1, "the third, on the next page");
    let bad = server.client().get(server.url("/admin/api/events?colour=red")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_admin_api_and_metrics_are_for_administrators_only() {
    let server = Portcullis::start(TEST_SERVER, &[]);
    add_user(&server, "bob", &["user"]);
    let bob = login(&server, "bob").await;
    for path in ["/metrics", "/admin/api/events"] {
        assert_eq!(server.client().get(server.url(path)).send().await.unwrap().status(), 401, "{path}");
        let as_user = server.client().get(server.url(path)).bearer_auth(&bob).send().await.unwrap();
        assert_eq!(as_user.status(), 403, "{path}");
    }
}

#[tokio::test]
async fn no_secret_reaches_any_sink() {
    let upstream = Upstream::start().await;
    const BOOTSTRAP: &str = "B00tstrap-Adm1n-Secret-Value";
    const WRONG: &str = "Wr0ng-S3cret-Guess!";
    const COOKIE: &str = "SeCrEtCoOkIeVaLuE123";
    const QUERY: &str = "QuErYsEcReTvAlUe";
    const BASIC: &str = "QmFzaWNTZWNyZXRWYWx1ZQ";
    let server = Portcullis::start(
        &format!("{TEST_SERVER}{}", routes(&upstream)),
        &[("PORTCULLIS_BOOTSTRAP_ADMIN_PASSWORD", BOOTSTRAP)],
    );
    let admin = exercise_events(&server).await;
    let client = server.client();
    let admin_login: Value = login_as(&server, "admin", BOOTSTRAP).await.json().await.unwrap();
    let refresh = admin_login["refresh_token"].as_str().unwrap().to_owned();
    // Refresh token reuse, a bad client secret, cookies, query secrets, basic auth.
    for _ in 0..2 {
        client.post(server.url("/auth/refresh")).json(&json!({"refresh_token": refresh})).send().await.unwrap();
    }
    let (_, out) = run_cli(server.dir.path(), &["clients", "add", "reports", "--config", "portcullis.toml"], &[]);
    let client_secret = out.lines().find_map(|l| l.strip_prefix("client_secret: ")).unwrap().to_owned();
    let client_id = out.lines().find_map(|l| l.strip_prefix("client_id: ")).unwrap().to_owned();
    let bad_secret = format!("{client_secret}x");
    client
        .post(server.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &client_id), ("client_secret", &bad_secret)])
        .send()
        .await
        .unwrap();
    client
        .get(server.url(&format!("/admin-only/1?api_key={QUERY}")))
        .header("cookie", format!("session={COOKIE}"))
        .header("authorization", format!("Basic {BASIC}"))
        .send()
        .await
        .unwrap();
    let (_, out) = run_cli_with_input(
        server.dir.path(),
        &["users", "passwd", "bob", "--password-stdin", "--config", "portcullis.toml"],
        &[],
        "An0ther-N3w-Passw0rd-Secret\n",
    );
    assert!(out.contains("password of bob changed"), "{out}");
    let events = stored_events(&server, &admin, &["token.refresh-reused", "client.authentication-failed"]).await;
    let metrics = client.get(server.url("/metrics")).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();

    let sinks = [
        ("log", server.logs()),
        ("store", serde_json::to_string(&events).unwrap()),
        ("metrics", metrics),
        ("spool", std::fs::read_to_string(server.dir.path().join("data/audit-spool.jsonl")).unwrap_or_default()),
    ];
    let bob_token = login(&server, "root").await;
    let secrets = [
        PASSWORD,
        BOOTSTRAP,
        WRONG,
        COOKIE,
        QUERY,
        BASIC,
        "An0ther-N3w-Passw0rd-Secret",
        &client_secret,
        &refresh,
        &admin,
        &bob_token[bob_token.rfind('.').unwrap()..],
        "Zm9yZ2VkLXNpZ25hdHVyZS1TRUNSRVQ",
    ];
    for (sink, text) in &sinks {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret ({}…) appears in the {sink}", &secret[..4]);
        }
    }
}

#[tokio::test]
async fn events_survive_a_store_outage() {
    let postgres = PostgresServer::start();
    let config = format!("{TEST_SERVER}[store]\nurl = \"{}\"\n", postgres.url());
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    for i in 0..20 {
        assert_eq!(client.get(server.url(&format!("/before/{i}"))).send().await.unwrap().status(), 404);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    postgres.stop();
    for i in 0..30 {
        assert_eq!(client.get(server.url(&format!("/during/{i}"))).send().await.unwrap().status(), 404);
    }
    server.wait_for_log("audit.store-unavailable");
    let spool = server.dir.path().join("data/audit-spool.jsonl");
    // Generous: under the full suite's load each failed store attempt waits out its timeouts.
    let deadline = Instant::now() + Duration::from_secs(45);
    while std::fs::read_to_string(&spool).unwrap_or_default().matches("/during/").count() < 30 {
        assert!(Instant::now() < deadline, "the events were not spooled:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    postgres.resume();
    server.wait_for_log("audit.store-recovered");

    use sqlx::Connection as _;
    let mut db = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    let count = |prefix: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM audit_events WHERE action = 'request.not-found' AND path LIKE $1",
        )
        .bind(format!("{prefix}%"))
    };
    assert_eq!(count("/before/").fetch_one(&mut db).await.unwrap(), 20);
    assert_eq!(count("/during/").fetch_one(&mut db).await.unwrap(), 30, "nothing lost while the store was down");
    let down: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'audit.store-unavailable'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(down, 1, "the outage itself is on record");
    assert!(!spool.exists() || std::fs::read_to_string(&spool).unwrap().is_empty(), "the spool was emptied");
}

#[tokio::test]
async fn an_alert_rule_posts_its_webhook() {
    let receiver = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[alert]]\nname = \"password-guessing\"\nevent = \"login.failure\"\ngroup_by = \"user\"\nthreshold = 3\nwindow = \"5m\"\nwebhook_env = \"ALERT_URL\"\n"
    );
    let hook = format!("{}/hooks/secret-path", receiver.url());
    let server = Portcullis::start(&config, &[("ALERT_URL", &hook)]);
    add_user(&server, "alice", &["user"]);
    for _ in 0..4 {
        assert_eq!(login_as(&server, "alice", "wrong password").await.status(), 401);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.requests().is_empty() {
        assert!(Instant::now() < deadline, "no webhook:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = receiver.requests();
    assert_eq!(posts.len(), 1, "fired once, then cooling down");
    assert_eq!((posts[0].method.as_str(), posts[0].path.as_str()), ("POST", "/hooks/secret-path"));
    let body: Value = serde_json::from_str(&posts[0].body).unwrap();
    assert_eq!(body["alert"], "password-guessing");
    assert_eq!(body["group"], "user=alice");
    assert_eq!(body["count"], 3);
    let logs = server.wait_for_log("alert.fired");
    assert!(!logs.contains("secret-path"), "the webhook URL is never logged");
}

#[tokio::test]
async fn metrics_listener_serves_prometheus_to_allowed_peers() {
    let config = format!("{TEST_SERVER}[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let server = Portcullis::start(&config, &[]);
    server.client().get(server.url("/healthz")).send().await.unwrap();
    let line = server.wait_for_log("serving /metrics");
    let addr = line
        .lines()
        .find(|l| l.contains("serving /metrics"))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v["metrics"].as_str().map(str::to_owned))
        .unwrap();
    let plain = reqwest::Client::new();
    let scraped = plain.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(
        text.contains("portcullis_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(plain.get(format!("http://{addr}/other")).send().await.unwrap().status(), 404);
}

#[test]
fn alert_and_audit_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[audit]\nretention = \"soon\"\n[metrics]\nlisten = \"nowhere\"\n[[alert]]\nname = \"x\"\nevent = \"Login Failure\"\nthreshold = 0\nwindow = \"5m\"\ngroup_by = \"planet\"\nwebhook = \"ftp://example.com\"\n[tracing]\notlp_endpoint = \"collector:4318\"\nsample_ratio = 2.0\n",
    )
    .unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "bad.toml"], &[]);
    assert_ne!(code, 0);
    for expected in [
        "audit.retention",
        "metrics.listen",
        "`event` must be",
        "`threshold`",
        "`group_by`",
        "`webhook`",
        "tracing.otlp_endpoint",
        "tracing.sample_ratio",
    ] {
        assert!(out.contains(expected), "{expected} not reported:\n{out}");
    }
}

#[tokio::test]
async fn high_severity_events_reach_sentry_without_secrets() {
    let sentry = Upstream::start().await;
    let dsn = format!("http://0123456789abcdef@{}/42", sentry.addr);
    let server = Portcullis::start(TEST_SERVER, &[("PORTCULLIS_SENTRY_DSN", &dsn)]);
    let refused = server
        .client()
        .get(server.url("/a%2Fadmin?api_key=QuErYsEcReT"))
        .header("authorization", "Bearer SeCrEtBeArErToKeN")
        .header("cookie", "sid=SeCrEtCoOkIe")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // A low-severity event is not sent.
    assert_eq!(server.client().get(server.url("/nothing")).send().await.unwrap().status(), 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sentry.requests().is_empty() {
        assert!(Instant::now() < deadline, "nothing reached Sentry:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = sentry.requests();
    assert_eq!(posts.len(), 1, "only the high-severity event");
    assert_eq!(posts[0].path, "/api/42/envelope/");
    assert!(posts[0].header("x-sentry-auth").is_some_and(|a| a.contains("sentry_key=0123456789abcdef")));
    let body = &posts[0].body;
    assert!(body.contains("request.bad-path"), "{body}");
    for secret in ["QuErYsEcReT", "SeCrEtBeArErToKeN", "SeCrEtCoOkIe"] {
        assert!(!body.contains(secret), "{secret} reached Sentry");
    }
    assert!(!server.logs().contains("0123456789abcdef"), "the DSN is never logged");
}

type OtlpSpan = opentelemetry_proto::tonic::trace::v1::Span;

/// The spans in the OTLP/HTTP batches `receiver` got, waiting until they
/// include a span named `name` and, if given, one answered `status`.
async fn exported_spans(receiver: &Upstream, name: &str, status: Option<&str>) -> Vec<OtlpSpan> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut spans = Vec::new();
        for post in receiver.requests() {
            assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", "/v1/traces"));
            assert_eq!(post.header("content-type"), Some("application/x-protobuf"));
            let batch = ExportTraceServiceRequest::decode(post.raw.clone()).unwrap();
            for resource in batch.resource_spans {
                let service = resource.resource.unwrap().attributes.into_iter().find(|a| a.key == "service.name");
                assert_eq!(format!("{:?}", service.unwrap().value.unwrap().value.unwrap()), "StringValue(\"edge\")");
                spans.extend(resource.scope_spans.into_iter().flat_map(|s| s.spans));
            }
        }
        if spans.iter().any(|s| s.name == name)
            && status.is_none_or(|status| {
                spans.iter().any(|s| attribute(s, "http.response.status_code").as_deref() == Some(status))
            })
        {
            return spans;
        }
        assert!(Instant::now() < deadline, "no span {name} exported: {spans:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn attribute(span: &OtlpSpan, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()?.value).map(|v| match v {
        V::StringValue(s) => s,
        V::IntValue(n) => n.to_string(),
        other => format!("{other:?}"),
    })
}

/// A span's id as the lowercase hex a `traceparent` header carries.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn traced_server(collector: &Upstream, upstream: &Upstream, accept_traceparent: bool) -> Portcullis {
    let config = format!(
        "{TEST_SERVER}[tracing]\notlp_endpoint = \"{}/v1/traces\"\nservice_name = \"edge\"\naccept_traceparent = {accept_traceparent}\n\n[[route]]\npath = \"/api/{{*rest}}\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n",
        collector.url(),
        upstream.url()
    );
    // Batches every 200 ms instead of every 5 s (the SDK's standard variable).
    Portcullis::start(&config, &[("OTEL_BSP_SCHEDULE_DELAY", "200")])
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn requests_are_traced_over_otlp_and_the_trace_continues_upstream() {
    let collector = Upstream::start().await;
    let upstream = Upstream::start().await;
    let server = traced_server(&collector, &upstream, false);
    let answered = server
        .client()
        .get(server.url("/api/items?api_key=QuErYsEcReT"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-01"))
        .header("tracestate", "vendor=SeCrEtStAtE")
        .header("authorization", "Bearer SeCrEtBeArErToKeN")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(server.client().get(server.url("/nothing")).send().await.unwrap().status(), 404);

    let spans = exported_spans(&collector, "GET /api/{*rest}", Some("404")).await;
    let server_span = spans.iter().find(|s| s.name == "GET /api/{*rest}").unwrap();
    assert_eq!(server_span.kind, 2, "SPAN_KIND_SERVER");
    assert!(server_span.parent_span_id.is_empty(), "a client's traceparent starts no trace by default");
    assert_ne!(hex(&server_span.trace_id), CLIENT_TRACE);
    assert_eq!(attribute(server_span, "http.route").as_deref(), Some("/api/{*rest}"));
    assert_eq!(attribute(server_span, "url.path").as_deref(), Some("/api/items"));
    assert_eq!(attribute(server_span, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attribute(server_span, "client.address").as_deref(), Some("127.0.0.1"));

    let client_span = spans.iter().find(|s| s.name == "GET upstream").unwrap();
    assert_eq!(client_span.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(client_span.trace_id, server_span.trace_id);
    assert_eq!(client_span.parent_span_id, server_span.span_id);
    assert_eq!(attribute(client_span, "http.response.status_code").as_deref(), Some("200"));

    // The upstream continues the trace from the client span.
    let seen = upstream.last();
    let expected = format!("00-{}-{}-01", hex(&client_span.trace_id), hex(&client_span.span_id));
    assert_eq!(seen.header("traceparent"), Some(expected.as_str()));
    assert_eq!(seen.header("tracestate"), None, "the client's tracestate is not passed on");

    let refused = spans.iter().find(|s| attribute(s, "http.response.status_code").as_deref() == Some("404")).unwrap();
    assert_eq!(refused.name, "GET");
    assert_eq!(attribute(refused, "portcullis.gate").as_deref(), Some("route"));
    assert_eq!(attribute(refused, "portcullis.reason").as_deref(), Some("not-found"));

    for post in collector.requests() {
        for secret in ["QuErYsEcReT", "SeCrEtBeArErToKeN", "SeCrEtStAtE"] {
            assert!(!post.body.contains(secret), "{secret} reached the trace collector");
        }
    }
}

#[tokio::test]
async fn a_trusted_traceparent_continues_the_clients_trace() {
    let collector = Upstream::start().await;
    let upstream = Upstream::start().await;
    let server = traced_server(&collector, &upstream, true);
    let answered = server
        .client()
        .get(server.url("/api/items"))
        .header("traceparent", format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let spans = exported_spans(&collector, "GET /api/{*rest}", None).await;
    let server_span = spans.iter().find(|s| s.name == "GET /api/{*rest}").unwrap();
    assert_eq!(hex(&server_span.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&server_span.parent_span_id), "00f067aa0ba902b7");
    assert!(upstream.last().header("traceparent").is_some_and(|t| t.contains(CLIENT_TRACE)));
    // Without tracing, the client's header would pass untouched; with it, ours replaces it.
    assert!(!upstream.last().header("traceparent").unwrap().contains("00f067aa0ba902b7"));
}
