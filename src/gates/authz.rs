//! Authorization: deny by default, per route.
//!
//! A route may require any of some `roles`, all of some `scopes`, and an
//! ownership rule `allow_if` written in CEL (the Common Expression
//! Language) over the request and the caller:
//!
//! | variable | holds |
//! |---|---|
//! | `method` | `"GET"`, `"PUT"`… |
//! | `path` | the route's `{params}`, percent-decoded: `path.username` |
//! | `query` | query parameters that appear exactly once: `query.owner` |
//! | `headers` | request headers by lower-case name (credentials excluded) |
//! | `auth` | `sub`, `username`, `roles` (list), `scopes` (list), `client_id`, `authenticated` |
//!
//! For example `path.username == auth.username || "admin" in auth.roles`.
//! Rules are compiled when the configuration loads; `portcullis check`
//! reports syntax errors and unknown variables or path parameters. A rule
//! that does not evaluate to `true` — `false`, an error such as a missing
//! key, or a value of another type — denies. Refusals are 403 problem+json
//! with a security event naming the route and the requirement that failed
//! (the client is only told it may not). An anonymous caller (on an
//! `optional` route) who is denied gets 401 instead, to tell it to log in.
//!
//! ```
//! use portcullis::gates::authz::{Policy, Decision, RequestFacts};
//! let policy = Policy::new(vec!["admin".into()], vec![], None);
//! let facts = RequestFacts::default();
//! assert!(matches!(policy.decide(None, &facts), Decision::Deny(_)));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use cel::{Program, Value};
use http::{Request, Response, header};
use tower::Layer;

use crate::body::Body;
use crate::error::{Reason, Rejection};
use crate::gates::authn::Principal;
use crate::gates::gate::{CheckRequest, Gate};
use crate::gates::route::RouteParams;
use crate::identity::tokens::AccessClaims;

/// The variables a rule may use.
pub const RULE_VARIABLES: &[&str] = &["method", "path", "query", "headers", "auth"];

/// A compiled `allow_if` rule.
#[derive(Clone)]
pub struct Rule {
    source: Arc<str>,
    program: Arc<Program>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rule").field(&self.source).finish()
    }
}

/// A problem in a rule, with its offset in the rule's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Byte offset in the rule where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl Rule {
    /// Compiles `source`, checking that it only uses [`RULE_VARIABLES`] and,
    /// under `path.`, only the names in `params`.
    pub fn compile(source: &str, params: &[String]) -> Result<Self, RuleError> {
        let program = Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first.map_or((0, 0), |e| e.pos);
            RuleError {
                offset: offset_of(source, line, column),
                message: first.map_or_else(|| "syntax error".to_owned(), |e| e.msg.clone()),
            }
        })?;
        for variable in program.references().variables() {
            if !RULE_VARIABLES.contains(&variable) {
                return Err(RuleError {
                    offset: source.find(variable).unwrap_or(0),
                    message: format!("unknown variable `{variable}` (use {})", RULE_VARIABLES.join(", ")),
                });
            }
        }
        for (offset, _) in source.match_indices("path.") {
            let preceded_by_word =
                source[..offset].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
            if preceded_by_word {
                continue;
            }
            let name: String = source[offset + 5..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !params.contains(&name) {
                return Err(RuleError {
                    offset,
                    message: format!("the route has no path parameter `{name}` (it has: {})", params.join(", ")),
                });
            }
        }
        Ok(Self { source: source.into(), program: Arc::new(program) })
    }

    /// The rule's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the rule evaluates to `true` for these variables.
    fn allows(&self, variables: &HashMap<&'static str, Value>) -> Result<bool, String> {
        let mut context = cel::Context::default();
        for (name, value) in variables {
            context.add_variable_from_value(*name, value.clone());
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!("the rule gave {other:?}, not a boolean")),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// Converts a (line, column) position from the CEL parser to a byte offset.
fn offset_of(source: &str, line: isize, column: isize) -> usize {
    let line = usize::try_from(line).unwrap_or(1).max(1);
    // The parser counts columns from 1.
    let column = usize::try_from(column).unwrap_or(1).saturating_sub(1);
    let start: usize = source.split_inclusive('\n').take(line - 1).map(str::len).sum();
    (start + column).min(source.len())
}

/// What the request offers the rule.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The method.
    pub method: String,
    /// Path parameters, percent-decoded.
    pub path: Vec<(String, String)>,
    /// Query parameters that appear exactly once, decoded.
    pub query: Vec<(String, String)>,
    /// Non-credential headers, lower-case names, first value.
    pub headers: Vec<(String, String)>,
}

impl RequestFacts {
    /// Collects the facts of `request`.
    pub fn of<B>(request: &Request<B>) -> Self {
        let path = request
            .extensions()
            .get::<RouteParams>()
            .map(|p| p.0.iter().map(|(k, v)| (k.clone(), decode(v))).collect())
            .unwrap_or_default();
        let pairs: Vec<(String, String)> =
            request.uri().query().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
        let query =
            pairs.iter().filter(|(k, _)| pairs.iter().filter(|(other, _)| other == k).count() == 1).cloned().collect();
        let headers = request
            .headers()
            .iter()
            .filter(|(name, _)| {
                !matches!(*name, &header::AUTHORIZATION | &header::COOKIE | &header::PROXY_AUTHORIZATION)
            })
            // Identity headers a client sent are forged by definition: rules
            // must read `auth`, never these.
            .filter(|(name, _)| !crate::proxy::headers::is_gateway_owned(name))
            .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
            .collect();
        Self { method: request.method().as_str().to_owned(), path, query, headers }
    }
}

/// Percent-decodes a path parameter (`+` and `&` stay literal, as in paths).
fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned()
}

fn map(pairs: &[(String, String)]) -> Value {
    let mut map: HashMap<String, Value> = HashMap::new();
    for (key, value) in pairs {
        map.entry(key.clone()).or_insert_with(|| Value::from(value.clone()));
    }
    Value::from(map)
}

fn auth_value(claims: Option<&AccessClaims>) -> Value {
    let mut auth: HashMap<&str, Value> = HashMap::new();
    auth.insert("authenticated", Value::Bool(claims.is_some()));
    auth.insert("sub", Value::from(claims.map_or("", |c| &c.sub)));
    auth.insert("username", Value::from(claims.and_then(|c| c.username.as_deref()).unwrap_or("")));
    auth.insert("client_id", Value::from(claims.and_then(|c| c.client_id.as_deref()).unwrap_or("")));
    auth.insert("roles", Value::from(claims.map_or_else(Vec::new, |c| c.roles.clone())));
    auth.insert(
        "scopes",
        Value::from(
            claims.map_or_else(Vec::new, |c| c.scope.split_whitespace().map(str::to_owned).collect::<Vec<_>>()),
        ),
    );
    Value::from(auth.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<HashMap<String, Value>>())
}

/// Why a request was denied (for the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// None of the required roles.
    MissingRole(Vec<String>),
    /// Some required scopes are missing.
    MissingScope(Vec<String>),
    /// The rule evaluated to `false`.
    RuleFalse(String),
    /// The rule could not be evaluated (counts as a denial).
    RuleFailed(String, String),
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingRole(roles) => write!(f, "requires one of the roles {}", roles.join(", ")),
            Self::MissingScope(scopes) => write!(f, "requires the scopes {}", scopes.join(" ")),
            Self::RuleFalse(rule) => write!(f, "rule denied: {rule}"),
            Self::RuleFailed(rule, error) => write!(f, "rule could not be evaluated ({error}): {rule}"),
        }
    }
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through.
    Allow,
    /// Refuse it.
    Deny(DenyReason),
}

/// A route's requirements.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: Vec<String>,
    scopes: Vec<String>,
    rule: Option<Rule>,
}

impl Policy {
    /// Any of `roles`, all of `scopes`, and `rule` if given.
    pub fn new(roles: Vec<String>, scopes: Vec<String>, rule: Option<Rule>) -> Self {
        Self { roles, scopes, rule }
    }

    /// Whether the policy requires anything at all.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.scopes.is_empty() && self.rule.is_none()
    }

    /// Whether [`Policy::decide`] reads the request (only a rule does):
    /// otherwise empty [`RequestFacts`] decide the same, without copying
    /// the request's headers and parameters.
    pub fn reads_request(&self) -> bool {
        self.rule.is_some()
    }

    /// The decision for `caller` (None: anonymous) on `request`.
    pub fn decide(&self, caller: Option<&AccessClaims>, request: &RequestFacts) -> Decision {
        if !self.roles.is_empty() && !caller.is_some_and(|c| c.roles.iter().any(|r| self.roles.contains(r))) {
            return Decision::Deny(DenyReason::MissingRole(self.roles.clone()));
        }
        if !self.scopes.is_empty() {
            let granted: Vec<&str> = caller.map_or_else(Vec::new, |c| c.scope.split_whitespace().collect());
            let missing: Vec<String> = self.scopes.iter().filter(|s| !granted.contains(&s.as_str())).cloned().collect();
            if !missing.is_empty() {
                return Decision::Deny(DenyReason::MissingScope(missing));
            }
        }
        if let Some(rule) = &self.rule {
            let variables = HashMap::from([
                ("method", Value::from(request.method.clone())),
                ("path", map(&request.path)),
                ("query", map(&request.query)),
                ("headers", map(&request.headers)),
                ("auth", auth_value(caller)),
            ]);
            return match rule.allows(&variables) {
                Ok(true) => Decision::Allow,
                Ok(false) => Decision::Deny(DenyReason::RuleFalse(rule.source().to_owned())),
                Err(error) => Decision::Deny(DenyReason::RuleFailed(rule.source().to_owned(), error)),
            };
        }
        Decision::Allow
    }
}

/// Enforces a route's [`Policy`].
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    policy: Arc<Policy>,
}

impl AuthzLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Gate<S, Self>;
    fn layer(&self, inner: S) -> Self::Service {
        Gate::new(inner, self.clone())
    }
}

impl CheckRequest for AuthzLayer {
    fn check(&self, request: &mut Request<Body>) -> Result<(), Response<Body>> {
        let caller = request.extensions().get::<Principal>().map(|p| p.0.clone());
        let facts = if self.policy.reads_request() { RequestFacts::of(request) } else { RequestFacts::default() };
        match self.policy.decide(caller.as_deref(), &facts) {
            Decision::Allow => Ok(()),
            // An anonymous caller on an `optional` route: tell it to log in.
            Decision::Deny(reason) if caller.is_none() => {
                Err(Rejection::new(Reason::Unauthenticated { error: None, check: reason.to_string() }).into_response())
            }
            Decision::Deny(reason) => {
                let mut response = Rejection::new(Reason::Forbidden { rule: reason.to_string() }).into_response();
                if let Some(caller) = caller {
                    response.extensions_mut().insert(Principal(caller));
                }
                Err(response)
            }
        }
    }
}

#[cfg(test)]
mod tests;
