//! `portcullis serve [--config FILE]`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::secrets::Environment;

pub(super) fn run(path: Option<&Path>, env: &Environment) -> ExitCode {
    let config = match super::load_config(path, env) {
        Ok(config) => config,
        Err(code) => return code,
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
