//! `portcullis check --config FILE`: validation and the security lint.

use std::path::Path;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::config::secrets::Environment;
use crate::config::{Config, Severity};

pub(super) fn run(path: &Path, strict: bool, env: &Environment) -> ExitCode {
    match Config::load(Some(path), env) {
        Ok(config) => {
            for warning in &config.warnings {
                println!("{warning}");
            }
            println!(
                "{}: OK ({} route{}, {} warning{})",
                path.display(),
                config.routes.len(),
                if config.routes.len() == 1 { "" } else { "s" },
                config.warnings.len(),
                if config.warnings.len() == 1 { "" } else { "s" },
            );
            if strict && !config.warnings.is_empty() { ExitCode::from(EXIT_CONFIG) } else { ExitCode::SUCCESS }
        }
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            eprintln!("{}: {errors} error{}", path.display(), if errors == 1 { "" } else { "s" });
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
