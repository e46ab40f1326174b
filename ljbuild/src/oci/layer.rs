//! Applying OCI layers (tar streams) to a directory, and writing a directory as a layer.
//!
//! Applying: every path is resolved inside the target (`openat2` with `RESOLVE_IN_ROOT`), so a
//! symlink in an earlier layer cannot send a later entry outside it, and `..` components are
//! refused. `.wh.NAME` removes NAME from the layers below; `.wh..wh..opq` empties its directory of
//! what the layers below put there. Directory modes and times are applied after the last layer
//! (a rootless caller must keep writing into directories an image marks read-only). As root,
//! owners, every extended attribute and device nodes are kept; rootless, files belong to the
//! caller (jail root) and only `user.*` attributes can be set. The contents of `/dev` are skipped:
//! every jail gets a fresh `/dev`.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::OciError;

/// A whiteout's name prefix.
pub const WH_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
pub const WH_OPAQUE: &str = ".wh..wh..opq";

/// Splits a tar path into checked components: `.` and empty ones dropped, `..` refused.
/// `None` for the root itself.
pub fn normalize(raw: &[u8]) -> Result<Option<PathBuf>, OciError> {
    let mut out = PathBuf::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(OciError::Malformed(format!(
                    "layer entry '{}' has a '..' component",
                    String::from_utf8_lossy(raw)
                )))
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// What applying layers skipped (reported as warnings).
#[derive(Debug, Default, Clone)]
pub struct Skipped {
    /// Device nodes (rootless cannot make them; `/dev`'s contents are always skipped).
    pub devices: u64,
    /// Extended attributes that could not be set (rootless: `trusted.*`; without subordinate
    /// ids all but `user.*`).
    pub xattrs: u64,
    /// The names of some of them (at most 4).
    pub xattr_names: std::collections::BTreeSet<String>,
    /// Owners the jail does not map (above 65535), made 65534.
    pub ids: u64,
}

impl Skipped {
    /// Adds what `o` counted.
    pub fn add(&mut self, o: Skipped) {
        self.devices += o.devices;
        self.xattrs += o.xattrs;
        self.ids += o.ids;
        for n in o.xattr_names {
            if self.xattr_names.len() < 4 {
                self.xattr_names.insert(n);
            }
        }
    }

    fn xattr(&mut self, name: &[u8]) {
        self.xattrs += 1;
        if self.xattr_names.len() < 4 {
            self.xattr_names.insert(String::from_utf8_lossy(name).into_owned());
        }
    }

    /// One line, as `ljbuild __layer apply` prints it: `XATTRS DEVICES IDS NAME,NAME` (`-`: no
    /// names).
    pub fn to_line(&self) -> String {
        let names: Vec<&str> = self.xattr_names.iter().map(String::as_str).collect();
        let names = if names.is_empty() { "-".to_string() } else { names.join(",") };
        format!("{} {} {} {names}", self.xattrs, self.devices, self.ids)
    }

    /// The line [`Skipped::to_line`] wrote.
    pub fn from_line(s: &str) -> Skipped {
        let mut f = s.split_whitespace();
        let mut n = || f.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let (xattrs, devices, ids) = (n(), n(), n());
        let xattr_names = s
            .split_whitespace()
            .nth(3)
            .filter(|v| *v != "-")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        Skipped { devices, xattrs, xattr_names, ids }
    }
}

#[derive(Debug, Clone, Copy)]
struct DirAttrs {
    mode: u32,
    mtime: u64,
}

/// Set once `openat2` answered ENOSYS (an ljspawn jail's seccomp filter denies it so, as some
/// kernels lack it): paths are then resolved by [`walk_in_root`].
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens `rel` below the directory `root` as `openat2(RESOLVE_IN_ROOT)` does, one component at
/// a time: a symlink is followed with `root` as `/` (an absolute target starts again at
/// `root`, `..` stops there), at most 40 of them; each component is opened `O_NOFOLLOW`.
fn walk_in_root(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let comps = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect()
    };
    let mut todo: std::collections::VecDeque<OsString> = comps(rel).into();
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            stack.pop();
            continue;
        }
        let cur = stack.last().unwrap_or(root);
        let fd = rfs::openat(cur, &c, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        if FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) == FileType::Symlink {
            links += 1;
            if links > 40 {
                return Err(Errno::LOOP);
            }
            let target = rfs::readlinkat(cur, &c, Vec::new())?;
            let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
            if target.is_absolute() {
                stack.clear();
            }
            for t in comps(&target).into_iter().rev() {
                todo.push_front(t);
            }
            continue;
        }
        if todo.is_empty() {
            return rfs::openat(cur, &c, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty());
        }
        stack.push(fd);
    }
    rfs::openat(stack.last().unwrap_or(root), ".", flags | OFlags::CLOEXEC, Mode::empty())
}

/// Applies layers, bottom first, to one directory.
#[derive(Debug)]
pub struct Applier {
    root: OwnedFd,
    root_path: PathBuf,
    as_root: bool,
    /// Entries get their owners (root; or a jail's root, see [`Applier::keep_owners`]).
    owners: bool,
    /// Writing an overlay upper: whiteouts become overlay whiteouts instead of removals.
    upper: bool,
    /// An upper that is a layer of a world: the contents of `/dev` are skipped, as for a world.
    world_part: bool,
    /// The layers below a world's further layer, top first: a directory this layer implies
    /// (an entry's parent it has no entry of) gets their mode, owner and time, as overlayfs's
    /// copy-up would.
    lowers: Vec<PathBuf>,
    /// The directories made as the layers below have them (applied with `dirs`).
    implied: std::cell::RefCell<BTreeMap<PathBuf, DirAttrs>>,
    /// Owners not mapped here, made 65534.
    clamped: std::cell::Cell<u64>,
    dirs: BTreeMap<PathBuf, DirAttrs>,
    /// What was skipped so far.
    pub skipped: Skipped,
}

fn io_err(what: &'static str, path: &Path, e: impl Into<io::Error>) -> OciError {
    OciError::Io { what, path: path.to_path_buf(), source: e.into() }
}

/// The extended attributes and numeric ids a PAX header carries.
#[derive(Default)]
struct Pax {
    xattrs: Vec<(OsString, Vec<u8>)>,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn read_pax<R: Read>(e: &mut tar::Entry<'_, R>) -> io::Result<Pax> {
    let mut p = Pax::default();
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                p.xattrs.push((OsStr::from_bytes(name).to_os_string(), ext.value_bytes().to_vec()));
            } else if key == b"uid" {
                p.uid = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse().ok());
            } else if key == b"gid" {
                p.gid = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse().ok());
            }
        }
    }
    Ok(p)
}

/// What overlayfs sees of one name in one layer's directory.
enum Seen {
    Absent,
    /// A 0/0 character device, or an empty file marked `overlay.whiteout`.
    Whiteout,
    /// A directory (`O_PATH`), marked `overlay.opaque=y` or not.
    Dir {
        fd: OwnedFd,
        st: rfs::Stat,
        opaque: bool,
    },
    /// A symlink or another non-directory.
    Other,
}

/// Looks `name` up in the layer directory `dir` without following a symlink (absent too in a
/// directory the caller cannot search).
fn seen_in_layer(dir: &OwnedFd, name: &OsStr) -> Result<Seen, Errno> {
    let fd = match rfs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Err(Errno::NOENT) | Err(Errno::ACCESS) => return Ok(Seen::Absent),
        r => r?,
    };
    let st = rfs::fstat(&fd)?;
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::CharacterDevice if st.st_rdev == 0 => Seen::Whiteout,
        FileType::RegularFile if st.st_size == 0 && overlay_flag_at(dir, name, "whiteout", b"") => {
            Seen::Whiteout
        }
        FileType::Directory => Seen::Dir { opaque: overlay_flag_at(dir, name, "opaque", b"y"), fd, st },
        _ => Seen::Other,
    })
}

/// Whether the file or directory `name` in `dir` has overlayfs's attribute `flag` (`user.` or
/// `trusted.`), with `value` unless that is empty. One that cannot be opened has none.
fn overlay_flag_at(dir: &OwnedFd, name: &OsStr, flag: &str, value: &[u8]) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let Ok(fd) = rfs::openat(dir, name, flags, Mode::empty()) else { return false };
    ["user", "trusted"].iter().any(|ns| {
        let mut v = [0u8; 16];
        match rfs::fgetxattr(&fd, format!("{ns}.overlay.{flag}"), &mut v[..]) {
            Ok(n) => value.is_empty() || &v[..n] == value,
            Err(Errno::RANGE) => value.is_empty(),
            Err(_) => false,
        }
    })
}

impl Applier {
    /// Applies into the existing, empty directory `dir`.
    pub fn new(dir: &Path, as_root: bool) -> Result<Applier, OciError> {
        let root = rfs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err("cannot open", dir, e))?;
        Ok(Applier {
            root,
            root_path: dir.to_path_buf(),
            as_root,
            owners: as_root,
            upper: false,
            world_part: false,
            lowers: Vec::new(),
            implied: Default::default(),
            clamped: Default::default(),
            dirs: BTreeMap::new(),
            skipped: Skipped::default(),
        })
    }

    /// Applies one layer into the empty directory `dir` as an overlay upper (ljspawn mounts
    /// with `userxattr`): `.wh..wh..opq` sets `user.overlay.opaque=y` on its directory, and
    /// `.wh.NAME` becomes a 0/0 character device (root) or an empty file marked
    /// `user.overlay.whiteout` in a directory marked `user.overlay.opaque=x` (rootless; overlayfs
    /// reads these since Linux 6.7).
    pub fn new_upper(dir: &Path, as_root: bool) -> Result<Applier, OciError> {
        let mut a = Applier::new(dir, as_root)?;
        a.upper = true;
        Ok(a)
    }

    /// An upper that is a further layer of a world (an image's second layer and up): as
    /// [`Applier::new_upper`], and the contents of `/dev` are skipped, as for a world.
    /// `lowers`: the layers below it, bottom first. An entry that needs a lower layer (a path
    /// through a lower layer's symlink, a hard link to a lower layer's file) cannot be stacked:
    /// [`OciError::Unsupported`] (the import then flattens the image).
    pub fn new_world_part(dir: &Path, as_root: bool, lowers: &[PathBuf]) -> Result<Applier, OciError> {
        let mut a = Applier::new_upper(dir, as_root)?;
        a.world_part = true;
        a.lowers = lowers.iter().rev().cloned().collect();
        Ok(a)
    }

    /// What the layers below say of the directory `rel` this layer implies, as overlayfs shows
    /// the merged tree: `Ok(None)` when they do not have it. Resolved a name at a time, never
    /// following a symlink: a layer's symlink does not lead into another of its directories (nor
    /// out of the layer); a whiteout hides the name in the layers below it; an opaque directory
    /// (this layer's or a lower one's) hides the layers below it; a directory merges only with
    /// the directories under it, down to the first non-directory. An error when the topmost
    /// layer that has `rel` has no directory there, or when `rel`'s parent in this layer goes
    /// through a symlink (the path in the merged tree is another one).
    fn lower_dir(&self, rel: &Path) -> Result<Option<rfs::Stat>, OciError> {
        let comps: Vec<&OsStr> = rel.iter().collect();
        let unsupported = |what: &str| {
            Err(OciError::Unsupported(format!("a layer's entry under {} goes through {what}", rel.display())))
        };
        let open_err = |p: &Path, e: Errno| io_err("cannot open directory", p, e);
        let mut up = self
            .resolve(Path::new(""), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| open_err(&self.root_path, e))?;
        let mut live = Vec::with_capacity(self.lowers.len());
        for l in &self.lowers {
            live.push(
                rfs::open(l, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| open_err(l, e))?,
            );
        }
        for (i, &c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            if !last {
                // This layer has the parents (`dir` made them): through its own directories only.
                match seen_in_layer(&up, c).map_err(|e| open_err(&self.root_path.join(rel), e))? {
                    Seen::Dir { opaque: true, .. } => return Ok(None),
                    Seen::Dir { fd, .. } => up = fd,
                    _ => return unsupported("a symlink of its own layer"),
                }
            }
            let mut next = Vec::new();
            let mut top = None;
            for d in &live {
                match seen_in_layer(d, c).map_err(|e| open_err(&self.root_path.join(rel), e))? {
                    Seen::Absent => continue,
                    Seen::Whiteout => break,
                    Seen::Dir { fd, st, opaque } => {
                        top.get_or_insert(st);
                        next.push(fd);
                        if opaque {
                            break;
                        }
                    }
                    Seen::Other if last && next.is_empty() => {
                        return unsupported("what is not a directory in a layer below")
                    }
                    Seen::Other => break,
                }
            }
            if last || next.is_empty() {
                return Ok(top);
            }
            live = next;
        }
        Ok(None)
    }

    /// Keeps the entries' owners without being real root: for a jail's root with the caller's
    /// subordinate ids mapped (`ljbuild __layer apply`). An owner the jail does not map becomes
    /// 65534 (nobody); extended attributes other than `user.*` and device nodes are skipped as
    /// for any rootless import.
    pub fn keep_owners(mut self) -> Self {
        self.owners = true;
        self
    }

    fn mark_opaque(&mut self, rel: &Path) -> Result<(), OciError> {
        let shown = self.root_path.join(rel);
        self.dir(rel)?;
        let fd = self
            .resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
            .map_err(|e| io_err("cannot open", &shown, e))?;
        rfs::fsetxattr(&fd, "user.overlay.opaque", b"y", rfs::XattrFlags::empty())
            .map_err(|e| io_err("cannot mark opaque", &shown, e))
    }

    fn make_whiteout(&mut self, rel: &Path) -> Result<(), OciError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().expect("a whiteout has a name");
        let shown = self.root_path.join(rel);
        let pfd = self.dir(parent)?;
        self.clear(&pfd, rel, name, false)?;
        if self.as_root {
            return rfs::mknodat(&pfd, name, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| io_err("cannot create whiteout", &shown, e));
        }
        let fd = rfs::openat(
            &pfd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err("cannot create whiteout", &shown, e))?;
        rfs::fsetxattr(&fd, "user.overlay.whiteout", b"y", rfs::XattrFlags::empty())
            .map_err(|e| io_err("cannot mark whiteout", &shown, e))?;
        let dfd = self
            .resolve(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
            .map_err(|e| io_err("cannot open", &shown, e))?;
        let mut cur = [0u8; 1];
        if !matches!(rfs::fgetxattr(&dfd, "user.overlay.opaque", &mut cur[..]), Ok(1) if cur[0] == b'y') {
            rfs::fsetxattr(&dfd, "user.overlay.opaque", b"x", rfs::XattrFlags::empty())
                .map_err(|e| io_err("cannot mark whiteouts in", &self.root_path.join(parent), e))?;
        }
        Ok(())
    }

    fn resolve(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        if !NO_OPENAT2.load(std::sync::atomic::Ordering::Relaxed) {
            match rfs::openat2(
                &self.root,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, std::sync::atomic::Ordering::Relaxed),
                r => return r,
            }
        }
        walk_in_root(&self.root, rel, flags)
    }

    /// The directory `rel` (resolved inside the target), created with its missing parents.
    fn dir(&self, rel: &Path) -> Result<OwnedFd, OciError> {
        match self.resolve(rel, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io_err("cannot open directory", &self.root_path.join(rel), e)),
        }
        let mut prefix = PathBuf::new();
        let mut cur = self
            .resolve(Path::new(""), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| io_err("cannot open", &self.root_path, e))?;
        for c in rel.components() {
            prefix.push(c);
            cur = match self.resolve(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let lower = if self.world_part { self.lower_dir(&prefix)? } else { None };
                    let mode = lower.as_ref().map_or(0o755, |m| m.st_mode & 0o7777 | 0o700);
                    match rfs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(io_err("cannot create directory", &self.root_path.join(&prefix), e))
                        }
                    }
                    let fd = self
                        .resolve(&prefix, OFlags::PATH | OFlags::DIRECTORY)
                        .map_err(|e| io_err("cannot open directory", &self.root_path.join(&prefix), e))?;
                    if let Some(m) = lower {
                        // As the layer below has it (overlayfs's copy-up keeps the same).
                        let shown = self.root_path.join(&prefix);
                        let parent = prefix.parent().unwrap_or(Path::new(""));
                        let pfd = self
                            .resolve(parent, OFlags::PATH | OFlags::DIRECTORY)
                            .map_err(|e| io_err("cannot open directory", &shown, e))?;
                        self.owner_at(&pfd, c.as_os_str(), m.st_uid, m.st_gid, &shown)?;
                        self.implied.borrow_mut().insert(
                            prefix.clone(),
                            DirAttrs { mode: m.st_mode & 0o7777, mtime: m.st_mtime.max(0) as u64 },
                        );
                    }
                    fd
                }
                Err(e) => return Err(io_err("cannot open directory", &self.root_path.join(&prefix), e)),
            };
        }
        Ok(cur)
    }

    /// Removes `name` in `dir` (a whole tree for a directory); absent is fine.
    fn remove_at(&self, dir: impl AsFd, name: &OsStr, shown: &Path) -> Result<(), OciError> {
        match rfs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {}
            Err(e) => return Err(io_err("cannot remove", shown, e)),
        }
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("cannot open", shown, e))?;
        if !self.as_root {
            // Our own directory: make it writable so its entries can go.
            let _ = rfs::fchmod(&fd, Mode::from_raw_mode(0o700));
        }
        for name in list_dir(&fd).map_err(|e| io_err("cannot read directory", shown, e))? {
            self.remove_at(&fd, &name, &shown.join(&name))?;
        }
        rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR).map_err(|e| io_err("cannot remove", shown, e))
    }

    /// Forgets the deferred attributes of `rel` and everything below it.
    fn forget(&mut self, rel: &Path) {
        let gone: Vec<PathBuf> = self
            .dirs
            .range(rel.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(rel))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            self.dirs.remove(&p);
        }
    }

    /// Removes `rel` if it exists.
    fn remove(&mut self, rel: &Path) -> Result<(), OciError> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { return Ok(()) };
        let pfd = match self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(io_err("cannot open directory", &self.root_path.join(parent), e)),
        };
        self.forget(rel);
        self.remove_at(&pfd, name, &self.root_path.join(rel))
    }

    /// Empties directory `rel` of what this layer did not put there.
    fn opaque(&mut self, rel: &Path, this_layer: &HashSet<PathBuf>) -> Result<(), OciError> {
        let fd = match self.resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io_err("cannot open directory", &self.root_path.join(rel), e)),
        };
        for name in
            list_dir(&fd).map_err(|e| io_err("cannot read directory", &self.root_path.join(rel), e))?
        {
            let child = rel.join(&name);
            if !this_layer.contains(&child) {
                self.forget(&child);
                self.remove_at(&fd, &name, &self.root_path.join(&child))?;
            }
        }
        Ok(())
    }

    /// Removes what is at `name` in `pfd` unless it is a directory and `keep_dir`.
    fn clear(&mut self, pfd: &OwnedFd, rel: &Path, name: &OsStr, keep_dir: bool) -> Result<bool, OciError> {
        match rfs::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if keep_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory => Ok(true),
            Ok(_) => {
                self.forget(rel);
                self.remove_at(pfd, name, &self.root_path.join(rel))?;
                Ok(false)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_err("cannot stat", &self.root_path.join(rel), e)),
        }
    }

    fn set_xattrs(
        &mut self,
        fd: impl AsFd,
        xattrs: &[(OsString, Vec<u8>)],
        rel: &Path,
    ) -> Result<(), OciError> {
        for (k, v) in xattrs {
            // A jail's root (its user namespace's, with CAP_SETFCAP) sets file capabilities
            // (the kernel stores them for that namespace's root) and what else the namespace
            // allows, never `trusted.*`; a plain rootless caller only `user.*`.
            let kb = k.as_bytes();
            // Overlayfs's own attributes (opaque, redirect, metacopy, whiteout) come only from
            // the image's whiteouts, converted here: never from an image's headers.
            if overlay_internal(kb) {
                self.skipped.xattr(kb);
                continue;
            }
            let settable =
                self.as_root || kb.starts_with(b"user.") || (self.owners && !kb.starts_with(b"trusted."));
            if !settable {
                self.skipped.xattr(kb);
                continue;
            }
            match rfs::fsetxattr(&fd, k.as_os_str(), v, rfs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::NOTSUP) | Err(Errno::PERM) | Err(Errno::INVAL) if !self.as_root => {
                    self.skipped.xattr(kb)
                }
                Err(Errno::NOTSUP) | Err(Errno::PERM) => self.skipped.xattr(kb),
                Err(e) => {
                    return Err(io_err("cannot set an extended attribute on", &self.root_path.join(rel), e))
                }
            }
        }
        Ok(())
    }

    fn owner_at(
        &self,
        dir: impl AsFd,
        name: &OsStr,
        uid: u32,
        gid: u32,
        shown: &Path,
    ) -> Result<(), OciError> {
        if !self.owners {
            return Ok(());
        }
        let chown = |u: u32, g: u32| {
            rfs::chownat(
                &dir,
                name,
                Some(rfs::Uid::from_raw(u)),
                Some(rfs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
        };
        match chown(uid, gid) {
            Err(Errno::INVAL) if !self.as_root => {
                self.clamped.set(self.clamped.get() + 1);
                chown(if uid > 65535 { 65534 } else { uid }, if gid > 65535 { 65534 } else { gid })
            }
            r => r,
        }
        .map_err(|err| io_err("cannot chown", shown, err))
    }

    fn owner(&self, fd: impl AsFd, uid: u32, gid: u32, rel: &Path) -> Result<(), OciError> {
        if self.owners {
            let chown =
                |u: u32, g: u32| rfs::fchown(&fd, Some(rfs::Uid::from_raw(u)), Some(rfs::Gid::from_raw(g)));
            match chown(uid, gid) {
                // Not mapped in the jail's user namespace.
                Err(Errno::INVAL) if !self.as_root => {
                    self.clamped.set(self.clamped.get() + 1);
                    let (u, g) =
                        (if uid > 65535 { 65534 } else { uid }, if gid > 65535 { 65534 } else { gid });
                    chown(u, g).map_err(|e| io_err("cannot chown", &self.root_path.join(rel), e))?;
                }
                r => r.map_err(|e| io_err("cannot chown", &self.root_path.join(rel), e))?,
            }
        }
        Ok(())
    }

    /// Applies one layer (an uncompressed tar stream). The stream is not read past the end of
    /// the archive; the caller drains it (to finish its digests).
    pub fn apply<R: Read>(&mut self, reader: R) -> Result<(), OciError> {
        let mut ar = tar::Archive::new(reader);
        let mut this_layer: HashSet<PathBuf> = HashSet::new();
        let layer_err = |e: io::Error| OciError::Layer(e.to_string());
        for e in ar.entries().map_err(layer_err)? {
            let mut e = e.map_err(layer_err)?;
            let kind = e.header().entry_type();
            if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
                continue;
            }
            let Some(rel) = normalize(&e.path_bytes())? else { continue };
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let name = rel.file_name().expect("a normalized path has a last component").to_os_string();
            let name_b = name.as_bytes();
            if name_b == WH_OPAQUE.as_bytes() {
                if self.upper {
                    self.mark_opaque(&parent)?;
                } else {
                    self.opaque(&parent, &this_layer)?;
                }
                continue;
            }
            if let Some(victim) = name_b.strip_prefix(WH_PREFIX.as_bytes()) {
                let victim = parent.join(OsStr::from_bytes(victim));
                if self.upper {
                    self.make_whiteout(&victim)?;
                } else {
                    self.remove(&victim)?;
                }
                continue;
            }
            if (!self.upper || self.world_part) && rel.starts_with("dev") && rel.components().count() > 1 {
                self.skipped.devices +=
                    u64::from(matches!(kind, tar::EntryType::Char | tar::EntryType::Block));
                continue;
            }
            for a in rel.ancestors() {
                if !this_layer.insert(a.to_path_buf()) {
                    break;
                }
            }
            let pax = read_pax(&mut e).map_err(layer_err)?;
            let h = e.header();
            let uid = pax.uid.unwrap_or(h.uid().map_err(layer_err)? as u32);
            let gid = pax.gid.unwrap_or(h.gid().map_err(layer_err)? as u32);
            let mode = h.mode().map_err(layer_err)? & 0o7777;
            let mtime = h.mtime().unwrap_or(0);
            let ts = Timestamps {
                last_access: Timespec { tv_sec: mtime as i64, tv_nsec: 0 },
                last_modification: Timespec { tv_sec: mtime as i64, tv_nsec: 0 },
            };
            let pfd = self.dir(&parent)?;
            let shown = self.root_path.join(&rel);
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                    self.clear(&pfd, &rel, &name, false)?;
                    let fd = rfs::openat(
                        &pfd,
                        &name,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|err| io_err("cannot create", &shown, err))?;
                    let mut f = File::from(fd);
                    copy_big(&mut e, &mut f).map_err(|(read, err)| {
                        if read {
                            OciError::Layer(format!(
                                "reading {}: {err} (interrupted or truncated)",
                                rel.display()
                            ))
                        } else {
                            io_err("cannot write", &shown, err)
                        }
                    })?;
                    self.owner(&f, uid, gid, &rel)?;
                    rfs::fchmod(&f, Mode::from_raw_mode(mode))
                        .map_err(|err| io_err("cannot chmod", &shown, err))?;
                    self.set_xattrs(&f, &pax.xattrs, &rel)?;
                    rfs::futimens(&f, &ts).map_err(|err| io_err("cannot set times of", &shown, err))?;
                }
                tar::EntryType::Directory => {
                    if !self.clear(&pfd, &rel, &name, true)? {
                        rfs::mkdirat(&pfd, &name, Mode::from_raw_mode(0o700))
                            .map_err(|err| io_err("cannot create directory", &shown, err))?;
                    }
                    let fd = rfs::openat(
                        &pfd,
                        &name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|err| io_err("cannot open", &shown, err))?;
                    self.owner(&fd, uid, gid, &rel)?;
                    self.set_xattrs(&fd, &pax.xattrs, &rel)?;
                    if !self.as_root {
                        let _ = rfs::fchmod(&fd, Mode::from_raw_mode(0o700 | mode));
                    }
                    self.dirs.insert(rel.clone(), DirAttrs { mode, mtime });
                }
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name_bytes()
                        .ok_or_else(|| OciError::Layer(format!("symlink {} has no target", rel.display())))?;
                    self.clear(&pfd, &rel, &name, false)?;
                    rfs::symlinkat(OsStr::from_bytes(&target), &pfd, &name)
                        .map_err(|err| io_err("cannot create symlink", &shown, err))?;
                    self.owner_at(&pfd, &name, uid, gid, &shown)?;
                    for (k, _) in &pax.xattrs {
                        self.skipped.xattr(k.as_bytes());
                    }
                    let _ = rfs::utimensat(&pfd, &name, &ts, AtFlags::SYMLINK_NOFOLLOW);
                }
                tar::EntryType::Link => {
                    let target = e.link_name_bytes().ok_or_else(|| {
                        OciError::Layer(format!("hard link {} has no target", rel.display()))
                    })?;
                    let target = normalize(&target)?
                        .ok_or_else(|| OciError::Layer(format!("hard link {} to the root", rel.display())))?;
                    let tparent = target.parent().unwrap_or(Path::new(""));
                    let tname = target.file_name().expect("normalized");
                    let tfd = match self.resolve(tparent, OFlags::PATH | OFlags::DIRECTORY) {
                        Err(Errno::NOENT) if self.world_part => {
                            return Err(OciError::Unsupported(format!(
                                "hard link {} to {}, which is in a layer below",
                                rel.display(),
                                target.display()
                            )))
                        }
                        r => r.map_err(|err| {
                            io_err("cannot open the target of hard link", &self.root_path.join(&target), err)
                        })?,
                    };
                    self.clear(&pfd, &rel, &name, false)?;
                    match rfs::linkat(&tfd, tname, &pfd, &name, AtFlags::empty()) {
                        Err(Errno::NOENT) if self.world_part => {
                            return Err(OciError::Unsupported(format!(
                                "hard link {} to {}, which is in a layer below",
                                rel.display(),
                                target.display()
                            )))
                        }
                        r => r.map_err(|err| io_err("cannot create hard link", &shown, err))?,
                    }
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let ft = match kind {
                        tar::EntryType::Char => FileType::CharacterDevice,
                        tar::EntryType::Block => FileType::BlockDevice,
                        _ => FileType::Fifo,
                    };
                    if ft != FileType::Fifo && !self.as_root {
                        self.skipped.devices += 1;
                        continue;
                    }
                    let dev = rfs::makedev(
                        h.device_major().ok().flatten().unwrap_or(0),
                        h.device_minor().ok().flatten().unwrap_or(0),
                    );
                    self.clear(&pfd, &rel, &name, false)?;
                    rfs::mknodat(&pfd, &name, ft, Mode::from_raw_mode(mode), dev)
                        .map_err(|err| io_err("cannot create node", &shown, err))?;
                    self.owner_at(&pfd, &name, uid, gid, &shown)?;
                    let _ = rfs::utimensat(&pfd, &name, &ts, AtFlags::SYMLINK_NOFOLLOW);
                }
                other => {
                    return Err(OciError::Layer(format!(
                        "entry {} has unsupported tar type {other:?}",
                        rel.display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Applies the deferred directory modes and times (deepest first).
    pub fn finish(mut self) -> Result<Skipped, OciError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        for (k, v) in std::mem::take(self.implied.get_mut()) {
            dirs.entry(k).or_insert(v);
        }
        for (rel, a) in dirs.iter().rev() {
            let shown = self.root_path.join(rel);
            let fd = self
                .resolve(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)
                .map_err(|e| io_err("cannot open", &shown, e))?;
            rfs::fchmod(&fd, Mode::from_raw_mode(a.mode)).map_err(|e| io_err("cannot chmod", &shown, e))?;
            let t = Timespec { tv_sec: a.mtime as i64, tv_nsec: 0 };
            let _ = rfs::futimens(&fd, &Timestamps { last_access: t, last_modification: t });
        }
        self.skipped.ids += self.clamped.get();
        Ok(std::mem::take(&mut self.skipped))
    }
}

/// The names in a directory, without `.` and `..`.
pub fn list_dir(fd: impl AsFd) -> Result<Vec<OsString>, Errno> {
    let mut dir = rfs::Dir::read_from(fd)?;
    let mut out = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// `io::copy` with a 1 MiB buffer; an error says whether reading (`true`) or writing failed.
pub fn copy_big(r: &mut impl Read, w: &mut impl Write) -> Result<u64, (bool, io::Error)> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((true, e)),
        };
        w.write_all(&buf[..k]).map_err(|e| (false, e))?;
        n += k as u64;
    }
}

/// The path components of `p` as one string with `/` (for tar names).
pub fn tar_name(p: &Path) -> PathBuf {
    p.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn normalizes() {
        assert_eq!(normalize(b"./a//b/").unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(normalize(b"/").unwrap(), None);
        assert!(normalize(b"a/../../etc").is_err());
    }

    /// A fresh directory of the test's own.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ljbuild-layer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A layer of directories (mode 0755) and empty files (names ending in `/` are directories).
    fn layer_tar(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for n in names {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if n.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(0);
            b.append_data(&mut h, n, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn mkdir_mode(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Applies `names` as a world's further layer over `lowers` (bottom first) into `top`.
    fn apply_part(top: &Path, lowers: &[PathBuf], names: &[&str]) -> Result<(), OciError> {
        std::fs::create_dir_all(top).unwrap();
        let root = rustix::process::geteuid().is_root();
        let mut a = Applier::new_world_part(top, root, lowers)?;
        a.apply(&layer_tar(names)[..])?;
        a.finish().map(drop)
    }

    /// A directory a layer implies gets what overlayfs shows of it in the layers below, and
    /// nothing of what the merged tree does not have there: nothing through a lower layer's
    /// symlink (here `a -> b`, and `h -> /`, the host's root), under a whiteout, under an opaque
    /// directory (a lower one's or this layer's own), or under a non-directory.
    #[test]
    fn implied_directory_as_overlayfs_shows_it() {
        let d = scratch("implied");
        let (bottom, mid) = (d.join("bottom"), d.join("mid"));
        for l in [&bottom, &mid] {
            std::fs::create_dir_all(l).unwrap();
        }
        // The layers below: directories of mode 0750, each hidden from `top` in its own way.
        mkdir_mode(&mid.join("b/c"), 0o750);
        std::os::unix::fs::symlink("b", mid.join("a")).unwrap();
        std::os::unix::fs::symlink("/", mid.join("h")).unwrap();
        mkdir_mode(&bottom.join("w/y"), 0o750);
        std::fs::write(mid.join("w"), b"").unwrap();
        rfs::setxattr(mid.join("w"), "user.overlay.whiteout", b"y", rfs::XattrFlags::empty()).unwrap();
        mkdir_mode(&bottom.join("x/y"), 0o750);
        mkdir_mode(&mid.join("x"), 0o711);
        rfs::setxattr(mid.join("x"), "user.overlay.opaque", b"y", rfs::XattrFlags::empty()).unwrap();
        mkdir_mode(&bottom.join("o/p"), 0o750);
        mkdir_mode(&bottom.join("f/g"), 0o750);
        std::fs::write(mid.join("f"), b"data").unwrap();
        // Shown through: a directory of a lower layer, under a merged directory.
        mkdir_mode(&bottom.join("m/n"), 0o750);
        std::fs::create_dir(mid.join("m")).unwrap();
        let top = d.join("top");
        apply_part(
            &top,
            &[bottom.clone(), mid.clone()],
            &[
                "a/",
                "a/c/file",
                "h/",
                "h/etc/file",
                "w/",
                "w/y/file",
                "x/y/file",
                "o/",
                "o/.wh..wh..opq",
                "o/p/file",
                "f/",
                "f/g/file",
                "m/n/file",
                "new/dir/file",
            ],
        )
        .unwrap();
        let fresh = mode(&top.join("new/dir"));
        assert_ne!(fresh, 0o750);
        let shown: Vec<_> = ["a/c", "h/etc", "w/y", "x/y", "o/p", "f/g"]
            .into_iter()
            .filter(|h| mode(&top.join(h)) != fresh)
            .collect();
        assert!(shown.is_empty(), "{shown:?}: as the layers below have them, which overlayfs does not show");
        assert_eq!(mode(&top.join("m/n")), 0o750, "m/n: as the layer below has it");
        assert_eq!(mode(&top.join("x")), mode(&mid.join("x")), "x: as the topmost layer below has it");
        // An implied directory the topmost layer below has as a symlink: cannot be stacked.
        let err = apply_part(&d.join("top2"), &[bottom.clone(), mid.clone()], &["a/c/file"]).unwrap_err();
        assert!(matches!(err, OciError::Unsupported(_)), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// How a directory's owners map to the image's: as root, unchanged; rootless, the caller is
/// root (0) and its `/etc/subuid` range follows from 1, as in the caller's jails.
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    /// `(caller uid, subuid start, count)`; `None` keeps ids.
    pub uid: Option<(u32, u32, u32)>,
    /// The same for gids.
    pub gid: Option<(u32, u32, u32)>,
}

impl IdMap {
    /// The map for the current process.
    pub fn current() -> IdMap {
        let uid = rustix::process::geteuid().as_raw();
        if uid == 0 {
            return IdMap::default();
        }
        let gid = rustix::process::getegid().as_raw();
        let name = std::env::var("USER").ok();
        let range = |file: &str, id: u32| -> (u32, u32, u32) {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for line in text.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() == 3 && (f[0] == id.to_string() || name.as_deref() == Some(f[0])) {
                    if let (Ok(s), Ok(c)) = (f[1].parse(), f[2].parse()) {
                        return (id, s, c);
                    }
                }
            }
            (id, 0, 0)
        };
        IdMap { uid: Some(range("/etc/subuid", uid)), gid: Some(range("/etc/subgid", gid)) }
    }

    fn map(m: Option<(u32, u32, u32)>, id: u32) -> u32 {
        match m {
            None => id,
            Some((me, _, _)) if id == me => 0,
            Some((_, start, count)) if id >= start && id - start < count => id - start + 1,
            Some(_) => 65534,
        }
    }
}

/// Overlay's own extended attributes: never exported.
fn overlay_internal(name: &[u8]) -> bool {
    name.starts_with(b"user.overlay.") || name.starts_with(b"trusted.overlay.")
}

/// The extended attributes of `p` (not following symlinks).
fn xattrs_of(p: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rfs::llistxattr(p, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut val = vec![0u8; 256];
        let k = loop {
            match rfs::lgetxattr(p, OsStr::from_bytes(name), &mut val[..]) {
                Ok(k) => break Some(k),
                Err(Errno::RANGE) => val.resize(val.len() * 4, 0),
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(k) = k {
            out.push((name.to_vec(), val[..k].to_vec()));
        }
    }
    Ok(out)
}

fn has_overlay_flag(x: &[(Vec<u8>, Vec<u8>)], flag: &str, value: &[u8]) -> bool {
    let (u, t) = (format!("user.overlay.{flag}"), format!("trusted.overlay.{flag}"));
    x.iter().any(|(k, v)| (k == u.as_bytes() || k == t.as_bytes()) && (value.is_empty() || v == value))
}

/// A PAX extended header record `LEN KEY=VALUE\n`.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// Writes a directory as an OCI layer tar: sorted, with owners (mapped by [`IdMap`]), modes,
/// times, extended attributes (`security.capability`, `user.*`, ...; never overlay's own) and
/// hard links. An overlay upper (`upper`) has its whiteouts converted: a 0/0 character device or
/// a file marked `overlay.whiteout` becomes `.wh.NAME`, a directory marked `overlay.opaque=y`
/// gets `.wh..wh..opq`. The contents of `/dev` are left out of a world (`!upper`).
pub struct LayerWriter<'a, W: Write> {
    tar: tar::Builder<W>,
    ids: &'a IdMap,
    upper: bool,
    times: bool,
    links: std::collections::HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> std::fmt::Debug for LayerWriter<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerWriter").field("upper", &self.upper).finish()
    }
}

impl<'a, W: Write> LayerWriter<'a, W> {
    /// A writer into `out`.
    pub fn new(out: W, ids: &'a IdMap, upper: bool) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        LayerWriter { tar, ids, upper, times: true, links: std::collections::HashMap::new() }
    }

    /// Writes every modification time as 0: the canonical form a layer's content digest is
    /// taken of (see [`content_digest`]).
    pub fn without_times(mut self) -> Self {
        self.times = false;
        self
    }

    /// Writes the tree at `dir` and finishes the archive.
    pub fn write_tree(mut self, dir: &Path) -> Result<W, OciError> {
        self.walk(dir, Path::new(""))?;
        self.tar.into_inner().map_err(|e| io_err("cannot write layer for", dir, e))
    }

    fn header(&self, md: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
        use std::os::unix::fs::MetadataExt;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(IdMap::map(self.ids.uid, md.uid())));
        h.set_gid(u64::from(IdMap::map(self.ids.gid, md.gid())));
        h.set_mtime(if self.times { md.mtime().max(0) as u64 } else { 0 });
        h.set_size(0);
        h
    }

    fn pax(&mut self, xattrs: &[(Vec<u8>, Vec<u8>)], shown: &Path) -> Result<(), OciError> {
        let mut data = Vec::new();
        for (k, v) in xattrs.iter().filter(|(k, _)| !overlay_internal(k)) {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            data.extend(pax_record(&key, v));
        }
        if data.is_empty() {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_path("PaxHeader").map_err(|e| io_err("cannot write layer entry", shown, e))?;
        h.set_cksum();
        self.tar.append(&h, &data[..]).map_err(|e| io_err("cannot write layer entry", shown, e))
    }

    fn entry(
        &mut self,
        mut h: tar::Header,
        rel: &Path,
        data: impl Read,
        shown: &Path,
    ) -> Result<(), OciError> {
        self.tar.append_data(&mut h, rel, data).map_err(|e| io_err("cannot write layer entry", shown, e))
    }

    fn whiteout(&mut self, rel: &Path, md: &std::fs::Metadata, shown: &Path) -> Result<(), OciError> {
        let name = rel.file_name().expect("a child has a name");
        let mut wh = OsString::from(WH_PREFIX);
        wh.push(name);
        let mut h = self.header(md, tar::EntryType::Regular);
        h.set_mode(0o644);
        self.entry(h, &rel.with_file_name(wh), io::empty(), shown)
    }

    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<(), OciError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut names: Vec<OsString> = std::fs::read_dir(dir)
            .map_err(|e| io_err("cannot read directory", dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| io_err("cannot read directory", dir, e))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let crel = rel.join(&name);
            if !self.upper && crel.starts_with("dev") && crel.components().count() > 1 {
                continue;
            }
            let md = std::fs::symlink_metadata(&path).map_err(|e| io_err("cannot stat", &path, e))?;
            let ft = md.file_type();
            let xattrs =
                xattrs_of(&path).map_err(|e| io_err("cannot read extended attributes of", &path, e))?;
            if self.upper
                && ((ft.is_char_device() && md.rdev() == 0)
                    || (ft.is_file() && md.len() == 0 && has_overlay_flag(&xattrs, "whiteout", b"")))
            {
                self.whiteout(&crel, &md, &path)?;
                continue;
            }
            if ft.is_dir() {
                self.pax(&xattrs, &path)?;
                let h = self.header(&md, tar::EntryType::Directory);
                self.entry(h, &crel, io::empty(), &path)?;
                if self.upper && has_overlay_flag(&xattrs, "opaque", b"y") {
                    let mut h = self.header(&md, tar::EntryType::Regular);
                    h.set_mode(0o644);
                    self.entry(h, &crel.join(WH_OPAQUE), io::empty(), &path)?;
                }
                self.walk(&path, &crel)?;
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| io_err("cannot read symlink", &path, e))?;
                let mut h = self.header(&md, tar::EntryType::Symlink);
                self.tar
                    .append_link(&mut h, &crel, &target)
                    .map_err(|e| io_err("cannot write layer entry", &path, e))?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    if let Some(first) = self.links.get(&(md.dev(), md.ino())).cloned() {
                        let mut h = self.header(&md, tar::EntryType::Link);
                        self.tar
                            .append_link(&mut h, &crel, &first)
                            .map_err(|e| io_err("cannot write layer entry", &path, e))?;
                        continue;
                    }
                    self.links.insert((md.dev(), md.ino()), crel.clone());
                }
                let f = File::open(&path).map_err(|e| io_err("cannot read", &path, e))?;
                self.pax(&xattrs, &path)?;
                let mut h = self.header(&md, tar::EntryType::Regular);
                h.set_size(md.len());
                self.entry(h, &crel, io::BufReader::with_capacity(1 << 20, f), &path)?;
            } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else if ft.is_char_device() {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = self.header(&md, kind);
                let _ = h.set_device_major(rfs::major(md.rdev()));
                let _ = h.set_device_minor(rfs::minor(md.rdev()));
                self.entry(h, &crel, io::empty(), &path)?;
            }
            // Sockets are not part of an image.
        }
        Ok(())
    }
}

/// The content digest of a layer directory (`sha256:HEX`), the name it is stored under in
/// `store/sha256/`: the sha256 of the tar [`LayerWriter`] makes of it with every modification
/// time 0. Entries sorted by name; owners as the jail sees them ([`IdMap::current`]: the same
/// digest for a root and a rootless store); modes, extended attributes (overlay's own never),
/// hard links, symlink targets and file contents; overlay whiteouts and opaque directories in
/// their OCI form (so both ways a whiteout is made on disk give one digest); a world's `/dev`
/// contents left out; the mode of the directory itself not included. A rebuild that makes the
/// same files gives the same digest.
pub fn content_digest(dir: &Path, upper: bool) -> Result<String, OciError> {
    let ids = IdMap::current();
    let sink = io::BufWriter::with_capacity(64 << 10, super::digest::HashWriter::new(io::sink()));
    let out = LayerWriter::new(sink, &ids, upper).without_times().write_tree(dir)?;
    let hw = out.into_inner().map_err(|e| io_err("cannot hash", dir, e.into_error()))?;
    Ok(hw.finish().1)
}
