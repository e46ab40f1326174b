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
    /// The lightjail root [default: $LIGHTJAIL_ROOT; else /usr/local/lj for root,
    /// $XDG_DATA_HOME/lightjail or ~/.local/share/lightjail for other users].
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

    /// Network of the build jail [default: pasta where it can run (root, or a caller who may
    /// use /dev/net/tun with a non-setuid ljspawn), else host, with a warning].
    #[arg(long, value_enum)]
    pub net: Option<Net>,

    /// Print the resolved chain, inputs hash, ljspawn command line and script; run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Stop the build script after this long (e.g. 500ms, 30s, 10m, 1h), passed to ljspawn --timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<String>,
}

/// Checks a duration as ljspawn reads it (`500ms`, `30s`, `5m`, `1h`, or plain seconds), so a
/// bad one is a usage error here rather than a failed jail.
pub fn parse_duration(s: &str) -> Result<String, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit '{unit}' (expected ms, s, m or h)")),
    };
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 30s, 5m)"))?;
    if !n.is_finite() || n < 0.0 || n * scale > 1e9 {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(s.to_string())
}

/// The jail options of `ljbuild run`, spelled as ljspawn spells them and passed to it.
#[derive(Debug, Clone, Default, Args)]
pub struct RunJailArgs {
    /// Bind SRC (host; relative to the current directory) at DEST in the jail, read-write.
    #[arg(long, num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub bind: Vec<String>,
    /// Bind SRC at DEST read-only.
    #[arg(long = "ro-bind", num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub ro_bind: Vec<String>,
    /// Mount a fresh tmpfs at DEST.
    #[arg(long, value_name = "DEST")]
    pub tmpfs: Vec<String>,
    /// Set VAR=VALUE in the jail's (otherwise clean) environment.
    #[arg(long, num_args = 2, value_names = ["VAR", "VALUE"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub setenv: Vec<String>,
    /// Working directory in the jail [default: /].
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<String>,
    /// Run the command as UID (and GID) in the jail [default: 0:0].
    #[arg(long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Network: none (own namespace, loopback), pasta (own namespace, outbound through pasta,
    /// with the host's /etc/resolv.conf), host (with the host's /etc/resolv.conf), or ljspawn's
    /// bridge:BR / macvlan:IFACE.
    #[arg(long, value_name = "MODE", default_value = "none")]
    pub net: String,
    /// Memory limit of the jail (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// At most N processes and threads in the jail.
    #[arg(long, value_name = "N")]
    pub pids: Option<String>,
    /// CPU time of the jail, in CPUs (0.5 is half a core).
    #[arg(long, value_name = "FRACTION")]
    pub cpus: Option<String>,
    /// Stop the command after this long (e.g. 30s, 10m); the status is then 124.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
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
    /// Remove stale staging areas (of builds that died), logs of failed builds, derived
    /// versions (0.0.0-h...) that no overlay is built on and that are not the newest of their
    /// name, and stored layers (store/sha256/...) that nothing references.
    Gc {
        /// Print what would be removed; remove nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Show a published overlay: world, parents, inputs, sizes, build log, and what its layer adds,
    /// changes and deletes (whiteouts are deletions).
    Inspect {
        /// NAMESPACE/NAME@VERSION (or a prefix, picked as `run` picks).
        #[arg(value_name = "NAME[@VERSION]")]
        overlay: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in an ephemeral jail on a published overlay (writes are discarded) and exit
    /// with its status. Says on stderr which version it picked (unless -q).
    Run {
        /// NAMESPACE/NAME, optionally @VERSION-PREFIX [default: the most recently built version;
        /// a prefix picks the highest version matching it; 0.0.0-h + a few hex digits picks the
        /// derived version with that hash prefix].
        #[arg(value_name = "NAME[@VERSION]")]
        overlay: String,
        #[command(flatten)]
        jail: Box<RunJailArgs>,
        /// Print the ljspawn command line instead of running it.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// The command and its arguments [default: /bin/sh].
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Write a published overlay as an OCI image: one layer for the world and one per overlay
    /// of its chain (overlay whiteouts and opaque directories become OCI whiteouts), with a
    /// config carrying the world's image defaults (Env, WorkingDir, User, Entrypoint/Cmd).
    Export {
        /// NAMESPACE/NAME, optionally @VERSION-PREFIX (picked as `run` picks).
        #[arg(value_name = "NAME[@VERSION]")]
        overlay: String,
        /// `oci:DIR[:TAG]` (an image layout; other tags in it are kept),
        /// `oci-archive:FILE[:TAG]`, or a plain path (`*.tar`: an archive, else a layout)
        /// [default TAG: the version].
        #[arg(value_name = "DEST")]
        dest: String,
        /// Compress layers with gzip (= --compression gzip).
        #[arg(long, conflicts_with = "compression")]
        gzip: bool,
        /// Layer compression: none (uncompressed tar, the fastest), gzip (in parallel blocks),
        /// zstd [default: none].
        #[arg(long, value_enum, value_name = "HOW")]
        compression: Option<crate::oci::compress::Compression>,
        /// Verify the registry's TLS certificate (`--tls-verify=false`: also plain HTTP).
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        tls_verify: bool,
    },
    /// Push a published overlay to a registry as an OCI image (as `export` writes it): each blob
    /// the registry lacks is uploaded (a HEAD first), the manifest last, so an interrupted push
    /// publishes nothing. Credentials: $REGISTRY_AUTH_FILE or ~/.config/containers/auth.json.
    Push {
        /// NAMESPACE/NAME, optionally @VERSION-PREFIX.
        #[arg(value_name = "NAME[@VERSION]")]
        overlay: String,
        /// docker://HOST[:PORT]/REPOSITORY[:TAG] [default TAG: the version].
        #[arg(value_name = "REF")]
        dest: String,
        /// Compress layers with gzip (= --compression gzip).
        #[arg(long, conflicts_with = "compression")]
        gzip: bool,
        /// Layer compression: none, gzip, zstd [default: none].
        #[arg(long, value_enum, value_name = "HOW")]
        compression: Option<crate::oci::compress::Compression>,
        /// Verify the registry's TLS certificate (`--tls-verify=false`: also plain HTTP).
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        tls_verify: bool,
    },
    /// Pull an image ljbuild pushed back into this root: its world and each overlay of its
    /// chain, published as they were built (so builds here key on them as there); what is
    /// present already (same world identity, same inputs hash, or a layer whose content digest
    /// is in the store) is not transferred. Any other
    /// image: `ljbuild world import NAME docker://...`.
    Pull {
        /// docker://HOST[:PORT]/REPOSITORY[:TAG|@DIGEST] [default TAG: latest].
        #[arg(value_name = "REF")]
        source: String,
        /// Publish the top overlay as NAMESPACE/NAME@VERSION instead of its own name.
        #[arg(value_name = "NAME@VERSION")]
        name: Option<String>,
        /// Verify the registry's TLS certificate (`--tls-verify=false`: also plain HTTP).
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        tls_verify: bool,
    },
    /// Internal: a layer operation run by ljbuild itself in a jail with the caller's
    /// subordinate ids mapped (a rootless store's files of other ids).
    #[command(name = "__layer", hide = true)]
    Layer {
        /// `digest` (print the content digest) or `apply` (apply a layer tar from stdin).
        op: String,
        /// The layer directory.
        dir: PathBuf,
        /// An overlay upper (whiteouts), not a world.
        #[arg(long)]
        upper: bool,
        /// `apply-world-part`: the layers below, bottom first.
        #[arg(long)]
        lower: Vec<PathBuf>,
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
    List {
        /// One JSON array: name, path, default, tag, overlays built on it.
        #[arg(long)]
        json: bool,
    },
    /// Remove world NAME (refused while overlays are built on it, unless --force).
    Rm {
        /// The world.
        name: String,
        /// Remove it even if overlays are built on it.
        #[arg(long)]
        force: bool,
    },
    /// Make NAME the default world (the worlds/default symlink).
    Use {
        /// The world.
        name: String,
    },
    /// Import a directory, a tarball or a container image as world NAME (the first world becomes
    /// the default).
    ///
    /// Images: `oci:DIR[:TAG]` (an OCI image layout), `oci-archive:FILE[:TAG]`,
    /// `docker-archive:FILE[:TAG]` (`docker save`); a directory holding `oci-layout` or a tar
    /// file holding `index.json` or `manifest.json` is recognized without the prefix. Layers are
    /// applied in order (whiteouts and opaque directories honoured), every digest is checked,
    /// and the config's Env, WorkingDir, User and Entrypoint/Cmd become `ljbuild run`'s defaults.
    Import {
        /// The new world's name.
        name: String,
        /// A directory or a tarball, copied with tar (as root with owners and xattrs; /dev's
        /// contents skipped), or an image reference.
        #[arg(value_name = "DIR-OR-TARBALL-OR-IMAGE")]
        source: PathBuf,
        /// Verify the registry's TLS certificate (`--tls-verify=false`: also plain HTTP, for
        /// loopback and test registries).
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        tls_verify: bool,
    },
}

/// The clap command, for documentation generators.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the command line of `prog` (ljbuild, or its peer ljail): help and version are
/// printed and exit 0; any other clap error becomes one line, `PROG: WHAT (see PROG --help)`,
/// and the usage exit status, which the caller returns.
pub fn parse_or_usage<C: Parser>(prog: &str) -> Result<C, std::process::ExitCode> {
    use clap::error::ErrorKind;
    match C::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            errln!("{prog}: {first} (see {prog} --help)");
            Err(std::process::ExitCode::from(crate::error::EXIT_USAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["ljbuild", "-v", "1.0", "x/Jailfile", "--net", "none"]).unwrap();
        assert_eq!(c.build.version.as_deref(), Some("1.0"));
        assert_eq!(c.build.net, Some(Net::None));
        assert!(c.command.is_none());
        let c = Cli::try_parse_from(["ljbuild", "run", "a/b@1", "--", "ls", "-l"]).unwrap();
        match c.command {
            Some(Cmd::Run { overlay, command, .. }) => {
                assert_eq!(overlay, "a/b@1");
                assert_eq!(command, ["ls", "-l"]);
            }
            _ => panic!("not run"),
        }
        let c = Cli::try_parse_from([
            "ljbuild",
            "run",
            "a/b",
            "--bind",
            ".",
            "/src",
            "--setenv",
            "A",
            "-x",
            "--chdir",
            "/src",
            "--net",
            "host",
            "--timeout",
            "5m",
            "--",
            "make",
        ])
        .unwrap();
        match c.command {
            Some(Cmd::Run { jail, .. }) => {
                assert_eq!(jail.bind, [".", "/src"]);
                assert_eq!(jail.setenv, ["A", "-x"]);
                assert_eq!(jail.net, "host");
                assert_eq!(jail.timeout.as_deref(), Some("5m"));
            }
            _ => panic!("not run"),
        }
        let e = Cli::try_parse_from(["ljbuild", "--timeout", "5y", "J"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(
            parse_duration("1.5m").is_ok() && parse_duration("-1s").is_err() && parse_duration("s").is_err()
        );
        let c = Cli::try_parse_from(["ljbuild", "--root", "/r", "world", "import", "bb", "/x"]).unwrap();
        assert!(matches!(c.command, Some(Cmd::World { command: WorldCmd::Import { .. } })));
        let c = Cli::try_parse_from(["ljbuild", "list", "--json", "--root", "/r"]).unwrap();
        assert_eq!(c.root, Some(PathBuf::from("/r")));
    }
}
