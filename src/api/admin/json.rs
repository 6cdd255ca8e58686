//! The JSON admin API for scripts: the admin panel's operations under
//! `/admin/api/*`, for a bearer token with role `admin` (no cookies, so no
//! CSRF token). Changes are `admin.<action>` events like the panel's.
//! Every path is described in `/openapi.json`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::require_admin;
use crate::api::{Api, Caller, json_body, no_store_json, refuse};
use crate::audit::SecurityEvent;
use crate::config::secrets::Secret;
use crate::error::Reason;
use crate::identity::AdminError;
use crate::store::users::UserRecord;

/// A user as the API shows it (never the password hash).
fn user_json(user: &UserRecord) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "roles": user.role_list(),
        "disabled": user.is_disabled(),
        "locked_until": user.locked_until,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
    })
}

/// The calling administrator's id (a bearer token with role `admin`).
pub(super) struct ScriptAdmin(String);

impl axum::extract::FromRequestParts<Api> for ScriptAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut http::request::Parts, api: &Api) -> Result<Self, Response> {
        require_admin(api, &parts.headers).map(|claims| Self(claims.sub.clone()))
    }
}

fn record(caller: &Caller, admin: &str, action: &'static str, target: &str) {
    caller.emit(&SecurityEvent::AdminAction { action, target: target.to_owned() }, Some(admin));
}

/// An [`AdminError`] as a problem.
fn admin_error(error: &AdminError) -> Response {
    match error {
        AdminError::NotFound(_) => refuse(Reason::NotFound),
        AdminError::Internal(_) => refuse(Reason::Internal),
        AdminError::Taken => refuse(Reason::Conflict { detail: error.to_string() }),
        other => refuse(Reason::Unprocessable { detail: other.to_string() }),
    }
}

pub(super) async fn users(State(api): State<Api>, _: ScriptAdmin, uri: Uri) -> Response {
    let query = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "q").map(|(_, v)| v.to_lowercase()))
        .unwrap_or_default();
    match crate::store::users::list(api.identity.store(), &query, 1000, 0).await {
        Ok(users) => no_store_json(StatusCode::OK, &json!({"users": users.iter().map(user_json).collect::<Vec<_>>()})),
        Err(_) => refuse(Reason::Internal),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    roles: Vec<String>,
}

pub(super) async fn create_user(
    State(api): State<Api>,
    ScriptAdmin(admin): ScriptAdmin,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let new: NewUser = match json_body(&headers, &body) {
        Ok(new) => new,
        Err(refusal) => return refusal,
    };
    let roles = if new.roles.is_empty() { vec!["user".to_owned()] } else { new.roles };
    match api.identity.add_user(&new.username, &Secret::new(new.password), &roles).await {
        Ok(user) => {
            record(&caller, &admin, "user-created", &user.username);
            no_store_json(StatusCode::CREATED, &user_json(&user))
        }
        Err(error) => admin_error(&error),
    }
}

pub(super) async fn user(State(api): State<Api>, _: ScriptAdmin, Path(name): Path<String>) -> Response {
    let user = match api.identity.find_user(&name).await {
        Ok(user) => user,
        Err(error) => return admin_error(&error),
    };
    match api.identity.live_sessions(&user.id).await {
        Ok(sessions) => no_store_json(StatusCode::OK, &json!({"user": user_json(&user), "sessions": sessions})),
        Err(_) => refuse(Reason::Internal),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Change {
    roles: Option<Vec<String>>,
    password: Option<String>,
}

/// `POST /admin/api/users/{name}/{roles|password|disable|enable|unlock}`.
pub(super) async fn change_user(
    State(api): State<Api>,
    ScriptAdmin(admin): ScriptAdmin,
    Path((name, action)): Path<(String, String)>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let change: Change = if body.is_empty() {
        Change::default()
    } else {
        match json_body(&headers, &body) {
            Ok(change) => change,
            Err(refusal) => return refusal,
        }
    };
    let identity = &api.identity;
    let missing = |field: &str| refuse(Reason::BadRequest { detail: format!("The body needs `{field}`.") });
    let (outcome, event) = match action.as_str() {
        "roles" => match &change.roles {
            Some(roles) => (identity.set_roles(&name, roles).await, "roles-changed"),
            None => return missing("roles"),
        },
        "password" => match change.password {
            Some(password) => (identity.set_password(&name, &Secret::new(password)).await, "password-reset"),
            None => return missing("password"),
        },
        "disable" => (identity.disable(&name).await, "user-disabled"),
        "enable" => (identity.enable(&name).await, "user-enabled"),
        "unlock" => (identity.unlock(&name).await, "user-unlocked"),
        _ => return refuse(Reason::NotFound),
    };
    match outcome {
        Ok(()) => {
            record(&caller, &admin, event, &name);
            if action == "unlock" {
                caller.emit(&SecurityEvent::AccountUnlocked, Some(&name));
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => admin_error(&error),
    }
}

pub(super) async fn revoke_tokens(
    State(api): State<Api>,
    ScriptAdmin(admin): ScriptAdmin,
    Path(name): Path<String>,
    caller: Caller,
) -> Response {
    let user = match api.identity.find_user(&name).await {
        Ok(user) => user,
        Err(error) => return admin_error(&error),
    };
    match crate::store::tokens::revoke_user(api.identity.store(), &user.id, crate::store::now()).await {
        Ok(count) => {
            record(&caller, &admin, "refresh-tokens-revoked", &name);
            no_store_json(StatusCode::OK, &json!({"revoked": count}))
        }
        Err(_) => refuse(Reason::Internal),
    }
}

pub(super) async fn end_session(
    State(api): State<Api>,
    ScriptAdmin(admin): ScriptAdmin,
    Path((name, id)): Path<(String, String)>,
    caller: Caller,
) -> Response {
    let user = match api.identity.find_user(&name).await {
        Ok(user) => user,
        Err(error) => return admin_error(&error),
    };
    match crate::store::sessions::revoke(api.identity.store(), &id, Some(&user.id), crate::store::now()).await {
        Ok(true) => {
            record(&caller, &admin, "session-ended", &name);
            caller.emit(&SecurityEvent::SessionEnded, Some(&user.id));
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => refuse(Reason::NotFound),
        Err(_) => refuse(Reason::Internal),
    }
}

pub(super) async fn clients(State(api): State<Api>, _: ScriptAdmin) -> Response {
    match crate::store::clients::list(api.identity.store()).await {
        Ok(clients) => {
            let clients: Vec<Value> = clients
                .iter()
                .map(|c| {
                    json!({"client_id": c.client_id, "name": c.name, "scopes": c.scopes.split_whitespace().collect::<Vec<_>>(),
                           "disabled": c.disabled != 0, "created_at": c.created_at})
                })
                .collect();
            no_store_json(StatusCode::OK, &json!({ "clients": clients }))
        }
        Err(_) => refuse(Reason::Internal),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

pub(super) async fn create_client(
    State(api): State<Api>,
    ScriptAdmin(admin): ScriptAdmin,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let new: NewClient = match json_body(&headers, &body) {
        Ok(new) => new,
        Err(refusal) => return refusal,
    };
    match api.identity.add_client(&new.name, &new.scopes).await {
        Ok((client_id, secret)) => {
            record(&caller, &admin, "client-created", &client_id);
            no_store_json(StatusCode::CREATED, &json!({"client_id": client_id, "client_secret": secret}))
        }
        Err(error) => admin_error(&error),
    }
}

pub(super) async fn remove_client(
    State(api): State<Api>,
    ScriptAdmin(admin): ScriptAdmin,
    Path(id): Path<String>,
    caller: Caller,
) -> Response {
    match crate::store::clients::remove(api.identity.store(), &id).await {
        Ok(true) => {
            record(&caller, &admin, "client-removed", &id);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => refuse(Reason::NotFound),
        Err(_) => refuse(Reason::Internal),
    }
}

pub(super) async fn keys(State(api): State<Api>, _: ScriptAdmin) -> Response {
    let ring = api.identity.keys().ring();
    let keys: Vec<Value> = ring
        .keys()
        .into_iter()
        .map(|k| json!({"kid": k.kid, "alg": format!("{:?}", k.alg), "created_at": k.created_at, "retired_at": k.retired_at}))
        .collect();
    Json(json!({ "keys": keys })).into_response()
}

pub(super) async fn rotate_key(State(api): State<Api>, ScriptAdmin(admin): ScriptAdmin, caller: Caller) -> Response {
    match api.identity.keys().rotate() {
        Ok(kid) => {
            record(&caller, &admin, "key-rotated", &kid);
            no_store_json(StatusCode::OK, &json!({ "kid": kid }))
        }
        Err(error) => {
            tracing::error!(%error, "cannot rotate the signing key");
            refuse(Reason::Internal)
        }
    }
}

pub(super) async fn event(State(api): State<Api>, _: ScriptAdmin, Path(id): Path<String>) -> Response {
    match crate::store::audit::find(api.identity.store(), &id).await {
        Ok(Some(event)) => no_store_json(StatusCode::OK, &json!(event)),
        Ok(None) => refuse(Reason::NotFound),
        Err(_) => refuse(Reason::Internal),
    }
}
