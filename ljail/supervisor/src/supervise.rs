//! The supervisor's life: the run lock, the freezer cgroup, ljspawn run and run again.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;

use crate::{io_error, write_state, Error, Restart, Spec, State, FREEZER_V1};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A line for the log, from the supervisor (stderr is the jail's log).
fn log_line(msg: &str) {
    let t = humantime::format_rfc3339_seconds(SystemTime::now());
    crate::errln!("ljail: {t} {msg}");
}

/// The run lock, if it is free.
fn try_run_lock(p: &Path) -> Result<Option<File>, Error> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(p)
        .map_err(|e| io_error("cannot open lock", p, &e))?;
    match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io_error("cannot lock", p, &e.into())),
    }
}

/// Moves the calling process (`pid`) into the v1 cgroup `cg`. A process of one thread (the
/// supervisor has no others) writes `0` to `tasks`: the kernel moves the calling thread, which
/// is the whole process, without its global lock of thread groups, whose write side waits for
/// an RCU grace period (5-20 ms on a 2-CPU machine, on the path of every start: what
/// `cgroup.procs` costs). With more threads, `cgroup.procs`.
fn enter_v1(cg: &Path, pid: u32) -> std::io::Result<()> {
    let threads = fs::read_dir("/proc/self/task").map(Iterator::count).unwrap_or(0);
    if threads == 1 {
        fs::write(cg.join("tasks"), "0")
    } else {
        fs::write(cg.join("cgroup.procs"), pid.to_string())
    }
}

/// Moves the calling process (the supervisor, `pid`) into a new v1 freezer cgroup of its own;
/// `None` when there is no usable v1 freezer (not root, no hierarchy).
fn freezer_enter(pid: u32) -> Option<PathBuf> {
    if !rustix::process::geteuid().is_root() || !Path::new(FREEZER_V1).join("cgroup.procs").is_file() {
        return None;
    }
    let parent = Path::new(FREEZER_V1).join("lightjail");
    if !parent.is_dir() {
        let _ = fs::create_dir(&parent);
    }
    let cg = parent.join(format!("ljail-{pid}"));
    let _ = fs::create_dir(&cg);
    if enter_v1(&cg, pid).is_err() {
        let _ = fs::remove_dir(&cg);
        return None;
    }
    Some(cg)
}

/// Moves `pid` back to the top freezer cgroup and removes `cg` (thawed, once it is empty).
fn freezer_leave(pid: u32, cg: &Path) {
    let _ = enter_v1(Path::new(FREEZER_V1), pid);
    remove_thawed(cg);
}

/// Thaws the freezer cgroup `cg` and removes it once it is empty (also ljail's, for one a
/// supervisor left behind).
pub fn remove_thawed(cg: &Path) {
    let _ = fs::write(cg.join("freezer.state"), "THAWED");
    // Its last processes leave it when the kernel has run their exit: seconds on a loaded
    // machine, so a deadline rather than a count of tries.
    let start = Instant::now();
    loop {
        if fs::remove_dir(cg).is_ok() || !cg.exists() || start.elapsed() > Duration::from_secs(10) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn open_log(spec: &Spec) -> Result<File, Error> {
    let p = spec.log_path();
    OpenOptions::new().create(true).append(true).open(&p).map_err(|e| io_error("cannot open", &p, &e))
}

/// `--notify-stdout`: tells `ljail start` (stdout is its pipe) that the jail started, then
/// points stdout at the log (stderr), so that the pipe closes. (A `start` that went away has
/// closed the pipe: the line is lost, as it should be.)
fn notify_started(pid: u64) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "started {pid}").and_then(|()| out.flush());
    drop(out);
    let _ = rustix::stdio::dup2_stdout(std::io::stderr());
}

/// The supervisor's whole life (its own session, detached; stdout and stderr the jail's log):
/// returns its exit status.
pub fn supervise(spec: &Spec) -> u8 {
    let _ = rustix::process::setsid();
    let run_lock = match try_run_lock(&spec.lock) {
        Ok(Some(l)) => l,
        Ok(None) => {
            log_line("another supervisor runs this jail");
            return 0;
        }
        Err(e) => {
            log_line(&format!("cannot run the jail: {e}"));
            return 1;
        }
    };
    let me = std::process::id();
    let state = spec.state_path();
    let mut st = State { state: "starting".into(), supervisor_pid: me, ..State::default() };
    st.cgroup = spec.cgroup.clone();
    let payload = match spec.cgroup.as_deref().map(crate::cgroup::payload).transpose() {
        Ok(p) => p,
        Err(e) => {
            log_line(&format!("cannot run the jail: {e}"));
            st.state = "failed".into();
            let _ = write_state(&state, &st);
            return 1;
        }
    };
    st.freezer = match &payload {
        Some(p) => Some(p.clone()),
        None => freezer_enter(me),
    };
    let result = run(spec, payload.as_deref(), &mut st);
    if let Err(e) = &result {
        log_line(&format!("cannot run the jail: {e}"));
        st.state = "failed".into();
    }
    st.ljspawn_pid = None;
    st.jail_pid = None;
    // The teardown (the jail's cgroups: up to 12 s while their last processes leave them) shows
    // as `stopping`, so that `status` does not say `running` for a jail that has ended; `start`,
    // `stop` and `destroy` wait for it. Only informational: a failure to write it is one line in
    // the log, and the teardown goes on.
    let end = std::mem::replace(&mut st.state, "stopping".into());
    if let Err(e) = write_state(&state, &st) {
        log_line(&format!("cannot write the state stopping (the teardown goes on): {e}"));
    }
    st.state = end;
    match (st.freezer.take(), &payload) {
        (Some(p), Some(_)) => {
            // ljspawn is gone, and its cgroups with it: the payload is empty.
            let _ = fs::write(p.join("cgroup.freeze"), "0");
            let _ = crate::cgroup::remove_one(&p, Duration::from_secs(2));
        }
        (Some(cg), None) => freezer_leave(me, &cg),
        (None, _) => {}
    }
    // The final state (`run` only sets it) is written last, once the jail's cgroups are gone,
    // and the run lock freed right after: a held lock with a final state is a supervisor at
    // its very end, which ljail waits for (`Jails::running`), so a jail that `status` says
    // ended is not running for `start` or `destroy` either.
    let _ = fs::remove_file(spec.stop_path());
    let _ = write_state(&state, &st);
    drop(run_lock);
    u8::from(result.is_err())
}

/// Runs ljspawn, and again per the restart policy, until the jail is stopped or done; the
/// final state is set in `st`, not written (`supervise` writes it as it ends).
/// `payload`: the cgroup v2 ljspawn is started in (through `ljail-supervisor --enter`).
fn run(spec: &Spec, payload: Option<&Path>, st: &mut State) -> Result<(), Error> {
    let state = spec.state_path();
    let mut notify = spec.notify_stdout;
    loop {
        let (rd, wr): (OwnedFd, OwnedFd) =
            rustix::pipe::pipe().map_err(|e| io_error("cannot make a pipe for", &spec.ljspawn, &e.into()))?;
        // The read end stays here; the write end (no close-on-exec) is ljspawn's --json-status.
        rustix::io::fcntl_setfd(&rd, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| io_error("cannot set close-on-exec on a pipe for", &spec.ljspawn, &e.into()))?;
        let log = open_log(spec)?;
        let mut cmd = match payload {
            Some(p) => {
                let me = std::env::current_exe()
                    .map_err(|e| io_error("cannot find", Path::new("/proc/self/exe"), &e))?;
                let mut c = Command::new(me);
                c.arg("--enter").arg(p).arg("--").arg(&spec.ljspawn);
                c
            }
            None => Command::new(&spec.ljspawn),
        };
        let spawned = cmd
            .arg("--die-with-parent")
            .arg("--json-status")
            .arg(wr.as_raw_fd().to_string())
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| io_error("cannot open", &spec.log_path(), &e))?)
            .stderr(log)
            .spawn();
        drop(wr);
        let mut child = spawned.map_err(|e| io_error("cannot run", &spec.ljspawn, &e))?;
        st.ljspawn_pid = Some(child.id());
        st.jail_pid = None;
        st.state = "starting".into();
        write_state(&state, st)?;
        let mut reported_start = false;
        for line in BufReader::new(File::from(rd)).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if let Some(pid) = v.get("child-pid").and_then(serde_json::Value::as_u64) {
                st.jail_pid = Some(pid as u32);
                st.last_pid = Some(pid as u32);
                st.started_at = Some(now());
                st.state = "running".into();
                reported_start = true;
                write_state(&state, st)?;
                log_line(&format!("started (pid {pid})"));
                if std::mem::take(&mut notify) {
                    notify_started(pid);
                }
            }
        }
        let status = child.wait().map_err(|e| io_error("cannot wait for", &spec.ljspawn, &e))?;
        let code = status.code().unwrap_or(128 + 9);
        st.last_exit = Some(code);
        st.ljspawn_pid = None;
        st.jail_pid = None;
        let stopping = spec.stop_path().exists();
        if !reported_start {
            // ljspawn failed before the jail ran (its line is in the log): a restart would fail
            // the same way.
            log_line(&format!("the jail did not start (ljspawn status {code}); not restarted"));
            st.state = "failed".into();
            return Ok(());
        }
        if stopping {
            log_line(&format!("stopped (status {code})"));
            st.state = "stopped".into();
            return Ok(());
        }
        let again = match spec.restart {
            Restart::No => false,
            Restart::OnFailure => code != 0,
            Restart::Always => true,
        };
        if !again {
            log_line(&format!("exited with status {code}"));
            st.state = "exited".into();
            return Ok(());
        }
        if spec.restart_max != 0 && st.restarts >= spec.restart_max {
            log_line(&format!(
                "exited with status {code}; not restarted: {} restarts already (restart-max)",
                st.restarts
            ));
            st.state = "failed".into();
            return Ok(());
        }
        st.restarts += 1;
        st.state = "restarting".into();
        write_state(&state, st)?;
        log_line(&format!(
            "exited with status {code}; restart {} in {}",
            st.restarts,
            humantime::format_duration(spec.restart_delay)
        ));
        let until = Instant::now() + spec.restart_delay;
        while Instant::now() < until {
            if spec.stop_path().exists() {
                st.state = "stopped".into();
                log_line("stopped while waiting to restart");
                return Ok(());
            }
            std::thread::sleep(
                Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
            );
        }
    }
}
