//! `/auth/*`: password login, refresh, logout, the caller's identity, and
//! optional self-registration.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{Api, Caller, bearer_token, json_body, no_store_json, refuse};
use crate::audit::SecurityEvent;
use crate::config::secrets::Secret;
use crate::error::Reason;
use crate::identity::{AdminError, LoginFailure, RefreshFailure, TokenPair};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
    /// A browser session (cookie) instead of tokens.
    #[serde(default)]
    session: bool,
}

/// Login credentials from JSON, or from an HTML form (which means a session).
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
fn credentials(headers: &HeaderMap, body: &[u8]) -> Result<Credentials, Response> {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form {
        return json_body(headers, body);
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Form {
        username: String,
        password: String,
    }
    serde_urlencoded::from_bytes::<Form>(body)
        .map(|f| Credentials { username: f.username, password: f.password, session: true })
        .map_err(|_| refuse(Reason::BadRequest { detail: "The form needs exactly username and password.".into() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

fn token_response(pair: &TokenPair) -> Response {
    let mut body = serde_json::json!({
        "access_token": pair.access_token,
        "token_type": "Bearer",
        "expires_in": pair.expires_in,
    });
    if let Some(refresh) = &pair.refresh_token {
        body["refresh_token"] = serde_json::Value::from(refresh.as_str());
    }
    no_store_json(StatusCode::OK, &body)
}

/// A username fit for a log line: at most 64 visible characters.
fn loggable(username: &str) -> String {
    username.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `POST /auth/login` `{"username", "password"}` (tokens), with
/// `"session": true` or as a form (a browser session cookie).
pub(super) async fn login(
    State(api): State<Api>,
    caller: Caller,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let credentials = match credentials(&headers, &body) {
        Ok(c) => c,
        Err(response) => return response,
    };
    if credentials.session {
        if !api.identity.sessions().enabled {
            return refuse(Reason::BadRequest { detail: "Browser sessions are turned off.".into() });
        }
        // Login CSRF: a foreign page must not log the browser into another account.
        if let Err(reason) = crate::gates::csrf::check_origin(
            crate::gates::csrf::request_host(&uri, &headers),
            &headers,
            &api.identity.sessions().allowed_origins,
        ) {
            return refuse(reason);
        }
    }
    let password = Secret::new(credentials.password);
    let outcome = if credentials.session {
        api.identity.check_password(&credentials.username, &password).await.map(|user| (None, user))
    } else {
        api.identity.login(&credentials.username, &password).await.map(|(pair, user)| (Some(pair), user))
    };
    match outcome {
        Ok((Some(pair), user)) => {
            caller.emit(&SecurityEvent::LoginSucceeded, Some(&user.id));
            token_response(&pair)
        }
        Ok((None, user)) => {
            if crate::store::users::record_login(api.identity.store(), &user.id, crate::store::now()).await.is_err() {
                return refuse(Reason::Internal);
            }
            caller.emit(&SecurityEvent::LoginSucceeded, Some(&user.id));
            caller.emit(&SecurityEvent::SessionStarted, Some(&user.id));
            super::sessions::open(&api, &caller, &headers, &user).await
        }
        Err(LoginFailure::Internal) => refuse(Reason::Internal),
        Err(failure) => {
            let name = loggable(&credentials.username);
            caller.emit(&SecurityEvent::LoginFailed { reason: failure.to_string() }, Some(&name));
            if matches!(failure, LoginFailure::LockedNow { .. }) {
                caller.emit(&SecurityEvent::AccountLocked, Some(&name));
            }
            refuse(Reason::InvalidCredentials)
        }
    }
}

/// `POST /auth/refresh` `{"refresh_token"}`: a new pair; the old token is used up.
pub(super) async fn refresh(State(api): State<Api>, caller: Caller, headers: HeaderMap, body: Bytes) -> Response {
    let request: RefreshRequest = match json_body(&headers, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    match api.identity.refresh(&request.refresh_token).await {
        Ok((pair, _)) => token_response(&pair),
        Err(RefreshFailure::Internal) => refuse(Reason::Internal),
        Err(RefreshFailure::Reused { user_id, family }) => {
            caller.emit(&SecurityEvent::RefreshTokenReused { family }, Some(&user_id));
            refuse(Reason::InvalidRefreshToken)
        }
        Err(_) => refuse(Reason::InvalidRefreshToken),
    }
}

/// `POST /auth/logout` `{"refresh_token"}` and/or a bearer token: revokes
/// the refresh token's family and the access token.
pub(super) async fn logout(
    State(api): State<Api>,
    caller: Caller,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: LogoutRequest = if body.is_empty() {
        LogoutRequest::default()
    } else {
        match json_body(&headers, &body) {
            Ok(r) => r,
            Err(response) => return response,
        }
    };
    let mut subject = None;
    let mut ended_session = false;
    match super::sessions::session_of(&api, &http::Method::POST, &uri, &headers, None).await {
        Ok(Some(active)) => {
            let token = api.identity.sessions().cookie_value(&headers).unwrap_or_default();
            if api.identity.end_session(token).await.is_err() {
                return refuse(Reason::Internal);
            }
            subject = Some(active.claims.sub.clone());
            ended_session = true;
        }
        Ok(None) => {}
        Err(refusal) => return refusal,
    }
    if let Some(token) = bearer_token(&headers)
        && let Ok(claims) = api.identity.verify(token)
    {
        if api.identity.revoke_access(&claims).await.is_err() {
            return refuse(Reason::Internal);
        }
        subject = Some(claims.sub.clone());
    }
    if let Some(refresh) = &request.refresh_token {
        match api.identity.revoke_refresh(refresh).await {
            Ok(user) => subject = subject.or(user),
            Err(_) => return refuse(Reason::Internal),
        }
    }
    if subject.is_none() {
        return refuse(Reason::Unauthenticated {
            error: Some("invalid_token"),
            check: "logout without a valid token".into(),
        });
    }
    if ended_session {
        caller.emit(&SecurityEvent::SessionEnded, subject.as_deref());
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(clear) = super::sessions::clear_cookie(&api) {
            response.headers_mut().insert(http::header::SET_COOKIE, clear);
        }
        return response;
    }
    caller.emit(&SecurityEvent::TokenRevoked, subject.as_deref());
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /auth/me`: who the bearer token belongs to.
pub(super) async fn me(State(api): State<Api>, headers: HeaderMap) -> Response {
    let Some(token) = bearer_token(&headers) else {
        return refuse(Reason::Unauthenticated { error: None, check: "no bearer token".into() });
    };
    match api.identity.verify(token) {
        Ok(claims) => no_store_json(
            StatusCode::OK,
            &serde_json::json!({
                "sub": claims.sub,
                "username": claims.username,
                "client_id": claims.client_id,
                "roles": claims.roles,
                "scope": claims.scope,
                "auth_time": claims.auth_time,
                "exp": claims.exp,
            }),
        ),
        Err(error) => refuse(Reason::Unauthenticated { error: Some("invalid_token"), check: error.to_string() }),
    }
}

/// `POST /auth/register` `{"username", "password"}` when `login.allow_registration`
/// is on. Always creates role `user`; any other field is refused.
pub(super) async fn register(State(api): State<Api>, caller: Caller, headers: HeaderMap, body: Bytes) -> Response {
    if !api.identity.registration_open() {
        return refuse(Reason::NotFound);
    }
    let credentials: Credentials = match json_body(&headers, &body) {
        Ok(c) => c,
        Err(response) => return response,
    };
    match api.identity.register(&credentials.username, &Secret::new(credentials.password)).await {
        Ok(user) => {
            caller.emit(&SecurityEvent::UserRegistered, Some(&user.id));
            (StatusCode::CREATED, axum::Json(serde_json::json!({"id": user.id, "username": user.display_name})))
                .into_response()
        }
        Err(AdminError::Taken) => refuse(Reason::Conflict { detail: "This username is taken.".into() }),
        Err(AdminError::Username(e)) => refuse(Reason::Unprocessable { detail: e.to_string() }),
        Err(AdminError::Policy(e)) => refuse(Reason::Unprocessable { detail: e.to_string() }),
        Err(_) => refuse(Reason::Internal),
    }
}
