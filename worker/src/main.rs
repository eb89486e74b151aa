//! `darkroom-worker`: run Stable Diffusion ONNX pipelines from the command line.
//! `generate` makes images; `bench` times every stage (and, side by side, Optimum's Python
//! pipeline); `run` serves jobs from the queue.
mod bench;
mod cli;
mod generate;
mod run;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Run(args) => run::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default (`info`, ONNX Runtime at `warn`).
fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ort=warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
