//! `GET /healthz` (the process is alive) and `GET /readyz` (the store
//! answers within two seconds).

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
    match tokio::time::timeout(Duration::from_secs(2), api.identity.store().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(serde_json::json!({"status": "ready", "store": "ok"}))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not ready", "store": "unreachable"})))
        }
        Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not ready", "store": "timeout"})))
        }
    }
}
