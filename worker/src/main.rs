//! `darkroom-worker`: run Stable Diffusion ONNX pipelines from the command line.
//! `generate` makes images; `bench` times every stage (and, side by side, Optimum's Python
//! pipeline); `run` serves jobs from the queue.
mod bench;
mod cli;
mod generate;
mod progress;
mod run;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    darkroom_shared::logging::init(cli.log_format, "info,ort=warn");
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
