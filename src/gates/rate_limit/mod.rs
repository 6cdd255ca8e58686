//! Rate limits: GCRA per route, keyed by client address, user, OAuth client,
//! route, a header, or a combination; several limits per route.
//!
//! Sits after authentication (so `user` and `client` keys know the caller;
//! an anonymous caller's `user` key falls back to its address) and before
//! authorization. Every answer on a limited route carries the IETF
//! `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers: `"name";q=quota;w=window` and
//! `"name";r=remaining;t=seconds-to-reset`, for the limit closest to
//! refusing). A refused request gets 429 with `Retry-After`, problem+json
//! and a `request.rate-limited` security event.
//!
//! Counters live in memory ([`memory::MemoryStore`], per instance) or in
//! Redis ([`redis::RedisStore`], one limit across a pool of instances); see
//! [`store`] for what happens when Redis does not answer.
//!
//! ```
//! use portcullis::gates::rate_limit::{KeyPart, RateRule, parse_rate};
//! let (quota, window) = parse_rate("30/minute").unwrap();
//! assert_eq!((quota, window.as_secs()), (30, 60));
//! let rule = RateRule::new("30/minute", None, vec![KeyPart::User]).unwrap();
//! assert_eq!(rule.limit.burst, 30);
//! ```

pub mod breaker;
pub mod gcra;
pub mod lease;
pub mod memory;
pub mod redis;
pub mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::{Body, ResponseFuture};
use crate::error::{Reason, Rejection};
use crate::gates::authn::Principal;
use crate::proxy::forwarded::ClientInfo;
use gcra::{Limit, Outcome};
use store::{Check, Decision, OnStoreError, Outcomes, RateStore};

/// One part of a limit's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address.
    Ip,
    /// The authenticated user (`sub`), else the client address.
    User,
    /// The OAuth client of a client-credentials token, else the client address.
    Client,
    /// The route (one bucket shared by every caller).
    Route,
    /// A request header's value (missing counts as one shared value).
    Header(HeaderName),
}

impl KeyPart {
    /// Parses `ip`, `user`, `client`, `route` or `header:<name>`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ip" => Some(Self::Ip),
            "user" => Some(Self::User),
            "client" => Some(Self::Client),
            "route" => Some(Self::Route),
            other => other
                .strip_prefix("header:")
                .and_then(|h| HeaderName::from_bytes(h.trim().as_bytes()).ok())
                .map(Self::Header),
        }
    }
}

/// Parses `"N/second"`, `"N/minute"`, `"N/hour"`, `"N/day"`.
pub fn parse_rate(text: &str) -> Option<(u32, Duration)> {
    let (count, unit) = text.split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let window = match unit.trim() {
        "second" | "s" => 1,
        "minute" | "m" => 60,
        "hour" | "h" => 3600,
        "day" | "d" => 86_400,
        _ => return None,
    };
    Some((count, Duration::from_secs(window)))
}

/// Which requests a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountMode {
    /// Every request that reaches the gate.
    #[default]
    All,
    /// Only requests answered with an error status (400 or above), as
    /// Flask-Limiter's `deduct_when`: for login-like routes, where only
    /// failures should use up the quota. The check before the request only
    /// looks; the count happens when the answer is known.
    Failures,
}

/// One configured limit.
#[derive(Debug, Clone)]
pub struct RateRule {
    /// The quota per window, as written.
    pub quota: u32,
    /// The window.
    pub window: Duration,
    /// The GCRA parameters.
    pub limit: Limit,
    /// What the key is made of.
    pub key: Vec<KeyPart>,
    /// What one request costs (default 1).
    pub cost: u32,
    /// Which requests are counted.
    pub count: CountMode,
    /// Callers with any of these roles are not limited.
    pub exempt_roles: Vec<String>,
    /// Clients from these networks are not limited.
    pub exempt_networks: Vec<ipnet::IpNet>,
}

impl RateRule {
    /// `rate` like `"30/minute"`; `burst` defaults to the quota (the whole
    /// quota may be used at once, as with a fixed window).
    pub fn new(rate: &str, burst: Option<u32>, key: Vec<KeyPart>) -> Option<Self> {
        let (quota, window) = parse_rate(rate)?;
        let interval = window / quota;
        Some(Self {
            quota,
            window,
            limit: Limit { interval, burst: burst.unwrap_or(quota).max(1) },
            key,
            cost: 1,
            count: CountMode::All,
            exempt_roles: Vec::new(),
            exempt_networks: Vec::new(),
        })
    }

    /// Whether the caller of `request` is exempt from this limit.
    fn exempts<B>(&self, request: &Request<B>) -> bool {
        if !self.exempt_networks.is_empty()
            && let Some(client) = request.extensions().get::<ClientInfo>()
            && self.exempt_networks.iter().any(|net| net.contains(&client.ip))
        {
            return true;
        }
        !self.exempt_roles.is_empty()
            && request
                .extensions()
                .get::<Principal>()
                .is_some_and(|p| p.0.roles.iter().any(|role| self.exempt_roles.contains(role)))
    }

    fn key_for<B>(&self, prefix: &str, index: usize, request: &Request<B>) -> String {
        use std::fmt::Write as _;
        let ip = request.extensions().get::<ClientInfo>().map(|c| c.ip);
        let caller = request.extensions().get::<Principal>();
        let mut key = String::with_capacity(prefix.len() + 48);
        // Writing to a String cannot fail.
        let _ = write!(key, "{prefix}#{index}");
        let push_ip = |key: &mut String, tag: &str| {
            key.push_str(tag);
            match ip {
                Some(ip) => crate::proxy::forwarded::push_ip(key, ip),
                None => key.push('-'),
            }
        };
        for part in &self.key {
            key.push('|');
            match part {
                KeyPart::Ip => push_ip(&mut key, ""),
                KeyPart::User => match caller {
                    Some(p) => {
                        key.push_str("u:");
                        key.push_str(&p.0.sub);
                    }
                    None => push_ip(&mut key, "ip:"),
                },
                KeyPart::Client => match caller.and_then(|p| p.0.client_id.as_deref()) {
                    Some(client) => {
                        key.push_str("c:");
                        key.push_str(client);
                    }
                    None => push_ip(&mut key, "ip:"),
                },
                KeyPart::Route => key.push_str("route"),
                KeyPart::Header(name) => {
                    if let Some(value) = request.headers().get(name) {
                        key.extend(String::from_utf8_lossy(value.as_bytes()).chars().take(256));
                    }
                }
            }
        }
        key
    }
}

/// The limits of one route and where their counters live.
#[derive(Clone)]
pub struct RateLimitLayer {
    route: Arc<str>,
    rules: Arc<[RateRule]>,
    store: RateStore,
    on_error: OnStoreError,
    /// `RateLimit-Policy` when no limit is exempt (the usual case), built once.
    full_policy: Option<HeaderValue>,
}

/// The `RateLimit-Policy` value for the limits at `indexes`.
fn policy_header(rules: &[RateRule], indexes: impl Iterator<Item = usize>) -> Option<HeaderValue> {
    let policies: Vec<String> =
        indexes.map(|i| format!("\"p{i}\";q={};w={}", rules[i].quota, rules[i].window.as_secs())).collect();
    (!policies.is_empty()).then(|| HeaderValue::from_str(&policies.join(", ")).ok()).flatten()
}

impl RateLimitLayer {
    /// `rules` for route `route`, counted in `store`; `on_error` decides
    /// when a shared store cannot answer.
    pub fn new(route: &str, rules: Vec<RateRule>, store: RateStore, on_error: OnStoreError) -> Self {
        let full_policy = policy_header(&rules, 0..rules.len());
        Self { route: route.into(), rules: rules.into(), store, on_error, full_policy }
    }

    /// The checks for `request`, with the index of the rule of each;
    /// exempt rules are left out.
    fn checks<B>(&self, request: &Request<B>) -> (Vec<usize>, Vec<Check>) {
        let mut indexes = Vec::with_capacity(self.rules.len());
        let mut checks = Vec::with_capacity(self.rules.len());
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.exempts(request) {
                continue;
            }
            indexes.push(index);
            checks.push(Check {
                key: rule.key_for(&self.route, index, request),
                limit: rule.limit,
                cost: rule.cost,
                commit: rule.count == CountMode::All,
            });
        }
        (indexes, checks)
    }

    /// Turns the store's outcomes into a refusal, or into what the answer
    /// still needs: its headers and the failure-only counts.
    #[allow(clippy::result_large_err, reason = "the answer is built only when refusing, and moved once")]
    fn admit(&self, indexes: &[usize], on_failure: Vec<Check>, outcomes: Outcomes) -> Result<Admitted, Response<Body>> {
        let metrics = crate::metrics::global();
        let Ok(outcomes) = outcomes else {
            metrics.rate_decision(self.store.backend(), "unavailable");
            return Err(Rejection::new(Reason::RateLimitUnavailable).into_response());
        };
        let policy = match indexes.len() == self.rules.len() {
            true => self.full_policy.clone(),
            false => policy_header(&self.rules, indexes.iter().copied()),
        };
        let headers = RateHeaders::new(policy, indexes, &outcomes);
        if let Some(refused) = outcomes.iter().find(|o| !o.allowed) {
            metrics.rate_decision(self.store.backend(), "limited");
            let mut response = Rejection::new(Reason::RateLimited { retry_after: refused.retry_after }).into_response();
            headers.write(&mut response);
            return Err(response);
        }
        // Admitted without the store (fail open): nothing to count later.
        metrics.rate_decision(self.store.backend(), if outcomes.is_empty() { "unchecked" } else { "allowed" });
        let on_failure = if outcomes.is_empty() { Vec::new() } else { on_failure };
        Ok(Admitted { headers, on_failure, store: self.store.clone(), on_error: self.on_error })
    }
}

/// An admitted request: what to do with its answer.
struct Admitted {
    headers: RateHeaders,
    on_failure: Vec<Check>,
    store: RateStore,
    on_error: OnStoreError,
}

impl Admitted {
    /// Counts a failed answer against failure-only limits; adds the headers.
    async fn finish(self, result: Result<Response<Body>, Infallible>) -> Result<Response<Body>, Infallible> {
        let mut response = result?;
        let failed = response.status().is_client_error() || response.status().is_server_error();
        if failed && !self.on_failure.is_empty() {
            // The outcome does not matter: the answer is already decided.
            let _ = self.store.decide(self.on_failure, self.on_error).outcomes().await;
        }
        self.headers.write(&mut response);
        Ok(response)
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit { inner, layer: Arc::new(self.clone()) }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: Arc<RateLimitLayer>,
}

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The draft standard headers: every limit's policy, and the state of the
/// limit closest to refusing.
struct RateHeaders {
    policy: Option<HeaderValue>,
    state: Option<HeaderValue>,
}

impl RateHeaders {
    fn new(policy: Option<HeaderValue>, indexes: &[usize], outcomes: &[Outcome]) -> Self {
        let state =
            indexes.iter().zip(outcomes).min_by_key(|(_, o)| (o.allowed, o.remaining)).and_then(|(i, o)| {
                HeaderValue::from_str(&format!("\"p{i}\";r={};t={}", o.remaining, o.reset_after)).ok()
            });
        Self { policy, state }
    }

    fn write(&self, response: &mut Response<Body>) {
        let headers = response.headers_mut();
        headers.remove(&RATELIMIT_POLICY);
        headers.remove(&RATELIMIT);
        if let Some(policy) = &self.policy {
            headers.insert(RATELIMIT_POLICY.clone(), policy.clone());
        }
        if let Some(state) = &self.state {
            headers.insert(RATELIMIT.clone(), state.clone());
        }
    }
}

impl<S> Service<Request<Body>> for RateLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let (indexes, checks) = self.layer.checks(&request);
        if checks.is_empty() {
            return Box::pin(self.inner.call(request));
        }
        // Failure-only limits are looked at now and counted with the answer.
        let on_failure: Vec<Check> =
            checks.iter().filter(|c| !c.commit).map(|c| Check { commit: true, ..c.clone() }).collect();
        match self.layer.store.decide(checks, self.layer.on_error) {
            Decision::Ready(outcomes) => match self.layer.admit(&indexes, on_failure, outcomes) {
                Err(refusal) => Box::pin(std::future::ready(Ok(refusal))),
                Ok(admitted) => Box::pin(self.inner.call(request).then(|result| admitted.finish(result))),
            },
            Decision::Pending(decided) => {
                // The inner service is called later: take the one that is ready.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let layer = self.layer.clone();
                Box::pin(decided.then(move |outcomes| match layer.admit(&indexes, on_failure, outcomes) {
                    Err(refusal) => Either::Left(std::future::ready(Ok(refusal))),
                    Ok(admitted) => Either::Right(inner.call(request).then(|result| admitted.finish(result))),
                }))
            }
        }
    }
}
