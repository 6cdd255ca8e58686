//! `portcullis serve [--config FILE]`.

use std::path::Path;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::config::Config;
use crate::config::secrets::Environment;

pub(super) fn run(path: Option<&Path>, env: &Environment) -> ExitCode {
    let config = match Config::load(path, env) {
        Ok(config) => config,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::logging::init(&config.log, env);
    // The control runtime: signals, reloads, start-up. Serving runs on
    // per-core worker threads (see `server`).
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::server::run(config, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "portcullis stopped");
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}
