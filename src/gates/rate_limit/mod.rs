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
//! This build keeps the counters in memory ([`memory::MemoryStore`]):
//! limits hold per instance, not across a pool.
//!
//! ```
//! use portcullis::gates::rate_limit::{KeyPart, RateRule, parse_rate};
//! let (quota, window) = parse_rate("30/minute").unwrap();
//! assert_eq!((quota, window.as_secs()), (30, 60));
//! let rule = RateRule::new("30/minute", None, vec![KeyPart::User]).unwrap();
//! assert_eq!(rule.limit.burst, 30);
//! ```

pub mod gcra;
pub mod memory;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

use crate::body::Body;
use crate::error::{Reason, Rejection};
use crate::gates::authn::Principal;
use crate::proxy::forwarded::ClientInfo;
use gcra::{Limit, Outcome};
use memory::MemoryStore;

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
}

impl RateRule {
    /// `rate` like `"30/minute"`; `burst` defaults to the quota (the whole
    /// quota may be used at once, as with a fixed window).
    pub fn new(rate: &str, burst: Option<u32>, key: Vec<KeyPart>) -> Option<Self> {
        let (quota, window) = parse_rate(rate)?;
        let interval = window / quota;
        Some(Self { quota, window, limit: Limit { interval, burst: burst.unwrap_or(quota).max(1) }, key })
    }

    fn key_for<B>(&self, prefix: &str, index: usize, request: &Request<B>) -> String {
        let ip = request.extensions().get::<ClientInfo>().map_or_else(|| "-".to_owned(), |c| c.ip.to_string());
        let caller = request.extensions().get::<Principal>();
        let mut key = format!("{prefix}#{index}");
        for part in &self.key {
            key.push('|');
            match part {
                KeyPart::Ip => key.push_str(&ip),
                KeyPart::User => match caller {
                    Some(p) => key.push_str(&format!("u:{}", p.0.sub)),
                    None => key.push_str(&format!("ip:{ip}")),
                },
                KeyPart::Client => match caller.and_then(|p| p.0.client_id.as_deref()) {
                    Some(client) => key.push_str(&format!("c:{client}")),
                    None => key.push_str(&format!("ip:{ip}")),
                },
                KeyPart::Route => key.push_str("route"),
                KeyPart::Header(name) => {
                    let value = request
                        .headers()
                        .get(name)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(256).collect::<String>());
                    key.push_str(&value.unwrap_or_default());
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
    store: Arc<MemoryStore>,
}

impl RateLimitLayer {
    /// `rules` for route `route`, counted in `store`.
    pub fn new(route: &str, rules: Vec<RateRule>, store: Arc<MemoryStore>) -> Self {
        Self { route: route.into(), rules: rules.into(), store }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit { inner, layer: self.clone() }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Adds the draft standard headers for the limit closest to refusing.
fn add_headers(response: &mut Response<Body>, rules: &[RateRule], outcomes: &[Outcome]) {
    let policies: Vec<String> =
        rules.iter().enumerate().map(|(i, r)| format!("\"p{i}\";q={};w={}", r.quota, r.window.as_secs())).collect();
    if let Ok(value) = HeaderValue::from_str(&policies.join(", ")) {
        response.headers_mut().insert(RATELIMIT_POLICY.clone(), value);
    }
    if let Some((index, outcome)) = outcomes.iter().enumerate().min_by_key(|(_, o)| (o.allowed, o.remaining)) {
        let value = format!("\"p{index}\";r={};t={}", outcome.remaining, outcome.reset_after);
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(RATELIMIT.clone(), value);
        }
    }
}

impl<S> Service<Request<Body>> for RateLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let layer = &self.layer;
        let outcomes: Vec<Outcome> = layer
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| layer.store.decide(&rule.key_for(&layer.route, i, &request), &rule.limit, 1))
            .collect();
        let rules = layer.rules.clone();
        if let Some(refused) = outcomes.iter().find(|o| !o.allowed) {
            let mut response = Rejection::new(Reason::RateLimited { retry_after: refused.retry_after }).into_response();
            add_headers(&mut response, &rules, &outcomes);
            return Box::pin(std::future::ready(Ok(response)));
        }
        Box::pin(self.inner.call(request).map(move |outcome| {
            let mut response = outcome?;
            add_headers(&mut response, &rules, &outcomes);
            Ok(response)
        }))
    }
}
