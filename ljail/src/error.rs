//! ljail's error and exit codes (ljbuild's table, where the meaning is the same).

use std::io;
use std::path::PathBuf;

use ljbuild::store::StoreError;

use crate::config::ConfigError;

/// Exit status: a jail's program failed, or a jail could not be started or stopped.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad command line.
pub const EXIT_USAGE: u8 = ljbuild::error::EXIT_USAGE;
/// Exit status: a config file is wrong.
pub const EXIT_CONFIG: u8 = 3;
/// Exit status: a jail, image, world or snapshot does not exist.
pub const EXIT_NOT_FOUND: u8 = ljbuild::error::EXIT_RESOLVE;
/// Exit status: refused in this state (exists already, running, not running).
pub const EXIT_CONFLICT: u8 = ljbuild::error::EXIT_CONFLICT;
/// Exit status: a file system, lock or cgroup error.
pub const EXIT_IO: u8 = ljbuild::error::EXIT_IO;
/// Exit status: ljspawn cannot be found or refused the jail's settings.
pub const EXIT_JAIL: u8 = ljbuild::error::EXIT_JAIL;

/// The exit status table, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success (also: start of a running jail, stop of a stopped one)
  1  the jail did not start (its setup failed or it exited at once), or did not stop
  2  usage error, a bad jail or snapshot name
  3  a config file is wrong (the line and what is wrong are printed)
  4  a jail, image, world or snapshot does not exist
  5  refused in this state: exists already, running (stop it first, or --force)
  6  file system, lock or cgroup error
  7  ljspawn not found, or it refused the jail's settings
141  the output went to a pipe whose reader had gone (`ljail list | head -1`)
A stderr whose reader has gone changes none of these: the line is lost, the status stays.
`ljail exec` exits with the command's status (ljspawn's codes: 125 join failed, 126/127
cannot execute/not found, 128+N killed by signal N).";

/// Every error ljail reports, printed once as `ljail: MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From ljbuild's library (root, images, worlds, store).
    #[error(transparent)]
    Lj(Box<ljbuild::Error>),
    /// A config file is wrong.
    #[error("{}: {err}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Where and what.
        err: ConfigError,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused in this state.
    #[error("{0}")]
    Conflict(String),
    /// A file system operation failed.
    #[error("{what} {}: {}", .path.display(), describe(.source))]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A jail did not start or stop.
    #[error("{0}")]
    Failed(String),
    /// ljspawn missing or refusing.
    #[error("{0}")]
    Jail(String),
}

/// An io error as one lower-case phrase, without std's " (os error N)".
pub fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

impl From<ljbuild::Error> for Error {
    fn from(e: ljbuild::Error) -> Error {
        Error::Lj(Box::new(e))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Lj(Box::new(e.into()))
    }
}

impl Error {
    /// An [`Error::Io`] constructor for `map_err`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }

    /// The exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Lj(e) => e.exit_code(),
            Error::Config { .. } => EXIT_CONFIG,
            Error::Usage(_) => EXIT_USAGE,
            Error::NotFound(_) => EXIT_NOT_FOUND,
            Error::Conflict(_) => EXIT_CONFLICT,
            Error::Io { .. } => EXIT_IO,
            Error::Failed(_) => EXIT_FAILED,
            Error::Jail(_) => EXIT_JAIL,
        }
    }
}
