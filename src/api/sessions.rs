//! Browser sessions at the built-in endpoints: the session login answer,
//! `GET /auth/csrf`, `GET /auth/sessions`, `POST /auth/sessions/revoke`,
//! and session logout (in [`super::auth::logout`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde::Deserialize;

use super::{Api, Caller, bearer_token, json_body, no_store_json, refuse};
use crate::audit::SecurityEvent;
use crate::error::Reason;
use crate::gates::csrf;
use crate::identity::sessions::{ActiveSession, SessionError};
use crate::store::users::UserRecord;

/// The caller's session, when the request carries a session cookie and no
/// `Authorization`; unsafe methods must pass the CSRF checks. `Ok(None)`:
/// no session cookie at all.
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
pub(super) async fn session_of(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<Option<ActiveSession>, Response> {
    let settings = api.identity.sessions();
    let Some(token) = settings.cookie_value(headers).filter(|_| settings.enabled) else { return Ok(None) };
    if headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    match api.identity.session(token).await {
        Ok(active) => {
            csrf::check(
                method,
                csrf::request_host(uri, headers),
                headers,
                form_token,
                &active.record.csrf_token,
                &settings.allowed_origins,
            )
            .map_err(refuse)?;
            Ok(Some(active))
        }
        Err(SessionError::Store(_)) => Err(refuse(Reason::Internal)),
        Err(error) => Err(refuse(Reason::Unauthenticated { error: None, check: format!("session cookie: {error}") })),
    }
}

/// Opens a session for `user` (ending the one the browser presented, so a
/// planted session id never becomes a logged-in one) and answers with the
/// cookie and the CSRF token.
pub(super) async fn open(api: &Api, caller: &Caller, headers: &HeaderMap, user: &UserRecord) -> Response {
    let settings = api.identity.sessions();
    if let Some(old) = settings.cookie_value(headers)
        && api.identity.end_session(old).await.is_err()
    {
        return refuse(Reason::Internal);
    }
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let client_ip = caller.client_ip.map(|ip| ip.to_string());
    let (token, record) = match api.identity.create_session(&user.id, client_ip, user_agent).await {
        Ok(created) => created,
        Err(_) => return refuse(Reason::Internal),
    };
    let mut response = no_store_json(
        StatusCode::OK,
        &serde_json::json!({
            "csrf_token": record.csrf_token,
            "session": {"id": record.id, "expires_at": record.expires_at,
                        "idle_timeout": settings.idle_timeout.as_secs()},
            "user": {"id": user.id, "username": user.username, "roles": user.role_list()},
        }),
    );
    let max_age = i64::try_from(settings.absolute_timeout.as_secs()).unwrap_or(i64::MAX);
    match HeaderValue::from_str(&settings.cookie_header(&token, max_age)) {
        Ok(cookie) => {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(_) => refuse(Reason::Internal),
    }
}

/// The `Set-Cookie` that removes the session cookie.
pub(super) fn clear_cookie(api: &Api) -> Option<HeaderValue> {
    HeaderValue::from_str(&api.identity.sessions().cookie_header("", 0)).ok()
}

/// `GET /auth/csrf`: the session's CSRF token, for single-page apps.
pub(super) async fn csrf_token(State(api): State<Api>, uri: Uri, headers: HeaderMap) -> Response {
    match session_of(&api, &Method::GET, &uri, &headers, None).await {
        Ok(Some(active)) => no_store_json(StatusCode::OK, &serde_json::json!({"csrf_token": active.record.csrf_token})),
        Ok(None) => refuse(Reason::Unauthenticated { error: None, check: "no session cookie".into() }),
        Err(refusal) => refusal,
    }
}

/// Whose sessions: the session's user or the bearer token's.
async fn caller_id(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(String, Option<String>), Response> {
    if let Some(active) = session_of(api, method, uri, headers, None).await? {
        return Ok((active.claims.sub.clone(), Some(active.record.id)));
    }
    let Some(token) = bearer_token(headers) else {
        return Err(refuse(Reason::Unauthenticated { error: None, check: "no credentials presented".into() }));
    };
    let claims = api
        .identity
        .verify(token)
        .map_err(|e| refuse(Reason::Unauthenticated { error: Some("invalid_token"), check: e.to_string() }))?;
    Ok((claims.sub.clone(), None))
}

/// `GET /auth/sessions`: the caller's live sessions.
pub(super) async fn list(State(api): State<Api>, uri: Uri, headers: HeaderMap) -> Response {
    let (user_id, current) = match caller_id(&api, &Method::GET, &uri, &headers).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    match api.identity.live_sessions(&user_id).await {
        Ok(sessions) => {
            let sessions: Vec<_> = sessions
                .into_iter()
                .map(|s| {
                    let mut value = serde_json::to_value(&s).unwrap_or_default();
                    value["current"] = serde_json::Value::Bool(current.as_deref() == Some(s.id.as_str()));
                    value
                })
                .collect();
            no_store_json(StatusCode::OK, &serde_json::json!({ "sessions": sessions }))
        }
        Err(_) => refuse(Reason::Internal),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    id: String,
}

/// `POST /auth/sessions/revoke` `{"id"}`: ends one of the caller's sessions.
pub(super) async fn revoke(
    State(api): State<Api>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user_id, _) = match caller_id(&api, &Method::POST, &uri, &headers).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let request: RevokeRequest = match json_body(&headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    match crate::store::sessions::revoke(api.identity.store(), &request.id, Some(&user_id), crate::store::now()).await {
        Ok(true) => {
            caller.emit(&SecurityEvent::SessionEnded, Some(&user_id));
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => refuse(Reason::NotFound),
        Err(_) => refuse(Reason::Internal),
    }
}
