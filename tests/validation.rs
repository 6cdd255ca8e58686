//! Input validation against JSON Schemas and OpenAPI specs, body hygiene,
//! and response filtering, through the real binary.
use serde_json::{Value, json};

use crate::util::{Portcullis, TEST_SERVER, Upstream, add_user, login, problem, run_cli};

const ITEM_SCHEMA: &str = r#"validate.body = { type = "object", required = ["name", "price"], properties = { name = { type = "string", maxLength = 80 }, price = { type = "number", minimum = 0 }, tags = { type = "array", items = { type = "string" } } } }"#;

fn items_route(upstream: &Upstream) -> String {
    format!(
        "{TEST_SERVER}[[route]]\npath = \"/items\"\nmethods = [\"POST\"]\nupstream = \"{}\"\nauth = \"none\"\nmax_body = \"2MiB\"\n{ITEM_SCHEMA}\n",
        upstream.url()
    )
}

async fn post(server: &Portcullis, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    server.client().post(server.url("/items")).header("content-type", content_type).body(body).send().await.unwrap()
}

#[tokio::test]
async fn hostile_bodies_are_refused_before_the_upstream() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&items_route(&upstream), &[]);
    let valid = r#"{"name":"blue widget 001","price":12.50}"#;
    let accepted = post(&server, "application/json; charset=utf-8", valid).await;
    assert_eq!(accepted.status(), 201);
    assert_eq!(upstream.last().body_len, valid.len(), "the upstream gets the bytes as sent");

    problem(post(&server, "text/plain", valid).await, 415, "unsupported-media-type").await;
    problem(post(&server, "application/json; charset=latin1", valid).await, 415, "unsupported-media-type").await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (br#"{"name": "x", "price": }"#.to_vec(), "expected value at line 1, column 24"),
        (format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), "nested deeper than 32 levels"),
        (format!(r#"{{"name": "{}", "price": 1}}"#, "x".repeat(1 << 20)).into_bytes(), "longer than 65536 characters"),
        (br#"{"name": "a", "price": 1, "price": 0.01}"#.to_vec(), "duplicate object key"),
        (format!(r#"{{"name": "a", "price": 1{}}}"#, "0".repeat(500)).into_bytes(), "out of range"),
        (b"{\"name\": \"\xc3\x28\", \"price\": 1}".to_vec(), "invalid unicode"),
    ];
    for (body, expected) in cases {
        let refused = problem(post(&server, "application/json", body).await, 400, "malformed-json").await;
        let detail = refused["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{detail} should mention {expected}");
    }
    assert_eq!(upstream.requests().len(), 1, "nothing malformed reached the upstream");
}

#[tokio::test]
async fn schema_errors_name_pointer_and_rule_without_echoing_input() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&items_route(&upstream), &[]);
    let body = json!({"name": "<script>alert(1)</script>", "price": -5, "is_admin": true, "tags": [1]});
    let refused = problem(post(&server, "application/json", body.to_string()).await, 422, "invalid-body").await;
    let errors: Vec<(String, String)> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["pointer"].as_str().unwrap().to_owned(), e["rule"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        errors,
        [
            ("".into(), "unevaluatedProperties".into()),
            ("/price".into(), "minimum".into()),
            ("/tags/0".into(), "type".into())
        ]
    );
    let text = refused.to_string();
    assert!(!text.contains("script") && !text.contains("is_admin"), "input is never echoed: {text}");
    let missing = problem(post(&server, "application/json", "{}").await, 422, "invalid-body").await;
    assert_eq!(missing["errors"][0]["message"], "`name` is required");
    let empty = problem(post(&server, "application/json", "").await, 422, "invalid-body").await;
    assert_eq!(empty["errors"][0]["message"], "a JSON body is required");
    assert_eq!(upstream.requests().len(), 0);
    let logs = server.wait_for_log("request.invalid-body");
    assert!(logs.contains("/price minimum"), "the event names pointer and rule");
    assert!(!logs.contains("alert(1)"), "the log never holds the input");
}

#[tokio::test]
async fn parameters_are_checked_and_injection_refused() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/users/{{id}}\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n\
         validate.path = {{ properties = {{ id = {{ type = \"string\", pattern = \"^[0-9]{{1,9}}$\" }} }} }}\n\
         validate.query = {{ properties = {{ limit = {{ type = \"integer\", minimum = 1, maximum = 100 }}, sort = {{ type = \"array\", items = {{ enum = [\"name\", \"date\"] }} }} }} }}\n\
         validate.headers = {{ required = [\"x-api-version\"], properties = {{ x-api-version = {{ enum = [\"1\", \"2\"] }} }} }}\n",
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let get = |path: &str, version: Option<&str>| {
        let mut request = server.client().get(server.url(path));
        if let Some(version) = version {
            request = request.header("x-api-version", version);
        }
        request.send()
    };
    let ok = get("/users/42?limit=10&sort=name&sort=date", Some("2")).await.unwrap();
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    let injected = problem(get("/users/1'%20OR%201=1%20--", Some("1")).await.unwrap(), 400, "invalid-parameters").await;
    assert_eq!(injected["errors"][0]["pointer"], "/path/id");
    assert_eq!(injected["errors"][0]["rule"], "pattern");
    for (path, pointer, rule) in [
        ("/users/1?limit=1000", "/query/limit", "maximum"),
        ("/users/1?limit=ten", "/query/limit", "type"),
        ("/users/1?limit=1&limit=2", "/query/limit", "type"),
        ("/users/1?sort=password", "/query/sort/0", "enum"),
        ("/users/1?debug=true", "/query", "unevaluatedProperties"),
    ] {
        let refused = problem(get(path, Some("1")).await.unwrap(), 400, "invalid-parameters").await;
        assert_eq!(
            (refused["errors"][0]["pointer"].as_str(), refused["errors"][0]["rule"].as_str()),
            (Some(pointer), Some(rule)),
            "{path}"
        );
    }
    let no_header = problem(get("/users/1", None).await.unwrap(), 400, "invalid-parameters").await;
    assert_eq!(no_header["errors"][0]["pointer"], "/headers");
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn redos_patterns_cannot_stall_and_bad_schemas_fail_check() {
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[[route]]\npath = \"/q\"\nmethods = [\"POST\"]\nupstream = \"{}\"\nauth = \"none\"\n\
         validate.body = {{ type = \"object\", properties = {{ s = {{ type = \"string\", pattern = \"^(a+)+$\" }} }} }}\n",
        upstream.url()
    );
    let server = Portcullis::start(&config, &[]);
    let hostile = json!({"s": format!("{}!", "a".repeat(60_000))});
    let started = std::time::Instant::now();
    let response = server.client().post(server.url("/q")).json(&hostile).send().await.unwrap();
    problem(response, 422, "invalid-body").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "a catastrophic pattern runs in linear time");

    let dir = tempfile::tempdir().unwrap();
    let bad = "[[route]]\npath = \"/q\"\nmethods = [\"POST\"]\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n\
               validate.body = { type = \"object\", properties = { p = { pattern = \"^(?=.*[0-9]).{8,}$\" } } }\n\
               validate.query = \"missing-schema.json\"\n";
    std::fs::write(dir.path().join("p.toml"), bad).unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("p.toml:6:17: error: `validate.body`: invalid schema"), "{out}");
    assert!(out.contains("linear-time engine"), "{out}");
    assert!(out.contains("p.toml:7:18: error: `validate.query`: cannot read missing-schema.json"), "{out}");
}

fn shop_config(upstream: &Upstream, extra: &str) -> String {
    let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop-openapi.yaml");
    format!(
        "{TEST_SERVER}[[openapi]]\nspec = \"{}\"\nupstream = \"{}\"\nprefix = \"/api\"\n{extra}\n\
         [openapi.operations.deleteItem]\nroles = [\"admin\"]\n",
        spec.display(),
        upstream.url()
    )
}

#[tokio::test]
async fn openapi_import_derives_routes_schemas_and_policies() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&shop_config(&upstream, "response_filter = \"remove\""), &[]);
    add_user(&server, "ann", &["user"]);
    add_user(&server, "root", &["admin"]);
    let (user, admin) = (login(&server, "ann").await, login(&server, "root").await);
    let client = server.client();

    // x-portcullis `auth: none`: anonymous; the path parameter is an integer ≥ 1.
    let item = client.get(server.url("/api/items/7")).send().await.unwrap();
    assert_eq!(item.status(), 200);
    let body: Value = item.json().await.unwrap();
    assert_eq!(body, json!({"method": "GET", "path": "/api/items/7"}), "undeclared fields were removed");
    server.wait_for_log("response.fields-removed");
    let logs = server.logs();
    assert!(logs.contains("/body_len") && logs.contains("/headers"), "the event names the removed fields");
    problem(client.get(server.url("/api/items/0")).send().await.unwrap(), 400, "invalid-parameters").await;
    let extra =
        problem(client.get(server.url("/api/items/7?debug=1")).send().await.unwrap(), 400, "invalid-parameters").await;
    assert_eq!(extra["errors"][0]["pointer"], "/query", "strict: an operation without query parameters takes none");
    assert_eq!(
        client.head(server.url("/api/items/7")).send().await.unwrap().status(),
        200,
        "HEAD answers pass the filter"
    );
    problem(client.get(server.url("/api/items/abc")).send().await.unwrap(), 400, "invalid-parameters").await;

    // Default auth is required; `limit` comes from a $ref'd parameter.
    problem(client.get(server.url("/api/items")).send().await.unwrap(), 401, "unauthenticated").await;
    let list = |query: &str| client.get(server.url(&format!("/api/items{query}"))).bearer_auth(&user).send();
    assert_eq!(list("?limit=5&q=blue").await.unwrap().status(), 200);
    problem(list("?limit=500").await.unwrap(), 400, "invalid-parameters").await;
    problem(list("?q=%3Cscript%3E").await.unwrap(), 400, "invalid-parameters").await;

    // POST needs the admin role (x-portcullis) and a NewItem body (a $ref'd requestBody).
    let create = |token: &str, body: Value| {
        client.post(server.url("/api/items")).bearer_auth(token.to_owned()).json(&body).send()
    };
    let good = json!({"name": "widget", "price": 2.5, "note": null, "tags": ["a"]});
    problem(create(&user, good.clone()).await.unwrap(), 403, "forbidden").await;
    assert_eq!(create(&admin, good).await.unwrap().status(), 201);
    let bad =
        problem(create(&admin, json!({"name": "", "price": 0, "owner_id": 1})).await.unwrap(), 422, "invalid-body")
            .await;
    let rules: Vec<&str> = bad["errors"].as_array().unwrap().iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["unevaluatedProperties", "minLength", "exclusiveMinimum"], "{bad}");

    // The operations table overrides: DELETE needs admin.
    let delete = |token: &str| client.delete(server.url("/api/items/3")).bearer_auth(token.to_owned()).send();
    problem(delete(&user).await.unwrap(), 403, "forbidden").await;
    assert_eq!(delete(&admin).await.unwrap().status(), 200);

    // Inventory: what the spec does not list does not exist.
    problem(client.get(server.url("/api/admin")).send().await.unwrap(), 404, "not-found").await;
    problem(
        client.put(server.url("/api/items/3")).bearer_auth(&admin).send().await.unwrap(),
        405,
        "method-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn response_filter_can_refuse_leaky_answers() {
    let upstream = Upstream::start().await;
    let server = Portcullis::start(&shop_config(&upstream, "response_filter = \"refuse\""), &[]);
    let refused = server.client().get(server.url("/api/items/7")).send().await.unwrap();
    problem(refused, 502, "invalid-upstream-response").await;
    assert_eq!(upstream.requests().len(), 1, "the upstream answered; its answer was withheld");
}

#[test]
fn openapi_mistakes_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "openapi: 3.1.0\npaths:\n  /a:\n    get:\n      operationId: getA\n      parameters:\n        - $ref: '#/components/parameters/Missing'\n      x-portcullis: { roles: admin }\n  /b:\n    post:\n      requestBody: { $ref: '#/components/requestBodies/Gone' }\n";
    std::fs::write(dir.path().join("spec.yaml"), spec).unwrap();
    let config = "[[openapi]]\nspec = \"spec.yaml\"\nupstream = \"http://127.0.0.1:9\"\n[openapi.operations.getB]\nroles = [\"admin\"]\n\
                  [[openapi]]\nspec = \"p.toml\"\nupstream = \"http://127.0.0.1:9\"\n";
    std::fs::write(dir.path().join("p.toml"), config).unwrap();
    let (code, out) = run_cli(dir.path(), &["check", "--config", "p.toml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("p.toml:2:8: error: GET /a: `x-portcullis`: invalid type"), "{out}");
    assert!(out.contains("POST /b: `$ref` #/components/requestBodies/Gone points nowhere in the spec"), "{out}");
    assert!(out.contains("`[openapi.operations.getB]`: the spec has no operation with this operationId"), "{out}");
    assert!(out.contains("p.toml:7:8: error: `spec`: p.toml is not valid JSON"), "{out}");
}
