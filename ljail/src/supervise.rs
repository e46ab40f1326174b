//! Starting and stopping jails under ljail's own supervisor, `ljail-supervisor` (a small
//! static program next to ljail, see its crate): `start` resolves the jail (config, layers,
//! the ljspawn command line) and runs the supervisor detached (its own session, stdin
//! `/dev/null`, stdout and stderr the jail's log) with all of it on its command line. The
//! supervisor holds the jail's run lock for as long as it lives (that lock, not a pid file, says
//! whether the jail runs), runs ljspawn with `--die-with-parent` (if the supervisor dies, so does
//! the jail) and `--json-status` on a pipe (the jail's pid, then its exit code), keeps
//! `state.json` up to date and restarts the jail per its policy; `start` waits on a pipe (the
//! supervisor's stdout) for its `started PID`, or for the pipe to close without it (the jail did
//! not start: the log's first line of ljspawn's or the supervisor's says why). `stop` writes `stop-requested`,
//! sends ljspawn SIGTERM (which ljspawn forwards to the jail's PID 1; an `init yes` jail's as
//! SIGRTMIN+3, its init's halt, through `--stop-signal`), waits `stop-timeout`, then SIGKILLs
//! ljspawn (the kernel kills the jail with it).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::config::Config;
use crate::error::Error;
use crate::freezer;
use crate::jail::{self, Jail, Jails};
use crate::systemd::{self, Scope};

pub use ljail_supervisor::State;

/// The unit and manager that run the jail, if systemd runs it (its hooks say so in
/// `state.json`).
pub fn unit_of(j: &Jail) -> Option<(Scope, String)> {
    let s = read_state(j);
    Some((s.scope?, s.unit?))
}

/// Reads `state.json` (default when missing or unreadable).
pub fn read_state(j: &Jail) -> State {
    ljail_supervisor::read_state(&j.state_path())
}

pub fn write_state(j: &Jail, s: &State) -> Result<(), Error> {
    ljail_supervisor::write_state(&j.state_path(), s).map_err(|e| Error::Failed(e.0))
}

/// Finds ljspawn (`LJSPAWN`, next to ljail, or on `PATH`).
pub fn ljspawn() -> Result<PathBuf, Error> {
    ljbuild::spawn::find_ljspawn().ok_or_else(|| {
        Error::Jail("ljspawn not found (not next to ljail, not on PATH; set LJSPAWN to its path)".into())
    })
}

use ljail_supervisor::is_ours;

fn signal(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// How `start` went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Started now; the jail's pid (unknown when it exited at once under systemd).
    Now(Option<u32>),
    /// It was running already.
    Already(Option<u32>),
}

/// `ljail start NAME`: the supervisor started, the jail set up (its pid known). Serialized
/// with every other command on the jail by its management lock.
pub fn start(jails: &Jails, j: &Jail) -> Result<Started, Error> {
    let _lock = jails.lock(j)?;
    let cfg = j.config()?;
    if jails.running(j)? {
        let st = read_state(j);
        if st.state == "stopping" {
            return Err(Error::Conflict(format!(
                "jail '{}' is still stopping after {} s (its supervisor, pid {}, is removing its cgroups)",
                j.name,
                jail::STOPPING_WAIT.as_secs(),
                st.supervisor_pid
            )));
        }
        return Ok(Started::Already(st.jail_pid));
    }
    // Resolve now, so a missing image is this command's error.
    let layers = jail::resolve(&jails.root, &cfg)?;
    if cfg.init {
        // (A clone has none yet: it gets its own.)
        j.ensure_machine_id(cfg.root)?;
    }
    if cfg.docker {
        j.ensure_storage()?;
    }
    let _ = fs::remove_file(j.stop_path());
    if let Some(scope) = jails.manager {
        return systemd::start(jails, j, &cfg, scope).map(Started::Now);
    }
    let mut cmd = supervisor(jails, j, &cfg, &layers, true)?;
    let old = read_state(j);
    if let Some(cg) = &old.freezer {
        freezer::remove(cg);
    }
    let _ = fs::remove_file(j.stop_path());
    let log = open_log(j)?;
    let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    write_state(j, &State { state: "starting".into(), ..State::default() })?;
    // The supervisor says `started PID` on this pipe (its stdout) once the jail runs, and
    // closes it (or ends) otherwise.
    let (ready, notify) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("cannot make a pipe for", cmd.get_program())(e.into()))?;
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(notify)
        .stderr(log)
        .current_dir("/")
        .spawn()
        .map_err(Error::io("cannot run", cmd.get_program()));
    // (The write end goes with the command: only the supervisor holds it now.)
    drop(cmd);
    let _child = spawned?;
    match read_started(ready, Duration::from_secs(60)) {
        Some(Ok(pid)) => return Ok(Started::Now(Some(pid))),
        Some(Err(())) => {}
        None => {
            return Err(Error::Failed(format!(
                "{} did not start within 60 s (see {})",
                j.name,
                j.log_path().display()
            )))
        }
    }
    // Failed: the first line ljspawn (or the supervisor) wrote since we started.
    let why = log_since(j, offset)
        .lines()
        .find(|l| l.starts_with("ljspawn: ") || (l.starts_with("ljail: ") && l.contains("cannot")))
        .map(str::to_string)
        .unwrap_or_else(|| format!("see {}", j.log_path().display()));
    Err(Error::Failed(format!("{} did not start: {why}", j.name)))
}

/// Waits for the supervisor's `started PID` line on `ready`: the pid; `Err` when the pipe
/// closed without it (the supervisor ended: the jail did not start); `None` after `limit`.
fn read_started(ready: std::os::fd::OwnedFd, limit: Duration) -> Option<Result<u32, ()>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = Instant::now() + limit;
    let mut f = File::from(ready);
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let t = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        match poll(&mut [PollFd::new(&f, PollFlags::IN)], Some(&t)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return Some(Err(())),
        }
        let mut buf = [0u8; 64];
        match f.read(&mut buf) {
            Ok(0) => return Some(Err(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Some(Err(())),
        }
        if let Some(end) = got.iter().position(|b| *b == b'\n') {
            let line = std::str::from_utf8(&got[..end]).unwrap_or("");
            return Some(line.strip_prefix("started ").and_then(|p| p.parse().ok()).ok_or(()));
        }
    }
}

fn open_log(j: &Jail) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(j.log_path())
        .map_err(Error::io("cannot open", j.log_path()))
}

fn log_since(j: &Jail, offset: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(j.log_path()) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.take(1 << 20).read_to_string(&mut s);
    }
    s
}

/// `ljail stop NAME`: returns whether it was running.
pub fn stop(jails: &Jails, j: &Jail, timeout: Option<Duration>) -> Result<bool, Error> {
    let _lock = jails.lock(j)?;
    stop_locked(jails, j, timeout)
}

/// [`stop`] with the management lock held.
pub fn stop_locked(jails: &Jails, j: &Jail, timeout: Option<Duration>) -> Result<bool, Error> {
    if !jails.running(j)? {
        // (It may have exited on its own: its cgroup goes now.)
        remove_cgroup(j);
        return Ok(false);
    }
    let timeout = match timeout {
        Some(t) => t,
        None => j.config().map(|c| c.stop_timeout).unwrap_or(crate::config::DEFAULT_STOP_TIMEOUT),
    };
    if let (Some((scope, unit)), Some(_free)) = (unit_of(j), jails.try_run_lock(j)?) {
        systemd::stop(j, scope, &unit, timeout)?;
        return Ok(true);
    }
    fs::write(j.stop_path(), b"stop\n").map_err(Error::io("cannot write", j.stop_path()))?;
    let s = read_state(j);
    if let Some(cg) = &s.freezer {
        freezer::thaw(cg);
    }
    let ljspawn_pid = s.ljspawn_pid.filter(|p| is_ours(*p, &j.dir));
    if let Some(p) = ljspawn_pid {
        signal(p, Signal::TERM);
    }
    // The supervisor's end frees the run lock (its files close before its exit is seen): waited
    // for on a pidfd of it rather than by polling the lock; a pid reused since (or no pidfd)
    // leaves a poll every 10 ms.
    let exit = (s.supervisor_pid != 0 && is_ours(s.supervisor_pid, Path::new(&j.name)))
        .then(|| Pid::from_raw(s.supervisor_pid as i32))
        .flatten()
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    let gone = |t: Duration| -> Result<bool, Error> {
        let start = Instant::now();
        let mut exit = exit.as_ref();
        loop {
            if !jails.running(j)? {
                remove_cgroup(j);
                return Ok(true);
            }
            let left = t.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(false);
            }
            match exit {
                Some(fd) if !wait_readable(fd, left.min(Duration::from_millis(200))) => {}
                // Ended (or unknown): the lock is polled.
                Some(_) => {
                    exit = None;
                    std::thread::sleep(Duration::from_millis(1));
                }
                None => std::thread::sleep(Duration::from_millis(10).min(left)),
            }
        }
    };
    if gone(timeout)? {
        return Ok(true);
    }
    // Past the grace period: SIGKILL the jail's PID 1 (the kernel kills the rest of the jail,
    // and ljspawn, still alive, removes its cgroup), then ljspawn itself, then the supervisor.
    let s = read_state(j);
    let ljspawn_pid = s.ljspawn_pid.filter(|p| is_ours(*p, &j.dir));
    if let (Some(p), Some(jail_pid)) = (ljspawn_pid, s.jail_pid) {
        if parent_of(jail_pid) == Some(p) {
            signal(jail_pid, Signal::KILL);
            if gone(Duration::from_secs(5))? {
                return Ok(true);
            }
        }
    }
    if let Some(p) = ljspawn_pid.filter(|p| is_ours(*p, &j.dir)) {
        signal(p, Signal::KILL);
    }
    if gone(Duration::from_secs(5))? {
        return Ok(true);
    }
    if s.supervisor_pid != 0 && is_ours(s.supervisor_pid, Path::new(&j.name)) {
        signal(s.supervisor_pid, Signal::KILL);
    }
    if gone(Duration::from_secs(5))? {
        return Ok(true);
    }
    Err(Error::Failed(format!("{} did not stop (supervisor pid {})", j.name, s.supervisor_pid)))
}

/// Whether `fd` became readable within `limit` (a pidfd: its process ended).
fn wait_readable(fd: &std::os::fd::OwnedFd, limit: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let t = Timespec { tv_sec: limit.as_secs() as i64, tv_nsec: i64::from(limit.subsec_nanos()) };
    poll(&mut [PollFd::new(fd, PollFlags::IN)], Some(&t)).is_ok_and(|n| n > 0)
}

/// Removes the jail's own cgroup v2 once its supervisor has ended (it holds the supervisor to
/// its end); one left behind goes with the next `start` or `destroy`.
pub fn remove_cgroup(j: &Jail) {
    if let Some(g) = read_state(j).cgroup {
        let _ = ljail_supervisor::cgroup::remove(&g, Duration::from_secs(2));
    }
}

/// Finds `ljail-supervisor`: next to ljail's own executable, else on `PATH`.
pub fn find_supervisor() -> Result<PathBuf, Error> {
    const NAME: &str = "ljail-supervisor";
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join(NAME)));
    let on_path = || {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|d| d.join(NAME)).find(|p| p.is_file())
    };
    beside.filter(|p| p.is_file()).or_else(on_path).ok_or_else(|| {
        Error::Jail(format!("{NAME} not found (not next to ljail, not on PATH; make install puts it there)"))
    })
}

/// The supervisor's command for `j` with `cfg`: everything it runs resolved now (a missing
/// image or ljspawn is the caller's error, not a line in the log).
/// `notify`: `--notify-stdout` (see `ljail_supervisor::Spec`).
fn supervisor(
    jails: &Jails,
    j: &Jail,
    cfg: &Config,
    layers: &jail::Resolved,
    notify: bool,
) -> Result<Command, Error> {
    let (ljspawn, program) = (ljspawn()?, find_supervisor()?);
    // (This process moves into the jail's cgroup, where the supervisor is born.)
    let cgroup = ljail_supervisor::cgroup::prepare(&j.unit_id()).map_err(|e| Error::Failed(e.0))?;
    let spec = ljail_supervisor::Spec {
        name: j.name.clone(),
        dir: j.dir.clone(),
        lock: jails.run_lock_path(j),
        restart: cfg.restart,
        restart_delay: cfg.restart_delay,
        restart_max: cfg.restart_max,
        cgroup,
        notify_stdout: notify,
        ljspawn,
        args: jail::ljspawn_args(j, cfg, layers, None),
    };
    let mut cmd = Command::new(program);
    cmd.args(spec.to_args());
    Ok(cmd)
}

/// `ljail supervise NAME` (internal): the jail's supervisor in the foreground (ljail replaced
/// by `ljail-supervisor`, as `start` runs it detached).
pub fn supervise(jails: &Jails, j: &Jail) -> Result<u8, Error> {
    use std::os::unix::process::CommandExt;
    let cfg = j.config()?;
    let mut cmd = supervisor(jails, j, &cfg, &jail::resolve(&jails.root, &cfg)?, false)?;
    let e = cmd.exec();
    Err(Error::io("cannot run", cmd.get_program())(e))
}

/// `ljail exec NAME CMD...`: replaces ljail with `ljspawn --join PID` and the jail's own
/// options (so the command gets the jail's confinement), or fails.
pub fn exec(jails: &Jails, j: &Jail, command: Vec<String>) -> Result<u8, Error> {
    use std::os::unix::process::CommandExt;
    if command.is_empty() {
        return Err(Error::Usage("exec needs a command".into()));
    }
    let mut cfg = j.config()?;
    let st = read_state(j);
    let pid = match (jails.running(j)?, st.jail_pid, st.ljspawn_pid) {
        (true, Some(pid), Some(parent)) if is_ours(parent, &j.dir) && parent_of(pid) == Some(parent) => pid,
        (true, _, _) => {
            return Err(Error::Conflict(format!("jail '{}' is not up (state {})", j.name, st.state)))
        }
        (false, _, _) => return Err(Error::Conflict(format!("jail '{}' is not running", j.name))),
    };
    let layers = jail::resolve(&jails.root, &cfg)?;
    cfg.command = command;
    let mut args: Vec<std::ffi::OsString> = vec!["--join".into(), pid.to_string().into()];
    args.extend(jail::ljspawn_args(j, &cfg, &layers, None));
    let ljspawn = ljspawn()?;
    let e = Command::new(&ljspawn).args(&args).exec();
    Err(Error::io("cannot run", &ljspawn)(e))
}

/// What `shell` runs in the jail: the login shell of the jail's user (from the jail's own
/// /etc/passwd, else /bin/sh) as a login shell, in its home directory.
const LOGIN: &str = r#"u=$(id -u)
s=$(awk -F: -v u="$u" '$3 == u { print $7; exit }' /etc/passwd 2>/dev/null)
h=$(awk -F: -v u="$u" '$3 == u { print $6; exit }' /etc/passwd 2>/dev/null)
case $s in /*) [ -x "$s" ] || s=/bin/sh ;; *) s=/bin/sh ;; esac
case $h in /*) [ -d "$h" ] && HOME=$h && export HOME ;; esac
cd "${HOME:-/}" 2>/dev/null || cd /
exec "$s" -l"#;

/// `ljail shell NAME`: a login shell in the running jail, on a pty of the jail's own (ljspawn
/// `--join` makes one when fd 0 is a terminal: job control, ^C, window size), under the jail's
/// confinement, as `exec`.
pub fn shell(jails: &Jails, j: &Jail) -> Result<u8, Error> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "shell needs a terminal on stdin (for a command without one: ljail exec {} -- CMD)",
            j.name
        )));
    }
    exec(jails, j, vec!["/bin/sh".into(), "-c".into(), LOGIN.into()])
}

/// The parent pid of `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// `ljail log NAME [-f]`: the log; with `follow`, then what is appended, until interrupted.
pub fn log(j: &Jail, follow: bool) -> Result<(), Error> {
    if let Some((scope, unit)) = unit_of(j) {
        return systemd::log(scope, &unit, follow);
    }
    let p = j.log_path();
    let mut f = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            OpenOptions::new().create(true).append(true).open(&p).map_err(Error::io("cannot open", &p))?;
            File::open(&p).map_err(Error::io("cannot open", &p))?
        }
        Err(e) => return Err(Error::io("cannot open", &p)(e)),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("cannot read", &p))?;
        if n > 0 {
            if let Err(e) = out.write_all(&buf[..n]).and_then(|()| out.flush()) {
                crate::out_failed(&e); // 141 when the reader went away (`ljail log J | head -1`)
            }
            continue;
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
