#![forbid(unsafe_code)]
//! `ljbuild`: see `ljbuild --help`.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match ljbuild::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // One line, like every other error.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("ljbuild: {first} (see ljbuild --help)");
            return ExitCode::from(ljbuild::error::EXIT_USAGE);
        }
    };
    match ljbuild::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ljbuild: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
