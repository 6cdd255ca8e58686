//! Rate limits shared through a real Redis: one limit across instances,
//! failure policies through an outage, costs, failure-only counting,
//! exemptions, and load shedding.
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{PASSWORD, Portcullis, RedisServer, TEST_SERVER, Upstream, add_user, login, problem};

fn route(path: &str, upstream: &Upstream, extra: &str) -> String {
    format!(
        "[[route]]\npath = \"{path}\"\nmethods = [\"GET\"]\nupstream = \"{}\"\nauth = \"none\"\n{extra}\n",
        upstream.url()
    )
}

/// Sends `rounds` GETs of `path` to every server, all at once; their statuses.
async fn all_at_once(servers: &[Portcullis], path: &str, rounds: usize) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..rounds {
        for server in servers {
            let (client, url) = (server.client(), server.url(&format!("{path}?n={round}")));
            tasks.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
        }
    }
    tasks.join_all().await
}

#[tokio::test]
async fn three_instances_sharing_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[rate_limit]\nstore = \"{}\"\n{}",
        redis.url(),
        route("/shared", &upstream, "rate_limit = [{ rate = \"25/hour\", key = \"route\" }]")
    );
    let servers: Vec<Portcullis> = (0..3).map(|_| Portcullis::start(&config, &[])).collect();
    let statuses = all_at_once(&servers, "/shared", 20).await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(admitted, 25, "60 requests over 3 instances, one shared limit of 25: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 35);
    assert_eq!(upstream.requests().len(), 25);
    let keys = redis.command("KEYS portcullis:rl:*").unwrap();
    assert!(keys.starts_with("*1"), "one prefixed key for the route: {keys}");
    let ttl = redis.command("PTTL portcullis:rl:/shared#0|route").unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!(ttl > 0 && ttl <= 3_600_000 + 1, "keys expire when the limit is full again: {ttl}");
}

/// Polls `path` until it answers `status` (or panics after 15 s).
async fn wait_for_status(server: &Portcullis, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = server.client().get(server.url(path)).send().await.unwrap().status().as_u16();
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} still answers {got}, not {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_failure_policy_holds_through_a_redis_outage_and_recovery() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let limit = "rate_limit = [{ rate = \"3/hour\", key = \"ip\" }]";
    let config = format!(
        "{TEST_SERVER}[rate_limit]\nstore = \"{}\"\nstore_timeout = \"30ms\"\n{}{}{}",
        redis.url(),
        route("/local", &upstream, &format!("{limit}\nrate_limit_on_store_error = \"local\"")),
        route("/open", &upstream, &format!("{limit}\nrate_limit_on_store_error = \"allow\"")),
        route("/closed", &upstream, &format!("{limit}\nrate_limit_on_store_error = \"deny\"")),
    );
    let server = Portcullis::start(&config, &[]);
    let client = server.client();
    assert_eq!(client.get(server.url("/closed")).send().await.unwrap().status(), 200);
    let ready: serde_json::Value = client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["rate_limit_store"]["backend"], "redis");

    redis.stop();
    let started = Instant::now();
    let closed = client.get(server.url("/closed")).send().await.unwrap();
    assert!(closed.headers().contains_key("retry-after"));
    problem(closed, 503, "rate-limit-unavailable").await;
    for _ in 0..6 {
        assert_eq!(client.get(server.url("/open")).send().await.unwrap().status(), 200, "fail open: unlimited");
    }
    let local: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(client.get(server.url("/local")).send().await.unwrap().status().as_u16());
        }
        statuses
    };
    assert_eq!(local, [200, 200, 200, 429, 429], "the local fallback enforces the limit in memory");
    assert!(started.elapsed() < Duration::from_secs(5), "a dead Redis never stalls requests");
    let ready: serde_json::Value = client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["rate_limit_store"]["up"], false);
    server.wait_for_log("ratelimit.store-unavailable");

    redis.resume();
    // Redis is back (empty): the closed route is served again after the breaker's probe.
    wait_for_status(&server, "/closed", 200).await;
    let ready: serde_json::Value = client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    server.wait_for_log("ratelimit.store-recovered");
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test]
async fn costs_failure_counting_and_exemptions_on_both_stores() {
    let redis = RedisServer::start();
    for store in ["memory".to_owned(), redis.url()] {
        let upstream = Upstream::start().await;
        let config = format!(
            "{TEST_SERVER}[rate_limit]\nstore = \"{store}\"\n{}{}[[route]]\npath = \"/api\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n\
             rate_limit = [{{ rate = \"2/hour\", key = \"user\", exempt_roles = [\"admin\"] }}]\n",
            route("/expensive", &upstream, "rate_limit = [{ rate = \"10/hour\", cost = 4 }]"),
            route("/status/{code}", &upstream, "rate_limit = [{ rate = \"2/hour\", count = \"failures\" }]"),
            upstream.url(),
        );
        let server = Portcullis::start(&config, &[]);
        let client = server.client();
        let mut expensive = Vec::new();
        for _ in 0..3 {
            expensive.push(client.get(server.url("/expensive")).send().await.unwrap().status().as_u16());
        }
        assert_eq!(expensive, [200, 200, 429], "{store}: cost 4 of 10");

        for _ in 0..5 {
            assert_eq!(client.get(server.url("/status/200")).send().await.unwrap().status(), 200, "{store}");
        }
        assert_eq!(client.get(server.url("/status/401")).send().await.unwrap().status(), 401);
        assert_eq!(client.get(server.url("/status/500")).send().await.unwrap().status(), 500);
        let refused = client.get(server.url("/status/200")).send().await.unwrap();
        problem(refused, 429, "rate-limited").await;

        add_user(&server, "root", &["admin"]);
        add_user(&server, "joe", &[]);
        let (admin, user) = (login(&server, "root").await, login(&server, "joe").await);
        let get = |token: &str| client.get(server.url("/api")).bearer_auth(token.to_owned()).send();
        for _ in 0..4 {
            let response = get(&admin).await.unwrap();
            assert_eq!(response.status(), 200, "{store}: admins are exempt");
            assert!(!response.headers().contains_key("ratelimit"), "an exempt caller gets no limit headers");
        }
        let statuses = [
            get(&user).await.unwrap().status(),
            get(&user).await.unwrap().status(),
            get(&user).await.unwrap().status(),
        ];
        assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 429], "{store}");
    }
}

#[tokio::test]
async fn failed_logins_are_counted_per_address_across_accounts() {
    let server = Portcullis::start(
        &format!("{TEST_SERVER}[login]\nrate_limit = [{{ rate = \"3/hour\", key = \"ip\", count = \"failures\" }}]\n"),
        &[],
    );
    add_user(&server, "ann", &[]);
    let client = server.client();
    let attempt = |name: &'static str, password: &'static str| {
        client.post(server.url("/auth/login")).json(&json!({"username": name, "password": password})).send()
    };
    for _ in 0..4 {
        assert_eq!(attempt("ann", PASSWORD).await.unwrap().status(), 200, "successes are not counted");
    }
    for name in ["bob", "cid", "ann"] {
        assert_eq!(attempt(name, "wrong password!").await.unwrap().status(), 401);
    }
    let refused = attempt("ann", PASSWORD).await.unwrap();
    problem(refused, 429, "rate-limited").await;
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_with_503() {
    let upstream = Upstream::start().await;
    let config = format!("{TEST_SERVER}[limits]\nmax_in_flight = 2\n{}", route("/slow", &upstream, "rate_limit = []"));
    let server = Portcullis::start(&config, &[]);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (server.client(), server.url("/slow"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.requests().len() < 2 {
        assert!(Instant::now() < deadline, "the slow requests did not reach the upstream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let shed = server.client().get(server.url("/healthz")).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "shed at once, not queued");
    assert_eq!(shed.headers()["retry-after"], "1");
    problem(shed, 503, "overloaded").await;
    for task in slow {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(server.client().get(server.url("/healthz")).send().await.unwrap().status(), 200, "slots are freed");
    server.wait_for_log("request.overloaded");
}

/// A batch naming one key several times decides as the same calls one after
/// the other: the GCRA script keeps the key's value between its checks and
/// writes it once.
#[tokio::test]
async fn a_batch_decides_like_sequential_calls() {
    use portcullis::gates::rate_limit::redis::GCRA_SCRIPT;
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(GCRA_SCRIPT);
    // Burst 2, one per hour: of four requests of `a`, two pass; `b` is its own key;
    // the third check of `a` only looks (commit 0).
    let mut invocation = script.prepare_invoke();
    for (key, commit) in [("a", "1"), ("a", "1"), ("b", "1"), ("a", "0"), ("a", "1")] {
        invocation.key(key).arg(3_600_000_000u64).arg(2).arg(1).arg(commit).arg(0);
    }
    let numbers: Vec<i64> = invocation.invoke_async(&mut connection).await.unwrap();
    let admitted: Vec<i64> = numbers.chunks(5).map(|n| n[0]).collect();
    assert_eq!(admitted, [1, 1, 1, 0, 0]);
    let remaining: Vec<i64> = numbers.chunks(5).map(|n| n[1]).collect();
    assert_eq!(remaining, [1, 0, 1, 0, 0]);
    // Stored once per key, with the final value: two intervals ahead for `a`.
    let ttl: i64 = redis::cmd("PTTL").arg("a").query_async(&mut connection).await.unwrap();
    assert!((2 * 3_600_000 - 5_000..=2 * 3_600_000 + 1).contains(&ttl), "{ttl}");
    let ttl: i64 = redis::cmd("PTTL").arg("b").query_async(&mut connection).await.unwrap();
    assert!((3_600_000 - 5_000..=3_600_000 + 1).contains(&ttl), "{ttl}");
    // A second call continues from the stored value.
    let mut again = script.prepare_invoke();
    again.key("a").arg(3_600_000_000u64).arg(2).arg(1).arg("1").arg(0);
    let numbers: Vec<i64> = again.invoke_async(&mut connection).await.unwrap();
    assert_eq!(numbers[0], 0, "a is still full");

    // Leases: a quarter of what is left at most, none near the limit; given back exactly.
    let hour = 3_600_000_000u64;
    let mut lease = script.prepare_invoke();
    lease.key("c").arg(hour).arg(100).arg(1).arg("1").arg(8);
    lease.key("d").arg(hour).arg(4).arg(1).arg("1").arg(8);
    lease.key("e").arg(hour).arg(9).arg(1).arg("1").arg(8);
    let numbers: Vec<i64> = lease.invoke_async(&mut connection).await.unwrap();
    let leased: Vec<i64> = numbers.chunks(5).map(|n| n[4]).collect();
    assert_eq!(leased, [8, 0, 2], "min(8, remaining / 4): 99 → 8, 3 → 0, 8 → 2");
    assert_eq!(numbers[1], 99, "the caller's remaining counts its leased tokens");
    let ttl: i64 = redis::cmd("PTTL").arg("c").query_async(&mut connection).await.unwrap();
    assert!((9 * 3_600_000 - 5_000..=9 * 3_600_000 + 1).contains(&ttl), "one request and 8 leased: {ttl}");
    let mut refund = script.prepare_invoke();
    refund.key("c").arg(hour).arg(100).arg(5).arg("r").arg(0);
    refund.key("e").arg(hour).arg(9).arg(3).arg("r").arg(0);
    let numbers: Vec<i64> = refund.invoke_async(&mut connection).await.unwrap();
    assert_eq!(numbers, [0; 10]);
    let ttl: i64 = redis::cmd("PTTL").arg("c").query_async(&mut connection).await.unwrap();
    assert!((4 * 3_600_000 - 5_000..=4 * 3_600_000 + 1).contains(&ttl), "five given back: {ttl}");
    let exists: i64 = redis::cmd("EXISTS").arg("e").query_async(&mut connection).await.unwrap();
    assert_eq!(exists, 0, "given back below now: the key is fully available and deleted");
}

/// How many script calls Redis has run.
fn script_calls(redis: &RedisServer) -> u64 {
    let stats = redis.command("INFO commandstats").unwrap();
    stats
        .split("cmdstat_evalsha:calls=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// With `lease`, one round trip admits many requests of one instance,
/// several leasing instances together never admit more than the limit, and
/// unused tokens are given back so the whole limit stays usable.
#[tokio::test]
async fn leased_tokens_save_round_trips_and_never_exceed_the_limit() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let config = format!(
        "{TEST_SERVER}[rate_limit]\nstore = \"{}\"\nlease = 16\n{}{}",
        redis.url(),
        route("/wide", &upstream, "rate_limit = [{ rate = \"1000/hour\", key = \"route\" }]"),
        route("/shared", &upstream, "rate_limit = [{ rate = \"25/hour\", key = \"route\" }]"),
    );
    let servers: Vec<Portcullis> = (0..3).map(|_| Portcullis::start(&config, &[])).collect();

    let client = servers[0].client();
    let before = script_calls(&redis);
    let mut remaining = Vec::new();
    for _ in 0..20 {
        let response = client.get(servers[0].url("/wide")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let state = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        let r = state.split(";r=").nth(1).and_then(|rest| rest.split(';').next()).unwrap();
        remaining.push(r.parse::<u32>().unwrap());
    }
    let calls = script_calls(&redis) - before;
    assert!(calls <= 10, "20 requests took {calls} script calls");
    assert_eq!(remaining[0], 999);
    assert!(remaining.windows(2).all(|w| w[1] < w[0]), "{remaining:?}");
    // The unused leased tokens go back: the key holds exactly the 20 requests.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ttl = redis.command("PTTL portcullis:rl:/wide#0|route").unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').parse().unwrap();
    assert!((20 * 3_600 - 10_000..=20 * 3_600 + 1).contains(&ttl), "20 intervals of 3.6 s: {ttl} ms");

    let statuses = all_at_once(&servers, "/shared", 20).await;
    let mut admitted = statuses.iter().filter(|s| **s == 200).count();
    assert!(admitted <= 25, "60 requests over 3 leasing instances, one limit of 25: {statuses:?}");
    // Once the leases are given back, what is left is admitted, and no more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = servers[1].client();
    for _ in 0..30 {
        match client.get(servers[1].url("/shared")).send().await.unwrap().status().as_u16() {
            200 => admitted += 1,
            status => {
                assert_eq!(status, 429);
                break;
            }
        }
    }
    assert_eq!(admitted, 25, "exactly the limit in all");
    assert_eq!(upstream.requests().iter().filter(|r| r.path.starts_with("/shared")).count(), 25);
}
