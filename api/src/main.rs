//! `darkroom-api`: the stateless HTTP front end. The job service arrives with issue 3;
//! for now the binary only reports its version so the workspace builds end to end.
use clap::Parser;

/// Darkroom API server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    eprintln!("darkroom-api: the job service is not built yet (see issue 3)");
    Ok(())
}
