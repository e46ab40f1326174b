//! ljspawn: run one command in a fresh, ephemeral jail.
//!
//! The crate is split so that it can be audited in one sitting:
//! - [`cli`]: the command line (clap; its common form also without), translated into a
//!   [`plan::Request`];
//! - [`bwrap`]: bubblewrap's command line, translated into the same [`plan::Request`];
//! - [`plan`]: pure validation of a request into a [`plan::Plan`] (unit-tested, no syscalls);
//! - [`spawn`]: ljspawn's own process, one call per phase of the operation order: clone into
//!   the namespaces, forward signals, wait, report;
//! - [`privileged`]: the privileged window: everything a setuid ljspawn does as root (maps,
//!   cgroup, network plumbing, the reaper) and the drop that ends it, with its checks;
//! - [`jail`]: PID 1 of the jail: mounts, pivot_root, privileges dropped, exec;
//! - [`join`]: `--join PID`: a command in a running jail, under the same confinement;
//! - [`upper`]: a disk-backed ephemeral overlay upper where tmpfs has no user xattrs;
//! - [`sys`]: every system call std does not wrap; with [`arena`] (the memory allocator), the
//!   only modules with `unsafe`.

#![deny(unsafe_code)]

/// `eprintln!` for ljspawn's failure, warning and note lines, which never panics: the line is
/// formatted first and written to the locked stderr in one `write`, and a write error (stderr
/// a pipe whose reader has gone: EPIPE, as Rust ignores SIGPIPE) is ignored, so the exit status
/// stays the one the line goes with. `eprintln!` panics on such an error.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let line = ::std::format!("{}\n", ::std::format_args!($($arg)*));
        let _ = ::std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

#[allow(unsafe_code)]
pub mod arena;
pub mod bwrap;
pub mod cli;
pub mod conf;
mod errno;
pub mod jail;
pub mod join;
pub mod limits;
pub mod net;
pub mod pasta;
pub mod plan;
pub mod privileged;
pub mod pty;
pub mod seccomp;
pub mod spawn;
pub mod subids;
#[allow(unsafe_code)]
pub mod sys;
pub mod upper;

/// `io::Error` as glibc's `strerror` words it ("No such file or directory"), whatever the libc:
/// the text of bwrap's failures (`bwrap: execvp NAME: No such file or directory`).
pub fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error().and_then(errno::text) {
        Some(t) => t.to_string(),
        None => e.to_string(),
    }
}

/// `io::Error` as one lower-case phrase, without the " (os error N)" std appends, in glibc's
/// words whatever the libc (see `errno`).
pub(crate) fn describe(e: &std::io::Error) -> String {
    if let Some(t) = e.raw_os_error().and_then(errno::text) {
        return t.to_lowercase();
    }
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Exit status for a usage error (bad option or argument).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when `--timeout` expired.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit status when setting up the jail failed.
pub const EXIT_SETUP: u8 = 125;
/// Exit status when the program was found but could not be executed.
pub const EXIT_NOEXEC: u8 = 126;
/// Exit status when the program was not found.
pub const EXIT_NOTFOUND: u8 = 127;
