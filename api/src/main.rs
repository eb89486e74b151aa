//! `darkroom-api`: the stateless HTTP front end of the job service (`serve`) and its
//! administration (`migrate`, `tenant`, `token`).
mod admin;
mod app;
mod auth;
mod cli;
mod dialect;
mod dialects;
mod error;
mod extract;
mod http;
mod json;
mod limits;
mod metrics;
mod openapi;
mod request_id;
mod routes;
mod serve;
mod service;
mod wait;
mod webhooks;

use std::process::ExitCode;

use anyhow::anyhow;
use darkroom_shared::store::Store;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    darkroom_shared::logging::init(cli.log_format, "info,sqlx=warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("darkroom-api: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every message carries its causes already (no `{:#}` chain, which would repeat them).
            eprintln!("darkroom-api: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(cli.backends, *args).await?,
        command => {
            // Every administration command connects, migrates (cheap when up to date), acts.
            let store = Store::connect(&cli.backends.database_url, 2).await.map_err(|e| anyhow!("connecting to Postgres (DATABASE_URL): {e}"))?;
            store.migrate().await.map_err(|e| anyhow!("migrating the database: {e}"))?;
            admin::run(&store, &command).await?;
        }
    }
    Ok(())
}
