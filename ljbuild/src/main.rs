#![forbid(unsafe_code)]
//! `ljbuild`: see `ljbuild --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match ljbuild::cli::parse_or_usage::<ljbuild::cli::Cli>("ljbuild") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match ljbuild::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            ljbuild::errln!("ljbuild: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
