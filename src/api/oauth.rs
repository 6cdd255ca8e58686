//! `/oauth/*`: the token endpoint (RFC 6749: `client_credentials` and
//! `refresh_token` grants), introspection (RFC 7662) and revocation
//! (RFC 7009). Clients authenticate with HTTP Basic or `client_id` and
//! `client_secret` in the form; errors use RFC 6749 §5.2's JSON format.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;

use super::{Api, Caller, no_store_json};
use crate::audit::SecurityEvent;
use crate::identity::{REFRESH_PREFIX, RefreshFailure};
use crate::store::clients::ClientRecord;

/// An RFC 6749 §5.2 error.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = no_store_json(status, &serde_json::json!({"error": error, "error_description": description}));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis\""));
    }
    response
}

#[derive(Deserialize, Default)]
struct OAuthForm {
    grant_type: Option<String>,
    scope: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<OAuthForm, Response> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "send application/x-www-form-urlencoded"));
    }
    // RFC 6749 §3.2: parameters must not repeat.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed form"))?;
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "a parameter is repeated"));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed form"))
}

/// Authenticates the client from Basic credentials or the form (not both).
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
async fn client(api: &Api, caller: &Caller, headers: &HeaderMap, form: &OAuthForm) -> Result<ClientRecord, Response> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| percent_decode(s);
            Some((decode(id), decode(secret)))
        });
    let (id, secret) = match (basic, &form.client_id, &form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            ));
        }
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => return Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication required")),
    };
    api.identity.authenticate_client(&id, &secret).await.map_err(|_| {
        let name: String = id.chars().filter(|c| !c.is_control()).take(64).collect();
        caller.emit(&SecurityEvent::ClientAuthenticationFailed, Some(&name));
        oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed")
    })
}

/// Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1).
fn percent_decode(text: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={text}"))
        .ok()
        .and_then(|mut v| v.pop())
        .map_or_else(|| text.to_owned(), |(_, value)| value)
}

/// `POST /oauth/token`.
pub(super) async fn token(State(api): State<Api>, caller: Caller, headers: HeaderMap, body: Bytes) -> Response {
    let form = match parse_form(&headers, &body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {
            let client = match client(&api, &caller, &headers, &form).await {
                Ok(client) => client,
                Err(response) => return response,
            };
            match api.identity.client_token(&client, form.scope.as_deref()) {
                Ok(pair) => {
                    caller.emit(&SecurityEvent::ClientTokenIssued, Some(&client.client_id));
                    no_store_json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "access_token": pair.access_token,
                            "token_type": "Bearer",
                            "expires_in": pair.expires_in,
                            "scope": pair.claims.scope,
                        }),
                    )
                }
                Err("invalid_scope") => {
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope not allowed for this client")
                }
                Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "token could not be issued"),
            }
        }
        Some("refresh_token") => {
            let Some(refresh) = form.refresh_token.as_deref() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required");
            };
            match api.identity.refresh(refresh).await {
                Ok((pair, _)) => no_store_json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "access_token": pair.access_token,
                        "token_type": "Bearer",
                        "expires_in": pair.expires_in,
                        "refresh_token": pair.refresh_token,
                    }),
                ),
                Err(RefreshFailure::Reused { user_id, family }) => {
                    caller.emit(&SecurityEvent::RefreshTokenReused { family }, Some(&user_id));
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token is invalid")
                }
                Err(RefreshFailure::Internal) => {
                    oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "try again")
                }
                Err(_) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "refresh token is invalid"),
            }
        }
        Some(_) => {
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "use client_credentials or refresh_token")
        }
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
}

/// The `token` parameter of a form sent by an authenticated client
/// (introspection and revocation), or the error answer.
#[allow(clippy::result_large_err, reason = "the error is the response, returned at once on a cold path")]
async fn token_of_authenticated_client(
    api: &Api,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Response> {
    let form = parse_form(headers, body)?;
    client(api, caller, headers, &form).await?;
    form.token.ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required"))
}

/// `POST /oauth/introspect` (client-authenticated): whether a token is active.
pub(super) async fn introspect(State(api): State<Api>, caller: Caller, headers: HeaderMap, body: Bytes) -> Response {
    let token = match token_of_authenticated_client(&api, &caller, &headers, &body).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let token = token.as_str();
    let inactive = || no_store_json(StatusCode::OK, &serde_json::json!({"active": false}));
    if token.starts_with(REFRESH_PREFIX) {
        return match crate::store::tokens::find_by_hash(api.identity.store(), &crate::identity::hash_opaque(token))
            .await
        {
            Ok(Some(record))
                if record.used_at.is_none()
                    && record.revoked_at.is_none()
                    && record.expires_at >= crate::store::now() =>
            {
                no_store_json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "sub": record.user_id,
                        "scope": record.scope,
                        "exp": record.expires_at,
                        "iat": record.created_at,
                    }),
                )
            }
            Ok(_) => inactive(),
            Err(_) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "try again"),
        };
    }
    match api.identity.verify(token) {
        Ok(claims) => no_store_json(
            StatusCode::OK,
            &serde_json::json!({
                "active": true,
                "token_type": "access_token",
                "sub": claims.sub,
                "username": claims.username,
                "client_id": claims.client_id,
                "scope": claims.scope,
                "roles": claims.roles,
                "exp": claims.exp,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "iss": claims.iss,
                "aud": claims.aud,
                "jti": claims.jti,
            }),
        ),
        Err(_) => inactive(),
    }
}

/// `POST /oauth/revoke` (client-authenticated): revokes an access or refresh
/// token. Answers 200 whether or not the token was known (RFC 7009 §2.2).
pub(super) async fn revoke(State(api): State<Api>, caller: Caller, headers: HeaderMap, body: Bytes) -> Response {
    let token = match token_of_authenticated_client(&api, &caller, &headers, &body).await {
        Ok(token) => token,
        Err(response) => return response,
    };
    let token = token.as_str();
    let outcome = if token.starts_with(REFRESH_PREFIX) {
        api.identity.revoke_refresh(token).await.map(|user| user.is_some())
    } else {
        match api.identity.verify(token) {
            Ok(claims) => api.identity.revoke_access(&claims).await.map(|()| true),
            Err(_) => Ok(false),
        }
    };
    match outcome {
        Ok(revoked) => {
            if revoked {
                caller.emit(&SecurityEvent::TokenRevoked, None);
            }
            StatusCode::OK.into_response()
        }
        Err(_) => oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again"),
    }
}
