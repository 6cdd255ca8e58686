//! `[audit]`, `[metrics]`, `[[alert]]`, `[sessions]` and `[tracing]`.

use std::time::Duration;

use http::Uri;
use http::uri::Scheme;

use super::Validator;
use crate::audit::alerts::GroupBy;
use crate::config::file::{AlertSection, FileConfig};
use crate::config::units::parse_size;
use crate::config::{AlertConfig, AuditConfig, MetricsConfig, TracingConfig, Webhook};
use crate::gates::headers::OFF;
use crate::identity::sessions::SessionSettings;

/// Default retention of stored events.
const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

pub(super) fn validate_audit(v: &mut Validator<'_>, raw: &FileConfig) -> AuditConfig {
    let a = &raw.audit;
    let retention = match a.retention.as_ref() {
        Some(value) if value.get_ref() == "forever" => None,
        other => Some(v.duration(other, "audit.retention", DEFAULT_RETENTION)),
    };
    let spool_max_bytes = match a.spool_max.as_ref() {
        None => 64 << 20,
        Some(value) => match parse_size(value.get_ref()) {
            Ok(n) if n >= 64 << 10 => n,
            Ok(_) => {
                v.error(value, "`audit.spool_max` must be at least 64KiB");
                64 << 20
            }
            Err(e) => {
                v.error(value, format!("`audit.spool_max`: {e}"));
                64 << 20
            }
        },
    };
    let alerts = raw.alerts.iter().filter_map(|section| validate_alert(v, section.get_ref())).collect();
    AuditConfig { retention, spool_max_bytes, alerts }
}

fn validate_alert(v: &mut Validator<'_>, s: &AlertSection) -> Option<AlertConfig> {
    let name = s.name.get_ref().trim().to_owned();
    if name.is_empty() {
        v.error(&s.name, "`name` must not be empty");
    }
    let event = s.event.get_ref();
    let prefix = event.strip_suffix('*').unwrap_or(event);
    if event.is_empty() || !prefix.chars().all(|c| c.is_ascii_lowercase() || c == '.' || c == '-') {
        v.error(&s.event, "`event` must be an event name like \"login.failure\" or a prefix like \"request.*\"");
    }
    let threshold = *s.threshold.get_ref();
    if !(1..=100_000).contains(&threshold) {
        v.error(&s.threshold, "`threshold` must be between 1 and 100000");
    }
    let window = v.duration(Some(&s.window), "window", Duration::from_secs(300));
    if window > Duration::from_secs(86_400) {
        v.error(&s.window, "`window` must be at most 1d");
    }
    let cooldown = v.duration(s.cooldown.as_ref(), "cooldown", window);
    let group_by = match s.group_by.as_ref().map(|g| (g, g.get_ref().as_str())) {
        None => GroupBy::Nothing,
        Some((_, "user")) => GroupBy::User,
        Some((_, "ip")) => GroupBy::Ip,
        Some((_, "route")) => GroupBy::Route,
        Some((value, _)) => {
            v.error(value, "`group_by` must be \"user\", \"ip\" or \"route\"");
            GroupBy::Nothing
        }
    };
    let webhook = match (&s.webhook, &s.webhook_env) {
        (Some(_), Some(env)) => {
            v.error(env, "set `webhook` or `webhook_env`, not both");
            None
        }
        (Some(url), None) => webhook_url(url.get_ref()).map(Webhook::Url).or_else(|| {
            v.error(url, "`webhook` must be an http or https URL");
            None
        }),
        (None, Some(env)) => {
            let name = env.get_ref();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                v.error(env, "`webhook_env` must be an environment variable name like \"ALERT_WEBHOOK_URL\"");
            }
            Some(Webhook::Env(name.clone()))
        }
        (None, None) => None,
    };
    Some(AlertConfig {
        name,
        event: event.clone(),
        threshold: usize::try_from(threshold).unwrap_or(1),
        window,
        cooldown,
        group_by,
        webhook,
    })
}

/// An http(s) URL with a host, or `None`.
pub fn webhook_url(text: &str) -> Option<Uri> {
    let uri: Uri = text.parse().ok()?;
    (matches!(uri.scheme(), Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS) && uri.host().is_some())
        .then_some(uri)
}

pub(super) fn validate_metrics(v: &mut Validator<'_>, raw: &FileConfig) -> MetricsConfig {
    let m = &raw.metrics;
    let listen = match m.listen.as_ref() {
        None => None,
        Some(value) if value.get_ref() == OFF => None,
        other => v.addr(other, "metrics.listen", ""),
    };
    let allow = match m.allow.as_ref() {
        None => ["127.0.0.0/8", "::1/128"].iter().filter_map(|n| n.parse().ok()).collect(),
        Some(entries) => v.networks(entries, "metrics.allow"),
    };
    MetricsConfig { listen, allow }
}

pub(super) fn validate_sessions(v: &mut Validator<'_>, raw: &FileConfig) -> SessionSettings {
    let s = &raw.sessions;
    let defaults = SessionSettings::default();
    let cookie = match s.cookie.as_ref() {
        None => defaults.cookie.clone(),
        Some(value) => {
            let name = value.get_ref();
            let valid = name.starts_with("__Host-")
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !valid {
                v.error(value, "`sessions.cookie` must start with `__Host-` and use only letters, digits, - and _");
            }
            name.clone()
        }
    };
    let idle_timeout = v.duration(s.idle_timeout.as_ref(), "sessions.idle_timeout", defaults.idle_timeout);
    let absolute_timeout =
        v.duration(s.absolute_timeout.as_ref(), "sessions.absolute_timeout", defaults.absolute_timeout);
    let same_site = match s.same_site.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "lax")) => "Lax",
        Some((_, "strict")) => "Strict",
        Some((value, _)) => {
            v.error(
                value,
                "`sessions.same_site` must be \"lax\" or \"strict\" (None would send the cookie cross-site)",
            );
            "Lax"
        }
    };
    let mut allowed_origins = Vec::new();
    for origin in s.allowed_origins.iter().flatten() {
        match origin.get_ref().parse::<Uri>() {
            Ok(uri) if uri.scheme() == Some(&Scheme::HTTPS) && uri.host().is_some() && uri.path() == "/" => {
                allowed_origins.push(origin.get_ref().trim_end_matches('/').to_owned());
            }
            _ => v.error(
                origin,
                "`sessions.allowed_origins` entries must be https origins like \"https://app.example.com\"",
            ),
        }
    }
    SessionSettings {
        enabled: s.enabled.unwrap_or(true),
        cookie,
        idle_timeout,
        absolute_timeout,
        same_site,
        allowed_origins,
    }
}

pub(super) fn validate_tracing(v: &mut Validator<'_>, raw: &FileConfig) -> TracingConfig {
    let t = &raw.tracing;
    let otlp_endpoint = match t.otlp_endpoint.as_ref() {
        None => None,
        Some(value) if value.get_ref() == OFF => None,
        Some(value) => webhook_url(value.get_ref()).or_else(|| {
            v.error(
                value,
                "`tracing.otlp_endpoint` must be an http or https URL like \"http://127.0.0.1:4318/v1/traces\"",
            );
            None
        }),
    };
    let sample_ratio = match t.sample_ratio.as_ref() {
        None => 1.0,
        Some(value) if (0.0..=1.0).contains(value.get_ref()) => *value.get_ref(),
        Some(value) => {
            v.error(value, "`tracing.sample_ratio` must be between 0.0 and 1.0");
            1.0
        }
    };
    let service_name = match t.service_name.as_ref() {
        None => "portcullis".to_owned(),
        Some(value) => {
            let name = value.get_ref().trim();
            if name.is_empty() || name.len() > 128 {
                v.error(value, "`tracing.service_name` must be 1 to 128 characters");
            }
            name.to_owned()
        }
    };
    TracingConfig {
        otlp_endpoint,
        sample_ratio,
        accept_traceparent: t.accept_traceparent.unwrap_or(false),
        service_name,
    }
}
