//! Response filtering: an upstream's JSON answer loses every property its
//! response schema does not declare, so an upstream that leaks fields
//! (password hashes, internal ids) does not leak them to clients. Each
//! filtered answer is a `response.fields-removed` security event naming the
//! removed properties by JSON pointer (never their values).
//!
//! With `refuse`, an answer with undeclared properties or breaking its
//! schema is replaced by `502 invalid-upstream-response` instead.
//!
//! Only successful (2xx), non-empty `application/json` answers to methods
//! other than `HEAD`, up to `max_bytes`, are filtered; a larger one is
//! refused (it cannot be checked). Other answers pass unchanged.
//!
//! ```
//! use portcullis::gates::validate::filter::remove_undeclared;
//! use serde_json::json;
//! let schema = json!({"type": "object", "properties": {"id": {}, "name": {}}});
//! let mut user = json!({"id": 7, "name": "ann", "password_hash": "$argon2id$..."});
//! assert_eq!(remove_undeclared(&mut user, &schema), ["/password_hash"]);
//! assert_eq!(user, json!({"id": 7, "name": "ann"}));
//! ```

use std::net::IpAddr;

use http::{HeaderValue, Response, header};
use http_body_util::BodyExt as _;
use serde_json::Value;

use super::schema::{Schema, resolve};
use crate::audit::{self, EventContext, SecurityEvent};
use crate::body::{Body, LimitedBody, boxed, full};
use crate::error::{Reason, Rejection};
use crate::gates::context::RequestId;
use crate::gates::path::CanonicalPath;
use crate::gates::route::MatchedRoute;
use crate::proxy::forwarded::ClientInfo;

/// Most removed properties named in one event.
const MAX_NAMED: usize = 20;

/// The response schema of a route and what to do with extra properties.
#[derive(Debug)]
pub struct ResponseFilter {
    /// The schema of 2xx JSON answers.
    pub schema: Schema,
    /// Refuse (502) instead of removing.
    pub refuse: bool,
    /// Largest answer filtered; larger ones are refused.
    pub max_bytes: usize,
}

/// What the events of a filtered answer say about its request.
#[derive(Debug, Clone)]
pub struct Context {
    request_id: String,
    client_ip: Option<IpAddr>,
    method: String,
    path: String,
    route: Option<String>,
}

impl Context {
    /// Taken from the request before it goes upstream.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        let extensions = request.extensions();
        Self {
            request_id: extensions.get::<RequestId>().map(|id| id.as_str().to_owned()).unwrap_or_default(),
            client_ip: extensions.get::<ClientInfo>().map(|c| c.ip),
            method: request.method().to_string(),
            path: extensions
                .get::<CanonicalPath>()
                .map_or_else(|| request.uri().path().to_owned(), |p| p.canonical().to_owned()),
            route: extensions.get::<MatchedRoute>().map(|r| r.0.to_string()),
        }
    }

    fn emit(&self, event: &SecurityEvent) {
        audit::emit(
            event,
            &EventContext {
                request_id: &self.request_id,
                client_ip: self.client_ip,
                method: &self.method,
                path: &self.path,
                route: self.route.as_deref(),
                subject: None,
            },
        );
    }
}

/// Filters `response` by the policy's response filter. (A boxed future: an
/// `async` block over the generic inner service's future could not be
/// proven `Send`.)
pub fn apply(
    policy: std::sync::Arc<super::ValidationPolicy>,
    response: Response<Body>,
    context: Context,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>> {
    Box::pin(async move {
        match &policy.response {
            Some(filter) => filter.apply(response, &context).await,
            None => response,
        }
    })
}

impl ResponseFilter {
    /// Filters (or refuses) `response`.
    pub async fn apply(&self, response: Response<Body>, context: &Context) -> Response<Body> {
        let is_json =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| {
                t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        let empty = response.status() == http::StatusCode::NO_CONTENT
            || http_body::Body::size_hint(response.body()).exact() == Some(0);
        if !response.status().is_success() || !is_json || empty || context.method == "HEAD" {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let refused = || Rejection::new(Reason::InvalidUpstreamResponse).into_response();
        let limited = boxed(LimitedBody::new(body, u64::try_from(self.max_bytes).unwrap_or(u64::MAX)));
        let Ok(collected) = limited.collect().await else {
            context.emit(&SecurityEvent::ResponseInvalid {
                rules: format!("unreadable or over {} bytes", self.max_bytes),
            });
            return refused();
        };
        let Ok(mut value) = serde_json::from_slice::<Value>(&collected.to_bytes()) else {
            context.emit(&SecurityEvent::ResponseInvalid { rules: "not JSON".into() });
            return refused();
        };
        let removed = remove_undeclared(&mut value, &self.schema.document);
        if !removed.is_empty() {
            let mut pointers: Vec<String> = removed.iter().take(MAX_NAMED).cloned().collect();
            if removed.len() > MAX_NAMED {
                pointers.push(format!("and {} more", removed.len() - MAX_NAMED));
            }
            context.emit(&SecurityEvent::ResponseFieldsRemoved { pointers });
        }
        let errors = self.schema.errors(&value);
        if !errors.is_empty() {
            let rules = errors.iter().map(|e| format!("{} {}", e.pointer, e.rule)).collect::<Vec<_>>().join(", ");
            context.emit(&SecurityEvent::ResponseInvalid { rules });
        }
        if self.refuse && (!removed.is_empty() || !errors.is_empty()) {
            return refused();
        }
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        parts.headers.remove(header::ETAG);
        Response::from_parts(parts, full(bytes))
    }
}

/// Removes from `value` every object property `schema` does not declare
/// (in `properties`, in `allOf`/`anyOf`/`oneOf` branches, or by
/// `additionalProperties`/`patternProperties`), following local `$ref`s.
/// Returns the JSON pointers of what was removed.
pub fn remove_undeclared(value: &mut Value, schema: &Value) -> Vec<String> {
    let mut removed = Vec::new();
    walk(value, schema, schema, &mut String::new(), &mut removed, 0);
    removed
}

/// Deepest schema nesting followed (a recursive schema stops here).
const MAX_DEPTH: usize = 64;

fn walk(
    value: &mut Value,
    schema: &Value,
    root: &Value,
    pointer: &mut String,
    removed: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let schema = resolve(schema, root);
    let Value::Object(rules) = schema else { return };
    match value {
        Value::Object(object) => {
            let branches = branches(rules, root);
            let declared = |name: &str| branches.iter().find_map(|b| b.get("properties").and_then(|p| p.get(name)));
            let extra = branches
                .iter()
                .find_map(|b| b.get("additionalProperties").or_else(|| b.get("unevaluatedProperties")))
                .filter(|extra| **extra != Value::Bool(false));
            let open = extra.is_some() || branches.iter().any(|b| b.contains_key("patternProperties"));
            let names: Vec<String> = object.keys().cloned().collect();
            for name in names {
                let length = pointer.len();
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                match (declared(&name), open) {
                    (Some(child), _) => {
                        if let Some(inner) = object.get_mut(&name) {
                            walk(inner, child, root, pointer, removed, depth + 1);
                        }
                    }
                    (None, true) => {
                        if let (Some(inner), Some(child)) = (object.get_mut(&name), extra) {
                            walk(inner, child, root, pointer, removed, depth + 1);
                        }
                    }
                    (None, false) => {
                        object.remove(&name);
                        removed.push(pointer.clone());
                    }
                }
                pointer.truncate(length);
            }
        }
        Value::Array(items) => {
            let prefix = rules.get("prefixItems").and_then(Value::as_array);
            for (index, item) in items.iter_mut().enumerate() {
                let child = prefix.and_then(|p| p.get(index)).or_else(|| rules.get("items"));
                if let Some(child) = child {
                    let length = pointer.len();
                    pointer.push_str(&format!("/{index}"));
                    walk(item, child, root, pointer, removed, depth + 1);
                    pointer.truncate(length);
                }
            }
        }
        _ => {}
    }
}

/// The schema and its `allOf`/`anyOf`/`oneOf` branches, `$ref`s resolved.
fn branches<'a>(rules: &'a serde_json::Map<String, Value>, root: &'a Value) -> Vec<&'a serde_json::Map<String, Value>> {
    let mut all = vec![rules];
    let mut index = 0;
    while index < all.len() && all.len() < 64 {
        let current = all[index];
        for key in ["allOf", "anyOf", "oneOf"] {
            for branch in current.get(key).and_then(Value::as_array).into_iter().flatten() {
                if let Value::Object(map) = resolve(branch, root) {
                    all.push(map);
                }
            }
        }
        if let Some(pointer) = current.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#'))
            && let Some(Value::Object(map)) = root.pointer(pointer)
            && !all.iter().any(|seen| std::ptr::eq(*seen, map))
        {
            all.push(map);
        }
        index += 1;
    }
    all
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_refs_arrays_and_open_maps() {
        let schema = json!({
            "$defs": {"user": {"type": "object", "properties": {"id": {}, "name": {}}}},
            "type": "object",
            "properties": {
                "users": {"type": "array", "items": {"$ref": "#/$defs/user"}},
                "meta": {"type": "object", "additionalProperties": {"type": "string"}},
                "owner": {"allOf": [{"$ref": "#/$defs/user"}, {"properties": {"email": {}}}]}
            }
        });
        let mut value = json!({
            "users": [{"id": 1, "name": "a", "ssn": "x"}, {"id": 2, "password_hash": "h"}],
            "meta": {"anything": "goes"},
            "owner": {"id": 1, "email": "e", "is_admin": true},
            "debug": {"sql": "SELECT"}
        });
        let removed = remove_undeclared(&mut value, &schema);
        assert_eq!(removed, ["/debug", "/owner/is_admin", "/users/0/ssn", "/users/1/password_hash"]);
        assert_eq!(value["meta"], json!({"anything": "goes"}));
        assert_eq!(value["owner"], json!({"id": 1, "email": "e"}));
    }
}
