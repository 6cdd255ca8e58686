//! The endpoints Portcullis answers itself: identity (`/auth/*`), OAuth 2.0
//! (`/oauth/*`), discovery (`/.well-known/*`) and health (`/healthz`,
//! `/readyz`).
//!
//! They sit behind the same shared gates as proxied routes (context,
//! headers, limits, canonical path) and get a 64 KiB body limit. Refusals
//! are [`Rejection`]s, rendered as problem+json by the context gate, except
//! on `/oauth/*`, which answers in RFC 6749's JSON error format.

mod admin;
mod auth;
mod health;
pub mod metrics;
mod oauth;
mod sessions;
mod wellknown;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, header};
use serde::de::DeserializeOwned;

use crate::audit::{self, EventContext, SecurityEvent};
use crate::body::Body;
use crate::error::{Reason, Rejection};
use crate::gates::context::RequestId;
use crate::identity::Identity;
use crate::proxy::forwarded::ClientInfo;
use crate::stack::Shared;

/// The built-in paths and their methods (the route table refuses others with 405).
pub const BUILTIN_ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET", "HEAD"]),
    ("/readyz", &["GET", "HEAD"]),
    ("/auth/login", &["POST"]),
    ("/auth/refresh", &["POST"]),
    ("/auth/logout", &["POST"]),
    ("/auth/me", &["GET", "HEAD"]),
    ("/auth/register", &["POST"]),
    ("/auth/csrf", &["GET", "HEAD"]),
    ("/auth/sessions", &["GET", "HEAD"]),
    ("/auth/sessions/revoke", &["POST"]),
    ("/oauth/token", &["POST"]),
    ("/oauth/introspect", &["POST"]),
    ("/oauth/revoke", &["POST"]),
    ("/.well-known/jwks.json", &["GET", "HEAD"]),
    ("/.well-known/openid-configuration", &["GET", "HEAD"]),
    ("/metrics", &["GET", "HEAD"]),
    ("/openapi.json", &["GET", "HEAD"]),
];

/// Everything under this prefix (and `/admin` itself) is the admin panel
/// and its API, routed by [`admin`].
pub const ADMIN_PREFIX: &str = "/admin/";

/// Endpoints where credentials are tried: `[login] rate_limit` applies.
pub const CREDENTIAL_ENDPOINTS: &[&str] = &["/auth/login", "/auth/register", "/oauth/token", "/admin/login"];

/// Sends requests for `paths` to one service and the rest to another.
#[derive(Clone)]
pub struct ByPath<S> {
    paths: &'static [&'static str],
    matching: S,
    other: S,
}

impl<S> ByPath<S> {
    /// `matching` for `paths`, `other` for everything else.
    pub fn new(paths: &'static [&'static str], matching: S, other: S) -> Self {
        Self { paths, matching, other }
    }
}

impl<S> tower::Service<http::Request<Body>> for ByPath<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Both inner services are always ready (boxed routers and limits).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if self.paths.contains(&request.uri().path()) { self.matching.call(request) } else { self.other.call(request) }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub(crate) struct Api {
    identity: Arc<Identity>,
    shared: Shared,
}

/// The router of every built-in endpoint.
pub fn router(shared: &Shared) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/register", post(auth::register))
        .route("/auth/csrf", get(sessions::csrf_token))
        .route("/auth/sessions", get(sessions::list))
        .route("/auth/sessions/revoke", post(sessions::revoke))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route("/.well-known/openid-configuration", get(wellknown::openid_configuration))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi))
        .merge(admin::router())
        .fallback(|| async { refuse(Reason::NotFound) })
        .with_state(Api { identity: shared.identity.clone(), shared: shared.clone() })
}

/// `GET /openapi.json`: the OpenAPI 3.1 description of these endpoints.
async fn openapi() -> Response {
    let mut response = include_str!("openapi.json").into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A refusal as an axum response (rendered by the context gate).
fn refuse(reason: Reason) -> Response {
    Rejection::new(reason).into_response().map(axum::body::Body::new)
}

/// Who is asking: request id and client address, for security events.
pub(crate) struct Caller {
    request_id: String,
    pub(crate) client_ip: Option<IpAddr>,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            request_id: parts.extensions.get::<RequestId>().map(|r| r.as_str().to_owned()).unwrap_or_default(),
            client_ip: parts.extensions.get::<ClientInfo>().map(|c| c.ip),
            path: parts.uri.path().to_owned(),
        })
    }
}

impl Caller {
    /// Writes `event` about `subject` to the audit log.
    fn emit(&self, event: &SecurityEvent, subject: Option<&str>) {
        audit::emit(
            event,
            &EventContext {
                request_id: &self.request_id,
                client_ip: self.client_ip,
                method: "POST",
                path: &self.path,
                route: None,
                subject,
            },
        );
    }
}

/// Parses a JSON body into `T` (unknown fields refused by `T`), or the refusal.
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(refuse(Reason::UnsupportedMediaType { expected: "application/json" }));
    }
    serde_json::from_slice(body).map_err(|e| {
        let detail = match e.classify() {
            serde_json::error::Category::Data => {
                "The JSON body is missing a field, has an unknown one, or a wrong type."
            }
            _ => "The body is not valid JSON.",
        };
        refuse(Reason::BadRequest { detail: format!("{detail} (line {}, column {})", e.line(), e.column()) })
    })
}

/// A JSON answer that must never be cached (it carries tokens).
fn no_store_json(status: http::StatusCode, value: &serde_json::Value) -> Response {
    let mut response = (status, axum::Json(value)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The bearer token of a request, if it has exactly one well-formed one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token.trim())
}

/// Converts the axum router into the gateway's body type, reading request
/// bodies first so that a body over the limit or too slow is refused as a
/// problem (413, 408) before any handler runs.
pub fn into_route_service(router: Router) -> crate::gates::route::RouteService {
    tower::util::BoxCloneSyncService::new(BufferedBody {
        inner: tower::ServiceBuilder::new().map_response(|r: Response| r.map(crate::body::boxed)).service(router),
    })
}

/// Reads the whole (already size- and time-limited) body before the handler.
#[derive(Clone)]
struct BufferedBody<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for BufferedBody<S>
where
    S: tower::Service<
            http::Request<axum::body::Body>,
            Response = http::Response<Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        use http_body_util::BodyExt as _;
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let reason = if crate::body::find_cause::<crate::body::BodyTooLarge>(error.as_ref()).is_some() {
                        Reason::PayloadTooLarge { limit: crate::stack::BUILTIN_MAX_BODY }
                    } else if crate::body::find_cause::<crate::body::BodyTimedOut>(error.as_ref()).is_some() {
                        Reason::RequestTimeout
                    } else {
                        Reason::BadRequest { detail: "The request body could not be read.".into() }
                    };
                    return Ok(Rejection::new(reason).into_response());
                }
            };
            inner.call(http::Request::from_parts(parts, axum::body::Body::from(bytes))).await
        })
    }
}
