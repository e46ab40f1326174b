#![forbid(unsafe_code)]
//! ljbuild: builds layered jail overlays from a Jailfile and runs them with `ljspawn`.
//!
//! Modules: [`store`] (the layout of `LIGHTJAIL_ROOT`, metadata, locks), [`version`]
//! (ordering and prefixes), [`recipe`] (the Jailfile), [`resolve`] (worlds and parent
//! chains), [`copy`] and [`inputs`] (the inputs hash), [`spawn`] (the ljspawn command line),
//! [`build`] (the pipeline), [`cas`] (the layer store), [`commands`] (subcommands), [`cli`], [`ui`], `docs` (man pages and completions, feature `docs`), [`oci`] (OCI images:
//! import, export, registries).

/// `println!` and `print!` for ljbuild's output (defined before the modules, which use them).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! out {
    ($($arg:tt)*) => { $crate::out(format_args!($($arg)*)) };
}

/// `eprintln!` for failure, warning and status lines (ljbuild's and ljail's), which never
/// panics: the line is formatted first and written to the locked stderr in one `write`, and a
/// write error (stderr a pipe whose reader has gone: EPIPE, as Rust ignores SIGPIPE) is
/// ignored, so the exit status stays the one the line goes with. `eprintln!` panics on such an
/// error.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let line = ::std::format!("{}\n", ::std::format_args!($($arg)*));
        let _ = ::std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

/// Writes ljbuild's output to stdout. When stdout is a pipe whose reader has gone (`ljbuild
/// list | head -1`), ljbuild ends quietly with status 141 (128 + SIGPIPE, what the shell
/// reports for a C program the signal kills) instead of panicking, as `println!` does (Rust
/// ignores SIGPIPE); any other write error is one line and status 6.
pub fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        errln!("ljbuild: cannot write to stdout: {e}");
        std::process::exit(6);
    }
}

pub mod build;
pub mod cas;
pub mod cli;
pub mod commands;
pub mod copy;
#[cfg(feature = "docs")]
pub mod docs;
pub mod error;
pub mod inputs;
pub mod inspect;
pub mod oci;
pub mod recipe;
pub mod resolve;
pub mod spawn;
pub mod store;
pub mod ui;
pub mod version;

pub use error::Error;

use cli::{Cli, Cmd, WorldCmd};

/// Runs ljbuild with parsed arguments; returns the exit status.
pub fn run(cli: Cli) -> Result<u8, Error> {
    let ui = ui::Ui::new(cli.quiet);
    if let Some(Cmd::Layer { op, dir, upper, lower }) = &cli.command {
        return cas::helper(op, dir, *upper, lower);
    }
    let (root_path, source_of) = store::locate(cli.root.as_deref(), &store::RootEnv::current())?;
    let mut root = store::Root::open(root_path, source_of)?;
    root.others = store::search_path(
        std::env::var_os("LIGHTJAIL_PATH").as_deref(),
        rustix::process::geteuid().is_root(),
        &root.path,
    );
    match cli.command {
        None => {
            let b = cli.build;
            let net = b.net.unwrap_or_else(|| {
                let (net, why) = spawn::default_build_net(spawn::find_ljspawn().as_deref());
                if let Some(why) = why {
                    ui.warn(&format!("the build uses the host's network (--net host): {why}"));
                }
                net
            });
            let opts = build::BuildOpts {
                jailfile: b.jailfile.unwrap_or_else(|| "Jailfile".into()),
                version: b.version,
                force: b.force,
                net,
                dry_run: b.dry_run,
                timeout: b.timeout,
                world_env: std::env::var("LIGHTJAIL_WORLD").ok(),
                ids: spawn::BuildIds::detect(),
            };
            build::build(&root, &opts, &ui)?;
            Ok(0)
        }
        Some(Cmd::List { json }) => commands::list(&root, json).map(|()| 0),
        Some(Cmd::Rm { overlay, force }) => commands::rm(&root, &overlay, force, &ui).map(|()| 0),
        Some(Cmd::Gc { dry_run }) => commands::gc(&root, dry_run).map(|()| 0),
        Some(Cmd::Inspect { overlay, json }) => commands::inspect(&root, &overlay, json, &ui).map(|()| 0),
        Some(Cmd::Run { overlay, jail, dry_run, command }) => {
            commands::run(&root, &overlay, &jail, command, dry_run, &ui)
        }
        Some(Cmd::Export { overlay, dest, gzip, compression, tls_verify }) => {
            let how = if gzip { oci::compress::Compression::Gzip } else { compression.unwrap_or_default() };
            oci::export::export(&root, &overlay, &dest, how, tls_verify, &ui).map(|()| 0)
        }
        Some(Cmd::Push { overlay, dest, gzip, compression, tls_verify }) => {
            let how = if gzip { oci::compress::Compression::Gzip } else { compression.unwrap_or_default() };
            if !dest.starts_with("docker://") {
                return Err(Error::Usage(format!(
                    "'{dest}' is not a registry reference (docker://HOST/REPOSITORY[:TAG])"
                )));
            }
            oci::export::export(&root, &overlay, &dest, how, tls_verify, &ui).map(|()| 0)
        }
        Some(Cmd::Pull { source, name, tls_verify }) => {
            oci::pull::pull(&root, &source, name.as_deref(), tls_verify, &ui).map(|()| 0)
        }
        Some(Cmd::Layer { op, dir, upper, lower }) => cas::helper(&op, &dir, upper, &lower),
        Some(Cmd::World { command }) => match command {
            WorldCmd::List { json } => commands::world_list(&root, json).map(|()| 0),
            WorldCmd::Rm { name, force } => commands::world_rm(&root, &name, force, &ui).map(|()| 0),
            WorldCmd::Use { name } => commands::world_use(&root, &name).map(|()| 0),
            WorldCmd::Import { name, source, tls_verify } => {
                commands::world_import(&root, &name, &source, tls_verify, &ui).map(|()| 0)
            }
        },
    }
}
