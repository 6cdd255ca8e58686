//! `GET /healthz` (the process is alive) and `GET /readyz` (the store
//! answers within two seconds; the rate-limit store's state is reported).
//!
//! A Redis rate-limit store that does not answer leaves the instance ready
//! (`"status": "degraded"`): every instance shares that Redis, so taking
//! them out of rotation would not help, and each route's `on_store_error`
//! already decides how its requests are served.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;

use super::Api;

pub(super) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

pub(super) async fn readyz(State(api): State<Api>) -> impl IntoResponse {
    let rate_limit = api.shared.rate_health.status();
    let store = match tokio::time::timeout(Duration::from_secs(2), api.identity.store().ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: store unreachable");
            "unreachable"
        }
        Err(_) => "timeout",
    };
    let (status, text) = match (store, rate_limit.up) {
        ("ok", true) => (StatusCode::OK, "ready"),
        ("ok", false) => (StatusCode::OK, "degraded"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    };
    (status, Json(serde_json::json!({"status": text, "store": store, "rate_limit_store": rate_limit})))
}
