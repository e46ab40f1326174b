#![forbid(unsafe_code)]
//! The supervisor of one running ljail jail, a program of its own (`ljail-supervisor`, next to
//! `ljail`): `ljail start` resolves the jail (config, layers, the ljspawn command line) and runs
//! it detached with a [`Spec`] on its command line. One supervisor lives as long as its jail
//! runs, so it is kept small: no command-line parser, no image code, no threads, linked
//! statically (`make build`: against musl, as ljspawn), 0.6 MiB resident instead of the 3 MiB
//! of a dynamically linked `ljail` (the pages of a dynamic libc alone are about 1.5 MiB).
//!
//! What it does (see [`supervise`]): holds the jail's run lock for as long as it lives (that
//! lock, not a pid file, says whether the jail runs), runs ljspawn with `--die-with-parent` (if
//! the supervisor dies, so does the jail) and `--json-status` on a pipe (the jail's pid, then
//! its exit code), keeps `state.json` up to date, writes its own lines to the jail's log (its
//! stdout and stderr) and restarts the jail per its policy.
//!
//! Shared with `ljail`: [`State`] (`state.json`, with the [`Scope`] it names), [`Restart`],
//! [`Spec`] (both sides of its command line) and the v1 freezer's hierarchy.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `eprintln!` for the supervisor's lines, which never panics: the line is formatted first and
/// written to the locked stderr (the jail's log) in one `write`, and a write error (a full disk,
/// or `ljail-supervisor` run by hand into a pipe whose reader has gone) is ignored. A supervisor
/// that panicked on its log would leave its jail without a supervisor.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let line = ::std::format!("{}\n", ::std::format_args!($($arg)*));
        let _ = ::std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

pub mod cgroup;
mod supervise;
pub use supervise::{remove_thawed, supervise};

/// The v1 freezer hierarchy (hybrid hosts), where a root supervisor puts itself and so its
/// jail, so that `snapshot` and `clone` can hold a running jail still.
pub const FREEZER_V1: &str = "/sys/fs/cgroup/freezer";

/// The supervisor's own failures (one line in the jail's log).
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// `what path: why`, the io error as one lower-case phrase without std's " (os error N)".
pub fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    let s = e.to_string();
    let why = s.split(" (os error").next().unwrap_or(&s).to_lowercase();
    Error(format!("{what} {}: {why}", path.display()))
}

/// The restart policy of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never restart.
    No,
    /// Restart when the jail exits non-zero (or is killed).
    OnFailure,
    /// Restart whenever the jail exits (unless stopped).
    Always,
}

impl Restart {
    /// `no`, `on-failure`, `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }

    /// Parses a policy.
    pub fn parse(s: &str) -> Result<Restart, String> {
        match s {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(format!("bad restart policy '{s}' (expected no, on-failure or always)")),
        }
    }
}

/// Which service manager runs a jail (`state.json` records it for jails under systemd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The system manager (root).
    System,
    /// The caller's user manager (`systemctl --user`).
    User,
}

impl Scope {
    /// `system` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::User => "user",
        }
    }

    /// `systemctl`, `systemd-run` or `journalctl` for this manager.
    pub fn command(self, program: &str) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        if self == Scope::User {
            c.arg("--user");
        }
        c
    }
}

/// `state.json`, written by the supervisor (and, for a jail under systemd, by its unit's
/// hooks).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// `starting`, `running`, `restarting`, `stopping`, `stopped`, `exited`, `failed`.
    pub state: String,
    /// The supervisor's pid.
    pub supervisor_pid: u32,
    /// The running ljspawn's pid.
    pub ljspawn_pid: Option<u32>,
    /// The jail's PID 1, as seen from the host (while it runs).
    pub jail_pid: Option<u32>,
    /// The PID 1 of the latest start (kept after it exits).
    #[serde(default)]
    pub last_pid: Option<u32>,
    /// When the jail last started (seconds since the epoch).
    pub started_at: Option<u64>,
    /// Restarts since `start`.
    pub restarts: u32,
    /// The last exit status of ljspawn (the program's, or ljspawn's own code).
    pub last_exit: Option<i32>,
    /// The freezer cgroup the jail runs in, if any (v1: the supervisor's in the freezer
    /// hierarchy; v2: the jail's `payload`).
    pub freezer: Option<PathBuf>,
    /// The systemd unit that runs the jail (`lightjail-NAME.service`), if systemd runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The manager of `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The jail's own cgroup v2 (see [`cgroup`]), if any.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

/// Reads a `state.json` (the default when missing or unreadable).
pub fn read_state(path: &Path) -> State {
    fs::read(path).ok().and_then(|t| serde_json::from_slice(&t).ok()).unwrap_or_default()
}

/// Writes a `state.json` atomically (a temporary file beside it, swapped with it): a reader sees
/// the old state or the new one. Not synced to disk: the state of processes means nothing after
/// a crash of the machine (the run lock says whether a jail runs; a state cut short by one reads
/// as the default), and a sync is a disk flush on the path of every start. Swapped in
/// (`RENAME_EXCHANGE`, then the old one unlinked) rather than renamed over: ext4 starts writing
/// a file renamed over another to disk then and there (its `auto_da_alloc`), 0.5-7 ms here
/// against 0.3; where the file system cannot swap, renamed over.
pub fn write_state(path: &Path, s: &State) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(s).map_err(|e| Error(format!("cannot write the state: {e}")))?;
    // A temporary name of this writer's own (pid and a counter): two writers sharing one could
    // swap the old state back in (one's exchange, then the other's of the same file).
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}.{n}.tmp~", std::process::id()));
    let r = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_error("cannot create", &tmp, &e))?;
        f.write_all(&text).map_err(|e| io_error("cannot write", &tmp, &e))?;
        drop(f);
        let cwd = rustix::fs::CWD;
        match rustix::fs::renameat_with(cwd, &tmp, cwd, path, rustix::fs::RenameFlags::EXCHANGE) {
            Ok(()) => Ok(()),
            Err(_) => fs::rename(&tmp, path).map_err(|e| io_error("cannot rename into place", path, &e)),
        }
    })();
    // (After the exchange it holds the old state; after a rename, nothing is there.)
    let _ = fs::remove_file(&tmp);
    r
}

/// What one supervisor runs, from `ljail start`, on the supervisor's command line:
/// `ljail-supervisor --name NAME --dir DIR --lock FILE --restart POLICY --restart-delay-ms N
/// --restart-max N [--cgroup DIR] --ljspawn PATH [--notify-stdout] -- ARG...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The jail's name.
    pub name: String,
    /// `ROOT/jails/NAME`: `state.json`, `stop-requested` and `log` are there.
    pub dir: PathBuf,
    /// The jail's run lock, held for as long as the supervisor lives.
    pub lock: PathBuf,
    /// The restart policy.
    pub restart: Restart,
    /// The pause before a restart.
    pub restart_delay: Duration,
    /// At most this many restarts (0: no limit).
    pub restart_max: u32,
    /// The jail's own cgroup v2, made by `ljail start` ([`cgroup::prepare`]).
    pub cgroup: Option<PathBuf>,
    /// `started PID` and a newline on stdout (a pipe `ljail start` waits on) once ljspawn has
    /// given the jail's pid, then stdout made stderr's (the log), so the pipe closes; without a
    /// start, the pipe closes as the supervisor ends.
    pub notify_stdout: bool,
    /// The ljspawn to run.
    pub ljspawn: PathBuf,
    /// Its arguments (the supervisor adds `--die-with-parent --json-status FD` in front).
    pub args: Vec<OsString>,
}

impl Spec {
    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// `stop-requested`.
    pub fn stop_path(&self) -> PathBuf {
        self.dir.join("stop-requested")
    }

    /// `log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The supervisor's arguments (after its program name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut opt = |k: &str, v: &OsStr| {
            a.push(k.into());
            a.push(v.to_owned());
        };
        opt("--name", self.name.as_ref());
        opt("--dir", self.dir.as_os_str());
        opt("--lock", self.lock.as_os_str());
        opt("--restart", self.restart.as_str().as_ref());
        opt("--restart-delay-ms", self.restart_delay.as_millis().to_string().as_ref());
        opt("--restart-max", self.restart_max.to_string().as_ref());
        if let Some(c) = &self.cgroup {
            opt("--cgroup", c.as_os_str());
        }
        opt("--ljspawn", self.ljspawn.as_os_str());
        if self.notify_stdout {
            a.push("--notify-stdout".into());
        }
        a.push("--".into());
        a.extend(self.args.iter().cloned());
        a
    }

    /// Parses what [`Spec::to_args`] made (every option once, all of them).
    pub fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Spec, Error> {
        let mut it = args.into_iter();
        let (mut name, mut dir, mut lock, mut restart, mut delay, mut max, mut ljspawn) =
            (None, None, None, None, None, None, None);
        let mut cgroup = None;
        let mut notify_stdout = false;
        let bad = |m: String| Error(format!("{m} (ljail-supervisor is run by `ljail start`)"));
        loop {
            let Some(k) = it.next() else { return Err(bad("no `--` before ljspawn's arguments".into())) };
            if k == "--" {
                break;
            }
            let k = k.to_string_lossy().into_owned();
            if k == "--notify-stdout" {
                if std::mem::replace(&mut notify_stdout, true) {
                    return Err(bad(format!("{k} given twice")));
                }
                continue;
            }
            let v = it.next().ok_or_else(|| bad(format!("{k} needs a value")))?;
            let text = || v.to_str().map(str::to_string).ok_or_else(|| bad(format!("{k}: not UTF-8")));
            let number = |t: String| t.parse::<u64>().map_err(|_| bad(format!("{k}: not a number: {t}")));
            let slot_taken = match k.as_str() {
                "--name" => name.replace(text()?).is_some(),
                "--dir" => dir.replace(PathBuf::from(&v)).is_some(),
                "--lock" => lock.replace(PathBuf::from(&v)).is_some(),
                "--restart" => restart.replace(Restart::parse(&text()?).map_err(bad)?).is_some(),
                "--restart-delay-ms" => delay.replace(Duration::from_millis(number(text()?)?)).is_some(),
                "--restart-max" => {
                    let n = u32::try_from(number(text()?)?).map_err(|_| bad(format!("{k}: too large")))?;
                    max.replace(n).is_some()
                }
                "--cgroup" => cgroup.replace(PathBuf::from(&v)).is_some(),
                "--ljspawn" => ljspawn.replace(PathBuf::from(&v)).is_some(),
                _ => return Err(bad(format!("unknown option {k}"))),
            };
            if slot_taken {
                return Err(bad(format!("{k} given twice")));
            }
        }
        let need = |what: &str| bad(format!("--{what} is missing"));
        Ok(Spec {
            name: name.ok_or_else(|| need("name"))?,
            dir: dir.ok_or_else(|| need("dir"))?,
            lock: lock.ok_or_else(|| need("lock"))?,
            restart: restart.ok_or_else(|| need("restart"))?,
            restart_delay: delay.ok_or_else(|| need("restart-delay-ms"))?,
            restart_max: max.ok_or_else(|| need("restart-max"))?,
            cgroup,
            notify_stdout,
            ljspawn: ljspawn.ok_or_else(|| need("ljspawn"))?,
            args: it.collect(),
        })
    }
}

/// Whether `pid` still runs a command line mentioning `needle` (guards against pid reuse).
pub fn is_ours(pid: u32, needle: &Path) -> bool {
    let n = needle.as_os_str().as_bytes();
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(n.len()).any(|w| w == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            name: "web".into(),
            dir: "/r/jails/web".into(),
            lock: "/r/.locks/r%web.lock".into(),
            restart: Restart::OnFailure,
            restart_delay: Duration::from_millis(1500),
            restart_max: 3,
            cgroup: None,
            notify_stdout: false,
            ljspawn: "/usr/bin/ljspawn".into(),
            args: vec!["--layer".into(), "/w".into(), "--".into(), "--name".into(), "-x".into()],
        }
    }

    #[test]
    fn spec_round_trips_through_its_command_line() {
        let s = spec();
        let a = s.to_args();
        assert_eq!(Spec::from_args(a.clone()).unwrap(), s);
        // Everything after the first `--` is ljspawn's, options of the supervisor included.
        assert_eq!(a[a.len() - 5..], s.args[..]);
        let non_utf8 = OsString::from(std::ffi::OsStr::from_bytes(b"/r/\xff"));
        let s2 = Spec {
            dir: non_utf8.into(),
            args: Vec::new(),
            cgroup: Some("/cg/ljail-web".into()),
            notify_stdout: true,
            ..spec()
        };
        assert_eq!(Spec::from_args(s2.to_args()).unwrap(), s2);
    }

    #[test]
    fn spec_refuses_what_ljail_never_makes() {
        let with = |edit: &dyn Fn(&mut Vec<OsString>)| {
            let mut a = spec().to_args();
            edit(&mut a);
            Spec::from_args(a).unwrap_err().0
        };
        assert!(with(&|a| a.truncate(14)).contains("no `--`"));
        assert!(with(&|a| a.drain(0..2).for_each(drop)).contains("--name is missing"));
        assert!(with(&|a| a.splice(0..0, ["--dir".into(), "/x".into()]).for_each(drop))
            .contains("--dir given twice"));
        assert!(with(&|a| a[7] = "sometimes".into()).contains("bad restart policy 'sometimes'"));
        assert!(with(&|a| a[9] = "1s".into()).contains("--restart-delay-ms: not a number: 1s"));
        assert!(with(&|a| a[0] = "--nmae".into()).contains("unknown option --nmae"));
        assert!(with(&|a| a
            .splice(0..0, ["--notify-stdout".into(), "--notify-stdout".into()])
            .for_each(drop))
        .contains("--notify-stdout given twice"));
    }

    #[test]
    fn state_round_trips() {
        let d = std::env::temp_dir().join(format!("ljail-supervisor-state-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("state.json");
        assert_eq!(read_state(&p).state, "", "missing: the default");
        let s = State { state: "running".into(), supervisor_pid: 7, jail_pid: Some(9), ..State::default() };
        write_state(&p, &s).unwrap();
        let back = read_state(&p);
        assert_eq!((back.state.as_str(), back.supervisor_pid, back.jail_pid), ("running", 7, Some(9)));
        // Written over (swapped in): the new state, and nothing left beside it.
        write_state(&p, &State { state: "stopped".into(), ..s }).unwrap();
        assert_eq!(read_state(&p).state, "stopped");
        let names: Vec<_> = fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
        fs::remove_dir_all(&d).unwrap();
    }
}
