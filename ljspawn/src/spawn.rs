//! ljspawn's own process: clone the jail's PID 1 into its namespaces, relay signals, enforce
//! the timeout, report, and return the exit status.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use crate::jail::{self, Handover};
use crate::limits::{Born, Cgroup};
use crate::pasta;
use crate::plan::{self, Mode, Net, Plan, UsernsSysctls};
use crate::privileged::{Outputs, Privileged};
use crate::pty;
use crate::sys::{self, WaitStatus};
use crate::{describe, EXIT_SETUP, EXIT_TIMEOUT};

/// A failure of ljspawn's own process: one line, and the exit status.
#[derive(Debug)]
pub struct SpawnError {
    pub code: u8,
    pub msg: String,
}

pub(crate) fn err(what: impl std::fmt::Display, e: io::Error) -> SpawnError {
    SpawnError { code: EXIT_SETUP, msg: format!("{what}: {}", describe(&e)) }
}

/// Runs the plan, in DESIGN.md's operation order (sanitizing and parsing were done by `main`).
/// Returns the exit status ljspawn should exit with and, for ljspawn's own failures and the
/// jail's setup failures, the one line to print.
pub fn run(
    plan: &Plan,
    json: Option<OwnedFd>,
    inputs: jail::Inputs,
    die_with_parent: Option<i32>,
) -> Result<u8, SpawnError> {
    // --timeout runs from here. (The clock only then: its first read sets up the vDSO's.)
    let deadline = plan.timeout.map(|t| Instant::now() + t);
    // What each --pass-fd is now, before ljspawn opens anything of its own.
    let passed = passed_fds(plan)?;
    let json = json.map(Json);
    // The privilege phase, up to the clone: what a setuid ljspawn does as root beforehand.
    let window = Privileged::enter(plan)?;
    let outputs = window.open_outputs(plan)?;
    // The jail's cgroup is made before the jail, whose PID 1 is born in it (`clone_born`) or,
    // where it cannot be, moved in before it starts the program (it waits for the go byte).
    let cgroup = window.make_cgroup(plan)?;
    let idmapped = match window.idmap_layers(plan) {
        Ok(v) => v,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            return Err(e);
        }
    };
    let mut jail = clone_jail(plan, outputs, inputs, idmapped, passed, cgroup.as_ref())?;
    // The rest of the privilege phase, then the drop: maps, network device, cgroup, reaper.
    let held =
        jail.finish_net().and_then(|()| window.setup_jail(plan, jail.pid, cgroup.as_ref(), &jail.born));
    if let Err(e) = held {
        return Err(jail.abort(e, cgroup.as_ref()));
    }
    // Not privileged: pasta runs as the caller (root mode: root), never in setuid mode.
    let pasta = match plan.net {
        Net::Pasta => match pasta::start(plan, jail.pid) {
            Ok(p) => Some(p),
            Err(e) => return Err(jail.abort(e, cgroup.as_ref())),
        },
        _ => None,
    };
    if let Some(i) = jail.info.take().map(Json) {
        // bwrap's --info-fd: its JSON object (child pid, namespaces), then end-of-file (the jail
        // closed its copy).
        i.started(jail.pid, plan.userns.is_some(), true);
    }
    if let Some(j) = &json {
        j.started(jail.pid, plan.userns.is_some(), false);
    }
    // From here on the reaper (if any) removes the cgroup: ljspawn cannot any more.
    let dropped = match plan.userns.as_ref().filter(|_| jail.net_in_jail) {
        None => window.drop(die_with_parent),
        // Setuid, parallel network: the jail's maps are written, so it may start its setup
        // while ljspawn enters its user namespace and makes its network there.
        Some(map) => {
            jail.send_maps();
            window.drop_into_jail(jail.pid, map, die_with_parent, || jail.make_net())
        }
    };
    if let Err(e) = dropped {
        return Err(jail.abort_setup(e));
    }
    if let Some(b) = jail.userns_block.take() {
        // bwrap's --userns-block-fd: the caller read the jail's pid from --info-fd and writes
        // its id maps; a byte (or end-of-file) here says it is done.
        let mut byte = [0u8; 1];
        while let Err(e) = sys::read(b.as_fd(), &mut byte) {
            if e.kind() != io::ErrorKind::Interrupted {
                break;
            }
        }
    }
    let mut setup = jail.go();
    // fd 0 is a terminal: the caller's terminal is relayed to the jail's own pty from here on,
    // and restored when `relay` is dropped, whichever way this returns.
    let mut relay = match setup.pty.take() {
        Some(sock) if setup.msg.is_empty() => {
            pty::Relay::start(sock, plan.stdout_file.is_some(), plan.stderr_file.is_some())
                .map_err(|e| err("cannot relay the jail's terminal", e))?
        }
        _ => None,
    };
    let (code, timed_out) = supervise(plan, &setup, deadline, relay.as_mut())?;
    if let Some(r) = relay.as_mut() {
        r.drain();
    }
    drop(relay);
    clean_up(plan, setup.pid, cgroup.as_ref());
    drop(pasta);
    report(plan, setup.msg, code, timed_out, json.as_ref())
}

/// Each `--pass-fd` and what it is (device, inode): the program gets it only if it is still that.
pub(crate) fn passed_fds(plan: &Plan) -> Result<Vec<jail::PassedFd>, SpawnError> {
    plan.pass_fds
        .iter()
        .map(|&fd| match sys::fd_stat(fd) {
            Ok((st, _)) => Ok((fd, (st.st_dev, st.st_ino))),
            Err(e) => Err(err(format!("--pass-fd {fd}"), e)),
        })
        .collect()
}

/// The jail's PID 1, cloned and waiting for the go byte, and ljspawn's ends of its pipes.
struct Cloned {
    pid: i32,
    /// The directories of the jail's cgroup its PID 1 was born in (the rest: moved in by pid).
    born: Born,
    status_r: OwnedFd,
    exit_r: OwnedFd,
    maps_w: OwnedFd,
    /// The maps byte was sent (see `send_maps`).
    maps_sent: bool,
    /// Parallel network namespace (see `clone_jail`): made by ljspawn after the clone, sent
    /// on this socket.
    net_ready: Option<OwnedFd>,
    /// Setuid: the network namespace is made once ljspawn is in the jail's user namespace.
    net_in_jail: bool,
    umask: u32,
    /// bwrap's `--info-fd`, written once the jail runs.
    info: Option<OwnedFd>,
    /// ljspawn's end of the socket the jail's pty master comes on (see `pty`).
    pty: Option<OwnedFd>,
    /// bwrap's `--userns-block-fd`, read before the go byte.
    userns_block: Option<OwnedFd>,
}

/// The jail started the program (or failed to): its setup failure, if any, and the exit pipe.
struct Started {
    pid: i32,
    exit_r: OwnedFd,
    msg: Vec<u8>,
    pty: Option<OwnedFd>,
}

/// Clones the jail's PID 1 into its namespaces; it sets itself up and waits for the go byte.
fn clone_jail(
    plan: &Plan,
    outputs: Outputs,
    mut inputs: jail::Inputs,
    idmapped: Vec<Option<OwnedFd>>,
    passed: Vec<jail::PassedFd>,
    cgroup: Option<&Cgroup>,
) -> Result<Cloned, SpawnError> {
    let remove = |e: SpawnError| {
        if let Some(cg) = cgroup {
            let _ = cg.remove();
        }
        e
    };
    sys::block_signals().map_err(|e| remove(err("cannot block signals", e)))?;
    let pipe = || sys::pipe().map_err(|e| remove(err("cannot make a pipe", e)));
    let (status_r, status_w) = pipe()?;
    let (exit_r, exit_w) = pipe()?;
    // Setuid mode: the jail waits on this pipe until its maps are written.
    let (maps_r, maps_w) = pipe()?;
    // fd 0 is a terminal: the jail sends its pty's master back on this socket.
    let (pty_ours, pty_theirs) = if plan.pty {
        let (a, b) = sys::socketpair().map_err(|e| remove(err("cannot make a socket pair", e)))?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    // The common case (no network device, no cgroup, no --json-status): creating a network
    // namespace costs about 0.5 ms, so ljspawn makes it itself, after the clone, while the
    // jail sets up its mounts on the other CPU, and sends it to the jail to join. For the
    // namespace to belong to the jail's user namespace, ljspawn is in that one first: root and
    // rootless make it here (the jail is cloned into it); setuid enters the jail's once its
    // maps are written, which ends its privileges (`Privileged::drop_into_jail`).
    let parallel_net = plan.net == Net::None
        && plan.json_status.is_none()
        && plan.userns_block_fd.is_none()
        && plan.limits.is_empty()
        && !plan.delegate_cgroup
        // (A sysfs is made in the jail's network namespace, before the parallel one is ready.)
        && !plan.mounts.iter().any(|m| matches!(m, plan::Mount::Sysfs { .. }))
        && match plan.mode {
            Mode::Root | Mode::Rootless => plan.userns.as_ref().is_none_or(|m| !m.by_parent),
            Mode::Setuid => plan.userns.as_ref().is_some_and(|m| m.by_parent && !m.helper),
        };
    let net_in_jail = parallel_net && plan.mode == Mode::Setuid;
    let mut flags = plan.clone_flags();
    // With a cgroup, the jail makes its cgroup namespace once it is in that cgroup (after the
    // go byte), so the jail sees its own cgroup as `/`.
    if cgroup.is_some() {
        flags &= !(libc::CLONE_NEWCGROUP as u64);
    }
    let mut net_join = None;
    let mut net_ready = None;
    let own_userns = parallel_net && !net_in_jail && plan.userns.is_some();
    if parallel_net {
        flags &= !(libc::CLONE_NEWNET as u64);
        if let Some(m) = plan.userns.as_ref().filter(|_| own_userns) {
            flags &= !(libc::CLONE_NEWUSER as u64);
            sys::unshare(libc::CLONE_NEWUSER).map_err(|e| userns_failure(plan, e))?;
            jail::write_maps("/proc/self", m).map_err(|(file, e)| err(format!("cannot write {file}"), e))?;
        }
        let (ours, theirs) = sys::socketpair().map_err(|e| err("cannot make a socket pair", e))?;
        net_join = Some(theirs);
        net_ready = Some(ours);
    }
    if let Some(ns) = inputs.userns.take() {
        // bwrap's --userns: the jail's namespaces are made inside that one (rootless or root:
        // the plan and the privileged side refuse it in setuid mode).
        sys::setns(ns.as_fd(), libc::CLONE_NEWUSER).map_err(|e| {
            remove(err(
                if e.raw_os_error() == Some(libc::EINVAL) {
                    "cannot join the --userns user namespace (it might not be a descendant of yours)"
                } else {
                    "cannot join the --userns user namespace"
                },
                e,
            ))
        })?;
    }
    if let Some(ns) = inputs.pidns.take() {
        // bwrap's --pidns: ljspawn's children are made in that PID namespace from here on, so
        // the jail is one of its processes (or, with --unshare-pid, makes one nested in it).
        // The kernel asks CAP_SYS_ADMIN in the namespace's owner: root, or rootless inside
        // the --userns joined above (the plan and the privileged side refuse it in setuid mode).
        sys::setns(ns.as_fd(), libc::CLONE_NEWPID).map_err(|e| {
            remove(err(
                match e.raw_os_error() {
                    Some(libc::EINVAL) => {
                        "cannot join the --pidns PID namespace (not a PID namespace, or not one below yours)"
                    }
                    Some(libc::EPERM) => {
                        "cannot join the --pidns PID namespace (it needs --userns with the user namespace that owns it, unless root)"
                    }
                    _ => "cannot join the --pidns PID namespace",
                },
                e,
            ))
        })?;
    }
    // PID 1 sets up with umask 0 (modes are given explicitly); the program gets ours back.
    let umask = sys::umask(0);
    // --pidns with --unshare-pid: the kernel makes a PID namespace only under the caller's
    // active one, so a process in the joined namespace clones the jail (see `fork_nested`).
    let nested = plan.join_pidns.is_some() && plan.own_pidns;
    let cloned = match cgroup {
        // (Nested: the intermediate process clones it; moved in by pid, as before.)
        // (A failure here is ljspawn stuck in the jail's cgroup: its directories are removed
        // all the same, all but those it is in, which `remove` leaves to the setuid reaper or
        // the next run's `reap_stale`; ljspawn is never killed, `kill_all` skips it.)
        Some(cg) if !nested => clone_born(flags, cg).inspect_err(|_| {
            let _ = cg.remove();
        })?,
        _ => (if nested { fork_nested(flags) } else { sys::clone_fork(flags) }, Born::default()),
    };
    let (pid, born) = match cloned {
        (Ok(0), _) => {
            drop((
                status_r,
                exit_r,
                maps_w,
                net_ready,
                inputs.info.take(),
                inputs.userns_block.take(),
                pty_ours,
            ));
            let h = Handover {
                status: status_w,
                exit: exit_w,
                maps: maps_r,
                stdout: outputs.stdout,
                stderr: outputs.stderr,
                inputs,
                maps_written: own_userns,
                cgroupns_late: cgroup.is_some(),
                net_join,
                idmapped,
                passed,
                pty: pty_theirs,
            };
            jail::pid1(plan, h, umask)
        }
        (Ok(pid), born) => {
            // Parallel network: the kernel mostly starts the jail on ljspawn's CPU, where it
            // would wait while ljspawn makes the network namespace, the other CPUs idle.
            if parallel_net {
                if let Err(e) = step_aside(pid) {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    let _ = sys::wait_blocking(pid);
                    return Err(remove(err("cannot give the jail the caller's CPUs back", e)));
                }
            }
            (pid, born)
        }
        (Err(e), _) => {
            return Err(remove(if plan.userns.is_some() && !own_userns {
                userns_failure(plan, e)
            } else {
                err("cannot create the jail's namespaces", e)
            }));
        }
    };
    drop((net_join, status_w, exit_w, maps_r, outputs, idmapped, pty_theirs));
    drop((inputs.block.take(), inputs.userns2.take()));
    Ok(Cloned {
        pid,
        born,
        status_r,
        exit_r,
        maps_w,
        maps_sent: false,
        net_ready,
        net_in_jail,
        umask,
        info: inputs.info.take(),
        userns_block: inputs.userns_block.take(),
        pty: pty_ours,
    })
}

/// Clones the jail's PID 1 born in its cgroup `cg` where it can be (`Cgroup::prepare_birth`:
/// cgroup v2 by `CLONE_INTO_CGROUP`; v1 with ljspawn in the jail's cgroup for the clone, and
/// back in its own at once). A clone that fails so (a kernel without `clone3` or its cgroup
/// field, a filter refusing `clone3`, or the limits themselves, e.g. `--pids 1` on v1 while
/// ljspawn is counted there too) is made again plainly, the jail then moved in by pid as
/// before; a failure of that clone is the one reported. Returns the clone's result (0 in the
/// jail) and the directories the jail was born in. ljspawn left in the jail's cgroup (the move
/// back failed): the jail is killed and the spawn fails, saying so (ljspawn still counts against
/// the jail's limits there, and the cgroup cannot be removed until it exits: a setuid reaper
/// or the next run's `reap_stale` removes it then).
fn clone_born(flags: u64, cg: &Cgroup) -> Result<(io::Result<i32>, Born), SpawnError> {
    let fail = |e: crate::limits::LimitError| SpawnError { code: EXIT_SETUP, msg: e.to_string() };
    let birth = cg.prepare_birth().map_err(fail)?;
    let first = match birth.cgroup_fd() {
        Some(fd) => sys::clone_into_cgroup(flags, fd),
        None => sys::clone_fork(flags),
    };
    if let Ok(0) = first {
        // The jail: its copy of the directory's descriptor goes now (it is close-on-exec too).
        drop(birth);
        return Ok((first, Born::default()));
    }
    let tried = birth.any();
    let born = cg.return_from(birth);
    match (first, born) {
        (Ok(pid), Ok(born)) => Ok((Ok(pid), born)),
        (Ok(pid), Err(e)) => {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
            Err(fail(e))
        }
        (Err(_), Ok(_)) if tried => Ok((sys::clone_fork(flags), Born::default())),
        (Err(e), Ok(_)) => Ok((Err(e), Born::default())),
        (Err(_), Err(e)) => Err(fail(e)),
    }
}

/// Clones the jail (`flags`, a new PID namespace among them) from an intermediate process in
/// the PID namespace ljspawn joined, as bwrap does; `CLONE_PARENT` makes the jail ljspawn's own
/// child (waited for, tied to it by the parent-death signal). Returns 0 in the jail, its pid
/// as ljspawn sees it in ljspawn (the intermediate sends a pidfd: the kernel translates).
fn fork_nested(flags: u64) -> io::Result<i32> {
    let (ours, theirs) = sys::socketpair()?;
    match sys::clone_fork(0)? {
        0 => {
            drop(ours);
            match sys::clone_fork(flags | libc::CLONE_PARENT as u64) {
                Ok(0) => {
                    drop(theirs);
                    Ok(0)
                }
                Ok(pid) => {
                    let sent = sys::pidfd_open(pid).and_then(|fd| sys::send_fd(theirs.as_fd(), fd.as_fd()));
                    if sent.is_err() {
                        let _ = sys::kill(pid, libc::SIGKILL);
                    }
                    sys::exit_now(sent.map_or(libc::EIO, |()| 0))
                }
                // The clone's errno as the exit status (it is below 256).
                Err(e) => sys::exit_now(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
        mid => {
            drop(theirs);
            let status = sys::wait_blocking(mid)?.1;
            let pidfd = sys::recv_fd(ours.as_fd());
            match (status, pidfd) {
                (WaitStatus::Exited(0), Ok(Some(fd))) => pidfd_pid(&fd),
                (WaitStatus::Exited(n), _) if n != 0 => Err(io::Error::from_raw_os_error(n)),
                _ => Err(io::Error::other("the intermediate process died")),
            }
        }
    }
}

/// The pid (in ljspawn's PID namespace) a pidfd refers to: `PIDFD_GET_INFO` answers in the
/// caller's namespace (Linux 6.13); before it, `/proc/self/fdinfo`'s `NSpid:` at ljspawn's own
/// depth (its `Pid:` is in the namespace of the /proc mount, which may be an ancestor's, as
/// under `unshare --pid --fork` without a /proc of its own).
fn pidfd_pid(fd: &OwnedFd) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    match sys::pidfd_get_pid(fd.as_fd()) {
        Err(e) if ioctl_unanswered(&e) => {}
        r => return r,
    }
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    pid_at_own_depth(&info, &status).ok_or_else(|| io::Error::other("no pid in the jail's pidfd"))
}

/// Whether `PIDFD_GET_INFO` failed for want of the ioctl, not of the pid: unknown to the
/// kernel (ENOTTY, EINVAL), or refused by a caller's seccomp filter or a sandbox kernel such as
/// gVisor's (EPERM, ENOSYS, EOPNOTSUPP).
fn ioctl_unanswered(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTTY | libc::EINVAL | libc::EPERM | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// From a pidfd's `/proc/self/fdinfo` and `/proc/self/status` (one /proc mount): the pidfd's
/// pid in this process's PID namespace. Both `NSpid:` lines list a pid per namespace from the
/// /proc mount's down to the process's own, so this process's depth is its line's length.
fn pid_at_own_depth(fdinfo: &str, status: &str) -> Option<i32> {
    let nspid = |text: &str| -> Vec<i32> {
        let line = text.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or("");
        line.split_whitespace().map_while(|p| p.parse().ok()).collect()
    };
    let depth = nspid(status).len().checked_sub(1)?;
    nspid(fdinfo).get(depth).copied().filter(|&p| p > 0)
}

impl Cloned {
    /// Parallel network (root, rootless): makes the jail's network namespace now.
    fn finish_net(&self) -> Result<(), SpawnError> {
        sys::umask(self.umask);
        if self.net_in_jail {
            return Ok(());
        }
        self.make_net()
    }

    /// Parallel network: makes the jail's network namespace (ljspawn moves into it), loopback
    /// up, and sends it to the jail to join.
    fn make_net(&self) -> Result<(), SpawnError> {
        let Some(sock) = &self.net_ready else { return Ok(()) };
        sys::unshare(libc::CLONE_NEWNET).map_err(|e| err("cannot create the jail's network namespace", e))?;
        let lo = sys::loopback_up_socket().map_err(|e| err("cannot bring up the loopback interface", e))?;
        // (A kernel or sandbox that does not answer SIOCGSKNS, gVisor's, or a caller's filter
        // refusing it: the same namespace through /proc, as before.)
        let netns = match sys::socket_netns(lo.as_fd()) {
            Err(e) if ioctl_unanswered(&e) => std::fs::File::open("/proc/self/ns/net").map(OwnedFd::from),
            r => r,
        }
        .map_err(|e| err("cannot open the jail's network namespace", e))?;
        drop(lo);
        // A jail that failed its setup is gone: its own message says why (see `go`).
        let _ = sys::send_fd(sock.as_fd(), netns.as_fd());
        Ok(())
    }

    /// The maps byte: the jail's maps are written (setuid), it may become the caller there.
    fn send_maps(&mut self) {
        if !self.maps_sent {
            let _ = sys::write_all(self.maps_w.as_fd(), b"m");
            self.maps_sent = true;
        }
    }

    /// A failure before the go byte kills the jail and, given its cgroup (none once a setuid
    /// reaper owns it), removes the cgroup once the jail is gone.
    fn abort(&self, e: SpawnError, cgroup: Option<&Cgroup>) -> SpawnError {
        let _ = sys::kill(self.pid, libc::SIGKILL);
        if let Some(cg) = cgroup {
            let _ = sys::wait_blocking(self.pid);
            let _ = cg.remove();
        }
        e
    }

    /// ljspawn failed after the jail got its maps and started its setup: the jail is killed
    /// and reaped, and its own failure is reported when it wrote one first, since that is the
    /// cause (a jail whose setup failed is gone, so entering its user namespace fails too).
    fn abort_setup(&self, e: SpawnError) -> SpawnError {
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::wait_blocking(self.pid);
        // PID 1 is reaped: what it wrote is in the pipe; never wait for more.
        let mut msg = Vec::new();
        let mut buf = [0u8; 512];
        if sys::set_nonblocking(self.status_r.as_fd()).is_ok() {
            loop {
                match sys::read(self.status_r.as_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => msg.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if msg.is_empty() {
            e
        } else {
            jail_failure(&msg)
        }
    }

    /// Sends the go byte and waits until the program is executed or the jail failed.
    fn go(mut self) -> Started {
        self.send_maps();
        let Cloned { pid, status_r, exit_r, maps_w, net_ready, pty, .. } = self;
        drop((net_ready, maps_w));
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
        Started { pid, exit_r, msg, pty }
    }
}

/// Relays signals to the jail and enforces the timeout until its PID 1 reports the program's
/// exit status (or dies without reporting). With a pty, relays the terminal too. Returns the
/// status and whether the timeout hit.
fn supervise(
    plan: &Plan,
    jail: &Started,
    mut deadline: Option<Instant>,
    mut relay: Option<&mut pty::Relay>,
) -> Result<(u8, bool), SpawnError> {
    let pid = jail.pid;
    let sigfd = match relay {
        None => sys::signalfd(),
        Some(_) => sys::signalfd_tty(),
    }
    .map_err(|e| err("cannot make a signalfd", e))?;
    // (std's stdin only with a relay: its first use allocates the buffer.)
    let stdin = relay.is_some().then(std::io::stdin);
    let mut timed_out = false;
    // `--as-pid-1`: no ljspawn init reports (the program closed the exit pipe when it was
    // executed); the jail's end is its PID 1's, seen through a pidfd.
    let pidfd = match plan.as_pid_1 {
        true => Some(sys::pidfd_open(pid).map_err(|e| err("cannot open a pidfd of the jail", e))?),
        false => None,
    };
    let end = pidfd.as_ref().map_or(jail.exit_r.as_fd(), |p| p.as_fd());
    // SIGTERM becomes `--stop-signal` for the program: here if it is PID 1, else its init does.
    let term = if plan.as_pid_1 { plan.stop_signal } else { libc::SIGTERM };
    let code = loop {
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        // (signalfd, exit pipe) readable, and the relay's own descriptors' events.
        let (ready, tty) = match relay.as_deref() {
            None => (sys::poll_readable(&[sigfd.as_fd(), end], wait), Vec::new()),
            Some(r) => {
                let mut fds = vec![(sigfd.as_fd(), libc::POLLIN), (end, libc::POLLIN)];
                if let Some(i) = &stdin {
                    r.poll_set(i.as_fd(), &mut fds);
                }
                match sys::poll_events(&fds, wait) {
                    Ok(rev) => (Ok(vec![rev[0] != 0, rev[1] != 0]), rev[2..].to_vec()),
                    Err(e) => (Err(e), Vec::new()),
                }
            }
        };
        let ready = ready.map_err(|e| err("cannot wait for the jail", e))?;
        // Signals first: a window size change is passed on before the input that follows it.
        if ready[0] {
            while let Some((sig, _)) =
                sys::read_signalfd(sigfd.as_fd()).map_err(|e| err("cannot read signals", e))?
            {
                if relay.as_deref_mut().is_some_and(|r| r.signal(sig)) {
                    continue;
                }
                match sig {
                    libc::SIGCHLD => {}
                    libc::SIGTERM => {
                        let _ = sys::kill(pid, term);
                    }
                    _ => {
                        let _ = sys::kill(pid, sig);
                    }
                }
            }
        }
        if let Some(r) = relay.as_deref_mut() {
            r.ready(&tty);
        }
        if ready[1] && plan.as_pid_1 {
            match sys::wait_blocking(pid).map_err(|e| err("cannot wait for the jail", e))?.1 {
                WaitStatus::Exited(c) => break c as u8,
                WaitStatus::Signaled(s) => break 128u8.saturating_add(s as u8),
            }
        }
        if ready[1] {
            let mut b = [0u8; 1];
            match sys::read(jail.exit_r.as_fd(), &mut b) {
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
        if let Some(d) = deadline {
            if Instant::now() >= d {
                // The deadline passed: SIGTERM to the jail, then SIGKILL after the grace period.
                if timed_out {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    deadline = None;
                } else {
                    timed_out = true;
                    let _ = sys::kill(pid, term);
                    deadline = Some(Instant::now() + plan.kill_after);
                }
            }
        }
    };
    Ok((code, timed_out))
}

/// The cgroup can go once PID 1 is gone (the program and the rest already are); a setuid
/// ljspawn leaves that to its reaper.
fn clean_up(plan: &Plan, pid: i32, cgroup: Option<&Cgroup>) {
    if let Some(cg) = cgroup {
        let _ = sys::wait_blocking(pid);
        if cg.oom_killed() {
            crate::errln!(
                "ljspawn: note: the jail reached its memory limit and the OOM killer killed a process in it"
            );
        }
        if plan.mode != Mode::Setuid {
            if let Err(e) = cg.remove() {
                crate::errln!("ljspawn: {e}");
            }
        }
    }
}

/// The exit status, and the jail's or the timeout's one line, if any.
fn report(
    plan: &Plan,
    mut msg: Vec<u8>,
    code: u8,
    timed_out: bool,
    json: Option<&Json>,
) -> Result<u8, SpawnError> {
    let code = if timed_out { EXIT_TIMEOUT } else { code };
    // The program ran (its exit status is the jail's) unless the jail reports a failure: the
    // exit-code line only then, as bwrap writes it only after the program ran.
    let ran = msg.is_empty();
    if timed_out && msg.is_empty() {
        let t = plan.timeout.unwrap_or_default();
        msg = format!("{EXIT_TIMEOUT}\ttimed out after {t:?}: the jail was sent SIGTERM (SIGKILL after a {:?} grace period)", plan.kill_after)
            .into_bytes();
    }
    if let Some(j) = json.filter(|_| ran) {
        j.exited(code);
    }
    if !msg.is_empty() {
        return Err(jail_failure(&msg));
    }
    Ok(code)
}

/// The jail's setup failure as written on the status pipe: `CODE\tLINE`.
fn jail_failure(msg: &[u8]) -> SpawnError {
    let text = String::from_utf8_lossy(msg);
    let (c, line) = text.split_once('\t').unwrap_or(("125", &text));
    SpawnError { code: c.parse().unwrap_or(EXIT_SETUP), msg: line.trim_end().to_string() }
}

/// Moves the jail's PID 1, just cloned (it may be running already), off ljspawn's CPU if the
/// kernel queued it there and another of the caller's CPUs (ljspawn's, which PID 1 inherited)
/// is idle; then gives it back the caller's CPUs: a process on one of them stays where it is,
/// so PID 1 runs at once on the CPU it was moved to and the program inherits the caller's set.
/// (A PID 1 already elsewhere is not moved; with one CPU, when no other CPU is idle, or if the
/// kernel refuses the move, nothing changes.) The set given back is the caller's as
/// `sched_getaffinity(2)` reads it now: a CPU brought online later is not added to the jail's,
/// as it would be to a caller that never set one. Fails only if the set cannot be given back
/// (PID 1 must then not go on).
fn step_aside(pid: i32) -> io::Result<()> {
    // Idle, as far as /proc/loadavg tells: fewer runnable tasks than the other CPUs, besides
    // ljspawn and PID 1. (A PID 1 moved to a busy CPU waits there for its turn, a whole time
    // slice: 2 ms more for a spawn beside one busy loop, against 0.3 ms gained when idle.)
    let Some(busy) = sys::runnable_tasks().map(|n| n.saturating_sub(2)) else { return Ok(()) };
    let Ok(all) = sys::cpu_affinity() else { return Ok(()) };
    let Some(others) = sys::current_cpu().and_then(|here| sys::cpus_but(&all, here)) else { return Ok(()) };
    if busy >= sys::cpu_count(&others) || sys::set_cpu_affinity(pid, &others).is_err() {
        return Ok(());
    }
    sys::set_cpu_affinity(pid, &all)
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

fn userns_sysctls() -> UsernsSysctls {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok());
    UsernsSysctls {
        unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
        max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
        apparmor_restrict: read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
    }
}

/// `--json-status`: bwrap-compatible JSON lines; `--info-fd`: bwrap's JSON object, one key a
/// line (scripts grep its `child-pid` line).
struct Json(OwnedFd);

impl Json {
    fn started(&self, pid: i32, userns: bool, info: bool) {
        let (open, sep, close) = if info { ("{\n    ", ",\n    ", "\n}\n") } else { ("{ ", ", ", " }\n") };
        let mut line = format!("{open}\"child-pid\": {pid}");
        let mut kinds =
            vec![("cgroup", "cgroup"), ("ipc", "ipc"), ("mnt", "mnt"), ("net", "net"), ("pid", "pid")];
        if userns {
            kinds.push(("user", "user"));
        }
        kinds.push(("uts", "uts"));
        for (file, key) in kinds {
            if let Some(id) = ns_id(pid, file) {
                line.push_str(&format!("{sep}\"{key}-namespace\": {id}"));
            }
        }
        line.push_str(close);
        let _ = sys::write_all(self.0.as_fd(), line.as_bytes());
    }

    fn exited(&self, code: u8) {
        let _ = sys::write_all(self.0.as_fd(), format!("{{ \"exit-code\": {code} }}\n").as_bytes());
    }
}

/// The inode number of `/proc/PID/ns/KIND` (what `lsns` and bwrap print as the namespace id).
fn ns_id(pid: i32, kind: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix(kind)?.strip_prefix(":[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{ioctl_unanswered, pid_at_own_depth};

    /// The jail's pid in ljspawn's namespace, whichever namespace's /proc ljspawn reads: its
    /// own, or an ancestor's (where `Pid:` is the pid there, not ljspawn's).
    #[test]
    fn pidfd_pid_at_ljspawns_depth() {
        let own = "Pos:\t0\nFlags:\t02000002\nPid:\t42\nNSpid:\t42\t1\n";
        assert_eq!(pid_at_own_depth(own, "Name:\tljspawn\nNSpid:\t7\n"), Some(42));
        let ancestors = "Pid:\t30989\nNSpid:\t30989\t7\t1\n";
        assert_eq!(pid_at_own_depth(ancestors, "NSpid:\t30987\t5\n"), Some(7));
        // Not in the /proc mount's namespace, or gone.
        assert_eq!(pid_at_own_depth("Pid:\t0\nNSpid:\t0\n", "NSpid:\t7\n"), None);
        assert_eq!(pid_at_own_depth("Pid:\t-1\nNSpid:\t-1\n", "NSpid:\t7\n"), None);
        assert_eq!(pid_at_own_depth(own, "Name:\tljspawn\n"), None);
    }

    /// `PIDFD_GET_INFO` unknown (an older kernel) or refused (a seccomp filter, gVisor): fdinfo
    /// answers; a pidfd whose process is gone (ESRCH) or another failure is the answer.
    #[test]
    fn pidfd_ioctl_falls_back_when_unanswered() {
        let e = std::io::Error::from_raw_os_error;
        for n in [libc::ENOTTY, libc::EINVAL, libc::EPERM, libc::ENOSYS, libc::EOPNOTSUPP] {
            assert!(ioctl_unanswered(&e(n)), "{n}");
        }
        for n in [libc::ESRCH, libc::EBADF, libc::EFAULT] {
            assert!(!ioctl_unanswered(&e(n)), "{n}");
        }
        assert!(!ioctl_unanswered(&std::io::Error::other("x")));
    }
}
