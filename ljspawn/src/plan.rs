//! The `Plan`: everything a spawn will do, computed and validated before any privileged or
//! irreversible step. Building a plan is pure (no system calls): the caller passes in the facts
//! it observed (ids, mode, terminal), so every rule here is unit-tested without root.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::conf::{self, Grants};
use crate::limits::Limits;

/// How ljspawn was invoked. Detected from the real and effective ids, never from the
/// environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real uid 0.
    Root,
    /// An ordinary user; the jail lives in an unprivileged user namespace.
    Rootless,
    /// Installed setuid root and run by an ordinary user.
    Setuid,
}

impl Mode {
    pub fn detect(ruid: u32, euid: u32) -> Mode {
        match (ruid, euid) {
            (0, _) => Mode::Root,
            (_, 0) => Mode::Setuid,
            _ => Mode::Rootless,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Root => "root",
            Mode::Rootless => "rootless",
            Mode::Setuid => "setuid",
        })
    }
}

/// The facts about the caller that a plan depends on.
#[derive(Debug, Clone)]
pub struct Caller {
    pub mode: Mode,
    pub uid: u32,
    pub gid: u32,
    /// A terminal is attached to stdin, stdout or stderr.
    pub tty: bool,
    /// A terminal is attached to stdin (the jail then gets a pty of its own, see `pty`).
    pub stdin_tty: bool,
    /// `TERM` of the caller, passed on when a terminal is attached.
    pub term: Option<String>,
    /// The caller's `/etc/subuid` and `/etc/subgid` ranges (start, count); read only in
    /// setuid mode and for rootless `--subids`, from root-owned files.
    pub subuids: Vec<(u32, u32)>,
    pub subgids: Vec<(u32, u32)>,
    /// What `/etc/lightjail.conf` grants this caller (setuid mode only).
    pub grants: Grants,
    /// The caller's working directory (the host-sandbox form keeps it when it exists in the
    /// jail); None when it cannot be named.
    pub cwd: Option<String>,
    /// The host's `/bin`, `/sbin`, `/lib*` for `--host-usr`: (path, Some(target)) for a
    /// usr-merge symlink, (path, None) for a real directory; missing ones are left out.
    pub host_links: Vec<(String, Option<String>)>,
}

/// The top-level directories `--host-usr` mirrors beside `/usr` (usr-merge links or dirs).
pub const HOST_USR_DIRS: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// What the user asked for, as parsed from the command line (see `cli`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub root: Option<PathBuf>,
    pub rw: bool,
    pub layers: Vec<PathBuf>,
    /// Parallel to `layers` (missing entries: false): `--idmap-layer`, idmapped onto the
    /// jail's user namespace by the privileged side.
    pub idmap: Vec<bool>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    /// `--host-usr`: the host's `/usr` read-only, with its usr-merge links (or the real
    /// directories, read-only) at `/bin`, `/sbin`, `/lib*`.
    pub host_usr: bool,
    pub mounts: Vec<MountReq>,
    pub setenv: Vec<(String, String)>,
    pub chdir: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<(u32, Option<u32>)>,
    pub userns: bool,
    /// `--subids`: a user namespace mapping jail ids 0-65535 (see [`userns_map`]).
    pub subids: bool,
    /// `--subids-base BASE` (root only, implies `subids`): jail ids 0-65535 are host ids
    /// BASE..BASE+65535 instead of the same ids.
    pub subids_base: Option<u64>,
    pub net: Option<String>,
    /// `--ip ADDR[/PREFIX]` (lightjail `-i`).
    pub ip: Option<String>,
    pub gateway: Option<String>,
    pub cap_add: Vec<String>,
    /// bwrap's `--cap-drop` after `--cap-add ALL`: taken out of what `cap_add` keeps.
    pub cap_drop: Vec<String>,
    /// bwrap's `--level-prefix`: ljspawn's own lines start with a syslog level (`<3>`, `<4>`).
    pub level_prefix: bool,
    pub pass_fds: Vec<i32>,
    pub json_status: Option<i32>,
    /// `-j`: the status lines on stderr (lightjail's form).
    pub json_log: bool,
    pub stdout_file: Option<PathBuf>,
    pub stderr_file: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub kill_after: Option<Duration>,
    /// `--memory SIZE` (or lightjail's `-m MB`, as `MBM`), `--pids`, `--cpus`.
    pub memory: Option<String>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    /// `--rlimit NAME=SOFT[:HARD]`, as given.
    pub rlimits: Vec<String>,
    /// `--seccomp default|none`.
    pub seccomp: Option<String>,
    pub allow_userns: bool,
    /// `--allow-setuid-files`: the filter lets the jail make setuid and setgid files.
    pub allow_setuid_files: bool,
    /// `--seccomp-fd FD` (bwrap: `--seccomp`, `--add-seccomp-fd` repeated): the caller's own
    /// BPF programs, installed in this order after the built-in filter.
    pub seccomp_fds: Vec<i32>,
    /// bwrap's `--assert-userns-disabled`: the program is not started if it could make a
    /// user namespace.
    pub assert_no_userns: bool,
    /// bwrap's `--block-fd FD`: the program waits for a byte (or end-of-file) on FD before
    /// it is executed.
    pub block_fd: Option<i32>,
    /// bwrap's `--userns-block-fd FD`: ljspawn writes no id maps; once `--info-fd` has the
    /// jail's pid, it waits for a byte on FD (the caller wrote the maps) before the jail
    /// sets up.
    pub userns_block_fd: Option<i32>,
    /// bwrap's `--as-pid-1`: the program is the PID namespace's init, no ljspawn init.
    pub as_pid_1: bool,
    /// bwrap's `--userns FD`: the jail is made in the user namespace FD is open on (ljspawn
    /// joins it first) instead of a new one.
    pub join_userns: Option<i32>,
    /// bwrap's `--userns2 FD`: the jail's init joins the user namespace FD is open on once the
    /// jail is set up (the program starts there).
    pub join_userns2: Option<i32>,
    /// bwrap's `--pidns FD`: the jail is made in the PID namespace FD is open on (ljspawn joins
    /// it before the clone) instead of a new one; with `unshare_pid` a new one nested in it.
    pub join_pidns: Option<i32>,
    /// bwrap's `--unshare-pid`: only meaningful with `join_pidns` (ljspawn otherwise always
    /// makes a PID namespace).
    pub unshare_pid: bool,
    /// `--die-with-parent`: ljspawn (and with it the jail) dies with its own parent.
    pub die_with_parent: bool,
    /// `--join PID`: run the command in the running jail whose PID 1 is PID (see `join`).
    pub join: Option<i32>,
    pub dry_run: bool,
    /// `--no-pty`: hand the caller's terminal to the jail as it is (no pty of its own).
    pub no_pty: bool,
    pub command: Vec<String>,
    /// bwrap's command line (see `bwrap`): no fixed /proc, /dev, /tmp; the environment is
    /// `env_base` and the caller's directory is kept whatever the root.
    pub bwrap: bool,
    /// The environment to start from instead of ljspawn's allow-list (bwrap form: the
    /// caller's, or empty after `--clearenv`), then `--setenv`, then `unsetenv`.
    pub env_base: Option<Vec<(String, String)>>,
    /// bwrap form: the caller's variables that are not UTF-8, each `NAME=VALUE` as it came
    /// (passed on after `env_base`'s, unless `--setenv` or `--unsetenv` names them).
    pub env_raw: Vec<Vec<u8>>,
    pub unsetenv: Vec<String>,
    /// bwrap's `--info-fd FD`: the child pid and namespace ids written there, then FD closed.
    pub info_fd: Option<i32>,
    /// bwrap's `--gid` without `--uid` (the uid stays the caller's).
    pub group: Option<u32>,
    /// bwrap's `--argv0 VALUE`: the program's argv\[0\] (the file executed is still the
    /// command's first word).
    pub argv0: Option<String>,
    /// `--sysfs`: a fresh sysfs at /sys, read-only.
    pub sysfs: bool,
    /// `--net-sysctls-rw`: /proc/sys/net writable (the jail's own network namespace's).
    pub net_sysctls_rw: bool,
    /// `--proc-unmasked`: /proc without the read-only binds and masks, so user namespaces made
    /// in the jail (nested jails) may mount a proc of their own (see `check_proc_unmasked`).
    pub proc_unmasked: bool,
    /// `--stop-signal N`: what a SIGTERM to ljspawn (or the timeout's) becomes for the jail.
    pub stop_signal: Option<i32>,
    /// `--delegate-cgroup`: a cgroup of the jail's own, writable by the jail's root, mounted
    /// (cgroup v2, the jail's cgroup namespace) at /sys/fs/cgroup.
    pub delegate_cgroup: bool,
}

/// A user-requested mount, in command-line order. Destinations are paths inside the jail.
#[derive(Debug, Clone, PartialEq)]
pub enum MountReq {
    Bind {
        src: PathBuf,
        dest: String,
        ro: bool,
        dev: bool,
    },
    Tmpfs {
        dest: String,
    },
    /// `--symlink TARGET DEST`: a symlink made in the jail (TARGET is not resolved).
    Symlink {
        target: String,
        dest: String,
    },
    /// `--dir DEST`: a directory (and its parents) made in the jail (mode default 0755).
    Dir {
        dest: String,
        mode: Option<u32>,
    },
    /// `--file FD DEST`: a new file in the jail with the content read from FD (mode default
    /// 0666, less the umask).
    File {
        fd: i32,
        dest: String,
        mode: Option<u32>,
    },
    /// bwrap's `--bind-try` and friends: a bind skipped when its source does not exist.
    BindTry {
        src: PathBuf,
        dest: String,
        ro: bool,
        dev: bool,
    },
    /// bwrap's `--tmpfs` after `--perms`/`--size`.
    TmpfsWith {
        dest: String,
        mode: Option<u32>,
        size: Option<u64>,
    },
    /// bwrap's `--proc DEST` and `--dev DEST` (the bwrap form has no fixed ones).
    Proc {
        dest: String,
    },
    Dev {
        dest: String,
    },
    /// bwrap's `--remount-ro DEST`: the mount at DEST made read-only.
    RemountRo {
        dest: String,
    },
    /// bwrap's `--bind-fd FD DEST` / `--ro-bind-fd`: the tree the descriptor FD is open on.
    BindFd {
        fd: i32,
        dest: String,
        ro: bool,
    },
    /// bwrap's `--bind-data FD DEST` / `--ro-bind-data`: a file with FD's content, bound.
    Data {
        fd: i32,
        dest: String,
        ro: bool,
        mode: Option<u32>,
    },
    /// bwrap's `--lock-file DEST`: DEST opened and read-locked for the jail's life.
    LockFile {
        dest: String,
    },
    /// bwrap's `--chmod OCTAL DEST`: DEST (which must exist) gets the mode.
    Chmod {
        dest: String,
        mode: u32,
    },
    /// bwrap's `--mqueue DEST`: the jail's (own IPC namespace's) POSIX message queues.
    Mqueue {
        dest: String,
    },
    /// bwrap's overlays: `--overlay-src` directories (bottom first) at DEST, writes going to
    /// `upper` (`--overlay RWSRC WORKDIR`), to a tmpfs discarded with the jail
    /// (`--tmp-overlay`), or nowhere (`--ro-overlay`: neither).
    Overlay {
        srcs: Vec<PathBuf>,
        dest: String,
        upper: Option<(PathBuf, PathBuf)>,
        tmp: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum RootFs {
    /// Host-sandbox form (no `--root`, no `--layer`): an empty tmpfs, writable, in which the
    /// mount points are made.
    Tmpfs,
    /// A directory bound as `/`, read-only unless `writable`.
    Dir { path: PathBuf, writable: bool },
    /// overlayfs: `layers` bottom first; `upper` = (upper, work) kept, or None for a tmpfs
    /// upper discarded with the jail. `idmap` (as long as `layers`): that layer is opened by
    /// the privileged side and idmapped onto the jail's user namespace (`--idmap-layer`).
    Overlay { layers: Vec<PathBuf>, idmap: Vec<bool>, upper: Option<(PathBuf, PathBuf)> },
}

/// One mount the jail makes, in order, with destinations inside the new root.
#[derive(Debug, Clone, PartialEq)]
pub enum Mount {
    Bind {
        src: PathBuf,
        dest: String,
        ro: bool,
        dev: bool,
    },
    /// A bind whose source may be missing (then nothing is mounted).
    BindTry {
        src: PathBuf,
        dest: String,
        ro: bool,
        dev: bool,
    },
    Tmpfs {
        dest: String,
        mode: u32,
    },
    /// A tmpfs with a size limit in bytes.
    TmpfsSized {
        dest: String,
        mode: u32,
        size: u64,
    },
    /// The mount at `dest` made read-only (not its submounts).
    RemountRo {
        dest: String,
    },
    /// A bind of the tree descriptor `fd` (inherited by the jail) is open on.
    BindFd {
        fd: i32,
        dest: String,
        ro: bool,
    },
    /// A file of its own (on a private tmpfs) holding the content read from `fd`, bound at
    /// `dest` (the `files` of the jail's handover, in plan order with `File`).
    Data {
        fd: i32,
        dest: String,
        ro: bool,
        mode: u32,
    },
    /// `dest` opened and read-locked (`F_RDLCK`) by the jail's PID 1 for the jail's life.
    LockFile {
        dest: String,
    },
    /// `dest` (existing; symlinks followed inside the jail only) gets `mode`.
    Chmod {
        dest: String,
        mode: u32,
    },
    /// An mqueue file system (the jail's IPC namespace's queues) at `dest`.
    Mqueue {
        dest: String,
    },
    /// overlayfs at `dest`: `srcs` bottom first (host paths, opened as the caller before
    /// pivot_root like bind sources), writes to `upper` = (upper, work), to a tmpfs of its own
    /// (`tmp`), or read-only (neither).
    Overlay {
        srcs: Vec<PathBuf>,
        dest: String,
        upper: Option<(PathBuf, PathBuf)>,
        tmp: bool,
    },
    /// A fresh sysfs (of the jail's network namespace), read-only, nosuid, nodev, noexec.
    Sysfs {
        dest: String,
    },
    /// The cgroup v2 hierarchy as the jail's cgroup namespace sees it (its own cgroup as `/`),
    /// read-write (`--delegate-cgroup`: the cgroup is the jail root's).
    Cgroup2 {
        dest: String,
    },
    Proc {
        dest: String,
    },
    /// A bind of a sub-path of /proc onto itself, read-only.
    ProcReadOnly {
        path: String,
    },
    /// A bind of a sub-path of a read-only part of /proc onto itself, writable again
    /// (`--net-sysctls-rw`: /proc/sys/net).
    ProcWritable {
        path: String,
    },
    /// A file of /proc hidden under a read-only bind of the host's /dev/null (where the kernel
    /// has it).
    ProcMask {
        path: String,
    },
    /// The minimal /dev at `dest`: tmpfs, device binds from the host, devpts, shm, links.
    Dev {
        dest: String,
    },
    /// A symlink at `dest` (never followed; an existing one must have the same target).
    Symlink {
        target: String,
        dest: String,
    },
    /// A directory at `dest` (parents made as needed; an existing directory is kept).
    Dir {
        dest: String,
        mode: u32,
    },
    /// A new file at `dest`, `mode`, with the content ljspawn read from `fd` (the
    /// `files` of the jail's handover, in plan order).
    File {
        fd: i32,
        dest: String,
        mode: u32,
    },
}

/// Which built-in seccomp filter the program gets (see `seccomp.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seccomp {
    Default,
    /// The default without the rules against new user namespaces (`--allow-userns`).
    AllowUserns,
    /// No built-in filter (`--seccomp none`, root only).
    None,
    /// `--seccomp container`: the default without the user-namespace and setuid-file rules,
    /// allowing keyrings and bpf (for container runtimes in the jail; every mode).
    Container,
    /// No built-in filter because the program is ljspawn itself (bwrap form, `/proc/self/exe`
    /// as the command: bwrap's own way to nest a sandbox), which takes bwrap's command line
    /// again and installs the built-in filter for its own program.
    Reexec,
}

/// The command that is ljspawn itself: `/proc/self/exe` executed by the jail's program process
/// (which ljspawn started) is ljspawn's executable, whatever the jail's file system holds.
pub const SELF_EXE: &str = "/proc/self/exe";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// A new network namespace with only loopback, up.
    None,
    /// The host's network namespace.
    Host,
    /// `bridge:BR`: a veth pair, the host end on bridge BR, `eth0` in the jail.
    Bridge { bridge: String, addr: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr> },
    /// `macvlan:IFACE` (lightjail's `-f IFACE -i IP`): a macvlan on IFACE as `eth0`.
    Macvlan { parent: String, addr: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr> },
    /// `pasta`: a network namespace of its own with outbound access through pasta (Debian's
    /// passt): `eth0` with the host's address and routes, connections made by pasta from the
    /// host's namespace; the host's loopback is not mapped and no port is forwarded.
    Pasta,
}

/// One line of a uid_map or gid_map: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The jail's user namespace maps. The first line of each maps the jail's user (or group)
/// to the caller; in setuid mode, the caller's `/etc/subuid` and `/etc/subgid` ranges follow,
/// filling the other ids from 0 up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    /// `setgroups` stays allowed only when subgid ranges were granted (setuid mode).
    pub setgroups: bool,
    /// The maps are written from outside the jail (which waits for them): by ljspawn's
    /// privileged parent (setuid mode, root with `--subids`), or by `newuidmap`/`newgidmap`
    /// (`helper`, rootless `--subids`).
    pub by_parent: bool,
    /// Written by Debian's `newuidmap` and `newgidmap` (package `uidmap`), run by ljspawn's
    /// unprivileged parent on the jail's pid, as rootless podman does; they check the ranges
    /// against `/etc/subuid` and `/etc/subgid` themselves and set `setgroups`.
    pub helper: bool,
}

/// `--cap-add container`: the default capability set of a container (Docker's, Podman's and
/// buildah's `RUN`), kept inside the jail's own user namespace.
pub const CONTAINER_CAPS: [&str; 13] = [
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "net_bind_service",
    "sys_chroot",
    "setfcap",
    "audit_write",
    "mknod",
];

/// How many jail ids `--subids` maps as root (0-65535, as a container gets).
pub const SUBIDS_ROOT_RANGE: u32 = 65536;

/// `--subids-base BASE`, checked: a multiple of 65536, at least 65536 (host root's range is
/// never a jail's private one), and BASE+65536 a valid id (below 2^32-1, the invalid id).
pub fn subids_base(base: u64) -> Result<u32, PlanError> {
    let range = u64::from(SUBIDS_ROOT_RANGE);
    if base < range
        || !base.is_multiple_of(range)
        || base.checked_add(range).is_none_or(|end| end > u64::from(u32::MAX))
    {
        return Err(PlanError::BadSubidsBase(base));
    }
    Ok(base as u32)
}

/// The jail's user namespace and its maps, the one place that decides them:
/// * root: none, unless `--userns` (jail user = root) or `--subids`: jail ids 0-65535, the
///   same ids on the host (identity), or with `--subids-base BASE` host ids BASE..BASE+65535
///   (a private range: no host root in the jail), written by ljspawn itself;
/// * rootless: the jail user is the caller; with `--subids` the caller is jail root and its
///   `/etc/subuid`/`/etc/subgid` ranges follow from 1 up, written by `newuidmap`/`newgidmap`;
/// * setuid: the jail user is the caller and the subordinate ranges fill the other ids, written
///   by the privileged parent; with `--subids` the caller is jail root (as rootless).
///
/// `--subids` without ranges for the caller is an error, never a one-id jail.
pub fn userns_map(req: &Request, caller: &Caller, uid: u32, gid: u32) -> Result<Option<IdMap>, PlanError> {
    let need_ranges = || {
        if caller.subuids.is_empty() || caller.subgids.is_empty() {
            return Err(PlanError::NoSubids {
                uid: caller.uid,
                subuids: !caller.subuids.is_empty(),
                subgids: !caller.subgids.is_empty(),
            });
        }
        Ok(())
    };
    let (target_uid, target_gid) = if req.subids { (0, 0) } else { (uid, gid) };
    let base = match req.subids_base {
        Some(_) if caller.mode != Mode::Root => return Err(PlanError::SubidsBaseNotRoot(caller.mode)),
        Some(b) => subids_base(b)?,
        None => 0,
    };
    Ok(match caller.mode {
        Mode::Root if req.subids => {
            let full = vec![IdRange { inside: 0, outside: base, count: SUBIDS_ROOT_RANGE }];
            Some(IdMap { uids: full.clone(), gids: full, setgroups: true, by_parent: true, helper: false })
        }
        Mode::Root if !req.userns => None,
        Mode::Rootless if req.subids => {
            need_ranges()?;
            Some(IdMap {
                uids: id_lines(0, caller.uid, &caller.subuids),
                gids: id_lines(0, caller.gid, &caller.subgids),
                setgroups: true,
                by_parent: true,
                helper: true,
            })
        }
        Mode::Root | Mode::Rootless => Some(IdMap {
            uids: id_lines(uid, caller.uid, &[]),
            gids: id_lines(gid, caller.gid, &[]),
            setgroups: false,
            by_parent: false,
            helper: false,
        }),
        Mode::Setuid => {
            if req.subids {
                need_ranges()?;
            }
            Some(IdMap {
                uids: id_lines(target_uid, caller.uid, &caller.subuids),
                gids: id_lines(target_gid, caller.gid, &caller.subgids),
                setgroups: !caller.subgids.is_empty(),
                by_parent: true,
                helper: false,
            })
        }
    })
}

/// `--proc-unmasked`, the one way a jail's /proc goes without its read-only binds and masks.
///
/// Why it exists: the kernel lets a user namespace that does not own the jail's mounts mount a
/// new proc only if some proc in its mount namespace is fully visible, with no mount over
/// anything but an empty directory (fs/namespace.c, `mount_too_revealing`); the jail's masks,
/// locked when a nested jail copies them, make every nested jail (rootless podman, a user's own
/// ljspawn under the jail's systemd) fail with EPERM. Binding the existing /proc instead (the
/// fallback crun and runc keep for containers without a PID namespace of their own) would show
/// a nested jail's new PID namespace the outer one's processes. A second, fully visible proc
/// hidden under a mount of its own would pass the kernel's check too and keep the jail's own
/// /proc masked, but it is no narrower: any nested namespace could then mount an unmasked proc,
/// and the jail's root, holding `CAP_SYS_ADMIN` in its own user namespace (`--init`, podman),
/// can unmount its masks (made in its namespace, not locked) anyway; it would only add a hidden
/// mount to reason about.
///
/// Why it is safe where it is allowed: the masks keep the host's root out of /proc/sys,
/// sysrq-trigger, kcore and the rest. A jail whose user namespace maps neither host uid 0 nor
/// gid 0 holds no host root at all (and nothing made inside it can map ids it lacks): what the
/// kernel checks for these files (owner root, `CAP_SYS_ADMIN`/`CAP_SYS_RAWIO` in the initial
/// user namespace, per-namespace sysctls for the namespace's owner) refuses the jail as it
/// refuses the caller, who sees the same /proc on the host. Rootless jails are such, and setuid
/// ones (the caller's id and granted ranges: rootless could do the same in its own user
/// namespace, so setuid grants nothing more). Root mode is refused, with or without a user
/// namespace: its maps hold host uid 0 (its jail root could write /proc/sys/kernel/core_pattern
/// unmasked), and so is any map holding 0.
pub fn check_proc_unmasked(mode: Mode, userns: Option<&IdMap>) -> Result<(), PlanError> {
    let host_root = |m: &IdMap| m.uids.iter().chain(&m.gids).any(|r| r.outside == 0);
    match userns {
        Some(m) if mode != Mode::Root && !host_root(m) => Ok(()),
        _ => Err(PlanError::ProcUnmaskedHostRoot(mode)),
    }
}

/// The kernel's limit on lines in one id map.
const MAX_MAP_LINES: usize = 340;

/// Map lines: `target` (inside) to `own` (outside), then the `sub` ranges (start, count) onto
/// the inside ids from 0 up, skipping `target`.
pub fn id_lines(target: u32, own: u32, sub: &[(u32, u32)]) -> Vec<IdRange> {
    let mut lines = vec![IdRange { inside: target, outside: own, count: 1 }];
    let mut next: u64 = 0;
    for &(start, count) in sub {
        let (mut outside, mut left) = (start as u64, count as u64);
        while left > 0 && lines.len() < MAX_MAP_LINES {
            if next == target as u64 {
                next += 1;
            }
            // Inside ids stop below 2^32 - 1 (the invalid id).
            let limit = if next < target as u64 { target as u64 } else { u32::MAX as u64 };
            let n = left.min(limit.saturating_sub(next));
            if n == 0 || outside + n > u32::MAX as u64 {
                return lines;
            }
            lines.push(IdRange { inside: next as u32, outside: outside as u32, count: n as u32 });
            next += n;
            outside += n;
            left -= n;
        }
    }
    lines
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub mode: Mode,
    /// None: no user namespace (root only).
    pub userns: Option<IdMap>,
    pub net: Net,
    pub root: RootFs,
    /// Mounts made after the root is in place, in order.
    pub mounts: Vec<Mount>,
    pub hostname: String,
    /// The program's credentials inside the jail.
    pub uid: u32,
    pub gid: u32,
    /// Capabilities (numbers) the program keeps; empty for everyone but root's `--cap-add`.
    pub caps: Vec<u32>,
    /// `--cap-add ALL`: every capability ljspawn itself holds (those it lacks are skipped).
    pub caps_all: bool,
    pub env: Vec<(String, String)>,
    /// Variables passed on as they came, after `env` (see `Request::env_raw`).
    pub env_raw: Vec<Vec<u8>>,
    pub cwd: String,
    /// Without `--chdir`, the directories tried first, in order (else `cwd`, which is `/`): the
    /// caller's in the host-sandbox and bwrap forms, then (bwrap form) the program's `HOME`.
    pub cwd_try: Vec<String>,
    /// bwrap form: `PWD` (in `env`) names the directory the program starts in, the one of
    /// `cwd_try` entered, else `cwd`.
    pub pwd_is_cwd: bool,
    pub argv: Vec<String>,
    pub pass_fds: Vec<i32>,
    pub json_status: Option<i32>,
    /// bwrap's `--info-fd`: gets the child pid and namespace ids, then is closed.
    pub info_fd: Option<i32>,
    pub stdout_file: Option<PathBuf>,
    pub stderr_file: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub kill_after: Duration,
    /// Cgroup limits of the whole jail.
    pub limits: Limits,
    /// Resource limits set on the program before exec, in command-line order.
    pub rlimits: Vec<Rlimit>,
    /// The built-in seccomp filter installed last before exec.
    pub seccomp: Seccomp,
    /// The built-in filter lets the jail make setuid and setgid files (`--allow-setuid-files`;
    /// without it the filter refuses them with EPERM).
    pub allow_setuid_files: bool,
    /// The caller's own BPF programs, read from these fds and installed after the built-in
    /// one, in order.
    pub seccomp_fds: Vec<i32>,
    /// Checked after the filters: the program could make a user namespace? Then it is not
    /// started (bwrap's `--assert-userns-disabled`).
    pub assert_no_userns: bool,
    /// The program waits on this fd (a byte or end-of-file) before exec (`--block-fd`).
    pub block_fd: Option<i32>,
    /// The caller writes the jail's id maps; ljspawn waits on this fd for it (see
    /// `userns_block_fd` of [`Request`]).
    pub userns_block_fd: Option<i32>,
    /// The program's argv\[0\] when not the command's first word (`--argv0`).
    pub argv0: Option<String>,
    /// The program runs as the PID namespace's init (bwrap's `--as-pid-1`, ljspawn's): no
    /// ljspawn init reaps or forwards for it; the jail ends when it exits.
    pub as_pid_1: bool,
    /// bwrap's `/dev`: with the terminal on stdout as `/dev/console`.
    pub dev_console: bool,
    /// The bwrap form: the program's exec and `--chdir` failures are bwrap's, in its words
    /// (`execvp NAME: ...`, `Can't chdir to DIR: ...`; `execvp`'s search of `PATH`).
    pub bwrap_exec: bool,
    /// The bwrap form: `--file` and `--dir` get their modes as given (bwrap ignores the
    /// caller's umask; ljspawn's own form takes it off).
    pub exact_modes: bool,
    /// The jail is made in the user namespace this fd is open on (`userns` is then None:
    /// ljspawn writes no maps; never in setuid mode).
    pub join_userns: Option<i32>,
    /// The init joins this user namespace after the mounts (before the program starts).
    pub join_userns2: Option<i32>,
    /// The jail is made in the PID namespace this fd is open on (ljspawn joins it before the
    /// clone; never in setuid mode).
    pub join_pidns: Option<i32>,
    /// The jail has a PID namespace of its own, its init is its PID 1: always, except with
    /// `join_pidns` and no `--unshare-pid` (then the init is one process of the joined one).
    pub own_pidns: bool,
    /// The administrator's grants this plan relies on (setuid mode), kept for the second
    /// look at the policy before acting.
    pub grants: Grants,
    /// fd 0 is a terminal: the jail gets a pty of its own from its devpts (the first `/dev`
    /// it mounts), relayed by ljspawn (see `pty`). Never without a `Mount::Dev`.
    pub pty: bool,
    /// The signal a SIGTERM to ljspawn, and the timeout's, is delivered to the jail as.
    pub stop_signal: i32,
    /// `--delegate-cgroup`: the jail gets a cgroup v2 of its own (even without limits), owned by
    /// the jail's root, and `Mount::Cgroup2` shows it.
    pub delegate_cgroup: bool,
    /// `--subids-base BASE` (root only): the jail's ids 0-65535 are host ids BASE.. (`userns`
    /// holds the map; kept for the privileged side's second look).
    pub subids_base: Option<u32>,
}

/// Why a request cannot become a plan. Every message is one line, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    NoCommand,
    RootAndLayers,
    UpperWithoutLayers,
    UpperWorkPair,
    RwWithLayers,
    RwWithTmpfsRoot,
    BindOntoRoot,
    NotAbsolute {
        what: &'static str,
        path: String,
    },
    DotDot {
        what: &'static str,
        path: String,
    },
    BadNet(String),
    BadInterface(String),
    NeedsIp(String),
    BadIp(String),
    IpWithoutLink,
    NetNotAllowed(Mode, String),
    PastaInSetuid,
    BadHostname(String),
    BadEnvName(String),
    NulByte(&'static str),
    UnknownCap(String),
    CapsNotAllowed(Mode),
    /// `--subids` without subordinate ids for the caller.
    NoSubids {
        uid: u32,
        subuids: bool,
        subgids: bool,
    },
    /// `--subids-base` that is not a multiple of 65536 from 65536 up, or overflows.
    BadSubidsBase(u64),
    /// `--subids-base` outside root mode.
    SubidsBaseNotRoot(Mode),
    /// Installed setuid to a user other than root, or setgid.
    BadInstall,
    BadRlimit(String),
    BadSymlink(String),
    BadPerms(u32),
    BadSize(String),
    MemoryTooSmall(String),
    LimitsNotGranted,
    LimitAboveGrant(&'static str, String),
    BadSeccomp(String),
    SeccompNoneNotAllowed(Mode),
    BadFd {
        what: &'static str,
        fd: i32,
    },
    FdTwice {
        fd: i32,
        first: &'static str,
        second: &'static str,
    },
    ReservedFd {
        what: &'static str,
        fd: i32,
    },
    /// `--idmap-layer` without a user namespace (root), or in plain rootless mode.
    IdmapNeedsUserns,
    IdmapRootless,
    /// `--idmap-layer` outside every store granted to the setuid caller.
    IdmapNotGranted(String),
    /// `--idmap-layer` that is not a plain absolute path.
    IdmapNotPlain(String),
    /// An overlay without a lower directory.
    OverlayWithoutSrc,
    /// bwrap's `--userns-block-fd` in setuid mode: the caller cannot write the maps of a
    /// namespace ljspawn's privileged side made, and ljspawn writes no maps it did not choose.
    UsernsBlockInSetuid,
    /// bwrap's `--userns-block-fd` without a user namespace.
    UsernsBlockWithoutUserns,
    /// `--delegate-cgroup` in setuid mode without a `limits` grant.
    DelegateNotGranted,
    /// `--sysfs` with `--net host` outside root mode (sysfs belongs to a network namespace).
    SysfsHostNet(Mode),
    /// `--net-sysctls-rw` with `--net host`.
    NetSysctlsHostNet,
    /// `--proc-unmasked` where the jail's ids include the host's root (root mode, with or
    /// without a user namespace, or a map holding host uid or gid 0).
    ProcUnmaskedHostRoot(Mode),
    /// bwrap's `--userns`/`--userns2` in setuid mode.
    JoinInSetuid(&'static str),
    /// `--userns FD` with a new user namespace too.
    JoinAndNewUserns,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PlanError::*;
        match self {
            NoCommand => write!(f, "no command given (usage: ljspawn [OPTIONS] [--] COMMAND [ARGS...])"),
            RootAndLayers => write!(f, "--root and --layer are exclusive: use one root file system"),
            UpperWithoutLayers => write!(f, "--upper/--work need --layer (they are the overlay's writable part)"),
            UpperWorkPair => write!(f, "--upper and --work go together: give both (same file system) or neither"),
            RwWithLayers => write!(f, "--rw applies to --root; an overlay root is always writable"),
            RwWithTmpfsRoot => write!(f, "--rw applies to --root; without --root or --layer the root is an empty tmpfs, always writable"),
            BindOntoRoot => write!(f, "a bind onto / is not a mount of ljspawn's own form: give that tree as the root with --root DIR (read-only; --rw to write to it), or use the bwrap form (--bwrap)"),
            NotAbsolute { what, path } => write!(f, "{what} '{path}' must be an absolute path"),
            DotDot { what, path } => write!(f, "{what} '{path}' must not contain '..' or '.' components"),
            BadNet(m) => write!(f, "unknown network mode '{m}' (expected none, host, bridge:BR or macvlan:IFACE)"),
            BadInterface(n) => write!(f, "invalid interface name '{n}' (1-15 characters, no '/', ':' or spaces)"),
            NeedsIp(m) => write!(f, "--net {m} needs --ip ADDR/PREFIX, or --ip dhcp for the jail's own DHCP client (lightjail: -i IP)"),
            BadIp(a) => write!(f, "invalid address '{a}' (expected IPv4 ADDR[/PREFIX], e.g. 10.0.0.2/24)"),
            IpWithoutLink => write!(f, "--ip and --gateway need --net bridge:BR or macvlan:IFACE (lightjail: -f IFACE)"),
            PastaInSetuid => write!(
                f,
                "--net pasta is not available in setuid mode (pasta would run as root or in a namespace root owns); use --net none, or rootless mode"
            ),
            NetNotAllowed(Mode::Setuid, n) => write!(
                f,
                "--net {n} is not granted to you in /etc/lightjail.conf (a line like '{} allow USER' is missing)",
                n.replacen(':', " ", 1)
            ),
            NetNotAllowed(m, n) => {
                write!(f, "--net {n} is not allowed in {m} mode (root, or setuid with a grant in /etc/lightjail.conf)")
            }
            BadHostname(h) => write!(f, "invalid hostname '{h}' (letters, digits, '-' and '.', at most 64)"),
            BadEnvName(n) => write!(f, "invalid environment variable name '{n}'"),
            NulByte(what) => write!(f, "{what} contains a NUL byte"),
            UnknownCap(c) => write!(f, "unknown capability '{c}' (e.g. CAP_NET_ADMIN or net_admin)"),
            CapsNotAllowed(m) => {
                write!(f, "--cap-add is not allowed in {m} mode without a user namespace of the jail's own")
            }
            NoSubids { uid, subuids, subgids } => {
                let missing: Vec<&str> =
                    [(*subuids, "/etc/subuid"), (*subgids, "/etc/subgid")].iter().filter(|(has, _)| !has).map(|(_, f)| *f).collect();
                write!(
                    f,
                    "--subids: no range for uid {uid} in {} (ask an administrator: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)",
                    missing.join(" or ")
                )
            }
            BadSubidsBase(b) => write!(
                f,
                "invalid --subids-base {b} (a multiple of 65536, at least 65536, with BASE+65536 below 4294967295; e.g. 524288)"
            ),
            SubidsBaseNotRoot(m) => write!(
                f,
                "--subids-base is not allowed in {m} mode (root only: it maps host ids of root's choosing; use --subids, which maps your /etc/subuid ranges)"
            ),
            BadInstall => write!(f, "ljspawn is installed setgid or setuid to a user other than root: install it 0755, or 4755 owned by root (make install-setuid)"),
            BadRlimit(r) => write!(
                f,
                "invalid --rlimit '{r}' (expected NAME=SOFT[:HARD], NAME one of {}, values a number or unlimited)",
                RLIMITS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ")
            ),
            BadPerms(m) => write!(f, "invalid --perms {m:o} (permission bits and the sticky bit only, e.g. 0755)"),
            BadSymlink(t) => write!(f, "invalid --symlink target '{t}' (empty or with a NUL byte)"),
            BadSize(v) => write!(f, "invalid --memory '{v}' (expected a size such as 512M or 2G; a number alone is MiB)"),
            MemoryTooSmall(v) => write!(
                f,
                "--memory {v} is too small to start a process in the jail: give at least {}M (a number alone is MiB)",
                MIN_MEMORY >> 20
            ),
            LimitsNotGranted => write!(
                f,
                "cgroup limits are not granted to you in /etc/lightjail.conf (a line like 'limits allow USER' is missing)"
            ),
            LimitAboveGrant(what, max) => {
                write!(f, "--{what} is above what /etc/lightjail.conf grants you ({what}={max})")
            }
            BadSeccomp(m) => write!(f, "unknown --seccomp mode '{m}' (expected default, container or none)"),
            SeccompNoneNotAllowed(m) => {
                write!(f, "--seccomp none is not allowed in {m} mode (only root may run without the filter)")
            }
            BadFd { what, fd } => write!(f, "{what} {fd} is not an open file descriptor"),
            FdTwice { fd, first, second } => {
                write!(f, "fd {fd} is given to both {first} and {second}: give each its own descriptor")
            }
            ReservedFd { what, fd } => write!(f, "{what} {fd}: descriptors 0-2 are always passed; give 3 or more"),
            IdmapNeedsUserns => write!(f, "--idmap-layer needs a user namespace to map onto (as root: --userns or --subids)"),
            IdmapRootless => write!(f, "--idmap-layer needs setuid ljspawn (make install-setuid) and a store grant in /etc/lightjail.conf (a line like 'store /usr/local/lj allow USER'); rootless ljspawn cannot idmap"),
            IdmapNotGranted(l) => write!(f, "--idmap-layer {l} is not in a store granted to you in /etc/lightjail.conf (a line like 'store DIR allow USER' is missing, DIR the lightjail root holding the layer)"),
            UsernsBlockInSetuid => write!(f, "--userns-block-fd is not available in setuid mode (ljspawn writes the id maps itself there); use rootless mode"),
            UsernsBlockWithoutUserns => write!(f, "--userns-block-fd needs a user namespace of the jail's own (--unshare-user)"),
            JoinInSetuid(o) => write!(f, "{o} is not available in setuid mode (the namespaces setuid ljspawn makes belong to root, and joining one as root is more than rootless gives); use rootless mode"),
            JoinAndNewUserns => write!(f, "--userns joins a user namespace: it does not go with a new one (--unshare-user)"),
            OverlayWithoutSrc => write!(f, "an overlay needs at least one lower directory (--overlay-src)"),
            IdmapNotPlain(l) => write!(f, "--idmap-layer '{l}' must be an absolute path without '.', '..', empty components or a trailing '/'"),
            DelegateNotGranted => write!(
                f,
                "--delegate-cgroup is not granted to you in /etc/lightjail.conf (the jail's cgroup is made by ljspawn as root: a line like 'limits allow USER' is missing)"
            ),
            ProcUnmaskedHostRoot(m) => write!(f, "--proc-unmasked is not allowed in {m} mode: the jail's ids include the host's root (uid or gid 0), whom only the masks keep from /proc/sys and the rest; use it in a rootless or setuid jail (its own user namespace without host root)"),
            NetSysctlsHostNet => write!(f, "--net-sysctls-rw needs the jail's own network namespace (not --net host: those settings are the host's)"),
            SysfsHostNet(m) => write!(f, "--sysfs with --net host is not allowed in {m} mode (a sysfs shows the network namespace it is mounted in: give the jail its own)"),
        }
    }
}

impl std::error::Error for PlanError {}

impl PlanError {
    /// The exit status for this error: refusals of what the caller may not do are setup
    /// failures (125); everything else is a usage error (2).
    pub fn exit_code(&self) -> u8 {
        match self {
            PlanError::CapsNotAllowed(_)
            | PlanError::NoSubids { .. }
            | PlanError::SubidsBaseNotRoot(_)
            | PlanError::SeccompNoneNotAllowed(_)
            | PlanError::NetNotAllowed(..)
            | PlanError::PastaInSetuid
            | PlanError::LimitsNotGranted
            | PlanError::LimitAboveGrant(..)
            | PlanError::IdmapNeedsUserns
            | PlanError::IdmapRootless
            | PlanError::IdmapNotGranted(_)
            | PlanError::UsernsBlockInSetuid
            | PlanError::DelegateNotGranted
            | PlanError::SysfsHostNet(_)
            | PlanError::ProcUnmaskedHostRoot(_)
            | PlanError::JoinInSetuid(_)
            | PlanError::BadInstall => crate::EXIT_SETUP,
            _ => crate::EXIT_USAGE,
        }
    }
}

/// The smallest `--memory` a jail may have: below it, ljspawn's init and a static program do
/// not fit (measured: a static `true` needs about 256K), so the limit is refused, not applied.
pub const MIN_MEMORY: u64 = 1 << 20;

/// The jail's default `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// /proc entries that stay read-only in the jail.
pub const PROC_READ_ONLY: [&str; 4] = ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"];

/// Files of /proc every jail gets masked: key descriptions (the caller's, or root's).
pub const PROC_MASKED: [&str; 2] = ["/proc/keys", "/proc/key-users"];

/// Also masked in root mode, whose jail root is host uid 0 and could read these root-only files
/// (kernel addresses, allocator state, timers: Docker's masked paths).
pub const PROC_MASKED_ROOT: [&str; 5] =
    ["/proc/kcore", "/proc/slabinfo", "/proc/vmallocinfo", "/proc/timer_list", "/proc/sched_debug"];

/// Capability names, indexed by number (linux/capability.h).
pub const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

pub fn cap_number(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    CAP_NAMES.iter().position(|&n| n == bare).map(|i| i as u32)
}

/// A `--perms` mode (permission bits only: never setuid, setgid), or the default.
fn perms(mode: Option<u32>, default: u32) -> Result<u32, PlanError> {
    match mode {
        None => Ok(default),
        Some(m) if m & !0o1777 == 0 => Ok(m),
        Some(m) => Err(PlanError::BadPerms(m)),
    }
}

/// Checks an in-jail path: absolute, no `.`/`..`, no NUL. Returns it normalised (no
/// duplicate or trailing slashes).
fn jail_path(what: &'static str, p: &str) -> Result<String, PlanError> {
    if p.contains('\0') {
        return Err(PlanError::NulByte(what));
    }
    if !p.starts_with('/') {
        return Err(PlanError::NotAbsolute { what, path: p.into() });
    }
    let mut out = String::new();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        if c == "." || c == ".." {
            return Err(PlanError::DotDot { what, path: p.into() });
        }
        out.push('/');
        out.push_str(c);
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

fn host_path(what: &'static str, p: &Path) -> Result<PathBuf, PlanError> {
    use std::os::unix::ffi::OsStrExt;
    if p.as_os_str().as_bytes().contains(&0) {
        return Err(PlanError::NulByte(what));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(PlanError::DotDot { what, path: p.display().to_string() });
    }
    Ok(p.to_path_buf())
}

/// What may be an `--idmap-layer` for this caller, before the user namespace is known: a plain
/// absolute path; in setuid mode strictly beneath a granted store; never rootless. (The
/// privileged side checks the same again before it opens anything: [`idmap_layer_store`].)
fn idmap_allowed(layer: &Path, caller: &Caller) -> Result<(), PlanError> {
    let shown = layer.display().to_string();
    let plain = layer
        .to_str()
        .filter(|s| conf::is_plain_absolute(s))
        .ok_or(PlanError::IdmapNotPlain(shown.clone()))?;
    match caller.mode {
        Mode::Root => Ok(()),
        Mode::Rootless => Err(PlanError::IdmapRootless),
        Mode::Setuid => {
            idmap_layer_store(plain, &caller.grants).map(drop).ok_or(PlanError::IdmapNotGranted(shown))
        }
    }
}

/// The granted store `layer` lies strictly beneath (the longest, if several), or None.
pub fn idmap_layer_store<'a>(layer: &str, grants: &'a Grants) -> Option<&'a str> {
    grants.stores.iter().filter(|s| conf::beneath(s, layer)).max_by_key(|s| s.len()).map(String::as_str)
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.as_bytes()[0].is_ascii_digit()
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Turns a request into a plan, or says why it cannot be one. `open_fd` reports whether a
/// descriptor number is open (a fact of the caller, passed in to keep this function pure).
pub fn build(req: &Request, caller: &Caller, open_fd: &dyn Fn(i32) -> bool) -> Result<Plan, PlanError> {
    if req.command.is_empty() {
        return Err(PlanError::NoCommand);
    }
    if req.command.iter().any(|a| a.contains('\0')) {
        return Err(PlanError::NulByte("the command"));
    }

    let root = match (&req.root, req.layers.is_empty()) {
        (Some(_), false) => return Err(PlanError::RootAndLayers),
        (None, true) => {
            if req.upper.is_some() || req.work.is_some() {
                return Err(PlanError::UpperWithoutLayers);
            }
            if req.rw {
                return Err(PlanError::RwWithTmpfsRoot);
            }
            RootFs::Tmpfs
        }
        (Some(dir), true) => {
            if req.upper.is_some() || req.work.is_some() {
                return Err(PlanError::UpperWithoutLayers);
            }
            RootFs::Dir { path: host_path("--root", dir)?, writable: req.rw }
        }
        (None, false) => {
            if req.rw {
                return Err(PlanError::RwWithLayers);
            }
            let layers = req
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    host_path(if req.idmap.get(i) == Some(&true) { "--idmap-layer" } else { "--layer" }, l)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let upper = match (&req.upper, &req.work) {
                (Some(u), Some(w)) => Some((host_path("--upper", u)?, host_path("--work", w)?)),
                (None, None) => None,
                _ => return Err(PlanError::UpperWorkPair),
            };
            let idmap: Vec<bool> =
                (0..layers.len()).map(|i| req.idmap.get(i).copied().unwrap_or(false)).collect();
            for (l, _) in layers.iter().zip(&idmap).filter(|(_, i)| **i) {
                idmap_allowed(l, caller)?;
            }
            RootFs::Overlay { layers, idmap, upper }
        }
    };

    // bwrap's `--bind / /` (or `--ro-bind`) as the first operation: that tree is the root.
    let mut skip_first = false;
    let root = match (&root, req.bwrap, req.mounts.first()) {
        (RootFs::Tmpfs, true, Some(MountReq::Bind { src, dest, ro, dev: _ }))
            if jail_path("bind destination", dest)? == "/" =>
        {
            skip_first = true;
            RootFs::Dir { path: host_path("bind source", src)?, writable: !ro }
        }
        _ => root,
    };
    let net = parse_net(req, caller)?;
    let limits = Limits {
        memory: match &req.memory {
            Some(m) => match conf::parse_size(m) {
                None => return Err(PlanError::BadSize(m.clone())),
                Some(n) if n < MIN_MEMORY => return Err(PlanError::MemoryTooSmall(m.clone())),
                n => n,
            },
            None => None,
        },
        pids: req.pids,
        cpus: req.cpus,
    };
    if caller.mode == Mode::Setuid && !limits.is_empty() {
        let max = caller.grants.limits.ok_or(PlanError::LimitsNotGranted)?;
        let above = |v: Option<f64>, m: Option<f64>| matches!((v, m), (Some(v), Some(m)) if v > m);
        let f = |v: Option<u64>| v.map(|v| v as f64);
        if above(f(limits.memory), f(max.memory)) {
            return Err(PlanError::LimitAboveGrant("memory", max.memory.unwrap_or(0).to_string()));
        }
        if above(f(limits.pids), f(max.pids)) {
            return Err(PlanError::LimitAboveGrant("pids", max.pids.unwrap_or(0).to_string()));
        }
        if above(limits.cpus, max.cpus) {
            return Err(PlanError::LimitAboveGrant("cpus", max.cpus.unwrap_or(0.0).to_string()));
        }
    }

    let hostname = req.hostname.clone().unwrap_or_else(|| "lj".into());
    if !valid_hostname(&hostname) {
        return Err(PlanError::BadHostname(hostname));
    }

    let (uid, gid) = match req.user {
        // bwrap: `--uid` alone keeps the caller's gid.
        Some((u, g)) if req.bwrap => (u, g.unwrap_or(caller.gid)),
        Some((u, g)) => (u, g.unwrap_or(u)),
        // bwrap keeps the caller's ids in the sandbox unless --uid/--gid.
        None if req.bwrap => (caller.uid, req.group.unwrap_or(caller.gid)),
        None => (0, 0),
    };

    if caller.mode == Mode::Setuid {
        // The namespaces setuid ljspawn makes belong to root, and as root it could join
        // namespaces the caller could not: what rootless would give is nothing here.
        if req.join_userns.is_some() {
            return Err(PlanError::JoinInSetuid("--userns"));
        }
        if req.join_userns2.is_some() {
            return Err(PlanError::JoinInSetuid("--userns2"));
        }
        if req.join_pidns.is_some() {
            return Err(PlanError::JoinInSetuid("--pidns"));
        }
    }
    let userns = match req.join_userns {
        Some(_) if req.userns || req.subids => return Err(PlanError::JoinAndNewUserns),
        Some(_) => None,
        None => userns_map(req, caller, uid, gid)?,
    };
    // (Checked by `userns_map`, which refused it outside root mode or out of range.)
    let subids_base = userns.as_ref().and(req.subids_base).map(|b| b as u32);
    if req.userns_block_fd.is_some() {
        if caller.mode == Mode::Setuid {
            return Err(PlanError::UsernsBlockInSetuid);
        }
        if userns.as_ref().is_none_or(|m| m.by_parent) {
            return Err(PlanError::UsernsBlockWithoutUserns);
        }
    }
    if userns.is_none() && matches!(&root, RootFs::Overlay { idmap, .. } if idmap.contains(&true)) {
        return Err(PlanError::IdmapNeedsUserns);
    }

    let mut caps = Vec::new();
    let caps_all = req.cap_add.iter().any(|c| c.eq_ignore_ascii_case("all"));
    for c in &req.cap_add {
        // Capabilities held in the jail's own user namespace give no power over the host: every
        // mode may keep them there. Only root may keep them without one.
        if caller.mode != Mode::Root && userns.is_none() && req.join_userns.is_none() {
            return Err(PlanError::CapsNotAllowed(caller.mode));
        }
        let n = if c.eq_ignore_ascii_case("all") {
            caps.extend(0..CAP_NAMES.len() as u32);
            continue;
        } else if c.eq_ignore_ascii_case("container") {
            caps.extend(CONTAINER_CAPS.iter().map(|n| cap_number(n).expect("a known capability")));
            continue;
        } else {
            cap_number(c).ok_or_else(|| PlanError::UnknownCap(c.clone()))?
        };
        caps.push(n);
    }
    for c in &req.cap_drop {
        let n = cap_number(c).ok_or_else(|| PlanError::UnknownCap(c.clone()))?;
        caps.retain(|&k| k != n);
    }
    caps.sort_unstable();
    caps.dedup();

    if req.proc_unmasked {
        check_proc_unmasked(caller.mode, userns.as_ref())?;
    }
    // The read-only binds and masks over a proc mounted at `dest` (none with --proc-unmasked).
    let proc_covers = |dest: &str| -> Vec<Mount> {
        if req.proc_unmasked {
            return Vec::new();
        }
        let under = |p: &&str| p.replacen("/proc", dest, 1);
        let root_masks = if caller.mode == Mode::Root { &PROC_MASKED_ROOT[..] } else { &[] };
        let ro = PROC_READ_ONLY.iter().map(|p| Mount::ProcReadOnly { path: under(p) });
        ro.chain(PROC_MASKED.iter().chain(root_masks).map(|p| Mount::ProcMask { path: under(p) })).collect()
    };
    let mut mounts = Vec::new();
    if !req.bwrap {
        mounts.push(Mount::Proc { dest: "/proc".into() });
        mounts.extend(proc_covers("/proc"));
        mounts.push(Mount::Dev { dest: "/dev".into() });
        mounts.push(Mount::Tmpfs { dest: "/tmp".into(), mode: 0o1777 });
    }
    if req.net_sysctls_rw {
        // Only the jail's own network namespace's settings: never the host's.
        if net == Net::Host {
            return Err(PlanError::NetSysctlsHostNet);
        }
    }
    if req.net_sysctls_rw && !req.proc_unmasked {
        // (Unmasked, /proc/sys/net is as writable as the kernel lets the jail: no bind.)
        let at = mounts.iter().position(|m| matches!(m, Mount::ProcReadOnly { path } if path == "/proc/sys"));
        let at = at.map_or(mounts.len(), |i| i + 1);
        mounts.insert(at, Mount::ProcWritable { path: "/proc/sys/net".into() });
    }
    if req.sysfs {
        if net == Net::Host && caller.mode != Mode::Root {
            return Err(PlanError::SysfsHostNet(caller.mode));
        }
        mounts.push(Mount::Sysfs { dest: "/sys".into() });
    }
    if req.delegate_cgroup {
        if caller.mode == Mode::Setuid && caller.grants.limits.is_none() {
            return Err(PlanError::DelegateNotGranted);
        }
        mounts.push(Mount::Cgroup2 { dest: "/sys/fs/cgroup".into() });
    }
    let mut reqs: Vec<MountReq> = Vec::new();
    if req.host_usr {
        reqs.push(MountReq::Bind { src: "/usr".into(), dest: "/usr".into(), ro: true, dev: false });
        for (path, link) in &caller.host_links {
            reqs.push(match link {
                Some(target) => MountReq::Symlink { target: target.clone(), dest: path.clone() },
                None => MountReq::Bind { src: path.into(), dest: path.clone(), ro: true, dev: false },
            });
        }
    }
    reqs.extend(req.mounts.iter().skip(usize::from(skip_first)).cloned());
    for m in &reqs {
        mounts.push(match m {
            MountReq::Bind { src, dest, ro, dev } => {
                let dest = jail_path("bind destination", dest)?;
                if dest == "/" && !req.bwrap {
                    return Err(PlanError::BindOntoRoot);
                }
                Mount::Bind { src: host_path("bind source", src)?, dest, ro: *ro, dev: *dev }
            }
            MountReq::Tmpfs { dest } => {
                Mount::Tmpfs { dest: jail_path("--tmpfs destination", dest)?, mode: 0o755 }
            }
            MountReq::Symlink { target, dest } => {
                if target.is_empty() || target.contains('\0') {
                    return Err(PlanError::BadSymlink(target.clone()));
                }
                Mount::Symlink { target: target.clone(), dest: jail_path("--symlink destination", dest)? }
            }
            MountReq::Dir { dest, mode } => {
                Mount::Dir { dest: jail_path("--dir destination", dest)?, mode: perms(*mode, 0o755)? }
            }
            MountReq::File { fd, dest, mode } => {
                check_content_fd("--file", *fd, req.bwrap, open_fd)?;
                Mount::File {
                    fd: *fd,
                    dest: jail_path("--file destination", dest)?,
                    mode: perms(*mode, 0o666)?,
                }
            }
            MountReq::BindTry { src, dest, ro, dev } => Mount::BindTry {
                src: host_path("bind source", src)?,
                dest: jail_path("bind destination", dest)?,
                ro: *ro,
                dev: *dev,
            },
            MountReq::TmpfsWith { dest, mode, size } => {
                let (dest, mode) = (jail_path("--tmpfs destination", dest)?, perms(*mode, 0o755)?);
                match size {
                    Some(0) => return Err(PlanError::BadSize("0".into())),
                    Some(size) => Mount::TmpfsSized { dest, mode, size: *size },
                    None => Mount::Tmpfs { dest, mode },
                }
            }
            MountReq::Proc { dest } => {
                let dest = jail_path("--proc destination", dest)?;
                // The same masks as ljspawn's own /proc (bwrap has none: a deliberate
                // difference).
                let covers = proc_covers(&dest);
                mounts.push(Mount::Proc { dest });
                mounts.extend(covers);
                continue;
            }
            MountReq::Dev { dest } => Mount::Dev { dest: jail_path("--dev destination", dest)? },
            MountReq::RemountRo { dest } => {
                Mount::RemountRo { dest: jail_path("--remount-ro destination", dest)? }
            }
            MountReq::BindFd { fd, dest, ro } => {
                check_fd("--bind-fd", *fd, open_fd)?;
                Mount::BindFd { fd: *fd, dest: jail_path("--bind-fd destination", dest)?, ro: *ro }
            }
            MountReq::Data { fd, dest, ro, mode } => {
                check_content_fd("--bind-data", *fd, req.bwrap, open_fd)?;
                Mount::Data {
                    fd: *fd,
                    dest: jail_path("--bind-data destination", dest)?,
                    ro: *ro,
                    mode: perms(*mode, 0o600)?,
                }
            }
            MountReq::LockFile { dest } => Mount::LockFile { dest: jail_path("--lock-file", dest)? },
            MountReq::Chmod { dest, mode } => {
                Mount::Chmod { dest: jail_path("--chmod", dest)?, mode: perms(Some(*mode), 0)? }
            }
            MountReq::Mqueue { dest } => Mount::Mqueue { dest: jail_path("--mqueue destination", dest)? },
            MountReq::Overlay { srcs, dest, upper, tmp } => {
                if srcs.is_empty() {
                    return Err(PlanError::OverlayWithoutSrc);
                }
                let upper = match upper {
                    Some((u, w)) => Some((host_path("--overlay", u)?, host_path("--overlay", w)?)),
                    None => None,
                };
                Mount::Overlay {
                    srcs: srcs.iter().map(|s| host_path("--overlay-src", s)).collect::<Result<_, _>>()?,
                    dest: jail_path("overlay destination", dest)?,
                    upper,
                    tmp: *tmp,
                }
            }
        });
    }

    let home = if uid == 0 { "/root" } else { "/" };
    let mut env: Vec<(String, String)> = if let Some(base) = &req.env_base {
        base.clone()
    } else {
        vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("SHELL".into(), "/bin/sh".into()),
            ("HOME".into(), home.into()),
        ]
    };
    if caller.tty && req.env_base.is_none() {
        if let Some(t) = &caller.term {
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) {
                env.push(("TERM".into(), t.clone()));
            }
        }
    }
    for (k, v) in &req.setenv {
        if !valid_env_name(k) {
            return Err(PlanError::BadEnvName(k.clone()));
        }
        if v.contains('\0') {
            return Err(PlanError::NulByte("--setenv value"));
        }
        match env.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env.retain(|(k, _)| !req.unsetenv.contains(k));
    if env.iter().any(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0')) {
        return Err(PlanError::NulByte("the environment"));
    }
    // (Named by --setenv, --unsetenv or a variable above: that one wins; PWD is set below.)
    let named = |n: &[u8]| {
        env.iter().any(|(k, _)| k.as_bytes() == n)
            || req.unsetenv.iter().any(|k| k.as_bytes() == n)
            || (req.bwrap && n == b"PWD")
    };
    let env_raw: Vec<Vec<u8>> =
        req.env_raw.iter().filter(|e| !named(e.split(|&b| b == b'=').next().unwrap_or(e))).cloned().collect();

    let cwd = match &req.chdir {
        Some(d) => jail_path("--chdir", d)?,
        None => "/".into(),
    };
    // The host-sandbox form keeps the caller's directory when the jail has it (bwrap does);
    // bwrap's, when the sandbox has not, the program's HOME if the sandbox has that.
    let mut cwd_try = Vec::new();
    if req.chdir.is_none() && (root == RootFs::Tmpfs || req.bwrap) {
        cwd_try.extend(caller.cwd.as_deref().and_then(|d| jail_path("the current directory", d).ok()));
    }
    if req.chdir.is_none() && req.bwrap {
        let home = env.iter().find(|(k, _)| k == "HOME").map(|(_, v)| v.as_str());
        cwd_try.extend(home.and_then(|h| jail_path("HOME", h).ok()).filter(|h| !cwd_try.contains(h)));
    }
    // bwrap sets PWD to the directory the program starts in (whatever --clearenv, --setenv
    // and --unsetenv did): --chdir's, else the caller's or HOME (when the sandbox has it), else
    // /. Which one is known once the jail is there: the program's process sets it.
    if req.bwrap {
        let pwd = cwd_try.first().cloned().unwrap_or_else(|| cwd.clone());
        env.retain(|(k, _)| k != "PWD");
        env.push(("PWD".into(), pwd));
    }

    for &fd in &req.pass_fds {
        check_fd("--pass-fd", fd, open_fd)?;
    }
    if let Some(fd) = req.json_status {
        check_fd("--json-status", fd, open_fd)?;
    }
    if let Some(fd) = req.info_fd {
        check_fd("--info-fd", fd, open_fd)?;
    }
    for &fd in &req.seccomp_fds {
        check_fd("--seccomp-fd", fd, open_fd)?;
    }
    for (what, fd) in [
        ("--block-fd", req.block_fd),
        ("--userns-block-fd", req.userns_block_fd),
        ("--userns", req.join_userns),
        ("--userns2", req.join_userns2),
        ("--pidns", req.join_pidns),
    ] {
        if let Some(fd) = fd {
            check_fd(what, fd, open_fd)?;
        }
    }
    // One descriptor, one use: ljspawn closes --seccomp-fd after reading it and keeps
    // --json-status for itself, so a number given twice would pass on whatever reuses it.
    let uses: Vec<(&'static str, i32)> = req
        .pass_fds
        .iter()
        .map(|&fd| ("--pass-fd", fd))
        .chain(req.json_status.map(|fd| ("--json-status", fd)))
        .chain(req.seccomp_fds.iter().map(|&fd| ("--seccomp-fd", fd)))
        .chain(req.block_fd.map(|fd| ("--block-fd", fd)))
        .chain(req.userns_block_fd.map(|fd| ("--userns-block-fd", fd)))
        .chain(req.info_fd.map(|fd| ("--info-fd", fd)))
        .chain(req.join_userns.map(|fd| ("--userns", fd)))
        .chain(req.join_userns2.map(|fd| ("--userns2", fd)))
        .chain(req.join_pidns.map(|fd| ("--pidns", fd)))
        .collect();
    for (i, &(a, fd)) in uses.iter().enumerate() {
        if let Some(&(b, _)) = uses[..i].iter().find(|&&(b, other)| other == fd && b != a) {
            return Err(PlanError::FdTwice { fd, first: b, second: a });
        }
    }
    let reexec = req.bwrap && req.command[0] == SELF_EXE && req.argv0.is_none();
    let seccomp = match (req.seccomp.as_deref(), req.allow_userns) {
        // Nesting (bwrap form): the inner ljspawn's program gets the filter from it.
        (None, true) if reexec => Seccomp::Reexec,
        (None | Some("default"), false) => Seccomp::Default,
        (None | Some("default"), true) => Seccomp::AllowUserns,
        (Some("container"), _) => Seccomp::Container,
        (Some("none"), _) if caller.mode == Mode::Root => Seccomp::None,
        (Some("none"), _) => return Err(PlanError::SeccompNoneNotAllowed(caller.mode)),
        (Some(other), _) => return Err(PlanError::BadSeccomp(other.into())),
    };
    let mut pass_fds = req.pass_fds.clone();
    pass_fds.sort_unstable();
    pass_fds.dedup();
    // The pty comes from the jail's own devpts: without ljspawn's /dev (the bwrap form
    // without `--dev`) the terminal is passed as it is, as bwrap passes it.
    let pty = caller.stdin_tty && !req.no_pty && mounts.iter().any(|m| matches!(m, Mount::Dev { .. }));

    Ok(Plan {
        mode: caller.mode,
        userns,
        net,
        root,
        mounts,
        hostname,
        uid,
        gid,
        caps,
        caps_all,
        env,
        env_raw,
        cwd,
        cwd_try,
        pwd_is_cwd: req.bwrap,
        argv: req.command.clone(),
        pass_fds,
        json_status: if req.json_log { Some(2) } else { req.json_status },
        info_fd: req.info_fd,
        stdout_file: req.stdout_file.clone(),
        stderr_file: req.stderr_file.clone(),
        timeout: req.timeout,
        kill_after: req.kill_after.unwrap_or(Duration::from_secs(5)),
        limits,
        rlimits: req.rlimits.iter().map(|r| parse_rlimit(r)).collect::<Result<_, _>>()?,
        seccomp,
        allow_setuid_files: req.allow_setuid_files,
        seccomp_fds: req.seccomp_fds.clone(),
        assert_no_userns: req.assert_no_userns,
        block_fd: req.block_fd,
        userns_block_fd: req.userns_block_fd,
        // The nested ljspawn takes bwrap's command line: it is told so by its name.
        argv0: if reexec { Some("bwrap".into()) } else { req.argv0.clone() },
        as_pid_1: req.as_pid_1,
        dev_console: req.bwrap,
        bwrap_exec: req.bwrap,
        exact_modes: req.bwrap,
        join_userns: req.join_userns,
        join_userns2: req.join_userns2,
        join_pidns: req.join_pidns,
        own_pidns: req.join_pidns.is_none() || req.unshare_pid,
        grants: caller.grants.clone(),
        pty,
        stop_signal: req.stop_signal.unwrap_or(libc::SIGTERM),
        delegate_cgroup: req.delegate_cgroup,
        subids_base,
    })
}

/// What `/proc/sys` says about user namespaces (None: the file does not exist here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsernsSysctls {
    /// `kernel.unprivileged_userns_clone` (Debian and Ubuntu kernels).
    pub unprivileged_userns_clone: Option<u64>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later).
    pub apparmor_restrict: Option<u64>,
}

/// Why creating the jail's user namespace failed with `errno`, and how to fix it, for a
/// caller in `mode`. Pure: the sysctl values are read by the caller.
pub fn userns_hint(errno: i32, mode: Mode, s: &UsernsSysctls) -> String {
    let setuid = if mode == Mode::Setuid {
        ""
    } else {
        ", or ask the administrator to install ljspawn setuid (make install-setuid)"
    };
    if s.max_user_namespaces == Some(0) {
        return format!("user namespaces are disabled (user.max_user_namespaces = 0): ask the administrator to raise it{setuid}");
    }
    if errno == libc::ENOSPC {
        return "the limit on user namespaces is reached (user.max_user_namespaces)".into();
    }
    if mode == Mode::Setuid {
        return "the kernel refused a user namespace even to the privileged ljspawn".into();
    }
    if s.unprivileged_userns_clone == Some(0) {
        return format!("unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0): ask the administrator to set it to 1{setuid}");
    }
    if s.apparmor_restrict == Some(1) {
        return format!("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1): ask the administrator for an AppArmor profile that allows ljspawn `userns`{setuid}");
    }
    format!("the kernel does not allow this user to create user namespaces{setuid}")
}

/// One resource limit: `setrlimit(resource, soft, hard)`; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: crate::sys::Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The resources `--rlimit` knows, by their `ulimit`/`prlimit` names.
pub const RLIMITS: [(&str, crate::sys::Resource); 10] = [
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("stack", libc::RLIMIT_STACK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
];

/// `NAME=SOFT[:HARD]`; NAME case-insensitive, with or without `RLIMIT_`; HARD defaults to SOFT.
fn parse_rlimit(s: &str) -> Result<Rlimit, PlanError> {
    let bad = || PlanError::BadRlimit(s.into());
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("rlimit_").unwrap_or(&lower);
    let &(name, resource) = RLIMITS.iter().find(|(n, _)| *n == bare).ok_or_else(bad)?;
    let value = |v: &str| match v {
        "unlimited" | "infinity" => Ok(u64::MAX),
        _ => v.parse::<u64>().map_err(|_| bad()),
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => (value(vals)?, value(vals)?),
    };
    if soft > hard {
        return Err(bad());
    }
    Ok(Rlimit { name, resource, soft, hard })
}

fn parse_net(req: &Request, caller: &Caller) -> Result<Net, PlanError> {
    let mode = req.net.as_deref().unwrap_or("none");
    let link = |name: &str| {
        let ok = !name.is_empty()
            && name.len() <= 15
            && name != "."
            && name != ".."
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if ok {
            Ok(name.to_string())
        } else {
            Err(PlanError::BadInterface(name.into()))
        }
    };
    let (kind, iface) = match mode {
        "none" | "host" | "pasta" => {
            if req.ip.is_some() || req.gateway.is_some() {
                return Err(PlanError::IpWithoutLink);
            }
            return match mode {
                "none" => Ok(Net::None),
                "host" => Ok(Net::Host),
                _ if caller.mode == Mode::Setuid => Err(PlanError::PastaInSetuid),
                _ => Ok(Net::Pasta),
            };
        }
        m => match m.split_once(':') {
            Some(("bridge", i)) => ("bridge", link(i)?),
            Some(("macvlan", i)) => ("macvlan", link(i)?),
            _ => return Err(PlanError::BadNet(m.into())),
        },
    };
    let granted = match kind {
        "bridge" => &caller.grants.bridges,
        _ => &caller.grants.macvlans,
    };
    let allowed = caller.mode == Mode::Root || (caller.mode == Mode::Setuid && granted.contains(&iface));
    if !allowed {
        return Err(PlanError::NetNotAllowed(caller.mode, mode.into()));
    }
    let ip = req.ip.as_deref().ok_or_else(|| PlanError::NeedsIp(mode.into()))?;
    if ip == "dhcp" {
        // eth0 up without an address: the jail's own DHCP client configures it (and the route).
        if let Some(g) = &req.gateway {
            return Err(PlanError::BadIp(format!(
                "{g} (--gateway with --ip dhcp: the DHCP server gives the route)"
            )));
        }
        let addr = Ipv4Addr::UNSPECIFIED;
        return Ok(match kind {
            "bridge" => Net::Bridge { bridge: iface, addr, prefix: 0, gateway: None },
            _ => Net::Macvlan { parent: iface, addr, prefix: 0, gateway: None },
        });
    }
    let (addr, prefix) = match ip.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok().filter(|p| (1..=32).contains(p))),
        None => (ip, Some(24)),
    };
    let (Ok(addr), Some(prefix)) = (addr.parse::<Ipv4Addr>(), prefix) else {
        return Err(PlanError::BadIp(ip.into()));
    };
    let gateway = match req.gateway.as_deref() {
        Some(g) => Some(g.parse::<Ipv4Addr>().map_err(|_| PlanError::BadIp(g.into()))?),
        None => None,
    };
    Ok(match kind {
        "bridge" => Net::Bridge { bridge: iface, addr, prefix, gateway },
        _ => Net::Macvlan { parent: iface, addr, prefix, gateway },
    })
}

/// A descriptor whose content ljspawn reads (`--file`, `--bind-data`): in the bwrap form also
/// 0-2 (bwrap's `--file 0 DEST`: the caller's stdin, read to its end; it stays the program's).
fn check_content_fd(
    what: &'static str,
    fd: i32,
    bwrap: bool,
    open_fd: &dyn Fn(i32) -> bool,
) -> Result<(), PlanError> {
    if bwrap && (0..=2).contains(&fd) && open_fd(fd) {
        return Ok(());
    }
    check_fd(what, fd, open_fd)
}

fn check_fd(what: &'static str, fd: i32, open_fd: &dyn Fn(i32) -> bool) -> Result<(), PlanError> {
    if (0..=2).contains(&fd) {
        return Err(PlanError::ReservedFd { what, fd });
    }
    if fd < 0 || !open_fd(fd) {
        return Err(PlanError::BadFd { what, fd });
    }
    Ok(())
}

impl Plan {
    /// The namespaces the jail gets, as clone flags.
    pub fn clone_flags(&self) -> u64 {
        let mut f = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWCGROUP;
        if self.own_pidns {
            f |= libc::CLONE_NEWPID;
        }
        if self.userns.is_some() {
            f |= libc::CLONE_NEWUSER;
        }
        if self.net != Net::Host {
            f |= libc::CLONE_NEWNET;
        }
        f as u64
    }

    /// Who gets the jail's delegated cgroup (`--delegate-cgroup`), as host (uid, gid): the
    /// jail's root; without one mapped (no subordinate ids), the jail's own user, as rootless
    /// ljspawn's cgroup is the caller's and so its jail's user's. None without a user
    /// namespace (the jail's ids are the host's: ljspawn's own).
    pub fn cgroup_owner(&self) -> Option<(u32, u32)> {
        let m = self.userns.as_ref()?;
        let host = |r: &[IdRange], id: u32| {
            r.iter().find(|l| id >= l.inside && id - l.inside < l.count).map(|l| l.outside + (id - l.inside))
        };
        match (host(&m.uids, 0), host(&m.gids, 0)) {
            (Some(u), Some(g)) => Some((u, g)),
            _ => Some((host(&m.uids, self.uid)?, host(&m.gids, self.gid)?)),
        }
    }

    pub fn namespace_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.userns.is_some() {
            v.push("user");
        }
        v.push("mount");
        if self.own_pidns {
            v.push("pid");
        }
        v.extend(["uts", "ipc", "cgroup"]);
        if self.net != Net::Host {
            v.push("net");
        }
        v
    }
}

/// `--dry-run`: the whole plan, one fact per line, in the order it is carried out.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mode: {}", self.mode)?;
        writeln!(f, "namespaces: {}", self.namespace_names().join(" "))?;
        match &self.userns {
            Some(m) => {
                let who = match (m.by_parent, m.helper) {
                    (_, true) => "written by newuidmap/newgidmap",
                    (true, false) => "written by ljspawn",
                    (false, false) => "written by the jail",
                };
                for (name, lines) in [("uid", &m.uids), ("gid", &m.gids)] {
                    let l: Vec<String> =
                        lines.iter().map(|r| format!("{} {} {}", r.inside, r.outside, r.count)).collect();
                    writeln!(f, "{name} map: {} ({who})", l.join(", "))?;
                }
                writeln!(
                    f,
                    "setgroups: {}",
                    if m.setgroups { "allow (a gid range is mapped)" } else { "deny" }
                )?;
            }
            None if self.join_userns.is_some() => writeln!(
                f,
                "user namespace: joined (bwrap --userns fd {}), its own maps",
                self.join_userns.unwrap_or(-1)
            )?,
            None => writeln!(f, "uid map: none (no user namespace: jail ids are host ids)")?,
        }
        if let Some(fd) = self.join_pidns {
            let nested = if self.own_pidns { ", a new one nested in it" } else { "" };
            writeln!(f, "pid namespace: joined (bwrap --pidns fd {fd}){nested}")?;
        }
        writeln!(f, "mounts:")?;
        let mut n = 1;
        writeln!(f, "  {n}. / propagation private (recursive)")?;
        n += 1;
        match &self.root {
            RootFs::Tmpfs => writeln!(f, "  {n}. / <- tmpfs mode 755, empty (rw, nosuid, nodev)")?,
            RootFs::Dir { path, writable } => writeln!(
                f,
                "  {n}. / <- bind {} ({}, nosuid, nodev, recursive)",
                path.display(),
                if *writable { "rw" } else { "ro" }
            )?,
            RootFs::Overlay { layers, idmap, upper } => {
                let lower: Vec<String> = layers
                    .iter()
                    .zip(idmap)
                    .rev()
                    .map(
                        |(l, i)| {
                            if *i {
                                format!("{} (idmapped)", l.display())
                            } else {
                                l.display().to_string()
                            }
                        },
                    )
                    .collect();
                let up = match upper {
                    Some((u, w)) => format!("upper {} work {}", u.display(), w.display()),
                    None => "upper ephemeral tmpfs".into(),
                };
                writeln!(
                    f,
                    "  {n}. / <- overlay lower (top first) {} {up} (userxattr, nosuid, nodev)",
                    lower.join(":")
                )?
            }
        }
        n += 1;
        writeln!(f, "  {n}. pivot_root, old root detached")?;
        for m in &self.mounts {
            n += 1;
            match m {
                Mount::Proc { dest } => writeln!(f, "  {n}. {dest} <- proc (nosuid, nodev, noexec)")?,
                Mount::ProcReadOnly { path } => writeln!(f, "  {n}. {path} <- bind {path} (ro, nosuid, nodev, noexec)")?,
                Mount::ProcWritable { path } => writeln!(f, "  {n}. {path} <- bind {path} (rw again: the jail's own network namespace's; nosuid, nodev, noexec)")?,
                Mount::ProcMask { path } => writeln!(f, "  {n}. {path} <- bind /dev/null (ro, nosuid, nodev, noexec: masked, where it exists)")?,
                Mount::Dev { dest } => writeln!(
                    f,
                    "  {n}. {dest} <- tmpfs (nosuid, noexec) with null zero full random urandom tty bound from the host, pts (devpts, newinstance), shm (tmpfs), ptmx fd stdin stdout stderr links"
                )?,
                Mount::Tmpfs { dest, mode } => writeln!(f, "  {n}. {dest} <- tmpfs mode {mode:o} (nosuid, nodev)")?,
                Mount::Symlink { target, dest } => writeln!(f, "  {n}. {dest} <- symlink to {target}")?,
                Mount::TmpfsSized { dest, mode, size } => {
                    writeln!(f, "  {n}. {dest} <- tmpfs mode {mode:o} size {size} bytes (nosuid, nodev)")?
                }
                Mount::RemountRo { dest } => writeln!(f, "  {n}. {dest} <- the mount there made read-only")?,
                Mount::BindFd { fd, dest, ro } => {
                    writeln!(f, "  {n}. {dest} <- bind of fd {fd} ({}, nosuid, nodev, recursive)", if *ro { "ro" } else { "rw" })?
                }
                Mount::Data { fd, dest, ro, mode } => writeln!(
                    f,
                    "  {n}. {dest} <- bind of a file mode {mode:o} with the content of fd {fd} ({})",
                    if *ro { "ro" } else { "rw" }
                )?,
                Mount::LockFile { dest } => writeln!(f, "  {n}. {dest} read-locked while the jail runs")?,
                Mount::Chmod { dest, mode } => writeln!(f, "  {n}. {dest} gets mode {mode:o}")?,
                Mount::Mqueue { dest } => writeln!(f, "  {n}. {dest} <- mqueue (nosuid, nodev, noexec)")?,
                Mount::Overlay { srcs, dest, upper, tmp } => writeln!(
                    f,
                    "  {n}. {dest} <- overlay of {} (bottom first), {} (nosuid, nodev, userxattr)",
                    srcs.iter().map(|s| s.display().to_string()).collect::<Vec<_>>().join(" "),
                    match (upper, tmp) {
                        (Some((u, w)), _) => format!("writes to {} (work {})", u.display(), w.display()),
                        (None, true) => "writes to a tmpfs discarded with the jail".into(),
                        (None, false) => "read-only".into(),
                    }
                )?,
                Mount::Sysfs { dest } => writeln!(f, "  {n}. {dest} <- sysfs of the jail's network namespace (ro, nosuid, nodev, noexec)")?,
                Mount::Cgroup2 { dest } => writeln!(f, "  {n}. {dest} <- cgroup2, the jail's own cgroup as / (rw, nosuid, nodev, noexec)")?,
                Mount::BindTry { src, dest, ro, dev } => writeln!(
                    f,
                    "  {n}. {dest} <- bind {} if it exists ({}, nosuid, {}, recursive)",
                    src.display(),
                    if *ro { "ro on every submount" } else { "rw" },
                    if *dev { "dev" } else { "nodev" }
                )?,
                Mount::Dir { dest, mode } => writeln!(f, "  {n}. {dest} <- directory mode {mode:o}")?,
                Mount::File { fd, dest, mode } => writeln!(f, "  {n}. {dest} <- file mode {mode:o} with the content of fd {fd}")?,
                Mount::Bind { src, dest, ro, dev } => writeln!(
                    f,
                    "  {n}. {dest} <- bind {} ({}, nosuid, {}, recursive)",
                    src.display(),
                    if *ro { "ro on every submount" } else { "rw" },
                    if *dev { "dev" } else { "nodev" }
                )?,
            }
        }
        writeln!(f, "hostname: {}", self.hostname)?;
        let gw = |g: &Option<Ipv4Addr>| g.map_or(String::new(), |g| format!(", default route via {g}"));
        match &self.net {
            Net::None => writeln!(f, "network: none (own namespace, loopback up)")?,
            Net::Host => writeln!(f, "network: host")?,
            Net::Pasta => writeln!(
                f,
                "network: own namespace, loopback up, eth0 through pasta (outbound only: no host loopback, no forwarded ports)"
            )?,
            Net::Bridge { bridge, prefix: 0, .. } => writeln!(
                f,
                "network: veth lj<PID> on bridge {bridge}, eth0 up without an address in the jail (its own DHCP client configures it), loopback up"
            )?,
            Net::Bridge { bridge, addr, prefix, gateway } => writeln!(
                f,
                "network: veth lj<PID> on bridge {bridge}, eth0 {addr}/{prefix}{} in the jail, loopback up",
                gw(gateway)
            )?,
            Net::Macvlan { parent, prefix: 0, .. } => writeln!(
                f,
                "network: macvlan (bridge mode) on {parent}, eth0 up without an address in the jail (its own DHCP client configures it), loopback up"
            )?,
            Net::Macvlan { parent, addr, prefix, gateway } => writeln!(
                f,
                "network: macvlan (bridge mode) on {parent}, eth0 {addr}/{prefix}{} in the jail, loopback up",
                gw(gateway)
            )?,
        }
        writeln!(f, "user: uid {} gid {} (supplementary groups cleared)", self.uid, self.gid)?;
        if self.caps.is_empty() {
            writeln!(f, "capabilities: none (bounding set emptied), no_new_privs")?;
        } else {
            let names: Vec<String> =
                self.caps.iter().map(|&c| format!("cap_{}", CAP_NAMES[c as usize])).collect();
            writeln!(
                f,
                "capabilities: {} (others dropped from the bounding set), no_new_privs",
                names.join(" ")
            )?;
        }
        writeln!(f, "session: new (setsid)")?;
        if self.pty {
            writeln!(f, "terminal: a pty of the jail's own devpts, relayed by ljspawn (fd 0 is a terminal; --no-pty passes it as it is)")?;
        }
        writeln!(
            f,
            "seccomp: {}{}{}",
            match self.seccomp {
                Seccomp::Default => "default filter (all ABIs), new user namespaces denied",
                Seccomp::AllowUserns => "default filter (all ABIs), new user namespaces allowed",
                Seccomp::None => "no built-in filter",
                Seccomp::Container =>
                    "container filter (all ABIs): new user namespaces, keyrings and bpf allowed",
                Seccomp::Reexec =>
                    "no built-in filter: the program is ljspawn itself (bwrap form), which installs it",
            },
            match (self.seccomp, self.allow_setuid_files) {
                (Seccomp::None | Seccomp::Reexec, _) => "",
                (Seccomp::Container, _) => ", setuid/setgid files allowed",
                (_, false) => ", setuid/setgid files refused",
                (_, true) => ", setuid/setgid files allowed",
            },
            self.seccomp_fds
                .iter()
                .map(|fd| format!(", then the program read from fd {fd}"))
                .collect::<String>()
        )?;
        let fds: Vec<String> = [0, 1, 2].iter().chain(&self.pass_fds).map(|d| d.to_string()).collect();
        writeln!(f, "fds: {}", fds.join(" "))?;
        if let Some(p) = &self.stdout_file {
            writeln!(f, "stdout: {}", p.display())?;
        }
        if let Some(p) = &self.stderr_file {
            writeln!(f, "stderr: {}", p.display())?;
        }
        if let Some(m) = self.limits.memory {
            writeln!(f, "cgroup: memory.max {m} bytes (swap 0)")?;
        }
        if let Some(p) = self.limits.pids {
            writeln!(f, "cgroup: pids.max {p}")?;
        }
        if let Some(c) = self.limits.cpus {
            writeln!(f, "cgroup: cpu {c} CPUs (quota per 100 ms period)")?;
        }
        if self.delegate_cgroup {
            writeln!(f, "cgroup: a v2 cgroup of the jail's own, delegated to the jail's root")?;
        }
        for r in &self.rlimits {
            let v = |n: u64| if n == u64::MAX { "unlimited".to_string() } else { n.to_string() };
            writeln!(f, "rlimit: {} soft {} hard {}", r.name, v(r.soft), v(r.hard))?;
        }
        if let Some(t) = self.timeout {
            writeln!(f, "timeout: {:?}, then SIGTERM, {:?} grace, SIGKILL", t, self.kill_after)?;
        }
        if self.stop_signal != libc::SIGTERM {
            writeln!(f, "stop signal: SIGTERM is delivered to the jail as signal {}", self.stop_signal)?;
        }
        writeln!(f, "environment:")?;
        for (k, v) in &self.env {
            writeln!(f, "  {k}={v}")?;
        }
        write!(f, "cwd: ")?;
        for d in &self.cwd_try {
            write!(f, "{d} if it exists in the jail, else ")?;
        }
        writeln!(f, "{}{}", self.cwd, if self.pwd_is_cwd { " (PWD names it)" } else { "" })?;
        write!(f, "command{}:", if self.as_pid_1 { " (as the jail's PID 1)" } else { "" })?;
        for a in &self.argv {
            write!(f, " {}", shell_quote(a))?;
        }
        writeln!(f)
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(mode: Mode) -> Caller {
        let uid = if mode == Mode::Root { 0 } else { 1000 };
        Caller {
            mode,
            uid,
            gid: uid,
            tty: false,
            stdin_tty: false,
            term: None,
            subuids: vec![],
            subgids: vec![],
            grants: Grants::default(),
            cwd: Some("/home/u".into()),
            host_links: vec![("/bin".into(), Some("usr/bin".into())), ("/lib64".into(), None)],
        }
    }

    fn req(cmd: &[&str]) -> Request {
        Request {
            root: Some("/w".into()),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn none_open(_: i32) -> bool {
        false
    }

    fn bwrap_req(cmd: &[&str]) -> Request {
        Request { bwrap: true, allow_userns: true, env_base: Some(vec![]), ..req(cmd) }
    }

    #[test]
    fn bwrap_pwd_is_the_programs_directory() {
        let pwd = |r: Request| {
            let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
            let v: Vec<String> = p.env.iter().filter(|(k, _)| k == "PWD").map(|(_, v)| v.clone()).collect();
            v
        };
        let stale = Some(vec![("PWD".to_string(), "/elsewhere".to_string())]);
        assert_eq!(pwd(Request { env_base: stale.clone(), ..bwrap_req(&["true"]) }), ["/home/u"]);
        let r = Request { env_base: stale, chdir: Some("/usr".into()), ..bwrap_req(&["true"]) };
        assert_eq!(pwd(r), ["/usr"]);
        let r = Request { unsetenv: vec!["PWD".into()], ..bwrap_req(&["true"]) };
        assert_eq!(pwd(r), ["/home/u"]);
        // ljspawn's own form keeps its clean environment.
        assert!(pwd(Request { root: None, ..req(&["true"]) }).is_empty());
    }

    #[test]
    fn bwrap_tries_the_callers_directory_then_home() {
        let plan = |r: Request| build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        let home = |h: &str| Some(vec![("HOME".to_string(), h.to_string())]);
        let p = plan(Request { env_base: home("/srv/h"), ..bwrap_req(&["true"]) });
        assert_eq!(
            (p.cwd_try.as_slice(), p.cwd.as_str(), p.pwd_is_cwd),
            (&["/home/u".into(), "/srv/h".into()][..], "/", true)
        );
        // HOME as --setenv and --unsetenv leave it; once only; not relative.
        let r = Request { setenv: vec![("HOME".into(), "/x".into())], ..bwrap_req(&["true"]) };
        assert_eq!(plan(r).cwd_try, ["/home/u", "/x"]);
        assert_eq!(plan(Request { env_base: home("/home/u"), ..bwrap_req(&["true"]) }).cwd_try, ["/home/u"]);
        assert_eq!(plan(Request { env_base: home("rel"), ..bwrap_req(&["true"]) }).cwd_try, ["/home/u"]);
        let r = Request { env_base: home("/srv/h"), unsetenv: vec!["HOME".into()], ..bwrap_req(&["true"]) };
        assert_eq!(plan(r).cwd_try, ["/home/u"]);
        // --chdir: that one only.
        let r = Request { env_base: home("/srv/h"), chdir: Some("/usr".into()), ..bwrap_req(&["true"]) };
        assert!(plan(r).cwd_try.is_empty());
    }

    #[test]
    fn bwrap_ids_default_to_the_callers() {
        let c = caller(Mode::Rootless);
        let ids = |r: Request| build(&r, &c, &none_open).map(|p| (p.uid, p.gid)).unwrap();
        assert_eq!(ids(bwrap_req(&["true"])), (1000, 1000));
        assert_eq!(ids(Request { group: Some(7), ..bwrap_req(&["true"]) }), (1000, 7));
        assert_eq!(ids(Request { user: Some((5, None)), ..bwrap_req(&["true"]) }), (5, 1000));
        assert_eq!(ids(Request { user: Some((5, Some(6))), ..bwrap_req(&["true"]) }), (5, 6));
    }

    #[test]
    fn bwrap_proc_is_masked_and_nesting_is_ljspawn_itself() {
        let r = Request { mounts: vec![MountReq::Proc { dest: "/p".into() }], ..bwrap_req(&["true"]) };
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert!(p.mounts.contains(&Mount::ProcMask { path: "/p/keys".into() }));
        assert!(!p.mounts.contains(&Mount::ProcMask { path: "/p/kcore".into() }));
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert!(p.mounts.contains(&Mount::ProcMask { path: "/p/kcore".into() }));
        assert_eq!(p.seccomp, Seccomp::AllowUserns);
        let p =
            build(&bwrap_req(&[SELF_EXE, "--dir", "/x", "true"]), &caller(Mode::Setuid), &none_open).unwrap();
        assert_eq!((p.seccomp, p.argv0.as_deref()), (Seccomp::Reexec, Some("bwrap")));
        // Not with --disable-userns, nor with an --argv0 of the caller's (which could name
        // ljspawn's own form).
        let r = Request { allow_userns: false, ..bwrap_req(&[SELF_EXE, "true"]) };
        assert_eq!(build(&r, &caller(Mode::Rootless), &none_open).unwrap().seccomp, Seccomp::Default);
        let r = Request { argv0: Some("ljspawn".into()), ..bwrap_req(&[SELF_EXE, "true"]) };
        assert_eq!(build(&r, &caller(Mode::Rootless), &none_open).unwrap().seccomp, Seccomp::AllowUserns);
        assert_eq!(
            build(&req(&[SELF_EXE]), &caller(Mode::Rootless), &none_open).unwrap().seccomp,
            Seccomp::Default
        );
    }

    #[test]
    fn joining_a_user_namespace_is_not_for_setuid() {
        let open = |_| true;
        let r = Request { join_userns: Some(3), ..bwrap_req(&["true"]) };
        let p = build(&r, &caller(Mode::Rootless), &open).unwrap();
        assert_eq!((&p.userns, p.join_userns), (&None, Some(3)));
        assert_eq!(p.clone_flags() & libc::CLONE_NEWUSER as u64, 0);
        assert_eq!(build(&r, &caller(Mode::Setuid), &open), Err(PlanError::JoinInSetuid("--userns")));
        let r = Request { join_userns2: Some(4), ..bwrap_req(&["true"]) };
        assert_eq!(build(&r, &caller(Mode::Setuid), &open), Err(PlanError::JoinInSetuid("--userns2")));
        let r = Request { join_userns: Some(3), userns: true, ..bwrap_req(&["true"]) };
        assert_eq!(build(&r, &caller(Mode::Rootless), &open), Err(PlanError::JoinAndNewUserns));
        // --pidns: the jail's PID namespace is the joined one, or one nested in it.
        let r = Request { join_pidns: Some(5), ..bwrap_req(&["true"]) };
        let p = build(&r, &caller(Mode::Root), &open).unwrap();
        assert!(!p.own_pidns && p.clone_flags() & libc::CLONE_NEWPID as u64 == 0);
        let r = Request { join_pidns: Some(5), unshare_pid: true, ..bwrap_req(&["true"]) };
        let p = build(&r, &caller(Mode::Root), &open).unwrap();
        assert!(p.own_pidns && p.clone_flags() & libc::CLONE_NEWPID as u64 != 0);
        assert!(build(&bwrap_req(&["true"]), &caller(Mode::Root), &open).unwrap().own_pidns);
        assert_eq!(build(&r, &caller(Mode::Setuid), &open), Err(PlanError::JoinInSetuid("--pidns")));
        let r = Request { join_pidns: Some(5), ..bwrap_req(&["true"]) };
        assert_eq!(
            build(&r, &caller(Mode::Rootless), &|fd| fd != 5),
            Err(PlanError::BadFd { what: "--pidns", fd: 5 })
        );
        let r = Request { join_pidns: Some(3), join_userns: Some(3), ..bwrap_req(&["true"]) };
        assert_eq!(
            build(&r, &caller(Mode::Rootless), &open),
            Err(PlanError::FdTwice { fd: 3, first: "--userns", second: "--pidns" })
        );
        // A capability is kept in the joined namespace, as in a new one.
        let r = Request { join_userns: Some(3), cap_add: vec!["net_admin".into()], ..bwrap_req(&["true"]) };
        assert!(build(&r, &caller(Mode::Rootless), &open).is_ok());
    }

    #[test]
    fn the_delegated_cgroup_goes_to_the_jails_root_else_its_user() {
        let mut r = req(&["true"]);
        r.delegate_cgroup = true;
        r.user = Some((5, Some(6)));
        let granted = Grants { limits: Some(Default::default()), ..Default::default() };
        let c = Caller {
            subuids: vec![(100000, 65536)],
            subgids: vec![(100000, 65536)],
            grants: granted,
            ..caller(Mode::Setuid)
        };
        // Setuid with subordinate ids: the jail's root is the first of them.
        let p = build(&r, &c, &none_open).unwrap();
        assert_eq!(p.cgroup_owner(), Some((100000, 100000)));
        // Without any: the jail has no root; its user (5:6) is the caller (1000:1000).
        let c = Caller { subuids: vec![], subgids: vec![], ..c };
        let p = build(&r, &c, &none_open).unwrap();
        assert_eq!(p.cgroup_owner(), Some((1000, 1000)));
        // Root without a user namespace: ljspawn's own ids (None).
        let p = build(&req(&["true"]), &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(p.cgroup_owner(), None);
    }

    #[test]
    fn userns_block_fd_only_with_a_namespace_the_caller_may_map() {
        let r = Request { userns: true, userns_block_fd: Some(3), ..bwrap_req(&["true"]) };
        let open = |_| true;
        assert!(build(&r, &caller(Mode::Rootless), &open).is_ok());
        assert!(build(&r, &caller(Mode::Root), &open).is_ok());
        assert_eq!(build(&r, &caller(Mode::Setuid), &open), Err(PlanError::UsernsBlockInSetuid));
        let r = Request { userns: false, ..r };
        assert_eq!(build(&r, &caller(Mode::Root), &open), Err(PlanError::UsernsBlockWithoutUserns));
    }

    #[test]
    fn mode_detection_uses_ids_only() {
        assert_eq!(Mode::detect(0, 0), Mode::Root);
        assert_eq!(Mode::detect(1000, 1000), Mode::Rootless);
        assert_eq!(Mode::detect(1000, 0), Mode::Setuid);
    }

    #[test]
    fn root_without_userns_has_no_maps_and_rootless_maps_jail_root_to_caller() {
        let p = build(&req(&["true"]), &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(p.userns, None);
        assert_eq!(p.clone_flags() & libc::CLONE_NEWUSER as u64, 0);
        let p = build(&req(&["true"]), &caller(Mode::Rootless), &none_open).unwrap();
        assert_eq!(
            p.userns,
            Some(IdMap {
                uids: vec![IdRange { inside: 0, outside: 1000, count: 1 }],
                gids: vec![IdRange { inside: 0, outside: 1000, count: 1 }],
                setgroups: false,
                by_parent: false,
                helper: false,
            })
        );
        let mut r = req(&["true"]);
        r.user = Some((1234, None));
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert_eq!(p.userns.unwrap().uids[0], IdRange { inside: 1234, outside: 1000, count: 1 });
        assert_eq!((p.uid, p.gid), (1234, 1234));
        r.userns = true;
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(
            p.userns,
            Some(IdMap {
                uids: vec![IdRange { inside: 1234, outside: 0, count: 1 }],
                gids: vec![IdRange { inside: 1234, outside: 0, count: 1 }],
                setgroups: false,
                by_parent: false,
                helper: false,
            })
        );
    }

    #[test]
    fn every_namespace_is_new_and_host_net_shares_only_net() {
        let p = build(&req(&["true"]), &caller(Mode::Rootless), &none_open).unwrap();
        assert_eq!(p.namespace_names(), ["user", "mount", "pid", "uts", "ipc", "cgroup", "net"]);
        let mut r = req(&["true"]);
        r.net = Some("host".into());
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(p.namespace_names(), ["mount", "pid", "uts", "ipc", "cgroup"]);
        r.net = Some("bridge".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadNet("bridge".into())));
    }

    #[test]
    fn bridged_and_macvlan_networks() {
        let mut r = req(&["true"]);
        r.net = Some("bridge:br0".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::NeedsIp("bridge:br0".into())));
        r.ip = Some("10.0.0.2/16".into());
        r.gateway = Some("10.0.0.1".into());
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(
            p.net,
            Net::Bridge {
                bridge: "br0".into(),
                addr: Ipv4Addr::new(10, 0, 0, 2),
                prefix: 16,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1))
            }
        );
        assert!(p.namespace_names().contains(&"net"));
        let refused = |m| Err(PlanError::NetNotAllowed(m, "bridge:br0".into()));
        assert_eq!(PlanError::NetNotAllowed(Mode::Setuid, "x".into()).exit_code(), crate::EXIT_SETUP);
        assert_eq!(build(&r, &caller(Mode::Rootless), &none_open), refused(Mode::Rootless));
        assert_eq!(build(&r, &caller(Mode::Setuid), &none_open), refused(Mode::Setuid));
        let mut granted = caller(Mode::Setuid);
        granted.grants.bridges = vec!["br0".into()];
        assert!(build(&r, &granted, &none_open).is_ok());
        granted.grants = Grants { macvlans: vec!["br0".into()], ..Grants::default() };
        assert_eq!(build(&r, &granted, &none_open), refused(Mode::Setuid));
        let mut rootless = caller(Mode::Rootless);
        rootless.grants.bridges = vec!["br0".into()];
        assert_eq!(build(&r, &rootless, &none_open), refused(Mode::Rootless));
        r.net = Some("macvlan:eth0".into());
        r.ip = Some("192.168.1.9".into());
        r.gateway = None;
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert!(matches!(p.net, Net::Macvlan { prefix: 24, gateway: None, .. }));
        for bad in ["10.0.0.300", "10.0.0.1/33", "10.0.0.1/0", "::1"] {
            r.ip = Some(bad.into());
            assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadIp(bad.into())));
        }
        r.net = Some("macvlan:../x".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadInterface("../x".into())));
        r.net = Some("host".into());
        r.ip = Some("10.0.0.2".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::IpWithoutLink));
    }

    #[test]
    fn root_choice_is_validated() {
        let mut r = req(&["true"]);
        r.layers = vec!["/l".into()];
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::RootAndLayers));
        r.root = None;
        r.upper = Some("/u".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::UpperWorkPair));
        r.work = Some("/w".into());
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(
            p.root,
            RootFs::Overlay {
                layers: vec!["/l".into()],
                idmap: vec![false],
                upper: Some(("/u".into(), "/w".into()))
            }
        );
        r.rw = true;
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::RwWithLayers));
        let mut r = req(&["true"]);
        r.root = None;
        assert_eq!(build(&r, &caller(Mode::Root), &none_open).unwrap().root, RootFs::Tmpfs);
        r.rw = true;
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::RwWithTmpfsRoot));
        // A bind onto / is bwrap's way to give a root; ljspawn's own form says --root.
        for root in [None, Some("/w".into())] {
            let b = MountReq::Bind { src: "/".into(), dest: "//".into(), ro: true, dev: false };
            let r = Request { root, mounts: vec![b], ..req(&["true"]) };
            assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BindOntoRoot));
        }
        let mut r = req(&["true"]);
        r.upper = Some("/u".into());
        r.work = Some("/w".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::UpperWithoutLayers));
        let mut r = req(&["true"]);
        r.root = Some("/a/../b".into());
        assert!(matches!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::DotDot { .. })));
    }

    #[test]
    fn mounts_keep_command_line_order_after_the_fixed_ones() {
        let mut r = req(&["true"]);
        r.mounts = vec![
            MountReq::Tmpfs { dest: "/data".into() },
            MountReq::Bind { src: "/h".into(), dest: "//data//x/".into(), ro: true, dev: false },
        ];
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        let n = p.mounts.len();
        assert_eq!(p.mounts[0], Mount::Proc { dest: "/proc".into() });
        assert_eq!(p.mounts[n - 2], Mount::Tmpfs { dest: "/data".into(), mode: 0o755 });
        assert_eq!(
            p.mounts[n - 1],
            Mount::Bind { src: "/h".into(), dest: "/data/x".into(), ro: true, dev: false }
        );
    }

    #[test]
    fn host_sandbox_form() {
        let mut r = req(&["python3"]);
        r.root = None;
        r.host_usr = true;
        r.mounts = vec![
            MountReq::Dir { dest: "/work//x/".into(), mode: None },
            MountReq::Symlink { target: "../usr/share".into(), dest: "/share".into() },
            MountReq::File { fd: 5, dest: "/etc/passwd".into(), mode: None },
        ];
        assert_eq!(
            build(&r, &caller(Mode::Setuid), &none_open),
            Err(PlanError::BadFd { what: "--file", fd: 5 })
        );
        let p = build(&r, &caller(Mode::Setuid), &|fd| fd == 5).unwrap();
        assert_eq!(p.root, RootFs::Tmpfs);
        let mine: Vec<&Mount> = p.mounts.iter().skip_while(|m| !matches!(m, Mount::Bind { .. })).collect();
        assert_eq!(
            mine,
            [
                &Mount::Bind { src: "/usr".into(), dest: "/usr".into(), ro: true, dev: false },
                &Mount::Symlink { target: "usr/bin".into(), dest: "/bin".into() },
                &Mount::Bind { src: "/lib64".into(), dest: "/lib64".into(), ro: true, dev: false },
                &Mount::Dir { dest: "/work/x".into(), mode: 0o755 },
                &Mount::Symlink { target: "../usr/share".into(), dest: "/share".into() },
                &Mount::File { fd: 5, dest: "/etc/passwd".into(), mode: 0o666 },
            ]
        );
        // The caller's directory is tried first, only without --chdir and only on a tmpfs root.
        assert_eq!((p.cwd_try.as_slice(), p.cwd.as_str()), (&["/home/u".to_string()][..], "/"));
        assert!(!p.pwd_is_cwd);
        r.chdir = Some("/tmp".into());
        assert!(build(&r, &caller(Mode::Root), &|_| true).unwrap().cwd_try.is_empty());
        assert!(build(&req(&["true"]), &caller(Mode::Root), &|_| true).unwrap().cwd_try.is_empty());
        r.mounts = vec![MountReq::Symlink { target: String::new(), dest: "/x".into() }];
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadSymlink(String::new())));
        r.mounts = vec![MountReq::Dir { dest: "/a/../b".into(), mode: None }];
        assert!(matches!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::DotDot { .. })));
    }

    #[test]
    fn destinations_must_be_absolute_without_dot_dot() {
        for bad in ["data", "/a/../../etc", "/a/./b"] {
            let mut r = req(&["true"]);
            r.mounts = vec![MountReq::Tmpfs { dest: bad.into() }];
            assert!(build(&r, &caller(Mode::Root), &none_open).is_err(), "{bad}");
        }
        let mut r = req(&["true"]);
        r.chdir = Some("tmp".into());
        assert!(matches!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::NotAbsolute { .. })));
    }

    #[test]
    fn variables_that_are_not_utf8_pass_unless_named() {
        let mut r = bwrap_req(&["true"]);
        r.env_raw = vec![b"A=\xff".to_vec(), b"B=\xfe".to_vec(), b"PWD=\xfd".to_vec(), b"C\xff=1".to_vec()];
        r.setenv = vec![("A".into(), "x".into())];
        r.unsetenv = vec!["B".into()];
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        assert_eq!(p.env_raw, [b"C\xff=1".to_vec()]);
        assert!(p.env.contains(&("A".into(), "x".into())));
    }

    #[test]
    fn environment_is_the_allow_list_plus_setenv() {
        let mut r = req(&["true"]);
        r.setenv = vec![("FOO".into(), "bar".into()), ("PATH".into(), "/x".into())];
        let mut c = caller(Mode::Rootless);
        c.term = Some("xterm".into());
        let p = build(&r, &c, &none_open).unwrap();
        let names: Vec<&str> = p.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "LANG", "LC_ALL", "SHELL", "HOME", "FOO"]);
        assert_eq!(p.env[0].1, "/x");
        c.tty = true;
        let p = build(&r, &c, &none_open).unwrap();
        assert!(p.env.contains(&("TERM".into(), "xterm".into())));
        r.setenv = vec![("A=B".into(), "x".into())];
        assert_eq!(build(&r, &c, &none_open), Err(PlanError::BadEnvName("A=B".into())));
    }

    #[test]
    fn a_pty_of_its_own_only_with_a_terminal_on_stdin_and_a_dev_of_ljspawns() {
        let mut c = caller(Mode::Rootless);
        let mut r = req(&["true"]);
        assert!(!build(&r, &c, &none_open).unwrap().pty, "no terminal, no pty");
        c.stdin_tty = true;
        let p = build(&r, &c, &none_open).unwrap();
        assert!(p.pty);
        assert!(p.to_string().contains("terminal: a pty of the jail's own devpts"), "{p}");
        r.no_pty = true;
        assert!(!build(&r, &c, &none_open).unwrap().pty, "--no-pty");
        // The bwrap form: only with its own /dev.
        let mut b = req(&["true"]);
        b.bwrap = true;
        b.env_base = Some(Vec::new());
        assert!(!build(&b, &c, &none_open).unwrap().pty, "bwrap form without --dev");
        b.mounts.push(MountReq::Dev { dest: "/dev".into() });
        assert!(build(&b, &c, &none_open).unwrap().pty, "bwrap form with --dev");
    }

    #[test]
    fn capabilities_are_named_and_kept_in_the_jails_own_user_namespace() {
        assert_eq!(cap_number("CAP_NET_ADMIN"), Some(12));
        assert_eq!(cap_number("sys_admin"), Some(21));
        assert_eq!(cap_number("checkpoint_restore"), Some(40));
        assert_eq!(cap_number("cap_bogus"), None);
        let mut r = req(&["true"]);
        r.cap_add = vec!["net_raw".into(), "CAP_NET_RAW".into()];
        assert_eq!(build(&r, &caller(Mode::Root), &none_open).unwrap().caps, vec![13]);
        // Rootless and setuid jails always have their own user namespace: kept there.
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert!(p.userns.is_some() && p.caps == vec![13]);
        assert_eq!(build(&r, &caller(Mode::Setuid), &none_open).unwrap().caps, vec![13]);
        assert_eq!(PlanError::CapsNotAllowed(Mode::Rootless).exit_code(), crate::EXIT_SETUP);
        // The container set by name: the 13 of Docker's default, numbers sorted.
        r.cap_add = vec!["container".into()];
        let caps = build(&r, &caller(Mode::Rootless), &none_open).unwrap().caps;
        assert_eq!(caps, vec![0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 27, 29, 31]);
        r.cap_add = vec!["nope".into()];
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::UnknownCap("nope".into())));
        assert_eq!(PlanError::UnknownCap("nope".into()).exit_code(), crate::EXIT_USAGE);
    }

    #[test]
    fn subids_map_jail_ids_0_to_65535_in_every_mode() {
        let mut r = req(&["true"]);
        r.subids = true;
        r.user = Some((1000, None));
        // Root: the same ids, 0-65535, written by ljspawn.
        let m = build(&r, &caller(Mode::Root), &none_open).unwrap().userns.unwrap();
        assert_eq!(m.uids, vec![IdRange { inside: 0, outside: 0, count: 65536 }]);
        assert_eq!(m.gids, m.uids);
        assert!(m.setgroups && m.by_parent && !m.helper);
        // Rootless: the caller as 0, the ranges from 1 up, by newuidmap/newgidmap.
        let mut c = caller(Mode::Rootless);
        assert_eq!(
            build(&r, &c, &none_open),
            Err(PlanError::NoSubids { uid: 1000, subuids: false, subgids: false })
        );
        assert_eq!(
            PlanError::NoSubids { uid: 1000, subuids: true, subgids: false }.to_string(),
            "--subids: no range for uid 1000 in /etc/subgid (ask an administrator: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)"
        );
        c.subuids = vec![(100000, 65536)];
        c.subgids = vec![(200000, 65536)];
        let p = build(&r, &c, &none_open).unwrap();
        let m = p.userns.unwrap();
        assert_eq!(
            m.uids,
            vec![
                IdRange { inside: 0, outside: 1000, count: 1 },
                IdRange { inside: 1, outside: 100000, count: 65536 }
            ]
        );
        assert_eq!(m.gids[1], IdRange { inside: 1, outside: 200000, count: 65536 });
        assert!(m.setgroups && m.by_parent && m.helper);
        // The program still runs as --user (a subordinate id).
        assert_eq!((p.uid, p.gid), (1000, 1000));
        // Setuid: the same map, written by the privileged parent.
        c.mode = Mode::Setuid;
        let m = build(&r, &c, &none_open).unwrap().userns.unwrap();
        assert_eq!(m.uids[0], IdRange { inside: 0, outside: 1000, count: 1 });
        assert!(m.by_parent && !m.helper);
        // Without --subids, setuid keeps mapping the jail user to the caller.
        r.subids = false;
        let m = build(&r, &c, &none_open).unwrap().userns.unwrap();
        assert_eq!(m.uids[0], IdRange { inside: 1000, outside: 1000, count: 1 });
    }

    #[test]
    fn subids_base_maps_root_jails_onto_a_private_range() {
        let mut r = req(&["true"]);
        r.subids = true;
        r.subids_base = Some(0x80000);
        let p = build(&r, &caller(Mode::Root), &none_open).unwrap();
        let m = p.userns.as_ref().unwrap();
        assert_eq!(m.uids, vec![IdRange { inside: 0, outside: 0x80000, count: 65536 }]);
        assert_eq!(m.gids, m.uids);
        assert!(m.setgroups && m.by_parent && !m.helper);
        assert_eq!(p.subids_base, Some(0x80000));
        // The delegated cgroup (and whatever ljspawn gives the jail's root) goes to BASE.
        assert_eq!(p.cgroup_owner(), Some((0x80000, 0x80000)));
        // No host root in the map: the largest valid base, too.
        r.subids_base = Some(0xfffe_0000);
        let m = build(&r, &caller(Mode::Root), &none_open).unwrap().userns.unwrap();
        assert_eq!(m.uids[0].outside, 0xfffe_0000);
        // Bad bases: 0 (host root's ids), unaligned, past the last valid id.
        for bad in [0, 1, 65535, 65537, 0x8_8000, 0xffff_0000, 1 << 32, u64::MAX - 65535] {
            r.subids_base = Some(bad);
            let e = build(&r, &caller(Mode::Root), &none_open).unwrap_err();
            assert_eq!(e, PlanError::BadSubidsBase(bad));
            assert_eq!(e.exit_code(), crate::EXIT_USAGE);
        }
        // Root only: refused in setuid and rootless mode, whatever the caller's ranges.
        r.subids_base = Some(0x80000);
        for mode in [Mode::Setuid, Mode::Rootless] {
            let mut c = caller(mode);
            c.subuids = vec![(0x80000, 65536)];
            c.subgids = vec![(0x80000, 65536)];
            let e = build(&r, &c, &none_open).unwrap_err();
            assert_eq!(e, PlanError::SubidsBaseNotRoot(mode));
            assert_eq!(e.exit_code(), crate::EXIT_SETUP);
        }
        assert_eq!(
            PlanError::SubidsBaseNotRoot(Mode::Setuid).to_string(),
            "--subids-base is not allowed in setuid mode (root only: it maps host ids of root's choosing; use --subids, which maps your /etc/subuid ranges)"
        );
    }

    #[test]
    fn rlimits_parse_by_name_with_optional_hard_limit() {
        let mut r = req(&["true"]);
        r.rlimits = vec!["nofile=64".into(), "RLIMIT_CORE=0:unlimited".into()];
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert_eq!(
            p.rlimits,
            vec![
                Rlimit { name: "nofile", resource: libc::RLIMIT_NOFILE, soft: 64, hard: 64 },
                Rlimit { name: "core", resource: libc::RLIMIT_CORE, soft: 0, hard: u64::MAX },
            ]
        );
        for bad in ["nofile", "nofiles=1", "nofile=x", "nofile=5:4", "nofile=-1"] {
            r.rlimits = vec![bad.into()];
            assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadRlimit(bad.into())));
        }
    }

    #[test]
    fn userns_failures_say_why_and_how_to_fix() {
        let off = |f: fn(&mut UsernsSysctls)| {
            let mut s = UsernsSysctls {
                unprivileged_userns_clone: Some(1),
                max_user_namespaces: Some(1000),
                apparmor_restrict: Some(0),
            };
            f(&mut s);
            s
        };
        let h = userns_hint(libc::EPERM, Mode::Rootless, &off(|s| s.unprivileged_userns_clone = Some(0)));
        assert!(
            h.contains("kernel.unprivileged_userns_clone = 0") && h.contains("make install-setuid"),
            "{h}"
        );
        let h = userns_hint(libc::EACCES, Mode::Rootless, &off(|s| s.apparmor_restrict = Some(1)));
        assert!(h.contains("AppArmor") && h.contains("make install-setuid"), "{h}");
        let h = userns_hint(libc::ENOSPC, Mode::Rootless, &off(|s| s.max_user_namespaces = Some(0)));
        assert!(h.contains("user.max_user_namespaces = 0"), "{h}");
        let h = userns_hint(libc::ENOSPC, Mode::Rootless, &off(|_| {}));
        assert!(h.contains("limit"), "{h}");
        // Setuid mode is the fix for the unprivileged restrictions: it must not suggest itself,
        // and those restrictions do not apply to it.
        let h = userns_hint(libc::EPERM, Mode::Setuid, &off(|s| s.unprivileged_userns_clone = Some(0)));
        assert!(!h.contains("install-setuid") && h.contains("privileged"), "{h}");
    }

    #[test]
    fn an_init_of_its_own_sysfs_and_a_delegated_cgroup() {
        let mut r = req(&["/sbin/init"]);
        r.as_pid_1 = true;
        r.sysfs = true;
        r.delegate_cgroup = true;
        r.stop_signal = Some(libc::SIGRTMIN() + 3);
        r.net_sysctls_rw = true;
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert!(p.as_pid_1 && p.delegate_cgroup);
        assert_eq!(p.stop_signal, libc::SIGRTMIN() + 3);
        // After the fixed mounts, before the caller's: /sys, then the cgroup over it.
        let sys =
            p.mounts.iter().position(|m| m == &Mount::ProcReadOnly { path: "/proc/sys".into() }).unwrap();
        assert_eq!(p.mounts[sys + 1], Mount::ProcWritable { path: "/proc/sys/net".into() });
        let n = p.mounts.len();
        assert_eq!(
            p.mounts[n - 2..],
            [Mount::Sysfs { dest: "/sys".into() }, Mount::Cgroup2 { dest: "/sys/fs/cgroup".into() }]
        );
        let text = p.to_string();
        for line in [
            "/sys <- sysfs of the jail's network namespace (ro, nosuid, nodev, noexec)",
            "/sys/fs/cgroup <- cgroup2, the jail's own cgroup as / (rw, nosuid, nodev, noexec)",
            "cgroup: a v2 cgroup of the jail's own, delegated to the jail's root",
            "command (as the jail's PID 1): /sbin/init",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert_eq!(
            build(&req(&["true"]), &caller(Mode::Root), &none_open).unwrap().stop_signal,
            libc::SIGTERM
        );
        // Setuid: the cgroup is made by the privileged side, so only with a grant.
        assert_eq!(build(&r, &caller(Mode::Setuid), &none_open), Err(PlanError::DelegateNotGranted));
        let mut c = caller(Mode::Setuid);
        c.grants.limits = Some(conf::MaxLimits { memory: None, pids: None, cpus: None });
        assert!(build(&r, &c, &none_open).is_ok());
        // A sysfs shows its network namespace's devices: the host's only to root.
        r.net = Some("host".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::NetSysctlsHostNet));
        r.net_sysctls_rw = false;
        assert_eq!(
            build(&r, &caller(Mode::Rootless), &none_open),
            Err(PlanError::SysfsHostNet(Mode::Rootless))
        );
        assert!(build(&r, &caller(Mode::Root), &none_open).is_ok());
    }

    #[test]
    fn proc_unmasked_only_without_host_root() {
        let is_cover = |m: &Mount| {
            matches!(m, Mount::ProcReadOnly { .. } | Mount::ProcMask { .. } | Mount::ProcWritable { .. })
        };
        let mut r = req(&["true"]);
        r.proc_unmasked = true;
        r.net_sysctls_rw = true;
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert!(p.mounts.contains(&Mount::Proc { dest: "/proc".into() }));
        assert!(!p.mounts.iter().any(is_cover), "{:?}", p.mounts);
        assert!(p.to_string().contains("/proc <- proc"), "{p}");
        // bwrap's --proc DEST too.
        let b = Request {
            mounts: vec![MountReq::Proc { dest: "/p".into() }],
            proc_unmasked: true,
            ..bwrap_req(&["true"])
        };
        assert!(!build(&b, &caller(Mode::Rootless), &none_open).unwrap().mounts.iter().any(is_cover));
        // Setuid: the caller's own id and granted ranges, as rootless has them.
        let mut c = caller(Mode::Setuid);
        c.subuids = vec![(100000, 65536)];
        c.subgids = vec![(100000, 65536)];
        r.subids = true;
        assert!(!build(&r, &c, &none_open).unwrap().mounts.iter().any(is_cover));
        // A granted range holding host id 0 (a mistaken /etc/subuid) is refused.
        c.subgids = vec![(0, 65536)];
        assert_eq!(build(&r, &c, &none_open), Err(PlanError::ProcUnmaskedHostRoot(Mode::Setuid)));
        // Root: without a user namespace, with --userns (mapped onto uid 0) and with --subids
        // (the identity map): always host root.
        r.subids = false;
        assert_eq!(
            build(&r, &caller(Mode::Root), &none_open),
            Err(PlanError::ProcUnmaskedHostRoot(Mode::Root))
        );
        r.userns = true;
        assert_eq!(
            build(&r, &caller(Mode::Root), &none_open),
            Err(PlanError::ProcUnmaskedHostRoot(Mode::Root))
        );
        r.userns = false;
        r.subids = true;
        let e = build(&r, &caller(Mode::Root), &none_open).unwrap_err();
        assert_eq!(
            (e.clone(), e.exit_code()),
            (PlanError::ProcUnmaskedHostRoot(Mode::Root), crate::EXIT_SETUP)
        );
        assert!(e.to_string().starts_with("--proc-unmasked is not allowed in root mode"), "{e}");
        // Masked otherwise, as before.
        r.proc_unmasked = false;
        assert!(build(&r, &caller(Mode::Root), &none_open).unwrap().mounts.iter().any(is_cover));
    }

    #[test]
    fn cgroup_limits_and_setuid_grants() {
        let mut r = req(&["true"]);
        r.memory = Some("64M".into());
        r.pids = Some(32);
        let p = build(&r, &caller(Mode::Rootless), &none_open).unwrap();
        assert_eq!(p.limits, Limits { memory: Some(64 << 20), pids: Some(32), cpus: None });
        assert_eq!(build(&r, &caller(Mode::Setuid), &none_open), Err(PlanError::LimitsNotGranted));
        let mut c = caller(Mode::Setuid);
        c.grants.limits = Some(conf::MaxLimits { memory: Some(1 << 30), pids: Some(16), cpus: None });
        assert_eq!(build(&r, &c, &none_open), Err(PlanError::LimitAboveGrant("pids", "16".into())));
        r.pids = Some(16);
        assert!(build(&r, &c, &none_open).is_ok());
        r.memory = Some("lots".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadSize("lots".into())));
        r.memory = Some("100".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open).unwrap().limits.memory, Some(100 << 20));
        for small in ["100B", "512K", "1048575B"] {
            r.memory = Some(small.into());
            let e = build(&r, &caller(Mode::Root), &none_open).unwrap_err();
            assert_eq!(e, PlanError::MemoryTooSmall(small.into()));
            assert!(e.to_string().contains("at least 1M"), "{e}");
        }
        r.memory = Some("1M".into());
        assert!(build(&r, &caller(Mode::Root), &none_open).is_ok());
    }

    #[test]
    fn seccomp_modes() {
        let mut r = req(&["true"]);
        assert_eq!(build(&r, &caller(Mode::Rootless), &none_open).unwrap().seccomp, Seccomp::Default);
        r.allow_userns = true;
        assert_eq!(build(&r, &caller(Mode::Rootless), &none_open).unwrap().seccomp, Seccomp::AllowUserns);
        r.seccomp = Some("none".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open).unwrap().seccomp, Seccomp::None);
        assert_eq!(
            build(&r, &caller(Mode::Rootless), &none_open),
            Err(PlanError::SeccompNoneNotAllowed(Mode::Rootless))
        );
        // The container filter: every mode (what it allows beyond the default stays in the
        // jail's own user namespace).
        r.seccomp = Some("container".into());
        for m in [Mode::Root, Mode::Rootless, Mode::Setuid] {
            assert_eq!(build(&r, &caller(m), &none_open).unwrap().seccomp, Seccomp::Container, "{m}");
        }
        assert!(build(&r, &caller(Mode::Rootless), &none_open)
            .unwrap()
            .to_string()
            .contains("seccomp: container filter (all ABIs): new user namespaces, keyrings and bpf allowed, setuid/setgid files allowed"));
        r.seccomp = Some("strict".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadSeccomp("strict".into())));
        r.seccomp = None;
        r.seccomp_fds = vec![9];
        assert_eq!(
            build(&r, &caller(Mode::Root), &none_open),
            Err(PlanError::BadFd { what: "--seccomp-fd", fd: 9 })
        );
    }

    #[test]
    fn setuid_maps_add_subid_ranges_around_the_jail_user() {
        let mut c = caller(Mode::Setuid);
        c.subuids = vec![(100000, 65536)];
        let p = build(&req(&["true"]), &c, &none_open).unwrap();
        let m = p.userns.unwrap();
        assert!(m.by_parent && !m.setgroups);
        assert_eq!(
            m.uids,
            vec![
                IdRange { inside: 0, outside: 1000, count: 1 },
                IdRange { inside: 1, outside: 100000, count: 65536 }
            ]
        );
        assert_eq!(m.gids, vec![IdRange { inside: 0, outside: 1000, count: 1 }]);
        c.subgids = vec![(200000, 10)];
        let mut r = req(&["true"]);
        r.user = Some((5, Some(5)));
        let m = build(&r, &c, &none_open).unwrap().userns.unwrap();
        assert!(m.setgroups);
        assert_eq!(
            m.gids,
            vec![
                IdRange { inside: 5, outside: 1000, count: 1 },
                IdRange { inside: 0, outside: 200000, count: 5 },
                IdRange { inside: 6, outside: 200005, count: 5 },
            ]
        );
        // Ranges that would overflow are cut, never wrapped.
        assert_eq!(
            id_lines(0, 1000, &[(u32::MAX - 1, 10)]),
            vec![IdRange { inside: 0, outside: 1000, count: 1 }]
        );
    }

    #[test]
    fn fds_must_be_open_and_above_stdio() {
        let mut r = req(&["true"]);
        r.pass_fds = vec![1];
        assert_eq!(
            build(&r, &caller(Mode::Root), &none_open),
            Err(PlanError::ReservedFd { what: "--pass-fd", fd: 1 })
        );
        let mut r = req(&["true"]);
        r.pass_fds = vec![7];
        r.seccomp_fds = vec![7];
        assert_eq!(
            build(&r, &caller(Mode::Root), &|_| true).map(|_| ()),
            Err(PlanError::FdTwice { fd: 7, first: "--pass-fd", second: "--seccomp-fd" })
        );
        r.seccomp_fds.clear();
        assert_eq!(
            build(&r, &caller(Mode::Root), &none_open),
            Err(PlanError::BadFd { what: "--pass-fd", fd: 7 })
        );
        assert_eq!(build(&r, &caller(Mode::Root), &|fd| fd == 7).unwrap().pass_fds, vec![7]);
    }

    #[test]
    fn hostnames_are_checked() {
        let mut r = req(&["true"]);
        r.hostname = Some("bad host".into());
        assert!(matches!(build(&r, &caller(Mode::Root), &none_open), Err(PlanError::BadHostname(_))));
        r.hostname = Some("a".repeat(65));
        assert!(build(&r, &caller(Mode::Root), &none_open).is_err());
        r.hostname = Some("build-1.example".into());
        assert_eq!(build(&r, &caller(Mode::Root), &none_open).unwrap().hostname, "build-1.example");
    }

    #[test]
    fn dry_run_lists_every_mount_in_order() {
        let mut r = req(&["sh", "-c", "echo 'hi'"]);
        r.mounts = vec![MountReq::Bind { src: "/src".into(), dest: "/mnt".into(), ro: true, dev: false }];
        let text = build(&r, &caller(Mode::Rootless), &none_open).unwrap().to_string();
        assert!(text.contains("uid map: 0 1000 1"), "{text}");
        let proc_at = text.find("/proc <- proc").unwrap();
        let bind_at = text.find("/mnt <- bind /src (ro on every submount").unwrap();
        assert!(proc_at < bind_at);
        assert!(text.contains("command: sh -c 'echo '\\''hi'\\'''"), "{text}");
    }
}
