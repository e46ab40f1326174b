//! Cgroup limits (`--memory`, `--pids`, `--cpus`): one cgroup per jail, named
//! `lightjail-<ljspawn pid>`, removed when the jail ends (and by the next run if ljspawn was
//! killed first).
//!
//! Where: cgroup v2 (`memory.max`, `pids.max`, `cpu.max`, `cgroup.kill`) when the v2 hierarchy
//! has every controller the limits need; else the v1 hierarchies that are mounted (hybrid
//! hosts: `memory.limit_in_bytes`, `pids.max`, `cpu.cfs_quota_us`). In every mode the jail's
//! cgroup is made *inside the caller's own* (its cgroup in each hierarchy, from
//! `/proc/self/cgroup`): `CALLER/lightjail-<pid>`, so every limit the caller is under holds for
//! the jail too and the jail's own can only tighten them. Nothing outside the caller's cgroup is
//! written on its behalf.
//!
//! v1: the jail's cgroup is made in the caller's cgroup of each hierarchy (root and setuid;
//! rootless callers get no v1 limits, since v1 cannot be delegated safely).
//! v2: a cgroup with processes of its own cannot give a child a controller (the "no internal
//! processes" rule), so the jail's cgroup needs the caller's cgroup to have the controllers in
//! its `cgroup.subtree_control` already, or ljspawn to be the only process in it: then ljspawn
//! moves itself into a leaf of its own (`lightjail-<pid>.ljspawn`) and enables the controllers
//! in its cgroup, as `systemd-nspawn` does in a delegated unit; all undone when the jail's
//! cgroup is removed (a leaf left by a killed ljspawn goes with a later run's `reap_stale`)
//! (`systemd-run --scope -p Delegate=yes ljspawn ...`, with `--user` for a user's own
//! delegated tree). Rootless, the caller's cgroup must be the caller's own (delegated). In the
//! root cgroup (the hierarchy's, not a cgroup namespace's), only root mode may enable controllers
//! for children. Otherwise one line says which of these is missing.
//!
//! No unsafe code: everything is a file under the cgroup file systems. `Tree` is the seam
//! the unit tests use to run the same code against a fake hierarchy in a temporary directory.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// Limits asked for on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Bytes.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// A fraction of one CPU's time (0.5 is half a core), enforced per 100 ms period.
    pub cpus: Option<f64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }

    /// The controllers these limits need, by their v1/v2 names.
    fn controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.memory.is_some() {
            c.push("memory");
        }
        if self.pids.is_some() {
            c.push("pids");
        }
        if self.cpus.is_some() {
            c.push("cpu");
        }
        c
    }
}

/// A failure, in one line naming the path and why.
#[derive(Debug)]
pub struct LimitError(pub String);

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn io_err(what: impl fmt::Display, e: io::Error) -> LimitError {
    LimitError(format!("{what}: {}", crate::describe(&e)))
}

/// Where the cgroup file systems are and how files are written: the real thing, or (tests)
/// a directory that stands in for `/` and a flag telling writes to create the files the
/// kernel would have created.
#[derive(Debug, Clone)]
pub struct Tree {
    pub prefix: PathBuf,
    pub fake: bool,
}

impl Tree {
    pub fn real() -> Tree {
        Tree { prefix: PathBuf::from("/"), fake: false }
    }

    fn path(&self, p: &Path) -> PathBuf {
        self.prefix.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// The `tasks` files of the v1 cgroup directory `dir` and of its parent, opened for
    /// writing fd-relative under the parent, opened first: no symlink followed on the way to
    /// the parent, and none in the two names below it (`dir`'s own and `tasks`).
    fn open_tasks(&self, dir: &Path) -> io::Result<[OwnedFd; 2]> {
        let bad = || io::Error::from(io::ErrorKind::InvalidInput);
        let (own, name) = (dir.parent().ok_or_else(bad)?, dir.file_name().ok_or_else(bad)?);
        let (own, name) = (own.to_str().ok_or_else(bad)?, name.to_str().ok_or_else(bad)?);
        let at = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let own = sys::openat2(None, own, at, 0, sys::RESOLVE_NO_SYMLINKS)?;
        let beneath = sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_BENEATH;
        let jail = sys::openat2(Some(own.as_fd()), name, at, 0, beneath)?;
        let w = libc::O_WRONLY | libc::O_NOFOLLOW | if self.fake { libc::O_CREAT | libc::O_TRUNC } else { 0 };
        let tasks = |d: &OwnedFd| sys::openat2(Some(d.as_fd()), "tasks", w, 0o644, beneath);
        Ok([tasks(&jail)?, tasks(&own)?])
    }

    fn write(&self, file: &Path, value: &str) -> Result<(), LimitError> {
        let mut o = fs::OpenOptions::new();
        o.write(true).create(self.fake).truncate(self.fake);
        let mut f = o.open(file).map_err(|e| io_err(format!("cannot open {}", file.display()), e))?;
        io::Write::write_all(&mut f, value.as_bytes())
            .map_err(|e| io_err(format!("cannot write '{}' to {}", value.trim(), file.display()), e))
    }
}

/// The hierarchies found on this host.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// cgroup v2, mounted at `mount`, which shows the hierarchy from its cgroup `root` (`/`
    /// but in a container that was given its own cgroup only); `own` is this process's cgroup
    /// (both as `/proc/self/cgroup` names them: under `root`).
    V2 { mount: PathBuf, root: PathBuf, own: PathBuf },
    /// cgroup v1: (controller, mount point, this process's cgroup in that hierarchy relative to
    /// the mount's root) for each controller the limits need.
    V1 { controllers: Vec<(String, PathBuf, PathBuf)> },
}

/// Who the cgroup is made for: root itself, a setuid caller the administrator granted limits,
/// or an ordinary caller without privileges (uid), who needs a v2 cgroup delegated to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Root,
    /// Setuid mode: ljspawn is root, acting for the caller (its real uid).
    Setuid(u32),
    Rootless(u32),
}

/// Whether a cgroup path of `/proc/PID/cgroup` is a plain absolute one: `/`, or `/` and
/// names, none empty, `.` or `..`. Inside a cgroup namespace a process outside its root reads
/// a path with `..` (`/../sib/svc`), which joined to a mount would leave it: never used.
pub fn plain_cgroup(path: &Path) -> bool {
    let b = path.as_os_str().as_encoded_bytes();
    b == b"/"
        || b.strip_prefix(b"/")
            .is_some_and(|rest| rest.split(|c| *c == b'/').all(|c| !c.is_empty() && c != b"." && c != b".."))
}

/// The one line for a cgroup path `plain_cgroup` refuses.
fn not_plain(path: &Path) -> LimitError {
    LimitError(format!(
        "this process's cgroup {} (/proc/self/cgroup) is not below the cgroup mount's root (a '..', '.' or empty name in it): no limits",
        path.display()
    ))
}

/// `path` (absolute, as in /proc/self/cgroup) under `base`.
fn under(base: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/").unwrap_or(path) {
        rel if rel.as_os_str().is_empty() => base.to_path_buf(),
        rel => base.join(rel),
    }
}

/// The directory of the cgroup `cgroup` in a mount of its hierarchy at `mount` that shows it
/// from its cgroup `root` (`cgroup` is under `root`).
fn in_mount(mount: &Path, root: &Path, cgroup: &Path) -> PathBuf {
    under(mount, cgroup.strip_prefix(root).unwrap_or(cgroup))
}

/// One line of `/proc/self/mountinfo`.
struct Mount {
    /// The directory of its file system it shows (for a cgroup file system, a cgroup).
    root: PathBuf,
    point: PathBuf,
    fstype: String,
    /// The super block's options.
    opts: String,
}

/// The mounts of a `/proc/self/mountinfo` text: `ID PARENT DEV ROOT POINT OPTIONS [OPTIONAL...] -
/// FSTYPE SOURCE SUPER-OPTIONS`, ROOT and POINT with the kernel's octal escapes (`\040` for a
/// space, also tab, newline and backslash) decoded.
fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (root, point) = (f.nth(3)?, f.next()?);
            f.next()?;
            f.find(|x| *x == "-")?;
            let (fstype, _source) = (f.next()?, f.next()?);
            let opts = f.next().unwrap_or("");
            Some(Mount {
                root: unescape(root),
                point: unescape(point),
                fstype: fstype.into(),
                opts: opts.into(),
            })
        })
        .collect()
}

/// A mountinfo path with its `\NNN` (octal) escapes decoded.
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct =
            b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct.map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'))) {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mounts of `fstype` that show the cgroup `own` (under their root) and are not hidden by a
/// later mount on the same point, last mounted first.
fn showing<'a>(mounts: &'a [Mount], fstype: &'a str, own: &'a Path) -> impl Iterator<Item = &'a Mount> + 'a {
    mounts.iter().enumerate().rev().filter_map(move |(i, m)| {
        let shown = m.fstype == fstype
            && own.starts_with(&m.root)
            && !mounts[i + 1..].iter().any(|later| later.point == m.point);
        shown.then_some(m)
    })
}

/// This process's cgroup v2 in the text of `/proc/self/cgroup` (`/` without one).
fn own_v2(self_cgroup: &str) -> PathBuf {
    self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map_or_else(|| PathBuf::from("/"), |p| PathBuf::from(p.trim()))
}

/// The numbers in a `cgroup.procs` file.
fn pids_in(text: &str) -> Vec<i32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Finds where the controllers `limits` needs live, from the text of `/proc/self/mountinfo`
/// and `/proc/self/cgroup`.
pub fn detect(
    mountinfo: &str,
    self_cgroup: &str,
    tree: &Tree,
    limits: &Limits,
) -> Result<Layout, LimitError> {
    let need = limits.controllers();
    let mounts = mounts(mountinfo);
    let mut v1: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    // This process's cgroup in the v1 hierarchy that has controller `c`.
    let own_v1 = |c: &str| {
        self_cgroup
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                ctrls.split(',').any(|x| x == c).then(|| PathBuf::from(path.trim()))
            })
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    for c in need.iter().copied() {
        let own = own_v1(c);
        if !plain_cgroup(&own) {
            return Err(not_plain(&own));
        }
        let mut with_c = showing(&mounts, "cgroup", &own).filter(|m| m.opts.split(',').any(|o| o == c));
        if let Some(m) = with_c.next() {
            let rel = Path::new("/").join(own.strip_prefix(&m.root).unwrap_or(&own));
            v1.push((c.to_string(), m.point.clone(), rel));
        }
    }
    // (v2_layout shows no hierarchy for a v2 path that leaves its mount: the v1 controllers,
    // where they are all plain, are still used on a hybrid host.)
    if let Some(Layout::V2 { mount, root, own }) = v2_layout(&mounts, self_cgroup) {
        let available = fs::read_to_string(tree.path(&mount).join("cgroup.controllers")).unwrap_or_default();
        if need.iter().all(|c| available.split_whitespace().any(|a| a == *c)) {
            return Ok(Layout::V2 { mount, root, own });
        }
    }
    if let Some(missing) = need.iter().find(|c| !v1.iter().any(|(n, _, _)| n == *c)) {
        let own = own_v2(self_cgroup);
        if !plain_cgroup(&own) {
            return Err(not_plain(&own));
        }
        return Err(LimitError(format!(
            "no cgroup {missing} controller on this host (neither cgroup v2 nor a v1 hierarchy has it)"
        )));
    }
    Ok(Layout::V1 { controllers: v1 })
}

/// The cgroup v2 hierarchy, whatever controllers it has (`--delegate-cgroup`; on a hybrid host
/// the unified hierarchy beside the v1 controllers, often with none): the mount that shows
/// this process's cgroup, or None without one.
pub fn detect_v2(mountinfo: &str, self_cgroup: &str) -> Option<Layout> {
    v2_layout(&mounts(mountinfo), self_cgroup)
}

fn v2_layout(mounts: &[Mount], self_cgroup: &str) -> Option<Layout> {
    let own = own_v2(self_cgroup);
    if !plain_cgroup(&own) {
        return None;
    }
    let m = showing(mounts, "cgroup2", &own).next()?;
    Some(Layout::V2 { mount: m.point.clone(), root: m.root.clone(), own })
}

/// The directory of the cgroup v2 `cgroup` (as `/proc/PID/cgroup` names it) in a mount that
/// shows it, if one does.
pub fn v2_dir(mountinfo: &str, cgroup: &str) -> Option<PathBuf> {
    let cgroup = Path::new(cgroup.trim());
    if !plain_cgroup(cgroup) {
        return None;
    }
    let mounts = mounts(mountinfo);
    let m = showing(&mounts, "cgroup2", cgroup).next()?;
    Some(in_mount(&m.point, &m.root, cgroup))
}

/// The directory of the cgroup `cgroup` of the v1 hierarchy `controllers` (both as a line of
/// `/proc/PID/cgroup` names them: `cpu,cpuacct`, `name=systemd`) in a mount of that hierarchy
/// (every one of them among its options) that shows it, if one does.
pub fn v1_dir(mountinfo: &str, controllers: &str, cgroup: &str) -> Option<PathBuf> {
    let cgroup = Path::new(cgroup.trim());
    if !plain_cgroup(cgroup) {
        return None;
    }
    let mounts = mounts(mountinfo);
    let has_all = |m: &&Mount| controllers.split(',').all(|c| m.opts.split(',').any(|o| o == c));
    let m = showing(&mounts, "cgroup", cgroup).find(has_all)?;
    Some(in_mount(&m.point, &m.root, cgroup))
}

/// One jail's cgroup: the directories made (one per v1 hierarchy, or one v2 cgroup).
#[derive(Debug, Clone)]
pub struct Cgroup {
    tree: Tree,
    dirs: Vec<PathBuf>,
    v2: bool,
    memory_dir: Option<PathBuf>,
    /// `--delegate-cgroup` beside v1 limits: the v2 cgroup `delegate` made (one of `dirs`).
    v2_dir: Option<PathBuf>,
    /// v2, when ljspawn made room in the caller's cgroup: (the caller's cgroup, ljspawn's
    /// leaf in it, the controllers it enabled there), undone by `remove`.
    leaf: Option<Leaf>,
}

/// What [`Cgroup::prepare_birth`] set up for the jail's clone.
#[derive(Debug, Default)]
pub struct Birth {
    /// cgroup v2: the jail's directory and a descriptor of it, for `CLONE_INTO_CGROUP`.
    into: Option<(PathBuf, OwnedFd)>,
    /// cgroup v1: the jail's directories this process moved itself into.
    v1: Vec<Entered>,
}

/// A jail's cgroup v1 directory this process moved itself into for the clone, and the way
/// back: its own cgroup's (the directory's parent) `tasks`, open since before the move, so that
/// the move back is a write to an open file (no EMFILE or ENOMEM of an open to refuse it).
#[derive(Debug)]
struct Entered {
    dir: PathBuf,
    back: OwnedFd,
}

impl Birth {
    /// The cgroup v2 directory to clone the jail into, if any.
    pub fn cgroup_fd(&self) -> Option<BorrowedFd<'_>> {
        self.into.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// Whether the jail would be born in any of its cgroup's directories.
    pub fn any(&self) -> bool {
        self.into.is_some() || !self.v1.is_empty()
    }
}

/// The directories of its cgroup the jail was born in (see [`Cgroup::return_from`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Born(pub Vec<PathBuf>);

/// What a cgroup is made for, as its errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// `--memory`, `--pids`, `--cpus`.
    Limits,
    /// `--delegate-cgroup` (beside v1 limits, or without limits).
    Delegate,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Limits => "cgroup limits",
            Purpose::Delegate => "--delegate-cgroup",
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Purpose::Limits => "cgroup limits need",
            Purpose::Delegate => "--delegate-cgroup needs",
        }
    }
}

/// (the caller's v2 cgroup, ljspawn's leaf in it, the controllers ljspawn enabled there).
type Leaf = (PathBuf, PathBuf, Vec<&'static str>);

const PERIOD_US: u64 = 100_000;

/// How long [`Cgroup::remove`] keeps trying to remove a cgroup whose processes were killed.
const REMOVE_DEADLINE: Duration = Duration::from_secs(10);

impl Cgroup {
    /// Makes the jail's cgroup `name` inside the caller's own cgroup and writes the limits.
    pub fn create(
        layout: &Layout,
        tree: &Tree,
        name: &str,
        limits: &Limits,
        who: Who,
    ) -> Result<Cgroup, LimitError> {
        Cgroup::create_for(layout, tree, name, limits, who, Purpose::Limits)
    }

    fn create_for(
        layout: &Layout,
        tree: &Tree,
        name: &str,
        limits: &Limits,
        who: Who,
        purpose: Purpose,
    ) -> Result<Cgroup, LimitError> {
        let mut cg = Cgroup::empty(tree);
        let result = cg.make(layout, name, limits, who, purpose);
        if result.is_err() {
            let _ = cg.remove();
        }
        result.map(|()| cg)
    }

    fn make(
        &mut self,
        layout: &Layout,
        name: &str,
        limits: &Limits,
        who: Who,
        purpose: Purpose,
    ) -> Result<(), LimitError> {
        let t = self.tree.clone();
        match layout {
            Layout::V2 { mount, root, own } => {
                self.v2 = true;
                let base = in_mount(&t.path(mount), root, own);
                self.leaf = delegate_v2(&t, &base, own, name, &limits.controllers(), who, purpose)?;
                let dir = base.join(name);
                mkdir_new(&dir)?;
                self.dirs.push(dir.clone());
                if let Some(m) = limits.memory {
                    t.write(&dir.join("memory.max"), &m.to_string())?;
                    if t.fake || dir.join("memory.swap.max").exists() {
                        t.write(&dir.join("memory.swap.max"), "0")?;
                    }
                    self.memory_dir = Some(dir.clone());
                }
                if let Some(p) = limits.pids {
                    t.write(&dir.join("pids.max"), &p.to_string())?;
                }
                if let Some(c) = limits.cpus {
                    t.write(&dir.join("cpu.max"), &format!("{} {PERIOD_US}", quota(c)))?;
                }
            }
            Layout::V1 { controllers } => {
                if matches!(who, Who::Rootless(_)) {
                    return Err(LimitError(
                        "cgroup limits are not available rootless on this host: its memory, pids and cpu controllers are cgroup v1, which cannot be delegated (run as root, or use a cgroup v2 host)".into(),
                    ));
                }
                for (c, mount, own) in controllers {
                    // In the caller's own cgroup of this hierarchy.
                    let dir = under(&t.path(mount), own).join(name);
                    // Controllers mounted together (cpu,cpuacct) share one directory.
                    if !self.dirs.contains(&dir) {
                        mkdir_new(&dir)?;
                        self.dirs.push(dir.clone());
                    }
                    match (c.as_str(), limits) {
                        ("memory", Limits { memory: Some(m), .. }) => {
                            t.write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                            if t.fake || dir.join("memory.memsw.limit_in_bytes").exists() {
                                t.write(&dir.join("memory.memsw.limit_in_bytes"), &m.to_string())?;
                            }
                            self.memory_dir = Some(dir.clone());
                        }
                        ("pids", Limits { pids: Some(p), .. }) => {
                            t.write(&dir.join("pids.max"), &p.to_string())?
                        }
                        ("cpu", Limits { cpus: Some(c), .. }) => {
                            t.write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                            t.write(&dir.join("cpu.cfs_quota_us"), &quota(*c).to_string())?;
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// `--delegate-cgroup`: the jail's cgroup in the v2 hierarchy `v2` (the one made for the
    /// limits if they are v2, else a new one of the same `name`) is given to the jail's root,
    /// `owner` (host uid and gid; None: this process's own ids): the directory and the files
    /// a delegatee writes (`cgroup.procs`, `cgroup.threads`, `cgroup.subtree_control`), as
    /// systemd's `Delegate=` does. Its limits' files stay root's (the kernel's nsdelegate
    /// also keeps them out of the jail's reach).
    pub fn delegate(
        &mut self,
        v2: &Layout,
        name: &str,
        who: Who,
        owner: Option<(u32, u32)>,
    ) -> Result<(), LimitError> {
        if !self.v2 || self.dirs.is_empty() {
            let other = Cgroup::create_for(v2, &self.tree, name, &Limits::default(), who, Purpose::Delegate)?;
            // (No controllers asked: `other` made no leaf, only its one directory.)
            self.v2_dir = other.dirs.last().cloned();
            self.dirs.extend(other.dirs);
        }
        let dir = self.dirs.last().cloned().ok_or_else(|| LimitError("no cgroup to delegate".into()))?;
        if let (Some((uid, gid)), false) = (owner, self.tree.fake) {
            for f in ["", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
                let p = if f.is_empty() { dir.clone() } else { dir.join(f) };
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(|e| {
                    io_err(format!("cannot give cgroup {} to the jail's root", p.display()), e)
                })?;
            }
        }
        Ok(())
    }

    /// A cgroup with no directory yet (delegation only, no limits).
    pub fn empty(tree: &Tree) -> Cgroup {
        Cgroup { tree: tree.clone(), dirs: Vec::new(), v2: false, memory_dir: None, v2_dir: None, leaf: None }
    }

    /// The directories of the jail's cgroup (one per v1 hierarchy, or the v2 cgroup).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Moves process `pid` (the jail's PID 1, before it starts the program) into each of the
    /// jail's directories it was not born in (`born`, see [`Cgroup::prepare_birth`]).
    pub fn add(&self, pid: i32, born: &Born) -> Result<(), LimitError> {
        for d in self.dirs.iter().filter(|d| !born.0.contains(d)) {
            self.tree.write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The jail's cgroup v2 directory, if it has one (its limits', or `--delegate-cgroup`'s).
    fn v2_dir(&self) -> Option<&PathBuf> {
        if self.v2 {
            self.dirs.first()
        } else {
            self.v2_dir.as_ref()
        }
    }

    /// Just before the jail's clone: makes its PID 1 be born in its cgroup, so that no running
    /// task is moved (each move of one waits for an RCU grace period, 5-20 ms on a loaded
    /// host). cgroup v2: the directory opened for `clone3`'s `CLONE_INTO_CGROUP`. cgroup v1
    /// (which has no such flag): this process moves itself (`0` to `tasks`) into the jail's
    /// directory of each hierarchy, so the clone starts there; [`Cgroup::return_from`] moves
    /// it back into its own cgroup (each directory's parent: the jail's cgroup is made in this
    /// process's own) right after. Every `tasks` file, the jail's and the way back, is opened
    /// before the first move (`Tree::open_tasks`). A directory or file that cannot be opened,
    /// or a v1 move that fails (undone), is left to [`Cgroup::add`], which moves the jail in by
    /// pid as before.
    /// Nothing here leaves the directories this `Cgroup` made and their parents, where this
    /// process already is; the kernel checks each move as for any other.
    pub fn prepare_birth(&self) -> Result<Birth, LimitError> {
        let mut birth = Birth::default();
        if let Some(d) = self.v2_dir() {
            // As the v1 `tasks` files: no symlink followed anywhere on the way.
            let dir = d.to_str().map(|p| {
                sys::openat2(None, p, libc::O_RDONLY | libc::O_DIRECTORY, 0, sys::RESOLVE_NO_SYMLINKS)
            });
            if let Some(Ok(fd)) = dir {
                birth.into = Some((d.clone(), fd));
            }
        }
        let mut ways = Vec::new();
        for d in self.dirs.iter().filter(|d| Some(*d) != self.v2_dir()) {
            match self.tree.open_tasks(d) {
                Ok([jail, back]) => ways.push((d, jail, back)),
                // Nothing moved yet: the jail is moved in by pid after all.
                Err(_) => return Ok(Birth::default()),
            }
        }
        for (d, jail, back) in ways {
            match sys::write_all(jail.as_fd(), b"0") {
                Ok(()) => birth.v1.push(Entered { dir: d.clone(), back }),
                // Where this process already is: the jail is moved in by pid after all (v1
                // only, where every hierarchy's move costs one grace period anyway).
                Err(_) => {
                    let mut undo = birth;
                    undo.into = None;
                    self.return_from(undo)?;
                    return Ok(Birth::default());
                }
            }
        }
        Ok(birth)
    }

    /// Right after the clone (or its failure): this process back in its own cgroup of each v1
    /// hierarchy it left for `birth` (and the v2 directory's descriptor closed). Returns the
    /// directories the jail was born in, which [`Cgroup::add`] skips. A failed move leaves
    /// this process in the jail's cgroup, its limits and its removal: the caller must abort.
    pub fn return_from(&self, birth: Birth) -> Result<Born, LimitError> {
        let mut born = Vec::new();
        let mut failed = None;
        for e in birth.v1.iter().rev() {
            let own = e.dir.parent().unwrap_or(&e.dir);
            if let Err(err) = sys::write_all(e.back.as_fd(), b"0") {
                failed.get_or_insert(LimitError(format!(
                    "cannot move ljspawn back into its own cgroup {} after the jail's clone, so it is still in the jail's (cannot write '0' to its tasks: {})",
                    own.display(),
                    crate::describe(&err)
                )));
            }
            born.push(e.dir.clone());
        }
        if let Some(e) = failed {
            return Err(e);
        }
        born.extend(birth.into.map(|(d, _)| d));
        Ok(Born(born))
    }

    /// True when the OOM killer killed something in the jail.
    pub fn oom_killed(&self) -> bool {
        let Some(d) = &self.memory_dir else { return false };
        let file = if self.v2 { "memory.events" } else { "memory.oom_control" };
        let text = fs::read_to_string(d.join(file)).unwrap_or_default();
        text.lines()
            .any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0)
    }

    /// Kills whatever is left and removes the directories. Idempotent.
    pub fn remove(&self) -> Result<(), LimitError> {
        let mut held = None;
        for d in &self.dirs {
            if !d.exists() {
                continue;
            }
            if self.tree.fake {
                fs::remove_dir_all(d).map_err(|e| io_err(format!("cannot remove {}", d.display()), e))?;
                continue;
            }
            // This process is in it (its move back after the jail's clone failed): it cannot be
            // removed before this process exits (then the setuid reaper or the next run's
            // reap_stale does), and is not waited for; the others are removed meanwhile.
            let me = crate::sys::getpid();
            let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            if procs.lines().any(|l| l.trim().parse() == Ok(me)) {
                held.get_or_insert_with(|| {
                    LimitError(format!("cannot remove cgroup {}: ljspawn is still in it", d.display()))
                });
                continue;
            }
            // Killed processes leave the cgroup when the kernel has run their exit, which on a
            // loaded machine (or for a large process freeing its memory) takes a while: rmdir
            // is retried, the rest killed again, until a deadline, not a count of tries.
            let deadline = Instant::now() + REMOVE_DEADLINE;
            let mut pause = Duration::from_millis(1);
            let mut last;
            loop {
                kill_all(d, self.v2 || self.v2_dir.as_ref() == Some(d));
                // A delegated cgroup has the jail's own below it (empty once the jail is gone).
                remove_children(d);
                match fs::remove_dir(d) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            if let Some(e) = last {
                return Err(io_err(format!("cannot remove cgroup {}", d.display()), e));
            }
        }
        // The caller's cgroup as it was: its controllers off again, this process (ljspawn, or
        // the setuid reaper, the leaf's last process) back in it, the leaf gone. (A process
        // still in the leaf, e.g. pasta, leaves it to a later run's reap_stale.)
        if let Some((base, leaf, enabled)) = &self.leaf {
            if leaf.exists() {
                let disable: String = enabled.iter().map(|c| format!("-{c} ")).collect();
                self.tree.write(&base.join("cgroup.subtree_control"), disable.trim())?;
                self.tree.write(&base.join("cgroup.procs"), &crate::sys::getpid().to_string())?;
                let _ = if self.tree.fake { fs::remove_dir_all(leaf) } else { fs::remove_dir(leaf) };
            }
        }
        held.map_or(Ok(()), Err)
    }
}

/// Removes the (empty) cgroups below `d`, deepest first; never follows a symlink (cgroup file
/// systems have none) and never kills: a busy cgroup stays, and its parent's rmdir says so.
fn remove_children(d: &Path) {
    let Ok(entries) = fs::read_dir(d) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_children(&e.path());
            let _ = fs::remove_dir(e.path());
        }
    }
}

fn quota(cpus: f64) -> u64 {
    ((cpus * PERIOD_US as f64).round() as u64).max(1000)
}

/// v2: makes sure the caller's cgroup `base` (`own` in the hierarchy) gives `need` to its
/// children, so the jail's cgroup `base/name` can have them. Already so: nothing to do. The
/// root cgroup: root mode enables them (its own choice); nobody else may. Any other cgroup:
/// only when ljspawn is its only process (a cgroup with processes of its own delegates
/// nothing), and (rootless) the cgroup is the caller's: ljspawn moves itself into the leaf
/// `base/name.ljspawn` and enables them in `base`.
fn delegate_v2(
    t: &Tree,
    base: &Path,
    own: &Path,
    name: &str,
    need: &[&'static str],
    who: Who,
    purpose: Purpose,
) -> Result<Option<Leaf>, LimitError> {
    let what = purpose.name();
    let enabled = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<&'static str> =
        need.iter().copied().filter(|c| !enabled.split_whitespace().any(|e| e == *c)).collect();
    let shown = own.display();
    // Rootless: the caller's cgroup must be its own (delegated to it), whatever it enables.
    if let Who::Rootless(uid) = who {
        let owner = fs::metadata(base).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok();
        if !t.fake && owner != Some(uid) {
            return Err(LimitError(format!(
                "{} a cgroup v2 delegated to you; {} is not yours: the cgroup you run in is owned by {} (run under `systemd-run --user --scope -p Delegate=yes`; without systemd, have root chown a cgroup and its cgroup.procs, cgroup.subtree_control and cgroup.threads to you and move your shell into it; or run as root)",
                purpose.needs(),
                base.display(),
                owner.map_or_else(|| "someone else".to_string(), |u| format!("uid {u}"))
            )));
        }
    }
    let Some(first) = missing.first() else { return Ok(None) };
    // Setuid: enabling controllers changes the caller's cgroup, which only its owner may do
    // (rootless would need the same); a cgroup that already gives them needs nothing.
    if let Who::Setuid(uid) = who {
        let owner = fs::metadata(base).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        if !t.fake && owner.ok() != Some(uid) {
            return Err(LimitError(format!(
                "{what}: your cgroup {shown} does not give the {first} controller to its children, and it is not yours to change (run under `systemd-run --user --scope -p Delegate=yes`)"
            )));
        }
    }
    let enable: String = missing.iter().map(|c| format!("+{c} ")).collect();
    // The hierarchy's root, which the kernel exempts from the rule (and makes without
    // `cgroup.type`); not the root of a cgroup namespace, which is `/` too (in a container).
    let at_root =
        own.components().all(|c| c == std::path::Component::RootDir) && !base.join("cgroup.type").exists();
    if at_root {
        if who != Who::Root {
            return Err(LimitError(format!(
                "{what}: you are in the root cgroup, which does not give the {first} controller to its children (cgroup.subtree_control), and only root may change that"
            )));
        }
        return t.write(&base.join("cgroup.subtree_control"), enable.trim()).map(|()| None);
    }
    let available = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    if let Some(c) = missing.iter().find(|c| !available.split_whitespace().any(|a| a == **c)) {
        return Err(LimitError(format!(
            "{what}: your cgroup {shown} does not get the {c} controller from its parent (its cgroup.controllers lacks it)"
        )));
    }
    let me = crate::sys::getpid();
    let procs = fs::read_to_string(base.join("cgroup.procs")).unwrap_or_default();
    if pids_in(&procs) != [me] {
        return Err(LimitError(format!(
            "{what}: your cgroup {shown} has other processes, so it cannot give the jail's cgroup inside it the {first} controller (a cgroup v2 with processes of its own delegates none): run ljspawn as the only process of its cgroup, e.g. `systemd-run --scope -p Delegate=yes ljspawn ...` (`--user` for your own)"
        )));
    }
    let leaf = base.join(format!("{name}.ljspawn"));
    mkdir_new(&leaf)?;
    let moved = t.write(&leaf.join("cgroup.procs"), &me.to_string());
    if let Err(e) = moved.and_then(|()| t.write(&base.join("cgroup.subtree_control"), enable.trim())) {
        // Back as it was: this process in the caller's cgroup, no leaf.
        let _ = t.write(&base.join("cgroup.procs"), &me.to_string());
        let _ = fs::remove_dir(&leaf);
        return Err(e);
    }
    Ok(Some((base.to_path_buf(), leaf, missing)))
}

/// Makes the jail's own cgroup, which must be new: one that exists belongs to another jail
/// (a live ljspawn of the same pid in another pid namespace, or a stale one reap_stale could
/// not remove) and is neither shared nor, on failure, removed.
fn mkdir_new(d: &Path) -> Result<(), LimitError> {
    fs::create_dir(d).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => {
            LimitError(format!("cgroup {} already exists (another jail's): not sharing it", d.display()))
        }
        _ => io_err(format!("cannot create cgroup {}", d.display()), e),
    })
}

/// SIGKILL for every process in the cgroup at `d` (v2: `cgroup.kill`, one write).
fn kill_all(d: &Path, v2: bool) {
    if v2 && fs::write(d.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // (A few rounds: `remove` calls this again while the cgroup stays busy.)
    for _ in 0..50 {
        let procs = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        // 0 is a process in another pid namespace (v2 shows it so): kill(0) would hit our
        // own process group. Never ourselves either.
        let me = crate::sys::getpid();
        let pids: Vec<i32> =
            procs.lines().filter_map(|l| l.trim().parse().ok()).filter(|&p| p > 0 && p != me).collect();
        if pids.is_empty() {
            return;
        }
        // v1 has no cgroup.kill: a pidfd for each, then the cgroup read again, so a pid that
        // exited and was reused by a process elsewhere in between is not signalled.
        let fds: Vec<(i32, std::os::fd::OwnedFd)> =
            pids.iter().filter_map(|&p| crate::sys::pidfd_open(p).ok().map(|fd| (p, fd))).collect();
        let still = fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        let members: Vec<i32> = still.lines().filter_map(|l| l.trim().parse().ok()).collect();
        for (p, fd) in &fds {
            if members.contains(p) {
                let _ = crate::sys::pidfd_send_signal(std::os::fd::AsFd::as_fd(fd), libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Removes `lightjail-<pid>` cgroups (and `lightjail-<pid>.ljspawn` leaves) left in the
/// caller's cgroups by an ljspawn that no longer runs (killed before it could clean up).
/// Returns how many were removed.
pub fn reap_stale(layout: &Layout, tree: &Tree, proc_root: &Path) -> usize {
    let bases: Vec<PathBuf> = match layout {
        Layout::V2 { mount, root, own } => vec![in_mount(&tree.path(mount), root, own)],
        Layout::V1 { controllers } => {
            controllers.iter().map(|(_, m, own)| under(&tree.path(m), own)).collect()
        }
    };
    let mut n = 0;
    for base in bases {
        let Ok(entries) = fs::read_dir(&base) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|s| s.strip_prefix("lightjail-"))
                .map(|s| s.strip_suffix(".ljspawn").unwrap_or(s))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if proc_root.join(pid.to_string()).exists() {
                continue;
            }
            // Only an empty one is removed: the pid in the name may be from another pid
            // namespace, so nothing in it is ever killed (rmdir fails on a busy cgroup).
            if !tree.fake {
                remove_children(&e.path());
            }
            let gone = if tree.fake { fs::remove_dir_all(e.path()) } else { fs::remove_dir(e.path()) };
            if gone.is_ok() {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: v1 memory, pids and cpu; an empty v2 at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
35 28 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
39 35 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,memory
40 35 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
41 35 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
";
    const PURE_V2: &str =
        "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
    const ALL: Limits = Limits { memory: Some(64 << 20), pids: Some(64), cpus: Some(0.5) };

    fn fake(v2_controllers: Option<&str>) -> (PathBuf, Tree) {
        // (Canonical: the v1 `tasks` files are opened with no symlink on the way.)
        let dir = std::env::temp_dir().canonicalize().unwrap().join(format!(
            "lj-cgroup-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        for d in [
            "sys/fs/cgroup/unified",
            "sys/fs/cgroup/memory",
            "sys/fs/cgroup/pids",
            "sys/fs/cgroup/cpu,cpuacct",
        ] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        if let Some(c) = v2_controllers {
            fs::write(dir.join("sys/fs/cgroup/cgroup.controllers"), c).unwrap();
        }
        let tree = Tree { prefix: dir.clone(), fake: true };
        (dir, tree)
    }

    fn read(p: PathBuf) -> String {
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A cgroup path with `..` (a process outside its cgroup namespace's root reads one), `.`
    /// or an empty name never becomes a directory: no layout, one line.
    #[test]
    fn a_cgroup_path_leaving_the_mount_is_refused() {
        for ok in ["/", "/a", "/a/b.c/..d/d..", "/user.slice/lightjail-3"] {
            assert!(plain_cgroup(Path::new(ok)), "{ok}");
        }
        for bad in
            ["", "a", "/..", "/../sib/svc", "/a/../../etc", "/a/..", "/./a", "/a/.", "//a", "/a//b", "/a/"]
        {
            assert!(!plain_cgroup(Path::new(bad)), "{bad:?}");
        }
        let (dir, tree) = fake(Some("memory pids cpu"));
        for own in ["0::/../../etc/x\n", "0::/../sib/svc\n", "0::/a/./b\n"] {
            let e = detect(PURE_V2, own, &tree, &ALL).unwrap_err();
            assert!(e.0.contains("not below the cgroup mount's root"), "{own}: {e}");
            assert_eq!(detect_v2(PURE_V2, own), None, "{own}");
        }
        assert_eq!(v2_dir(PURE_V2, "/../../etc/x"), None);
        assert_eq!(v2_dir(PURE_V2, "/a/b"), Some(PathBuf::from("/sys/fs/cgroup/a/b")));
        let e = detect(HYBRID, "0::/\n4:memory:/../x\n3:pids:/\n2:cpu,cpuacct:/\n", &tree, &ALL).unwrap_err();
        assert!(e.0.contains("/../x"), "{e}");
        assert_eq!(v1_dir(HYBRID, "memory", "/../../etc"), None);
        // A hybrid host's v2 path leaving its mount does not stop plain v1 controllers.
        let v1 = detect(HYBRID, "0::/../x\n4:memory:/\n3:pids:/\n2:cpu,cpuacct:/\n", &tree, &ALL);
        assert!(matches!(v1, Ok(Layout::V1 { .. })), "{v1:?}");
        assert!(detect(PURE_V2, "0::/a/b\n", &tree, &ALL).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hybrid_host_uses_v1_inside_the_callers_cgroups() {
        let (dir, tree) = fake(None);
        let me = "0::/\n4:memory:/ci/job7\n3:pids:/\n2:cpu,cpuacct:/ci\n";
        let layout = detect(HYBRID, me, &tree, &ALL).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                controllers: vec![
                    ("memory".into(), "/sys/fs/cgroup/memory".into(), "/ci/job7".into()),
                    ("pids".into(), "/sys/fs/cgroup/pids".into(), "/".into()),
                    ("cpu".into(), "/sys/fs/cgroup/cpu,cpuacct".into(), "/ci".into()),
                ]
            }
        );
        for d in ["memory/ci/job7", "cpu,cpuacct/ci"] {
            fs::create_dir_all(dir.join("sys/fs/cgroup").join(d)).unwrap();
        }
        let cg = Cgroup::create(&layout, &tree, "lightjail-7", &ALL, Who::Setuid(1000)).unwrap();
        let j = |c: &str, f: &str| dir.join(format!("sys/fs/cgroup/{c}/lightjail-7/{f}"));
        assert_eq!(read(j("memory/ci/job7", "memory.limit_in_bytes")), (64u64 << 20).to_string());
        assert_eq!(read(j("pids", "pids.max")), "64");
        assert_eq!(read(j("cpu,cpuacct/ci", "cpu.cfs_quota_us")), "50000");
        assert_eq!(read(j("cpu,cpuacct/ci", "cpu.cfs_period_us")), "100000");
        // Nothing written outside the caller's cgroups.
        assert!(!dir.join("sys/fs/cgroup/memory/lightjail").exists());
        assert!(!dir.join("sys/fs/cgroup/memory/lightjail-7").exists());
        cg.add(42, &Born::default()).unwrap();
        assert_eq!(read(j("pids", "cgroup.procs")), "42");
        assert!(Cgroup::create(&layout, &tree, "lightjail-8", &ALL, Who::Rootless(1000))
            .unwrap_err()
            .0
            .contains("cgroup v1"));
        // A stale one in the caller's cgroup (pid 9 has no /proc entry) is reaped.
        fs::create_dir_all(dir.join("sys/fs/cgroup/memory/ci/job7/lightjail-9")).unwrap();
        fs::create_dir_all(dir.join("proc/7")).unwrap();
        assert_eq!(reap_stale(&layout, &tree, &dir.join("proc")), 1);
        cg.remove().unwrap();
        assert!(!j("memory/ci/job7", "").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    /// Born in its cgroup: on v1 this process goes into the jail's directory of each
    /// hierarchy (`0` to `tasks`) for the clone and back into its own (the parent) after; the
    /// v2 directory is opened for `CLONE_INTO_CGROUP`; `add` moves the jail only into the rest.
    #[test]
    fn the_jail_is_born_in_its_cgroup() {
        let (dir, tree) = fake(None);
        let layout = detect(HYBRID, "0::/\n4:memory:/ci\n3:pids:/\n2:cpu,cpuacct:/\n", &tree, &ALL).unwrap();
        fs::create_dir_all(dir.join("sys/fs/cgroup/memory/ci")).unwrap();
        let mut cg = Cgroup::create(&layout, &tree, "lightjail-7", &ALL, Who::Root).unwrap();
        let v2 = detect_v2(HYBRID, "0::/\n").unwrap();
        cg.delegate(&v2, "lightjail-7", Who::Root, None).unwrap();
        let h = |p: &str| dir.join("sys/fs/cgroup").join(p);
        let birth = cg.prepare_birth().unwrap();
        assert!(birth.cgroup_fd().is_some() && birth.any());
        for d in ["memory/ci/lightjail-7", "pids/lightjail-7", "cpu,cpuacct/lightjail-7"] {
            assert_eq!(read(h(d).join("tasks")), "0", "{d}");
        }
        // The way back opened beforehand (the fake's open makes it), not yet written.
        assert_eq!(read(h("memory/ci/tasks")), "", "back before the clone");
        let born = cg.return_from(birth).unwrap();
        for d in ["memory/ci", "pids", "cpu,cpuacct"] {
            assert_eq!(read(h(d).join("tasks")), "0", "{d}: not back in its own cgroup");
        }
        assert_eq!(born.0.len(), 4, "{born:?}");
        cg.add(42, &born).unwrap();
        for d in ["memory/ci/lightjail-7", "pids/lightjail-7", "unified/lightjail-7"] {
            assert!(!h(d).join("cgroup.procs").exists(), "{d}: moved by pid");
        }
        // A clone that fell back: the jail moved in by pid everywhere.
        cg.add(43, &Born::default()).unwrap();
        assert_eq!(read(h("unified/lightjail-7/cgroup.procs")), "43");
        assert_eq!(read(h("pids/lightjail-7/cgroup.procs")), "43");
        // The way back refused (here: its descriptor swapped for one not open for writing):
        // an error that says ljspawn is still in the jail's cgroup.
        let mut birth = cg.prepare_birth().unwrap();
        let e = birth.v1.iter_mut().find(|e| e.dir == h("pids/lightjail-7")).unwrap();
        e.back = fs::File::open("/dev/null").unwrap().into();
        let e = cg.return_from(birth).unwrap_err();
        assert!(
            e.0.contains("cannot move ljspawn back into its own cgroup")
                && e.0.contains("still in the jail's"),
            "{e}"
        );
        // A way back that cannot be opened (its own cgroup's tasks is a directory, or a
        // symlink): no move at all, the jail moved in by pid.
        for d in ["memory/ci", "pids", "cpu,cpuacct", "memory/ci/lightjail-7", "pids/lightjail-7"] {
            fs::write(h(d).join("tasks"), "").unwrap();
        }
        fs::remove_file(h("pids/tasks")).unwrap();
        fs::create_dir(h("pids/tasks")).unwrap();
        let birth = cg.prepare_birth().unwrap();
        assert!(!birth.any() && birth.cgroup_fd().is_none(), "{birth:?}");
        assert_eq!(read(h("memory/ci/lightjail-7/tasks")), "", "moved before the way back was open");
        fs::remove_dir(h("pids/tasks")).unwrap();
        std::os::unix::fs::symlink("../memory/ci/tasks", h("pids/tasks")).unwrap();
        let birth = cg.prepare_birth().unwrap();
        assert!(!birth.any(), "{birth:?}");
        assert_eq!(read(h("memory/ci/lightjail-7/tasks")), "", "moved before the way back was open");
        assert_eq!(read(h("memory/ci/tasks")), "", "written through a symlink");
        fs::remove_file(h("pids/tasks")).unwrap();
        cg.remove().unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn delegation_uses_the_v2_hierarchy_beside_v1_limits() {
        let (dir, tree) = fake(None);
        let v2 = detect_v2(HYBRID, "0::/\n4:memory:/\n").unwrap();
        assert_eq!(
            v2,
            Layout::V2 { mount: "/sys/fs/cgroup/unified".into(), root: "/".into(), own: "/".into() }
        );
        assert_eq!(detect_v2(&HYBRID.replace("cgroup2 cgroup2", "tmpfs tmpfs"), "0::/\n"), None);
        // Without limits: one v2 cgroup of the jail's own.
        let mut cg = Cgroup::empty(&tree);
        cg.delegate(&v2, "lightjail-5", Who::Root, Some((1000, 1000))).unwrap();
        let d = dir.join("sys/fs/cgroup/unified/lightjail-5");
        assert!(d.is_dir());
        cg.add(42, &Born::default()).unwrap();
        assert_eq!(read(d.join("cgroup.procs")), "42");
        cg.remove().unwrap();
        assert!(!d.exists());
        // With v1 limits: those cgroups and the v2 one, all of them joined and removed.
        let layout = detect(HYBRID, "0::/\n4:memory:/\n", &tree, &ALL).unwrap();
        let mut cg = Cgroup::create(&layout, &tree, "lightjail-6", &ALL, Who::Root).unwrap();
        cg.delegate(&v2, "lightjail-6", Who::Root, None).unwrap();
        cg.add(43, &Born::default()).unwrap();
        for h in ["memory", "pids", "cpu,cpuacct", "unified"] {
            assert_eq!(read(dir.join(format!("sys/fs/cgroup/{h}/lightjail-6/cgroup.procs"))), "43");
        }
        cg.remove().unwrap();
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pure_v2_in_a_delegating_cgroup_or_the_root() {
        let (dir, tree) = fake(Some("cpuset cpu io memory pids\n"));
        let top = dir.join("sys/fs/cgroup");
        // The caller's cgroup already gives the controllers to its children.
        let own = top.join("ci.slice/runner");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.subtree_control"), "memory pids cpu\n").unwrap();
        let layout = detect(PURE_V2, "0::/ci.slice/runner\n", &tree, &ALL).unwrap();
        assert_eq!(
            layout,
            Layout::V2 { mount: "/sys/fs/cgroup".into(), root: "/".into(), own: "/ci.slice/runner".into() }
        );
        let cg = Cgroup::create(&layout, &tree, "lightjail-9", &ALL, Who::Setuid(1000)).unwrap();
        // Another jail's cgroup of the same name is neither shared nor removed on failure.
        let e = Cgroup::create(&layout, &tree, "lightjail-9", &ALL, Who::Setuid(1000)).unwrap_err();
        assert!(e.0.contains("already exists"), "{e}");
        let j = own.join("lightjail-9");
        assert!(j.is_dir());
        assert!(!top.join("cgroup.subtree_control").exists(), "the top was written");
        assert_eq!(read(j.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(j.join("memory.swap.max")), "0");
        assert_eq!(read(j.join("pids.max")), "64");
        assert_eq!(read(j.join("cpu.max")), "50000 100000");
        fs::write(j.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert!(cg.oom_killed());
        // Stale: pid 9 has no /proc entry in the fake proc root, so it is reaped.
        fs::create_dir_all(dir.join("proc/1")).unwrap();
        assert_eq!(reap_stale(&layout, &tree, &dir.join("proc")), 1);
        assert!(!j.exists());
        // A cgroup namespace's root (`/` in /proc/self/cgroup, but a cgroup with `cgroup.type`):
        // not the hierarchy's root, so it delegates as any other cgroup (here it has processes).
        fs::write(top.join("cgroup.type"), "domain\n").unwrap();
        fs::write(top.join("cgroup.procs"), "1\n").unwrap();
        let in_ns = detect(PURE_V2, "0::/\n", &tree, &ALL).unwrap();
        let e = Cgroup::create(&in_ns, &tree, "lightjail-10", &ALL, Who::Root).unwrap_err();
        assert!(e.0.contains("has other processes"), "{e}");
        assert!(!top.join("cgroup.subtree_control").exists());
        fs::remove_file(top.join("cgroup.type")).unwrap();
        // The root cgroup: root enables the controllers itself; a setuid caller may not.
        let at_root = detect(PURE_V2, "0::/\n", &tree, &ALL).unwrap();
        let e = Cgroup::create(&at_root, &tree, "lightjail-10", &ALL, Who::Setuid(1000)).unwrap_err();
        assert!(e.0.contains("only root"), "{e}");
        assert!(!top.join("cgroup.subtree_control").exists());
        Cgroup::create(&at_root, &tree, "lightjail-10", &ALL, Who::Root).unwrap();
        assert_eq!(read(top.join("cgroup.subtree_control")), "+memory +pids +cpu");
        assert!(top.join("lightjail-10").is_dir());
        fs::remove_dir_all(dir).unwrap();
    }

    /// mountinfo's fields: optional ones up to `-`, octal escapes in paths, and a cgroup mount's
    /// root: a container given only its own cgroup (mounted with that root) finds its cgroup at
    /// the mount point itself; a mount that does not show the process's cgroup (an inherited
    /// one, seen from inside a cgroup namespace as `/..`), or one mounted over, is skipped.
    #[test]
    fn the_mount_that_shows_the_callers_cgroup() {
        let text = "\
20 1 0:19 / /proc rw shared:12 - proc proc rw
30 1 0:26 /../.. /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw
31 1 0:26 /outer /old\\040cgroup rw - cgroup2 cgroup2 rw
32 1 0:26 /job/7 /run/my\\040cg\\011x\\134y rw,nosuid shared:5 master:1 propagate_from:2 - cgroup2 none rw
33 1 0:27 / /old\\040cgroup rw shared:6 - tmpfs tmpfs rw
";
        let v2 = detect_v2(text, "0::/job/7/svc\n").unwrap();
        let mount = PathBuf::from("/run/my cg\tx\\y");
        assert_eq!(v2, Layout::V2 { mount: mount.clone(), root: "/job/7".into(), own: "/job/7/svc".into() });
        assert_eq!(v2_dir(text, "/job/7/svc/lightjail-3\n"), Some(mount.join("svc/lightjail-3")));
        assert_eq!(v2_dir(text, "/job/70"), None, "a sibling of the mount's root");
        assert_eq!(v2_dir(text, "/outer/x"), None, "mounted over");
        assert_eq!(detect_v2(text, "0::/\n"), None);
        // A v1 hierarchy likewise, found by its controllers (all of them) or its name.
        let v1 = "\
40 1 0:35 /ci/job7 /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
41 1 0:36 / /sys/fs/cgroup/sys\\040temd rw - cgroup cgroup rw,xattr,name=systemd
";
        let cpu = Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/step/lightjail-3"));
        assert_eq!(v1_dir(v1, "cpu,cpuacct", "/ci/job7/step/lightjail-3"), cpu);
        assert_eq!(v1_dir(v1, "cpu,cpuacct", "/ci/job8/lightjail-3"), None);
        assert_eq!(v1_dir(v1, "cpu,memory", "/ci/job7/lightjail-3"), None);
        let sd = Some(PathBuf::from("/sys/fs/cgroup/sys temd/lightjail/x"));
        assert_eq!(v1_dir(v1, "name=systemd", "/lightjail/x"), sd);
        // Limits there: the jail's cgroup in the caller's, at the mount point (not joined again).
        let (dir, tree) = fake(None);
        let at = dir.join("run/my cg\tx\\y/svc");
        fs::create_dir_all(&at).unwrap();
        fs::write(at.parent().unwrap().join("cgroup.controllers"), "cpu pids memory\n").unwrap();
        fs::write(at.join("cgroup.subtree_control"), "pids\n").unwrap();
        let pids = Limits { pids: Some(10), ..Limits::default() };
        let layout = detect(text, "0::/job/7/svc\n", &tree, &pids).unwrap();
        let cg = Cgroup::create(&layout, &tree, "lightjail-4", &pids, Who::Root).unwrap();
        assert_eq!(cg.dirs(), [at.join("lightjail-4")]);
        assert_eq!(read(at.join("lightjail-4/pids.max")), "10");
        cg.remove().unwrap();
        // v1 likewise: a hierarchy mounted with the container's cgroup as its root.
        let v1 = "40 1 0:35 /ci/job7 /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        assert_eq!(
            detect(v1, "3:pids:/ci/job7/step\n", &tree, &pids).unwrap(),
            Layout::V1 { controllers: vec![("pids".into(), "/sys/fs/cgroup/pids".into(), "/step".into())] }
        );
        assert!(detect(v1, "3:pids:/elsewhere\n", &tree, &pids).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pure_v2_caller_cgroup_with_processes_or_not_delegated_is_refused() {
        let (dir, tree) = fake(Some("cpu pids memory\n"));
        let pids = Limits { pids: Some(10), ..Limits::default() };
        let e = detect(PURE_V2, "0::/\n", &fake(Some("cpu pids\n")).1, &ALL).unwrap_err();
        assert!(e.0.contains("memory"), "{e}");
        let scope = dir.join("sys/fs/cgroup/user.slice/me/run.scope");
        fs::create_dir_all(&scope).unwrap();
        fs::write(scope.join("cgroup.controllers"), "pids\n").unwrap();
        let me = crate::sys::getpid();
        fs::write(scope.join("cgroup.procs"), format!("{me}\n1\n")).unwrap();
        let layout = detect(PURE_V2, "0::/user.slice/me/run.scope\n", &tree, &pids).unwrap();
        // Other processes in the caller's cgroup: it cannot delegate.
        let e = Cgroup::create(&layout, &tree, "lightjail-3", &pids, Who::Setuid(1000)).unwrap_err();
        assert!(e.0.contains("has other processes") && e.0.contains("Delegate=yes"), "{e}");
        // A controller the parent does not give.
        let mem = Limits { memory: Some(64 << 20), ..Limits::default() };
        let e = Cgroup::create(&layout, &tree, "lightjail-3", &mem, Who::Setuid(1000)).unwrap_err();
        assert!(e.0.contains("does not get the memory controller"), "{e}");
        // ljspawn alone there: it moves into a leaf of its own and enables the controller.
        fs::write(scope.join("cgroup.procs"), format!("{me}\n")).unwrap();
        let cg = Cgroup::create(&layout, &tree, "lightjail-3", &pids, Who::Rootless(1000)).unwrap();
        assert_eq!(read(scope.join("lightjail-3.ljspawn/cgroup.procs")), me.to_string());
        assert_eq!(read(scope.join("cgroup.subtree_control")), "+pids");
        assert_eq!(read(scope.join("lightjail-3/pids.max")), "10");
        assert_eq!(cg.dirs(), [scope.join("lightjail-3")]);
        // Removing the jail's cgroup puts the caller's back as it was.
        cg.remove().unwrap();
        assert!(!scope.join("lightjail-3").exists() && !scope.join("lightjail-3.ljspawn").exists());
        assert_eq!(read(scope.join("cgroup.subtree_control")), "-pids");
        assert_eq!(read(scope.join("cgroup.procs")), me.to_string());
        // Nothing above the caller's cgroup was written.
        assert!(!dir.join("sys/fs/cgroup/user.slice/me/cgroup.subtree_control").exists());
        assert!(!dir.join("sys/fs/cgroup/cgroup.subtree_control").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
