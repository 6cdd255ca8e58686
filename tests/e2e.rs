//! End-to-end tests: the real `portcullis` binary, over real TLS, in front of
//! a real upstream HTTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

// Default start, redirect, TLS, certificate reload, headers, ids, health, shutdown.
mod serving;
// Forwarding headers, hop-by-hop hygiene, upstream failures, CORS.
mod proxying;
// Path normalization tricks against route rules.
mod path_safety;
// Body, header and URI limits; smuggling; slow and excess clients.
mod limits;
// `portcullis check` and configuration errors.
mod check;
// Secrets: from the environment only, refused when weak, never logged.
mod secrets;
// Identity: login, refresh rotation and reuse, JWT attacks, OAuth, keys, both stores.
mod identity;
// Authorization: identities × routes × methods, identity forwarding, the Flask example.
mod policy;
// Rate limits: 429 and headers, per-user buckets, configuration errors.
mod rate_limits;
// Limits shared through Redis, failure policies, costs, exemptions, load shedding.
mod shared_limits;
// Schemas for path, query, headers and body; body hygiene; OpenAPI import; response filtering.
mod validation;
// Security events in the log, the store and the metrics; redaction; store outage; alerts.
mod monitoring;
// Browser sessions and CSRF.
mod sessions;
// The admin panel in headless Chromium.
mod admin_panel;
