//! The command line: `portcullis serve`, `check`, `users`, `clients`,
//! `keys` and `migrate`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid configuration.

mod admin;
mod check;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::secrets::Environment;

/// A secure front door for HTTP APIs.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (with no --config: the embedded default on 127.0.0.1).
    Serve {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print its security warnings.
    Check {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
        /// Fail on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Manage users.
    Users {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::UsersCommand,
    },
    /// Manage OAuth clients.
    Clients {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::ClientsCommand,
    },
    /// Manage signing keys.
    Keys {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Apply store migrations (also done at every start).
    Migrate {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Exit code for an invalid configuration.
pub const EXIT_CONFIG: u8 = 2;

/// Loads the configuration, or prints its diagnostics and gives the exit code.
fn load_config(path: Option<&std::path::Path>, env: &Environment) -> Result<crate::config::Config, ExitCode> {
    crate::config::Config::load(path, env).map_err(|diagnostics| {
        for diagnostic in &diagnostics {
            eprintln!("{diagnostic}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Parses the arguments and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let env = Environment::from_process();
    match cli.command {
        Command::Serve { config } => serve::run(config.as_deref(), &env),
        Command::Check { config, strict } => check::run(&config, strict, &env),
        Command::Users { config, command } => admin::run(config.as_deref(), admin::AdminCommand::Users(command), &env),
        Command::Clients { config, command } => {
            admin::run(config.as_deref(), admin::AdminCommand::Clients(command), &env)
        }
        Command::Keys { config, command } => admin::run(config.as_deref(), admin::AdminCommand::Keys(command), &env),
        Command::Migrate { config } => admin::run(config.as_deref(), admin::AdminCommand::Migrate, &env),
    }
}
