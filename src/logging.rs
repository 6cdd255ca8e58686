//! Log output through `tracing`: one JSON object per line with Elastic
//! Common Schema field names (default), or text, on stdout.
//!
//! A JSON line carries `@timestamp`, `log.level`, `log.logger` (the target),
//! `message`, `ecs.version`, `service.name` and the event's own fields,
//! already named in ECS (`event.action`, `client.ip`, `url.path`,
//! `http.response.status_code`…), as dotted keys, which Elasticsearch and
//! Filebeat's `ndjson` parser expand into objects: no custom mapping needed.
//!
//! The level filter comes from `PORTCULLIS_LOG` (same syntax as `RUST_LOG`,
//! e.g. `info,audit=warn`), else from `[log] level`. Access lines use the
//! `access` target, security events the `audit` target.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::secrets::Environment;
use crate::config::{LogConfig, LogFormat};

/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(config: &LogConfig, env: &Environment) {
    let filter = env
        .var("PORTCULLIS_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match config.format {
        LogFormat::Json => builder.event_format(EcsJson).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Formats an event as one ECS JSON line.
///
/// ```
/// use tracing_subscriber::fmt::MakeWriter;
/// # #[derive(Clone, Default)] struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
/// # impl std::io::Write for Buffer {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl<'a> MakeWriter<'a> for Buffer { type Writer = Buffer; fn make_writer(&'a self) -> Buffer { self.clone() } }
/// let buffer = Buffer::default();
/// let subscriber = tracing_subscriber::fmt().event_format(portcullis::logging::EcsJson).with_writer(buffer.clone()).finish();
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::warn!(target: "audit", security = true, event.action = "login.failure", "security event");
/// });
/// let line: serde_json::Value = serde_json::from_slice(&buffer.0.lock().unwrap()).unwrap();
/// assert_eq!(line["event.action"], "login.failure");
/// assert_eq!(line["log.level"], "warn");
/// assert_eq!(line["log.logger"], "audit");
/// assert!(line["@timestamp"].as_str().unwrap().ends_with('Z'));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EcsJson;

impl<S, N> FormatEvent<S, N> for EcsJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _context: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let metadata = event.metadata();
        let mut fields = Map::new();
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now
            .format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_default();
        fields.insert("@timestamp".into(), Value::String(timestamp));
        fields.insert("log.level".into(), Value::String(metadata.level().as_str().to_ascii_lowercase()));
        fields.insert("log.logger".into(), Value::String(metadata.target().to_owned()));
        event.record(&mut FieldVisitor(&mut fields));
        fields.insert("ecs.version".into(), Value::String(ECS_VERSION.to_owned()));
        fields.insert("service.name".into(), Value::String("portcullis".to_owned()));
        writeln!(writer, "{}", Value::Object(fields))
    }
}

/// Collects an event's fields as JSON values.
struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}
