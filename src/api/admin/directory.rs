//! Users (list, search, create, roles, disable, password, unlock, sessions,
//! refresh tokens), OAuth clients and signing keys.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};

use super::{Admin, AdminForm, Frame, done, html, when};
use crate::api::{Api, Caller, refuse};
use crate::audit::SecurityEvent;
use crate::config::secrets::Secret;
use crate::error::Reason;
use crate::identity::AdminError;

/// A user row.
struct UserRow {
    username: String,
    display_name: String,
    roles: String,
    state: &'static str,
    last_login: String,
}

fn state(user: &crate::store::users::UserRecord) -> &'static str {
    if user.is_disabled() {
        "disabled"
    } else if user.locked_until.is_some_and(|t| t > crate::store::now()) {
        "locked"
    } else {
        "active"
    }
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    frame: Frame,
    csrf: String,
    query: String,
    users: Vec<UserRow>,
}

pub(super) async fn users(State(api): State<Api>, admin: Admin, uri: Uri) -> Response {
    let query: String = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "q").map(|(_, v)| v))
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect();
    let Ok(found) = crate::store::users::list(api.identity.store(), &query.to_lowercase(), 500, 0).await else {
        return refuse(Reason::Internal);
    };
    let users = found
        .iter()
        .map(|u| UserRow {
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            roles: u.roles.clone(),
            state: state(u),
            last_login: when(u.last_login_at),
        })
        .collect();
    let page = UsersPage { frame: admin.frame("users", &uri), csrf: admin.csrf().to_owned(), query, users };
    html(&api, StatusCode::OK, &page)
}

/// The outcome code of a refused change (`None`: an internal failure).
fn failure(error: &AdminError) -> Option<&'static str> {
    match error {
        AdminError::Internal(_) | AdminError::NotFound(_) => None,
        AdminError::Taken => Some("taken"),
        AdminError::Username(_) => Some("username"),
        AdminError::Policy(_) => Some("policy"),
        AdminError::BadName(_) => Some("name"),
    }
}

fn roles_of(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

pub(super) async fn create_user(State(api): State<Api>, caller: Caller, form: AdminForm) -> Response {
    let password = Secret::new(form.field("password").to_owned());
    match api.identity.add_user(form.field("username"), &password, &roles_of(form.field("roles"))).await {
        Ok(user) => {
            form.admin.record(&caller, "user-created", &user.username);
            done(&format!("/admin/users/{}", user.username), "created")
        }
        Err(error) => match failure(&error) {
            Some(code) => done("/admin/users", code),
            None => refuse(Reason::Internal),
        },
    }
}

/// A session row.
struct SessionRow {
    id: String,
    created: String,
    last_seen: String,
    client_ip: String,
    user_agent: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    frame: Frame,
    csrf: String,
    user: crate::store::users::UserRecord,
    state: &'static str,
    disabled: bool,
    locked: bool,
    created: String,
    last_login: String,
    sessions: Vec<SessionRow>,
}

pub(super) async fn user(State(api): State<Api>, Path(name): Path<String>, admin: Admin, uri: Uri) -> Response {
    let user = match api.identity.find_user(&name).await {
        Ok(user) => user,
        Err(AdminError::NotFound(_)) => return refuse(Reason::NotFound),
        Err(_) => return refuse(Reason::Internal),
    };
    let Ok(live) = api.identity.live_sessions(&user.id).await else {
        return refuse(Reason::Internal);
    };
    let sessions = live
        .into_iter()
        .map(|s| SessionRow {
            created: when(Some(s.created_at)),
            last_seen: when(Some(s.last_seen_at)),
            client_ip: s.client_ip.unwrap_or_default(),
            user_agent: s.user_agent.unwrap_or_default(),
            id: s.id,
        })
        .collect();
    let page = UserPage {
        frame: admin.frame("users", &uri),
        csrf: admin.csrf().to_owned(),
        state: state(&user),
        disabled: user.is_disabled(),
        locked: user.locked_until.is_some_and(|t| t > crate::store::now()),
        created: when(Some(user.created_at)),
        last_login: when(user.last_login_at),
        sessions,
        user,
    };
    html(&api, StatusCode::OK, &page)
}

/// `POST /admin/users/{name}/{roles|password|disable|enable|unlock}`.
pub(super) async fn change_user(
    State(api): State<Api>,
    Path((name, action)): Path<(String, String)>,
    caller: Caller,
    form: AdminForm,
) -> Response {
    let identity = &api.identity;
    let (outcome, event, notice) = match action.as_str() {
        "roles" => (identity.set_roles(&name, &roles_of(form.field("roles"))).await, "roles-changed", "roles"),
        "password" => {
            let password = Secret::new(form.field("password").to_owned());
            (identity.set_password(&name, &password).await, "password-reset", "password")
        }
        "disable" => (identity.disable(&name).await, "user-disabled", "disabled"),
        "enable" => (identity.enable(&name).await, "user-enabled", "enabled"),
        "unlock" => (identity.unlock(&name).await, "user-unlocked", "unlocked"),
        _ => return refuse(Reason::NotFound),
    };
    let page = format!("/admin/users/{name}");
    match outcome {
        Ok(()) => {
            form.admin.record(&caller, event, &name);
            if action == "unlock" {
                caller.emit(&SecurityEvent::AccountUnlocked, Some(&name));
            }
            done(&page, notice)
        }
        Err(AdminError::NotFound(_)) => refuse(Reason::NotFound),
        Err(error) => match failure(&error) {
            Some(code) => done(&page, code),
            None => refuse(Reason::Internal),
        },
    }
}

pub(super) async fn revoke_tokens(
    State(api): State<Api>,
    Path(name): Path<String>,
    caller: Caller,
    form: AdminForm,
) -> Response {
    let Ok(user) = api.identity.find_user(&name).await else { return refuse(Reason::NotFound) };
    match crate::store::tokens::revoke_user(api.identity.store(), &user.id, crate::store::now()).await {
        Ok(count) => {
            form.admin.record(&caller, "refresh-tokens-revoked", &name);
            tracing::info!(count, "refresh tokens revoked from the admin panel");
            done(&format!("/admin/users/{name}"), "tokens")
        }
        Err(_) => refuse(Reason::Internal),
    }
}

pub(super) async fn end_session(
    State(api): State<Api>,
    Path((name, id)): Path<(String, String)>,
    caller: Caller,
    form: AdminForm,
) -> Response {
    let Ok(user) = api.identity.find_user(&name).await else { return refuse(Reason::NotFound) };
    match crate::store::sessions::revoke(api.identity.store(), &id, Some(&user.id), crate::store::now()).await {
        Ok(true) => {
            form.admin.record(&caller, "session-ended", &name);
            caller.emit(&SecurityEvent::SessionEnded, Some(&user.id));
            done(&format!("/admin/users/{name}"), "session")
        }
        Ok(false) => refuse(Reason::NotFound),
        Err(_) => refuse(Reason::Internal),
    }
}

/// A client row.
struct ClientRow {
    client_id: String,
    name: String,
    scopes: String,
    created: String,
}

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage {
    frame: Frame,
    csrf: String,
    clients: Vec<ClientRow>,
    created: Option<(String, String)>,
}

async fn clients_page(api: &Api, admin: &super::Admin, uri: &Uri, created: Option<(String, String)>) -> Response {
    let Ok(found) = crate::store::clients::list(api.identity.store()).await else {
        return refuse(Reason::Internal);
    };
    let clients = found
        .into_iter()
        .map(|c| ClientRow {
            client_id: c.client_id,
            name: c.name,
            scopes: c.scopes,
            created: when(Some(c.created_at)),
        })
        .collect();
    let page = ClientsPage { frame: admin.frame("clients", uri), csrf: admin.csrf().to_owned(), clients, created };
    html(api, StatusCode::OK, &page)
}

pub(super) async fn clients(State(api): State<Api>, admin: Admin, uri: Uri) -> Response {
    clients_page(&api, &admin, &uri, None).await
}

pub(super) async fn create_client(State(api): State<Api>, caller: Caller, uri: Uri, form: AdminForm) -> Response {
    match api.identity.add_client(form.field("name"), &roles_of(form.field("scopes"))).await {
        Ok((id, secret)) => {
            form.admin.record(&caller, "client-created", &id);
            // The secret is shown once, in this answer (not in a redirect URL).
            clients_page(&api, &form.admin, &uri, Some((id, secret))).await
        }
        Err(error) => match failure(&error) {
            Some(code) => done("/admin/clients", code),
            None => refuse(Reason::Internal),
        },
    }
}

pub(super) async fn remove_client(
    State(api): State<Api>,
    Path(id): Path<String>,
    caller: Caller,
    form: AdminForm,
) -> Response {
    match crate::store::clients::remove(api.identity.store(), &id).await {
        Ok(true) => {
            form.admin.record(&caller, "client-removed", &id);
            done("/admin/clients", "client-removed")
        }
        Ok(false) => refuse(Reason::NotFound),
        Err(_) => refuse(Reason::Internal),
    }
}

/// A key row.
struct KeyRow {
    kid: String,
    alg: String,
    created: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "admin/keys.html")]
struct KeysPage {
    frame: Frame,
    csrf: String,
    keys: Vec<KeyRow>,
}

pub(super) async fn keys(State(api): State<Api>, admin: Admin, uri: Uri) -> Response {
    let ring = api.identity.keys().ring();
    let keys = ring
        .keys()
        .into_iter()
        .map(|k| KeyRow {
            kid: k.kid.clone(),
            alg: format!("{:?}", k.alg),
            created: when(Some(k.created_at)),
            status: if k.retired_at.is_some() { "retired (verifies only)" } else { "active" },
        })
        .collect();
    let page = KeysPage { frame: admin.frame("keys", &uri), csrf: admin.csrf().to_owned(), keys };
    html(&api, StatusCode::OK, &page)
}

pub(super) async fn rotate_key(State(api): State<Api>, caller: Caller, form: AdminForm) -> Response {
    match api.identity.keys().rotate() {
        Ok(kid) => {
            form.admin.record(&caller, "key-rotated", &kid);
            done("/admin/keys", "key-rotated")
        }
        Err(error) => {
            tracing::error!(%error, "cannot rotate the signing key");
            done("/admin/keys", "key-failed")
        }
    }
}
