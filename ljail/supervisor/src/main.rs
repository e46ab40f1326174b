#![forbid(unsafe_code)]
//! `ljail-supervisor`: run by `ljail start` (see the library's documentation), not by hand.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--enter") {
        // The supervisor's helper: into the jail's payload cgroup, then ljspawn (125: ljspawn's
        // own code for a jail that could not be set up).
        ljail_supervisor::errln!("ljail: {}", ljail_supervisor::cgroup::enter_and_exec(&args[1..]));
        return ExitCode::from(125);
    }
    match ljail_supervisor::Spec::from_args(args) {
        Ok(spec) => ExitCode::from(ljail_supervisor::supervise(&spec)),
        Err(e) => {
            ljail_supervisor::errln!("ljail-supervisor: {e}");
            ExitCode::from(2)
        }
    }
}
