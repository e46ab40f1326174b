#![forbid(unsafe_code)]
//! `ljbuild`: see `ljbuild --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ljbuild::cli::Cli::parse();
    match ljbuild::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ljbuild: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
