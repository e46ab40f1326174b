//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::EXIT_CODES_HELP;

/// Persistent named jails on top of ljspawn: create, start, stop, snapshot, clone.
///
/// A jail is ROOT/jails/NAME/: a config file, a persistent upper over an image's layers (or a
/// full copy), snapshots and a log. Every jail runs through ljspawn: where systemd is PID 1 as
/// the unit lightjail-NAME (systemctl, journalctl -u, machinectl), elsewhere under ljail's own
/// supervisor (detached; restart policy; `start --all` in boot order).
#[derive(Debug, Parser)]
#[command(name = "ljail", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// The lightjail root [default: $LIGHTJAIL_ROOT; else /usr/local/lj for root,
    /// $XDG_DATA_HOME/lightjail or ~/.local/share/lightjail for other users].
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Only print warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Who runs jails: systemd (transient units lightjail-NAME: the system manager for root,
    /// your user manager for others), ljail (its own supervisor), or auto: systemd where it is
    /// PID 1 (and, for non-root users, their user manager runs), else ljail [default:
    /// $LJAIL_SUPERVISOR, else auto].
    #[arg(long, global = true, value_name = "WHO", value_parser = ["auto", "systemd", "ljail"])]
    pub supervisor: Option<String>,

    #[command(subcommand)]
    pub command: Cmd,
}

/// The jail's settings on `create`, in ljspawn's spelling (written to the config file).
#[derive(Debug, Clone, Default, Args)]
pub struct JailOpts {
    /// Bind SRC (host; relative to the current directory) at DEST in the jail, read-write.
    #[arg(long, num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub bind: Vec<String>,
    /// Bind SRC at DEST read-only.
    #[arg(long = "ro-bind", num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub ro_bind: Vec<String>,
    /// Bind SRC at DEST allowing device nodes.
    #[arg(long = "dev-bind", num_args = 2, value_names = ["SRC", "DEST"], action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub dev_bind: Vec<String>,
    /// Mount a fresh tmpfs at DEST (emptied at every start).
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
    /// Host name in the jail [default: the jail's name].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Network: none (own namespace, loopback), host, bridge:BR or macvlan:IFACE [default: none].
    #[arg(long, value_name = "MODE")]
    pub net: Option<String>,
    /// The jail's IPv4 address on eth0 (bridge and macvlan).
    #[arg(long, value_name = "ADDR/PREFIX")]
    pub ip: Option<String>,
    /// Default route of the jail (bridge and macvlan).
    #[arg(long, value_name = "GW")]
    pub gateway: Option<String>,
    /// Memory limit of the jail (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// At most N processes and threads in the jail.
    #[arg(long, value_name = "N")]
    pub pids: Option<String>,
    /// CPU time of the jail, in CPUs (0.5 is half a core).
    #[arg(long, value_name = "FRACTION")]
    pub cpus: Option<String>,
    /// Resource limit of the program (nofile, nproc, ...), repeated.
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    pub rlimit: Vec<String>,
    /// Keep capability CAP (in the jail's own user namespace; root: on the host), repeated.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Bind the host's GPU devices: nvidia (/dev/nvidia*, and the driver's libraries and tools
    /// read-only), intel (/dev/dri) or amd (/dev/dri, /dev/kfd).
    #[arg(long, value_name = "VENDOR", value_parser = ["nvidia", "intel", "amd"])]
    pub gpu: Option<String>,
    /// Let the program create user namespaces.
    #[arg(long)]
    pub allow_userns: bool,
    /// /proc without its masks (ljspawn's --proc-unmasked), so jails nested in this one
    /// (podman's, a user's own ljail under the jail's systemd) can mount a proc of their own;
    /// the default for --init and --docker jails of a non-root user. Not as root (a root jail's
    /// ids are the host's).
    #[arg(long)]
    pub proc_unmasked: bool,
    /// Root's jails: map the jail's ids 0-65535 onto a private host range (its root is then not
    /// the host's): pick (a free range, the default for --init and --docker jails), BASE (a
    /// multiple of 65536), or no (the same host ids: no boundary against the jail's root).
    #[arg(long, value_name = "pick|no|BASE")]
    pub private_users: Option<String>,
    /// What podman or dockerd in the jail need: a user namespace with ids 0-65535 and every
    /// capability in it, nested user namespaces, keyrings and bpf (Jailmaker's docker
    /// template), a delegated cgroup v2, /sys, /dev/fuse and /dev/net/tun where you may open
    /// them, and the container storage (/var/lib/containers, /var/lib/docker) on the host's
    /// file system, kept with the jail.
    #[arg(long)]
    pub docker: bool,
    /// Restart policy of the supervisor.
    #[arg(long, value_name = "POLICY", value_parser = ["no", "on-failure", "always"])]
    pub restart: Option<String>,
    /// Delay between restarts (e.g. 500ms, 2s) [default: 1s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub restart_delay: Option<Duration>,
    /// Give up after N restarts (0: never) [default: 0].
    #[arg(long, value_name = "N")]
    pub restart_max: Option<u32>,
    /// Grace period of `stop` before SIGKILL [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub stop_timeout: Option<Duration>,
    /// Start it with `ljail start --all`.
    #[arg(long)]
    pub autostart: bool,
    /// Boot order of `start --all` (lower first; `stop --all` goes the other way) [default: 50].
    #[arg(long, value_name = "N")]
    pub priority: Option<i32>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Make a jail: ROOT/jails/NAME with its config and a persistent upper over IMAGE's layers
    /// (or a full copy with --copy).
    Create {
        /// The jail's name.
        name: String,
        /// The image, NAMESPACE/NAME[@VERSION-PREFIX] (resolved now to an exact version).
        #[arg(value_name = "IMAGE[@PREFIX]", required_unless_present = "world", conflicts_with = "world")]
        image: Option<String>,
        /// Stand on world W instead of an image.
        #[arg(long, value_name = "W")]
        world: Option<String>,
        /// A full copy of the layers instead of a thin upper over them.
        #[arg(long)]
        copy: bool,
        /// Boot the image's own init (systemd) as the jail's PID 1 [default command: /sbin/init,
        /// or /lib/systemd/systemd where the image has no /sbin/init]; `stop` halts it
        /// (SIGRTMIN+3, then SIGKILL after the stop timeout).
        #[arg(long)]
        init: bool,
        #[command(flatten)]
        opts: Box<JailOpts>,
        /// Print the ljspawn command line `start` would run; make nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// What the jail runs.
        #[arg(last = true, value_name = "CMD", required_unless_present = "init")]
        command: Vec<String>,
    },
    /// Start jails: where systemd is PID 1 as the unit lightjail-NAME, else under ljail's own
    /// supervisor (detached); a running one is left alone.
    Start {
        /// The jails.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every jail with autostart, in boot order (priority, then name).
        #[arg(long)]
        all: bool,
        /// Print the ljspawn command line; start nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Stop jails: SIGTERM (an --init jail: SIGRTMIN+3, its init's halt), then SIGKILL after
    /// the timeout.
    Stop {
        /// The jails.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every running jail, in reverse boot order.
        #[arg(long)]
        all: bool,
        /// Grace period before SIGKILL [default: the jail's stop-timeout, 10s].
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Stop (if running), then start.
    Restart {
        /// The jail.
        name: String,
        /// Grace period of the stop.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// A jail's state (starting, running, restarting, stopping, stopped, exited, failed), pid,
    /// source, network, restarts, snapshots.
    Status {
        /// The jail.
        name: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every jail.
    List {
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Print a jail's log (its output and the supervisor's lines).
    Log {
        /// The jail.
        name: String,
        /// Keep printing what is appended.
        #[arg(short, long)]
        follow: bool,
    },
    /// Edit a jail's config with $VISUAL or $EDITOR; saved only if it is valid.
    Edit {
        /// The jail.
        name: String,
    },
    /// Remove a jail and everything of it.
    Destroy {
        /// The jail.
        name: String,
        /// Stop it first if it runs.
        #[arg(long)]
        force: bool,
    },
    /// Copy a jail's data and config into snapshot SNAP (a running jail is frozen meanwhile).
    Snapshot {
        /// The jail.
        name: String,
        /// The snapshot's name.
        snap: String,
    },
    /// Put a stopped jail's data and config back as they were at snapshot SNAP.
    Rollback {
        /// The jail.
        name: String,
        /// The snapshot.
        snap: String,
    },
    /// Make jail NEW from NAME's data and config (now, or at a snapshot).
    Clone {
        /// The jail to copy.
        name: String,
        /// The new jail.
        new: String,
        /// Copy this snapshot instead of the jail's current data.
        #[arg(long, value_name = "SNAP")]
        snapshot: Option<String>,
    },
    /// Run a command in the running jail (ljspawn --join: its namespaces, cgroup, user,
    /// environment, capabilities, no_new_privs and seccomp filter); exits with its status.
    Exec {
        /// The jail.
        name: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// A login shell in the running jail (its user's shell from the jail's /etc/passwd, else
    /// /bin/sh) on a pty of the jail's own: job control, Ctrl-C and the window size work.
    /// Confined as `exec` is; needs a terminal.
    Shell {
        /// The jail.
        name: String,
    },
    /// Start the jail at boot: under systemd, write its unit (/etc/systemd/system, or
    /// ~/.config/systemd/user, lightjail-NAME.service, ordered after the jails of lower
    /// priority) and `systemctl enable` it; elsewhere, set `autostart yes` (`start --all`).
    Enable {
        /// The jail.
        name: String,
        /// Print the unit file; change nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Undo `enable`: `systemctl disable` and remove the unit file (a running jail is refused:
    /// stop it first); elsewhere, set `autostart no`.
    Disable {
        /// The jail.
        name: String,
    },
    /// (internal) Run by a jail's systemd unit when it started or stopped.
    #[command(hide = true)]
    UnitHook {
        /// The jail.
        name: String,
        /// `started` or `stopped`.
        what: String,
        /// The unit's name, as `start` or `enable` made it.
        #[arg(long)]
        unit: Option<String>,
    },
    /// (internal) The supervisor of one jail, run detached by `start`.
    #[command(hide = true)]
    Supervise {
        /// The jail.
        name: String,
    },
}

/// The clap command, for documentation generators.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
