//! OpenTelemetry traces (optional, `[tracing] otlp_endpoint`): one server
//! span per request and one client span per upstream call, exported over
//! OTLP/HTTP (protobuf) in batches from a background thread, and the W3C
//! `traceparent` of the upstream call sent to the upstream, so its own spans
//! join the trace.
//!
//! Off by default; when off, nothing here runs on the request path and a
//! client's `traceparent` passes to the upstream untouched. When on, the
//! client's `traceparent`/`tracestate` are replaced by Portcullis's own,
//! and continue the client's trace only with `accept_traceparent = true`
//! (an internet client could otherwise force sampling or join traces).
//!
//! Spans carry the method, route, canonical path (never the query, which may
//! hold secrets), status, client address, and the refusing gate and reason;
//! never headers, cookies or bodies.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, SpanRef, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use crate::config::TracingConfig;
use crate::proxy::UpstreamClient;

/// The installed tracer, when traces are on.
struct Installed {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    accept_traceparent: bool,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The longest one batch may take to send.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// Starts exporting spans to `config.otlp_endpoint` (once per process; does
/// nothing when traces are off). `client` sends the batches, on the runtime
/// `runtime`, which must outlive [`shutdown`].
pub fn start(config: &TracingConfig, client: UpstreamClient, runtime: tokio::runtime::Handle) -> anyhow::Result<()> {
    let Some(endpoint) = &config.otlp_endpoint else { return Ok(()) };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Exporter { client, runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.to_string())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
        .build();
    let tracer = provider.tracer("portcullis");
    let _ = INSTALLED.set(Installed { provider, tracer, accept_traceparent: config.accept_traceparent });
    tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    Ok(())
}

/// Sends the spans still queued and stops the exporter (call before exit).
pub async fn shutdown() {
    if let Some(installed) = INSTALLED.get() {
        let provider = installed.provider.clone();
        // Blocks until the export thread is done; keep it off the runtime's workers.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// The trace a request belongs to, in its extensions (only when traces are on).
#[derive(Clone, Debug)]
pub struct RequestTrace {
    context: Context,
    method: Box<str>,
}

impl RequestTrace {
    /// Starts the server span of a request (`None` when traces are off).
    pub fn start(method: &str, path: &str, headers: &HeaderMap, client_ip: Option<std::net::IpAddr>) -> Option<Self> {
        let installed = INSTALLED.get()?;
        let parent = match installed.accept_traceparent {
            true => propagator().extract(&HeaderExtractor(headers)),
            false => Context::new(),
        };
        let mut attributes = request_attributes(method, path);
        if let Some(ip) = client_ip {
            attributes.push(KeyValue::new("client.address", ip.to_string()));
        }
        let span = installed
            .tracer
            .span_builder(method.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&installed.tracer, &parent);
        Some(Self { context: parent.with_span(span), method: method.into() })
    }

    /// Ends the server span with the outcome of the request.
    pub fn finish(&self, route: Option<&str>, status: u16, refused_by: Option<(&str, &str)>, bytes: u64) {
        let span = self.context.span();
        if let Some(route) = route {
            span.update_name(format!("{} {route}", self.method));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
        record_status(&span, status);
        span.set_attribute(KeyValue::new("http.response.body.size", i64::try_from(bytes).unwrap_or(i64::MAX)));
        if let Some((gate, reason)) = refused_by {
            span.set_attribute(KeyValue::new("portcullis.gate", gate.to_owned()));
            span.set_attribute(KeyValue::new("portcullis.reason", reason.to_owned()));
        }
        span.end();
    }

    /// Starts the client span of the upstream call and writes its
    /// `traceparent` into the upstream request's headers (replacing the
    /// client's `traceparent` and `tracestate`).
    pub fn upstream(&self, method: &str, url: &http::Uri, headers: &mut HeaderMap) -> Option<UpstreamSpan> {
        let installed = INSTALLED.get()?;
        let mut attributes = request_attributes(method, url.path());
        if let Some(host) = url.host() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_u16() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = installed
            .tracer
            .span_builder(format!("{method} upstream"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&installed.tracer, &self.context);
        let context = self.context.with_span(span);
        headers.remove("traceparent");
        headers.remove("tracestate");
        propagator().inject_context(&context, &mut HeaderInjector(headers));
        if headers.get("tracestate").is_some_and(|state| state.is_empty()) {
            headers.remove("tracestate");
        }
        Some(UpstreamSpan(context))
    }
}

/// The attributes every span of an HTTP exchange starts with (the path cut
/// at 256 characters).
fn request_attributes(method: &str, path: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("http.request.method", method.to_owned()),
        KeyValue::new("url.path", path.chars().take(256).collect::<String>()),
    ]
}

/// The response status, and the span's status `Error` for a 5xx.
fn record_status(span: &SpanRef<'_>, status: u16) {
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
}

/// The client span of one upstream call.
#[derive(Debug)]
pub struct UpstreamSpan(Context);

impl UpstreamSpan {
    /// Ends the span: `status` when the upstream answered, `None` when it could not be reached.
    pub fn finish(self, status: Option<u16>) {
        let span = self.0.span();
        match status {
            Some(status) => record_status(&span, status),
            None => span.set_status(Status::error("upstream unreachable or timed out")),
        }
        span.end();
    }
}

/// Sends the exporter's requests with the gateway's own HTTP client, on the
/// main runtime (the export thread has none).
#[derive(Debug)]
struct Exporter {
    client: UpstreamClient,
    runtime: tokio::runtime::Handle,
}

impl opentelemetry_http::HttpClient for Exporter {
    // The trait is declared with `#[async_trait]`: this is its expansion.
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let request = request.map(crate::body::full);
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            // An OTLP answer is small; never hold more than 1 MiB of it.
            let body = http_body_util::Limited::new(body, 1 << 20).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let sent = self.runtime.spawn(async move {
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .map_err(|_| "the OTLP endpoint did not answer in time")?
        });
        Box::pin(async move { sent.await? })
    }
}
