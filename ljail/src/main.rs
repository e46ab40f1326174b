#![forbid(unsafe_code)]
//! `ljail`: see `ljail --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match ljbuild::cli::parse_or_usage::<ljail::cli::Cli>("ljail") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match ljail::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            ljbuild::errln!("ljail: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
