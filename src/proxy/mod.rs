//! The reverse proxy: the handler at the end of a route's gates.
//!
//! Sends the request to the route's upstream over a pooled keep-alive
//! connection and streams the answer back. On the way it:
//! - builds the upstream URI from the canonical path (minus `strip_prefix`,
//!   plus the upstream's base path) and the original query;
//! - removes hop-by-hop headers and every gateway-owned identity header;
//! - sets `X-Forwarded-For/-Proto/-Host` and `Forwarded` (see [`forwarded`]);
//! - buffers bodies without `Content-Length` (chunked) up to the route's
//!   limit before sending, so an oversized upload never reaches the upstream
//!   even in part;
//! - answers 502 when the upstream cannot be reached, 504 after the route's
//!   `upstream_timeout`, 413 when a streamed body passes the limit, 408 when
//!   the body is not received within `limits.body_timeout` (both enforced by
//!   [`crate::gates::limits::BodyLimitLayer`]).

pub mod forwarded;
pub mod headers;
pub mod identity;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use crate::body::{Body, BodyTimedOut, BodyTooLarge, boxed, find_cause, full};
use crate::config::{AuthMode, ForwardIdentity, RouteConfig, Upstream};
use crate::error::{Reason, Rejection};
use crate::gates::authn::Principal;
use crate::gates::context::RequestId;
use crate::gates::path::CanonicalPath;
use crate::identity::Identity;
use crate::traces::RequestTrace;
use forwarded::{ClientInfo, set_forwarding_headers};

/// The pooled client every route shares.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the shared upstream client: keep-alive pool with idle expiry,
/// HTTPS upstreams verified against the system's root certificates.
pub fn upstream_client(idle_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_native_roots() {
        Ok(builder) => builder,
        Err(error) => {
            tracing::warn!(%error, "no system root certificates: HTTPS upstreams will fail verification");
            let roots = rustls::RootCertStore::empty();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        }
    };
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(512)
        .build(connector)
}

/// Where and how one route forwards.
#[derive(Debug, Clone)]
pub struct ProxyTarget {
    upstream: Upstream,
    forward: ForwardIdentity,
    authenticated: bool,
    identity: Arc<Identity>,
    strip_prefix: Option<String>,
    preserve_host: bool,
    upstream_timeout: Duration,
    max_body: u64,
    /// The route pattern, for metrics.
    route: Arc<str>,
    /// The `Host` the upstream gets unless `preserve_host` (made once).
    upstream_host: Option<http::HeaderValue>,
}

/// The `Host` header for `upstream`: its host, and its port unless it is
/// the scheme's default (what the client would have derived per request).
fn upstream_host(upstream: &Upstream) -> Option<http::HeaderValue> {
    let host = upstream.authority.host();
    let default_port = if upstream.scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
    let value = match upstream.authority.port_u16() {
        Some(port) if port != default_port => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    http::HeaderValue::from_str(&value).ok()
}

impl ProxyTarget {
    /// The target of `route`; `identity` signs forwarded identity tokens.
    pub fn new(route: &RouteConfig, identity: Arc<Identity>) -> Self {
        Self {
            upstream: route.upstream.clone(),
            forward: route.forward.clone(),
            authenticated: route.auth != AuthMode::None,
            identity,
            strip_prefix: route.strip_prefix.clone(),
            preserve_host: route.preserve_host,
            upstream_timeout: route.upstream_timeout,
            max_body: route.max_body,
            route: Arc::from(route.pattern.as_str()),
            upstream_host: upstream_host(&route.upstream),
        }
    }
}

/// The upstream URI for the canonical `forward_path` and original `query`.
fn upstream_uri(
    upstream: &Upstream,
    strip_prefix: Option<&str>,
    forward_path: &str,
    query: Option<&str>,
) -> Option<Uri> {
    let mut path = forward_path;
    if let Some(prefix) = strip_prefix
        && let Some(rest) = path.strip_prefix(prefix)
    {
        path = if rest.is_empty() { "/" } else { rest };
    }
    let mut target = String::with_capacity(upstream.base_path.len() + path.len() + 1 + query.map_or(0, str::len));
    target.push_str(&upstream.base_path);
    target.push_str(path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(query);
    }
    Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(PathAndQuery::try_from(target).ok()?)
        .build()
        .ok()
}
/// The proxy handler of one route (cloned per request: one reference count).
#[derive(Clone)]
pub struct Proxy(Arc<(UpstreamClient, ProxyTarget)>);

impl Proxy {
    /// A handler sending to `target` through `client`.
    pub fn new(client: UpstreamClient, target: ProxyTarget) -> Self {
        Self(Arc::new((client, target)))
    }
}

impl Service<Request<Body>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::body::ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let proxy = self.0.clone();
        Box::pin(async move {
            let (client, target) = &*proxy;
            Ok(match forward(client, target, request).await {
                Ok(response) => response,
                Err(reason) => Rejection::new(reason).into_response(),
            })
        })
    }
}

async fn forward(
    client: &UpstreamClient,
    target: &ProxyTarget,
    request: Request<Body>,
) -> Result<Response<Body>, Reason> {
    let (mut parts, body) = request.into_parts();
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.as_str().to_owned()).unwrap_or_default();
    let forward_path = parts.extensions.get::<CanonicalPath>().map(CanonicalPath::forward).ok_or(Reason::Internal)?;
    let client_host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(ToString::to_string));
    parts.uri = upstream_uri(&target.upstream, target.strip_prefix.as_deref(), &forward_path, parts.uri.query())
        .ok_or(Reason::Internal)?;
    headers::remove_hop_by_hop_and_gateway_owned(&mut parts.headers);
    // Portcullis's session cookie is never the upstream's business (on any route).
    crate::gates::session::remove_cookie(&mut parts.headers, &target.identity.sessions().cookie);
    let caller = parts.extensions.get::<Principal>().map(|p| p.0.clone());
    identity::forward(&mut parts.headers, caller.as_deref(), &target.forward, target.authenticated, &target.identity)
        .map_err(|_| Reason::Internal)?;
    if let Some(client) = parts.extensions.get::<ClientInfo>() {
        set_forwarding_headers(&mut parts.headers, client, client_host.as_deref());
    }
    let host = match client_host.as_deref().map(http::HeaderValue::from_str) {
        Some(Ok(host)) if target.preserve_host => Some(host),
        _ => target.upstream_host.clone(),
    };
    match host {
        Some(host) => {
            parts.headers.insert(header::HOST, host);
        }
        None => {
            // hyper sets Host from the upstream URI.
            parts.headers.remove(header::HOST);
        }
    }
    parts.version = Version::HTTP_11;
    let body = if parts.headers.contains_key(header::CONTENT_LENGTH) || body.is_end_stream() {
        body
    } else {
        // No declared length: read it whole (it is already limited) before
        // anything reaches the upstream.
        let collected = body
            .collect()
            .await
            .map_err(|e| {
                body_error(e.as_ref(), target.max_body)
                    .unwrap_or(Reason::AmbiguousRequest { detail: "The request body could not be read." })
            })?
            .to_bytes();
        if !collected.is_empty() {
            parts.headers.insert(header::CONTENT_LENGTH, collected.len().into());
        }
        full(collected)
    };
    // Know whether the client finished sending, to blame the right side on a timeout.
    let (body, sent) = if body.is_end_stream() {
        (body, None)
    } else {
        let sent = Arc::new(AtomicBool::new(false));
        (boxed(SentBody { inner: body, sent: sent.clone() }), Some(sent))
    };
    let span = match parts.extensions.get::<RequestTrace>() {
        Some(trace) => trace.upstream(parts.method.as_str(), &parts.uri, &mut parts.headers),
        None => None,
    };
    let upstream_request = Request::from_parts(parts, body);
    let started = std::time::Instant::now();
    let metrics = crate::metrics::global();
    let outcome = tokio::time::timeout(target.upstream_timeout, client.request(upstream_request)).await;
    if let Some(span) = span {
        span.finish(match &outcome {
            Ok(Ok(response)) => Some(response.status().as_u16()),
            _ => None,
        });
    }
    let response = match outcome {
        Err(_) if sent.is_some_and(|s| !s.load(Ordering::Relaxed)) => return Err(Reason::RequestTimeout),
        Err(_) => {
            metrics.upstream(&target.route, started.elapsed(), false);
            return Err(Reason::GatewayTimeout);
        }
        Ok(Err(error)) => {
            if let Some(reason) = body_error(&error, target.max_body) {
                return Err(reason);
            }
            metrics.upstream(&target.route, started.elapsed(), false);
            tracing::warn!(target: "portcullis::proxy", request_id, upstream = %target.upstream.authority, error = %error_chain(&error), "upstream request failed");
            return Err(Reason::BadGateway);
        }
        Ok(Ok(response)) => response,
    };
    metrics.upstream(&target.route, started.elapsed(), true);
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, boxed(body)))
}

pin_project_lite::pin_project! {
    /// A request body that records when it has been sent completely.
    struct SentBody {
        #[pin]
        inner: Body,
        sent: Arc<AtomicBool>,
    }
}

impl http_body::Body for SentBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.sent.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The refusal for a request body that failed on the gateway's own limits.
fn body_error(error: &(dyn std::error::Error + 'static), max_body: u64) -> Option<Reason> {
    if find_cause::<BodyTooLarge>(error).is_some() {
        return Some(Reason::PayloadTooLarge { limit: max_body });
    }
    find_cause::<BodyTimedOut>(error).map(|_| Reason::RequestTimeout)
}

/// An error and its sources, joined with `: ` (for logs only).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn uri(extra: &str, path: &str, query: Option<&str>) -> String {
        let toml = format!(
            "[[route]]\npath = \"/api/{{*rest}}\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:9/v1\"\n{extra}"
        );
        let config = Config::from_text("t", &toml, &Default::default()).unwrap();
        let route = &config.routes[0];
        upstream_uri(&route.upstream, route.strip_prefix.as_deref(), path, query).unwrap().to_string()
    }

    #[test]
    fn upstream_host_leaves_out_the_default_port() {
        let host = |upstream: &str| {
            let toml = format!("[[route]]\npath = \"/a\"\nmethods = [\"GET\"]\nupstream = \"{upstream}\"\n");
            let config = Config::from_text("t", &toml, &Default::default()).unwrap();
            upstream_host(&config.routes[0].upstream).unwrap()
        };
        assert_eq!(host("http://127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(host("http://api.internal:80/v1"), "api.internal");
        assert_eq!(host("https://api.internal:443"), "api.internal");
        assert_eq!(host("https://api.internal:8443"), "api.internal:8443");
        assert_eq!(host("http://[::1]:9000"), "[::1]:9000");
    }

    #[test]
    fn upstream_uri_joins_base_path_prefix_and_query() {
        assert_eq!(uri("", "/api/x", Some("a=1")), "http://127.0.0.1:9/v1/api/x?a=1");
        assert_eq!(uri("strip_prefix = \"/api\"", "/api/x/", None), "http://127.0.0.1:9/v1/x/");
        assert_eq!(uri("strip_prefix = \"/api\"", "/api", None), "http://127.0.0.1:9/v1/");
    }
}
