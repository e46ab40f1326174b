//! The command line (also used by `lj-gen-docs` for man pages and completions).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::error::EXIT_CODES_HELP;
use crate::spawn::Net;

/// Build layered jail overlays from a Jailfile, and run them with ljspawn.
///
/// Without a subcommand, builds JAILFILE (default ./Jailfile): its world and parent overlays
/// are stacked read-only, the script after `---` runs with /bin/sh -e in a jail (via ljspawn),
/// and what it wrote is published as NAMESPACE/NAME/VERSION under the root. Same inputs as a
/// published version: nothing runs ("cached").
#[derive(Debug, Parser)]
#[command(
    name = "ljbuild",
    version,
    after_help = EXIT_CODES_HELP,
    subcommand_precedence_over_arg = true
)]
pub struct Cli {
    /// The lightjail root [default: $LIGHTJAIL_ROOT, else /usr/local/lj].
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Only print warnings and errors (the script's output still streams).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(flatten)]
    pub build: BuildArgs,

    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Options of a build.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Jailfile to build [default: ./Jailfile].
    #[arg(value_name = "JAILFILE")]
    pub jailfile: Option<PathBuf>,

    /// Version to publish as, overriding the Jailfile's `version` [default: 0.0.0-h + the first
    /// 12 hex digits of the inputs hash].
    #[arg(short = 'v', long = "set-version", value_name = "VERSION", id = "set_version")]
    pub version: Option<String>,

    /// Replace a published version that was built from other inputs.
    #[arg(long)]
    pub force: bool,

    /// Network of the build jail.
    #[arg(long, value_enum, default_value = "host")]
    pub net: Net,

    /// Print the resolved chain, inputs hash, ljspawn command line and script; run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Stop the build script after this long (e.g. 10m), passed to ljspawn --timeout.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List published overlays.
    List {
        /// One JSON array of every overlay's metadata.
        #[arg(long)]
        json: bool,
    },
    /// Remove a published overlay.
    Rm {
        /// NAMESPACE/NAME@VERSION (exact version).
        #[arg(value_name = "NAME@VERSION")]
        overlay: String,
        /// Remove it even if other overlays are built on it.
        #[arg(long)]
        force: bool,
    },
    /// Remove stale staging areas (of builds that died) and logs of failed builds.
    Gc,
    /// Run a command in an ephemeral jail on a published overlay (writes are discarded).
    Run {
        /// NAMESPACE/NAME, optionally @VERSION-PREFIX (default: the newest version).
        #[arg(value_name = "NAME[@VERSION]")]
        overlay: String,
        /// Network of the jail.
        #[arg(long, value_enum, default_value = "none")]
        net: Net,
        /// Stop the command after this long, passed to ljspawn --timeout.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Print the ljspawn command line instead of running it.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// The command and its arguments [default: /bin/sh].
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Manage worlds (base systems under ROOT/worlds).
    World {
        #[command(subcommand)]
        command: WorldCmd,
    },
}

/// `ljbuild world` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorldCmd {
    /// List worlds (* marks the default).
    List,
    /// Make NAME the default world (the worlds/default symlink).
    Use {
        /// The world.
        name: String,
    },
    /// Import a directory or a tarball as world NAME (the first world becomes the default).
    Import {
        /// The new world's name.
        name: String,
        /// A directory or a tarball, copied with tar (as root with owners and xattrs; /dev's contents skipped).
        #[arg(value_name = "DIR-OR-TARBALL")]
        source: PathBuf,
    },
}

/// The clap command, for documentation generators.
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["ljbuild", "-v", "1.0", "x/Jailfile", "--net", "none"]).unwrap();
        assert_eq!(c.build.version.as_deref(), Some("1.0"));
        assert_eq!(c.build.net, Net::None);
        assert!(c.command.is_none());
        let c = Cli::try_parse_from(["ljbuild", "run", "a/b@1", "--", "ls", "-l"]).unwrap();
        match c.command {
            Some(Cmd::Run { overlay, command, .. }) => {
                assert_eq!(overlay, "a/b@1");
                assert_eq!(command, ["ls", "-l"]);
            }
            _ => panic!("not run"),
        }
        let c = Cli::try_parse_from(["ljbuild", "--root", "/r", "world", "import", "bb", "/x"]).unwrap();
        assert!(matches!(c.command, Some(Cmd::World { command: WorldCmd::Import { .. } })));
        let c = Cli::try_parse_from(["ljbuild", "list", "--json", "--root", "/r"]).unwrap();
        assert_eq!(c.root, Some(PathBuf::from("/r")));
    }
}
