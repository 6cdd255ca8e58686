//! Sign in and out, the dashboard and the effective configuration.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode, Uri};

use super::{ADMIN_ROLE, Admin, AdminForm, Frame, html, see_other};
use crate::api::{Api, Caller, refuse};
use crate::audit::SecurityEvent;
use crate::error::Reason;
use crate::gates::csrf;

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    frame: Frame,
}

pub(super) async fn login_page(State(api): State<Api>) -> Response {
    html(&api, StatusCode::OK, &LoginPage { frame: Frame::default() })
}

/// The sign-in form: a session for an administrator (the same password
/// checks, lockout and events as `/auth/login`).
pub(super) async fn login(
    State(api): State<Api>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let failed = |api: &Api, message: &str| {
        let frame = Frame { error: Some(message.to_owned()), ..Frame::default() };
        html(api, StatusCode::UNAUTHORIZED, &LoginPage { frame })
    };
    if !api.identity.sessions().enabled {
        return failed(&api, "Browser sessions are turned off ([sessions] enabled = false): use the JSON admin API.");
    }
    if let Err(reason) =
        csrf::check_origin(csrf::request_host(&uri, &headers), &headers, &api.identity.sessions().allowed_origins)
    {
        return refuse(reason);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Form {
        username: String,
        password: String,
    }
    let Ok(form) = serde_urlencoded::from_bytes::<Form>(&body) else {
        return failed(&api, "Enter a username and a password.");
    };
    let password = crate::config::secrets::Secret::new(form.password);
    match api.identity.check_password(&form.username, &password).await {
        Ok(user) if user.role_list().iter().any(|r| r == ADMIN_ROLE) => {
            if crate::store::users::record_login(api.identity.store(), &user.id, crate::store::now()).await.is_err() {
                return refuse(Reason::Internal);
            }
            caller.emit(&SecurityEvent::LoginSucceeded, Some(&user.id));
            caller.emit(&SecurityEvent::SessionStarted, Some(&user.id));
            let mut response = crate::api::sessions::open(&api, &caller, &headers, &user).await;
            if response.status() == StatusCode::OK {
                *response.status_mut() = StatusCode::SEE_OTHER;
                response.headers_mut().insert(http::header::LOCATION, http::HeaderValue::from_static("/admin"));
                *response.body_mut() = axum::body::Body::empty();
            }
            response
        }
        Ok(user) => {
            // The same answer as a wrong password: the form must not confirm passwords.
            caller.emit(
                &SecurityEvent::Refused(Reason::Forbidden {
                    rule: format!("admin sign-in without role `{ADMIN_ROLE}`"),
                }),
                Some(&user.id),
            );
            failed(&api, "Wrong username or password, or not an administrator.")
        }
        Err(crate::identity::LoginFailure::Internal) => refuse(Reason::Internal),
        Err(failure) => {
            let name: String = form.username.chars().filter(|c| !c.is_control()).take(64).collect();
            caller.emit(&SecurityEvent::LoginFailed { reason: failure.to_string() }, Some(&name));
            if matches!(failure, crate::identity::LoginFailure::LockedNow { .. }) {
                caller.emit(&SecurityEvent::AccountLocked, Some(&name));
            }
            failed(&api, "Wrong username or password, or not an administrator.")
        }
    }
}

pub(super) async fn logout(State(api): State<Api>, caller: Caller, form: AdminForm) -> Response {
    if crate::store::sessions::revoke(api.identity.store(), &form.admin.session.record.id, None, crate::store::now())
        .await
        .is_err()
    {
        return refuse(Reason::Internal);
    }
    caller.emit(&SecurityEvent::SessionEnded, Some(&form.admin.session.claims.sub));
    let mut response = see_other("/admin/login");
    if let Some(clear) = crate::api::sessions::clear_cookie(&api) {
        response.headers_mut().insert(http::header::SET_COOKIE, clear);
    }
    response
}

/// One row of the refusals table.
struct ReasonRow {
    label: &'static str,
    count: i64,
    width: i64,
}

/// One time bucket of the chart.
struct Bar {
    x: i64,
    refusals_y: i64,
    refusals_h: i64,
    logins_y: i64,
    logins_h: i64,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct Dashboard {
    frame: Frame,
    window: &'static str,
    requests: u64,
    refusals_total: i64,
    failed_logins: i64,
    sessions: i64,
    by_reason: Vec<ReasonRow>,
    chart: Vec<Bar>,
    chart_width: i64,
    chart_max: i64,
    bucket_name: &'static str,
}

/// The dashboard's group of a refusal event, if it is one.
fn refusal_group(action: &str) -> Option<&'static str> {
    let slug = action.strip_prefix("request.")?;
    Some(match slug {
        "unauthenticated"
        | "invalid-credentials"
        | "invalid-refresh-token"
        | "fresh-login-required"
        | "untrusted-peer" => "Authentication",
        "forbidden" => "Authorization",
        "csrf-failed" => "CSRF",
        "malformed-json"
        | "invalid-body"
        | "invalid-parameters"
        | "unsupported-media-type"
        | "bad-request"
        | "unprocessable" => "Validation",
        "rate-limited" | "rate-limit-unavailable" | "overloaded" => "Rate limit and load",
        "payload-too-large" | "headers-too-large" | "uri-too-long" | "request-timeout" => "Size and time",
        "bad-path" | "ambiguous-request" => "Path and framing",
        _ => return None,
    })
}

pub(super) async fn dashboard(State(api): State<Api>, admin: Admin, uri: Uri) -> Response {
    let day = uri.query().is_some_and(|q| q.contains("window=day"));
    let (window, span_ms, bucket_ms, bucket_name) =
        if day { ("day", 86_400_000, 3_600_000, "hour") } else { ("hour", 3_600_000, 120_000, "two minutes") };
    let now_ms = crate::store::now() * 1000;
    let since = now_ms - span_ms;
    let store = api.identity.store();
    let (counts, buckets, sessions) = match (
        crate::store::audit::count_by_action(store, since).await,
        crate::store::audit::count_by_bucket(store, since, bucket_ms).await,
        crate::store::sessions::count_live(store, crate::store::now()).await,
    ) {
        (Ok(c), Ok(b), Ok(s)) => (c, b, s),
        _ => return refuse(Reason::Internal),
    };
    let mut groups: Vec<(&'static str, i64)> = Vec::new();
    let mut failed_logins = 0;
    for (action, count) in &counts {
        if action == "login.failure" {
            failed_logins += count;
        }
        if let Some(group) = refusal_group(action) {
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some(entry) => entry.1 += count,
                None => groups.push((group, *count)),
            }
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    let top = groups.first().map_or(1, |g| g.1.max(1));
    let by_reason =
        groups.iter().map(|(label, count)| ReasonRow { label, count: *count, width: count * 200 / top }).collect();
    let slots = span_ms / bucket_ms;
    let first_bucket = since / bucket_ms;
    let mut series = vec![(0i64, 0i64); usize::try_from(slots + 1).unwrap_or(0)];
    for (bucket, action, count) in &buckets {
        let Some(slot) = usize::try_from(bucket - first_bucket).ok().filter(|s| *s < series.len()) else { continue };
        if action == "login.failure" {
            series[slot].1 += count;
        } else if refusal_group(action).is_some() {
            series[slot].0 += count;
        }
    }
    let chart_max = series.iter().map(|(r, l)| (*r).max(*l)).max().unwrap_or(0).max(1);
    let scale = |v: i64| v * 110 / chart_max;
    let chart = series
        .iter()
        .zip(0i64..)
        .map(|((refusals, logins), i)| Bar {
            x: i * 12,
            refusals_y: 120 - scale(*refusals),
            refusals_h: scale(*refusals),
            logins_y: 120 - scale(*logins),
            logins_h: scale(*logins),
        })
        .collect::<Vec<_>>();
    let page = Dashboard {
        frame: admin.frame("dashboard", &uri),
        window,
        requests: crate::metrics::global().requests_answered(),
        refusals_total: groups.iter().map(|g| g.1).sum(),
        failed_logins,
        sessions,
        by_reason,
        chart_width: i64::try_from(chart.len()).unwrap_or(0) * 12,
        chart,
        chart_max,
        bucket_name,
    };
    html(&api, StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "admin/config.html")]
struct ConfigPage {
    frame: Frame,
    source: String,
    overrides: String,
    text: String,
}

pub(super) async fn configuration(State(api): State<Api>, admin: Admin, uri: Uri) -> Response {
    let config = &api.shared.config;
    let page = ConfigPage {
        frame: admin.frame("config", &uri),
        source: config.source.clone(),
        overrides: config.overrides.join(", "),
        // The validated configuration holds no secret: they come only from
        // the environment and are never stored in it.
        text: format!("{config:#?}"),
    };
    html(&api, StatusCode::OK, &page)
}
