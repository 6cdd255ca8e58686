//! The admin panel at `/admin` (server-rendered HTML, templates compiled
//! into the binary) and the JSON admin API at `/admin/api/*`.
//!
//! Pages need a browser session of a user with role `admin`; without one
//! they redirect to `/admin/login`. Every form carries the session's CSRF
//! token in a hidden `csrf_token` field and passes the origin checks of
//! [`crate::gates::csrf`]. Pages use no inline script or style, so their
//! Content-Security-Policy is `default-src 'self'`. Every change is an
//! `admin.<action>` security event naming the administrator and the target.

mod api;
mod directory;
mod events;
mod json;
mod overview;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};

pub(crate) use api::ADMIN_ROLE;
pub(super) use api::require_admin;

use super::{Api, Caller, refuse};
use crate::audit::SecurityEvent;
use crate::error::Reason;
use crate::gates::headers::RouteHeaderPolicy;
use crate::identity::sessions::ActiveSession;

/// The Content-Security-Policy of admin pages.
const ADMIN_CSP: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The admin routes.
pub(super) fn router() -> Router<Api> {
    Router::new()
        .route("/admin", get(overview::dashboard))
        .route("/admin/login", get(overview::login_page).post(overview::login))
        .route("/admin/logout", post(overview::logout))
        .route("/admin/static/admin.css", get(stylesheet))
        .route("/admin/users", get(directory::users).post(directory::create_user))
        .route("/admin/users/{name}", get(directory::user))
        .route("/admin/users/{name}/{action}", post(directory::change_user))
        .route("/admin/users/{name}/tokens/revoke", post(directory::revoke_tokens))
        .route("/admin/users/{name}/sessions/{id}/revoke", post(directory::end_session))
        .route("/admin/clients", get(directory::clients).post(directory::create_client))
        .route("/admin/clients/{id}/remove", post(directory::remove_client))
        .route("/admin/keys", get(directory::keys))
        .route("/admin/keys/rotate", post(directory::rotate_key))
        .route("/admin/events", get(events::list))
        .route("/admin/events/{id}", get(events::detail))
        .route("/admin/config", get(overview::configuration))
        .route("/admin/api/events", get(api::events))
        .route("/admin/api/events/{id}", get(json::event))
        .route("/admin/api/users", get(json::users).post(json::create_user))
        .route("/admin/api/users/{name}", get(json::user))
        .route("/admin/api/users/{name}/{action}", post(json::change_user))
        .route("/admin/api/users/{name}/tokens/revoke", post(json::revoke_tokens))
        .route("/admin/api/users/{name}/sessions/{id}/revoke", post(json::end_session))
        .route("/admin/api/clients", get(json::clients).post(json::create_client))
        .route("/admin/api/clients/{id}/remove", post(json::remove_client))
        .route("/admin/api/keys", get(json::keys))
        .route("/admin/api/keys/rotate", post(json::rotate_key))
        .method_not_allowed_fallback(|| async {
            refuse(Reason::MethodNotAllowed { allowed: vec![Method::GET, Method::HEAD, Method::POST] })
        })
}

async fn stylesheet() -> Response {
    let mut response = include_str!("../../../templates/admin/admin.css").into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

/// What every page's frame shows.
#[derive(Debug, Default)]
pub(super) struct Frame {
    /// The navigation (absent on the sign-in page).
    pub nav: Option<Nav>,
    /// A confirmation.
    pub notice: Option<String>,
    /// A problem.
    pub error: Option<String>,
}

/// The signed-in administrator, for the navigation.
#[derive(Debug)]
pub(super) struct Nav {
    /// The current page's key.
    pub page: &'static str,
    /// The administrator's name.
    pub username: String,
    /// The session's CSRF token (for the sign-out form).
    pub csrf: String,
}

/// A signed-in administrator.
pub(super) struct Admin {
    session: ActiveSession,
}

impl Admin {
    /// The frame of page `page`, with the `done` notice of a redirect.
    fn frame(&self, page: &'static str, uri: &Uri) -> Frame {
        let outcome = uri
            .query()
            .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "done").map(|(_, v)| v))
            .and_then(|code| outcome_message(&code));
        let (notice, error) = match outcome {
            Some((false, text)) => (Some(text.to_owned()), None),
            Some((true, text)) => (None, Some(text.to_owned())),
            None => (None, None),
        };
        Frame {
            nav: Some(Nav { page, username: self.username().to_owned(), csrf: self.csrf().to_owned() }),
            notice,
            error,
        }
    }

    fn csrf(&self) -> &str {
        &self.session.record.csrf_token
    }

    fn username(&self) -> &str {
        self.session.claims.username.as_deref().unwrap_or("")
    }

    /// Records an administrative change as a security event.
    fn record(&self, caller: &Caller, action: &'static str, target: &str) {
        caller.emit(&SecurityEvent::AdminAction { action, target: target.to_owned() }, Some(&self.session.claims.sub));
    }
}

/// The administrator of a page request: their session, or the redirect to
/// the sign-in page (or 403 for a signed-in non-administrator).
impl FromRequestParts<Api> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Response> {
        admin_session(api, &Method::GET, &parts.uri, &parts.headers, None).await
    }
}

/// A submitted admin form (the body, already limited to 64 KiB by the built-in stack).
impl FromRequest<Api> for AdminForm {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, api: &Api) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, crate::stack::BUILTIN_MAX_BODY as usize)
            .await
            .map_err(|_| refuse(Reason::BadRequest { detail: "The form could not be read.".into() }))?;
        Self::read(api, &parts.uri, &parts.headers, &body).await
    }
}

#[allow(clippy::result_large_err, reason = "the error is the response, returned at once")]
async fn admin_session(
    api: &Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<Admin, Response> {
    match super::sessions::session_of(api, method, uri, headers, form_token).await {
        Ok(Some(session)) if session.claims.roles.iter().any(|r| r == ADMIN_ROLE) => Ok(Admin { session }),
        Ok(Some(_)) => Err(refuse(Reason::Forbidden { rule: format!("the admin panel requires role `{ADMIN_ROLE}`") })),
        Ok(None) => Err(see_other("/admin/login")),
        Err(refusal) if refusal.status() == StatusCode::UNAUTHORIZED => Err(see_other("/admin/login")),
        Err(refusal) => Err(refusal),
    }
}

/// A submitted form: its fields, after the administrator and CSRF checks.
pub(super) struct AdminForm {
    admin: Admin,
    fields: Vec<(String, String)>,
}

impl AdminForm {
    /// Reads an `application/x-www-form-urlencoded` body and checks the
    /// session, the role and the CSRF token it carries.
    #[allow(clippy::result_large_err, reason = "the error is the response, returned at once")]
    async fn read(api: &Api, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Self, Response> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !form {
            return Err(refuse(Reason::UnsupportedMediaType { expected: "application/x-www-form-urlencoded" }));
        }
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| refuse(Reason::BadRequest { detail: "The form could not be read.".into() }))?;
        let tokens: Vec<&str> = fields.iter().filter(|(k, _)| k == "csrf_token").map(|(_, v)| v.as_str()).collect();
        let token = match tokens.as_slice() {
            [one] => Some(*one),
            [] => None,
            _ => return Err(refuse(Reason::CsrfFailed { check: "two csrf_token fields".into() })),
        };
        let admin = admin_session(api, &Method::POST, uri, headers, token).await?;
        Ok(Self { admin, fields })
    }

    /// Field `name`, trimmed (empty when absent).
    fn field(&self, name: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }
}

/// Renders `page` with the admin panel's CSP (the global header policy otherwise).
fn html(api: &Api, status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(text) => {
            let mut response = (status, text).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            // `same-origin` referrers: with `no-referrer`, browsers send
            // `Origin: null` on form posts and the origin check could not pass.
            let policy = api
                .shared
                .config
                .headers
                .with_header(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(ADMIN_CSP))
                .with_header(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("same-origin"));
            response.extensions_mut().insert(RouteHeaderPolicy(std::sync::Arc::new(policy)));
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot render an admin page");
            refuse(Reason::Internal)
        }
    }
}

/// `303 See Other` to `location`.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Back to `path`, telling what happened by a fixed code (never free text,
/// so a link from elsewhere cannot put words in the panel's mouth).
fn done(path: &str, code: &str) -> Response {
    let query = serde_urlencoded::to_string([("done", code)]).unwrap_or_default();
    see_other(&format!("{path}?{query}"))
}

/// The text of an outcome code, and whether it reports a failure.
fn outcome_message(code: &str) -> Option<(bool, &'static str)> {
    Some(match code {
        "created" => (false, "User created."),
        "roles" => (false, "Roles saved."),
        "password" => (false, "Password reset; the user's sessions ended."),
        "disabled" => (false, "Disabled: the user's tokens and sessions stop working."),
        "enabled" => (false, "Enabled."),
        "unlocked" => (false, "Unlocked."),
        "tokens" => (false, "Refresh tokens revoked."),
        "session" => (false, "Session ended."),
        "client-removed" => (false, "Client removed."),
        "key-rotated" => (false, "A new signing key is in use; running instances pick it up within 10 seconds."),
        "taken" => (true, "Not done: that username is taken."),
        "username" => (true, "Not done: that username is not allowed."),
        "policy" => (true, "Not done: the password does not meet the password policy."),
        "name" => (true, "Not done: a role or scope name is not valid (letters, digits, - _ : .)."),
        "key-failed" => {
            (true, "The key could not be rotated (keys from the environment are rotated there; see the log).")
        }
        _ => return None,
    })
}

/// A unix time as `2026-12-02 14:05:09`, or `never`.
fn when(unix: Option<i64>) -> String {
    unix.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).ok()
        })
        .unwrap_or_else(|| "never".to_owned())
}
