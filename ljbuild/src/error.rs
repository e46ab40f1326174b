//! The top-level error and ljbuild's exit codes.

use crate::build::BuildError;
use crate::copy::CopyError;
use crate::oci::OciError;
use crate::recipe::JailfileError;
use crate::resolve::ResolveError;
use crate::store::StoreError;

/// Exit status: the build script failed (non-zero exit, killed, timed out).
pub const EXIT_BUILD_FAILED: u8 = 1;
/// Exit status: bad command line (also clap's own usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the Jailfile cannot be read or parsed.
pub const EXIT_JAILFILE: u8 = 3;
/// Exit status: a world, parent or overlay does not exist.
pub const EXIT_RESOLVE: u8 = 4;
/// Exit status: refused because published overlays are immutable, or an overlay has children.
pub const EXIT_CONFLICT: u8 = 5;
/// Exit status: a file system, lock or store error.
pub const EXIT_IO: u8 = 6;
/// Exit status: the jail could not be started (ljspawn missing, or ljspawn's own failure).
pub const EXIT_JAIL: u8 = 7;
/// Exit status: an image or registry error (corrupt or malformed image, unsupported format,
/// transfer or authentication failure); nothing was published.
pub const EXIT_IMAGE: u8 = 8;

/// The exit status table, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success (built, or cached: same inputs already published)
  1  the build script failed (non-zero exit, signal, timeout); nothing was published
  2  usage error
  3  the Jailfile cannot be read or parsed
  4  a world, parent or overlay does not exist
  5  refused: the version exists with other inputs (immutable; --force replaces it),
     or rm of an overlay that has children, or of a world overlays are built on
  6  file system, lock or store error
  7  the jail could not be started (ljspawn not found, or ljspawn failed to set it up)
  8  image or registry error (corrupt or malformed image, transfer or authentication
     failure); nothing was published
141  the output went to a pipe whose reader had gone (`ljbuild list | head -1`)
A stderr whose reader has gone changes none of these: the line is lost, the status stays.
`ljbuild run` exits with the jailed program's status (ljspawn's codes: 124 timeout,
125 jail setup failed, 126/127 cannot execute/not found, 128+N killed by signal N).";

/// Every error ljbuild reports; printed once, as `ljbuild: MESSAGE`. (Boxed: the variants are
/// large and errors are rare.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Jailfile errors.
    #[error(transparent)]
    Jailfile(Box<JailfileError>),
    /// Resolution errors.
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    /// Store errors.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// Copy errors.
    #[error(transparent)]
    Copy(Box<CopyError>),
    /// Build errors.
    #[error(transparent)]
    Build(Box<BuildError>),
    /// Image import, export and registry errors.
    #[error(transparent)]
    Oci(Box<OciError>),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
}

macro_rules! boxed_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::$v(Box::new(e))
            }
        }
    )*};
}
boxed_from!(JailfileError => Jailfile, ResolveError => Resolve, StoreError => Store, CopyError => Copy,
    BuildError => Build, OciError => Oci);

impl Error {
    /// The exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Jailfile(_) => EXIT_JAILFILE,
            Error::Resolve(_) => EXIT_RESOLVE,
            Error::Store(e)
                if matches!(
                    **e,
                    StoreError::Immutable { .. }
                        | StoreError::HasChildren { .. }
                        | StoreError::Exists(_)
                        | StoreError::InUse(_)
                ) =>
            {
                EXIT_CONFLICT
            }
            Error::Store(_) | Error::Copy(_) => EXIT_IO,
            Error::Oci(e) => e.exit_code(),
            Error::Build(e) => e.exit_code(),
            Error::Usage(_) => EXIT_USAGE,
        }
    }
}
