//! ljspawn's own process: clone the jail's PID 1 into its namespaces, relay signals, enforce
//! the timeout, report, and return the exit status.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use crate::jail::{self, Handover};
use crate::limits::{self, Cgroup, Tree};
use crate::net;
use crate::plan::{self, Mode, Net, Plan, Seccomp, UsernsSysctls};
use crate::sys::{self, WaitStatus};
use crate::{describe, EXIT_SETUP, EXIT_TIMEOUT};

/// A failure of ljspawn's own process: one line, and the exit status.
#[derive(Debug)]
pub struct SpawnError {
    pub code: u8,
    pub msg: String,
}

fn err(what: impl std::fmt::Display, e: io::Error) -> SpawnError {
    SpawnError { code: EXIT_SETUP, msg: format!("{what}: {}", describe(&e)) }
}

/// Opens `-O`/`-E` files as the caller, before any namespace exists.
fn open_output(p: &Path, flag: &str) -> Result<OwnedFd, SpawnError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOCTTY)
        .open(p)
        .map(OwnedFd::from)
        .map_err(|e| err(format!("cannot open {flag} {}", p.display()), e))
}

/// Runs the plan. Returns the exit status ljspawn should exit with and, for ljspawn's own
/// failures and the jail's setup failures, the one line to print.
pub fn run(
    plan: &Plan,
    json: Option<OwnedFd>,
    seccomp_extra: Option<Vec<u8>>,
    die_with_parent: Option<i32>,
) -> Result<u8, SpawnError> {
    let start = Instant::now();
    let setuid = plan.mode == Mode::Setuid;
    check_policy(plan)?;
    let (ruid, rgid) = (sys::getuid(), sys::getgid());
    // The caller's files are opened with the caller's filesystem ids.
    if setuid {
        sys::setfsids(ruid, rgid);
        if sys::fsids() != (ruid, rgid) {
            return Err(SpawnError { code: EXIT_SETUP, msg: "cannot switch to your filesystem ids".into() });
        }
    }
    let stdout = plan.stdout_file.as_deref().map(|p| open_output(p, "-O")).transpose()?;
    let stderr = plan.stderr_file.as_deref().map(|p| open_output(p, "-E")).transpose()?;
    if setuid {
        sys::setfsids(0, 0);
    }
    let json = json.map(Json);
    // The jail's cgroup is made before the jail, and its PID 1 is moved in before it starts
    // the program (it waits for the go byte).
    let cgroup = if plan.limits.is_empty() { None } else { Some(make_cgroup(plan)?) };

    sys::block_signals().map_err(|e| err("cannot block signals", e))?;
    let (status_r, status_w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    let (exit_r, exit_w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    // Setuid mode: the jail waits on this pipe until its maps are written.
    let (maps_r, maps_w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    // The common case (no setuid, no network device, no cgroup, no --json-status): creating
    // a network namespace costs about 0.3 ms, so ljspawn makes it itself, after the clone,
    // while the jail sets up its mounts on the other CPU; the jail joins it when ready. For
    // the namespace to belong to the jail's user namespace, ljspawn enters that one first.
    let parallel_net = plan.net == Net::None
        && matches!(plan.mode, Mode::Root | Mode::Rootless)
        && plan.json_status.is_none()
        && plan.limits.is_empty();
    let mut flags = plan.clone_flags();
    // With a cgroup, the jail makes its cgroup namespace once it is in that cgroup (after the
    // go byte), so the jail sees its own cgroup as `/`.
    if cgroup.is_some() {
        flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    let mut net_join = None;
    let mut net_ready = None;
    if parallel_net {
        flags &= !(libc::CLONE_NEWNET as u64);
        if let Some(m) = &plan.userns {
            flags &= !(libc::CLONE_NEWUSER as u64);
            sys::unshare(libc::CLONE_NEWUSER).map_err(|e| userns_failure(plan, e))?;
            jail::write_maps("/proc/self", m).map_err(|(file, e)| err(format!("cannot write {file}"), e))?;
        }
        let me = sys::pidfd_open(sys::getpid()).map_err(|e| err("cannot open a pidfd", e))?;
        let (r, w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
        net_join = Some((me, r));
        net_ready = Some(w);
    }
    // PID 1 sets up with umask 0 (modes are given explicitly); the program gets ours back.
    let umask = sys::umask(0);
    let pid = match sys::clone_fork(flags) {
        Ok(0) => {
            drop((status_r, exit_r, maps_w, json, net_ready));
            let h = Handover {
                status: status_w,
                exit: exit_w,
                maps: maps_r,
                stdout,
                stderr,
                seccomp_extra,
                maps_written: parallel_net && plan.userns.is_some(),
                cgroupns_late: cgroup.is_some(),
                net_join,
            };
            jail::pid1(plan, h, umask)
        }
        Ok(pid) => pid,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            return Err(if plan.userns.is_some() && !parallel_net {
                userns_failure(plan, e)
            } else {
                err("cannot create the jail's namespaces", e)
            });
        }
    };
    // A failure from here on kills the jail (and, unless a setuid reaper owns it, removes its
    // cgroup once the jail is gone).
    let abort = |e: SpawnError, reaped: bool| {
        let _ = sys::kill(pid, libc::SIGKILL);
        if let (Some(cg), false) = (&cgroup, reaped) {
            let _ = sys::wait_blocking(pid);
            let _ = cg.remove();
        }
        e
    };
    drop(net_join);
    if let Some(ready) = net_ready {
        let made = sys::unshare(libc::CLONE_NEWNET)
            .map_err(|e| err("cannot create the jail's network namespace", e))
            .and_then(|()| sys::loopback_up().map_err(|e| err("cannot bring up the loopback interface", e)));
        if let Err(e) = made {
            return Err(abort(e, false));
        }
        let _ = sys::write_all(ready.as_fd(), b"n");
    }
    sys::umask(umask);
    drop((status_w, exit_w, maps_r, stdout, stderr));
    // The jail waits for the go byte when the maps are ours to write (setuid) or when its
    // namespace ids must be read before it makes itself undumpable (--json-status).
    if setuid {
        // The privilege phase: write the jail's maps, then drop every privilege for good.
        let written = plan.userns.as_ref().map_or(Ok(()), |m| jail::write_maps(&format!("/proc/{pid}"), m));
        if let Err(e) = written.map_err(|(file, e)| err(format!("cannot write the jail's {file}"), e)) {
            return Err(abort(e, false));
        }
    }
    if let Err(e) = plumb(plan, pid) {
        return Err(abort(e, false));
    }
    if let Some(cg) = &cgroup {
        let added = cg.add(pid).map_err(|e| SpawnError { code: EXIT_SETUP, msg: e.to_string() });
        // Setuid: only root may remove the cgroup, and ljspawn is about to stop being root.
        let reaper = if setuid { spawn_reaper(cg) } else { Ok(()) };
        if let Err(e) = added.and(reaper) {
            return Err(abort(e, false));
        }
    }
    if let Some(j) = &json {
        j.started(pid, plan.userns.is_some());
    }
    if setuid {
        // From here on the reaper (if any) removes the cgroup: ljspawn cannot any more.
        if let Err(e) = drop_privileges(ruid, rgid) {
            return Err(abort(e, true));
        }
        if let Some(parent) = die_with_parent {
            let again = sys::set_pdeathsig(libc::SIGKILL);
            if again.is_err() || sys::getppid() != parent {
                let gone = SpawnError { code: EXIT_SETUP, msg: "the parent process is gone".into() };
                return Err(abort(gone, true));
            }
        }
    }
    let _ = sys::write_all(maps_w.as_fd(), b"m");
    drop(maps_w);

    // The status pipe: empty at end-of-file when the program was executed; else one failure.
    let mut msg = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match sys::read(status_r.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => msg.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    drop(status_r);

    let sigfd = sys::signalfd().map_err(|e| err("cannot make a signalfd", e))?;
    let mut timed_out = false;
    let mut deadline = plan.timeout.map(|t| start + t);
    let code = loop {
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ready = sys::poll_readable(&[sigfd.as_fd(), exit_r.as_fd()], wait)
            .map_err(|e| err("cannot wait for the jail", e))?;
        if ready[1] {
            let mut b = [0u8; 1];
            match sys::read(exit_r.as_fd(), &mut b) {
                // PID 1 reported: every process of the jail is gone.
                Ok(1) => break b[0],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // PID 1 died without reporting (killed, or failed during setup).
                _ => match sys::wait_blocking(pid).map_err(|e| err("cannot wait for the jail", e))?.1 {
                    WaitStatus::Exited(c) => break c as u8,
                    WaitStatus::Signaled(s) => break 128u8.saturating_add(s as u8),
                },
            }
        }
        if ready[0] {
            while let Some((sig, _)) =
                sys::read_signalfd(sigfd.as_fd()).map_err(|e| err("cannot read signals", e))?
            {
                if sig != libc::SIGCHLD {
                    let _ = sys::kill(pid, sig);
                }
            }
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                // The deadline passed: SIGTERM to the jail, then SIGKILL after the grace period.
                if timed_out {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    deadline = None;
                } else {
                    timed_out = true;
                    let _ = sys::kill(pid, libc::SIGTERM);
                    deadline = Some(Instant::now() + plan.kill_after);
                }
            }
        }
    };
    let code = if timed_out { EXIT_TIMEOUT } else { code };
    if let Some(cg) = &cgroup {
        // The cgroup can go once PID 1 is gone (the program and the rest already are).
        let _ = sys::wait_blocking(pid);
        if cg.oom_killed() {
            eprintln!(
                "ljspawn: note: the jail reached its memory limit and the OOM killer killed a process in it"
            );
        }
        if !setuid {
            if let Err(e) = cg.remove() {
                eprintln!("ljspawn: {e}");
            }
        }
    }
    if timed_out && msg.is_empty() {
        let t = plan.timeout.unwrap_or_default();
        msg = format!("{EXIT_TIMEOUT}\ttimed out after {t:?}: the jail was sent SIGTERM (SIGKILL after a {:?} grace period)", plan.kill_after)
            .into_bytes();
    }
    if let Some(j) = &json {
        j.exited(code);
    }
    if !msg.is_empty() {
        let text = String::from_utf8_lossy(&msg);
        let (c, line) = text.split_once('\t').unwrap_or(("125", &text));
        return Err(SpawnError { code: c.parse().unwrap_or(EXIT_SETUP), msg: line.trim_end().to_string() });
    }
    Ok(code)
}

/// A failed user namespace, explained (see `plan::userns_hint`).
fn userns_failure(plan: &Plan, e: io::Error) -> SpawnError {
    match e.raw_os_error() {
        Some(n @ (libc::EPERM | libc::EACCES | libc::ENOSPC)) => SpawnError {
            code: EXIT_SETUP,
            msg: format!(
                "cannot create a user namespace: {}",
                plan::userns_hint(n, plan.mode, &userns_sysctls())
            ),
        },
        _ => err("cannot create the jail's user namespace", e),
    }
}

/// Refuses, here in the code that acts, what the caller's mode does not allow, whatever the
/// plan says (the plan checks the same rules; this is the second look).
fn check_policy(plan: &Plan) -> Result<(), SpawnError> {
    if plan.mode == Mode::Root {
        return Ok(());
    }
    let refuse = |what: &str| {
        Err(SpawnError { code: EXIT_SETUP, msg: format!("{what} is not allowed in {} mode", plan.mode) })
    };
    if plan.userns.is_none() {
        return refuse("a jail without a user namespace");
    }
    if !plan.caps.is_empty() {
        return refuse("--cap-add");
    }
    if plan.seccomp == Seccomp::None {
        return refuse("--seccomp none");
    }
    let granted = match &plan.net {
        Net::Bridge { bridge, .. } => Some(plan.grants.bridges.contains(bridge)),
        Net::Macvlan { parent, .. } => Some(plan.grants.macvlans.contains(parent)),
        Net::None | Net::Host => None,
    };
    if granted == Some(false) || (granted.is_some() && plan.mode != Mode::Setuid) {
        return refuse("this network mode");
    }
    if plan.mode == Mode::Rootless && plan.userns.as_ref().is_some_and(|m| m.by_parent) {
        return refuse("privileged id maps");
    }
    Ok(())
}

/// Finds the cgroup hierarchies, removes cgroups of ljspawns that died without cleaning up
/// (root and setuid), and makes this jail's.
fn make_cgroup(plan: &Plan) -> Result<Cgroup, SpawnError> {
    let fail = |e: limits::LimitError| SpawnError { code: EXIT_SETUP, msg: e.to_string() };
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| err(format!("cannot read {p}"), e));
    let tree = Tree::real();
    let layout =
        limits::detect(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?, &tree, &plan.limits)
            .map_err(fail)?;
    let rootless = (plan.mode == Mode::Rootless).then(sys::getuid);
    if rootless.is_none() {
        limits::reap_stale(&layout, &tree, Path::new("/proc"));
    }
    Cgroup::create(&layout, &tree, &format!("lightjail-{}", sys::getpid()), &plan.limits, rootless)
        .map_err(fail)
}

/// Setuid mode: a process that stays root, takes nothing from anyone, and removes the jail's
/// cgroup once ljspawn (about to drop its privileges) has exited. Its real uid is root, so the
/// caller cannot signal it.
fn spawn_reaper(cg: &Cgroup) -> Result<(), SpawnError> {
    let (r, w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    match sys::fork().map_err(|e| err("cannot start the cgroup reaper", e))? {
        0 => {
            let _ = sys::setresgid(0);
            let _ = sys::setresuid(0);
            let _ = sys::close_fds_except(&[r.as_raw_fd()]);
            // End of file: every copy of the write end is closed, so ljspawn has exited.
            let mut b = [0u8; 1];
            while matches!(sys::read(r.as_fd(), &mut b), Ok(n) if n > 0) {}
            let _ = cg.remove();
            sys::exit_now(0)
        }
        _ => {
            // Kept open, never written, until ljspawn exits.
            std::mem::forget(w);
            Ok(())
        }
    }
}

/// Creates the jail's eth0 from the host side (bridge: veth pair; macvlan), root only.
fn plumb(plan: &Plan, pid: i32) -> Result<(), SpawnError> {
    match &plan.net {
        Net::Bridge { bridge, .. } => {
            let no_bridge =
                || SpawnError { code: EXIT_SETUP, msg: format!("--net bridge:{bridge}: no such bridge") };
            let idx = net::host_ifindex(bridge).map_err(|_| no_bridge())?;
            net::request(&net::veth_msg(&format!("lj{pid}"), idx, pid)).map_err(|e| match e.raw_os_error() {
                // Enslaving to something that is not a bridge (or another master kind).
                Some(libc::EOPNOTSUPP | libc::EINVAL) => SpawnError {
                    code: EXIT_SETUP,
                    msg: format!("--net bridge:{bridge}: {bridge} is not a bridge"),
                },
                _ => err(format!("cannot plug the jail into bridge {bridge}"), e),
            })
        }
        Net::Macvlan { parent, .. } => {
            let idx = net::host_ifindex(parent).map_err(|e| err(format!("--net macvlan:{parent}"), e))?;
            net::request(&net::macvlan_msg(idx, pid))
                .map_err(|e| err(format!("cannot make a macvlan on {parent}"), e))
        }
        Net::None | Net::Host => Ok(()),
    }
}

/// Drops every privilege of a setuid ljspawn for good, and checks that they are gone.
pub fn drop_privileges(uid: u32, gid: u32) -> Result<(), SpawnError> {
    let fail = |what: &str, e: io::Error| err(format!("cannot drop privileges ({what})"), e);
    sys::setresgid(gid).map_err(|e| fail("gid", e))?;
    sys::setresuid(uid).map_err(|e| fail("uid", e))?;
    let caps = sys::capget().map_err(|e| fail("capabilities", e))?;
    if sys::getresids() != (uid, uid, uid, gid, gid, gid) || caps != (0, 0, 0) || sys::setresuid(0).is_ok() {
        return Err(SpawnError {
            code: EXIT_SETUP,
            msg: "privileges are still held after dropping them".into(),
        });
    }
    Ok(())
}

fn userns_sysctls() -> UsernsSysctls {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok());
    UsernsSysctls {
        unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
        max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
        apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
    }
}

/// `--json-status`: bwrap-compatible JSON lines.
struct Json(OwnedFd);

impl Json {
    fn started(&self, pid: i32, userns: bool) {
        let mut line = format!("{{\"child-pid\": {pid}");
        let mut kinds =
            vec![("cgroup", "cgroup"), ("ipc", "ipc"), ("mnt", "mnt"), ("net", "net"), ("pid", "pid")];
        if userns {
            kinds.push(("user", "user"));
        }
        kinds.push(("uts", "uts"));
        for (file, key) in kinds {
            if let Some(id) = ns_id(pid, file) {
                line.push_str(&format!(", \"{key}-namespace\": {id}"));
            }
        }
        line.push_str("}\n");
        let _ = sys::write_all(self.0.as_fd(), line.as_bytes());
    }

    fn exited(&self, code: u8) {
        let _ = sys::write_all(self.0.as_fd(), format!("{{\"exit-code\": {code}}}\n").as_bytes());
    }
}

/// The inode number of `/proc/PID/ns/KIND` (what `lsns` and bwrap print as the namespace id).
fn ns_id(pid: i32, kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
}
