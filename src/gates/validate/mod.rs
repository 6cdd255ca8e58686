//! Input validation: path parameters, query, selected headers and the JSON
//! body of a route checked against JSON Schemas before anything reaches the
//! upstream, and (opt-in) the upstream's JSON answers filtered by the
//! response schema.
//!
//! Sits last before the proxy, after the body limit: only callers who may
//! call the route make the gateway read and parse a body. Order of checks:
//!
//! 1. parameters (path, query, headers): `400 invalid-parameters`;
//! 2. `Content-Type` of a body: `415 unsupported-media-type`;
//! 3. body hygiene ([`json`]): `400 malformed-json` with line and column;
//! 4. the body schema ([`schema`]): `422 invalid-body`.
//!
//! Errors list at most ten failed rules, each with the JSON pointer of the
//! failing value and the keyword that failed; values are never echoed.
//! The upstream receives the body bytes exactly as the client sent them.
//!
//! ```
//! use portcullis::gates::validate::coerce;
//! use serde_json::json;
//! assert_eq!(coerce("42", Some(&json!({"type": "integer"}))), json!(42));
//! assert_eq!(coerce("42", Some(&json!({"type": "string"}))), json!("42"));
//! assert_eq!(coerce("x", Some(&json!({"type": "integer"}))), json!("x"), "left for the schema to refuse");
//! ```

pub mod filter;
pub mod json;
pub mod schema;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::BodyExt as _;
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::body::{Body, BodyTimedOut, BodyTooLarge, ResponseFuture, find_cause, full};
use crate::error::{Reason, Rejection};
use crate::gates::route::RouteParams;
use filter::ResponseFilter;
use json::BodyLimits;
use schema::{FieldError, MAX_ERRORS, Schema};

/// What one route checks.
#[derive(Debug, Default)]
pub struct ValidationPolicy {
    /// Schema of the path parameters, as an object.
    pub path: Option<Schema>,
    /// Schema of the query parameters, as an object.
    pub query: Option<Schema>,
    /// Schema of selected headers (lower-case names), as an object.
    pub headers: Option<Schema>,
    /// Schema of the JSON body.
    pub body: Option<Schema>,
    /// Whether POST, PUT and PATCH need a body when `body` is set.
    pub body_required: bool,
    /// Accepted media types of a body (`application/json`).
    pub content_types: Vec<String>,
    /// Shape limits of a JSON body.
    pub limits: BodyLimits,
    /// The largest body (the route's `max_body`), for 413 answers.
    pub max_body: u64,
    /// Filtering of the upstream's JSON answers.
    pub response: Option<ResponseFilter>,
}

impl ValidationPolicy {
    /// Checks path, query and headers.
    fn check_parameters<B>(&self, request: &Request<B>) -> Result<(), Reason> {
        let mut errors = Vec::new();
        if let Some(schema) = &self.path {
            let params = request.extensions().get::<RouteParams>().map(|p| p.0.as_slice()).unwrap_or_default();
            let object = object_of(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), schema);
            errors.extend(prefixed("/path", schema.errors(&object)));
        }
        if let Some(schema) = &self.query {
            let pairs: Vec<(String, String)> = match request.uri().query() {
                None => Vec::new(),
                Some(query) => serde_urlencoded::from_str(query).map_err(|_| Reason::InvalidParameters {
                    errors: vec![FieldError {
                        pointer: "/query".into(),
                        rule: "format".into(),
                        message: "the query string is not valid form encoding".into(),
                    }],
                })?,
            };
            let object = object_of(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), schema);
            errors.extend(prefixed("/query", schema.errors(&object)));
        }
        if let Some(schema) = &self.headers {
            errors.extend(prefixed("/headers", schema.errors(&headers_object(request.headers(), schema))));
        }
        if errors.is_empty() {
            return Ok(());
        }
        errors.truncate(MAX_ERRORS);
        Err(Reason::InvalidParameters { errors })
    }

    /// Whether this request's body must be read and checked.
    fn reads_body<B: http_body::Body>(&self, request: &Request<B>) -> bool {
        self.body.is_some()
            && (has_body(request) || matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH))
    }

    /// Checks the body's media type, hygiene and schema.
    fn check_body(&self, headers: &HeaderMap, method: &Method, bytes: &Bytes) -> Result<(), Reason> {
        let Some(schema) = &self.body else { return Ok(()) };
        if bytes.is_empty() {
            let required = self.body_required && matches!(*method, Method::POST | Method::PUT | Method::PATCH);
            return match required {
                true => Err(Reason::InvalidBody {
                    errors: vec![FieldError {
                        pointer: String::new(),
                        rule: "required".into(),
                        message: "a JSON body is required".into(),
                    }],
                }),
                false => Ok(()),
            };
        }
        if !self.accepts(headers) {
            return Err(Reason::UnsupportedMediaType { expected: "application/json" });
        }
        let value = json::parse(bytes, &self.limits).map_err(|e| Reason::MalformedJson { detail: e.to_string() })?;
        // The common case first: `is_valid` stops at the first failure and
        // builds no error list.
        if schema.is_valid(&value) {
            return Ok(());
        }
        Err(Reason::InvalidBody { errors: schema.errors(&value) })
    }

    fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
        let mut parts = value.split(';');
        let media = parts.next().unwrap_or_default().trim();
        // Only UTF-8 is JSON (RFC 8259); a charset parameter must say so.
        let utf8 = parts.all(|p| match p.trim().split_once('=') {
            Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
                charset.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        });
        utf8 && self.content_types.iter().any(|accepted| accepted.eq_ignore_ascii_case(media))
    }
}

fn has_body<B: http_body::Body>(request: &Request<B>) -> bool {
    !request.body().is_end_stream()
        || request.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0")
}

fn prefixed(prefix: &str, errors: Vec<FieldError>) -> impl Iterator<Item = FieldError> {
    errors.into_iter().map(move |e| FieldError { pointer: format!("{prefix}{}", e.pointer), ..e })
}

/// The schema of property `name` of an object schema.
fn property<'a>(schema: &'a Schema, name: &str) -> Option<&'a Value> {
    schema.document.get("properties").and_then(|p| p.get(name))
}

/// Name/value pairs as an object for `schema`: values coerced to the
/// property's type, repeated names as arrays.
fn object_of<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, schema: &Schema) -> Value {
    let mut object = Map::new();
    for (name, value) in pairs {
        let property = property(schema, name);
        let is_array = property.and_then(|p| p.get("type")).is_some_and(|t| t == "array");
        let item = if is_array { property.and_then(|p| p.get("items")) } else { property };
        let value = coerce(value, item);
        match object.get_mut(name) {
            Some(Value::Array(items)) if is_array => items.push(value),
            Some(existing) => {
                // A repeated name for a single value: keep both, so the schema refuses it.
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None if is_array => {
                object.insert(name.to_owned(), Value::Array(vec![value]));
            }
            None => {
                object.insert(name.to_owned(), value);
            }
        }
    }
    Value::Object(object)
}

/// The headers the schema names, as an object of strings (repeated headers as arrays).
fn headers_object(headers: &HeaderMap, schema: &Schema) -> Value {
    let Some(Value::Object(properties)) = schema.document.get("properties") else { return Value::Object(Map::new()) };
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    if let Some(Value::Array(required)) = schema.document.get("required") {
        names.extend(required.iter().filter_map(Value::as_str));
    }
    names.sort_unstable();
    names.dedup();
    let pairs: Vec<(&str, &str)> = names
        .into_iter()
        .flat_map(|name| headers.get_all(name).iter().map(move |v| (name, v.to_str().unwrap_or("\u{fffd}"))))
        .collect();
    object_of(pairs.into_iter(), schema)
}

/// A parameter's text as the JSON type its schema asks for (when it parses).
pub fn coerce(text: &str, schema: Option<&Value>) -> Value {
    let types: Vec<&str> = match schema.and_then(|s| s.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for t in types {
        let parsed = match t {
            "integer" => text.parse::<i64>().ok().map(Value::from),
            "number" => text.parse::<f64>().ok().filter(|n| n.is_finite()).and_then(|n| {
                text.parse::<i64>().map(Value::from).ok().or_else(|| serde_json::Number::from_f64(n).map(Value::Number))
            }),
            "boolean" => match text {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            "null" if text.is_empty() => Some(Value::Null),
            "string" => Some(Value::String(text.to_owned())),
            _ => None,
        };
        if let Some(value) = parsed {
            return value;
        }
    }
    Value::String(text.to_owned())
}

/// Validates requests of one route against its [`ValidationPolicy`].
#[derive(Debug, Clone)]
pub struct ValidateLayer(pub Arc<ValidationPolicy>);

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Validate { inner, policy: self.0.clone() }
    }
}

/// The service of [`ValidateLayer`].
#[derive(Debug, Clone)]
pub struct Validate<S> {
    inner: S,
    policy: Arc<ValidationPolicy>,
}

fn refuse(reason: Reason) -> Response<Body> {
    Rejection::new(reason).into_response()
}

/// Reads a (size- and time-limited) body, or the answer for why it could not be read.
async fn read_body(body: Body, max_body: u64) -> Result<Bytes, Reason> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if find_cause::<BodyTooLarge>(error.as_ref()).is_some() => {
            Err(Reason::PayloadTooLarge { limit: max_body })
        }
        Err(error) if find_cause::<BodyTimedOut>(error.as_ref()).is_some() => Err(Reason::RequestTimeout),
        Err(_) => Err(Reason::BadRequest { detail: "The request body could not be read.".into() }),
    }
}

/// The request with its body read and checked (when `reads_body`), or the
/// refusal.
async fn checked_request(
    policy: Arc<ValidationPolicy>,
    request: Request<Body>,
    reads_body: bool,
) -> Result<Request<Body>, Response<Body>> {
    if !reads_body {
        return Ok(request);
    }
    check_body(policy, request).await
}

async fn check_body(policy: Arc<ValidationPolicy>, request: Request<Body>) -> Result<Request<Body>, Response<Body>> {
    let (parts, body) = request.into_parts();
    let checked = match read_body(body, policy.max_body).await {
        Ok(bytes) => policy.check_body(&parts.headers, &parts.method, &bytes).map(|()| bytes),
        Err(reason) => Err(reason),
    };
    match checked {
        Ok(bytes) => Ok(Request::from_parts(parts, full(bytes))),
        Err(reason) => Err(refuse(reason)),
    }
}

impl<S> Service<Request<Body>> for Validate<S>
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
        let policy = self.policy.clone();
        if let Err(reason) = policy.check_parameters(&request) {
            return Box::pin(std::future::ready(Ok(refuse(reason))));
        }
        let filter = policy.response.is_some().then(|| filter::Context::of(&request));
        let reads_body = policy.reads_body(&request);
        // Refuse a body of the wrong type before reading it.
        if reads_body && has_body(&request) && !policy.accepts(request.headers()) {
            return Box::pin(std::future::ready(Ok(refuse(Reason::UnsupportedMediaType {
                expected: "application/json",
            }))));
        }
        if !reads_body && filter.is_none() {
            return Box::pin(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let checked = checked_request(policy.clone(), request, reads_body);
        Box::pin(checked.then(move |checked| match checked {
            Err(refusal) => Either::Left(std::future::ready(Ok(refusal))),
            Ok(request) => Either::Right(inner.call(request).then(move |result| match (result, filter) {
                (Ok(response), Some(context)) => Either::Left(filter::apply(policy, response, context).map(Ok)),
                (result, _) => Either::Right(std::future::ready(result)),
            })),
        }))
    }
}

/// Random JSON values, for the property tests of this module.
#[cfg(test)]
pub(crate) fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9! ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-f]{1,3}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
