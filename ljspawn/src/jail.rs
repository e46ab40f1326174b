//! Inside the jail: the code that runs as PID 1 of the new namespaces.
//!
//! Order (each step fails the whole spawn with one message and exit 125):
//! 1. die with ljspawn (`PR_SET_PDEATHSIG`), then check ljspawn is still there;
//! 2. write the user namespace's maps (rootless, or root with `--userns`);
//! 3. make every mount private, so nothing propagates back to the host;
//! 4. *before pivot_root*, open everything that comes from the host as detached mounts: the
//!    root (a recursive bind of `--root`, or an overlay of the layers), a fresh proc, the host
//!    device nodes, the bind sources. Paths here are the caller's, looked up with its
//!    credentials (rootless: the user namespace maps to the caller);
//! 5. attach the root over `/` and `chroot` into it: from now on no host path is reachable by
//!    name, only through the detached mounts opened in step 4 (and the host's `/`, kept open
//!    for the end of step 5);
//! 6. attach the mounts in plan order; every destination is resolved inside the new root
//!    (`RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` from its descriptor), missing ones are created
//!    one component at a time with `mkdirat`, which never follows a symlink;
//!    then, when fd 0 is a terminal, the jail's own pty (`pty::open_in_jail`): opened from the
//!    `ptmx` of the devpts just mounted, its master sent to ljspawn, its slave kept for the
//!    program; then the end of step 5: `pivot_root` into the new root, detach the old one;
//! 7. hostname, loopback;
//! 8. fork the program ([`program`]), then reap and forward signals until it exits; with
//!    `--as-pid-1`, become the program instead (the same confinement, then exec).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::plan::{IdMap, IdRange, Mount, Net, Plan, RootFs, Seccomp};
use crate::sys::{self, FsContext, WaitStatus};
use crate::{describe, strerror, EXIT_NOEXEC, EXIT_NOTFOUND, EXIT_SETUP};
use crate::{net, seccomp, upper};

/// A failure inside the jail: the exit code and one line for ljspawn to print.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub msg: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

type Result<T> = std::result::Result<T, Failure>;

fn setup_err(what: impl fmt::Display, e: io::Error) -> Failure {
    Failure { code: EXIT_SETUP, msg: format!("{what}: {}", describe(&e)) }
}

trait Ctx<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}
impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| setup_err(what(), e))
    }
}

/// What ljspawn read for the jail from descriptors the caller passed.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The caller's own seccomp programs (`--seccomp-fd`, bwrap's `--add-seccomp-fd`),
    /// installed after the built-in one, in order.
    pub seccomp_extra: Vec<Vec<u8>>,
    /// The content of each `Mount::File` and `Mount::Data` of the plan, in plan order.
    pub files: Vec<Vec<u8>>,
    /// bwrap's `--info-fd`: written once the jail runs, then closed (by ljspawn).
    pub info: Option<OwnedFd>,
    /// bwrap's `--block-fd`: the program reads it (a byte or end-of-file) before exec.
    pub block: Option<OwnedFd>,
    /// bwrap's `--userns-block-fd`: ljspawn reads it before the go byte (never the jail).
    pub userns_block: Option<OwnedFd>,
    /// bwrap's `--userns`: ljspawn joins it before the clone (never the jail).
    pub userns: Option<OwnedFd>,
    /// bwrap's `--userns2`: the jail's init joins it once set up.
    pub userns2: Option<OwnedFd>,
    /// bwrap's `--pidns`: ljspawn joins it before the clone (never the jail).
    pub pidns: Option<OwnedFd>,
}

/// A `--pass-fd` descriptor and what it was (device, inode) when ljspawn started.
pub type PassedFd = (i32, (u64, u64));

/// Descriptors ljspawn hands to the jail.
#[derive(Debug)]
pub struct Handover {
    /// Write end of the status pipe (close-on-exec): a failure is written here as
    /// "CODE\tMESSAGE"; ljspawn sees end-of-file once the program has been executed.
    pub status: OwnedFd,
    /// Write end of the exit pipe (close-on-exec): PID 1 writes the program's exit status
    /// here, one byte, once every process of the jail is gone.
    pub exit: OwnedFd,
    /// Read end of the maps pipe: one byte once ljspawn wrote the maps (setuid mode) or
    /// finished its own part; end-of-file if it failed.
    pub maps: OwnedFd,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// What ljspawn read from the caller's descriptors.
    pub inputs: Inputs,
    /// ljspawn entered the jail's user namespace itself and wrote its maps (see `spawn`).
    pub maps_written: bool,
    /// Make the cgroup namespace after the go byte, once ljspawn moved us into the jail's
    /// cgroup (it was left out of the clone).
    pub cgroupns_late: bool,
    /// ljspawn makes the jail's network namespace in parallel with this setup and sends it
    /// (loopback up) on this socket, to be joined; end of file if it failed.
    pub net_join: Option<OwnedFd>,
    /// The `--idmap-layer` layers, made by the privileged side (one per layer, None for a
    /// plain one; empty without any): detached mounts, idmapped, read-only.
    pub idmapped: Vec<Option<OwnedFd>>,
    /// `--pass-fd` descriptors and what each was (device, inode) when ljspawn started: one
    /// that is something else by now is not passed.
    pub passed: Vec<PassedFd>,
    /// The plan's pty (fd 0 is a terminal): the socket the master of the jail's own pty is
    /// sent back to ljspawn on (see `pty`).
    pub pty: Option<OwnedFd>,
}

/// PID 1 of the jail. Never returns.
pub fn pid1(plan: &Plan, h: Handover, umask: u32) -> ! {
    let code = match setup(plan, &h, umask) {
        // --as-pid-1 (also bwrap's): this process becomes the program; ljspawn watches it
        // through a pidfd (the exit pipe closes at exec), forwarding signals meanwhile. The
        // kernel kills what is left in the PID namespace when it exits.
        Ok((slave, early)) if plan.as_pid_1 => {
            if upper::any_held() {
                let f = Failure {
                    code: EXIT_SETUP,
                    msg: "--as-pid-1: this kernel's tmpfs has no user xattrs, so an overlay's upper is on disk and needs ljspawn's init to remove it".into(),
                };
                upper::remove_held();
                report(h.status.as_fd(), &f);
                sys::exit_now(f.code as i32)
            }
            program(plan, &h, umask, slave.as_ref(), early) as u8
        }
        Ok((slave, early)) => supervise(plan, h, umask, slave, early),
        Err(f) => {
            upper::remove_held();
            report(h.status.as_fd(), &f);
            f.code
        }
    };
    sys::exit_now(code as i32)
}

fn report(status: BorrowedFd<'_>, f: &Failure) {
    let line = format!("{}\t{}", f.code, f.msg);
    // Nothing more can be done if ljspawn is gone: the exit code still tells.
    let _ = sys::write_all(status, line.as_bytes());
}

/// Writes a user namespace's `setgroups`, `gid_map` and `uid_map` under `proc` (`/proc/self`
/// for the jail's own, `/proc/PID` for ljspawn writing the jail's). On failure, which file.
pub(crate) fn write_maps(proc: &str, m: &IdMap) -> std::result::Result<(), (&'static str, io::Error)> {
    let lines =
        |r: &[IdRange]| r.iter().map(|l| format!("{} {} {}\n", l.inside, l.outside, l.count)).collect();
    let files: [(&'static str, String); 3] = [
        ("setgroups", if m.setgroups { "allow" } else { "deny" }.into()),
        ("gid_map", lines(&m.gids)),
        ("uid_map", lines(&m.uids)),
    ];
    // The process's directory is looked up once; each file is opened beneath it.
    let dir =
        sys::openat2(None, proc, libc::O_PATH | libc::O_DIRECTORY, 0, 0).map_err(|e| (files[0].0, e))?;
    for (file, text) in files {
        let f = sys::openat2(
            Some(dir.as_fd()),
            file,
            libc::O_WRONLY,
            0,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| (file, e))?;
        sys::write_all(f.as_fd(), text.as_bytes()).map_err(|e| (file, e))?;
    }
    Ok(())
}

/// Sets the jail up (steps 1-7); returns the slave of the jail's pty, if the plan has one.
/// Returns the program's pty slave, if any, and whether PID 1 took the program's first
/// confinement steps for it (see `confine_early`).
fn setup(plan: &Plan, h: &Handover, umask: u32) -> Result<(Option<OwnedFd>, bool)> {
    sys::set_pdeathsig(libc::SIGKILL).ctx(|| "cannot tie the jail to ljspawn".into())?;
    if sys::pipe_reader_gone(h.status.as_fd()) {
        sys::exit_now(EXIT_SETUP as i32);
    }
    let by_parent = plan.userns.as_ref().is_some_and(|m| m.by_parent);
    let linked = matches!(plan.net, Net::Bridge { .. } | Net::Macvlan { .. });
    // (pasta: ljspawn opens this namespace's files, so the wait comes before set_dumpable.)
    let pasta = plan.net == Net::Pasta;
    let external_maps = plan.userns_block_fd.is_some();
    if by_parent
        || linked
        || pasta
        || external_maps
        || plan.json_status.is_some()
        || !plan.limits.is_empty()
        || plan.delegate_cgroup
    {
        let mut b = [0u8; 1];
        if !matches!(sys::read(h.maps.as_fd(), &mut b), Ok(1)) {
            sys::exit_now(EXIT_SETUP as i32);
        }
    }
    if h.cgroupns_late {
        sys::unshare(libc::CLONE_NEWCGROUP).ctx(|| "cannot make the jail's cgroup namespace".into())?;
    }
    match &plan.userns {
        Some(m) if m.by_parent => {
            // Setuid mode: this process still has host root's euid (and no capability outside
            // its new user namespace). It touched nothing until ljspawn wrote the maps above;
            // it becomes the caller inside the namespace before any path is looked up.
            // (The ids the caller has in the jail: the first line of each map. The program's
            // own ids are set when it starts.)
            let (u, g) = (m.uids[0].inside, m.gids[0].inside);
            sys::setresgid(g).ctx(|| "cannot become the caller's group in the jail".into())?;
            sys::setresuid(u).ctx(|| "cannot become the caller in the jail".into())?;
            if sys::getresids() != (u, u, u, g, g, g) {
                return Err(Failure { code: EXIT_SETUP, msg: "the jail did not become the caller".into() });
            }
            // A credential change clears the parent-death signal: set it again, then check
            // that ljspawn did not die in between.
            sys::set_pdeathsig(libc::SIGKILL).ctx(|| "cannot tie the jail to ljspawn".into())?;
            if sys::pipe_reader_gone(h.status.as_fd()) {
                sys::exit_now(EXIT_SETUP as i32);
            }
        }
        Some(_) if h.maps_written => {}
        // bwrap's --userns-block-fd: the caller wrote the maps before ljspawn sent the go byte.
        Some(_) if external_maps => {}
        Some(m) => {
            write_maps("/proc/self", m).map_err(|(file, e)| setup_err(format!("cannot write {file}"), e))?
        }
        None => {}
    }
    if linked {
        // Still the host's /proc, but /proc/sys/net is this (new) network namespace's.
        // Every group where the ids are the host's; else the jail's own group (the kernel
        // accepts only groups mapped in the jail's user namespace).
        let range = if plan.userns.is_some() { format!("{0} {0}", plan.gid) } else { "0 2147483647".into() };
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", range)
            .ctx(|| "cannot allow ping in the jail".into())?;
    }
    // PID 1 holds capabilities in the jail's namespaces: keep the program from ptracing it.
    // (After the maps: an undumpable process cannot write its own /proc/self files.)
    sys::set_dumpable(false).ctx(|| "cannot make the jail's init undumpable".into())?;
    sys::make_rprivate_root().ctx(|| "cannot make mounts private".into())?;

    // Step 4: everything from the host, while its paths still resolve.
    let root = open_root(&plan.root, &h.idmapped)?;
    let proc_mnt = new_proc()?;
    // Per mount: what was opened from the host, and the content of a File or Data mount (one
    // of `inputs.files` each, in plan order: checked to be as many).
    let mut host: Vec<(Option<OwnedFd>, Option<&[u8]>)> = Vec::with_capacity(plan.mounts.len());
    let mut devices = None;
    let with_content = plan.mounts.iter().filter(|m| matches!(m, Mount::File { .. } | Mount::Data { .. }));
    if with_content.count() != h.inputs.files.len() {
        return Err(Failure {
            code: EXIT_SETUP,
            msg: "the file contents do not match the plan's files".into(),
        });
    }
    let mut contents = h.inputs.files.iter();
    // The host's `/`, opened once for every Data mount (see `data_file`).
    let mut host_slash: Option<OwnedFd> = None;
    let mut masked_src = false;
    for m in &plan.mounts {
        let content = match m {
            Mount::File { .. } | Mount::Data { .. } => contents.next().map(Vec::as_slice),
            _ => None,
        };
        let opened = match m {
            Mount::Data { dest, ro, mode, .. } => {
                let data = content
                    .ok_or_else(|| Failure { code: EXIT_SETUP, msg: format!("no content for {dest}") })?;
                let slash = match &host_slash {
                    Some(s) => s,
                    None => host_slash.insert(
                        sys::openat2(None, "/", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
                            .ctx(|| "cannot open the host's /".into())?,
                    ),
                };
                Some(data_file(slash, data, *mode, *ro, dest)?)
            }
            Mount::Bind { src, ro, dev, .. } => Some(bind_source(&src.display().to_string(), *ro, *dev)?),
            // bwrap's --bind-try: a source that does not exist is skipped, any other error is one.
            Mount::BindTry { src, ro, dev, .. } => match bind_source(&src.display().to_string(), *ro, *dev) {
                Ok(fd) => Some(fd),
                Err(_)
                    if sys::openat2(None, &src.display().to_string(), libc::O_PATH, 0, 0)
                        .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT)) =>
                {
                    None
                }
                Err(f) => return Err(f),
            },
            Mount::Dev { .. } => {
                devices = Some(host_devices(plan.dev_console && !plan.pty)?);
                None
            }
            // One bind of /dev/null serves every mask: each further mask is a clone of the first,
            // made once it is attached (its restrictions come with it).
            Mount::ProcMask { .. } if !masked_src => {
                masked_src = true;
                Some(masking_null()?)
            }
            Mount::Overlay { srcs, upper, tmp, .. } => {
                let names: Vec<String> = srcs.iter().map(|s| s.display().to_string()).collect();
                let up = match (upper, tmp) {
                    (Some(u), _) => Upper::Kept(u),
                    (None, true) => Upper::Tmp,
                    (None, false) => Upper::ReadOnly,
                };
                Some(overlay(&names, &names, up, "--overlay-src")?)
            }
            // Made while the host's sysfs is still visible in this mount namespace (the kernel
            // lets a user namespace mount one only then), in the jail's network namespace.
            Mount::Sysfs { dest } => Some(new_fs("sysfs", dest, sys::MOUNT_ATTR_RDONLY)?),
            // The jail's cgroup namespace is made by now: its cgroup is this mount's root.
            Mount::Cgroup2 { dest } => Some(new_fs("cgroup2", dest, 0)?),
            Mount::BindFd { fd, ro, .. } => {
                // A clone of a mount of another namespace cannot be made from the descriptor
                // itself: its path is bound instead (as bwrap does), and what was bound must be
                // what the descriptor is open on. Inherited from ljspawn, which keeps its own
                // copy: this process owns its copy.
                let inherited = sys::take_inherited_fd(*fd).ctx(|| format!("cannot use --bind-fd {fd}"))?;
                let path = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                    .ctx(|| format!("cannot use --bind-fd {fd}"))?
                    .display()
                    .to_string();
                let mnt = bind_source(&path, *ro, false)?;
                let (a, b) = (sys::fstat(mnt.as_fd()), sys::fstat(inherited.as_fd()));
                match (a, b) {
                    (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) => Some(mnt),
                    _ => {
                        return Err(Failure {
                            code: EXIT_SETUP,
                            msg: format!(
                                "--bind-fd {fd}: {path} is no longer what the descriptor is open on"
                            ),
                        })
                    }
                }
            }
            _ => None,
        };
        host.push((opened, content));
    }
    drop(host_slash);

    // Step 5: the root attached over the host's `/`, and this process's root directory (not
    // yet the namespace's root mount: see below).
    let slash = sys::openat2(None, "/", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .ctx(|| "cannot open the host's /".into())?;
    sys::move_mount(root.as_fd(), slash.as_fd()).ctx(|| "cannot attach the jail's root".into())?;
    // (A root caller without CAP_SYS_CHROOT in its bounding set: pivot_root at once instead,
    // as before, which asks only CAP_SYS_ADMIN.)
    let slash = match sys::chroot_into(root.as_fd()) {
        Ok(()) => Some(slash),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            drop(slash);
            sys::fchdir(root.as_fd()).ctx(|| "cannot enter the jail's root".into())?;
            sys::pivot_root_cwd().ctx(|| "pivot_root failed".into())?;
            None
        }
        Err(e) => return Err(setup_err("cannot enter the jail's root", e)),
    };

    // Step 6. ljspawn's own mount points (proc, /dev, tmpfs) never follow a symlink; the
    // read-only parts of proc are found in the proc mount itself, wherever it is attached.
    let mut proc_mnt = Some(proc_mnt);
    let mut proc_at: Option<(OwnedFd, &str)> = None;
    // The devpts of the first /dev (where the jail's pty comes from) and that /dev itself.
    let mut pts: Option<(OwnedFd, OwnedFd)> = None;
    let mut mask = Mask::None;
    for (m, (src, content)) in plan.mounts.iter().zip(host) {
        match m {
            Mount::Proc { dest } => {
                let mnt = proc_mnt
                    .take()
                    .ok_or_else(|| Failure { code: EXIT_SETUP, msg: "proc mounted twice".into() })?;
                attach(&root, mnt.as_fd(), dest, Kind::Dir, Own::Yes)?;
                proc_at = Some((mnt, dest));
            }
            Mount::ProcReadOnly { path } => {
                let (mnt, dest) = proc_at.as_ref().ok_or_else(|| Failure {
                    code: EXIT_SETUP,
                    msg: format!("{path}: proc is not mounted"),
                })?;
                proc_rebind(mnt, dest, path, true)?
            }
            Mount::ProcWritable { path } => {
                let (mnt, dest) = proc_at.as_ref().ok_or_else(|| Failure {
                    code: EXIT_SETUP,
                    msg: format!("{path}: proc is not mounted"),
                })?;
                proc_rebind(mnt, dest, path, false)?
            }
            Mount::ProcMask { path } => {
                let (mnt, dest) = proc_at.as_ref().ok_or_else(|| Failure {
                    code: EXIT_SETUP,
                    msg: format!("{path}: proc is not mounted"),
                })?;
                if let Some(null) = src {
                    mask = Mask::Detached(null);
                }
                proc_mask(mnt, dest, path, &mut mask)?
            }
            Mount::Dev { dest } => {
                let devs = devices
                    .take()
                    .ok_or_else(|| Failure { code: EXIT_SETUP, msg: "/dev set up twice".into() })?;
                let p = populate_dev(&root, devs, dest, plan.dev_console)?;
                pts.get_or_insert(p);
            }
            Mount::TmpfsSized { dest, mode, size } => {
                let fc = FsContext::open("tmpfs").ctx(|| format!("cannot make a tmpfs for {dest}"))?;
                fc.set_string("mode", &format!("{mode:o}"))
                    .ctx(|| format!("cannot make a tmpfs for {dest}"))?;
                fc.set_string("size", &size.to_string())
                    .ctx(|| format!("cannot give {dest} the size {size}"))?;
                let t = fc
                    .mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV)
                    .ctx(|| format!("cannot make a tmpfs for {dest}"))?;
                attach(&root, t.as_fd(), dest, Kind::Dir, Own::Yes)?;
            }
            Mount::RemountRo { dest } => {
                let fd = sys::openat2(
                    Some(root.as_fd()),
                    dest.trim_start_matches('/'),
                    libc::O_PATH,
                    0,
                    Own::No.resolve(),
                )
                .ctx(|| format!("cannot remount {dest} read-only"))?;
                sys::mount_setattr(fd.as_fd(), false, sys::MOUNT_ATTR_RDONLY, 0)
                    .ctx(|| format!("cannot remount {dest} read-only"))?;
            }
            Mount::BindFd { dest, fd, .. } => {
                let src =
                    src.ok_or_else(|| Failure { code: EXIT_SETUP, msg: "bind source missing".into() })?;
                let st = sys::fstat(src.as_fd()).ctx(|| format!("cannot stat fd {fd}"))?;
                let kind = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { Kind::Dir } else { Kind::File };
                attach(&root, src.as_fd(), dest, kind, Own::No)?;
            }
            Mount::Data { dest, .. } => {
                // Made before pivot_root (see `data_file`); its content was used there.
                let mnt =
                    src.ok_or_else(|| Failure { code: EXIT_SETUP, msg: format!("no file for {dest}") })?;
                attach(&root, mnt.as_fd(), dest, Kind::File, Own::No)?;
            }
            Mount::Overlay { dest, .. } => {
                let src = src.ok_or_else(|| Failure { code: EXIT_SETUP, msg: "overlay missing".into() })?;
                attach(&root, src.as_fd(), dest, Kind::Dir, Own::No)?;
            }
            Mount::Mqueue { dest } => {
                let m = new_fs("mqueue", dest, 0)?;
                attach(&root, m.as_fd(), dest, Kind::Dir, Own::Yes)?;
            }
            Mount::Chmod { dest, mode } => {
                let proc = match (&proc_at, &proc_mnt) {
                    (Some((p, _)), _) | (None, Some(p)) => p.as_fd(),
                    (None, None) => {
                        return Err(Failure { code: EXIT_SETUP, msg: "proc is not mounted".into() })
                    }
                };
                chmod_in_root(&root, proc, dest, *mode)?
            }
            Mount::LockFile { dest } => {
                let f = sys::openat2(
                    Some(root.as_fd()),
                    dest.trim_start_matches('/'),
                    libc::O_RDONLY,
                    0,
                    Own::No.resolve(),
                )
                .ctx(|| format!("cannot open --lock-file {dest}"))?;
                sys::read_lock(f.as_fd()).ctx(|| format!("cannot lock {dest}"))?;
                // Held by PID 1 (close-on-exec) until the jail ends.
                std::mem::forget(f);
            }
            Mount::BindTry { src: path, dest, .. } => {
                if let Some(src) = src {
                    let st = sys::fstat(src.as_fd()).ctx(|| format!("cannot stat {}", path.display()))?;
                    let kind =
                        if st.st_mode & libc::S_IFMT == libc::S_IFDIR { Kind::Dir } else { Kind::File };
                    attach(&root, src.as_fd(), dest, kind, Own::No)?;
                }
            }
            Mount::Sysfs { dest } | Mount::Cgroup2 { dest } => {
                let mnt =
                    src.ok_or_else(|| Failure { code: EXIT_SETUP, msg: format!("no mount for {dest}") })?;
                attach(&root, mnt.as_fd(), dest, Kind::Dir, Own::Yes)?;
            }
            Mount::Tmpfs { dest, mode } => {
                let t = tmpfs(*mode, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV)
                    .ctx(|| format!("cannot make a tmpfs for {dest}"))?;
                attach(&root, t.as_fd(), dest, Kind::Dir, Own::Yes)?;
            }
            Mount::Symlink { target, dest } => make_symlink(&root, target, dest)?,
            Mount::Dir { dest, mode } => {
                make_dir(&root, dest, *mode, if plan.exact_modes { 0 } else { umask })?
            }
            Mount::File { dest, mode, .. } => {
                let data = content
                    .ok_or_else(|| Failure { code: EXIT_SETUP, msg: format!("no content for {dest}") })?;
                make_file(&root, dest, *mode & !if plan.exact_modes { 0 } else { umask }, data)?
            }
            Mount::Bind { src: path, dest, .. } => {
                let src =
                    src.ok_or_else(|| Failure { code: EXIT_SETUP, msg: "bind source missing".into() })?;
                let st = sys::fstat(src.as_fd()).ctx(|| format!("cannot stat {}", path.display()))?;
                let kind = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { Kind::Dir } else { Kind::File };
                attach(&root, src.as_fd(), dest, kind, Own::No)?;
            }
        }
    }
    drop((proc_at, mask));
    // The jail's pty, from its own devpts: the master to ljspawn, the slave for the program.
    let slave = match (&h.pty, pts) {
        (Some(sock), Some((pts, dev))) => {
            let (master, slave) = crate::pty::open_in_jail(pts.as_fd(), plan.uid, plan.gid)
                .map_err(|msg| Failure { code: EXIT_SETUP, msg })?;
            sys::send_fd(sock.as_fd(), master.as_fd())
                .ctx(|| "cannot hand the jail's pty to ljspawn".into())?;
            // bwrap's /dev/console is the terminal on stdout: here, the jail's own.
            if plan.dev_console && sys::isatty(1) {
                pty_console(&dev, slave.as_fd())?;
            }
            Some(slave)
        }
        _ => None,
    };

    // Step 5, its end: `pivot_root` into the jail's root, the host's tree detached. Only now,
    // after step 6: the lazy unmount waits for an RCU grace period, which a CPU busy in the
    // kernel (ljspawn making the jail's network namespace, about 0.3 ms) ends only when it is
    // done; step 6 ran meanwhile instead of after. (pivot_root needs the host's `/` as this
    // process's root, back for that moment only.)
    if let Some(slash) = slash {
        sys::chroot_into(slash.as_fd()).ctx(|| "cannot return to the host's /".into())?;
        drop(slash);
        sys::fchdir(root.as_fd()).ctx(|| "cannot enter the jail's root".into())?;
        sys::pivot_root_cwd().ctx(|| "pivot_root failed".into())?;
    }
    drop(root);

    // Step 7.
    sys::sethostname(&plan.hostname).ctx(|| "cannot set the host name".into())?;
    if let Some(ns) = &h.inputs.userns2 {
        // bwrap's --userns2: the rest (network, the program) in that user namespace.
        sys::setns(ns.as_fd(), libc::CLONE_NEWUSER)
            .ctx(|| "cannot join the --userns2 user namespace".into())?;
    }
    // Parallel network: ljspawn is still making the jail's network namespace (which takes
    // longer than the mounts above): PID 1 takes the program's first steps meanwhile.
    let early = h.net_join.is_some() && confine_early(plan, h)?;
    if let Some(sock) = &h.net_join {
        let Ok(Some(netns)) = sys::recv_fd(sock.as_fd()) else { sys::exit_now(EXIT_SETUP as i32) };
        sys::setns(netns.as_fd(), libc::CLONE_NEWNET)
            .ctx(|| "cannot join the jail's network namespace".into())?;
    } else if plan.net != Net::Host {
        sys::loopback_up().ctx(|| "cannot bring up the loopback interface".into())?;
    }
    if let Net::Bridge { addr, prefix, gateway, .. } | Net::Macvlan { addr, prefix, gateway, .. } = &plan.net
    {
        // ljspawn created eth0 in this namespace before sending the go byte.
        let idx = sys::ifindex("eth0").ctx(|| "the jail has no eth0".into())?;
        // (Prefix 0: `--ip dhcp`, the jail's own client gives it its address.)
        if *prefix != 0 {
            net::request(&net::addr_msg(idx, *addr, *prefix))
                .ctx(|| format!("cannot give eth0 the address {addr}/{prefix}"))?;
        }
        net::request(&net::link_up_msg(idx)).ctx(|| "cannot bring eth0 up".into())?;
        if let Some(gw) = gateway {
            net::request(&net::default_route_msg(idx, *gw))
                .ctx(|| format!("cannot add the default route via {gw}"))?;
        }
    }
    Ok((slave, early))
}

/// The program's confinement steps PID 1 can take for it while it waits for ljspawn (the
/// program inherits all three): a new session keyring, the devices reopened (root mode), and
/// the built-in seccomp filter (the caller's own filters still come last, in the program,
/// after the privileges are dropped). The filter confines PID 1 too from here on: what it does
/// afterwards (join the network namespace, start and reap the program, forward signals,
/// report) every built-in filter allows. Not taken in setuid mode (PID 1 has become the caller
/// there, and without no_new_privs the kernel takes a filter only from CAP_SYS_ADMIN), without
/// a built-in filter, or when PID 1 must still remove an overlay's on-disk upper (a filter
/// could refuse that). Returns whether they were taken.
fn confine_early(plan: &Plan, h: &Handover) -> Result<bool> {
    let Some(bpf) = builtin_filter(plan) else { return Ok(false) };
    if plan.mode == crate::plan::Mode::Setuid || upper::any_held() {
        return Ok(false);
    }
    sys::join_session_keyring().ctx(|| "cannot join a new session keyring".into())?;
    if reopens_devices(plan) {
        // PID 1's fds 0-2, and the -O/-E files that become the program's 1 and 2 later
        // (the filter refuses openat2 from here on).
        let outputs = [&h.stdout, &h.stderr].into_iter().flatten().map(|f| f.as_raw_fd());
        reopen_devices(plan, (0..3).chain(outputs))?;
    }
    sys::seccomp_install(bpf).ctx(|| "cannot install the seccomp filter".into())?;
    Ok(true)
}

/// The built-in seccomp filter the plan asks for, if any.
fn builtin_filter(plan: &Plan) -> Option<&'static [u8]> {
    match plan.seccomp {
        Seccomp::Default => Some(seccomp::builtin(false, plan.allow_setuid_files)),
        Seccomp::AllowUserns => Some(seccomp::builtin(true, plan.allow_setuid_files)),
        Seccomp::Container => Some(seccomp::CONTAINER),
        Seccomp::None | Seccomp::Reexec => None,
    }
}

/// Root mode with ljspawn's /dev: fds 0-2 that are host devices are opened again from it
/// (see `reopen_devices`). (The bwrap form without `--dev /dev` has no /dev of ljspawn's.)
fn reopens_devices(plan: &Plan) -> bool {
    plan.mode == crate::plan::Mode::Root
        && plan.mounts.iter().any(|m| matches!(m, Mount::Dev { dest } if dest == "/dev"))
}

fn open_root(root: &RootFs, idmapped: &[Option<OwnedFd>]) -> Result<OwnedFd> {
    match root {
        RootFs::Tmpfs => tmpfs(0o755, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV)
            .ctx(|| "cannot make the tmpfs for the jail's root".into()),
        RootFs::Dir { path, writable } => {
            let p = path.display().to_string();
            let mut attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
            if !writable {
                attrs |= sys::MOUNT_ATTR_RDONLY;
            }
            // The copy is restricted as it is made (nothing is attached before the check).
            let fd = sys::open_tree_attr(None, &p, sys::OPEN_TREE_CLONE | sys::AT_RECURSIVE, attrs, 0)
                .ctx(|| format!("cannot use --root {p}"))?;
            let st = sys::fstat(fd.as_fd()).ctx(|| format!("cannot stat --root {p}"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(Failure { code: EXIT_SETUP, msg: format!("--root {p}: not a directory") });
            }
            Ok(fd)
        }
        RootFs::Overlay { layers, upper, .. } => {
            // Idmapped layers are detached mounts of a namespace the jail does not own, which
            // overlayfs refuses as lowers: they are attached first, under a scratch tmpfs on
            // this namespace's `/`, and detached again once the overlay holds its own copies.
            let scratch =
                if idmapped.iter().any(Option::is_some) { Some(attach_idmapped(idmapped)?) } else { None };
            let names: Vec<String> = layers
                .iter()
                .enumerate()
                .map(|(i, l)| match (&scratch, idmapped.get(i).and_then(Option::as_ref)) {
                    (Some(s), Some(_)) => format!("/proc/self/fd/{}/{i}", s.as_raw_fd()),
                    _ => l.display().to_string(),
                })
                .collect();
            let shown: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
            let up = match upper {
                Some(u) => Upper::Kept(u),
                None => Upper::Tmp,
            };
            let fd = overlay(&names, &shown, up, "--layer");
            if let Some(s) = scratch {
                sys::umount_detach(&format!("/proc/self/fd/{}", s.as_raw_fd()))
                    .ctx(|| "cannot detach the idmapped layers' scratch mount".into())?;
            }
            fd
        }
    }
}

/// Attaches each idmapped layer `i` at `i` in a fresh tmpfs attached over this (private)
/// mount namespace's `/`; returns the tmpfs.
fn attach_idmapped(idmapped: &[Option<OwnedFd>]) -> Result<OwnedFd> {
    let scratch = tmpfs(0o700, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC)
        .ctx(|| "cannot make a tmpfs for the idmapped layers".into())?;
    let slash = sys::openat2(None, "/", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .ctx(|| "cannot open the host's /".into())?;
    sys::move_mount(scratch.as_fd(), slash.as_fd())
        .ctx(|| "cannot attach the idmapped layers' tmpfs".into())?;
    for (i, fd) in idmapped.iter().enumerate() {
        let Some(fd) = fd else { continue };
        let name = i.to_string();
        sys::mkdirat(scratch.as_fd(), &name, 0o700)
            .ctx(|| "cannot make an idmapped layer's mount point".into())?;
        let at = sys::openat2(
            Some(scratch.as_fd()),
            &name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )
        .ctx(|| "cannot open an idmapped layer's mount point".into())?;
        sys::move_mount(fd.as_fd(), at.as_fd()).ctx(|| "cannot attach an idmapped layer".into())?;
    }
    Ok(scratch)
}

/// Where an overlay's writes go.
#[derive(Clone, Copy)]
enum Upper<'a> {
    /// (upper, work) directories of the caller's.
    Kept(&'a (std::path::PathBuf, std::path::PathBuf)),
    /// A tmpfs of the overlay's own, gone with the jail (on disk where tmpfs lacks user xattrs).
    Tmp,
    /// None: a read-only overlay (at least two layers).
    ReadOnly,
}

/// An overlay (the root, or bwrap's `--overlay` and friends): `layers` (bottom first) as
/// overlayfs resolves them, `shown` as the caller gave them and `opt` the option that named
/// them (for messages).
fn overlay(layers: &[String], shown: &[String], upper: Upper<'_>, opt: &str) -> Result<OwnedFd> {
    let open = || FsContext::open("overlay").ctx(|| "cannot use overlayfs".into());
    let mut fc = open()?;
    let fail = |fc: &FsContext, what: String, e: io::Error| match fc.last_message() {
        Some(m) => setup_err(format!("{what} ({m})"), e),
        None => setup_err(what, e),
    };
    // `lowerdir+` (Linux 6.8) takes one layer per call with no length limit or escaping; the
    // first call added is the top layer. Older kernels get the classic colon-separated list.
    // Before 6.5 overlayfs has no fs_context of its own: the kernel's legacy adapter accepts
    // every key (and overlayfs refuses `lowerdir+` only at mount). It alone accepts an unknown
    // key: then a fresh context takes the list.
    let top_first: Vec<&String> = layers.iter().rev().collect();
    let shown_top_first: Vec<&String> = shown.iter().rev().collect();
    let mut held: Vec<OwnedFd> = Vec::new();
    let by_fd = |p: &str| sys::openat2(None, p, libc::O_PATH | libc::O_DIRECTORY, 0, 0);
    let mut plus = fc.set_string("lowerdir+", top_first[0]);
    if plus.is_ok() {
        if fc.set_flag("ljspawn-probe-legacy-options").is_ok() {
            fc = open()?;
            plus = Err(io::Error::from_raw_os_error(libc::EINVAL));
        } else {
            // The refusal's message, which is not about what follows.
            let _ = fc.last_message();
        }
    }
    match plus {
        Ok(()) => {
            for (l, s) in top_first[1..].iter().zip(&shown_top_first[1..]) {
                fc.set_string("lowerdir+", l).map_err(|e| fail(&fc, format!("cannot use {opt} {s}"), e))?;
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // The refusal's message, if any, is not about what follows.
            let _ = fc.last_message();
            // Each layer as `/proc/self/fd/N` of a directory opened here: nothing to escape
            // (the legacy adapter refuses any comma, escaped or not), and short (the whole
            // list must fit one page).
            for (l, s) in top_first.iter().zip(&shown_top_first) {
                held.push(by_fd(l).ctx(|| format!("cannot use {opt} {s}"))?);
            }
            let list: Vec<String> =
                held.iter().map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd())).collect();
            fc.set_string("lowerdir", &list.join(":"))
                .map_err(|e| fail(&fc, format!("cannot use the {opt} directories"), e))?;
        }
        Err(e) => return Err(fail(&fc, format!("cannot use {opt} {}", shown_top_first[0]), e)),
    }
    // An ephemeral upper lives on a tmpfs that only this mount references: it goes away with
    // the jail's mount namespace. Where tmpfs has no user xattrs (Linux < 6.6), on disk.
    let scratch;
    let mut disk = None;
    let (up, work) = match upper {
        Upper::ReadOnly => {
            fc.set_flag("userxattr").map_err(|e| fail(&fc, "overlayfs has no userxattr option".into(), e))?;
            let root = fc
                .mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_RDONLY)
                .map_err(|e| fail(&fc, "cannot mount the read-only overlay".into(), e))?;
            return Ok(root);
        }
        // By descriptor, as for the legacy lower list: overlayfs unescapes `upperdir` and
        // `workdir` (a `\` in a name would be taken as an escape).
        Upper::Kept((u, w)) => {
            let (u, w) = (u.display().to_string(), w.display().to_string());
            let uf = by_fd(&u).ctx(|| format!("cannot use --upper {u}"))?;
            let wf = by_fd(&w).ctx(|| format!("cannot use --work {w}"))?;
            let paths =
                (format!("/proc/self/fd/{}", uf.as_raw_fd()), format!("/proc/self/fd/{}", wf.as_raw_fd()));
            held.extend([uf, wf]);
            paths
        }
        Upper::Tmp => {
            scratch = tmpfs(0o755, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV)
                .ctx(|| "cannot make the tmpfs for the overlay's upper layer".into())?;
            for d in ["upper", "work"] {
                sys::mkdirat(scratch.as_fd(), d, 0o755)
                    .ctx(|| format!("cannot make the overlay's {d} dir"))?;
            }
            let work = sys::openat2(Some(scratch.as_fd()), "work", libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)
                .ctx(|| "cannot open the overlay's work dir".into())?;
            if upper::has_user_xattrs(work.as_fd()).ctx(|| "cannot probe tmpfs for user xattrs".into())? {
                let base = format!("/proc/self/fd/{}", scratch.as_raw_fd());
                (format!("{base}/upper"), format!("{base}/work"))
            } else {
                let d = upper::DiskUpper::make().ctx(|| {
                    format!(
                        "this kernel's tmpfs has no user xattrs (Linux < 6.6), and the overlay's upper layer cannot be made in {} instead",
                        upper::DIR
                    )
                })?;
                let paths = d.paths();
                disk = Some(d);
                paths
            }
        }
    };
    fc.set_string("upperdir", &up).map_err(|e| fail(&fc, format!("cannot use the upper dir {up}"), e))?;
    fc.set_string("workdir", &work).map_err(|e| fail(&fc, format!("cannot use the work dir {work}"), e))?;
    fc.set_flag("userxattr").map_err(|e| fail(&fc, "overlayfs has no userxattr option".into(), e))?;
    let root = fc
        .mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV)
        .map_err(|e| fail(&fc, "cannot mount the overlay".into(), e))?;
    if let Some(d) = disk {
        d.hold();
    }
    Ok(root)
}

/// bwrap's `--bind-data`: a file of its own holding `data`, `mode`, as a detached bind to
/// attach at `dest`. Made before pivot_root: its tmpfs is attached over this (private) mount
/// namespace's `/` while the file is cloned (a kernel before 6.15 clones no mount of a detached
/// tree), then detached again. `slash` is the host's `/` (this mount namespace's root).
fn data_file(slash: &OwnedFd, data: &[u8], mode: u32, ro: bool, dest: &str) -> Result<OwnedFd> {
    let t = tmpfs(0o700, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC)
        .ctx(|| format!("cannot make a tmpfs for {dest}"))?;
    let f = sys::openat2(
        Some(t.as_fd()),
        "data",
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        mode,
        sys::RESOLVE_BENEATH,
    )
    .ctx(|| format!("cannot create the file for {dest}"))?;
    sys::write_all(f.as_fd(), data).ctx(|| format!("cannot write the file for {dest}"))?;
    drop(f);
    sys::move_mount(t.as_fd(), slash.as_fd()).ctx(|| format!("cannot attach the tmpfs for {dest}"))?;
    let p = sys::openat2(Some(t.as_fd()), "data", libc::O_PATH, 0, sys::RESOLVE_BENEATH)
        .ctx(|| format!("cannot open the file for {dest}"));
    let mnt = p.and_then(|p| bind_fd(p, dest, ro, false));
    sys::umount_detach(&format!("/proc/self/fd/{}", t.as_raw_fd()))
        .ctx(|| format!("cannot detach the tmpfs for {dest}"))?;
    mnt
}

fn tmpfs(mode: u32, attrs: u64) -> io::Result<OwnedFd> {
    let fc = FsContext::open("tmpfs")?;
    fc.set_string("mode", &format!("{mode:o}"))?;
    fc.mount(attrs)
}

fn new_proc() -> Result<OwnedFd> {
    let fc = FsContext::open("proc").ctx(|| "cannot mount /proc".into())?;
    fc.mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC)
        .ctx(|| "cannot mount /proc".into())
}

/// A new detached mount of file system `fstype` for `dest`: nosuid, nodev, noexec and `attrs`.
fn new_fs(fstype: &str, dest: &str, attrs: u64) -> Result<OwnedFd> {
    let what = || format!("cannot mount {fstype} on {dest}");
    let fc = FsContext::open(fstype).ctx(what)?;
    fc.mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC | attrs).ctx(what)
}

fn bind_source(src: &str, ro: bool, dev: bool) -> Result<OwnedFd> {
    // Looked up once, as the caller: what the caller cannot read is refused, not bound.
    let path = sys::openat2(None, src, libc::O_PATH, 0, 0).ctx(|| format!("cannot bind {src}"))?;
    bind_fd(path, src, ro, dev)
}

/// A detached recursive bind of what `path` is open on, `src` naming it in messages.
fn bind_fd(path: OwnedFd, src: &str, ro: bool, dev: bool) -> Result<OwnedFd> {
    let st = sys::fstat(path.as_fd()).ctx(|| format!("cannot bind {src}"))?;
    let want = if st.st_mode & libc::S_IFMT == libc::S_IFDIR { libc::R_OK | libc::X_OK } else { libc::R_OK };
    sys::faccess_fd(path.as_fd(), want).ctx(|| format!("cannot bind {src}: you may not read it"))?;
    let mut attrs = sys::MOUNT_ATTR_NOSUID;
    if !dev {
        attrs |= sys::MOUNT_ATTR_NODEV;
    }
    if ro {
        attrs |= sys::MOUNT_ATTR_RDONLY;
    }
    sys::open_tree_attr(Some(path.as_fd()), "", sys::OPEN_TREE_CLONE | sys::AT_RECURSIVE, attrs, 0)
        .ctx(|| format!("cannot bind {src}"))
}

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The host's device nodes for `/dev`, and (bwrap's `/dev/console`) the terminal on stdout.
struct HostDevices {
    nodes: Vec<OwnedFd>,
    console: Option<OwnedFd>,
}

fn host_devices(console: bool) -> Result<HostDevices> {
    // Read-only: the node can be read and written, but not chmod-ed or chown-ed (the host's
    // inode; a root jail without a user namespace owns it).
    let attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC | sys::MOUNT_ATTR_RDONLY;
    let nodes = DEVICES
        .iter()
        .map(|d| {
            let p = format!("/dev/{d}");
            sys::open_tree_attr(None, &p, sys::OPEN_TREE_CLONE, attrs, 0).ctx(|| format!("cannot bind {p}"))
        })
        .collect::<Result<_>>()?;
    // bwrap: when stdout is a terminal, the sandbox can write to it anyway; as /dev/console
    // it makes ttyname() work. Its mount belongs to the caller's namespace, so it is bound by
    // the name fd 1 has, and must then be that very terminal (else there is no console).
    let console = if console && sys::isatty(1) {
        let what = || "cannot bind the terminal as /dev/console".to_string();
        let name = std::fs::read_link("/proc/self/fd/1").ctx(what)?.display().to_string();
        let fd = sys::open_tree_attr(None, &name, sys::OPEN_TREE_CLONE | sys::AT_SYMLINK_NOFOLLOW, attrs, 0)
            .ctx(what)?;
        let stdout = sys::fd_stat(1).map(|(st, _)| (st.st_dev, st.st_ino, st.st_rdev)).ok();
        let bound = sys::fstat(fd.as_fd()).map(|st| (st.st_dev, st.st_ino, st.st_rdev)).ok();
        if stdout.is_none() || stdout != bound {
            return Err(Failure {
                code: EXIT_SETUP,
                msg: format!("{}: {name} is not the terminal on stdout", what()),
            });
        }
        Some(fd)
    } else {
        None
    };
    Ok(HostDevices { nodes, console })
}

/// The jail's `/dev` at `at`; returns its devpts mount and the `/dev` directory itself.
/// `bwrap`: bwrap's `/dev` (also `core`, a link to `/proc/kcore`).
fn populate_dev(root: &OwnedFd, devices: HostDevices, at: &str, bwrap: bool) -> Result<(OwnedFd, OwnedFd)> {
    let dev = tmpfs(0o755, sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC | sys::MOUNT_ATTR_NODEV)
        .ctx(|| format!("cannot make the tmpfs for {at}"))?;
    attach(root, dev.as_fd(), at, Kind::Dir, Own::Yes)?;
    let HostDevices { nodes, console } = devices;
    let console = console.map(|c| ("console", c));
    for (name, node) in DEVICES.iter().copied().zip(nodes).chain(console) {
        let target = sys::openat2(
            Some(dev.as_fd()),
            name,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            if name == "console" { 0o444 } else { 0o666 },
            sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
        )
        .ctx(|| format!("cannot create /dev/{name}"))?;
        sys::move_mount(node.as_fd(), target.as_fd()).ctx(|| format!("cannot attach /dev/{name}"))?;
    }
    sys::mkdirat(dev.as_fd(), "pts", 0o755).ctx(|| "cannot create /dev/pts".into())?;
    sys::mkdirat(dev.as_fd(), "shm", 0o1777).ctx(|| "cannot create /dev/shm".into())?;
    let pts = devpts().ctx(|| "cannot mount /dev/pts".into())?;
    let target = sys::openat2(
        Some(dev.as_fd()),
        "pts",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| "cannot open /dev/pts".into())?;
    sys::move_mount(pts.as_fd(), target.as_fd()).ctx(|| "cannot attach /dev/pts".into())?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        if link == "core" && !bwrap {
            continue;
        }
        sys::symlinkat(target, dev.as_fd(), link).ctx(|| format!("cannot create /dev/{link}"))?;
    }
    Ok((pts, dev))
}

/// `console` in `dev` (the jail's `/dev`, as `populate_dev` made it): a read-only bind of the
/// jail's pty `slave` (on the jail's own devpts).
fn pty_console(dev: &OwnedFd, slave: BorrowedFd<'_>) -> Result<()> {
    let what = || "cannot bind the jail's pty as /dev/console".to_string();
    let attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC | sys::MOUNT_ATTR_RDONLY;
    let node = sys::open_tree_attr(Some(slave), "", sys::OPEN_TREE_CLONE, attrs, 0).ctx(what)?;
    let target = sys::openat2(
        Some(dev.as_fd()),
        "console",
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o444,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(what)?;
    sys::move_mount(node.as_fd(), target.as_fd()).ctx(what)
}

fn devpts() -> io::Result<OwnedFd> {
    let fc = FsContext::open("devpts")?;
    fc.set_flag("newinstance")?;
    fc.set_string("ptmxmode", "0666")?;
    fc.set_string("mode", "0620")?;
    fc.mount(sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC)
}

/// Binds `path` (under the proc mounted at `proc_dest`) onto itself, read-only or writable
/// again, both looked up in the proc mount `proc` itself (never again from the jail's root,
/// where a symlink could send the lookup elsewhere).
///
/// Read-only (`ProcReadOnly`): the whole subtree, onto a path nothing is mounted on yet. Only
/// `sys` must exist: the others are absent from every proc of a kernel built without them
/// (`sysrq-trigger` without MAGIC_SYSRQ, `bus` without PCI).
/// Writable (`ProcWritable`): `path` lies under such a read-only bind; a clone of what is there
/// with the read-only flag cleared (it was set in this namespace, so it is not locked).
fn proc_rebind(proc: &OwnedFd, proc_dest: &str, path: &str, read_only: bool) -> Result<()> {
    let rel = path.strip_prefix(proc_dest).unwrap_or(path).trim_start_matches('/');
    let optional = read_only && rel != "sys";
    let recursive = if read_only { sys::AT_RECURSIVE } else { 0 };
    let keep = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;
    let (set, clr) =
        if read_only { (keep | sys::MOUNT_ATTR_RDONLY, 0) } else { (keep, sys::MOUNT_ATTR_RDONLY) };
    let fd = match sys::open_tree_attr(
        Some(proc.as_fd()),
        rel,
        sys::OPEN_TREE_CLONE | recursive | sys::AT_SYMLINK_NOFOLLOW,
        set,
        clr,
    ) {
        Ok(fd) => fd,
        // Not every kernel has every one of these (e.g. no /proc/bus without PCI).
        Err(e) if optional && e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) if read_only => return Err(setup_err(format!("cannot make {path} read-only"), e)),
        Err(e) => return Err(setup_err(format!("cannot make {path} writable"), e)),
    };
    // (A writable path is reached through the read-only bind above it: a mount crossed.)
    let no_xdev = if read_only { sys::RESOLVE_NO_XDEV } else { 0 };
    let target = sys::openat2(
        Some(proc.as_fd()),
        rel,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | no_xdev,
    )
    .ctx(|| format!("cannot open {path} in the jail's proc"))?;
    sys::move_mount(fd.as_fd(), target.as_fd()).ctx(|| format!("cannot mount on {path}"))
}

/// The parent directory of `dest` in the jail (made if missing, symlinks followed inside the
/// root only) and the last component.
fn parent_of<'a>(root: &OwnedFd, dest: &'a str) -> Result<(OwnedFd, &'a str)> {
    let (dir, name) = dest.rsplit_once('/').unwrap_or(("", dest));
    if name.is_empty() {
        return Err(Failure { code: EXIT_SETUP, msg: format!("{dest}: the jail's root itself") });
    }
    let parent = if dir.is_empty() {
        sys::openat2(Some(root.as_fd()), ".", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .ctx(|| "cannot open the jail's root".into())?
    } else {
        mount_point(root, dir, Kind::Dir, Own::No)?
    };
    Ok((parent, name))
}

/// `--symlink TARGET DEST`: made with `symlinkat` in DEST's parent; an existing symlink with
/// the same target is accepted (bwrap does the same), anything else there is an error.
fn make_symlink(root: &OwnedFd, target: &str, dest: &str) -> Result<()> {
    let (parent, name) = parent_of(root, dest)?;
    match sys::symlinkat(target, parent.as_fd(), name) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => match sys::readlinkat(parent.as_fd(), name) {
            Ok(t) if t == target => Ok(()),
            // bwrap's words (callers look for them).
            Ok(t) => Err(Failure {
                code: EXIT_SETUP,
                msg: format!("cannot create symlink {dest}: existing destination is {t}"),
            }),
            _ => Err(setup_err(format!("cannot create symlink {dest}"), e)),
        },
        Err(e) => Err(setup_err(format!("cannot create symlink {dest}"), e)),
    }
}

/// `--dir DEST` (`mode`, as bwrap: only if it makes DEST, less `umask`; made with that mode,
/// never chmod-ed after). Missing parents are made 0755, without the group's or others' access
/// where `mode` gives them none (bwrap's rule).
fn make_dir(root: &OwnedFd, dest: &str, mode: u32, umask: u32) -> Result<()> {
    let mut parents = 0o755;
    if mode & 0o070 == 0 {
        parents &= !0o050;
    }
    if mode & 0o007 == 0 {
        parents &= !0o005;
    }
    let rel = dest.trim_start_matches('/');
    if let Some((up, _)) = rel.rsplit_once('/') {
        if sys::openat2(Some(root.as_fd()), up, libc::O_PATH, 0, Own::No.resolve())
            .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
        {
            drop(create_mount_point(root, up, Kind::Dir, Own::No, parents)?);
        }
    }
    let (parent, name) = parent_of(root, dest)?;
    // (PID 1's umask is 0 while it sets up: the mode is what mkdirat is given.)
    match sys::mkdirat(parent.as_fd(), name, mode & !umask) {
        Ok(()) => Ok(()),
        // There already (bwrap leaves its mode): only checked to be a directory.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            drop(mount_point(root, dest, Kind::Dir, Own::No)?);
            Ok(())
        }
        Err(e) => Err(setup_err(format!("cannot create {dest}"), e)),
    }
}

/// `--file FD DEST`: a new file (never an existing one, never through a symlink) with `data`.
fn make_file(root: &OwnedFd, dest: &str, mode: u32, data: &[u8]) -> Result<()> {
    let (parent, name) = parent_of(root, dest)?;
    let f = sys::openat2(
        Some(parent.as_fd()),
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        mode,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
    )
    .ctx(|| format!("cannot create file {dest}"))?;
    sys::write_all(f.as_fd(), data).ctx(|| format!("cannot write file {dest}"))
}

/// bwrap's `--chmod`: `dest`, which must exist, resolved inside the jail's root (symlinks
/// followed there, never a magic link), gets `mode` through its descriptor (the jail's own
/// `proc`: `PID/fd/N` of this process), so nothing is looked up twice.
fn chmod_in_root(root: &OwnedFd, proc: BorrowedFd<'_>, dest: &str, mode: u32) -> Result<()> {
    let what = || format!("cannot chmod {mode:o} {dest}");
    let fd =
        sys::openat2(Some(root.as_fd()), dest.trim_start_matches('/'), libc::O_PATH, 0, Own::No.resolve())
            .ctx(what)?;
    // This process's `fd` directory in that proc, by its pid (not the `self` symlink), never
    // through a mount the plan put over part of it: only the last step, fd/N, is a magic link.
    let fds = sys::openat2(
        Some(proc),
        &format!("{}/fd", sys::getpid()),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_XDEV,
    )
    .ctx(what)?;
    sys::fchmodat(fds.as_fd(), &fd.as_raw_fd().to_string(), mode).ctx(what)
}

/// A read-only bind of the host's /dev/null, opened before pivot_root, to mask a file of /proc.
fn masking_null() -> Result<OwnedFd> {
    // nodev too: opening the mask fails (EACCES), which hides the file as well as reading
    // nothing would, and every mount outside /dev stays nodev.
    let attrs =
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC | sys::MOUNT_ATTR_NODEV;
    sys::open_tree_attr(None, "/dev/null", sys::OPEN_TREE_CLONE, attrs, 0)
        .ctx(|| "cannot bind /dev/null".into())
}

/// The source of the /proc masks: the read-only bind of /dev/null made before pivot_root,
/// then, once attached on the first mask, that mask (each further one is a clone of it).
enum Mask {
    None,
    Detached(OwnedFd),
    Attached(OwnedFd),
}

/// Hides `path` (under the proc mounted at `proc_dest`) under the mask source, looked up in
/// the proc mount itself; a file this kernel's proc does not have needs no mask (and costs no
/// bind: an unattached one would be dissolved when closed, after an RCU grace period).
fn proc_mask(proc: &OwnedFd, proc_dest: &str, path: &str, mask: &mut Mask) -> Result<()> {
    let rel = path.strip_prefix(proc_dest).unwrap_or(path).trim_start_matches('/');
    let resolve = sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_XDEV;
    let target = match sys::openat2(Some(proc.as_fd()), rel, libc::O_PATH | libc::O_NOFOLLOW, 0, resolve) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(setup_err(format!("cannot open {path} in the jail's proc"), e)),
    };
    let src = match std::mem::replace(mask, Mask::None) {
        Mask::Detached(null) => null,
        // A clone of an attached mask keeps its mount flags (read-only, nosuid, nodev, noexec).
        Mask::Attached(first) => {
            let clone = sys::open_tree(Some(first.as_fd()), "", sys::OPEN_TREE_CLONE)
                .ctx(|| format!("cannot bind the mask for {path}"));
            *mask = Mask::Attached(first);
            clone?
        }
        Mask::None => return Err(Failure { code: EXIT_SETUP, msg: "mask source missing".into() }),
    };
    sys::move_mount(src.as_fd(), target.as_fd()).ctx(|| format!("cannot mask {path}"))?;
    if matches!(mask, Mask::None) {
        *mask = Mask::Attached(src);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Whose mount point: ljspawn's own (`/proc`, `/dev`, tmpfs) never follows a symlink; a bind
/// destination the caller chose follows symlinks, inside the jail's root only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Own {
    Yes,
    No,
}

impl Own {
    fn resolve(self) -> u64 {
        let in_root = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
        match self {
            Own::Yes => in_root | sys::RESOLVE_NO_SYMLINKS,
            Own::No => in_root,
        }
    }
}

/// Attaches the detached mount `mnt` at `dest`, resolved inside the jail's root.
fn attach(root: &OwnedFd, mnt: BorrowedFd<'_>, dest: &str, kind: Kind, own: Own) -> Result<()> {
    let target = mount_point(root, dest, kind, own)?;
    sys::move_mount(mnt, target.as_fd()).ctx(|| format!("cannot mount on {dest}"))?;
    if own == Own::Yes {
        // A world shared with a running jail may have been renamed under us: `dest` must now
        // be the mount just attached, or the jail does not start.
        let now =
            sys::openat2(Some(root.as_fd()), dest.trim_start_matches('/'), libc::O_PATH, 0, own.resolve());
        let same = match (now.and_then(|fd| sys::fstat(fd.as_fd())), sys::fstat(mnt)) {
            (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
            _ => false,
        };
        if !same {
            return Err(Failure {
                code: EXIT_SETUP,
                msg: format!("mount point {dest}: changed while the jail was set up"),
            });
        }
    }
    Ok(())
}

/// Opens (creating it if missing) the mount point `dest` inside the jail. Resolution never
/// leaves the root (`RESOLVE_IN_ROOT`), never crosses a magic link (nor, for ljspawn's own
/// mount points, any symlink), never ends at the root itself, and creation is one
/// `mkdirat`/`O_EXCL` component at a time, so a symlink is never created through. The mount
/// goes on the directory opened here, whatever is renamed in the world meanwhile.
fn mount_point(root: &OwnedFd, dest: &str, kind: Kind, own: Own) -> Result<OwnedFd> {
    let rel = dest.trim_start_matches('/');
    let fd = match sys::openat2(Some(root.as_fd()), rel, libc::O_PATH, 0, own.resolve()) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => create_mount_point(root, rel, kind, own, 0o755)?,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) && own == Own::Yes => {
            return Err(Failure {
                code: EXIT_SETUP,
                msg: format!("mount point {dest}: a symlink in the jail's root (ljspawn's own mount points never follow one)"),
            })
        }
        Err(e) => return Err(setup_err(format!("cannot open mount point {dest}"), e)),
    };
    let st = sys::fstat(fd.as_fd()).ctx(|| format!("cannot stat mount point {dest}"))?;
    let top = sys::fstat(root.as_fd()).ctx(|| "cannot stat the jail's root".into())?;
    if (st.st_dev, st.st_ino) == (top.st_dev, top.st_ino) {
        return Err(Failure { code: EXIT_SETUP, msg: format!("mount point {dest}: the jail's root itself") });
    }
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    match (kind, is_dir) {
        (Kind::Dir, false) => {
            Err(Failure { code: EXIT_SETUP, msg: format!("mount point {dest}: not a directory") })
        }
        (Kind::File, true) => {
            Err(Failure { code: EXIT_SETUP, msg: format!("mount point {dest}: is a directory") })
        }
        _ => Ok(fd),
    }
}

/// Makes `rel` and its missing parents (directories of mode `dirs`, less the umask), one
/// component at a time.
fn create_mount_point(root: &OwnedFd, rel: &str, kind: Kind, own: Own, dirs: u32) -> Result<OwnedFd> {
    let resolve = own.resolve();
    let parts: Vec<&str> = rel.split('/').collect();
    let mut parent = sys::openat2(Some(root.as_fd()), ".", libc::O_PATH | libc::O_DIRECTORY, 0, resolve)
        .ctx(|| "cannot open the jail's root".into())?;
    for (i, name) in parts.iter().enumerate() {
        let so_far = parts[..=i].join("/");
        let last = i + 1 == parts.len();
        let hint = |e: io::Error| {
            let mut f = setup_err(format!("cannot create mount point /{so_far}"), e);
            if f.msg.ends_with("read-only file system") {
                f.msg.push_str(" (create it in the root, use --rw, or use --layer for an overlay root)");
            }
            f
        };
        match sys::openat2(Some(root.as_fd()), &so_far, libc::O_PATH, 0, resolve) {
            Ok(fd) if !last => {
                parent = fd;
                continue;
            }
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(hint(e)),
            Err(_) => {}
        }
        if last && kind == Kind::File {
            sys::openat2(
                Some(parent.as_fd()),
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                // What bwrap makes (only a mount point: the bound file's mode is what shows).
                0o444,
                sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
            )
            .map_err(hint)?;
        } else {
            sys::mkdirat(parent.as_fd(), name, dirs).map_err(hint)?;
        }
        parent = sys::openat2(Some(root.as_fd()), &so_far, libc::O_PATH, 0, resolve).map_err(hint)?;
    }
    Ok(parent)
}

/// PID 1 after setup: start the program, then reap every child and forward signals until the
/// program exits. Returns the program's exit code (128+N for signal N).
fn supervise(plan: &Plan, h: Handover, umask: u32, slave: Option<OwnedFd>, early: bool) -> u8 {
    // The program's process shares PID 1's memory until it execs (see `sys::vfork_run`):
    // `program` only borrows.
    let mut run = || program(plan, &h, umask, slave.as_ref(), early);
    // In a joined PID namespace (bwrap's --pidns without --unshare-pid) this process is not
    // its init: the program's orphans come back here, not to that namespace's init.
    if !plan.own_pidns {
        if let Err(e) = sys::set_child_subreaper() {
            let f = setup_err("cannot become the jail's child subreaper", e);
            report(h.status.as_fd(), &f);
            return f.code;
        }
    }
    let pid = match sys::vfork_run(&mut run) {
        Ok(pid) => pid,
        Err(e) => {
            let f = setup_err("cannot start the program", e);
            report(h.status.as_fd(), &f);
            return f.code;
        }
    };
    // The program holds the status pipe until exec; ljspawn sees end-of-file then.
    let Handover { status, exit, maps, stdout, stderr, net_join, pty, .. } = h;
    // (The slave too: once the program's processes have closed theirs, ljspawn's relay sees
    // the end of the pty's output.)
    drop((status, maps, stdout, stderr, net_join, pty, slave));
    let code = loop {
        match sys::wait_signal(None) {
            Ok(Some((libc::SIGCHLD, _))) | Ok(Some((0, _))) | Ok(None) => {
                if let Some(code) = reap(pid) {
                    break code;
                }
            }
            // Signals from ljspawn (outside this PID namespace: sender pid 0) go to the program.
            Ok(Some((sig, 0))) => {
                let _ = sys::kill(pid, if sig == libc::SIGTERM { plan.stop_signal } else { sig });
            }
            Ok(Some(_)) => {}
            Err(_) => break EXIT_SETUP,
        }
    };
    // The program is gone: so is everything it started. Kill and reap the rest, then tell
    // ljspawn, which need not wait for the kernel to tear the namespaces down. Not in a joined
    // PID namespace: there kill(-1) would reach its other processes; what the program left
    // runs on, as under bwrap (a cgroup of the jail's, if any, still ends it).
    if plan.own_pidns {
        let _ = sys::kill(-1, libc::SIGKILL);
        while sys::wait_blocking(-1).is_ok() {}
    } else {
        while let Ok(Some(_)) = sys::wait_nohang(-1) {}
    }
    upper::remove_held();
    let _ = sys::write_all(exit.as_fd(), &[code]);
    code
}

/// Reaps every child that exited; returns the program's exit code once it is among them.
fn reap(program: i32) -> Option<u8> {
    loop {
        match sys::wait_nohang(-1) {
            Ok(Some((p, st))) if p == program => {
                return Some(match st {
                    WaitStatus::Exited(c) => c as u8,
                    WaitStatus::Signaled(s) => 128u8.saturating_add(s as u8),
                });
            }
            Ok(Some(_)) => continue,
            Ok(None) => return None,
            Err(_) => return Some(EXIT_SETUP),
        }
    }
}

/// The program's process: drop everything, then exec. Returns only on failure (reported),
/// with the exit code.
fn program(plan: &Plan, h: &Handover, umask: u32, slave: Option<&OwnedFd>, early: bool) -> i32 {
    let f = match prepare_and_exec(plan, h, umask, slave, early) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    report(h.status.as_fd(), &f);
    f.code as i32
}

pub(crate) enum Never {}

/// `early`: PID 1 took the first confinement steps already (see `confine_early`).
fn prepare_and_exec(
    plan: &Plan,
    h: &Handover,
    umask: u32,
    slave: Option<&OwnedFd>,
    early: bool,
) -> Result<Never> {
    sys::setsid().ctx(|| "cannot start a new session".into())?;
    // A session keyring of its own (empty): the caller's session keys stay out of reach.
    if !early {
        sys::join_session_keyring().ctx(|| "cannot join a new session keyring".into())?;
    }
    if let Some(fd) = &h.stdout {
        sys::dup2(fd.as_fd(), 1).ctx(|| "cannot redirect stdout".into())?;
    }
    if let Some(fd) = &h.stderr {
        sys::dup2(fd.as_fd(), 2).ctx(|| "cannot redirect stderr".into())?;
    }
    if let Some(s) = slave {
        crate::pty::attach_program(s.as_fd()).ctx(|| "cannot attach the jail's pty".into())?;
    }
    let block = h.inputs.block.as_ref().map(|b| b.as_fd());
    confine_and_exec(plan, &h.inputs.seccomp_extra, block, &h.passed, umask, early)
}

/// The program's confinement, then exec: rlimits, devices reopened (root mode), privileges
/// dropped and read back, cwd, passed fds, umask, signals, seccomp last. Shared by a new jail's
/// program and a process joining a running jail (`join`), so both get the same. `early`: PID 1
/// reopened the devices and installed the built-in filter already (see `confine_early`).
pub(crate) fn confine_and_exec(
    plan: &Plan,
    seccomp_extra: &[Vec<u8>],
    block: Option<BorrowedFd<'_>>,
    passed: &[PassedFd],
    umask: u32,
    early: bool,
) -> Result<Never> {
    if !early && reopens_devices(plan) {
        reopen_devices(plan, 0..3)?;
    }
    for r in &plan.rlimits {
        sys::setrlimit(r.resource, r.soft, r.hard).ctx(|| format!("cannot set --rlimit {}", r.name))?;
    }
    drop_privileges(plan)?;
    if plan.as_pid_1 {
        // The program is PID 1: nothing of ljspawn's stays in the jail to die with ljspawn.
        // A change of uid (`--user`) cleared the parent-death signal: set it again. (ljspawn
        // cannot be checked from here: PID 1's parent pid reads 0. If it died in between, the
        // status pipe tells nobody and the jail runs until its init exits.)
        sys::set_pdeathsig(libc::SIGKILL).ctx(|| "cannot tie the jail to ljspawn".into())?;
    }
    let cwd = match plan.cwd_try.iter().find(|d| sys::chdir(d).is_ok()) {
        Some(d) => d.as_str(),
        None => {
            sys::chdir(&plan.cwd).map_err(|e| match plan.bwrap_exec {
                true => Failure {
                    code: EXIT_SETUP,
                    msg: format!("Can't chdir to {}: {}", plan.cwd, strerror(&e)),
                },
                false => setup_err(format!("cannot enter --chdir {}", plan.cwd), e),
            })?;
            plan.cwd.as_str()
        }
    };
    for &(fd, was) in passed {
        let now = sys::fd_stat(fd).map(|(st, _)| (st.st_dev, st.st_ino)).ok();
        if now != Some(was) {
            return Err(Failure {
                code: EXIT_SETUP,
                msg: format!("cannot pass fd {fd}: it is not the descriptor given to ljspawn any more"),
            });
        }
        sys::set_cloexec(fd, false).ctx(|| format!("cannot pass fd {fd}"))?;
    }
    sys::umask(umask);
    sys::reset_signals().ctx(|| "cannot reset signals".into())?;
    if let Some(b) = block {
        // bwrap's --block-fd: privileges are gone; the caller says when to go on (a byte, or
        // end-of-file, whatever comes first). The descriptor is close-on-exec.
        let mut byte = [0u8; 1];
        loop {
            match sys::read(b, &mut byte) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }
    // Last before exec: from here on, nothing but execve runs.
    let builtin = if early { None } else { builtin_filter(plan) };
    for bpf in builtin.into_iter().chain(seccomp_extra.iter().map(Vec::as_slice)) {
        sys::seccomp_install(bpf).ctx(|| "cannot install the seccomp filter".into())?;
    }
    if plan.assert_no_userns && sys::unshare(libc::CLONE_NEWUSER).is_ok() {
        // (The only effect: this process, which is not started, has a namespace of its own.)
        return Err(Failure {
            code: EXIT_SETUP,
            msg: "creation of new user namespaces was not disabled as requested".into(),
        });
    }
    exec(plan, plan.pwd_is_cwd.then_some(cwd))
}

/// Root mode: the jail's uid 0 owns the host's root-owned inodes. A fd in `fds` (0-2, and the
/// `-O`/`-E` files before they become 1 and 2) that is one of the host's device nodes the jail's `/dev` has too (e.g. `/dev/null` as stdin) is opened again
/// from that read-only `/dev`, so neither fchmod on it nor chmod of `/proc/self/fd/N` reaches
/// the host's inode. Only a node the program could chmod needs it: one whose owner (as the
/// jail's user namespace sees it) is the program's uid, or any while it keeps a capability.
/// Host root's `/dev/null` seen from a user namespace that does not map host root (root mode
/// inside a rootless sandbox, as bwrap's nesting makes it) is nobody's there: passed as it is.
fn reopen_devices(plan: &Plan, fds: impl Iterator<Item = RawFd>) -> Result<()> {
    let caps_kept = plan.caps_all || !plan.caps.is_empty();
    for fd in fds {
        let Ok((st, flags)) = sys::fd_stat(fd) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || (st.st_uid != plan.uid && !caps_kept) {
            continue;
        }
        let Some(name) = DEVICES.iter().find(|&&d| d != "tty" && device_number(d) == Some(st.st_rdev)) else {
            continue;
        };
        let keep = flags & (libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK);
        let resolve = sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS;
        let new = sys::openat2(None, &format!("/dev/{name}"), keep | libc::O_NOCTTY, 0, resolve)
            .ctx(|| format!("cannot open the jail's /dev/{name} for fd {fd}"))?;
        if sys::fstat(new.as_fd()).map(|s| s.st_rdev).ok() != Some(st.st_rdev) {
            continue;
        }
        sys::dup2(new.as_fd(), fd).ctx(|| format!("cannot replace fd {fd}"))?;
    }
    Ok(())
}

/// The device numbers of the host nodes in `DEVICES` (mem devices: major 1).
fn device_number(name: &str) -> Option<libc::dev_t> {
    let minor = match name {
        "null" => 3,
        "zero" => 5,
        "full" => 7,
        "random" => 8,
        "urandom" => 9,
        _ => return None,
    };
    Some(libc::makedev(1, minor))
}

fn drop_privileges(plan: &Plan) -> Result<()> {
    // A capability can only be kept if it is held: `ALL` means all that are; a named one
    // that is not is an error naming it.
    // (No capability kept, the common case: nothing to ask the kernel.)
    let permitted =
        if plan.caps.is_empty() { 0 } else { sys::capget().ctx(|| "cannot read capabilities".into())?.1 };
    let mut keep: u64 = plan.caps.iter().fold(0, |m, &c| m | (1u64 << c));
    if plan.caps_all {
        keep &= permitted;
    }
    let kept: Vec<u32> = plan.caps.iter().copied().filter(|&c| keep & (1u64 << c) != 0).collect();
    if let Some(&c) = plan.caps.iter().find(|&&c| !plan.caps_all && permitted & (1u64 << c) == 0) {
        let name = crate::plan::CAP_NAMES.get(c as usize).copied().unwrap_or("?");
        return Err(Failure {
            code: EXIT_SETUP,
            msg: format!("--cap-add cap_{name}: ljspawn does not hold it, so the jail cannot keep it"),
        });
    }
    // Empty the bounding set (but for kept capabilities) up to the kernel's last capability,
    // where PR_CAPBSET_DROP answers EINVAL.
    for cap in 0..64u32 {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        match sys::capbset_drop(cap) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(e) => {
                return Err(setup_err(format!("cannot drop capability {cap} from the bounding set"), e))
            }
        }
    }
    // Supplementary groups: cleared where the kernel lets us (rootless namespaces deny
    // setgroups, and there the caller's groups show as the overflow gid).
    // Capabilities are kept inside the jail's own user namespace, or (root only) without one:
    // checked again here, where they would be kept.
    if !plan.caps.is_empty()
        && plan.mode != crate::plan::Mode::Root
        && plan.userns.is_none()
        && plan.join_userns.is_none()
    {
        return Err(Failure {
            code: EXIT_SETUP,
            msg: format!("--cap-add is not allowed in {} mode", plan.mode),
        });
    }
    let joined = plan.join_userns.is_some() || plan.join_userns2.is_some();
    if plan.userns.as_ref().is_none_or(|m| m.setgroups) {
        match sys::setgroups_empty() {
            // A joined namespace may deny setgroups (its `setgroups` file): the groups are
            // then the caller's, as in any rootless namespace.
            Err(e) if joined && e.raw_os_error() == Some(libc::EPERM) => {}
            r => r.ctx(|| "cannot clear supplementary groups".into())?,
        }
    }
    if keep != 0 && plan.uid != 0 {
        sys::set_keepcaps(true).ctx(|| "cannot keep capabilities across setuid".into())?;
    }
    sys::setresgid(plan.gid).ctx(|| format!("cannot switch to gid {}", plan.gid))?;
    sys::setresuid(plan.uid).ctx(|| format!("cannot switch to uid {}", plan.uid))?;
    sys::capset(keep).ctx(|| "cannot set capabilities".into())?;
    sys::ambient_clear().ctx(|| "cannot clear ambient capabilities".into())?;
    if plan.uid != 0 {
        for &c in &kept {
            sys::ambient_raise(c).ctx(|| format!("cannot raise ambient capability {c}"))?;
        }
    }
    sys::set_no_new_privs().ctx(|| "cannot set no_new_privs".into())?;

    // Check, do not trust: read everything back.
    let ids = sys::getresids();
    let (u, g) = (plan.uid, plan.gid);
    let caps = sys::capget().ctx(|| "cannot read capabilities".into())?;
    let nnp = sys::no_new_privs().ctx(|| "cannot read no_new_privs".into())?;
    if ids != (u, u, u, g, g, g) || caps != (keep, keep, keep) || !nnp {
        return Err(Failure {
            code: EXIT_SETUP,
            msg: format!(
                "privileges not dropped as planned (ids {ids:?}, caps {caps:x?}, no_new_privs {nnp})"
            ),
        });
    }
    Ok(())
}

/// `pwd`: the value of the environment's `PWD` (the directory entered, bwrap form).
fn exec(plan: &Plan, pwd: Option<&str>) -> Result<Never> {
    let cbytes =
        |b: Vec<u8>| CString::new(b).map_err(|_| Failure { code: EXIT_SETUP, msg: "NUL byte".into() });
    let cstr = |s: &str| cbytes(s.into());
    let mut argv = plan.argv.iter().map(|a| cstr(a)).collect::<Result<Vec<_>>>()?;
    // `NAME=VALUE`, each made in one allocation (no formatting: a caller's whole environment
    // goes through here in the bwrap form).
    let envp = plan
        .env
        .iter()
        .map(|(k, v)| {
            let v = match pwd {
                Some(d) if k == "PWD" => d,
                _ => v.as_str(),
            };
            let mut b = Vec::with_capacity(k.len() + v.len() + 2);
            b.extend_from_slice(k.as_bytes());
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            cbytes(b)
        })
        .chain(plan.env_raw.iter().map(|e| cbytes(e.clone())))
        .collect::<Result<Vec<_>>>()?;
    let prog = &plan.argv[0];
    let file = cstr(prog)?;
    if let Some(a) = &plan.argv0 {
        argv[0] = cstr(a)?;
    }
    if plan.bwrap_exec {
        return Err(execvp(prog, &argv, &envp, plan));
    }
    if prog.contains('/') {
        let e = sys::execve(&file, &argv, &envp);
        return Err(exec_failure(prog, e));
    }
    let path = plan.env.iter().find(|(k, _)| k == "PATH").map_or(crate::plan::DEFAULT_PATH, |(_, v)| v);
    let mut denied = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let full = cstr(&format!("{dir}/{prog}"))?;
        let e = sys::execve(&full, &argv, &envp);
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => {}
            _ => {
                if denied.is_none() {
                    denied = Some((format!("{dir}/{prog}"), e));
                }
            }
        }
    }
    // Every candidate said ENOENT: one that is there lacks its interpreter (said below).
    let there = path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{prog}")).find(|p| is_file(p));
    match (denied, there) {
        (Some((p, e)), _) => Err(exec_failure(&p, e)),
        (None, Some(p)) => Err(exec_failure(&p, io::Error::from_raw_os_error(libc::ENOENT))),
        (None, None) => Err(Failure {
            code: EXIT_NOTFOUND,
            msg: format!("{prog}: command not found in the jail's PATH ({path})"),
        }),
    }
}

/// The bwrap form's exec, as bwrap's `execvp(3)` (glibc's): `prog` as it is if it has a `/`,
/// else each directory of `PATH` in turn, past those where it is missing; the error is the
/// first other than ENOENT, ENOTDIR, ENODEV, ESTALE, ETIMEDOUT, else EACCES if a candidate
/// said it, else ENOENT. bwrap's words: `execvp NAME: No such file or directory`. (No `sh`
/// for a file without a `#!` line: a listed difference.)
fn execvp(prog: &str, argv: &[CString], envp: &[CString], plan: &Plan) -> Failure {
    let fail = |e: io::Error| {
        let code = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOTFOUND,
            _ => EXIT_NOEXEC,
        };
        Failure { code, msg: format!("execvp {prog}: {}", strerror(&e)) }
    };
    let cstr = |s: &str| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT));
    if prog.contains('/') {
        return match cstr(prog) {
            Ok(file) => fail(sys::execve(&file, argv, envp)),
            Err(e) => fail(e),
        };
    }
    if prog.is_empty() {
        return fail(io::Error::from_raw_os_error(libc::ENOENT));
    }
    // (glibc's search path without PATH: confstr's _CS_PATH.)
    let path = plan.env.iter().find(|(k, _)| k == "PATH").map_or("/bin:/usr/bin", |(_, v)| v);
    let mut denied = false;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let e = match cstr(&format!("{dir}/{prog}")) {
            Ok(full) => sys::execve(&full, argv, envp),
            Err(e) => e,
        };
        match e.raw_os_error() {
            Some(libc::EACCES) => denied = true,
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENODEV | libc::ESTALE | libc::ETIMEDOUT) => {}
            _ => return fail(e),
        }
    }
    fail(io::Error::from_raw_os_error(if denied { libc::EACCES } else { libc::ENOENT }))
}

fn is_file(p: &str) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

fn exec_failure(prog: &str, e: io::Error) -> Failure {
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOTFOUND,
        _ => EXIT_NOEXEC,
    };
    // ENOENT for a file that is there: the kernel did not find its interpreter.
    let hint = if e.raw_os_error() == Some(libc::ENOENT) && is_file(prog) {
        " (the file is there: its interpreter is not, the ELF loader or the program of its #! line; \
         for host programs bind /lib64 and /lib too, or give --host-usr)"
    } else {
        ""
    };
    Failure { code, msg: format!("cannot execute {prog}: {}{hint}", describe(&e)) }
}
