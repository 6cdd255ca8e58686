//! The one place where a refusal becomes an HTTP answer.
//!
//! A gate that says no returns [`Rejection::into_response`]: a response with
//! the right status, an empty body and the [`Rejection`] in its extensions.
//! The outermost gate ([`crate::gates::context`]) turns it into an RFC 9457
//! `application/problem+json` body carrying the request id, and emits the
//! matching security event. So every refusal, from any gate, looks the same
//! to clients and is logged the same way.
//!
//! ```
//! use portcullis::error::{Rejection, Reason};
//! let response = Rejection::new(Reason::NotFound).into_response();
//! assert_eq!(response.status(), 404);
//! let body = Rejection::new(Reason::NotFound).problem_json("req-1");
//! assert!(body.contains("\"type\":\"urn:portcullis:problem:not-found\""));
//! ```

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;

use crate::body::{Body, empty};
use crate::gates::validate::schema::FieldError;

/// Why a request was refused. Each variant has a stable problem type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// No route matches the canonical path.
    NotFound,
    /// The route exists but does not allow this method.
    MethodNotAllowed {
        /// The methods the route allows.
        allowed: Vec<Method>,
    },
    /// The path could not be made canonical (encoded slash, NUL, bad escape…).
    BadPath {
        /// What was wrong, for the client.
        detail: &'static str,
    },
    /// The request is malformed in a way that could smuggle a second request.
    AmbiguousRequest {
        /// What was wrong, for the client.
        detail: &'static str,
    },
    /// The body is larger than the limit.
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request headers are too large or too many.
    HeadersTooLarge {
        /// What was exceeded, for the client.
        detail: String,
    },
    /// The request target is too long.
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client was too slow sending its request.
    RequestTimeout,
    /// A route needs credentials and none (or no valid ones) came.
    Unauthenticated {
        /// RFC 6750 error code (`invalid_request`, `invalid_token`), if any.
        error: Option<&'static str>,
        /// The exact check that failed (for the audit log only, never the client).
        check: String,
    },
    /// Plain HTTP came from a peer that is not a trusted proxy.
    UntrustedPeer,
    /// The caller is known but may not do this.
    Forbidden {
        /// The requirement that failed (for the audit log only, never the client).
        rule: String,
    },
    /// A cookie-authenticated unsafe request without a valid CSRF token or
    /// from a foreign origin.
    CsrfFailed {
        /// The check that failed (for the audit log; the client gets a fixed text).
        check: String,
    },
    /// Login with a wrong username, password or a disabled account (one
    /// answer for all, so accounts cannot be enumerated).
    InvalidCredentials,
    /// A refresh token that is unknown, used, expired or revoked.
    InvalidRefreshToken,
    /// The route needs a password typed more recently (step-up, RFC 9470).
    FreshLoginRequired {
        /// The freshness the route demands, in seconds.
        max_age: u64,
    },
    /// A malformed request body.
    BadRequest {
        /// What was wrong, for the client.
        detail: String,
    },
    /// The JSON body is malformed or breaks a hygiene limit (depth, sizes,
    /// duplicate keys).
    MalformedJson {
        /// What is wrong and where (line, column); never the body's content.
        detail: String,
    },
    /// Path, query or header parameters break the route's schema.
    InvalidParameters {
        /// The failed rules (at most ten).
        errors: Vec<FieldError>,
    },
    /// The body breaks the route's schema.
    InvalidBody {
        /// The failed rules (at most ten).
        errors: Vec<FieldError>,
    },
    /// The upstream's answer broke the route's response schema and the route
    /// refuses such answers.
    InvalidUpstreamResponse,
    /// The body's `Content-Type` is not the one expected.
    UnsupportedMediaType {
        /// The expected type.
        expected: &'static str,
    },
    /// The request conflicts with existing state (a taken username).
    Conflict {
        /// What conflicts, for the client.
        detail: String,
    },
    /// The request is well-formed but refused by a rule (password policy).
    Unprocessable {
        /// Which rule, for the client.
        detail: String,
    },
    /// A rate limit of the route refused the request.
    RateLimited {
        /// Seconds until it would be admitted.
        retry_after: u64,
    },
    /// The shared rate-limit store did not answer and the route fails closed.
    RateLimitUnavailable,
    /// The upstream could not be reached or broke the connection.
    BadGateway,
    /// The upstream took longer than its timeout.
    GatewayTimeout,
    /// Too much load: the request was shed.
    Overloaded,
    /// Something inside Portcullis failed; details go to the log only.
    Internal,
}

impl Reason {
    /// The HTTP status for this reason.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadPath { .. } | Self::AmbiguousRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::UntrustedPeer | Self::Forbidden { .. } | Self::CsrfFailed { .. } => StatusCode::FORBIDDEN,
            Self::InvalidCredentials | Self::InvalidRefreshToken | Self::FreshLoginRequired { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::BadRequest { .. } | Self::MalformedJson { .. } | Self::InvalidParameters { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidBody { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidUpstreamResponse => StatusCode::BAD_GATEWAY,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable slug of the problem type (`not-found`, `payload-too-large`…).
    pub fn slug(&self) -> &'static str {
        match self {
            Self::NotFound => "not-found",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::BadPath { .. } => "bad-path",
            Self::AmbiguousRequest { .. } => "ambiguous-request",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::HeadersTooLarge { .. } => "headers-too-large",
            Self::UriTooLong { .. } => "uri-too-long",
            Self::RequestTimeout => "request-timeout",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::UntrustedPeer => "untrusted-peer",
            Self::Forbidden { .. } => "forbidden",
            Self::CsrfFailed { .. } => "csrf-failed",
            Self::InvalidCredentials => "invalid-credentials",
            Self::InvalidRefreshToken => "invalid-refresh-token",
            Self::FreshLoginRequired { .. } => "fresh-login-required",
            Self::BadRequest { .. } => "bad-request",
            Self::MalformedJson { .. } => "malformed-json",
            Self::InvalidParameters { .. } => "invalid-parameters",
            Self::InvalidBody { .. } => "invalid-body",
            Self::InvalidUpstreamResponse => "invalid-upstream-response",
            Self::UnsupportedMediaType { .. } => "unsupported-media-type",
            Self::Conflict { .. } => "conflict",
            Self::Unprocessable { .. } => "unprocessable",
            Self::RateLimited { .. } => "rate-limited",
            Self::RateLimitUnavailable => "rate-limit-unavailable",
            Self::BadGateway => "bad-gateway",
            Self::GatewayTimeout => "gateway-timeout",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal-error",
        }
    }

    /// The gate that refuses for this reason (`authn`, `authz`, `validate`,
    /// `rate_limit`, `limits`, `path`, `route`, `upstream`, `shed`,
    /// `internal`): the `gate` label of `portcullis_refusals_total`.
    pub fn gate(&self) -> &'static str {
        match self {
            Self::NotFound | Self::MethodNotAllowed { .. } => "route",
            Self::BadPath { .. } => "path",
            Self::AmbiguousRequest { .. }
            | Self::PayloadTooLarge { .. }
            | Self::HeadersTooLarge { .. }
            | Self::UriTooLong { .. }
            | Self::RequestTimeout => "limits",
            Self::Unauthenticated { .. }
            | Self::UntrustedPeer
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::FreshLoginRequired { .. } => "authn",
            Self::Forbidden { .. } => "authz",
            Self::CsrfFailed { .. } => "csrf",
            Self::BadRequest { .. }
            | Self::MalformedJson { .. }
            | Self::InvalidParameters { .. }
            | Self::InvalidBody { .. }
            | Self::UnsupportedMediaType { .. }
            | Self::Conflict { .. }
            | Self::Unprocessable { .. } => "validate",
            Self::InvalidUpstreamResponse | Self::BadGateway | Self::GatewayTimeout => "upstream",
            Self::RateLimited { .. } | Self::RateLimitUnavailable => "rate_limit",
            Self::Overloaded => "shed",
            Self::Internal => "internal",
        }
    }

    /// A short, fixed, human title.
    pub fn title(&self) -> &'static str {
        match self {
            Self::NotFound => "No route for this path",
            Self::MethodNotAllowed { .. } => "Method not allowed on this route",
            Self::BadPath { .. } => "Path refused",
            Self::AmbiguousRequest { .. } => "Ambiguous request framing",
            Self::PayloadTooLarge { .. } => "Request body too large",
            Self::HeadersTooLarge { .. } => "Request headers too large",
            Self::UriTooLong { .. } => "Request target too long",
            Self::RequestTimeout => "Request not received in time",
            Self::Unauthenticated { .. } => "Authentication required",
            Self::UntrustedPeer => "Plain HTTP is only accepted from trusted proxies",
            Self::Forbidden { .. } => "Forbidden",
            Self::CsrfFailed { .. } => "Cross-site request refused",
            Self::InvalidCredentials => "Invalid credentials",
            Self::InvalidRefreshToken => "Invalid refresh token",
            Self::FreshLoginRequired { .. } => "Fresh login required",
            Self::BadRequest { .. } => "Bad request",
            Self::MalformedJson { .. } => "Malformed JSON body",
            Self::InvalidParameters { .. } => "Invalid parameters",
            Self::InvalidBody { .. } => "Invalid body",
            Self::InvalidUpstreamResponse => "Invalid upstream response",
            Self::UnsupportedMediaType { .. } => "Unsupported media type",
            Self::Conflict { .. } => "Conflict",
            Self::Unprocessable { .. } => "Request refused by a rule",
            Self::RateLimited { .. } => "Too many requests",
            Self::RateLimitUnavailable => "Rate limiter unavailable",
            Self::BadGateway => "Upstream unavailable",
            Self::GatewayTimeout => "Upstream timed out",
            Self::Overloaded => "Server overloaded",
            Self::Internal => "Internal error",
        }
    }

    /// A client-safe detail: what the client did wrong and how to fix it.
    /// Never contains internal state, upstream errors or request content.
    pub fn detail(&self) -> String {
        match self {
            Self::NotFound => "No route is configured for this path.".into(),
            Self::MethodNotAllowed { allowed } => {
                format!("This route allows {}.", allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", "))
            }
            Self::BadPath { detail } | Self::AmbiguousRequest { detail } => (*detail).to_owned(),
            Self::PayloadTooLarge { limit } => format!("The body may be at most {limit} bytes."),
            Self::HeadersTooLarge { detail } => detail.clone(),
            Self::UriTooLong { limit } => format!("The path and query may be at most {limit} bytes."),
            Self::RequestTimeout => "The request was not sent completely in time.".into(),
            Self::Unauthenticated { .. } => "Valid credentials are required for this route.".into(),
            Self::UntrustedPeer => "Connect over HTTPS.".into(),
            Self::Forbidden { .. } => "You may not do this.".into(),
            Self::CsrfFailed { .. } => {
                "A request authenticated by the session cookie must carry the session's CSRF token \
                 (header X-CSRF-Token, from GET /auth/csrf) and come from an allowed origin."
                    .into()
            }
            Self::InvalidCredentials => "The username or password is wrong, or the account cannot log in.".into(),
            Self::InvalidRefreshToken => "The refresh token is not valid; log in again.".into(),
            Self::FreshLoginRequired { max_age } => {
                format!("This route needs a password typed within the last {max_age} seconds; log in again.")
            }
            Self::BadRequest { detail } | Self::Conflict { detail } | Self::Unprocessable { detail } => detail.clone(),
            Self::MalformedJson { detail } => format!("The JSON body is not acceptable: {detail}."),
            Self::InvalidParameters { errors } => {
                format!("{} parameter rule(s) failed; see `errors`.", errors.len())
            }
            Self::InvalidBody { errors } => {
                format!("The body breaks {} rule(s) of its schema; see `errors`.", errors.len())
            }
            Self::InvalidUpstreamResponse => {
                "The service behind this route gave an answer that breaks its schema.".into()
            }
            Self::UnsupportedMediaType { expected } => format!("Send the body as {expected}."),
            Self::RateLimited { retry_after } => format!("Too many requests; retry in {retry_after} seconds."),
            Self::RateLimitUnavailable => {
                "This route cannot be served while its rate limiter is unavailable; retry shortly.".into()
            }
            Self::BadGateway => "The service behind this route could not be reached.".into(),
            Self::GatewayTimeout => "The service behind this route did not answer in time.".into(),
            Self::Overloaded => "Too many requests are in progress; retry shortly.".into(),
            Self::Internal => "Something went wrong.".into(),
        }
    }
}

/// A refusal travelling in response extensions until it is rendered.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
}

/// The problem type URI prefix; the slug follows.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:portcullis:problem:";

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    detail: String,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl Rejection {
    /// A rejection for `reason`.
    pub fn new(reason: Reason) -> Self {
        Self { reason }
    }

    /// The response a gate returns: status, headers, the rejection in the
    /// extensions and an empty body that the context gate fills in.
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(empty());
        *response.status_mut() = self.reason.status();
        let headers = response.headers_mut();
        match &self.reason {
            Reason::MethodNotAllowed { allowed } => {
                let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                if let Ok(value) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, value);
                }
            }
            Reason::Unauthenticated { error, .. } => {
                let value = match error {
                    None => Some(HeaderValue::from_static("Bearer")),
                    Some("invalid_token") => Some(HeaderValue::from_static("Bearer error=\"invalid_token\"")),
                    Some("invalid_request") => Some(HeaderValue::from_static("Bearer error=\"invalid_request\"")),
                    Some(code) => HeaderValue::from_str(&format!("Bearer error=\"{code}\"")).ok(),
                };
                if let Some(value) = value {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Reason::FreshLoginRequired { max_age } => {
                let value = format!("Bearer error=\"insufficient_user_authentication\", max_age={max_age}");
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            Reason::Overloaded | Reason::RateLimitUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Reason::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response.extensions_mut().insert(self);
        response
    }

    /// The `application/problem+json` body for this rejection.
    pub fn problem_json(&self, request_id: &str) -> String {
        let body = ProblemBody {
            type_uri: format!("{PROBLEM_TYPE_PREFIX}{}", self.reason.slug()),
            title: self.reason.title(),
            status: self.reason.status().as_u16(),
            detail: self.reason.detail(),
            request_id,
            errors: match &self.reason {
                Reason::InvalidParameters { errors } | Reason::InvalidBody { errors } => Some(errors),
                _ => None,
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_slug_and_error_status() {
        let reasons = [
            Reason::NotFound,
            Reason::MethodNotAllowed { allowed: vec![Method::GET] },
            Reason::BadPath { detail: "x" },
            Reason::AmbiguousRequest { detail: "x" },
            Reason::PayloadTooLarge { limit: 1 },
            Reason::HeadersTooLarge { detail: "x".into() },
            Reason::UriTooLong { limit: 1 },
            Reason::RequestTimeout,
            Reason::Unauthenticated { error: None, check: "x".into() },
            Reason::UntrustedPeer,
            Reason::Forbidden { rule: "x".into() },
            Reason::InvalidCredentials,
            Reason::InvalidRefreshToken,
            Reason::FreshLoginRequired { max_age: 1 },
            Reason::BadRequest { detail: "x".into() },
            Reason::UnsupportedMediaType { expected: "x" },
            Reason::Conflict { detail: "x".into() },
            Reason::Unprocessable { detail: "x".into() },
            Reason::RateLimited { retry_after: 1 },
            Reason::RateLimitUnavailable,
            Reason::MalformedJson { detail: "x".into() },
            Reason::InvalidParameters { errors: vec![] },
            Reason::InvalidBody { errors: vec![] },
            Reason::InvalidUpstreamResponse,
            Reason::BadGateway,
            Reason::GatewayTimeout,
            Reason::Overloaded,
            Reason::Internal,
        ];
        let mut slugs: Vec<_> = reasons.iter().map(Reason::slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), reasons.len());
        for reason in reasons {
            assert!(reason.status().is_client_error() || reason.status().is_server_error());
        }
    }

    #[test]
    fn problem_body_shape() {
        let json = Rejection::new(Reason::PayloadTooLarge { limit: 10 }).problem_json("abc");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["type"], "urn:portcullis:problem:payload-too-large");
        assert_eq!(value["status"], 413);
        assert_eq!(value["request_id"], "abc");
        assert_eq!(value["detail"], "The body may be at most 10 bytes.");
    }

    #[test]
    fn unauthenticated_detail_never_names_the_check() {
        let r = Rejection::new(Reason::Unauthenticated { error: Some("invalid_token"), check: "bad signature".into() });
        assert!(!r.problem_json("x").contains("signature"));
        let response = r.into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer error=\"invalid_token\"");
        for (error, header) in [
            (None, "Bearer"),
            (Some("invalid_request"), "Bearer error=\"invalid_request\""),
            (Some("insufficient_scope"), "Bearer error=\"insufficient_scope\""),
        ] {
            let response = Rejection::new(Reason::Unauthenticated { error, check: String::new() }).into_response();
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], header);
        }
    }
}
