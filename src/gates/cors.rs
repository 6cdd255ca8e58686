//! CORS: which browser origins may call a route, answered with
//! `tower_http::cors` built from a validated [`CorsPolicy`].
//!
//! Absent a `[cors]` table, no CORS header is ever sent, so browsers keep
//! the same-origin policy. A wildcard origin is only accepted without
//! credentials (the configuration refuses `"*"` with `allow_credentials`).
//! Preflight requests (`OPTIONS` with `Access-Control-Request-Method`) are
//! answered by the gateway before authentication, since browsers send them
//! without credentials.
//!
//! ```
//! use portcullis::gates::cors::{AllowedOrigins, CorsPolicy};
//! let policy = CorsPolicy {
//!     origins: AllowedOrigins::List(vec!["https://app.example.com".parse().unwrap()]),
//!     ..CorsPolicy::default()
//! };
//! let _layer = policy.layer(&[http::Method::GET]);
//! ```

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which origins may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (never with credentials).
    Any,
    /// Exactly these origins (`https://app.example.com`).
    List(Vec<HeaderValue>),
}

/// A validated CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Allowed origins.
    pub origins: AllowedOrigins,
    /// Request headers a browser may send.
    pub allowed_headers: Vec<HeaderName>,
    /// Response headers scripts may read.
    pub exposed_headers: Vec<HeaderName>,
    /// Whether credentials (cookies, authorization) may be sent.
    pub allow_credentials: bool,
    /// How long a preflight answer may be cached.
    pub max_age: Duration,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        Self {
            origins: AllowedOrigins::List(Vec::new()),
            allowed_headers: vec![
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("x-request-id"),
            ],
            exposed_headers: vec![HeaderName::from_static("x-request-id")],
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

impl CorsPolicy {
    /// The tower-http layer enforcing this policy on a route with `methods`.
    pub fn layer(&self, methods: &[Method]) -> CorsLayer {
        let origin = match &self.origins {
            AllowedOrigins::Any => AllowOrigin::any(),
            AllowedOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods(methods.to_vec())
            .allow_headers(self.allowed_headers.clone())
            .expose_headers(self.exposed_headers.clone())
            .allow_credentials(self.allow_credentials)
            .max_age(self.max_age)
    }
}
