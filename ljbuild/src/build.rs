//! The build pipeline: parse → resolve → hash (a cache hit stops here) → lock → stage → copy →
//! run the script through ljspawn → publish atomically.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::copy::{self, Scan};
use crate::error::{EXIT_BUILD_FAILED, EXIT_JAIL};
use crate::inputs;
use crate::recipe::{self, Recipe};
use crate::resolve::{self, Chain};
use crate::spawn::{self, JailArgs, Net};
use crate::store::{self, Meta, OverlayName, Root, StoreError};
use crate::ui::{fmt_duration, Ui};
use crate::version;
use crate::Error;

/// Errors of the build step itself.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The host cannot run builds as configured.
    #[error("{0}")]
    Host(String),
    /// ljspawn cannot be found.
    #[error("cannot find ljspawn (set LJSPAWN, or install ljspawn next to ljbuild or on PATH)")]
    NoLjspawn,
    /// ljspawn cannot be executed.
    #[error("cannot execute {}: {source}", .path.display())]
    Exec {
        /// ljspawn's path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// ljspawn could not set up the jail.
    #[error("{step} of {overlay}: jail setup failed: {message} (log: {})", .log.display())]
    Jail {
        /// `build` or `run`.
        step: &'static str,
        /// `ns/name@version`.
        overlay: String,
        /// ljspawn's message.
        message: String,
        /// The log.
        log: PathBuf,
    },
    /// The script failed.
    #[error("build of {overlay} failed in step 'script' ({where_}): {how}; nothing was published (log: {})", .log.display())]
    Script {
        /// `ns/name@version`.
        overlay: String,
        /// `Jailfile line 6: nosuchcmd: not found` (the shell's last report of a line, which is
        /// the Jailfile's own line number), else `Jailfile lines 4-9` (the whole script).
        where_: String,
        /// `exited with status 3`, `killed by signal 9`, `timed out`.
        how: String,
        /// The log.
        log: PathBuf,
    },
}

impl BuildError {
    /// The exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            BuildError::Script { .. } => EXIT_BUILD_FAILED,
            _ => EXIT_JAIL,
        }
    }
}

/// What to build and how.
#[derive(Debug, Clone)]
pub struct BuildOpts {
    /// The Jailfile.
    pub jailfile: PathBuf,
    /// `-v VERSION`.
    pub version: Option<String>,
    /// Replace an existing version built from other inputs.
    pub force: bool,
    /// Network of the build.
    pub net: Net,
    /// Print the plan, run nothing.
    pub dry_run: bool,
    /// `--timeout` for ljspawn.
    pub timeout: Option<String>,
    /// `LIGHTJAIL_WORLD`.
    pub world_env: Option<String>,
    /// The ids the build jail maps.
    pub ids: spawn::BuildIds,
}

/// Everything known before anything runs.
#[derive(Debug)]
struct Plan {
    recipe: Recipe,
    src_dir: PathBuf,
    chain: Chain,
    scan: Scan,
    inputs: store::Inputs,
    hash: String,
    version: String,
}

impl Plan {
    fn overlay(&self) -> String {
        format!("{}@{}", self.recipe.name, self.version)
    }
}

/// Outcome of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Built and published.
    Built,
    /// Same inputs already published.
    Cached,
    /// `--dry-run`.
    DryRun,
}

fn plan(root: &Root, opts: &BuildOpts, ui: &Ui) -> Result<Plan, Error> {
    // A directory means its Jailfile.
    let jailfile =
        if opts.jailfile.is_dir() { opts.jailfile.join("Jailfile") } else { opts.jailfile.clone() };
    let shown = jailfile.display().to_string();
    let recipe = recipe::load(&jailfile, &shown)?;
    let path = if jailfile.is_absolute() {
        jailfile.clone()
    } else {
        std::env::current_dir()
            .map_err(StoreError::io("cannot get the current directory", "."))?
            .join(&jailfile)
    };
    let src_dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let chain = match &recipe.from {
        None => resolve::build_world(root, recipe.world.as_deref(), opts.world_env.as_deref())?,
        Some((name, prefix)) => {
            let parent = resolve::overlay(root, name, prefix.as_deref())?;
            let (chain, warning) = resolve::chain_of(root, &parent)?;
            if let Some(w) = warning {
                ui.warn(&w);
            }
            if let Some(w) = &recipe.world {
                let (wname, _, _) = resolve::world_anywhere(root, w)?;
                if wname != chain.world.name {
                    return Err(resolve::ResolveError::WorldMismatch {
                        world: wname,
                        parent: format!("{}@{}", parent.name, parent.version),
                        parent_world: chain.world.name,
                    }
                    .into());
                }
            }
            chain
        }
    };
    let scan = match &recipe.copy {
        Some(_) => {
            let src = fs::canonicalize(&src_dir).map_err(StoreError::io("cannot resolve", &src_dir))?;
            let root_path = fs::canonicalize(&root.path).unwrap_or_else(|_| root.path.clone());
            let mut cache = copy::HashCache::load(&root.path.join(".cache/copy"), &src);
            let s = copy::scan_cached(&src, &[&root_path], &mut cache)?;
            for w in &s.warnings {
                ui.warn(w);
            }
            for p in &s.skipped {
                ui.warn(&format!("copy: skipping {} (not a file, directory or symlink)", p.display()));
            }
            s
        }
        None => Scan::default(),
    };
    let inputs = inputs::collect(&chain, &recipe);
    let hash = inputs::digest_scan(&inputs, &scan);
    let version = match opts.version.clone().or_else(|| recipe.version.clone()) {
        Some(v) => {
            version::validate(&v).map_err(Error::Usage)?;
            v
        }
        None => version::derived(&hash),
    };
    Ok(Plan { recipe, src_dir, chain, scan, inputs, hash, version })
}

/// `Some(true)` if `name@version` is published with `hash`, `Some(false)` if with another hash.
fn published(root: &Root, name: &OverlayName, version: &str, hash: &str) -> Result<Option<bool>, Error> {
    Ok(root.read_inputs_hash(name, version)?.map(|h| h == hash))
}

/// Runs a build.
pub fn build(root: &Root, opts: &BuildOpts, ui: &Ui) -> Result<Outcome, Error> {
    let t0 = Instant::now();
    let mut plan = plan(root, opts, ui)?;
    let name = plan.recipe.name.clone();
    let overlay = plan.overlay();
    let state = published(root, &name, &plan.version, &plan.hash)?;
    if opts.dry_run {
        print_dry_run(root, opts, &plan, state)?;
        return Ok(Outcome::DryRun);
    }
    if state == Some(true) {
        outln!("cached {overlay}");
        return Ok(Outcome::Cached);
    }
    if state == Some(false) && !opts.force {
        return Err(StoreError::Immutable { name, version: plan.version }.into());
    }
    // A miss: the copied entries are kept with the overlay and explain the next miss.
    plan.inputs.copy = plan.scan.keys();
    ui.step(
        "resolve",
        &format!("{overlay} on {}, inputs {}", plan.chain.describe(), &plan.hash[..12]),
        Some(t0.elapsed()),
    );

    let key = Root::overlay_key(&name, &plan.version);
    let t = Instant::now();
    let _lock =
        root.lock(&key, || ui.step("lock", &format!("waiting for another build of {overlay}"), None))?;
    if t.elapsed() > Duration::from_millis(100) {
        ui.step("lock", "acquired", Some(t.elapsed()));
    }
    // Another build may have published it while we waited.
    match published(root, &name, &plan.version, &plan.hash)? {
        Some(true) => {
            outln!("cached {overlay}");
            return Ok(Outcome::Cached);
        }
        Some(false) if !opts.force => {
            return Err(StoreError::Immutable { name, version: plan.version }.into())
        }
        _ => {}
    }
    if let Some(why) = miss_reason(root, &plan) {
        ui.step("cache", &format!("miss: {why}"), None);
    }

    // Stage.
    let staging = root.staging(&key);
    store::kill_orphan(&staging);
    store::remove_tree(&staging).map_err(StoreError::io("cannot remove old staging", &staging))?;
    match root.clean_stale(&[&key]) {
        Ok(v) if !v.is_empty() => ui.step("gc", &format!("removed {} stale staging area(s)", v.len()), None),
        Ok(_) => {}
        Err(e) => ui.warn(&e.to_string()),
    }
    let result = stage_and_run(root, opts, ui, &plan, &staging);
    let result = result.and_then(|started| publish(root, &plan, &staging, opts, started, ui));
    match result {
        Ok(()) => {
            ui.step("done", &format!("{overlay} in {}", fmt_duration(t0.elapsed())), None);
            outln!("built {overlay}");
            Ok(Outcome::Built)
        }
        Err(e) => {
            let _ = store::remove_tree(&staging);
            Err(e)
        }
    }
}

/// Why the last build of the same name had other inputs, if there is one.
fn miss_reason(root: &Root, plan: &Plan) -> Option<String> {
    let name = &plan.recipe.name;
    let mut best: Option<Meta> = None;
    for v in root.versions(name).ok()? {
        if let Ok(Some(m)) = root.read_meta(name, &v) {
            if best.as_ref().is_none_or(|b| m.built_at_ns > b.built_at_ns) {
                best = Some(m);
            }
        }
    }
    let prev = best?;
    let why = inputs::explain(&prev.inputs, &plan.inputs, plan.recipe.script_line);
    (!why.is_empty()).then(|| format!("{} (since {}@{})", why.join(", "), prev.name, prev.version))
}

/// True when `rel` exists in the merged view of `layers` (top-down, whiteouts hide).
fn exists_in_layers(layers: &[PathBuf], rel: &str) -> bool {
    for l in layers.iter().rev() {
        if let Ok(md) = fs::symlink_metadata(l.join(rel)) {
            let whiteout = md.file_type().is_char_device() && md.rdev() == 0;
            return !whiteout;
        }
    }
    false
}

/// The mode for a directory created in the upper: the topmost layer's, else 0755.
fn layer_dir_mode(layers: &[PathBuf], rel: &Path) -> u32 {
    layers
        .iter()
        .rev()
        .find_map(|l| fs::metadata(l.join(rel)).ok().filter(|m| m.is_dir()))
        .map_or(0o755, |m| m.mode() & 0o7777)
}

fn jail_args(root: &Root, plan: &Plan, opts: &BuildOpts, staging: &Path) -> JailArgs {
    let layers = plan.chain.layers(root);
    let mut ro_binds = Vec::new();
    if matches!(opts.net, Net::Host | Net::Pasta) && Path::new("/etc/resolv.conf").exists() {
        ro_binds.push((PathBuf::from("/etc/resolv.conf"), "/etc/resolv.conf".to_string()));
    }
    let mut command: Vec<OsString> = vec!["/bin/sh".into(), "-e".into()];
    // From a file, not `sh -c`: no limit on its length (one argument is at most 128 KiB), and
    // busybox's shell counts `-c` lines from 0 but a file's from 1, as every shell does.
    ro_binds.push((staging.join("script.sh"), SCRIPT_IN_JAIL.to_string()));
    command.push(SCRIPT_IN_JAIL.into());
    JailArgs {
        idmap: crate::spawn::idmap_for(plan.chain.foreign()),
        layers,
        upper: Some((staging.join("root"), staging.join("work"))),
        net: Some(opts.net),
        ro_binds,
        chdir: plan.recipe.copy.clone(),
        timeout: opts.timeout.clone(),
        command,
        die_with_parent: true,
        // The upper is staged in the store (0700) and published as a layer: setuid files of
        // packages must keep their mode there.
        allow_setuid_files: true,
        // What a buildah RUN gets: jail ids 0-65535 (or one, said in a warning) and the default
        // container capabilities, both inside the build's own user namespace.
        subids: opts.ids == spawn::BuildIds::Full,
        caps: vec!["container".into()],
    }
}

/// Where the script is bound in the jail (read-only; /tmp is the jail's own tmpfs). The shell
/// names it in its messages: `/tmp/.ljbuild/Jailfile: 6: nosuchcmd: not found`.
const SCRIPT_IN_JAIL: &str = "/tmp/.ljbuild/Jailfile";

/// The script as the shell gets it: preceded by one empty line per header line, so the shell's
/// line N (in its error messages and `$LINENO`) is the Jailfile's line N.
fn aligned_script(recipe: &Recipe) -> String {
    let mut s = "\n".repeat(recipe.script_line.saturating_sub(1));
    s.push_str(&recipe.script);
    s
}

/// The line number in a shell's report about a line of the script (`Jailfile: 6: ...` from dash,
/// `Jailfile: line 6: ...` from bash and busybox; the same with the script file's name).
fn shell_report_line(line: &str) -> Option<(usize, &str)> {
    let i = line.find("Jailfile: ")?;
    let rest = &line[i + "Jailfile: ".len()..];
    let rest = rest.strip_prefix("line ").unwrap_or(rest);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || !rest[digits..].starts_with(": ") {
        return None;
    }
    Some((rest[..digits].parse().ok()?, rest[digits + 2..].trim_end()))
}

fn stage_and_run(
    root: &Root,
    opts: &BuildOpts,
    ui: &Ui,
    plan: &Plan,
    staging: &Path,
) -> Result<Instant, Error> {
    let started = Instant::now();
    let overlay = plan.overlay();
    let upper = staging.join("root");
    let layers = plan.chain.layers(root);
    store::mkdir_private(staging)?;
    // A shared root's world is sealed (0700); the jail's `/` is its usual 0755.
    let world_root = plan.chain.world.root.clone().unwrap_or_else(|| root.path.clone());
    let world_mode = match fs::metadata(&plan.chain.world_dir) {
        Ok(_) if Root::other(&world_root).is_shared() => 0o755,
        Ok(m) => m.mode() & 0o7777,
        Err(_) => 0o755,
    };
    fs::create_dir(&upper).map_err(StoreError::io("cannot create", &upper))?;
    fs::set_permissions(&upper, fs::Permissions::from_mode(world_mode))
        .map_err(StoreError::io("cannot chmod", &upper))?;
    store::mkdir_private(&staging.join("work"))?;

    if let Some(dest) = &plan.recipe.copy {
        let t = Instant::now();
        let rel = dest.trim_start_matches('/');
        let mut cur = PathBuf::new();
        let comps: Vec<_> = Path::new(rel).components().collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            if i + 1 == comps.len() {
                break;
            }
            let p = upper.join(&cur);
            if !p.exists() {
                fs::create_dir(&p).map_err(StoreError::io("cannot create", &p))?;
                let mode = layer_dir_mode(&layers, &cur);
                fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                    .map_err(StoreError::io("cannot chmod", &p))?;
            }
        }
        let src = fs::canonicalize(&plan.src_dir).map_err(StoreError::io("cannot resolve", &plan.src_dir))?;
        copy::copy_into(&plan.scan, &src, &upper.join(rel))?;
        ui.step(
            "copy",
            &format!("{} files from {} to {dest}", plan.scan.files(), src.display()),
            Some(t.elapsed()),
        );
    }

    let p = staging.join("script.sh");
    fs::write(&p, aligned_script(&plan.recipe)).map_err(StoreError::io("cannot write", &p))?;
    preflight(root)?;
    let idmap = spawn::idmap_for(plan.chain.foreign());
    let others: Vec<PathBuf> = plan
        .chain
        .world
        .root
        .iter()
        .chain(plan.chain.parents.iter().filter_map(|p| p.root.as_ref()))
        .cloned()
        .collect();
    spawn::check_idmap(&idmap, &others).map_err(BuildError::Host)?;
    let own: Vec<PathBuf> = layers
        .iter()
        .enumerate()
        .filter(|(i, _)| idmap.get(*i) != Some(&true))
        .map(|(_, l)| l.clone())
        .collect();
    warn_foreign_layers(ui, &own);
    if let spawn::BuildIds::OneId(why) = &opts.ids {
        ui.warn(why);
    }
    let resolv_missing = !exists_in_layers(&layers, "etc/resolv.conf");
    let args = jail_args(root, plan, opts, staging).to_args();
    let ljspawn = spawn::find_ljspawn().ok_or(BuildError::NoLjspawn)?;
    let log = staging.join("build.log");
    ui.step("script", &format!("running {overlay} (net {})", opts.net.as_str()), None);
    let t = Instant::now();
    let status_line = ui.status_line("script");
    let run = run_logged(&ljspawn, &args, &log, Some(&staging.join(store::PID_FILE)), status_line.as_ref());
    drop(status_line);
    let (status, tail) = run.map_err(|e| match e {
        RunError::Exec(source) => Error::from(BuildError::Exec { path: ljspawn.clone(), source }),
        RunError::Log(source) => StoreError::Io { what: "cannot write", path: log.clone(), source }.into(),
    })?;
    if !status.success() {
        if ui.live() {
            // The output was not streamed: show its end.
            let text = fs::read(&log).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(20)..] {
                outln!("{l}");
            }
        }
        let kept = keep_failed_log(root, plan, &log);
        let how = describe_status(status);
        let code = status.code();
        if matches!(code, Some(125..=127)) && tail.ljspawn.is_some() {
            return Err(BuildError::Jail {
                step: "build",
                overlay,
                message: tail.ljspawn.unwrap_or_default(),
                log: kept,
            }
            .into());
        }
        let first = plan.recipe.script_line;
        let last = first + plan.recipe.script.lines().count().saturating_sub(1);
        let where_ = match tail.shell.as_deref().and_then(shell_report_line) {
            Some((n, msg)) if (first..=last).contains(&n) => format!("Jailfile line {n}: {msg}"),
            _ if last > first => format!("Jailfile lines {first}-{last}"),
            _ => format!("Jailfile line {first}"),
        };
        return Err(BuildError::Script { overlay, where_, how, log: kept }.into());
    }
    ui.step("script", "ok", Some(t.elapsed()));
    if resolv_missing {
        // ljspawn created an empty mount point for the resolv.conf bind; it is not content.
        let p = upper.join("etc/resolv.conf");
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = fs::remove_file(&p);
            remove_if_unchanged_dir(&upper, &layers, "etc");
        }
    }
    // The script's mount point is on the jail's /tmp tmpfs; should a world lack /tmp, drop it.
    let p = upper.join(SCRIPT_IN_JAIL.trim_start_matches('/'));
    if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
        let _ = fs::remove_file(&p);
        let _ = p.parent().map(fs::remove_dir);
    }
    Ok(started)
}

/// What the host forbids, said in one line with the fix, before anything runs.
fn preflight(root: &Root) -> Result<(), BuildError> {
    const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
    if let Ok(st) = rustix::fs::statfs(&root.path) {
        if st.f_type as u64 == OVERLAYFS_SUPER_MAGIC {
            return Err(BuildError::Host(format!(
                "{} is on overlayfs, which cannot hold a build's upper directory (e.g. inside a container); \
                 put the root on another file system: --root DIR or LIGHTJAIL_ROOT on a volume or tmpfs",
                root.path.display()
            )));
        }
    }
    Ok(())
}

/// Rootless: layers owned by someone else (e.g. a world root built) show as `nobody` in the
/// jail, and nothing in them can be changed (copy-up fails). Say so before the script fails.
fn warn_foreign_layers(ui: &Ui, layers: &[PathBuf]) {
    let uid = rustix::process::getuid().as_raw();
    if uid == 0 {
        return;
    }
    for l in layers {
        if let Ok(md) = fs::metadata(l) {
            if md.uid() != uid {
                ui.warn(&format!(
                    "layer {} is owned by uid {}, not by you ({uid}): in a rootless jail its files show as \
                     nobody:nogroup and cannot be modified; use a world or overlay you built or imported yourself",
                    l.display(),
                    md.uid()
                ));
            }
        }
    }
}

/// Removes `upper/rel` if it is an empty directory that only mirrors the lower one (a copy-up
/// made for a mount point): same mode and owner, not opaque, not redirected.
fn remove_if_unchanged_dir(upper: &Path, layers: &[PathBuf], rel: &str) {
    let p = upper.join(rel);
    let Ok(md) = fs::symlink_metadata(&p) else { return };
    let Some(lower) = layers.iter().rev().find_map(|l| fs::symlink_metadata(l.join(rel)).ok()) else {
        return;
    };
    let same = md.is_dir()
        && lower.is_dir()
        && md.mode() == lower.mode()
        && md.uid() == lower.uid()
        && md.gid() == lower.gid();
    let mut names = vec![0u8; 4096];
    let xattrs = match rustix::fs::llistxattr(&p, &mut names) {
        Ok(n) => names[..n]
            .split(|&b| b == 0)
            .any(|name| name.ends_with(b"overlay.opaque") || name.ends_with(b"overlay.redirect")),
        Err(_) => true,
    };
    if same && !xattrs {
        let _ = fs::remove_dir(&p); // fails, as it should, unless empty
    }
}

/// `exited with status 3`, `killed by signal 9`, `timed out`.
fn describe_status(status: std::process::ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(124), _) => "timed out (ljspawn --timeout)".into(),
        (Some(c), _) if c > 128 && c < 160 => format!("killed by signal {}", c - 128),
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("ljspawn was killed by signal {s}"),
        (None, None) => "failed".into(),
    }
}

/// Moves a failed build's log to `.logs/`, returning where it is.
fn keep_failed_log(root: &Root, plan: &Plan, log: &Path) -> PathBuf {
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let name = format!(
        "{}+{}@{}.{}.{}.log",
        plan.recipe.name.namespace,
        plan.recipe.name.name,
        plan.version,
        ts,
        std::process::id()
    );
    let dest = root.logs_dir().join(name);
    match fs::rename(log, &dest) {
        Ok(()) => dest,
        Err(_) => log.to_path_buf(),
    }
}

/// Why [`run_logged`] failed.
#[derive(Debug)]
pub enum RunError {
    /// ljspawn cannot be executed.
    Exec(io::Error),
    /// The log cannot be written.
    Log(io::Error),
}

/// The end of a jail's output, as [`run_logged`] saw it.
#[derive(Debug, Default)]
pub struct Tail {
    /// The last line starting with `ljspawn: ` (without it).
    pub ljspawn: Option<String>,
    /// The last line in which the shell reports a script line (see `shell_report_line`).
    pub shell: Option<String>,
}

/// Runs `program args` with stdin from /dev/null and stdout+stderr through one pipe, copied to
/// `log` and to our stdout (or, with a live `status` line, shown there one line at a time).
pub fn run_logged(
    program: &Path,
    args: &[OsString],
    log: &Path,
    pid_file: Option<&Path>,
    status: Option<&crate::ui::StatusLine>,
) -> Result<(std::process::ExitStatus, Tail), RunError> {
    let mut logf = File::create(log).map_err(RunError::Log)?;
    let (r, w) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| RunError::Exec(e.into()))?;
    let w2 = w.try_clone().map_err(RunError::Exec)?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::from(w)).stderr(Stdio::from(w2));
    let spawned = cmd.spawn();
    drop(cmd); // closes our copies of the write end
    let mut child = spawned.map_err(RunError::Exec)?;
    if let Some(p) = pid_file {
        let _ = fs::write(p, format!("{}\n", child.id()));
    }
    let mut reader = File::from(r);
    let mut out = io::stdout();
    let mut buf = vec![0u8; 64 * 1024];
    let mut line = Vec::new();
    let mut tail = Tail::default();
    let end_line = |line: &[u8], tail: &mut Tail| {
        if let Some(rest) = line.strip_prefix(b"ljspawn: ") {
            tail.ljspawn = Some(String::from_utf8_lossy(rest).into_owned());
        }
        let text = String::from_utf8_lossy(line);
        if shell_report_line(&text).is_some() {
            tail.shell = Some(text.into_owned());
        }
        if let Some(s) = status {
            s.line(line);
        }
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if status.is_none() {
            let _ = out.write_all(chunk);
            let _ = out.flush();
        }
        logf.write_all(chunk).map_err(RunError::Log)?;
        for &b in chunk {
            if b == b'\n' {
                end_line(&line, &mut tail);
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        end_line(&line, &mut tail);
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RunError::Exec(e)),
        }
    };
    Ok((status, tail))
}

fn publish(
    root: &Root,
    plan: &Plan,
    staging: &Path,
    opts: &BuildOpts,
    started: Instant,
    ui: &Ui,
) -> Result<(), Error> {
    let name = &plan.recipe.name;
    let work = staging.join("work");
    store::remove_tree(&work).map_err(StoreError::io("cannot remove", &work))?;
    for f in [store::PID_FILE, "script.sh"] {
        let _ = fs::remove_file(staging.join(f));
    }
    let dest = root.overlay_dir(name, &plan.version);
    // The layer goes into the store under its content digest (once: an identical layer there
    // is kept), and `root` becomes a link to it; `gc` waits until it is referenced.
    let _store = root.store_lock(true)?;
    let t = Instant::now();
    let upper = staging.join("root");
    let layer = crate::cas::store(root, &upper, true)?;
    Root::link_layer(&upper, &layer, 3)?;
    ui.step("store", &format!("layer {}", crate::oci::import::short(&layer)), Some(t.elapsed()));
    let now = SystemTime::now();
    let meta = Meta {
        format: 1,
        name: name.clone(),
        version: plan.version.clone(),
        inputs_hash: plan.hash.clone(),
        world: plan.chain.world.clone(),
        parents: plan.chain.parents.clone(),
        built_at: humantime::format_rfc3339_seconds(now).to_string(),
        built_at_unix: now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        built_at_ns: now.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
        build_seconds: started.elapsed().as_secs_f64(),
        log: dest.join("build.log"),
        net: opts.net.as_str().into(),
        copy: plan.recipe.copy.clone(),
        builder_uid: rustix::process::getuid().as_raw(),
        inputs: plan.inputs.clone(),
        layer: Some(layer),
        found_in: None,
    };
    let json = serde_json::to_vec_pretty(&meta).expect("metadata serializes");
    Root::write_atomic(&staging.join("meta.json"), &json)?;
    let parent = dest.parent().expect("overlay dir has a parent");
    store::mkdir_private(parent)?;
    if dest.exists() {
        // --force: swap atomically, then remove the old one (now at the staging path).
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            staging,
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| StoreError::io("cannot replace", &dest)(e.into()))?;
        store::remove_tree(staging).map_err(StoreError::io("cannot remove replaced overlay", staging))?;
    } else {
        fs::rename(staging, &dest).map_err(StoreError::io("cannot publish to", &dest))?;
    }
    let _ = File::open(parent).and_then(|d| d.sync_all());
    if root.is_shared() && rustix::process::geteuid().is_root() {
        root.share()?;
    }
    Ok(())
}

fn print_dry_run(root: &Root, opts: &BuildOpts, plan: &Plan, state: Option<bool>) -> Result<(), Error> {
    let name = &plan.recipe.name;
    let key = Root::overlay_key(name, &plan.version);
    let staging = root.staging(&key);
    let args = jail_args(root, plan, opts, &staging).to_args();
    let ljspawn = spawn::find_ljspawn().unwrap_or_else(|| PathBuf::from("ljspawn"));
    let status = match state {
        Some(true) => "cached (same inputs published; nothing would run)",
        Some(false) if opts.force => "would replace (exists with other inputs; --force)",
        Some(false) => "refused (exists with other inputs; published overlays are immutable)",
        None => "would build",
    };
    let mut o = String::new();
    o.push_str(&format!("overlay  {}@{}\n", name, plan.version));
    o.push_str(&format!("status   {status}\n"));
    o.push_str(&format!("inputs   sha256:{}\n", plan.hash));
    o.push_str(&format!("chain    {}\n", plan.chain.describe()));
    for (i, l) in plan.chain.layers(root).iter().enumerate() {
        o.push_str(&format!("{}{}\n", if i == 0 { "layers   " } else { "         " }, l.display()));
    }
    o.push_str(&format!("upper    {}\n", staging.join("root").display()));
    o.push_str(&format!("publish  {}\n", root.overlay_dir(name, &plan.version).display()));
    if let Some(dest) = &plan.recipe.copy {
        o.push_str(&format!(
            "copy     {} files from {} to {dest}\n",
            plan.scan.files(),
            plan.src_dir.display()
        ));
    }
    o.push_str(&format!("ljspawn  {}\n", spawn::command_line(&ljspawn, &args)));
    o.push_str(&format!("script   (Jailfile line {}, run with /bin/sh -e)\n", plan.recipe.script_line));
    for l in plan.recipe.script.lines() {
        o.push_str(&format!("  | {l}\n"));
    }
    out!("{o}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_reports() {
        assert_eq!(shell_report_line("Jailfile: 6: nosuchcmd: not found"), Some((6, "nosuchcmd: not found")));
        assert_eq!(
            shell_report_line("Jailfile: line 12: nosuchcmd: command not found"),
            Some((12, "nosuchcmd: command not found"))
        );
        assert_eq!(shell_report_line("/tmp/.ljbuild/Jailfile: 7: x: not found"), Some((7, "x: not found")));
        assert_eq!(shell_report_line("Jailfile: x: 6: no"), None);
        assert_eq!(shell_report_line("hello"), None);
    }

    #[test]
    fn script_lines_align() {
        let r = crate::recipe::parse(b"name a/b\n# c\n\n---\nfalse\n", "J").unwrap();
        assert_eq!(aligned_script(&r), "\n\n\n\nfalse\n");
        assert_eq!(aligned_script(&r).lines().nth(r.script_line - 1), Some("false"));
    }
}
