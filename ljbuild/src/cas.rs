//! The content-addressed layer store (`store/sha256/HEX`): content digests of layer
//! directories, and putting layers into the store.
//!
//! A layer's digest is [`crate::oci::layer::content_digest`] of its directory, taken as the
//! jail sees it. A rootless caller cannot read everything its builds make (a package's files
//! of a subordinate id with mode 0600 or a 0700 directory such as apt's `partial/`): the digest
//! is then taken in a jail where the caller is root with its subordinate ids mapped and the
//! container capabilities (`ljspawn --subids --cap-add container`, the host's `/` read-only as
//! its root), by ljbuild itself (`ljbuild __layer digest DIR`, an internal command).
//!
//! The same kind of jail unpacks a rootless caller's image imports and pulls
//! ([`JailApplier`]): the layers, read, decompressed and verified by ljbuild outside, are
//! streamed to `ljbuild __layer apply DIR` inside, which keeps the image's owners: a file of
//! uid N belongs on the host to the caller's subordinate uid (start + N - 1), as rootless podman
//! stores it, and the caller's jails show it as N.

use std::ffi::OsString;
use std::io::{self, Read, Write};
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
            let out = in_jail(dir, &["digest"], upper)?;
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

/// `ljspawn ... -- ljbuild __layer OP DIR [--upper]`: a jail where the caller is root with its
/// subordinate ids mapped and the container capabilities; `DIR`'s parent is bound read-write.
fn jail_command(dir: &Path, op: &[&str], upper: bool) -> Result<Command, Error> {
    jail_command_lowers(dir, op, upper, &[])
}

/// As [`jail_command`], with `lowers` bound read-only in the jail and passed as `--lower`.
fn jail_command_lowers(dir: &Path, op: &[&str], upper: bool, lowers: &[PathBuf]) -> Result<Command, Error> {
    let ljspawn = crate::spawn::find_ljspawn().ok_or(crate::build::BuildError::NoLjspawn)?;
    let exe = std::env::current_exe().map_err(StoreError::io("cannot find", "/proc/self/exe"))?;
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(helper_failed(dir, "no parent directory".into()));
    };
    let mut args: Vec<OsString> =
        // Setuid and setgid files of an image keep their modes (the staging area is in the
        // 0700 store, as a build's upper is).
        ["--subids", "--cap-add", "container", "--allow-setuid-files", "--root", "/", "--bind"]
            .iter()
            .map(Into::into)
            .collect();
    args.extend([parent.into(), AT.into(), "--ro-bind".into(), exe.into(), EXE.into(), "--".into()]);
    args.extend([EXE.into(), "__layer".into()]);
    args.extend(op.iter().map(Into::into));
    // (The binds go before `--`: inserted there.)
    let sep = args.iter().position(|a| a == "--").expect("the command follows --");
    for (i, l) in lowers.iter().enumerate() {
        let at = format!("{AT}-lower-{i}");
        args.splice(sep..sep, ["--ro-bind".into(), l.into(), at.clone().into()]);
        args.extend(["--lower".into(), at.into()]);
    }
    args.push(PathBuf::from(AT).join(name).into());
    if upper {
        args.push("--upper".into());
    }
    let mut cmd = Command::new(&ljspawn);
    cmd.args(&args).stderr(Stdio::piped()).stdout(Stdio::piped());
    Ok(cmd)
}

fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines().last().unwrap_or("").trim().trim_start_matches("ljbuild: ").to_string()
}

/// Runs `ljbuild __layer OP DIR [--upper]` in a helper jail (see [`jail_command`]) and returns
/// its stdout.
pub fn in_jail(dir: &Path, op: &[&str], upper: bool) -> Result<Vec<u8>, Error> {
    let out = jail_command(dir, op, upper)?
        .stdin(Stdio::null())
        .output()
        .map_err(|e| helper_failed(dir, format!("cannot run ljspawn: {e}")))?;
    if !out.status.success() {
        return Err(helper_failed(dir, last_line(&out.stderr)));
    }
    Ok(out.stdout)
}

/// Writes the layer tar of `dir` (as `LayerWriter` does, with times) into `w` from a helper
/// jail: for a rootless caller's export of files it cannot read on the host.
pub fn tar_in_jail(dir: &Path, upper: bool, w: &mut dyn Write) -> Result<(), OciError> {
    let fail = |why: String| {
        OciError::Layer(format!("cannot write the layer of {} in a jail: {why}", dir.display()))
    };
    let mut child = jail_command(dir, &["tar"], upper)
        .map_err(|e| fail(e.to_string()))?
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run ljspawn: {e}")))?;
    let mut out = child.stdout.take().expect("piped");
    let copied = io::copy(&mut out, w);
    drop(out);
    let mut err = Vec::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_end(&mut err);
    }
    let st = child.wait().map_err(|e| fail(e.to_string()))?;
    if !st.success() {
        return Err(fail(last_line(&err)));
    }
    copied.map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// Whether a rootless caller's imports keep the image's owners: it has subordinate ids (the
/// jail maps 0-65535) and ljspawn is there to make that jail.
pub fn shifted_imports() -> bool {
    !rustix::process::geteuid().is_root()
        && crate::spawn::BuildIds::detect() == crate::spawn::BuildIds::Full
        && crate::spawn::find_ljspawn().is_some()
}

/// The frame that ends a layer's stream, and the one that ends the last layer.
const END_LAYER: u32 = 0;
const END_ALL: u32 = u32::MAX;

/// Unpacks layers in a helper jail that keeps the image's owners (see the module's text):
/// [`JailApplier::apply`] streams one uncompressed layer tar into it (in frames: a 4-byte
/// length, then that many bytes; an empty frame ends the layer), [`JailApplier::finish`] ends
/// it and waits. Dropped before `finish`, the jail is killed (the caller removes the staging
/// directory: nothing is published).
pub struct JailApplier {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    dir: PathBuf,
}

impl std::fmt::Debug for JailApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailApplier").field("dir", &self.dir).finish()
    }
}

impl JailApplier {
    /// Starts the jail that unpacks into the existing, empty directory `dir` (`upper`: one
    /// layer as an overlay upper, as `Applier::new_upper`).
    pub fn start(dir: &Path, upper: bool) -> Result<JailApplier, Error> {
        JailApplier::start_op(dir, &["apply"], upper, &[])
    }

    /// As [`JailApplier::start`] for a further layer of a world
    /// ([`crate::oci::layer::Applier::new_world_part`]; `lowers` bottom first).
    pub fn start_world_part(dir: &Path, lowers: &[PathBuf]) -> Result<JailApplier, Error> {
        JailApplier::start_op(dir, &["apply-world-part"], true, lowers)
    }

    fn start_op(dir: &Path, op: &[&str], upper: bool, lowers: &[PathBuf]) -> Result<JailApplier, Error> {
        let mut child = jail_command_lowers(dir, op, upper, lowers)?
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| helper_failed(dir, format!("cannot run ljspawn: {e}")))?;
        let stdin = child.stdin.take();
        Ok(JailApplier { child, stdin, dir: dir.to_path_buf() })
    }

    fn broken(&mut self, e: io::Error) -> OciError {
        // The jail's own message says more than a broken pipe.
        drop(self.stdin.take());
        let mut err = Vec::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_end(&mut err);
        }
        let _ = self.child.wait();
        let why = last_line(&err);
        if let Some(u) = why.strip_prefix("unsupported: ") {
            return OciError::Unsupported(u.to_string());
        }
        OciError::Layer(if why.is_empty() { format!("unpacking in a jail: {e}") } else { why })
    }

    /// Streams one uncompressed layer (to its end) into the jail.
    pub fn apply(&mut self, r: &mut dyn Read) -> Result<(), OciError> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match r.read(&mut buf[4..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(OciError::Layer(format!("cannot read the layer: {e}"))),
            };
            buf[..4].copy_from_slice(&(n as u32).to_le_bytes());
            let w = self.stdin.as_mut().expect("stdin until finish").write_all(&buf[..4 + n]);
            if let Err(e) = w {
                return Err(self.broken(e));
            }
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Ends the stream and waits for the jail; the counts of what it skipped.
    pub fn finish(mut self) -> Result<crate::oci::layer::Skipped, Error> {
        let w = self.stdin.as_mut().expect("stdin until finish").write_all(&END_ALL.to_le_bytes());
        if let Err(e) = w {
            return Err(self.broken(e).into());
        }
        drop(self.stdin.take());
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        let mut err = Vec::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_end(&mut err);
        }
        let st = self.child.wait().map_err(|e| helper_failed(&self.dir, e.to_string()))?;
        if !st.success() {
            let why = last_line(&err);
            if let Some(u) = why.strip_prefix("unsupported: ") {
                return Err(OciError::Unsupported(u.to_string()).into());
            }
            return Err(OciError::Layer(why).into());
        }
        Ok(crate::oci::layer::Skipped::from_line(out.trim()))
    }
}

impl Drop for JailApplier {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads one layer's frames from `input` as one stream (see [`JailApplier`]).
struct Frames<'a, R: Read> {
    input: &'a mut R,
    left: usize,
    done: bool,
}

impl<R: Read> Read for Frames<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            let mut len = [0u8; 4];
            self.input.read_exact(&mut len)?;
            match u32::from_le_bytes(len) {
                END_LAYER => self.done = true,
                END_ALL => return Err(io::Error::other("the layer stream ended early")),
                n => self.left = n as usize,
            }
        }
        let k = buf.len().min(self.left);
        let n = self.input.read(&mut buf[..k])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        Ok(n)
    }
}

/// `ljbuild __layer apply DIR [--upper]` (in a helper jail): applies the layers framed on stdin,
/// keeping owners; prints how many extended attributes and device nodes it skipped.
fn apply_from_stdin(dir: &Path, upper: bool, world_part: Option<&[PathBuf]>) -> Result<u8, Error> {
    use crate::oci::layer::Applier;
    let ap = if let Some(lowers) = world_part {
        Applier::new_world_part(dir, false, lowers)?
    } else if upper {
        Applier::new_upper(dir, false)?
    } else {
        Applier::new(dir, false)?
    };
    let mut ap = ap.keep_owners();
    let mut input = io::BufReader::with_capacity(1 << 20, io::stdin().lock());
    loop {
        let mut len = [0u8; 4];
        input.read_exact(&mut len).map_err(|e| OciError::Layer(format!("the layer stream: {e}")))?;
        let first = u32::from_le_bytes(len);
        if first == END_ALL {
            break;
        }
        let mut fr = Frames { input: &mut input, left: first as usize, done: first == END_LAYER };
        ap.apply(&mut fr)?;
        io::copy(&mut fr, &mut io::sink()).map_err(|e| OciError::Layer(format!("the layer stream: {e}")))?;
    }
    let sk = ap.finish()?;
    outln!("{}", sk.to_line());
    Ok(0)
}

/// `ljbuild __layer digest|apply DIR [--upper]` (in a helper jail).
pub fn helper(op: &str, dir: &Path, upper: bool, lowers: &[PathBuf]) -> Result<u8, Error> {
    match op {
        "digest" => {
            outln!("{}", content_digest(dir, upper)?);
            Ok(0)
        }
        "apply" => apply_from_stdin(dir, upper, None),
        "apply-world-part" => apply_from_stdin(dir, true, Some(lowers)),
        "tar" => {
            let out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let ids = crate::oci::layer::IdMap::current();
            let mut out = crate::oci::layer::LayerWriter::new(out, &ids, upper).write_tree(dir)?;
            out.flush().map_err(StoreError::io("cannot write", "stdout"))?;
            Ok(0)
        }
        _ => Err(Error::Usage(format!("unknown internal layer operation '{op}'"))),
    }
}

/// `store/oci/`: which stored layer an image layer was unpacked into (or written from), by
/// the digest of its blob and of its uncompressed tar (`diff_id`), so an import or a pull
/// knows what it has from the store's own record, never from what an image says of itself.
/// `KIND-HEX` symlinks to `../sha256/LAYER`; `KIND` is `w` (the layer is a world's bottom, as
/// `world import` makes it) or `u` (an overlay upper, whiteouts in overlay form).
fn record_path(root: &Root, upper: bool, oci: &str) -> Option<PathBuf> {
    let hex = crate::oci::digest::sha256_hex(oci).ok()?;
    Some(root.path.join("store/oci").join(format!("{}-{hex}", if upper { 'u' } else { 'w' })))
}

/// Records that the image layer named by each of `oci` (blob digest, diff id) is the stored
/// layer `layer`. An index only: a record that cannot be written costs a transfer later.
pub fn record(root: &Root, upper: bool, oci: &[&str], layer: &str) {
    let Ok(hex) = crate::oci::digest::sha256_hex(layer) else { return };
    let dir = root.path.join("store/oci");
    if !dir.is_dir() && crate::store::mkdir_private(&dir).is_err() {
        return;
    }
    for d in oci {
        let Some(p) = record_path(root, upper, d) else { continue };
        if recorded(root, upper, d).as_deref() == Some(layer) {
            continue;
        }
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), hex));
        let _ = std::fs::remove_file(&tmp);
        if std::os::unix::fs::symlink(format!("../sha256/{hex}"), &tmp).is_ok()
            && std::fs::rename(&tmp, &p).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The stored layer an image layer (blob digest or diff id `oci`) was recorded as, if the
/// record and the layer are there.
pub fn recorded(root: &Root, upper: bool, oci: &str) -> Option<String> {
    let t = std::fs::read_link(record_path(root, upper, oci)?).ok()?;
    let hex = t.strip_prefix("../sha256").ok()?.to_str()?;
    (crate::store::is_hex_digest(hex) && root.layer_dir(hex).is_dir()).then(|| format!("sha256:{hex}"))
}

/// Removes the records whose layer is gone (after `gc`).
pub fn prune_records(root: &Root) {
    let dir = root.path.join("store/oci");
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if std::fs::metadata(&p).is_err() {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The digest of the uncompressed tar `ljbuild export` writes of the stored layer `dir` (its
/// `diff_id`): what an image layer must have for `dir` to stand for it.
pub fn export_diff_id(dir: &Path, upper: bool) -> Result<String, OciError> {
    let ids = crate::oci::layer::IdMap::current();
    let local = || -> Result<String, OciError> {
        let sink = io::BufWriter::with_capacity(1 << 20, crate::oci::digest::HashWriter::new(io::sink()));
        let out = crate::oci::layer::LayerWriter::new(sink, &ids, upper).write_tree(dir)?;
        let hw = out
            .into_inner()
            .map_err(|e| OciError::Layer(format!("cannot hash {}: {}", dir.display(), e.error())))?;
        Ok(hw.finish().1)
    };
    match local() {
        Err(OciError::Io { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied && !rustix::process::geteuid().is_root() =>
        {
            let mut hw = crate::oci::digest::HashWriter::new(io::sink());
            tar_in_jail(dir, upper, &mut hw)?;
            Ok(hw.finish().1)
        }
        r => r,
    }
}
