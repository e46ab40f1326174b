#![forbid(unsafe_code)]
//! `ljail`: see `ljail --help`.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match ljail::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // One line, like every other error.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("ljail: {first} (see ljail --help)");
            return ExitCode::from(ljail::error::EXIT_USAGE);
        }
    };
    match ljail::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ljail: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
