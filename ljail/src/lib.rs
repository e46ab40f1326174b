#![deny(unsafe_code)]
//! ljail: persistent named jails on top of `ljspawn` (run by executing it, never linked), with
//! ljbuild's library for the root, images, errors and UI.
//!
//! Modules: [`config`] (the config file), [`jail`] (the layout of `ROOT/jails` and the ljspawn
//! command line), [`supervise`] (start, stop, the supervisor, logs), [`commands`] (create,
//! list, status, edit, destroy, snapshot, rollback, clone), [`copy`] (tree copies with
//! reflinks), [`btrfs`] (subvolumes and snapshots: ljail's only unsafe code, two ioctls),
//! [`freezer`] (the cgroup freezer), [`cli`], [`error`].

/// `println!` for ljail's output (defined before the modules, which use it).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Writes ljail's output to stdout. When stdout is a pipe whose reader has gone (`ljail list |
/// head -1`), ljail ends quietly with status 141 (128 + SIGPIPE, what the shell reports for a
/// C program the signal kills) instead of panicking, as `println!` does (Rust ignores SIGPIPE);
/// any other write error is one line and status 1.
pub fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        out_failed(&e);
    }
}

/// Ends ljail after a failed write to stdout, as [`out`] does: 141 quietly for a pipe whose
/// reader has gone, else one line and status 1.
pub fn out_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    ljbuild::errln!("ljail: cannot write to stdout: {e}");
    std::process::exit(1);
}

pub mod btrfs;
pub mod cli;
pub mod commands;
pub mod config;
pub mod copy;
pub mod error;
pub mod freezer;
pub mod gpu;
pub mod ids;
pub mod jail;
pub mod supervise;
pub mod systemd;

use cli::{Cli, Cmd, JailOpts};
use config::{Config, Mount, Restart, RootKind};
pub use error::Error;
use ljbuild::spawn::command_line;
use ljbuild::store;
use ljbuild::ui::Ui;

/// A host path given on the command line, made absolute against the current directory.
fn host_path(p: &str) -> Result<String, Error> {
    if p.starts_with('/') {
        return Ok(p.to_string());
    }
    let cwd = std::env::current_dir().map_err(Error::io("cannot get the current directory", "."))?;
    let joined = cwd.join(p);
    let abs = std::fs::canonicalize(&joined).unwrap_or(joined);
    abs.to_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Usage(format!("path '{}' is not UTF-8", abs.display())))
}

/// The config of `create` from its options.
fn config_of(
    source: config::Source,
    copy: bool,
    o: &JailOpts,
    command: Vec<String>,
) -> Result<Config, Error> {
    let mut c = Config::new(source, command);
    c.root = if copy { RootKind::Copy } else { RootKind::Thin };
    for (flag, pairs) in [("bind", &o.bind), ("ro-bind", &o.ro_bind), ("dev-bind", &o.dev_bind)] {
        for p in pairs.chunks(2) {
            let (s, d) = (host_path(&p[0])?, p[1].clone());
            c.mounts.push(match flag {
                "bind" => Mount::Bind(s, d),
                "ro-bind" => Mount::RoBind(s, d),
                _ => Mount::DevBind(s, d),
            });
        }
    }
    c.mounts.extend(o.tmpfs.iter().cloned().map(Mount::Tmpfs));
    c.setenv = o.setenv.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
    c.chdir = o.chdir.clone();
    c.user = o.user.clone();
    c.hostname = o.hostname.clone();
    c.net = o.net.clone();
    c.ip = o.ip.clone();
    c.gateway = o.gateway.clone();
    c.memory = o.memory.clone();
    c.pids = o.pids.clone();
    c.cpus = o.cpus.clone();
    c.rlimits = o.rlimit.clone();
    c.cap_add = o.cap_add.clone();
    c.allow_userns = o.allow_userns;
    c.docker = o.docker;
    c.gpu = o.gpu.clone();
    if let Some(r) = &o.restart {
        c.restart = Restart::parse(r).map_err(Error::Usage)?;
    }
    if let Some(d) = o.restart_delay {
        c.restart_delay = d;
    }
    if let Some(m) = o.restart_max {
        c.restart_max = m;
    }
    if let Some(t) = o.stop_timeout {
        c.stop_timeout = t;
    }
    c.autostart = o.autostart;
    if let Some(p) = o.priority {
        c.priority = p;
    }
    Ok(c)
}

/// The jails `--all` acts on: autostart ones in boot order (start), running ones in reverse
/// (stop).
fn boot_order(jails: &jail::Jails, start: bool) -> Result<Vec<String>, Error> {
    let mut v = Vec::new();
    for n in jails.names()? {
        let j = jails.existing(&n)?;
        let cfg = j.config()?;
        if (start && cfg.autostart) || (!start && jails.running(&j)?) {
            v.push((cfg.priority, n));
        }
    }
    v.sort();
    if !start {
        v.reverse();
    }
    Ok(v.into_iter().map(|(_, n)| n).collect())
}

/// Runs ljail with parsed arguments; returns the exit status.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let ui = Ui::named("ljail", cli.quiet);
    let (root_path, source_of) = store::locate(cli.root.as_deref(), &store::RootEnv::current())?;
    let root = store::Root::open(root_path, source_of)?;
    let mut jails = jail::Jails::open(root)?;
    let choice = match &cli.supervisor {
        Some(s) => s.clone(),
        None => std::env::var("LJAIL_SUPERVISOR").unwrap_or_default(),
    };
    jails.manager = systemd::detect(systemd::Choice::parse(&choice)?)?;
    match cli.command {
        Cmd::Create { name, image, world, copy, init, opts, dry_run, command } => {
            jail::check_name("jail", &name)?;
            let source = commands::resolve_source(&jails, image.as_deref(), world.as_deref(), &ui)?;
            let command = match (init, command.is_empty()) {
                (true, true) => jail::default_init(&jail::layers(&jails.root, &source)?),
                (false, true) => {
                    return Err(Error::Usage("create needs a command (-- CMD ARGS...) or --init".into()))
                }
                _ => command,
            };
            let mut cfg = config_of(source, copy, &opts, command)?;
            cfg.init = init;
            // Nested jails need a proc they can mount: unmasked where ljspawn allows it, in the
            // jails of a non-root user (their own user namespace holds no host root).
            let root = rustix::process::geteuid().is_root();
            if opts.proc_unmasked && root {
                return Err(Error::Usage(
                    "--proc-unmasked is not for root's jails (their ids are the host's, whom only /proc's masks keep out): use it in a non-root user's jails".into(),
                ));
            }
            cfg.proc_unmasked = opts.proc_unmasked || ((init || opts.docker) && !root);
            // Root's booted and container jails get a private id range by default
            // (systemd-nspawn's --private-users=pick): their root is not the host's.
            let pick = match opts.private_users.as_deref() {
                Some(_) if !root => {
                    return Err(Error::Usage(
                        "--private-users is for root's jails (a user's jails map its own id and its /etc/subuid ranges)".into(),
                    ))
                }
                Some("pick") => true,
                Some("no") => {
                    cfg.private_users = Some(config::PrivateUsers::No);
                    false
                }
                Some(b) => {
                    let b = config::check_private_base(b).map_err(|e| Error::Usage(format!("--private-users: {e}")))?;
                    cfg.private_users = Some(config::PrivateUsers::Base(b));
                    false
                }
                None => root && (init || opts.docker) && ids::in_initial_userns(),
            };
            commands::create(&jails, &name, cfg, pick, dry_run, &ui)?;
        }
        Cmd::Start { names, all, dry_run } => {
            let names = if all { boot_order(&jails, true)? } else { names };
            let mut failed = None;
            for n in names {
                let j = jails.existing(&n)?;
                if dry_run {
                    let cfg = j.config()?;
                    if let Some(scope) = jails.manager {
                        let argv = systemd::run_argv(&jails, &j, &cfg, scope)?;
                        outln!("{}", command_line(std::path::Path::new(&argv[0]), &argv[1..]));
                        continue;
                    }
                    let layers = jail::resolve(&jails.root, &cfg)?;
                    let args = jail::ljspawn_args(&j, &cfg, &layers, None);
                    outln!("{}", command_line(&supervise::ljspawn()?, &args));
                    continue;
                }
                match supervise::start(&jails, &j) {
                    Ok(supervise::Started::Now(pid)) => {
                        let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                        ui.step("start", &format!("{n}{pid}"), None)
                    }
                    Ok(supervise::Started::Already(pid)) => {
                        let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                        ui.step("start", &format!("{n} is running already{pid}"), None)
                    }
                    // With --all, one jail's failure does not keep the others down.
                    Err(e) if all => {
                        ljbuild::errln!("ljail: {e}");
                        failed = Some(e.exit_code());
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(failed.unwrap_or(0));
        }
        Cmd::Stop { names, all, timeout } => {
            let names = if all { boot_order(&jails, false)? } else { names };
            for n in names {
                let j = jails.existing(&n)?;
                if supervise::stop(&jails, &j, timeout)? {
                    ui.step("stop", &n, None);
                } else {
                    ui.step("stop", &format!("{n} is not running"), None);
                }
            }
        }
        Cmd::Restart { name, timeout } => {
            let j = jails.existing(&name)?;
            supervise::stop(&jails, &j, timeout)?;
            if let supervise::Started::Now(Some(pid)) | supervise::Started::Already(Some(pid)) =
                supervise::start(&jails, &j)?
            {
                ui.step("restart", &format!("{name} (pid {pid})"), None);
            }
        }
        Cmd::Status { name, json } => commands::status(&jails, &name, json)?,
        Cmd::List { json } => commands::list(&jails, json)?,
        Cmd::Log { name, follow } => supervise::log(&jails.existing(&name)?, follow)?,
        Cmd::Edit { name } => commands::edit(&jails, &name, &ui)?,
        Cmd::Destroy { name, force } => commands::destroy(&jails, &name, force, &ui)?,
        Cmd::Snapshot { name, snap } => commands::snapshot(&jails, &name, &snap, &ui)?,
        Cmd::Rollback { name, snap } => commands::rollback(&jails, &name, &snap, &ui)?,
        Cmd::Clone { name, new, snapshot } => commands::clone(&jails, &name, &new, snapshot.as_deref(), &ui)?,
        Cmd::Exec { name, command } => {
            let command = match command.split_first() {
                Some((first, rest)) if first == "--" => rest.to_vec(),
                _ => command,
            };
            return supervise::exec(&jails, &jails.existing(&name)?, command);
        }
        Cmd::Shell { name } => return supervise::shell(&jails, &jails.existing(&name)?),
        Cmd::Enable { name, dry_run } => commands::enable(&jails, &name, true, dry_run, &ui)?,
        Cmd::Disable { name } => commands::enable(&jails, &name, false, false, &ui)?,
        Cmd::UnitHook { name, what, unit } => {
            return systemd::hook_run(&jails.existing(&name)?, &what, unit.as_deref());
        }
        Cmd::Supervise { name } => {
            let j = jails.existing(&name)?;
            return supervise::supervise(&jails, &j);
        }
    }
    Ok(0)
}
