//! `portcullis users …`, `clients …`, `keys …` and `migrate`: administration
//! from the command line, on the store and keys named by the configuration.
//!
//! Passwords come from standard input (`--password-stdin`) or are generated
//! and printed once to standard output, never to a log.

use std::io::BufRead as _;
use std::path::Path;
use std::process::ExitCode;

use base64::Engine as _;
use clap::Subcommand;

use crate::audit::{self, EventContext, SecurityEvent};
use crate::config::Config;
use crate::config::secrets::{Environment, Secret};
use crate::identity::Identity;

/// `portcullis users …`.
#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
    /// Add a user.
    Add {
        /// The username.
        name: String,
        /// A role (repeat for several): admin, user, guest or your own.
        #[arg(long = "role", default_value = "user")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input
        /// (otherwise a strong one is generated and printed once).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Only usernames containing this.
        #[arg(long, default_value = "")]
        search: String,
    },
    /// Replace a user's roles (their current tokens stop working).
    SetRoles {
        /// The username.
        name: String,
        /// The new roles.
        #[arg(required = true)]
        roles: Vec<String>,
    },
    /// Disable a user (their tokens stop working at once).
    Disable {
        /// The username.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// The username.
        name: String,
    },
    /// Set a new password (all of the user's sessions end).
    Passwd {
        /// The username.
        name: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lift a login lock.
    Unlock {
        /// The username.
        name: String,
    },
}

/// `portcullis clients …`.
#[derive(Debug, Subcommand)]
pub(super) enum ClientsCommand {
    /// Register an OAuth client; prints its id and secret once.
    Add {
        /// A name for people.
        name: String,
        /// A scope the client may ask for (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List clients.
    List,
    /// Remove a client.
    Remove {
        /// The client id.
        client_id: String,
    },
}

/// `portcullis keys …`.
#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// List the signing keys in force.
    List,
    /// Add a new signing key; the old one verifies until its tokens expire.
    Rotate,
}

/// What `run` should do.
#[derive(Debug)]
pub(super) enum AdminCommand {
    /// Users.
    Users(UsersCommand),
    /// OAuth clients.
    Clients(ClientsCommand),
    /// Signing keys.
    Keys(KeysCommand),
    /// Apply migrations.
    Migrate,
}

pub(super) fn run(path: Option<&Path>, command: AdminCommand, env: &Environment) -> ExitCode {
    let config = match super::load_config(path, env) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&config, command, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<(Secret, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        return Ok((Secret::new(password), false));
    }
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok((Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)), true))
}

fn format_time(unix: Option<i64>) -> String {
    unix.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

async fn execute(config: &Config, command: AdminCommand, env: &Environment) -> anyhow::Result<()> {
    let (identity, audit) = crate::server::open_identity(config, env, crate::server::AuditRole::Cli).await?;
    let outcome = apply(&identity, command).await;
    audit.flush(std::time::Duration::from_secs(10)).await;
    outcome
}

/// Records an administrative change made from the command line; the actor
/// is `cli:<login name>`.
fn record(action: &'static str, target: &str) {
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()));
    let context =
        EventContext { request_id: "", client_ip: None, method: "", path: "", route: None, subject: Some(&actor) };
    audit::emit(&SecurityEvent::AdminAction { action, target: target.to_owned() }, &context);
}

async fn apply(identity: &Identity, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Migrate => {
            identity.store().migrate().await?;
            println!("migrations applied ({})", identity.store().backend());
        }
        AdminCommand::Users(command) => users(identity, command).await?,
        AdminCommand::Clients(command) => clients(identity, command).await?,
        AdminCommand::Keys(KeysCommand::List) => {
            for key in identity.keys().ring().keys() {
                let status = if key.retired_at.is_some() { "retired (verifies only)" } else { "active" };
                println!("{}\t{:?}\t{}\t{status}", key.kid, key.alg, format_time(Some(key.created_at)));
            }
        }
        AdminCommand::Keys(KeysCommand::Rotate) => {
            let kid = identity.keys().rotate()?;
            record("key-rotated", &kid);
            println!("new signing key {kid}; running instances pick it up within 10 seconds");
        }
    }
    Ok(())
}

async fn users(identity: &Identity, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { name, roles, password_stdin } => {
            let (password, generated) = read_password(password_stdin)?;
            let user = identity.add_user(&name, &password, &roles).await?;
            record("user-created", &user.username);
            println!("added {} ({}) with roles: {}", user.display_name, user.id, user.roles);
            if generated {
                println!("password: {}", password.expose());
            }
        }
        UsersCommand::List { search } => {
            for user in crate::store::users::list(identity.store(), &search.to_lowercase(), 1000, 0).await? {
                let state = if user.is_disabled() { "disabled" } else { "active" };
                println!(
                    "{}\t{}\t{}\t{state}\tlast login {}",
                    user.display_name,
                    user.id,
                    user.roles,
                    format_time(user.last_login_at)
                );
            }
        }
        UsersCommand::SetRoles { name, roles } => {
            identity.set_roles(&name, &roles).await?;
            record("roles-changed", &name);
            println!("roles of {name} set to {}", roles.join(" "));
        }
        UsersCommand::Disable { name } => {
            identity.disable(&name).await?;
            record("user-disabled", &name);
            println!("{name} disabled; their tokens no longer work");
        }
        UsersCommand::Enable { name } => {
            identity.enable(&name).await?;
            record("user-enabled", &name);
            println!("{name} enabled");
        }
        UsersCommand::Passwd { name, password_stdin } => {
            let (password, generated) = read_password(password_stdin)?;
            identity.set_password(&name, &password).await?;
            record("password-reset", &name);
            println!("password of {name} changed; their sessions ended");
            if generated {
                println!("password: {}", password.expose());
            }
        }
        UsersCommand::Unlock { name } => {
            identity.unlock(&name).await?;
            record("user-unlocked", &name);
            let context = EventContext {
                request_id: "",
                client_ip: None,
                method: "",
                path: "",
                route: None,
                subject: Some(&name),
            };
            audit::emit(&SecurityEvent::AccountUnlocked, &context);
            println!("{name} unlocked");
        }
    }
    Ok(())
}

async fn clients(identity: &Identity, command: ClientsCommand) -> anyhow::Result<()> {
    match command {
        ClientsCommand::Add { name, scopes } => {
            let (id, secret) = identity.add_client(&name, &scopes).await?;
            record("client-created", &id);
            println!("client_id: {id}\nclient_secret: {secret}\n(the secret is shown only now)");
        }
        ClientsCommand::List => {
            for client in crate::store::clients::list(identity.store()).await? {
                println!(
                    "{}\t{}\tscopes: {}\t{}",
                    client.client_id,
                    client.name,
                    client.scopes,
                    format_time(Some(client.created_at))
                );
            }
        }
        ClientsCommand::Remove { client_id } => {
            anyhow::ensure!(crate::store::clients::remove(identity.store(), &client_id).await?, "no such client");
            record("client-removed", &client_id);
            println!("removed {client_id}");
        }
    }
    Ok(())
}
