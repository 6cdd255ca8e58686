//! The one place where the gates are put in order.
//!
//! Shared gates, in request order (`ServiceBuilder` runs top to bottom):
//!
//! 1. [`ContextLayer`]: request id, client address, overall time limit,
//!    problem+json rendering, security events, access log. Outermost, so
//!    that every refusal below is rendered and logged the same way.
//! 2. [`SecurityHeadersLayer`]: response headers. Outside every gate that can
//!    refuse, so 401/404/413/502 answers carry them too.
//! 3. [`LoadShedLayer`]: 503 at once past `limits.max_in_flight` requests
//!    in progress.
//! 4. [`RequestLimitsLayer`]: URI length, header count and size, framing
//!    (smuggling) checks — before anything reads the request.
//! 5. [`PathLayer`]: the canonical path, once; every later gate sees only it.
//! 6. [`RouteDispatch`]: route match (404/405), then the route's own stack.
//!
//! Each route's stack, in request order:
//!
//! 1. CORS (when configured): answers preflights before authentication,
//!    since browsers send them without credentials.
//! 2. [`SessionLayer`] (routes that authenticate): a browser session cookie
//!    authenticates a request without `Authorization`; unsafe methods must
//!    pass the CSRF checks (403).
//! 3. [`AuthnLayer`]: the route's auth mode (deny by default).
//! 4. [`RateLimitLayer`]: the route's limits (429), after authentication so
//!    that `user` and `client` keys know the caller.
//! 5. [`AuthzLayer`]: roles, scopes, the ownership rule (403).
//! 6. [`BodyLimitLayer`]: the route's body limit, after authentication and
//!    authorization, so a caller who may not call cannot make the gateway
//!    read a body at all.
//! 7. [`ValidateLayer`] (when the route has `validate`): path, query and
//!    header schemas (400), the body's media type (415), JSON hygiene (400)
//!    and schema (422); and the response filter on the way back.
//! 8. [`Proxy`]: the upstream, with the caller's identity forwarded.
//!
//! Built-in endpoints ([`crate::api`]) sit behind the shared gates with a
//! 64 KiB body limit; they authenticate callers themselves where needed.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceBuilder};

use crate::api;
use crate::body::Body;
use crate::config::{AuthMode, Config, RouteConfig};
use crate::gates::authn::AuthnLayer;
use crate::gates::authz::AuthzLayer;
use crate::gates::context::ContextLayer;
use crate::gates::headers::{RouteHeaderPolicy, SecurityHeadersLayer};
use crate::gates::limits::{BodyLimitLayer, RequestLimitsLayer};
use crate::gates::path::PathLayer;
use crate::gates::rate_limit::RateLimitLayer;
use crate::gates::rate_limit::store::{RateStore, StoreHealth};
use crate::gates::route::{RouteDispatch, RouteEntry, RouteService, RouteTable};
use crate::gates::session::SessionLayer;
use crate::gates::shed::{InFlight, LoadShedLayer};
use crate::gates::validate::ValidateLayer;
use crate::identity::Identity;
use crate::proxy::{Proxy, ProxyTarget, UpstreamClient};
use crate::server::redirect::{RedirectToHttps, RefuseUntrustedPeer};

/// A complete, boxed service: what a listener serves.
pub type GatewayService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Wraps `inner` in the gates every response passes: context and headers.
fn outer<S>(config: &Config, inner: S) -> GatewayService
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let trusted: Arc<[ipnet::IpNet]> = config.server.trusted_proxies.clone().into();
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(ContextLayer::new(trusted, config.limits.request_timeout))
            .layer(SecurityHeadersLayer::new(config.headers.clone()))
            .service(inner),
    )
}

/// The body limit of the built-in endpoints (logins, token requests).
pub const BUILTIN_MAX_BODY: u64 = 64 << 10;

/// What every serving thread shares.
#[derive(Clone)]
pub struct Shared {
    /// Users, tokens and keys.
    pub identity: Arc<Identity>,
    /// How the rate-limit store is doing (for `/readyz`).
    pub rate_health: Arc<StoreHealth>,
    /// The requests in progress in this process (load shedding).
    pub in_flight: InFlight,
    /// The configuration (shown, secrets-free, by the admin panel).
    pub config: Arc<Config>,
}

/// The full gateway: every gate, the routes and the built-in endpoints.
/// `client` and `rate_store` belong to the calling thread.
pub fn gateway(
    config: &Config,
    shared: &Shared,
    client: &UpstreamClient,
    rate_store: &RateStore,
) -> Result<GatewayService, String> {
    let identity = &shared.identity;
    let table = Arc::new(RouteTable::new(&config.routes).map_err(|(_, message)| message)?);
    let routes = config.routes.iter().map(|route| route_entry(config, route, identity, client, rate_store)).collect();
    let endpoints = api::into_route_service(api::router(shared));
    // Credential-guessing endpoints get their own per-address limit.
    let guarded: RouteService = match config.login.rate_limit.is_empty() {
        true => endpoints.clone(),
        false => BoxCloneSyncService::new(
            RateLimitLayer::new(
                "credential-endpoints",
                config.login.rate_limit.clone(),
                rate_store.clone(),
                config.login.rate_limit_on_store_error,
            )
            .layer(endpoints.clone()),
        ),
    };
    let builtin = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(BodyLimitLayer { max_body: BUILTIN_MAX_BODY, body_timeout: config.limits.body_timeout })
            .service(api::ByPath::new(api::CREDENTIAL_ENDPOINTS, guarded, endpoints)),
    );
    let limits = RequestLimitsLayer {
        max_headers: config.limits.max_headers,
        max_header_bytes: config.limits.max_header_bytes,
        max_uri_length: config.limits.max_uri_length,
    };
    let inner = ServiceBuilder::new()
        .layer(LoadShedLayer(shared.in_flight.clone()))
        .layer(limits)
        .layer(PathLayer)
        .service(RouteDispatch::new(table, routes, builtin));
    Ok(outer(config, inner))
}

fn route_entry(
    config: &Config,
    route: &RouteConfig,
    identity: &Arc<Identity>,
    client: &UpstreamClient,
    rate_store: &RateStore,
) -> RouteEntry {
    let rate_limit = (!route.rate_limits.is_empty()).then(|| {
        RateLimitLayer::new(
            &route.pattern,
            route.rate_limits.clone(),
            rate_store.clone(),
            route.rate_limit_on_store_error,
        )
    });
    let proxy = Proxy::new(client.clone(), ProxyTarget::new(route, identity.clone()));
    let authenticated: RouteService = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(AuthnLayer::new(route.auth, route.fresh_within, identity.clone()))
            .option_layer(rate_limit)
            .layer(AuthzLayer::new(route.policy.clone()))
            .layer(BodyLimitLayer { max_body: route.max_body, body_timeout: config.limits.body_timeout })
            .option_layer(route.validation.clone().map(ValidateLayer))
            .service(proxy),
    );
    // Browser sessions (and their CSRF checks) on routes that authenticate.
    let with_sessions = match route.auth {
        AuthMode::None => authenticated,
        _ => BoxCloneSyncService::new(SessionLayer::new(identity.clone()).layer(authenticated)),
    };
    // Each boxed layer is one more allocation per request (the route's
    // service is cloned for each): box only what is there.
    let service: RouteService = match &route.cors {
        Some(cors) => BoxCloneSyncService::new(cors.layer(&route.methods).layer(with_sessions)),
        None => with_sessions,
    };
    RouteEntry { service, headers: RouteHeaderPolicy(route.headers.clone()) }
}

/// What the plain-HTTP listener serves when it only redirects to the HTTPS
/// listener on `https_port`.
pub fn redirect(config: &Config, https_port: u16) -> GatewayService {
    outer(config, RedirectToHttps::new(config.server.public_url.clone(), https_port))
}

/// What a behind-proxy HTTP listener serves to peers that are not trusted proxies.
pub fn refuse_untrusted(config: &Config) -> GatewayService {
    outer(config, RefuseUntrustedPeer)
}
