//! Portcullis: a secure front door for HTTP APIs.
//!
//! # The life of a request
//!
//! A request passes ordered gates; each is a tower `Layer` in [`gates`], and
//! [`stack`] is the one place that orders them. A gate that says no returns a
//! [`error::Rejection`]; the outermost gate renders it as RFC 9457
//! `application/problem+json` and writes a [`audit::SecurityEvent`].
//!
//! ```text
//! TLS / HTTP→HTTPS redirect                        server::{tls, redirect}
//!  → request id, client address, time limit, log   gates::context
//!  → security headers (on the way out)             gates::headers
//!  → URI, header and framing limits                gates::limits
//!  → path normalization (once)                     gates::path
//!  → route match (404, 405)                        gates::route
//!  → CORS preflight                                gates::cors
//!  → authentication: bearer tokens (deny by default) gates::authn, identity
//!  → body limit                                    gates::limits
//!  → handler: built-in endpoints or reverse proxy   api, proxy
//! ```
//!
//! Configuration is loaded and validated by [`config`] before anything
//! listens; secrets come only from the environment ([`config::secrets`]).

pub mod api;
pub mod audit;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod gates;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod stack;
pub mod store;
pub mod traces;
