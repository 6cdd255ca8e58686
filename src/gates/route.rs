//! Route matching on the canonical path, and dispatch to the route's own
//! stack of gates.
//!
//! Refuses with 404 when no route matches and 405 (with `Allow`) when the
//! route does not list the method; `HEAD` is allowed wherever `GET` is.
//! Patterns use `{name}` for one segment and `{*name}` for the rest of the
//! path; a literal segment wins over a parameter (`/users/me` before
//! `/users/{id}`). Two routes with the same pattern must list disjoint
//! methods, otherwise the second could never be reached: the configuration
//! refuses that.
//!
//! ```
//! use portcullis::gates::route::{RouteTable, Match};
//! # let config = portcullis::config::Config::from_text("t", r#"
//! # [[route]]
//! # path = "/items/{id}"
//! # methods = ["GET"]
//! # upstream = "http://127.0.0.1:9"
//! # "#, &Default::default()).unwrap();
//! let table = RouteTable::new(&config.routes).unwrap();
//! assert!(matches!(table.find(&http::Method::GET, "/items/7"), Match::Route { .. }));
//! assert!(matches!(table.find(&http::Method::POST, "/items/7"), Match::MethodNotAllowed(_)));
//! assert!(matches!(table.find(&http::Method::GET, "/nothing"), Match::NotFound));
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use http::{Method, Request, Response, header};
use tower::Service;
use tower::util::{BoxCloneSyncService, ServiceExt};

use crate::body::{Body, ResponseFuture};
use crate::config::RouteConfig;
use crate::error::{Reason, Rejection};
use crate::gates::headers::RouteHeaderPolicy;
use crate::gates::path::CanonicalPath;

/// The result of matching a request.
#[derive(Debug)]
pub enum Match {
    /// A built-in endpoint.
    Builtin,
    /// A configured route, with its path parameters.
    Route {
        /// Index into the route list.
        id: usize,
        /// `{name}` parameters, in pattern order.
        params: RouteParams,
    },
    /// The path matches but not the method.
    MethodNotAllowed(Vec<Method>),
    /// Nothing matches.
    NotFound,
}

/// Path parameters of the matched route (`{id}` → `7`), still percent-encoded
/// as in the canonical path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteParams(pub Vec<(String, String)>);

/// The matched route's pattern, for logs and events.
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub Arc<str>);

/// Routes indexed for matching.
#[derive(Debug, Clone)]
pub struct RouteTable {
    router: matchit::Router<Vec<usize>>,
    routes: Vec<(Vec<Method>, Arc<str>, bool)>,
}

impl RouteTable {
    /// Indexes `routes`. Fails with (pattern, message) when a pattern is
    /// invalid or makes another unreachable.
    pub fn new(routes: &[RouteConfig]) -> Result<Self, (String, String)> {
        let mut router = matchit::Router::new();
        let mut by_pattern: Vec<(String, Vec<usize>)> = Vec::new();
        for (id, route) in routes.iter().enumerate() {
            match by_pattern.iter_mut().find(|(p, _)| *p == route.pattern) {
                Some((_, ids)) => {
                    for other in ids.iter() {
                        let other: &RouteConfig = &routes[*other];
                        let both = [
                            Method::GET,
                            Method::HEAD,
                            Method::POST,
                            Method::PUT,
                            Method::PATCH,
                            Method::DELETE,
                            Method::OPTIONS,
                        ];
                        if let Some(m) = both.iter().find(|m| route.allows(m) && other.allows(m)) {
                            return Err((
                                route.pattern.clone(),
                                format!(
                                    "route `{}` repeats method {m} of the route at {}; it could never be reached",
                                    route.pattern, other.location
                                ),
                            ));
                        }
                    }
                    ids.push(id);
                }
                None => by_pattern.push((route.pattern.clone(), vec![id])),
            }
        }
        for (pattern, ids) in by_pattern {
            router
                .insert(pattern.clone(), ids)
                .map_err(|e| (pattern.clone(), format!("route `{pattern}` cannot be added: {e}")))?;
        }
        let routes =
            routes.iter().map(|r| (r.methods.clone(), Arc::from(r.pattern.as_str()), r.cors.is_some())).collect();
        Ok(Self { router, routes })
    }

    /// Checks that `routes` can be indexed (used by the configuration loader).
    pub fn check(routes: &[RouteConfig]) -> Result<(), (String, String)> {
        Self::new(routes).map(|_| ())
    }

    /// Finds what answers `method` on the canonical `path`.
    pub fn find(&self, method: &Method, path: &str) -> Match {
        if path == "/admin" || path.starts_with(crate::api::ADMIN_PREFIX) {
            // The admin router answers its own 404 and 405.
            return Match::Builtin;
        }
        if let Some((_, methods)) = crate::api::BUILTIN_ROUTES.iter().find(|(p, _)| *p == path) {
            return if methods.contains(&method.as_str()) {
                Match::Builtin
            } else {
                Match::MethodNotAllowed(methods.iter().filter_map(|m| m.parse().ok()).collect())
            };
        }
        let Ok(found) = self.router.at(path) else {
            return Match::NotFound;
        };
        let allows = |methods: &Vec<Method>| {
            methods.contains(method) || (*method == Method::HEAD && methods.contains(&Method::GET))
        };
        match found.value.iter().find(|id| allows(&self.routes[**id].0)) {
            Some(id) => Match::Route {
                id: *id,
                params: RouteParams(found.params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()),
            },
            None => {
                let mut allowed: Vec<Method> = found.value.iter().flat_map(|id| self.routes[*id].0.clone()).collect();
                if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
                    allowed.push(Method::HEAD);
                }
                Match::MethodNotAllowed(allowed)
            }
        }
    }

    /// The route with CORS at `path` that allows `requested` (the
    /// preflight's `Access-Control-Request-Method`), if any.
    pub fn find_preflight(&self, path: &str, requested: &Method) -> Option<Match> {
        let found = self.router.at(path).ok()?;
        let allows = |methods: &Vec<Method>| {
            methods.contains(requested) || (*requested == Method::HEAD && methods.contains(&Method::GET))
        };
        let id = *found.value.iter().find(|id| self.routes[**id].2 && allows(&self.routes[**id].0))?;
        Some(Match::Route {
            id,
            params: RouteParams(found.params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()),
        })
    }

    /// The pattern of route `id`.
    pub fn pattern(&self, id: usize) -> Arc<str> {
        self.routes[id].1.clone()
    }
}

/// A boxed service answering requests for one route or built-in endpoint.
pub type RouteService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// One route's stack and response policy, as built by [`crate::stack`].
#[derive(Clone)]
pub struct RouteEntry {
    /// The route's own gates and handler.
    pub service: RouteService,
    /// Security headers for the route's responses.
    pub headers: RouteHeaderPolicy,
}

/// The terminal gate of the shared stack: matches and calls the route's stack.
#[derive(Clone)]
pub struct RouteDispatch {
    table: Arc<RouteTable>,
    routes: Arc<[RouteEntry]>,
    builtin: RouteService,
}

impl RouteDispatch {
    /// `routes[i]` serves route `i` of `table`; `builtin` serves built-in endpoints.
    pub fn new(table: Arc<RouteTable>, routes: Vec<RouteEntry>, builtin: RouteService) -> Self {
        Self { table, routes: routes.into(), builtin }
    }
}

/// The method a CORS preflight asks about, if `request` is one.
fn preflight_method<B>(request: &Request<B>) -> Option<Method> {
    if request.method() != Method::OPTIONS || !request.headers().contains_key(header::ORIGIN) {
        return None;
    }
    Method::from_bytes(request.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()
}

fn refuse(reason: Reason) -> ResponseFuture {
    Box::pin(std::future::ready(Ok(Rejection::new(reason).into_response())))
}

impl Service<Request<Body>> for RouteDispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let Some(path) = request.extensions().get::<CanonicalPath>() else {
            return refuse(Reason::Internal);
        };
        let found = match self.table.find(request.method(), path.canonical()) {
            Match::MethodNotAllowed(allowed) => match preflight_method(&request) {
                Some(requested) => {
                    self.table.find_preflight(path.canonical(), &requested).unwrap_or(Match::MethodNotAllowed(allowed))
                }
                None => Match::MethodNotAllowed(allowed),
            },
            other => other,
        };
        match found {
            Match::Builtin => {
                // Built-in endpoints route on the URI: give them the canonical path.
                let canonical = path.canonical().to_owned();
                let target = match request.uri().query() {
                    Some(query) => format!("{canonical}?{query}"),
                    None => canonical,
                };
                match http::uri::PathAndQuery::try_from(target) {
                    Ok(path_and_query) => {
                        let mut parts = request.uri().clone().into_parts();
                        parts.path_and_query = Some(path_and_query);
                        if let Ok(uri) = http::Uri::from_parts(parts) {
                            *request.uri_mut() = uri;
                        }
                    }
                    Err(_) => return refuse(Reason::Internal),
                }
                // Built-in paths are fixed, so they can name the route in logs
                // and metrics; admin pages (with names in their paths) share one.
                let path = request.uri().path();
                let pattern = match path.starts_with(crate::api::ADMIN_PREFIX) {
                    true => MatchedRoute(Arc::from("/admin/*")),
                    false => MatchedRoute(Arc::from(path)),
                };
                Box::pin(self.builtin.clone().oneshot(request).map(move |outcome| {
                    let mut response = outcome?;
                    response.extensions_mut().insert(pattern);
                    Ok(response)
                }))
            }
            Match::Route { id, params } => {
                let pattern = MatchedRoute(self.table.pattern(id));
                request.extensions_mut().insert(params);
                request.extensions_mut().insert(pattern.clone());
                let entry = &self.routes[id];
                let headers = entry.headers.clone();
                let future = entry.service.clone().oneshot(request);
                Box::pin(future.map(move |outcome| {
                    let mut response = outcome?;
                    response.extensions_mut().insert(headers);
                    response.extensions_mut().insert(pattern);
                    Ok(response)
                }))
            }
            Match::MethodNotAllowed(allowed) => refuse(Reason::MethodNotAllowed { allowed }),
            Match::NotFound => refuse(Reason::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table(toml: &str) -> RouteTable {
        let config = Config::from_text("t", toml, &Default::default()).unwrap();
        RouteTable::new(&config.routes).unwrap()
    }

    const ROUTES: &str = r#"
        [[route]]
        path = "/users/{id}"
        methods = ["GET"]
        upstream = "http://127.0.0.1:9"
        [[route]]
        path = "/users/{id}"
        methods = ["PUT", "DELETE"]
        upstream = "http://127.0.0.1:9"
        [[route]]
        path = "/users/me"
        methods = ["GET"]
        upstream = "http://127.0.0.1:9"
        [[route]]
        path = "/files/{*rest}"
        methods = ["GET"]
        upstream = "http://127.0.0.1:9"
    "#;

    #[test]
    fn matching() {
        let t = table(ROUTES);
        assert!(matches!(t.find(&Method::GET, "/users/7"), Match::Route { id: 0, .. }));
        assert!(matches!(t.find(&Method::HEAD, "/users/7"), Match::Route { id: 0, .. }));
        assert!(matches!(t.find(&Method::DELETE, "/users/7"), Match::Route { id: 1, .. }));
        assert!(matches!(t.find(&Method::GET, "/users/me"), Match::Route { id: 2, .. }));
        match t.find(&Method::POST, "/users/7") {
            Match::MethodNotAllowed(allowed) => {
                assert_eq!(allowed, [Method::GET, Method::PUT, Method::DELETE, Method::HEAD]);
            }
            other => panic!("{other:?}"),
        }
        match t.find(&Method::GET, "/files/a/b/c") {
            Match::Route { id: 3, params } => assert_eq!(params.0, [("rest".to_owned(), "a/b/c".to_owned())]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(t.find(&Method::GET, "/Users/7"), Match::NotFound), "matching is case-sensitive");
        assert!(matches!(t.find(&Method::GET, "/healthz"), Match::Builtin));
        assert!(matches!(t.find(&Method::POST, "/auth/login"), Match::Builtin));
        assert!(matches!(t.find(&Method::GET, "/auth/login"), Match::MethodNotAllowed(_)));
        assert!(matches!(t.find(&Method::POST, "/healthz"), Match::MethodNotAllowed(_)));
    }
}
