#![forbid(unsafe_code)]
//! `ljail-supervisor`: run by `ljail start` (see the library's documentation), not by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    match ljail_supervisor::Spec::from_args(std::env::args_os().skip(1)) {
        Ok(spec) => ExitCode::from(ljail_supervisor::supervise(&spec)),
        Err(e) => {
            eprintln!("ljail-supervisor: {e}");
            ExitCode::from(2)
        }
    }
}
