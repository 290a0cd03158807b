//! `pullwarden`: who may pull container images, across a cluster, as code.
//!
//! The binary parses arguments, runs one command, prints, and owns exit codes.
//! All printing goes through [`output`]; libraries return data and problems.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    output::install_panic_hook();
    let args = cli::Cli::parse();
    let out = output::Output::new(args.global.color, args.global.quiet);
    cli::run(&args, &out)
}
