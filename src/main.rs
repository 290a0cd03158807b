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
    // Usage errors exit 1, never 2: 2 means "changes" or "drift" to CI.
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            };
        }
    };
    let out = output::Output::new(args.global.color, args.global.quiet, args.global.verbose);
    cli::run(&args, &out)
}
