//! The outermost gate: request id, client address, overall time limit,
//! problem+json rendering of every refusal, security events and the access
//! log.
//!
//! - Request id: a well-formed incoming `X-Request-Id` (1–128 characters of
//!   `A-Z a-z 0-9 - _ . :`) is kept, otherwise a new UUID-shaped id is made;
//!   it is sent upstream, echoed in the response and in every problem body.
//! - Client address: see [`crate::proxy::forwarded`].
//! - Time limit: a request not answered within `limits.request_timeout` gets 408.
//! - Refusals: a response carrying a [`Rejection`] gets its RFC 9457 body here
//!   and one [`SecurityEvent`], so every gate refuses the same way.
//! - Access log: one line per request on the `access` target when the
//!   response body ends: method, canonical path, route, status, duration,
//!   bytes, client address, request id.
//! - Traces: the request's server span, when traces are on ([`crate::traces`]).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderName, HeaderValue, Request, Response, header};
use http_body::Frame;
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::audit::{self, EventContext, SecurityEvent};
use crate::body::{Body, BoxError, full};
use crate::error::{Reason, Rejection};
use crate::gates::authn::Principal;
use crate::gates::path::CanonicalPath;
use crate::gates::route::MatchedRoute;
use crate::proxy::forwarded::{ClientInfo, client_info};
use crate::traces::RequestTrace;

/// `X-Request-Id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The connection a request arrived on, inserted by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The request id, in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }
}

/// A new request id: a random per-process prefix and a counter, formatted
/// like a UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`). Unique across
/// instances with overwhelming probability, and free of system calls.
fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 8-4-4 hex digits of the prefix, then 4-12 of the counter.
    let mut id = [b'-'; 36];
    let mut write_hex = |at: usize, digits: usize, value: u64| {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in 0..digits {
            id[at + i] = HEX[((value >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
    };
    write_hex(0, 8, prefix >> 32);
    write_hex(9, 4, (prefix >> 16) & 0xffff);
    write_hex(14, 4, prefix & 0xffff);
    write_hex(19, 4, (n >> 48) & 0xffff);
    write_hex(24, 12, n & 0xffff_ffff_ffff);
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("-"))
}

fn well_formed_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Builds [`Context`] services.
#[derive(Debug, Clone)]
pub struct ContextLayer {
    trusted_proxies: Arc<[IpNet]>,
    request_timeout: Duration,
}

impl ContextLayer {
    /// A layer trusting forwarding headers from `trusted_proxies` and
    /// answering 408 after `request_timeout`.
    pub fn new(trusted_proxies: Arc<[IpNet]>, request_timeout: Duration) -> Self {
        Self { trusted_proxies, request_timeout }
    }
}

impl<S> Layer<S> for ContextLayer {
    type Service = RequestContext<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestContext { inner, layer: self.clone() }
    }
}

/// The service of [`ContextLayer`].
#[derive(Debug, Clone)]
pub struct RequestContext<S> {
    inner: S,
    layer: ContextLayer,
}

impl<S> Service<Request<Body>> for RequestContext<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = crate::body::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let request_id = match request.headers().get(&X_REQUEST_ID) {
            Some(value) if well_formed_request_id(value) => value.clone(),
            _ => new_request_id(),
        };
        let connection = request.extensions().get::<ConnectionInfo>().copied();
        let client =
            connection.map(|c| client_info(c.peer.ip(), c.tls, request.headers(), &self.layer.trusted_proxies));
        if let Some(client) = client {
            request.extensions_mut().insert(client);
        }
        // The upstream sees the same id as the client and the logs.
        request.headers_mut().insert(X_REQUEST_ID.clone(), request_id.clone());
        request.extensions_mut().insert(RequestId(request_id.clone()));
        let trace = RequestTrace::start(
            request.method().as_str(),
            request.uri().path(),
            request.headers(),
            client.map(|c| c.ip),
        );
        if let Some(trace) = &trace {
            request.extensions_mut().insert(trace.clone());
        }
        let summary = RequestSummary {
            trace,
            request_id,
            method: request.method().clone(),
            uri: request.uri().clone(),
            client_ip: client.map(|c: ClientInfo| c.ip),
            started,
        };
        let future = tokio::time::timeout(self.layer.request_timeout, self.inner.call(request));
        Box::pin(future.map(move |outcome| {
            let response = match outcome {
                Ok(Ok(response)) => response,
                Err(_) => Rejection::new(Reason::RequestTimeout).into_response(),
            };
            Ok(summary.finish(response))
        }))
    }
}

/// What the access log and events need about a request.
struct RequestSummary {
    trace: Option<RequestTrace>,
    request_id: HeaderValue,
    method: http::Method,
    /// The request's URI as received (a reference count, not a copy).
    uri: http::Uri,
    client_ip: Option<IpAddr>,
    started: Instant,
}

impl RequestSummary {
    /// The path for logs and events: canonical when the path gate ran, else
    /// the raw path cut to 256 characters.
    fn path(&self, response: &Response<Body>) -> Box<str> {
        match response.extensions().get::<CanonicalPath>() {
            Some(path) => path.canonical().into(),
            None => self.uri.path().chars().take(256).collect(),
        }
    }

    fn finish(self, mut response: Response<Body>) -> Response<Body> {
        let route = response.extensions().get::<MatchedRoute>().map(|r| r.0.clone());
        let rejection = response.extensions_mut().remove::<Rejection>();
        // The access log and the span need the body's end; without them the
        // response goes out as it is.
        let logged = self.trace.is_some() || tracing::enabled!(target: "access", tracing::Level::INFO);
        let path = if logged || rejection.is_some() { self.path(&response) } else { Box::default() };
        let request_id = self.request_id.to_str().unwrap_or("-");
        let mut refused_by = None;
        if let Some(rejection) = rejection {
            let body = rejection.problem_json(request_id);
            let subject = response.extensions().get::<Principal>().map(|p| p.0.sub.clone());
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            *response.body_mut() = full(body);
            refused_by = Some((rejection.reason.gate(), rejection.reason.slug()));
            audit::emit(
                &SecurityEvent::Refused(rejection.reason),
                &EventContext {
                    request_id,
                    client_ip: self.client_ip,
                    method: self.method.as_str(),
                    path: &path,
                    route: route.as_deref(),
                    subject: subject.as_deref(),
                },
            );
        }
        response.headers_mut().insert(X_REQUEST_ID.clone(), self.request_id.clone());
        let status = response.status().as_u16();
        crate::metrics::global().request(route.as_ref(), self.method.as_str(), status, self.started.elapsed());
        if !logged {
            return response;
        }
        let (parts, body) = response.into_parts();
        let log = AccessLog {
            request_id: request_id.to_owned(),
            method: self.method,
            path,
            route,
            status,
            client_ip: self.client_ip,
            started: self.started,
            bytes: 0,
            trace: self.trace.map(|trace| (trace, refused_by)),
        };
        Response::from_parts(parts, crate::body::boxed(LoggedBody { inner: body, log }))
    }
}

/// One access log line, written when the response body is done.
struct AccessLog {
    request_id: String,
    method: http::Method,
    path: Box<str>,
    route: Option<Arc<str>>,
    status: u16,
    client_ip: Option<IpAddr>,
    started: Instant,
    bytes: u64,
    /// The request's server span and the gate and reason that refused it.
    trace: Option<(RequestTrace, Option<(&'static str, &'static str)>)>,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some((trace, refused_by)) = &self.trace {
            trace.finish(self.route.as_deref(), self.status, *refused_by, self.bytes);
        }
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let client_ip = self.client_ip.map(|ip| ip.to_string());
        tracing::info!(
            target: "access",
            access = true,
            http.request.id = %self.request_id,
            http.request.method = %self.method,
            url.path = %self.path,
            http.route = self.route.as_deref().unwrap_or(""),
            http.response.status_code = self.status,
            http.response.body.bytes = self.bytes,
            event.duration = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            client.ip = client_ip.as_deref().unwrap_or(""),
            "request"
        );
    }
}

pin_project_lite::pin_project! {
    struct LoggedBody {
        #[pin]
        inner: Body,
        log: AccessLog,
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.log.bytes += data.len() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_request_ids_are_uuid_shaped_and_distinct() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let text = id.to_str().unwrap();
            assert!(uuid::Uuid::parse_str(text).is_ok(), "{text}");
            assert!(well_formed_request_id(&id));
        }
    }

    #[test]
    fn request_ids() {
        assert!(well_formed_request_id(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!well_formed_request_id(&HeaderValue::from_static("")));
        assert!(!well_formed_request_id(&HeaderValue::from_static("a b")));
        assert!(!well_formed_request_id(&HeaderValue::from_static("<script>")));
        assert!(!well_formed_request_id(&HeaderValue::from_str(&"a".repeat(129)).unwrap()));
    }
}
