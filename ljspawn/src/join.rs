//! `--join PID`: run a command inside a running jail (ljail's `exec`), under the confinement
//! its own program got.
//!
//! The plan is built from the jail's own options, exactly as for a new jail (ljail passes
//! them), so the joining program gets the same user, environment, rlimits, capability drop,
//! `no_new_privs` and seccomp filter (`jail::confine_and_exec`, the code a new jail's program
//! runs). Order:
//! 1. the privileged side's second look at the plan (`Privileged::enter`), as for a new jail:
//!    setuid, what the mode forces on every jail is refused otherwise (a user namespace,
//!    the seccomp filter: no `--seccomp none`);
//! 2. `pidfd_open(PID)`, then the checks on that process, then a signal 0 through the pidfd
//!    (so the checks were about the process the pidfd names, not a reused pid): it must be the
//!    PID 1 of its own PID namespace, the child of a process running this same ljspawn
//!    executable (same inode: setuid, the setuid copy), and belong to the caller (real uid;
//!    root may join any); setuid, also its user namespace (`Privileged::open_jail_userns`,
//!    opened and read as root before the pidfds are signalled): root's (its owner uid 0: the
//!    caller could make a namespace of its own with the same maps and run this executable as
//!    its root, where setuid is ignored), a child of the initial one, not the host's, whose maps are exactly those setuid ljspawn writes for this caller and
//!    these options (the caller's ids, its `/etc/subuid`/`/etc/subgid` ranges);
//! 3. setuid: that user namespace entered alone, as root (it is root's: only root holds
//!    `CAP_SYS_ADMIN` over it), and at once the caller's ids in it (`Privileged::join_jail`),
//!    before any other namespace is entered or any path the jail controls is resolved;
//! 4. root mode: move into the jail's cgroups (only those named `lightjail-<pid>`, as ljspawn
//!    makes them, and ljail's freezer under `lightjail/`), so its limits and freezer hold the
//!    new process too; rootless and setuid (as the caller, after step 3: no cgroup is written
//!    as root), into the jail's delegated cgroup v2 where the caller may;
//! 5. `setns` through a pidfd of the jail's program (PID 1's first child, also checked; with
//!    `--as-pid-1`, PID 1 itself) into
//!    every namespace the jail made (the kernel enters the user namespace first; setuid, all
//!    but the user namespace, entered in step 3), which also sets root and cwd to the jail's
//!    root;
//! 6. when fd 0 is a terminal: a pty of the jail's own devpts (its `/dev/pts`, checked to be a
//!    devpts mount), as a new jail's program gets one;
//! 7. fork (the child is in the jail's PID namespace), new session (on the pty, if any),
//!    confinement, exec; the parent relays the pty, forwards SIGINT, SIGTERM, SIGHUP and
//!    SIGQUIT and returns the child's status.
//!
//! Why setuid mode gives nothing beyond what the caller's own jail's root has: a setuid jail's
//! user namespace is made by ljspawn as root (so root owns it) with maps of the caller's ids
//! and granted ranges only, and its PID 1 and program run as the caller's ids in it. Step 3
//! leaves host root in one step: after `setns` this process's credentials belong to the
//! jail's user namespace (no capability outside it, whatever its ids were), and `setresuid`
//! there makes every uid the caller's host uid (host uid 0 is not mapped, so root's ids cannot
//! be taken back). The capabilities `setns` gives in that namespace stay (`cap_emulate_setxuid`
//! clears them only when the uids all leave the namespace's uid 0 after one of them was it:
//! that uid 0 is a subordinate id, which none of this process's uids is, or with `--subids`
//! the caller, which all of them become), and they are exactly what the jail's root holds: enough to enter the jail's other
//! namespaces, which that user namespace owns, and nothing outside. Before step 3 the process
//! is undumpable and its memory belongs to the initial user namespace, so the jail cannot
//! ptrace it. The plan comes from the caller: everything after step 3 runs with the jail's
//! user namespace's capabilities only, so a plan other than the jail's (another user, other
//! capabilities kept, a weaker filter) gets no more than a new setuid jail of the caller with
//! those options would; what setuid mode forces on every jail (a user namespace, the seccomp
//! filter, `no_new_privs`, set by `confine_and_exec` for every mode) is forced on the joined
//! command too. It is not moved into a setuid jail's cgroup (root's), so that jail's limits
//! do not hold it; the caller's own processes are not limited by them either.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use crate::plan::{Mode, Mount, Net, Plan};
use crate::privileged::Privileged;
use crate::spawn::err;
use crate::spawn::SpawnError;
use crate::sys::{self, WaitStatus};
use crate::{jail, pty, EXIT_SETUP};

fn refuse(msg: String) -> SpawnError {
    SpawnError { code: EXIT_SETUP, msg }
}

/// Runs the plan's command in the running jail whose PID 1 is `pid`; returns its exit status.
pub fn run(plan: &Plan, pid: i32) -> Result<u8, SpawnError> {
    // The second look at the plan, as for a new jail (setuid: what the mode forces on every
    // jail, e.g. a user namespace and the seccomp filter, is refused otherwise).
    let window = Privileged::enter(plan)?;
    let pidfd = sys::pidfd_open(pid).map_err(|e| err(format!("cannot open process {pid}"), e))?;
    check_target(plan, pid)?;
    // The namespaces are entered through the jail's program, PID 1's first child: PID 1 never
    // executed in the jail, so the kernel lets only root (CAP_SYS_PTRACE) enter through it.
    // (Right after the jail started, PID 1 may still be starting it: wait up to 2 s.) With
    // `--as-pid-1` the program is PID 1 itself.
    let program = if plan.as_pid_1 {
        pid
    } else {
        let mut program = first_child(pid);
        for _ in 0..200 {
            if program.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            program = first_child(pid);
        }
        program?
    };
    let progfd =
        sys::pidfd_open(program).map_err(|e| err(format!("cannot open the jail's program {program}"), e))?;
    if !plan.as_pid_1 && parent(program) != Some(pid) {
        return Err(refuse(format!("process {program} is not the program of jail {pid}")));
    }
    // Setuid: the jail's user namespace, checked as root (see `Privileged::open_jail_userns`).
    let userns = match plan.mode {
        Mode::Setuid => Some(window.open_jail_userns(plan, pid)?),
        _ => None,
    };
    // Still the processes the checks read: a pidfd never names a reused pid.
    for (fd, p) in [(&pidfd, pid), (&progfd, program)] {
        sys::pidfd_send_signal(fd.as_fd(), 0).map_err(|e| err(format!("process {p} is gone"), e))?;
    }
    let mut flags = namespaces(plan);
    match (userns, &plan.userns) {
        // Setuid: the user namespace alone, as root, and at once the caller's ids in it; from
        // here on this process holds what the jail's root holds, nothing of host root's.
        (Some(ns), Some(map)) => {
            window.join_jail(ns, map)?;
            flags &= !libc::CLONE_NEWUSER;
        }
        _ => window.drop(None)?,
    }
    if plan.mode == Mode::Root {
        join_cgroups(pid)?;
    } else {
        // (Setuid: as the caller, after the drop; no cgroup is written as root.)
        join_own_v2_cgroup(pid);
    }
    // Right after the jail started, its program may not have executed yet (until then it is
    // PID 1's undumpable copy, which the kernel does not let us enter): retry for up to 2 s.
    let mut tries = 0;
    loop {
        match sys::setns(progfd.as_fd(), flags) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(err(format!("cannot enter the namespaces of jail {pid}"), e)),
        }
    }
    drop((pidfd, progfd));
    sys::block_signals().map_err(|e| err("cannot block signals", e))?;
    let umask = sys::umask(0o022);
    sys::umask(umask);
    let passed = crate::spawn::passed_fds(plan)?;
    // fd 0 is a terminal: a pty of the jail's own devpts, as its program got.
    let pty = match (
        plan.pty,
        plan.mounts.iter().find_map(|m| match m {
            Mount::Dev { dest } => Some(dest),
            _ => None,
        }),
    ) {
        (true, Some(dev)) => Some(
            pty::open_joined(dev, plan.uid, plan.gid).map_err(|msg| SpawnError { code: EXIT_SETUP, msg })?,
        ),
        _ => None,
    };
    let child = sys::fork().map_err(|e| err("cannot fork into the jail", e))?;
    if child == 0 {
        let f = match sys::setsid()
            .and_then(|()| match &pty {
                Some((_, slave)) => pty::attach_program(slave.as_fd()),
                None => Ok(()),
            })
            .map_err(|e| jail::Failure {
                code: EXIT_SETUP,
                msg: format!("cannot start a new session on the jail's terminal: {}", crate::describe(&e)),
            }) {
            Ok(()) => {
                drop(pty);
                match jail::confine_and_exec(plan, &[], None, &passed, umask, false) {
                    Ok(never) => match never {},
                    Err(f) => f,
                }
            }
            Err(f) => f,
        };
        crate::errln!("ljspawn: {}", f.msg);
        sys::exit_now(f.code as i32);
    }
    if plan.mode == Mode::Setuid {
        // The relaying parent needs none of the capabilities it holds in the jail's user
        // namespace (it waits, relays and signals its own child).
        sys::capset(0).map_err(|e| abandon(child, err("cannot drop the capabilities", e)))?;
    }
    let relay = match pty {
        Some((master, slave)) => {
            drop(slave);
            match pty::Relay::new(master, plan.stdout_file.is_some(), plan.stderr_file.is_some()) {
                Ok(r) => Some(r),
                Err(e) => return Err(abandon(child, err("cannot relay the jail's terminal", e))),
            }
        }
        None => None,
    };
    // (A failure returns before the child is reaped: its pid is still its own.)
    forward_until_exit(child, relay).map_err(|e| abandon(child, e))
}

/// The child forked into the jail, when ljspawn cannot go on supervising it: killed and reaped,
/// so no command runs on unwatched in the jail. Returns `e`.
fn abandon(child: i32, e: SpawnError) -> SpawnError {
    let _ = sys::kill(child, libc::SIGKILL);
    let _ = sys::wait_blocking(child);
    e
}

/// The parent pid of `pid`.
fn parent(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The child of `pid` that started first (the jail's program; orphans adopted by PID 1 come
/// later).
fn first_child(pid: i32) -> Result<i32, SpawnError> {
    let kids = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map_err(|e| err(format!("cannot list the processes of jail {pid}"), e))?;
    let started = |c: i32| -> Option<u64> {
        let stat = fs::read_to_string(format!("/proc/{c}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?.parse().ok()
    };
    kids.split_whitespace()
        .filter_map(|k| k.parse::<i32>().ok())
        .filter_map(|k| Some((started(k)?, k)))
        .min()
        .map(|(_, k)| k)
        .ok_or_else(|| refuse(format!("jail {pid} runs no program (starting or stopping)")))
}

/// Step 2's checks on `/proc/PID`.
fn check_target(plan: &Plan, pid: i32) -> Result<(), SpawnError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| err(format!("cannot read /proc/{pid}/status"), e))?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().collect::<Vec<_>>())
    };
    let nspid = field("NSpid:").unwrap_or_default();
    if nspid.len() < 2 || nspid.last() != Some(&"1") {
        return Err(refuse(format!("process {pid} is not the PID 1 of a jail")));
    }
    let uid = field("Uid:").and_then(|v| v.first().and_then(|u| u.parse::<u32>().ok()));
    if plan.mode != Mode::Root && uid != Some(sys::getuid()) {
        return Err(refuse(format!("jail {pid} is not yours")));
    }
    // Its parent is the ljspawn that made the jail: the same executable as this one. (The
    // jail's own /proc/PID/exe is not readable without ptrace rights over it.)
    let ppid = field("PPid:").and_then(|v| v.first().and_then(|p| p.parse::<i32>().ok())).unwrap_or(0);
    let ours = fs::metadata("/proc/self/exe").map_err(|e| err("cannot stat /proc/self/exe", e))?;
    let theirs = fs::metadata(format!("/proc/{ppid}/exe"));
    if ppid <= 1 || !theirs.is_ok_and(|t| (t.dev(), t.ino()) == (ours.dev(), ours.ino())) {
        return Err(refuse(format!(
            "process {pid} is not a jail of this ljspawn (one started by another ljspawn executable, e.g. before an upgrade, must be restarted first)"
        )));
    }
    Ok(())
}

/// The namespaces the jail made, from its plan (the jail's own options): the user namespace
/// when it has one, the network namespace unless `--net host`, and always mount, PID, UTS, IPC
/// and cgroup. (Not read from `/proc/PID/ns`: a rootless caller may not read the links of its
/// jail's PID 1, which never executed inside the jail.)
fn namespaces(plan: &Plan) -> i32 {
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP;
    if plan.userns.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    if plan.net != Net::Host {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// Moves this process into the jail's cgroups named `lightjail-<pid>` (v1 hierarchies and v2).
fn join_cgroups(pid: i32) -> Result<(), SpawnError> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| err(format!("cannot read /proc/{pid}/cgroup"), e))?;
    let me = sys::getpid().to_string();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        // The jail's own cgroups (`CALLER/lightjail-<pid>`, see `limits`) and ljail's freezer
        // (under `/lightjail/`), no other.
        let last = path.rsplit('/').next().unwrap_or("");
        let named = last
            .strip_prefix("lightjail-")
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(named || path.starts_with("/lightjail/")) || path.contains("/..") {
            continue;
        }
        // Each hierarchy wherever this host mounts it (the mount that shows the jail's cgroup).
        let dir = match controllers {
            "" => crate::limits::v2_dir(&mountinfo, path),
            c => crate::limits::v1_dir(&mountinfo, c, path),
        };
        let Some(dir) = dir else { continue };
        let procs = dir.join("cgroup.procs").display().to_string();
        match fs::write(&procs, &me) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(format!("cannot join the jail's cgroup {procs}"), e)),
        }
    }
    Ok(())
}

/// Rootless (`--delegate-cgroup` in a subtree delegated to the caller): moves this process into
/// the cgroup v2 of the jail's PID 1 when that is a jail's (`lightjail-N` or below it) and the
/// caller may (the kernel checks the delegation), so the joined command sees its cgroup inside
/// the jail's cgroup namespace. Best effort: elsewhere the command stays where it was.
fn join_own_v2_cgroup(pid: i32) {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return };
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else { return };
    if path.contains("/..") || !path.split('/').any(|c| c.starts_with("lightjail-")) {
        return;
    }
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else { return };
    let Some(dir) = crate::limits::v2_dir(&mountinfo, path) else { return };
    let _ = fs::write(dir.join("cgroup.procs"), sys::getpid().to_string());
}

/// Forwards signals to `child` until it exits (relaying the jail's pty, if any); its status
/// (128+N for signal N). The relay, dropped on the way out, restores the caller's terminal.
fn forward_until_exit(child: i32, mut relay: Option<pty::Relay>) -> Result<u8, SpawnError> {
    let sigfd: OwnedFd = match relay {
        None => sys::signalfd(),
        Some(_) => sys::signalfd_tty(),
    }
    .map_err(|e| err("cannot make a signalfd", e))?;
    let stdin = std::io::stdin();
    loop {
        if let Some((_, st)) = sys::wait_nohang(child).map_err(|e| err("cannot wait for the program", e))? {
            if let Some(r) = relay.as_mut() {
                r.drain();
            }
            return Ok(match st {
                WaitStatus::Exited(c) => c as u8,
                WaitStatus::Signaled(s) => 128u8.saturating_add(s as u8),
            });
        }
        let tty = match relay.as_ref() {
            None => {
                sys::poll_readable(&[sigfd.as_fd()], None).map_err(|e| err("cannot wait for signals", e))?;
                Vec::new()
            }
            Some(r) => {
                let mut fds = vec![(sigfd.as_fd(), libc::POLLIN)];
                r.poll_set(stdin.as_fd(), &mut fds);
                let rev = sys::poll_events(&fds, None).map_err(|e| err("cannot wait for signals", e))?;
                rev[1..].to_vec()
            }
        };
        while let Some((sig, _)) =
            sys::read_signalfd(sigfd.as_fd()).map_err(|e| err("cannot read signals", e))?
        {
            if relay.as_mut().is_some_and(|r| r.signal(sig)) {
                continue;
            }
            if sig != libc::SIGCHLD {
                let _ = sys::kill(child, sig);
            }
        }
        if let Some(r) = relay.as_mut() {
            r.ready(&tty);
        }
    }
}
