//! `GET /metrics`: Prometheus metrics, for administrators on the main
//! listener (bearer token with role `admin`), and for anyone allowed on the
//! separate `[metrics] listen` listener.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};

use super::Api;
use super::admin::require_admin;
use crate::metrics::{CONTENT_TYPE, Gauges};
use crate::stack::Shared;

pub(super) async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Response {
    if let Err(refusal) = require_admin(&api, &headers) {
        return refusal;
    }
    render(&api.shared).await
}

/// The metrics as a response, with the gauges read now.
pub async fn render(shared: &Shared) -> Response {
    let store_up = tokio::time::timeout(Duration::from_secs(1), shared.identity.store().ping()).await;
    let gauges = Gauges {
        in_flight: i64::try_from(shared.in_flight.current()).unwrap_or(i64::MAX),
        rate_limit_store_up: i64::from(shared.rate_health.status().up),
        store_up: i64::from(matches!(store_up, Ok(Ok(())))),
        active_sessions: crate::store::sessions::count_live(shared.identity.store(), crate::store::now()).await.ok(),
    };
    let mut response = crate::metrics::global().render(&gauges).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
