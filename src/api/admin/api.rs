//! The JSON admin API (`/admin/api/*`): for administrators (bearer token
//! with role `admin`).
//!
//! - `GET /admin/api/events?action=login.*&user=&ip=&route=&severity=&since=&until=&before=&limit=`:
//!   stored security events, newest first; `before` takes the last `id` of
//!   a page to get the next one.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};

use crate::api::{Api, bearer_token, no_store_json, refuse};
use crate::error::Reason;
use crate::identity::tokens::AccessClaims;
use crate::store::audit::EventFilter;

/// The role the admin API and `/metrics` require.
pub(crate) const ADMIN_ROLE: &str = "admin";

/// The caller's claims when they are an administrator, or the refusal.
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
pub(in crate::api) fn require_admin(api: &Api, headers: &HeaderMap) -> Result<std::sync::Arc<AccessClaims>, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(refuse(Reason::Unauthenticated { error: None, check: "no bearer token".into() }));
    };
    let claims = api
        .identity
        .verify(token)
        .map_err(|error| refuse(Reason::Unauthenticated { error: Some("invalid_token"), check: error.to_string() }))?;
    if claims.roles.iter().any(|r| r == ADMIN_ROLE) {
        Ok(claims)
    } else {
        Err(refuse(Reason::Forbidden { rule: format!("the admin API requires role `{ADMIN_ROLE}`") }))
    }
}

pub(in crate::api) async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<EventFilter>, QueryRejection>,
) -> Response {
    if let Err(refusal) = require_admin(&api, &headers) {
        return refusal;
    }
    let Ok(Query(filter)) = query else {
        return refuse(Reason::BadRequest {
            detail: "Unknown or malformed query parameter: use action, user, ip, route, severity, since, until, before, limit."
                .into(),
        });
    };
    match crate::store::audit::list(api.identity.store(), &filter).await {
        Ok(events) => {
            let next =
                events.last().map(|e| e.id.clone()).filter(|_| events.len() as i64 >= filter.limit.unwrap_or(50));
            no_store_json(StatusCode::OK, &serde_json::json!({ "events": events, "next_before": next }))
        }
        Err(error) => {
            tracing::error!(%error, "cannot read audit events");
            refuse(Reason::Internal)
        }
    }
}
