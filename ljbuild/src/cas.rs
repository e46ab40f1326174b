//! The content-addressed layer store (`store/sha256/HEX`): content digests of layer
//! directories, and putting layers into the store.
//!
//! A layer's digest is [`crate::oci::layer::content_digest`] of its directory, taken as the
//! jail sees it. A rootless caller cannot read everything its builds make (a package's files
//! of a subordinate id with mode 0600 or a 0700 directory such as apt's `partial/`): the digest
//! is then taken in a jail where the caller is root with its subordinate ids mapped and the
//! container capabilities (`ljspawn --subids --cap-add container`, the host's `/` read-only as
//! its root), by ljbuild itself (`ljbuild __layer digest DIR`, an internal command).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::oci::layer::content_digest;
use crate::oci::OciError;
use crate::store::{Root, StoreError};
use crate::Error;

/// Where the layer's parent directory is bound in a helper jail.
const AT: &str = "/tmp/.ljbuild-layer";
/// Where ljbuild's own executable is bound in a helper jail.
const EXE: &str = "/tmp/.ljbuild-exe";

/// The content digest (`sha256:HEX`) of the layer directory `dir` (`upper`: an overlay's upper,
/// whose whiteouts are read as such; else a world).
pub fn digest(dir: &Path, upper: bool) -> Result<String, Error> {
    match content_digest(dir, upper) {
        Ok(d) => Ok(d),
        Err(OciError::Io { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied && !rustix::process::geteuid().is_root() =>
        {
            let out = in_jail(dir, &["digest"], upper, None)?;
            let d = String::from_utf8_lossy(&out).trim().to_string();
            if d.strip_prefix("sha256:").is_some_and(crate::store::is_hex_digest) {
                Ok(d)
            } else {
                Err(helper_failed(dir, format!("it printed '{d}', not a digest")))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Puts the staged layer directory `staged` into the store of `root` under its digest and
/// returns the digest. The caller holds the store's lock (shared) until the layer is
/// referenced; an identical layer already stored is kept and `staged` removed.
pub fn store(root: &Root, staged: &Path, upper: bool) -> Result<String, Error> {
    let d = digest(staged, upper)?;
    root.put_layer(staged, &d)?;
    Ok(d)
}

fn helper_failed(dir: &Path, why: String) -> Error {
    StoreError::Io {
        what: "cannot read the layer",
        path: dir.to_path_buf(),
        source: io::Error::other(format!("(in a jail with your subordinate ids) {why}")),
    }
    .into()
}

/// Runs `ljbuild __layer OP DIR [--upper]` in a jail where the caller is root with its
/// subordinate ids mapped and the container capabilities; `DIR`'s parent is bound read-write
/// (`stdin`: what the command reads). Returns its stdout.
pub fn in_jail(dir: &Path, op: &[&str], upper: bool, stdin: Option<Stdio>) -> Result<Vec<u8>, Error> {
    let ljspawn = crate::spawn::find_ljspawn().ok_or(crate::build::BuildError::NoLjspawn)?;
    let exe = std::env::current_exe().map_err(StoreError::io("cannot find", "/proc/self/exe"))?;
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(helper_failed(dir, "no parent directory".into()));
    };
    let mut args: Vec<OsString> =
        ["--subids", "--cap-add", "container", "--root", "/", "--bind"].iter().map(Into::into).collect();
    args.extend([parent.into(), AT.into(), "--ro-bind".into(), exe.into(), EXE.into(), "--".into()]);
    args.extend([EXE.into(), "__layer".into()]);
    args.extend(op.iter().map(Into::into));
    args.push(PathBuf::from(AT).join(name).into());
    if upper {
        args.push("--upper".into());
    }
    let out = Command::new(&ljspawn)
        .args(&args)
        .stdin(stdin.unwrap_or_else(Stdio::null))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| helper_failed(dir, format!("cannot run {}: {e}", ljspawn.display())))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let last = text.lines().last().unwrap_or("").trim().to_string();
        return Err(helper_failed(dir, last));
    }
    Ok(out.stdout)
}

/// `ljbuild __layer digest DIR [--upper]` (in a helper jail): prints the digest.
pub fn helper(op: &str, dir: &Path, upper: bool) -> Result<u8, Error> {
    match op {
        "digest" => {
            println!("{}", content_digest(dir, upper)?);
            Ok(0)
        }
        _ => Err(Error::Usage(format!("unknown internal layer operation '{op}'"))),
    }
}
