//! Criterion benchmarks of the functions every request or login runs:
//! access-token verification per algorithm, path normalization, route
//! matching, a rate-limit decision in memory, JSON body parsing and schema
//! validation, security-header writing, and one Argon2id password hash at
//! the OWASP parameters.
//!
//!     cargo bench --bench hot_paths
//!
//! Results and the machine are recorded in docs/benchmarks.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::config::Config;
use portcullis::config::secrets::{Environment, Secret};
use portcullis::gates::headers::HeaderPolicy;
use portcullis::gates::path::normalize;
use portcullis::gates::rate_limit::gcra::Limit;
use portcullis::gates::rate_limit::memory::MemoryStore;
use portcullis::gates::route::RouteTable;
use portcullis::gates::validate::json::{self, BodyLimits};
use portcullis::gates::validate::schema::{Dialect, Schema};
use portcullis::identity::keys::{Keys, SigningAlgorithm};
use portcullis::identity::password::PasswordHasher;
use portcullis::identity::tokens::{AccessClaims, TokenRules, sign, verify};

fn claims() -> AccessClaims {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    AccessClaims {
        iss: "https://gw.bench".into(),
        aud: "portcullis".into(),
        sub: "01a23385-f19e-770b-bdf0-775f94f34111".into(),
        exp: now + 3600,
        iat: now,
        nbf: now,
        jti: "5a1c9a4e-2c5d-4a57-9a1b-6f1f3c0e2d11".into(),
        roles: vec!["user".into()],
        scope: "orders:read".into(),
        auth_time: now,
        client_id: None,
        username: Some("alice".into()),
    }
}

fn token_verification(c: &mut Criterion) {
    let rules =
        TokenRules { issuer: "https://gw.bench".into(), audience: "portcullis".into(), leeway: 30, max_size: 8192 };
    let mut group = c.benchmark_group("token_verify");
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256, SigningAlgorithm::HS256] {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load(&Environment::default(), dir.path(), alg, Duration::from_secs(60)).unwrap();
        let ring = keys.ring();
        let token = sign(&ring, &claims()).unwrap();
        group.bench_function(format!("{alg:?}"), |b| b.iter(|| verify(&ring, &rules, black_box(&token)).unwrap()));
    }
    group.finish();
}

fn path_and_route(c: &mut Criterion) {
    c.bench_function("path_normalize/plain", |b| {
        b.iter(|| normalize(black_box("/api/v1/orders/12345/items")).unwrap())
    });
    c.bench_function("path_normalize/tricky", |b| {
        b.iter(|| normalize(black_box("//api/./v1/../v1/%6frders/12345/")).unwrap())
    });
    let mut toml = String::new();
    for i in 0..50 {
        toml.push_str(&format!(
            "[[route]]\npath = \"/service{i}/{{id}}/items\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:9\"\n"
        ));
    }
    let config = Config::from_text("bench", &toml, &Environment::default()).unwrap();
    let table = RouteTable::new(&config.routes).unwrap();
    c.bench_function("route_match/50_routes", |b| {
        b.iter(|| table.find(black_box(&http::Method::GET), black_box("/service37/12345/items")))
    });
}

fn rate_limit_decision(c: &mut Criterion) {
    let store = MemoryStore::new(100_000);
    let limit = Limit { interval: Duration::from_micros(1), burst: 1_000_000 };
    c.bench_function("rate_limit/memory_one_key", |b| {
        b.iter(|| store.decide(black_box("/items/{id}#0|203.0.113.7"), &limit, 1, true))
    });
    let keys: Vec<String> = (0..50_000).map(|i| format!("/items/{{id}}#0|10.0.{}.{}", i / 256, i % 256)).collect();
    let mut next = keys.iter().cycle();
    c.bench_function("rate_limit/memory_50k_keys", |b| {
        b.iter(|| store.decide(black_box(next.next().unwrap()), &limit, 1, true))
    });
}

fn validation(c: &mut Criterion) {
    let schema = serde_json::json!({
        "type": "object",
        "required": ["name", "price", "lines"],
        "properties": {
            "name": {"type": "string", "maxLength": 80},
            "price": {"type": "number", "minimum": 0},
            "note": {"type": ["string", "null"]},
            "lines": {"type": "array", "maxItems": 50, "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}, "qty": {"type": "integer", "minimum": 1}}
            }}
        }
    });
    let schema = Schema::compile(&schema, Dialect::Draft202012, true).unwrap();
    let lines: Vec<serde_json::Value> =
        (0..33).map(|i| serde_json::json!({"sku": format!("ABC-{i:04}"), "qty": i + 1})).collect();
    let body = serde_json::json!({"name": "blue widget 001", "price": 12.5, "note": null, "lines": lines}).to_string();
    assert!((900..1200).contains(&body.len()), "about 1 KiB: {}", body.len());
    let limits = BodyLimits::default();
    c.bench_function("validate/parse_1KiB", |b| b.iter(|| json::parse(black_box(body.as_bytes()), &limits).unwrap()));
    let value = json::parse(body.as_bytes(), &limits).unwrap();
    c.bench_function("validate/schema_1KiB", |b| b.iter(|| assert!(schema.is_valid(black_box(&value)))));
    let small = br#"{"name":"blue widget 001","price":12.50}"#;
    let item = Schema::compile(
        &serde_json::json!({"type": "object", "required": ["name", "price"], "properties": {"name": {"type": "string"}, "price": {"type": "number"}}}),
        Dialect::Draft202012,
        true,
    )
    .unwrap();
    c.bench_function("validate/parse_and_schema_40B", |b| {
        b.iter(|| assert!(item.is_valid(&json::parse(black_box(small), &limits).unwrap())))
    });
}

fn password_hash(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hasher = PasswordHasher::new(1).unwrap();
    let password = Secret::new("correct horse battery staple");
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.bench_function("argon2id_owasp_hash", |b| b.iter(|| runtime.block_on(hasher.hash(&password)).unwrap()));
    group.finish();
}

/// The default security headers written onto an upstream answer carrying
/// its own `Server` and `Content-Type` (what every response gets).
fn header_writing(c: &mut Criterion) {
    let policy = HeaderPolicy::default();
    let mut upstream = http::HeaderMap::new();
    upstream.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    upstream.insert(http::header::SERVER, http::HeaderValue::from_static("gunicorn"));
    upstream.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from_static("50"));
    c.bench_function("headers/security_defaults", |b| {
        b.iter(|| {
            let mut headers = upstream.clone();
            policy.apply(black_box(&mut headers), true);
            headers
        })
    });
}

criterion_group!(
    benches,
    token_verification,
    path_and_route,
    rate_limit_decision,
    validation,
    header_writing,
    password_hash
);
criterion_main!(benches);
