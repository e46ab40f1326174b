//! `create`, `list`, `status`, `edit`, `destroy`, `snapshot`, `rollback`, `clone`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ljbuild::resolve;
use ljbuild::spawn::command_line;
use ljbuild::store::remove_tree;
use ljbuild::ui::Ui;
use serde::Serialize;

use crate::config::{self, Config, PrivateUsers, RootKind, Source};
use crate::copy::{self, How, Stats};
use crate::error::Error;
use crate::freezer;
use crate::ids;
use crate::jail::{self, Jail, Jails};
use crate::supervise::{self, read_state};

/// Resolves `IMAGE[@PREFIX]` or `--world W` to a config source (an image at its exact version).
pub fn resolve_source(
    jails: &Jails,
    image: Option<&str>,
    world: Option<&str>,
    ui: &Ui,
) -> Result<Source, Error> {
    match (image, world) {
        (Some(spec), None) => {
            let (name, prefix) = ljbuild::commands::parse_ref(spec, false)?;
            let (meta, picked) = resolve::overlay_picked(&jails.root, &name, prefix.as_deref())?;
            ui.step("image", &format!("{}@{} ({picked})", meta.name, meta.version), None);
            Ok(Source::Image { name: meta.name, version: meta.version })
        }
        (None, Some(w)) => {
            let (name, _) = resolve::world(&jails.root, w)?;
            Ok(Source::World(name))
        }
        _ => Err(Error::Usage("give an IMAGE[@PREFIX] or --world W (one of them)".into())),
    }
}

/// Runs `ljspawn --dry-run` with the jail's arguments: ljspawn checks every option as it would
/// at start (its own refusals included), and nothing runs.
fn check_with_ljspawn(j: &Jail, cfg: &Config, layers: &jail::Resolved) -> Result<(), Error> {
    let ljspawn = supervise::ljspawn()?;
    let mut args: Vec<OsString> = vec!["--dry-run".into()];
    args.extend(jail::ljspawn_args(j, cfg, layers, None));
    let out = Command::new(&ljspawn)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(Error::io("cannot run", &ljspawn))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim();
    Err(Error::Jail(format!("ljspawn refuses the jail's settings: {line}")))
}

/// `ljail create`.
/// `pick`: the jail gets a private id range picked for it (`private-users BASE`, see `ids`).
pub fn create(
    jails: &Jails,
    name: &str,
    mut cfg: Config,
    pick: bool,
    dry_run: bool,
    ui: &Ui,
) -> Result<(), Error> {
    let j = jails.jail(name)?;
    // (Resolved again once the id range is known: `docker yes` devices depend on it.)
    jail::resolve(&jails.root, &cfg)?;
    // The config goes through its own parser before anything is made (its checks of the
    // values are the options' checks here).
    if let Some((key, v)) = cfg.control_char() {
        return Err(Error::Usage(format!(
            "{key} {v:?} has a control character: a jail's config and its systemd unit hold none"
        )));
    }
    let text = cfg.to_text();
    config::parse(&text).map_err(|err| Error::Usage(err.msg))?;
    if dry_run {
        if pick {
            let b = ids::pick(&ids::pick_key(jails, name), &ids::used(jails, None))?;
            cfg.private_users = Some(PrivateUsers::Base(b));
        }
        let layers = jail::resolve(&jails.root, &cfg)?;
        let ljspawn = supervise::ljspawn()?;
        outln!("jail     {} ({})", j.name, j.dir.display());
        outln!("source   {} ({})", cfg.source, cfg.root.as_str());
        outln!("ljspawn  {}", command_line(&ljspawn, &jail::ljspawn_args(&j, &cfg, &layers, None)));
        return Ok(());
    }
    let _lock = jails.lock(&j)?;
    if j.dir.exists() {
        return Err(Error::Conflict(format!("jail '{name}' exists already ({})", j.dir.display())));
    }
    // The root's id ranges are chosen one jail at a time (held until the config is in place).
    let _ids = if pick || cfg.private_base().is_some() { Some(jails.root.lock("ids", || {})?) } else { None };
    if pick {
        cfg.private_users =
            Some(PrivateUsers::Base(ids::pick(&ids::pick_key(jails, name), &ids::used(jails, None))?));
    } else if let Some(b) = cfg.private_base() {
        if let Some(who) = ids::overlap(b, &ids::used(jails, Some(name))) {
            return Err(Error::Conflict(format!("private-users {b}: that range is in use ({who})")));
        }
    }
    let text = cfg.to_text();
    let layers = jail::resolve(&jails.root, &cfg)?;
    let base = cfg.private_base();
    let staging = jails.dir().join(format!(".{name}.new"));
    remove_tree(&staging).map_err(Error::io("cannot remove", &staging))?;
    let made = (|| -> Result<Stats, Error> {
        fs::create_dir(&staging).map_err(Error::io("cannot create", &staging))?;
        if let Some(b) = base {
            ids::open_path_to(jails, &staging, b)?;
        }
        let sj = Jail { name: j.name.clone(), dir: staging.clone() };
        let mut stats = Stats::default();
        match cfg.root {
            RootKind::Thin => {
                copy::make_data_dir(&staging.join("upper"))?;
                fs::create_dir(staging.join("work"))
                    .map_err(Error::io("cannot create", staging.join("work")))?;
                if let Some(b) = base {
                    ids::give(&staging.join("upper"), b)?;
                    ids::give(&staging.join("work"), b)?;
                }
            }
            RootKind::Copy => {
                let dst = staging.join("rootfs");
                copy::make_data_dir(&dst)?;
                for l in &layers.layers {
                    copy::copy_tree(l, &dst, How::Merge, &mut stats)?;
                }
                // Host root's files of the layers become the jail's root's.
                if let Some(b) = base {
                    ids::shift_tree(&dst, 0, b)?;
                }
            }
        }
        if cfg.init {
            sj.ensure_machine_id(cfg.root)?;
        }
        if cfg.docker {
            sj.ensure_storage()?;
        }
        // ljspawn checks the options against the real directories (in the staging place:
        // its paths differ only in the last component).
        check_with_ljspawn(&sj, &cfg, &layers)?;
        ljbuild::store::Root::write_atomic(&staging.join("config"), text.as_bytes())?;
        Ok(stats)
    })();
    let stats = match made {
        Ok(s) => s,
        Err(e) => {
            let _ = remove_tree(&staging);
            // (Still under the `ids` lock.)
            if let Some(b) = base {
                ids::close_path_to(jails, b);
            }
            return Err(e);
        }
    };
    fs::rename(&staging, &j.dir).map_err(Error::io("cannot rename into place", &j.dir))?;
    let how = match cfg.root {
        RootKind::Thin => "thin: a persistent upper over its layers".to_string(),
        RootKind::Copy => format!("a full copy: {} files cloned, {} copied", stats.cloned, stats.copied),
    };
    let how = if crate::btrfs::is_subvolume(&j.data_dir(cfg.root)) {
        format!("{how}; a btrfs subvolume")
    } else {
        how
    };
    ui.step("create", &format!("{name} on {} ({how})", cfg.source), None);
    Ok(())
}

/// `status --json` / `list --json`: one jail.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The name.
    pub name: String,
    /// `running`, `starting`, `restarting`, `stopped`, `exited`, `failed`.
    pub state: String,
    /// The jail's PID 1 (host pid), when running.
    pub pid: Option<u32>,
    /// The supervisor's pid, when running.
    pub supervisor_pid: Option<u32>,
    /// `image NS/NAME@VERSION` or `world NAME`.
    pub source: String,
    /// `thin` or `copy`.
    pub root: String,
    /// The network mode.
    pub net: String,
    /// The jail's address, if any.
    pub ip: Option<String>,
    /// The command.
    pub command: Vec<String>,
    /// The restart policy.
    pub restart: String,
    /// Restarts since the last start.
    pub restarts: u32,
    /// The last exit status.
    pub last_exit: Option<i32>,
    /// When it last started (seconds since the epoch).
    pub started_at: Option<u64>,
    /// Started by `start --all`.
    pub autostart: bool,
    /// Boot order.
    pub priority: i32,
    /// Whether it is frozen right now.
    pub frozen: bool,
    /// Snapshots.
    pub snapshots: Vec<String>,
    /// The jail's directory.
    pub dir: PathBuf,
    /// The log (of ljail's supervisor; under systemd, the journal: `journalctl -u UNIT`).
    pub log: PathBuf,
    /// `private-users BASE`: the first host id of the jail's private range (its root), else
    /// None.
    pub private_users: Option<u32>,
    /// The systemd unit that runs the jail, when systemd does.
    pub unit: Option<String>,
    /// Its manager: `system` or `user`.
    pub scope: Option<&'static str>,
}

/// The status of one jail.
pub fn status_of(jails: &Jails, j: &Jail) -> Result<Status, Error> {
    let cfg = j.config()?;
    let running = jails.running_now(j)?;
    let st = read_state(j);
    let state = if running {
        if st.state.is_empty() || st.state == "stopped" {
            "running".into()
        } else {
            st.state.clone()
        }
    } else if st.state.is_empty()
        || matches!(st.state.as_str(), "running" | "starting" | "restarting" | "stopping")
    {
        // Never started, or its supervisor was killed.
        "stopped".into()
    } else {
        st.state.clone()
    };
    let unit = st.unit.clone().zip(st.scope);
    // Under systemd, the unit says how it is (and how often it restarted).
    let (state, restarts) = match &unit {
        Some((u, scope)) if running => {
            let us = crate::systemd::show(*scope, u);
            (us.ljail_state().to_string(), us.restarts)
        }
        _ => (state, st.restarts),
    };
    let frozen = running && st.freezer.as_deref().and_then(freezer::state).is_some_and(|s| s != "THAWED");
    Ok(Status {
        name: j.name.clone(),
        state,
        pid: if running { st.jail_pid } else { None },
        supervisor_pid: if running && st.supervisor_pid != 0 { Some(st.supervisor_pid) } else { None },
        source: cfg.source.to_string(),
        root: cfg.root.as_str().into(),
        net: cfg.net_mode().into(),
        ip: cfg.ip.clone(),
        command: cfg.command.clone(),
        restart: cfg.restart.as_str().into(),
        restarts,
        last_exit: st.last_exit,
        started_at: st.started_at,
        autostart: cfg.autostart,
        priority: cfg.priority,
        frozen,
        snapshots: j.snapshots()?,
        private_users: cfg.private_base(),
        dir: j.dir.clone(),
        log: j.log_path(),
        scope: unit.as_ref().map(|(_, s)| s.as_str()),
        unit: unit.map(|(u, _)| u),
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Failed(format!("cannot write JSON: {e}")))
}

/// `ljail status NAME [--json]`.
pub fn status(jails: &Jails, name: &str, json: bool) -> Result<(), Error> {
    let j = jails.existing(name)?;
    let s = status_of(jails, &j)?;
    if let Some(scope) = jails.manager {
        if let Ok(Some((old, _))) = crate::systemd::old_unit_file(jails, &j, scope) {
            ljbuild::errln!(
                "ljail: warning: {} is an older ljail's unit file of {name} (named without its root's hash): `ljail disable {name}` removes it, `ljail enable {name}` replaces it",
                old.display()
            );
        }
    }
    if json {
        outln!("{}", to_json(&s)?);
        return Ok(());
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    outln!("name        {}", s.name);
    outln!("state       {}{}", s.state, if s.frozen { " (frozen)" } else { "" });
    outln!("pid         {}", opt(s.pid.map(|p| p.to_string())));
    outln!("source      {} ({})", s.source, s.root);
    outln!(
        "command     {}",
        s.command.iter().map(|w| ljbuild::spawn::shell_quote(w.as_ref())).collect::<Vec<_>>().join(" ")
    );
    outln!("net         {}{}", s.net, s.ip.as_deref().map(|i| format!(" {i}")).unwrap_or_default());
    outln!(
        "restart     {} ({} restarts, last exit {})",
        s.restart,
        s.restarts,
        opt(s.last_exit.map(|c| c.to_string()))
    );
    outln!("autostart   {} (priority {})", if s.autostart { "yes" } else { "no" }, s.priority);
    outln!("snapshots   {}", if s.snapshots.is_empty() { "-".into() } else { s.snapshots.join(", ") });
    let cfg = j.config()?;
    match cfg.private_base() {
        Some(b) => outln!("ids         private: jail 0-65535 = host {b}-{} (private-users)", u64::from(b) + 65535),
        None if rustix::process::geteuid().is_root() && (cfg.init || cfg.docker) => outln!(
            "ids         the host's 0-65535 (private-users no, or a config without it): the jail's root is host root, no boundary"
        ),
        None => {}
    }
    outln!("dir         {}", s.dir.display());
    match &s.unit {
        Some(u) if s.scope == Some("user") => outln!("log         journalctl --user -u {u}"),
        Some(u) => outln!("log         journalctl -u {u}"),
        None => outln!("log         {}", s.log.display()),
    }
    Ok(())
}

/// `ljail list [--json]`.
pub fn list(jails: &Jails, json: bool) -> Result<(), Error> {
    let mut all = Vec::new();
    for n in jails.names()? {
        all.push(status_of(jails, &jails.existing(&n)?)?);
    }
    if json {
        outln!("{}", to_json(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        ljbuild::errln!(
            "ljail: no jails in {} (make one with `ljail create NAME IMAGE -- CMD`)",
            jails.dir().display()
        );
        return Ok(());
    }
    outln!("{:<20} {:<10} {:>7}  {:<28} {:<16} BOOT", "NAME", "STATE", "PID", "SOURCE", "NET");
    for s in all {
        let net = s.ip.clone().unwrap_or(s.net.clone());
        let boot = if s.autostart { format!("{}", s.priority) } else { "-".into() };
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        outln!("{:<20} {:<10} {:>7}  {:<28} {:<16} {boot}", s.name, s.state, pid, s.source, net);
    }
    Ok(())
}

/// `ljail edit NAME`: `$VISUAL` or `$EDITOR` (else `vi`) on a copy of the config; the copy
/// replaces the config only if it parses and ljspawn accepts it.
pub fn edit(jails: &Jails, name: &str, ui: &Ui) -> Result<(), Error> {
    let j = jails.existing(name)?;
    let _lock = jails.lock(&j)?;
    let tmp = j.dir.join("config.edit");
    fs::copy(j.config_path(), &tmp).map_err(Error::io("cannot copy", &tmp))?;
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|e| !e.is_empty()))
        .unwrap_or_else(|| "vi".into());
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&tmp)
        .status()
        .map_err(Error::io("cannot run the editor", &editor));
    let result = (|| -> Result<bool, Error> {
        let status = status?;
        if !status.success() {
            return Err(Error::Failed(format!(
                "the editor ({editor}) failed ({status}); the config is unchanged"
            )));
        }
        let text = fs::read_to_string(&tmp).map_err(Error::io("cannot read", &tmp))?;
        let old = j.config()?;
        let cfg = config::parse(&text).map_err(|err| Error::Config { path: j.config_path(), err })?;
        if cfg.root != old.root {
            return Err(Error::Usage(
                "'root' cannot be changed (thin and copy jails keep different data)".into(),
            ));
        }
        if cfg.private_base() != old.private_base() {
            return Err(Error::Usage(
                "'private-users' cannot be changed (the jail's files are owned in its id range; `ljail clone` moves a copy into a range of its own)".into(),
            ));
        }
        if text == fs::read_to_string(j.config_path()).unwrap_or_default() {
            return Ok(false);
        }
        check_with_ljspawn(&j, &cfg, &jail::resolve(&jails.root, &cfg)?)?;
        ljbuild::store::Root::write_atomic(&j.config_path(), text.as_bytes())?;
        Ok(true)
    })();
    let _ = fs::remove_file(&tmp);
    if result? {
        let note = if jails.running_now(&j)? { " (restart the jail to apply it)" } else { "" };
        ui.step("edit", &format!("{name}: config saved{note}"), None);
    } else {
        ui.step("edit", &format!("{name}: no change"), None);
    }
    Ok(())
}

/// `ljail destroy NAME [--force]`.
pub fn destroy(jails: &Jails, name: &str, force: bool, ui: &Ui) -> Result<(), Error> {
    let j = jails.existing(name)?;
    let _lock = jails.lock(&j)?;
    if jails.running(&j)? {
        if !force {
            return Err(Error::Conflict(format!(
                "jail '{name}' is running (stop it first, or destroy --force)"
            )));
        }
        supervise::stop_locked(jails, &j, None)?;
    }
    if let Some(scope) = jails.manager {
        crate::systemd::disable(jails, &j, scope)?;
    }
    if let Some(cg) = read_state(&j).freezer {
        freezer::remove(&cg);
    }
    supervise::remove_cgroup(&j);
    let private = j.config().ok().and_then(|c| c.private_base());
    // The grant on the root changes under the root's `ids` lock (create and clone hold it
    // while they add theirs: one read-modify-write of the ACL at a time).
    let _ids = if private.is_some() { Some(jails.root.lock("ids", || {})?) } else { None };
    // Renamed first, so a half-removed jail never looks like a jail.
    let trash = jails.dir().join(format!(".{name}.destroy"));
    remove_tree(&trash).map_err(Error::io("cannot remove", &trash))?;
    fs::rename(&j.dir, &trash).map_err(Error::io("cannot rename", &j.dir))?;
    remove_tree(&trash).map_err(Error::io("cannot remove", &trash))?;
    if let Some(b) = private {
        ids::close_path_to(jails, b);
    }
    ui.step("destroy", name, None);
    Ok(())
}

/// Runs `f` with the running jail frozen (when it runs; refused when it runs and cannot be
/// frozen).
fn frozen<T>(jails: &Jails, j: &Jail, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    if !jails.running(j)? {
        return f();
    }
    if let (Some((scope, unit)), Some(_free)) = (supervise::unit_of(j), jails.try_run_lock(j)?) {
        // Under systemd: the unit's cgroup v2 freezer (`systemctl freeze`).
        crate::systemd::freeze(scope, &unit, true)?;
        let r = f();
        let thawed = crate::systemd::freeze(scope, &unit, false);
        return r.and_then(|v| thawed.map(|()| v));
    }
    let Some(cg) = read_state(j).freezer else {
        return Err(Error::Conflict(format!(
            "jail '{}' is running and cannot be frozen (no freezer cgroup: that needs root and the cgroup v1 freezer, or a cgroup v2 of its own); stop it first",
            j.name
        )));
    };
    freezer::freeze(&cg)?;
    let r = f();
    freezer::thaw(&cg);
    r
}

/// `ljail snapshot NAME SNAP`.
pub fn snapshot(jails: &Jails, name: &str, snap: &str, ui: &Ui) -> Result<(), Error> {
    jail::check_name("snapshot", snap)?;
    let j = jails.existing(name)?;
    let _lock = jails.lock(&j)?;
    let cfg = j.config()?;
    let dst = j.snapshots_dir().join(snap);
    if dst.exists() {
        return Err(Error::Conflict(format!("snapshot '{snap}' of '{name}' exists already")));
    }
    let tmp = j.snapshots_dir().join(format!(".{snap}.new"));
    fs::create_dir_all(j.snapshots_dir()).map_err(Error::io("cannot create", j.snapshots_dir()))?;
    remove_tree(&tmp).map_err(Error::io("cannot remove", &tmp))?;
    let mut stats = Stats::default();
    let r = (|| -> Result<(), Error> {
        fs::create_dir(&tmp).map_err(Error::io("cannot create", &tmp))?;
        let data = jail::data_name(cfg.root);
        frozen(jails, &j, || copy::copy_data(&j.data_dir(cfg.root), &tmp.join(data), &mut stats))?;
        fs::copy(j.config_path(), tmp.join("config")).map_err(Error::io("cannot copy", j.config_path()))?;
        fs::rename(&tmp, &dst).map_err(Error::io("cannot rename into place", &dst))
    })();
    if r.is_err() {
        let _ = remove_tree(&tmp);
    }
    r?;
    ui.step("snapshot", &format!("{name}@{snap} ({})", stats.describe()), None);
    Ok(())
}

fn existing_snapshot(j: &Jail, snap: &str) -> Result<PathBuf, Error> {
    jail::check_name("snapshot", snap)?;
    let p = j.snapshots_dir().join(snap);
    if !p.join("config").is_file() {
        let have = j.snapshots()?;
        return Err(Error::NotFound(format!(
            "no snapshot '{snap}' of '{}' (snapshots: {})",
            j.name,
            if have.is_empty() { "none".into() } else { have.join(", ") }
        )));
    }
    Ok(p)
}

/// Replaces `dst` by a verbatim copy of `src` (copied beside it, then swapped).
fn replace_with_copy(src: &Path, dst: &Path, stats: &mut Stats) -> Result<(), Error> {
    let new = dst.with_extension("new");
    let old = dst.with_extension("old");
    for p in [&new, &old] {
        remove_tree(p).map_err(Error::io("cannot remove", p))?;
    }
    copy::copy_data(src, &new, stats)?;
    fs::rename(dst, &old).map_err(Error::io("cannot rename", dst))?;
    fs::rename(&new, dst).map_err(Error::io("cannot rename into place", dst))?;
    remove_tree(&old).map_err(Error::io("cannot remove", &old))
}

/// `ljail rollback NAME SNAP`: the data and the config as they were at the snapshot.
pub fn rollback(jails: &Jails, name: &str, snap: &str, ui: &Ui) -> Result<(), Error> {
    let j = jails.existing(name)?;
    let _lock = jails.lock(&j)?;
    let sp = existing_snapshot(&j, snap)?;
    if jails.running(&j)? {
        return Err(Error::Conflict(format!("jail '{name}' is running (stop it before a rollback)")));
    }
    let cfg = j.config()?;
    let data = jail::data_name(cfg.root);
    let mut stats = Stats::default();
    replace_with_copy(&sp.join(data), &j.data_dir(cfg.root), &mut stats)?;
    if cfg.root == RootKind::Thin {
        let work = j.dir.join("work");
        remove_tree(&work).map_err(Error::io("cannot remove", &work))?;
        fs::create_dir(&work).map_err(Error::io("cannot create", &work))?;
        // (The snapshot's data is in the jail's range already: it was taken in it.)
        if let Some(b) = cfg.private_base() {
            ids::give(&work, b)?;
        }
    }
    let text = fs::read(sp.join("config")).map_err(Error::io("cannot read", sp.join("config")))?;
    ljbuild::store::Root::write_atomic(&j.config_path(), &text)?;
    ui.step("rollback", &format!("{name} to {snap} ({})", stats.describe()), None);
    Ok(())
}

/// `ljail clone NAME NEW [--snapshot SNAP]`: a new jail with a copy of the data (of the
/// snapshot, or of the jail now, frozen if it runs) and of the config.
pub fn clone(jails: &Jails, name: &str, new: &str, snap: Option<&str>, ui: &Ui) -> Result<(), Error> {
    let j = jails.existing(name)?;
    let n = jails.jail(new)?;
    let _lock = jails.lock(&j)?;
    let _lock2 = jails.lock(&n)?;
    if n.dir.exists() {
        return Err(Error::Conflict(format!("jail '{new}' exists already ({})", n.dir.display())));
    }
    let (config_src, data_src) = match snap {
        Some(s) => {
            let sp = existing_snapshot(&j, s)?;
            (sp.join("config"), sp)
        }
        None => (j.config_path(), j.dir.clone()),
    };
    let mut text = fs::read_to_string(&config_src).map_err(Error::io("cannot read", &config_src))?;
    let mut cfg = config::parse(&text).map_err(|err| Error::Config { path: config_src.clone(), err })?;
    let data = jail::data_name(cfg.root);
    // A jail in a private id range: the clone gets a range of its own (picked under the root's
    // `ids` lock, held until its config is in place), its copy of the data shifted into it.
    let old_base = cfg.private_base();
    let _ids = if old_base.is_some() { Some(jails.root.lock("ids", || {})?) } else { None };
    let shift = match old_base {
        Some(from) => {
            let to = ids::pick(&ids::pick_key(jails, new), &ids::used(jails, None))?;
            cfg.private_users = Some(PrivateUsers::Base(to));
            text = cfg.to_text();
            Some((from, to))
        }
        None => None,
    };
    let staging = jails.dir().join(format!(".{new}.new"));
    remove_tree(&staging).map_err(Error::io("cannot remove", &staging))?;
    let mut stats = Stats::default();
    let r = (|| -> Result<(), Error> {
        fs::create_dir(&staging).map_err(Error::io("cannot create", &staging))?;
        if let Some((_, to)) = shift {
            ids::open_path_to(jails, &staging, to)?;
        }
        let mut copy_data = || copy::copy_data(&data_src.join(data), &staging.join(data), &mut stats);
        if snap.is_some() {
            copy_data()?;
        } else {
            frozen(jails, &j, copy_data)?;
        }
        if let Some((from, to)) = shift {
            // (The copy is in the staging directory: no jail reaches it.)
            ids::shift_tree(&staging.join(data), from, to)?;
        }
        if cfg.root == RootKind::Thin {
            fs::create_dir(staging.join("work")).map_err(Error::io("cannot create", staging.join("work")))?;
            if let Some((_, to)) = shift {
                ids::give(&staging.join("work"), to)?;
            }
        }
        if cfg.init {
            // A machine id is one machine's: the clone makes its own at its first start.
            let id = staging.join(data).join("etc/machine-id");
            match fs::remove_file(&id) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("cannot remove", &id)(e));
                }
                _ => {}
            }
        }
        ljbuild::store::Root::write_atomic(&staging.join("config"), text.as_bytes())?;
        fs::rename(&staging, &n.dir).map_err(Error::io("cannot rename into place", &n.dir))
    })();
    if r.is_err() {
        let _ = remove_tree(&staging);
        // (Still under the `ids` lock.)
        if let Some((_, to)) = shift {
            ids::close_path_to(jails, to);
        }
    }
    r?;
    let from = snap.map(|s| format!("{name}@{s}")).unwrap_or_else(|| name.to_string());
    ui.step("clone", &format!("{from} -> {new} ({})", stats.describe()), None);
    if let Some(ip) = &cfg.ip {
        ui.warn(&format!("{new} has {name}'s address {ip}: change it (ljail edit {new}) before both run"));
    }
    Ok(())
}

/// `ljail enable NAME` (`on`) and `disable NAME`: under systemd, the jail's unit file
/// installed and enabled, or disabled and removed; elsewhere, `autostart` in its config.
pub fn enable(jails: &Jails, name: &str, on: bool, dry_run: bool, ui: &Ui) -> Result<(), Error> {
    let j = jails.existing(name)?;
    let _lock = jails.lock(&j)?;
    let what = if on { "enable" } else { "disable" };
    if let Some(scope) = jails.manager {
        let unit = crate::systemd::unit_name(&j);
        if on {
            let path = crate::systemd::enable(jails, &j, scope, dry_run)?;
            if !dry_run {
                ui.step(what, &format!("{name}: {unit} ({}), started at boot", path.display()), None);
            }
        } else {
            let gone = crate::systemd::disable(jails, &j, scope)?;
            if gone.is_empty() {
                ui.step(what, &format!("{name}: {unit} was not enabled"), None);
            } else {
                ui.step(what, &format!("{name}: {} disabled and removed", gone.join(", ")), None);
            }
        }
        return Ok(());
    }
    let mut cfg = j.config()?;
    if dry_run {
        outln!("autostart {}", if on { "yes" } else { "no" });
        return Ok(());
    }
    if cfg.autostart != on {
        cfg.autostart = on;
        ljbuild::store::Root::write_atomic(&j.config_path(), cfg.to_text().as_bytes())?;
    }
    let how = if on { "yes (started by `ljail start --all`)" } else { "no" };
    ui.step(what, &format!("{name}: autostart {how}; systemd is not PID 1 here"), None);
    Ok(())
}
