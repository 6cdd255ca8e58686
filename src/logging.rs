//! Log output through `tracing`: JSON lines (default) or text on stdout.
//!
//! The level filter comes from `PORTCULLIS_LOG` (same syntax as `RUST_LOG`,
//! e.g. `info,audit=warn`), else from `[log] level`. Access lines use the
//! `access` target, security events the `audit` target.

use tracing_subscriber::EnvFilter;

use crate::config::secrets::Environment;
use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(config: &LogConfig, env: &Environment) {
    let filter = env
        .var("PORTCULLIS_LOG")
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
