//! Jails as systemd units, where systemd is PID 1 (`/run/systemd/system` exists, as
//! `sd_booted()` checks): `start` runs ljspawn as the transient service `lightjail-NAME`
//! (`systemd-run`; the system manager for root, the caller's user manager for others), so
//! `systemctl status`, `journalctl -u` and, where systemd-machined runs, `machinectl list` know
//! the jail; `enable` writes the same service as a unit file and enables it for boot.
//!
//! The service runs ljspawn itself as its main process (`Type=simple`, `KillMode=mixed`: the
//! stop's SIGTERM goes to ljspawn, which hands the jail its stop signal, `--stop-signal`; after
//! `TimeoutStopSec=` everything left is SIGKILLed). Its output goes to the journal. Two hooks run
//! `ljail unit-hook NAME started|stopped` (`ExecStartPost=`, `ExecStopPost=`, at every start and
//! restart): they keep `state.json` (the jail's pid, for `exec`; the last exit) and register the
//! jail with systemd-machined (`RegisterMachine`, leader the jail's PID 1) and unregister it.
//! The restart policy maps to `Restart=`, `RestartSec=`, `StartLimitBurst=` and
//! `StartLimitIntervalSec=infinity` (restart-max N: N+1 starts), and ljspawn's own failures
//! (125-127: the jail did not start) to `RestartPreventExitStatus=`, as ljail's supervisor does.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Restart};
use crate::error::Error;
use crate::jail::{self, Jail, Jails};
use crate::supervise::{self, State};

/// Which service manager runs a jail (defined with `state.json`, which records it).
pub use ljail_supervisor::Scope;

/// `--supervisor`: who runs jails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// systemd where it is PID 1 (and, for non-root users, their user manager runs), else ljail's.
    Auto,
    /// systemd, or an error.
    Systemd,
    /// ljail's own supervisor.
    Ljail,
}

impl Choice {
    /// From `auto`, `systemd`, `ljail`.
    pub fn parse(s: &str) -> Result<Choice, Error> {
        match s {
            "auto" | "" => Ok(Choice::Auto),
            "systemd" => Ok(Choice::Systemd),
            "ljail" => Ok(Choice::Ljail),
            _ => Err(Error::Usage(format!("bad supervisor '{s}' (auto, systemd or ljail)"))),
        }
    }
}

/// Whether systemd is PID 1 (`sd_booted()`: `/run/systemd/system` is a directory).
pub fn booted() -> bool {
    fs::symlink_metadata("/run/systemd/system").is_ok_and(|m| m.is_dir())
}

/// The caller's user manager's private socket, when it runs.
fn user_manager_socket() -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let p = Path::new(&dir).join("systemd/private");
    fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_socket()).then_some(p)
}

/// The manager `start` uses for the caller, if any.
pub fn detect(choice: Choice) -> Result<Option<Scope>, Error> {
    if choice == Choice::Ljail {
        return Ok(None);
    }
    let want = choice == Choice::Systemd;
    if !booted() {
        return if want {
            Err(Error::Usage(
                "--supervisor systemd: systemd is not PID 1 here (no /run/systemd/system)".into(),
            ))
        } else {
            Ok(None)
        };
    }
    if rustix::process::geteuid().is_root() {
        return Ok(Some(Scope::System));
    }
    if user_manager_socket().is_some() {
        return Ok(Some(Scope::User));
    }
    if want {
        return Err(Error::Usage(
            "--supervisor systemd: no systemd user manager of yours runs ($XDG_RUNTIME_DIR/systemd/private)"
                .into(),
        ));
    }
    Ok(None)
}

/// The jail's unit: `lightjail-NAME.service` for a jail of the default root, else
/// `lightjail-NAME:HASH.service` (see `Jail::unit_id`).
pub fn unit_name(j: &Jail) -> String {
    format!("lightjail-{}.service", j.unit_id())
}

/// Where `enable` writes the unit file of `j`.
pub fn unit_file(scope: Scope, j: &Jail) -> Result<PathBuf, Error> {
    let dir = match scope {
        Scope::System => PathBuf::from("/etc/systemd/system"),
        Scope::User => match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d).join("systemd/user"),
            None => match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
                Some(h) => PathBuf::from(h).join(".config/systemd/user"),
                None => return Err(Error::Usage("neither XDG_CONFIG_HOME nor HOME is set".into())),
            },
        },
    };
    Ok(dir.join(unit_name(j)))
}

/// The unit's state, from `systemctl show`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// `ActiveState`: active, activating, deactivating, inactive, failed, ...
    pub active: String,
    /// `SubState`: running, auto-restart, stop-sigterm, dead, ...
    pub sub: String,
    /// `MainPID` (0: none).
    pub main_pid: u32,
    /// `NRestarts`.
    pub restarts: u32,
}

impl UnitState {
    /// Whether the unit is up or on its way (also between restarts).
    pub fn running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "activating" | "deactivating" | "reloading" | "refreshing")
    }

    /// ljail's name of the state.
    pub fn ljail_state(&self) -> &'static str {
        match (self.active.as_str(), self.sub.as_str()) {
            (_, "auto-restart") => "restarting",
            ("activating", _) => "starting",
            ("deactivating", _) => "stopping",
            ("failed", _) => "failed",
            (a, _) if self.running() && !a.is_empty() => "running",
            _ => "stopped",
        }
    }
}

/// `systemctl show` of the unit (default when systemctl cannot be run).
pub fn show(scope: Scope, unit: &str) -> UnitState {
    let out = scope
        .command("systemctl")
        .args(["show", "--property=ActiveState,SubState,MainPID,NRestarts", "--", unit])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let mut s = UnitState::default();
    let Ok(out) = out else { return s };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_once('=') {
            Some(("ActiveState", v)) => s.active = v.into(),
            Some(("SubState", v)) => s.sub = v.into(),
            Some(("MainPID", v)) => s.main_pid = v.parse().unwrap_or(0),
            Some(("NRestarts", v)) => s.restarts = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    s
}

/// Runs a systemd tool; its first line of stderr is the error.
fn run(mut cmd: Command, what: &str) -> Result<(), Error> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(Error::io("cannot run", what.split(' ').next().unwrap_or(what)))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let why = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
    Err(Error::Failed(format!("{what} failed ({}): {why}", out.status)))
}

/// One word of an `Exec*=` line (a unit file's, or a `systemd-run -p` value's): quoted when
/// it needs to be, `$` doubled (no environment expansion), and in a unit file `%` doubled (no
/// specifier expansion).
pub fn exec_word(w: &str, unit_file: bool) -> String {
    if w == ";" {
        return "\\;".into();
    }
    let plain = !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._:=+,@-%$".contains(&b));
    let mut out = String::new();
    if !plain {
        out.push('"');
    }
    for c in w.chars() {
        match c {
            '$' => out.push_str("$$"),
            '%' if unit_file => out.push_str("%%"),
            '"' | '\\' if !plain => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    if !plain {
        out.push('"');
    }
    out
}

fn exec_line(words: &[OsString], unit_file: bool) -> Result<String, Error> {
    let words: Vec<String> =
        words.iter().map(|w| unit_word(w).map(|w| exec_word(w, unit_file))).collect::<Result<_, _>>()?;
    Ok(words.join(" "))
}

/// A word of the unit's commands as text: UTF-8 without control characters (a unit file and
/// systemd's D-Bus strings hold nothing else faithfully), else refused with one line naming it
/// (a path of the lightjail root, of ljail or ljspawn, from the jail's config).
fn unit_word(w: &OsString) -> Result<&str, Error> {
    match w.to_str() {
        Some(s) if !s.chars().any(char::is_control) => Ok(s),
        Some(_) => {
            Err(Error::Usage(format!("{w:?} has a control character: it cannot go into a systemd unit")))
        }
        None => Err(Error::Usage(format!("{w:?} is not UTF-8: it cannot go into a systemd unit"))),
    }
}

/// ljail's own executable and its `--root ROOT unit-hook NAME WHAT --unit UNIT` (the hooks'
/// command). The unit's name is computed here, where the unit is made, and handed to the hook:
/// the hook runs in the manager's environment, whose `XDG_DATA_HOME` (which decides the
/// caller's default root, so the name) may not be the caller's.
fn hook(jails: &Jails, j: &Jail, what: &str) -> Result<Vec<OsString>, Error> {
    let exe =
        std::env::current_exe().map_err(Error::io("cannot find ljail's own executable", "/proc/self/exe"))?;
    Ok(vec![
        exe.into(),
        "--root".into(),
        jails.root.path.clone().into(),
        "unit-hook".into(),
        j.name.clone().into(),
        what.into(),
        "--unit".into(),
        unit_name(j).into(),
    ])
}

/// Whether `unit` is a unit name of the jail `name`: `lightjail-NAME.service` or
/// `lightjail-NAME:HASH.service`, HASH 8 lowercase hex digits (see `Jail::unit_id`).
pub fn is_unit_of(name: &str, unit: &str) -> bool {
    let Some(id) = unit.strip_prefix("lightjail-").and_then(|u| u.strip_suffix(".service")) else {
        return false;
    };
    match id.strip_prefix(name) {
        Some("") => true,
        Some(rest) => rest.strip_prefix(':').is_some_and(|h| {
            h.len() == 8 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }),
        None => false,
    }
}

/// The service's settings: `[Unit]` ones first (`true`), then `[Service]` ones. `ljspawn` and
/// `args` are the main process; `unit_file` quotes for a unit file (else for `systemd-run -p`).
pub fn properties(
    jails: &Jails,
    j: &Jail,
    cfg: &Config,
    order: &[(String, i32)],
    unit_file: bool,
) -> Result<Vec<(bool, String, String)>, Error> {
    let mut p: Vec<(bool, String, String)> = Vec::new();
    let mut set = |unit: bool, k: &str, v: String| p.push((unit, k.to_string(), v));
    set(true, "Description", format!("lightjail jail {}", j.name));
    // Boot order: after the jails with a lower priority, before those with a higher one.
    let after: Vec<String> = order
        .iter()
        .filter(|(n, pr)| *n != j.name && *pr < cfg.priority)
        .map(|(n, _)| unit_name(&j.sibling(n)))
        .collect();
    let before: Vec<String> = order
        .iter()
        .filter(|(n, pr)| *n != j.name && *pr > cfg.priority)
        .map(|(n, _)| unit_name(&j.sibling(n)))
        .collect();
    if !after.is_empty() {
        set(true, "After", after.join(" "));
    }
    if !before.is_empty() {
        set(true, "Before", before.join(" "));
    }
    if cfg.restart_max == 0 {
        set(true, "StartLimitIntervalSec", "0".into());
    } else {
        set(true, "StartLimitIntervalSec", "infinity".into());
        set(true, "StartLimitBurst", (cfg.restart_max + 1).to_string());
    }
    set(false, "Type", "simple".into());
    set(
        false,
        "Restart",
        match cfg.restart {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
        .into(),
    );
    set(false, "RestartSec", format!("{}ms", cfg.restart_delay.as_millis()));
    // ljspawn's own failures: the jail did not start, and would not at a restart.
    set(false, "RestartPreventExitStatus", "125 126 127".into());
    // A program ended by the stop's SIGTERM (ljspawn's 128+15) stopped cleanly, as systemd
    // counts a main process killed by SIGTERM.
    set(false, "SuccessExitStatus", "143".into());
    set(false, "KillMode", "mixed".into());
    set(false, "KillSignal", "SIGTERM".into());
    set(false, "TimeoutStopSec", format!("{}ms", cfg.stop_timeout.as_millis().max(1)));
    // ljspawn makes the jail's cgroups below the service's own.
    set(false, "Delegate", "yes".into());
    set(false, "WorkingDirectory", "/".into());
    set(false, "ExecStartPost", format!("-{}", exec_line(&hook(jails, j, "started")?, unit_file)?));
    set(false, "ExecStopPost", format!("-{}", exec_line(&hook(jails, j, "stopped")?, unit_file)?));
    Ok(p)
}

/// Every jail's name and priority (for `After=` and `Before=`).
fn boot_order(jails: &Jails) -> Result<Vec<(String, i32)>, Error> {
    let mut v = Vec::new();
    for n in jails.names()? {
        if let Ok(c) = jails.existing(&n).and_then(|j| j.config()) {
            v.push((n, c.priority));
        }
    }
    Ok(v)
}

/// The main process: ljspawn and the jail's arguments.
fn main_process(jails: &Jails, j: &Jail, cfg: &Config) -> Result<Vec<OsString>, Error> {
    let r = jail::resolve(&jails.root, cfg)?;
    let mut argv: Vec<OsString> = vec![supervise::ljspawn()?.into()];
    argv.extend(jail::ljspawn_args(j, cfg, &r, None));
    Ok(argv)
}

/// The unit file `enable` writes.
pub fn unit_text(jails: &Jails, j: &Jail, cfg: &Config, scope: Scope) -> Result<String, Error> {
    let props = properties(jails, j, cfg, &boot_order(jails)?, true)?;
    let mut t = format!(
        "# Written by `ljail enable {0}` from {1}; `ljail disable {0}` removes it.\n[Unit]\n",
        j.name,
        j.config_path().display()
    );
    for (_, k, v) in props.iter().filter(|p| p.0) {
        t.push_str(&format!("{k}={v}\n"));
    }
    t.push_str("\n[Service]\n");
    t.push_str(&format!("ExecStart={}\n", exec_line(&main_process(jails, j, cfg)?, true)?));
    for (_, k, v) in props.iter().filter(|p| !p.0) {
        t.push_str(&format!("{k}={v}\n"));
    }
    let target = match scope {
        Scope::System => "multi-user.target",
        Scope::User => "default.target",
    };
    t.push_str(&format!("\n[Install]\nWantedBy={target}\n"));
    Ok(t)
}

/// The `systemd-run` command line that starts the jail as a transient unit.
pub fn run_argv(jails: &Jails, j: &Jail, cfg: &Config, scope: Scope) -> Result<Vec<OsString>, Error> {
    let mut a: Vec<OsString> = vec!["systemd-run".into()];
    if scope == Scope::User {
        a.push("--user".into());
    }
    a.extend(["--quiet".into(), "--collect".into(), format!("--unit={}", unit_name(j)).into()]);
    for (_, k, v) in properties(jails, j, cfg, &boot_order(jails)?, false)? {
        a.push(format!("--property={k}={v}").into());
    }
    a.push("--".into());
    // The manager expands `$VAR`/`${VAR}` in a transient unit's command (systemd-run's
    // default, always before systemd 254) and turns `$$` into `$`: every `$` is doubled, so
    // the jail's command reaches ljspawn as written, as in a unit file (`exec_word`).
    for w in main_process(jails, j, cfg)? {
        a.push(unit_word(&w)?.replace('$', "$$").into());
    }
    Ok(a)
}

/// Writes (or rewrites) the unit file if its text differs, then reloads the manager.
fn install(scope: Scope, path: &Path, text: &str) -> Result<(), Error> {
    if fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(Error::io("cannot create", d))?;
    }
    ljbuild::store::Root::write_atomic(path, text.as_bytes())?;
    let mut c = scope.command("systemctl");
    c.arg("daemon-reload");
    run(c, "systemctl daemon-reload")
}

/// `start` through systemd: the enabled unit (its file rewritten first if the config changed),
/// else a transient one. Returns the jail's pid once the unit is up.
pub fn start(jails: &Jails, j: &Jail, cfg: &Config, scope: Scope) -> Result<Option<u32>, Error> {
    let unit = unit_name(j);
    let file = unit_file(scope, j)?;
    // A failed unit of an earlier run stays loaded until reset (a transient one would block
    // the name).
    let mut reset = scope.command("systemctl");
    reset.args(["reset-failed", "--", &unit]);
    let _ = run(reset, "systemctl reset-failed");
    supervise::write_state(
        j,
        &State { state: "starting".into(), unit: Some(unit.clone()), scope: Some(scope), ..State::default() },
    )?;
    let started = Instant::now();
    let result = if file.is_file() {
        install(scope, &file, &unit_text(jails, j, cfg, scope)?)?;
        let mut c = scope.command("systemctl");
        c.args(["start", "--", &unit]);
        run(c, &format!("systemctl start {unit}"))
    } else {
        let argv = run_argv(jails, j, cfg, scope)?;
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        run(c, &format!("systemd-run --unit={unit}"))
    };
    let st = supervise::read_state(j);
    if result.is_ok() && st.last_pid.is_some() {
        return Ok(st.last_pid);
    }
    // Failed, or it exited before the hook saw it: the first line ljspawn wrote, if any.
    let since = SystemTime::now()
        .checked_sub(started.elapsed() + Duration::from_secs(1))
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ljspawn_line = || {
        let journal = scope
            .command("journalctl")
            .args(["--no-pager", "-o", "cat", &format!("--since=@{since}"), "-u", &unit])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        journal.lines().find(|l| l.starts_with("ljspawn: ")).map(str::to_string)
    };
    // ljspawn's own failure (125-127) printed its line; the journal may not have it yet.
    let own_failure = result.is_err() && st.last_exit.is_none_or(|c| (125..=127).contains(&c));
    let deadline = Instant::now() + if own_failure { Duration::from_secs(10) } else { Duration::ZERO };
    let line = loop {
        let l = ljspawn_line();
        if l.is_some() || Instant::now() >= deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Some(line) = line {
        return Err(Error::Failed(format!("{} did not start: {line}", j.name)));
    }
    // The start job fails when the program exits (non-zero) before the unit is up; it ran,
    // unless ljspawn's own codes say it did not (125-127), as with ljail's supervisor.
    if st.last_exit.is_some_and(|c| !(125..=127).contains(&c)) {
        return Ok(None);
    }
    result.map(|()| None).map_err(|e| Error::Failed(format!("{} did not start: {e}", j.name)))
}

/// Polls until the unit is down, at most `t`.
fn down_within(scope: Scope, unit: &str, t: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !show(scope, unit).running() {
            return true;
        }
        if start.elapsed() >= t {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stop` through systemd: the unit's stop job (SIGTERM to ljspawn, which hands the jail its
/// stop signal), then, after `timeout`, SIGKILL to everything left in the unit (the stop job
/// still runs, so nothing restarts it).
pub fn stop(j: &Jail, scope: Scope, unit: &str, timeout: Duration) -> Result<(), Error> {
    fs::write(j.stop_path(), b"stop\n").map_err(Error::io("cannot write", j.stop_path()))?;
    let mut c = scope.command("systemctl");
    c.args(["stop", "--no-block", "--", unit]);
    run(c, &format!("systemctl stop {unit}"))?;
    if down_within(scope, unit, timeout) {
        return Ok(());
    }
    let mut c = scope.command("systemctl");
    c.args(["kill", "--signal=SIGKILL", "--", unit]);
    let _ = run(c, &format!("systemctl kill {unit}"));
    if down_within(scope, unit, Duration::from_secs(10)) {
        return Ok(());
    }
    Err(Error::Failed(format!("{} did not stop ({unit} is still {})", j.name, show(scope, unit).active)))
}

/// `enable`: writes the unit file and enables it (`systemctl enable`: started at boot).
pub fn enable(jails: &Jails, j: &Jail, scope: Scope, dry_run: bool) -> Result<PathBuf, Error> {
    let cfg = j.config()?;
    let text = unit_text(jails, j, &cfg, scope)?;
    let path = unit_file(scope, j)?;
    if !path.is_file() && jails.running(j)? {
        // systemd enables no transient unit, and its file would be shadowed by the transient one.
        return Err(Error::Conflict(format!(
            "jail '{}' runs as a transient unit: stop it, enable it, then start it",
            j.name
        )));
    }
    if dry_run {
        outln!("# {}", path.display());
        crate::out(format_args!("{text}"));
        return Ok(path);
    }
    let old = old_unit_file(jails, j, scope)?;
    if let Some((_, u)) = old.as_ref().filter(|(_, u)| show(scope, u).running()) {
        return Err(Error::Conflict(format!(
            "jail '{}' runs as {u}, an older ljail's unit: stop it, enable it, then start it",
            j.name
        )));
    }
    // The older ljail's unit of the jail gives way to this one (both would start it at boot),
    // first: a failure there leaves the old one as it was, never both enabled.
    if let Some((old, u)) = old {
        let mut c = scope.command("systemctl");
        c.args(["disable", "--", &u]);
        run(c, &format!("systemctl disable {u}"))?;
        fs::remove_file(&old).map_err(Error::io("cannot remove", &old))?;
        let mut c = scope.command("systemctl");
        c.arg("daemon-reload");
        run(c, "systemctl daemon-reload")?;
    }
    install(scope, &path, &text)?;
    let mut c = scope.command("systemctl");
    c.args(["enable", "--", &unit_name(j)]);
    run(c, &format!("systemctl enable {}", unit_name(j)))?;
    Ok(path)
}

/// `disable`: disables the unit and removes its file; refused while the jail runs (its unit
/// would lose its settings, the stop's among them, at the reload). Returns the units it
/// removed. A jail outside the caller's default root enabled by an older ljail has its unit file
/// under the plain `lightjail-NAME.service`: that one goes too when its hooks name this jail's
/// root (see `names_jail`), and only then.
pub fn disable(jails: &Jails, j: &Jail, scope: Scope) -> Result<Vec<String>, Error> {
    let path = unit_file(scope, j)?;
    let mut files = Vec::new();
    if path.is_file() {
        files.push((path.clone(), unit_name(j)));
    }
    files.extend(old_unit_file(jails, j, scope)?);
    if files.is_empty() {
        return Ok(Vec::new());
    }
    for (_, unit) in &files {
        if show(scope, unit).running() {
            return Err(Error::Conflict(format!("jail '{}' is running: stop it, then disable it", j.name)));
        }
    }
    for (path, unit) in &files {
        let mut c = scope.command("systemctl");
        c.args(["disable", "--", unit]);
        run(c, &format!("systemctl disable {unit}"))?;
        fs::remove_file(path).map_err(Error::io("cannot remove", path))?;
    }
    let mut c = scope.command("systemctl");
    c.arg("daemon-reload");
    run(c, "systemctl daemon-reload")?;
    Ok(files.into_iter().map(|(_, u)| u).collect())
}

/// The plain `lightjail-NAME.service` file (and unit) an older ljail's `enable` wrote for the
/// jail `j` outside the caller's default root, if there is one and its hooks name this jail's
/// root (`names_jail`); never the jail's own unit file.
pub fn old_unit_file(jails: &Jails, j: &Jail, scope: Scope) -> Result<Option<(PathBuf, String)>, Error> {
    let path = unit_file(scope, j)?;
    let old_unit = format!("lightjail-{}.service", j.name);
    let old = path.with_file_name(&old_unit);
    let ours =
        old != path && fs::read_to_string(&old).is_ok_and(|t| names_jail(&t, &jails.root.path, &j.name));
    Ok(ours.then_some((old, old_unit)))
}

/// Whether a unit file's text is one `enable` wrote for the jail `name` of the root `root`:
/// a hook line runs `ljail --root ROOT unit-hook NAME` (ROOT as given then, or canonical).
pub fn names_jail(text: &str, root: &Path, name: &str) -> bool {
    let mut roots = vec![root.to_path_buf()];
    if let Ok(c) = fs::canonicalize(root) {
        roots.push(c);
    }
    let wants: Vec<String> = roots
        .iter()
        .filter_map(|r| r.to_str())
        .map(|r| format!(" --root {} unit-hook {} ", exec_word(r, true), exec_word(name, true)))
        .collect();
    text.lines()
        .filter(|l| l.starts_with("ExecStartPost=") || l.starts_with("ExecStopPost="))
        .any(|l| wants.iter().any(|w| format!("{l} ").contains(w.as_str())))
}

/// `systemctl freeze` (`on`) or `thaw` of the unit (its cgroup v2 freezer).
pub fn freeze(scope: Scope, unit: &str, on: bool) -> Result<(), Error> {
    let verb = if on { "freeze" } else { "thaw" };
    let mut c = scope.command("systemctl");
    c.args([verb, "--", unit]);
    run(c, &format!("systemctl {verb} {unit}"))
}

/// `ljail log` of a unit's jail: `journalctl -u` (with `follow`: `-f`).
pub fn log(scope: Scope, unit: &str, follow: bool) -> Result<(), Error> {
    let mut c = scope.command("journalctl");
    c.args(["--no-pager", "-o", "cat", "-u", unit]);
    if follow {
        c.arg("-f");
    }
    let status = c.status().map_err(Error::io("cannot run", "journalctl"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Failed(format!("journalctl -u {unit} failed ({status})")))
    }
}

/// Whether systemd-machined is installed here (it is started on demand over D-Bus).
fn machined() -> bool {
    ["/usr/lib/systemd/systemd-machined", "/lib/systemd/systemd-machined"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// Calls a method of machined's manager with `busctl`.
fn machined_call(method: &str, sig: &str, args: &[String]) -> Result<(), Error> {
    let mut c = Command::new("busctl");
    c.args([
        "call",
        "org.freedesktop.machine1",
        "/org/freedesktop/machine1",
        "org.freedesktop.machine1.Manager",
        method,
        sig,
    ]);
    c.args(args);
    run(c, &format!("busctl call {method}"))
}

/// The unit of the jail `name` whose cgroup this process is in (systemd runs a unit's hooks in
/// its cgroup, or in its `.control` child when delegated).
fn own_unit(name: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    path.rsplit('/').take(2).find(|c| is_unit_of(name, c)).map(str::to_string)
}

/// The machine name of a jail from its unit's name (a host name: `_` and `:` become `-`): its
/// name, with its root's hash outside the default root (see `Jail::unit_id`).
pub fn machine_name(unit: &str) -> String {
    let id = unit.strip_prefix("lightjail-").and_then(|u| u.strip_suffix(".service")).unwrap_or(unit);
    id.chars().map(|c| if c == '_' || c == ':' { '-' } else { c }).collect()
}

/// The host pid of the jail's PID 1: the child of ljspawn (`main`) that is pid 1 of a pid
/// namespace of its own.
fn jail_pid_of(main: u32) -> Option<u32> {
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
        let ppid = field("PPid:").and_then(|v| v.parse::<u32>().ok());
        let inner = field("NSpid:").and_then(|v| v.split_whitespace().last());
        if ppid == Some(main) && inner == Some("1") {
            return Some(pid);
        }
    }
    None
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The exit status as ljail reports it (128+N for signal N) from `$EXIT_CODE`/`$EXIT_STATUS`.
fn exit_status() -> Option<i32> {
    let code = std::env::var("EXIT_CODE").ok()?;
    let status = std::env::var("EXIT_STATUS").ok()?;
    if code == "exited" {
        return status.parse().ok();
    }
    const SIGNALS: &[(&str, i32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("ABRT", 6),
        ("FPE", 8),
        ("KILL", 9),
        ("SEGV", 11),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
    ];
    SIGNALS.iter().find(|(n, _)| *n == status).map(|(_, s)| 128 + s)
}

/// `ljail unit-hook NAME started|stopped --unit UNIT`, run by the unit (`ExecStartPost=`,
/// `ExecStopPost=`): keeps `state.json` and the machined registration. Its lines go to the
/// journal. UNIT is the name `start`/`enable` gave the unit (never computed again here: the
/// manager's environment may give another); without it (a unit file of an older ljail), the
/// unit whose cgroup the hook runs in, else the one `start` wrote to `state.json`.
pub fn hook_run(j: &Jail, what: &str, unit: Option<&str>) -> Result<u8, Error> {
    let scope = if rustix::process::geteuid().is_root() { Scope::System } else { Scope::User };
    let mut st = supervise::read_state(j);
    let unit = match unit {
        Some(u) if is_unit_of(&j.name, u) => u.to_string(),
        Some(u) => return Err(Error::Usage(format!("unit-hook: '{u}' is not a unit of jail '{}'", j.name))),
        None => match own_unit(&j.name).or_else(|| st.unit.clone().filter(|u| is_unit_of(&j.name, u))) {
            Some(u) => u,
            None => {
                return Err(Error::Usage(format!(
                    "unit-hook: no --unit, and no unit of '{}' in its state.json (`ljail enable {0}` rewrites an older unit file)",
                    j.name
                )));
            }
        },
    };
    st.unit = Some(unit.clone());
    st.scope = Some(scope);
    let register = scope == Scope::System && machined();
    match what {
        "started" => {
            let Some(main) = std::env::var("MAINPID").ok().and_then(|p| p.parse::<u32>().ok()) else {
                return Err(Error::Usage("unit-hook started: no $MAINPID (run by the unit only)".into()));
            };
            // ljspawn sets the jail up; give up when it is gone (a program that exited at once).
            let deadline = Instant::now() + Duration::from_secs(60);
            let pid = loop {
                if let Some(p) = jail_pid_of(main) {
                    break Some(p);
                }
                if !Path::new(&format!("/proc/{main}")).exists() || Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            st.state = "running".into();
            st.restarts = show(scope, &unit).restarts;
            st.supervisor_pid = 0;
            st.ljspawn_pid = Some(main);
            st.jail_pid = pid;
            st.last_pid = pid.or(st.last_pid);
            st.started_at = Some(now());
            supervise::write_state(j, &st)?;
            if let (Some(pid), true) = (pid, register) {
                let name = machine_name(&unit);
                let _ = machined_call("UnregisterMachine", "s", std::slice::from_ref(&name));
                let data = j.data_dir(j.config()?.root);
                let args = [
                    name,
                    "0".into(),
                    "lightjail".into(),
                    "container".into(),
                    pid.to_string(),
                    data.to_string_lossy().into_owned(),
                ];
                if let Err(e) = machined_call("RegisterMachine", "sayssus", &args) {
                    ljbuild::errln!("ljail: {}: not registered with systemd-machined: {e}", j.name);
                }
            }
        }
        "stopped" => {
            if register {
                let _ = machined_call("UnregisterMachine", "s", &[machine_name(&unit)]);
            }
            let code = exit_status();
            st.last_exit = code;
            st.restarts = show(scope, &unit).restarts;
            // As ljail's supervisor says it (systemd decides the restart itself, from the same
            // policy).
            let cfg = j.config()?;
            let again = match cfg.restart {
                Restart::No => false,
                Restart::OnFailure => code != Some(0),
                Restart::Always => true,
            };
            st.state = if j.stop_path().exists() {
                "stopped"
            } else if code.is_some_and(|c| (125..=127).contains(&c)) {
                "failed"
            } else if again && (cfg.restart_max == 0 || st.restarts < cfg.restart_max) {
                "restarting"
            } else if again {
                "failed"
            } else {
                "exited"
            }
            .into();
            st.ljspawn_pid = None;
            st.jail_pid = None;
            supervise::write_state(j, &st)?;
        }
        _ => return Err(Error::Usage(format!("unit-hook: started or stopped, not '{what}'"))),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(exec_word("/bin/sh", true), "/bin/sh");
        assert_eq!(exec_word("a b", true), "\"a b\"");
        assert_eq!(exec_word("echo \"$X\" 100%", true), "\"echo \\\"$$X\\\" 100%%\"");
        assert_eq!(exec_word("100%", false), "100%");
        assert_eq!(exec_word("", false), "\"\"");
        assert_eq!(exec_word("a\nb\\", false), "\"a\\nb\\\\\"");
        assert_eq!(exec_word(";", true), "\\;");
    }

    #[test]
    fn units_of_a_jail() {
        assert!(is_unit_of("web", "lightjail-web.service"));
        assert!(is_unit_of("web", "lightjail-web:0123abcd.service"));
        assert!(is_unit_of("a-b", "lightjail-a-b.service"));
        for bad in [
            "lightjail-web2.service",
            "lightjail-we.service",
            "lightjail-web:0123ABCD.service",
            "lightjail-web:0123abc.service",
            "lightjail-web:0123abcde.service",
            "lightjail-web:.service",
            "lightjail-web:0123abcd.service.d",
            "lightjail-web",
            "web.service",
            "lightjail-web.service/../x.service",
            "",
        ] {
            assert!(!is_unit_of("web", bad), "{bad}");
        }
        assert_eq!(machine_name("lightjail-my_web:0123abcd.service"), "my-web-0123abcd");
        assert_eq!(machine_name("lightjail-web.service"), "web");
    }

    #[test]
    fn unit_files_naming_a_jail() {
        let t = |root: &str, name: &str| {
            format!(
                "[Service]\nExecStart=/opt/ljspawn --root {root}/jails/{name}/rootfs -- /bin/sh\nExecStartPost=-/opt/ljail --root {root} unit-hook {name} started\nExecStopPost=-/opt/ljail --root {root} unit-hook {name} stopped\n"
            )
        };
        let root = Path::new("/nonexistent/lj-a");
        assert!(names_jail(&t("/nonexistent/lj-a", "web"), root, "web"));
        assert!(!names_jail(&t("/nonexistent/lj-b", "web"), root, "web"));
        assert!(!names_jail(&t("/nonexistent/lj-a", "web2"), root, "web"));
        assert!(!names_jail(&t("/nonexistent/lj-a/x", "web"), root, "web"));
        // Only the hook lines count.
        assert!(!names_jail("Description=--root /nonexistent/lj-a unit-hook web x\n", root, "web"));
        let quoted = Path::new("/nonexistent/lj a");
        assert!(names_jail(&t("\"/nonexistent/lj a\"", "web"), quoted, "web"));
    }

    #[test]
    fn hooks_name_the_unit() {
        let dir = std::env::temp_dir().join(format!("ljail-hook-test-{}", std::process::id()));
        let root = ljbuild::store::Root::open(dir.clone(), ljbuild::store::RootSource::Flag).unwrap();
        let jails = Jails::open(root).unwrap();
        let j = Jail { name: "web".into(), dir: dir.join("jails/web") };
        let argv = hook(&jails, &j, "started").unwrap();
        let _ = fs::remove_dir_all(&dir);
        let n = argv.len();
        assert_eq!(&argv[n - 5..n - 2], &["unit-hook".into(), "web".into(), "started".into()] as &[OsString]);
        assert_eq!(argv[n - 2], "--unit");
        assert_eq!(argv[n - 1], OsString::from(unit_name(&j)));
    }

    #[test]
    fn states() {
        let s = |a: &str, b: &str| UnitState { active: a.into(), sub: b.into(), ..UnitState::default() };
        assert_eq!(s("active", "running").ljail_state(), "running");
        assert_eq!(s("activating", "auto-restart").ljail_state(), "restarting");
        assert_eq!(s("inactive", "dead").ljail_state(), "stopped");
        assert!(s("deactivating", "stop-sigterm").running());
        assert!(!s("failed", "failed").running());
        assert!(!UnitState::default().running());
    }
}
