//! Security events: a filtered, paged list and a detail view.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};

use super::{Admin, Frame, html};
use crate::api::{Api, refuse};
use crate::audit::EventRecord;
use crate::error::Reason;
use crate::store::audit::EventFilter;

/// Events per page.
const PAGE: i64 = 50;

/// The filter form's values, as typed.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
struct FilterForm {
    action: String,
    user: String,
    ip: String,
    route: String,
    severity: String,
    hours: String,
    before: String,
}

/// An event row.
struct Row {
    id: String,
    time: String,
    action: String,
    severity: String,
    user: String,
    client_ip: String,
    place: String,
}

#[derive(Template)]
#[template(path = "admin/events.html")]
struct EventsPage {
    frame: Frame,
    filter: FilterForm,
    events: Vec<Row>,
    next_page: Option<String>,
}

fn time_of(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

pub(super) async fn list(State(api): State<Api>, admin: Admin, uri: Uri) -> Response {
    let form: FilterForm = uri.query().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
    let hours = form.hours.parse::<i64>().ok().filter(|h| (1..=8760).contains(h));
    let filter = EventFilter {
        action: Some(form.action.clone()),
        user: Some(form.user.clone()),
        ip: Some(form.ip.clone()),
        route: Some(form.route.clone()),
        severity: Some(form.severity.clone()),
        since: hours.map(|h| crate::store::now() * 1000 - h * 3_600_000),
        until: None,
        before: Some(form.before.clone()),
        limit: Some(PAGE),
    };
    let Ok(found) = crate::store::audit::list(api.identity.store(), &filter).await else {
        return refuse(Reason::Internal);
    };
    let next_page = (found.len() as i64 == PAGE).then(|| found.last().map(|e| e.id.clone())).flatten().map(|last| {
        let next = FilterForm { before: last, ..form.clone() };
        serde_urlencoded::to_string(&next).unwrap_or_default()
    });
    let events = found
        .into_iter()
        .map(|e| Row {
            time: time_of(e.at),
            place: e.route.clone().filter(|r| !r.is_empty()).unwrap_or(e.path),
            user: e.user.unwrap_or_default(),
            client_ip: e.client_ip.unwrap_or_default(),
            id: e.id,
            action: e.action,
            severity: e.severity,
        })
        .collect();
    let page = EventsPage { frame: admin.frame("events", &uri), filter: form, events, next_page };
    html(&api, StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "admin/event.html")]
struct EventPage {
    frame: Frame,
    event: EventRecord,
    fields: Vec<(&'static str, String)>,
}

pub(super) async fn detail(State(api): State<Api>, Path(id): Path<String>, admin: Admin, uri: Uri) -> Response {
    let event = match crate::store::audit::find(api.identity.store(), &id).await {
        Ok(Some(event)) => event,
        Ok(None) => return refuse(Reason::NotFound),
        Err(_) => return refuse(Reason::Internal),
    };
    let fields = vec![
        ("Time (UTC)", time_of(event.at)),
        ("Event", event.action.clone()),
        ("Severity", event.severity.clone()),
        ("Category", event.category.clone()),
        ("Outcome", event.outcome.clone()),
        ("Reason", event.reason.clone()),
        ("User or client", event.user.clone().unwrap_or_default()),
        ("Target", event.target.clone().unwrap_or_default()),
        ("Client IP", event.client_ip.clone().unwrap_or_default()),
        ("Method", event.method.clone()),
        ("Path", event.path.clone()),
        ("Route", event.route.clone().unwrap_or_default()),
        ("Request id", event.request_id.clone()),
        ("Instance", event.instance.clone()),
        ("Event id", event.id.clone()),
    ];
    html(&api, StatusCode::OK, &EventPage { frame: admin.frame("events", &uri), event, fields })
}
