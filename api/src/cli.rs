//! The command line of `darkroom-api`: one clap struct. Every flag falls back to an environment
//! variable; the backend flags (`--database-url`, `--redis-url`, ...) may come before or after
//! the subcommand.
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use darkroom_shared::config::{Backends, DeliveryPolicy};

/// Darkroom API server and administration.
#[derive(Parser, Debug)]
#[command(name = "darkroom-api", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub backends: Backends,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (migrates the database first).
    Serve(ServeArgs),
    /// Apply the database migrations that have not run yet.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DARKROOM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Largest request body in bytes (also the most a decoded init image may take).
    #[arg(long, env = "DARKROOM_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest `Prefer: wait` in seconds (plain `Prefer: wait` waits this long).
    #[arg(long, env = "DARKROOM_MAX_WAIT_SECS", default_value_t = 300)]
    pub max_wait_secs: u64,
    /// The model the Hugging Face endpoint dialect (`POST /`) runs; when unset and the catalog
    /// holds exactly one model, that one.
    #[arg(long, env = "DARKROOM_DEFAULT_MODEL")]
    pub default_model: Option<String>,
    /// A name the dialects accept for a catalog model, ALIAS=MODEL (repeatable; the variable is
    /// comma-separated), e.g. `--model-alias SD1.5=sd15`.
    #[arg(long = "model-alias", env = "DARKROOM_MODEL_ALIASES", value_delimiter = ',', value_parser = parse_alias)]
    pub model_aliases: Vec<(String, String)>,
    #[command(flatten)]
    pub delivery: DeliveryPolicy,
}

/// `ALIAS=MODEL`, both non-empty.
fn parse_alias(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((alias, model)) if !alias.trim().is_empty() && !model.trim().is_empty() => Ok((alias.trim().to_string(), model.trim().to_string())),
        _ => Err(format!("expected ALIAS=MODEL, got {raw:?}")),
    }
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant's unique name.
        name: String,
    },
    /// List tenants with their number of active tokens.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a new API token for a tenant; it is printed once, alone on the last line.
    Issue {
        /// The tenant's name.
        tenant: String,
    },
    /// Revoke the token whose visible prefix starts with PREFIX (at least 6 characters).
    Revoke {
        /// The start of the token (e.g. `drk_AbCd1234`).
        prefix: String,
    },
}

impl Cli {
    /// Parse the process arguments (exits with clap's message on a usage error).
    pub fn parse_args() -> Cli {
        // The top-level flags are the backends: make them global so they work after the
        // subcommand too, and keep their values (URLs may hold passwords) out of `--help`.
        let matches: ArgMatches = Cli::command().mut_args(|a| a.global(true).hide_env_values(true)).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}
