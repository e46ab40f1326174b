//! The command line: one clap definition (also used for man pages and completions) and its
//! translation into a [`Request`]. Nothing here touches the system.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::plan::{MountReq, Request};

const AFTER_HELP: &str = "\
Lightjail's form keeps working:
  ljspawn -d DIR -p 'SHELL COMMAND' [-n NAME] [-0] [-i IP -f IFACE] [-m MB] [-O FILE] [-E FILE] [-j]

bubblewrap's form (see README: the bwrap form), also when invoked as `bwrap`:
  ljspawn --bwrap [BWRAP OPTIONS...] [--] COMMAND [ARGS...]

Exit status: the program's own; 128+N if it was killed by signal N; ljspawn's own failures:
  2   usage error
  124 --timeout expired (the jail got SIGTERM, then SIGKILL after the grace period)
  125 setting up the jail failed
  126 the program was found but could not be executed
  127 the program was not found
  141 what ljspawn printed itself (--dry-run) went to a pipe whose reader had gone
A stderr whose reader has gone changes none of these: the line is lost, the status stays.";

/// The clap definition of ljspawn's command line.
pub fn command() -> Command {
    let path =
        |name: &'static str| Arg::new(name).value_name("DIR").value_parser(clap::value_parser!(PathBuf));
    let pair = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .num_args(2)
            .value_names(["SRC", "DEST"])
            .action(ArgAction::Append)
            .allow_hyphen_values(true)
            .help(help)
    };
    Command::new("ljspawn")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run one command in a fresh, ephemeral jail and return its exit status")
        .override_usage("ljspawn [OPTIONS] [--] COMMAND [ARGS...]\n       ljspawn -d DIR -p 'SHELL COMMAND' [-n NAME] [-0]")
        .after_help(AFTER_HELP)
        .next_line_help(false)
        .arg(path("root").short('d').long("root").help("Root file system: DIR, read-only unless --rw"))
        .arg(Arg::new("rw").long("rw").action(ArgAction::SetTrue).help("Make the --root directory writable"))
        .arg(
            path("layer")
                .long("layer")
                .action(ArgAction::Append)
                .help("Overlay root: a read-only layer, repeated bottom first"),
        )
        .arg(
            path("idmap-layer")
                .long("idmap-layer")
                .action(ArgAction::Append)
                .help("A read-only layer (in --layer order) idmapped onto the jail's user namespace: its owners show as the jail's ids (setuid: a layer of a store granted in /etc/lightjail.conf; root: with a user namespace)"),
        )
        .arg(path("upper").long("upper").help("Overlay upper dir, kept (default: a tmpfs discarded on exit)"))
        .arg(path("work").long("work").help("Overlay work dir, empty, on the file system of --upper"))
        .arg(
            Arg::new("host-usr")
                .long("host-usr")
                .action(ArgAction::SetTrue)
                .help("Bind the host's /usr read-only, with its usr-merge links (or read-only binds) at /bin /sbin /lib*"),
        )
        .arg(pair("bind", "Bind SRC (host) at DEST (jail), read-write"))
        .arg(pair("ro-bind", "Bind SRC at DEST read-only, every submount included"))
        .arg(pair("dev-bind", "Bind SRC at DEST allowing device nodes (e.g. GPU nodes)"))
        .arg(
            Arg::new("symlink")
                .long("symlink")
                .num_args(2)
                .value_names(["TARGET", "DEST"])
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .help("Make a symlink DEST -> TARGET in the jail"),
        )
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("DEST")
                .action(ArgAction::Append)
                .help("Make the directory DEST (and its parents) in the jail"),
        )
        .arg(
            Arg::new("file")
                .long("file")
                .num_args(2)
                .value_names(["FD", "DEST"])
                .action(ArgAction::Append)
                .help("Make the file DEST in the jail with the content read from descriptor FD"),
        )
        .arg(
            Arg::new("tmpfs")
                .long("tmpfs")
                .value_name("DEST")
                .action(ArgAction::Append)
                .help("Mount a fresh tmpfs at DEST"),
        )
        .arg(
            Arg::new("setenv")
                .long("setenv")
                .num_args(2)
                .value_names(["VAR", "VALUE"])
                .action(ArgAction::Append)
                .allow_hyphen_values(true)
                .help("Set VAR=VALUE in the jail's (otherwise clean) environment"),
        )
        .arg(Arg::new("chdir").long("chdir").value_name("DIR").help("Working directory in the jail [default: /]"))
        .arg(
            Arg::new("hostname")
                .long("hostname")
                .short('n')
                .value_name("NAME")
                .help("Host name in the jail [default: lj]"),
        )
        .arg(
            Arg::new("user")
                .long("user")
                .value_name("UID[:GID]")
                .value_parser(parse_user)
                .help("Run the program as UID (and GID) in the jail [default: 0:0]"),
        )
        .arg(
            Arg::new("nobody")
                .short('0')
                .action(ArgAction::SetTrue)
                .conflicts_with("user")
                .help("Run the program as nobody (65534:65534)"),
        )
        .arg(
            Arg::new("userns")
                .long("userns")
                .action(ArgAction::SetTrue)
                .help("Also make a user namespace when run as root (always made for other users)"),
        )
        .arg(
            Arg::new("subids")
                .long("subids")
                .action(ArgAction::SetTrue)
                .help("Map jail ids 0-65535 in the jail's user namespace: you as 0 and your /etc/subuid and /etc/subgid ranges above (rootless: with newuidmap/newgidmap; setuid: by ljspawn); as root the same ids on the host"),
        )
        .arg(
            Arg::new("subids-base")
                .long("subids-base")
                .value_name("BASE")
                .value_parser(clap::value_parser!(u64))
                .help("Root only: --subids mapping jail ids 0-65535 onto host ids BASE..BASE+65535 (a private range: the jail's root is host uid BASE, not root; BASE a multiple of 65536, at least 65536); implies --subids"),
        )
        .arg(
            Arg::new("net")
                .long("net")
                .value_name("MODE")
                .conflicts_with("iface")
                .help("Network: none (own namespace, loopback), pasta (own namespace, outbound through pasta; root and rootless), host, bridge:BR or macvlan:IFACE [default: none]"),
        )
        .arg(
            Arg::new("ip")
                .long("ip")
                .short('i')
                .value_name("ADDR[/PREFIX]|dhcp")
                .help("The jail's IPv4 address on eth0 (bridge and macvlan; prefix default 24), or dhcp: eth0 up without one, for the jail's own DHCP client"),
        )
        .arg(Arg::new("gateway").long("gateway").value_name("GW").help("Default route of the jail (bridge and macvlan)"))
        .arg(
            Arg::new("iface")
                .short('f')
                .value_name("IFACE")
                .help("lightjail's form of --net macvlan:IFACE"),
        )
        .arg(
            Arg::new("cap-add")
                .long("cap-add")
                .value_name("CAP")
                .action(ArgAction::Append)
                .help("Keep capability CAP (e.g. CAP_NET_ADMIN, net_admin, ALL, or container: the default container set), held in the jail's own user namespace; without one (root) on the host"),
        )
        .arg(
            Arg::new("pass-fd")
                .long("pass-fd")
                .value_name("FD")
                .value_parser(clap::value_parser!(i32))
                .action(ArgAction::Append)
                .help("Keep descriptor FD open in the program (only 0-2 are by default)"),
        )
        .arg(
            Arg::new("json-status")
                .long("json-status")
                .value_name("FD")
                .value_parser(clap::value_parser!(i32))
                .help("Write JSON lines (child pid, namespace ids, exit code) to FD"),
        )
        .arg(
            Arg::new("json-log")
                .short('j')
                .action(ArgAction::SetTrue)
                .conflicts_with("json-status")
                .help("lightjail's form: the --json-status lines on stderr"),
        )
        .arg(
            Arg::new("stdout")
                .short('O')
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Send the program's stdout to FILE (opened with your credentials)"),
        )
        .arg(
            Arg::new("stderr")
                .short('E')
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Send the program's stderr to FILE (opened with your credentials)"),
        )
        .arg(
            Arg::new("shell")
                .short('p')
                .value_name("CMD")
                .allow_hyphen_values(true)
                .conflicts_with("command")
                .help("Run CMD with /bin/sh -c (lightjail's form)"),
        )
        .arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("DURATION")
                .value_parser(parse_duration)
                .help("Wall-clock limit (e.g. 500ms, 30s, 5m): SIGTERM, then SIGKILL after --kill-after"),
        )
        .arg(
            Arg::new("kill-after")
                .long("kill-after")
                .value_name("DURATION")
                .value_parser(parse_duration)
                .help("Grace period between SIGTERM and SIGKILL on timeout [default: 5s]"),
        )
        .arg(
            Arg::new("memory")
                .long("memory")
                .value_name("SIZE")
                .conflicts_with("memory-mb")
                .help("Memory limit of the whole jail, through its cgroup (e.g. 512M, 2G; a number alone is MiB, 4096B bytes; at least 1M)"),
        )
        .arg(
            Arg::new("memory-mb")
                .short('m')
                .value_name("MB")
                .value_parser(clap::value_parser!(u64).range(1..))
                .help("lightjail's form of --memory, in MiB"),
        )
        .arg(
            Arg::new("pids")
                .long("pids")
                .value_name("N")
                .value_parser(clap::value_parser!(u64).range(1..=4_194_304))
                .help("At most N processes and threads in the jail, through its cgroup"),
        )
        .arg(
            Arg::new("cpus")
                .long("cpus")
                .value_name("FRACTION")
                .value_parser(parse_cpus)
                .help("CPU time of the jail, in CPUs (0.5 is half a core), through its cgroup"),
        )
        .arg(
            Arg::new("rlimit")
                .long("rlimit")
                .value_name("NAME=SOFT[:HARD]")
                .action(ArgAction::Append)
                .help("Resource limit for the program (nofile, nproc, as, fsize, core, stack, cpu, ...)"),
        )
        .arg(
            Arg::new("seccomp")
                .long("seccomp")
                .value_name("MODE")
                .help("Built-in seccomp filter: default; container (for podman or dockerd in the jail: also allows new user namespaces, setuid files, keyrings and bpf); or none (root only) [default: default]"),
        )
        .arg(
            Arg::new("allow-userns")
                .long("allow-userns")
                .action(ArgAction::SetTrue)
                .help("Let the program create user namespaces (the filter denies it by default)"),
        )
        .arg(
            Arg::new("allow-setuid-files")
                .long("allow-setuid-files")
                .action(ArgAction::SetTrue)
                .help("Let the program make setuid and setgid files (the filter refuses them by default; for image builds whose output stays private)"),
        )
        .arg(
            Arg::new("seccomp-fd")
                .long("seccomp-fd")
                .value_name("FD")
                .value_parser(clap::value_parser!(i32))
                .help("Also install the BPF program (struct sock_filter array) read from FD"),
        )
        .arg(
            Arg::new("join")
                .long("join")
                .value_name("PID")
                .value_parser(clap::value_parser!(i32).range(1..))
                .help("Run the command in the running jail whose PID 1 is PID (yours), confined as the jail's options say (setuid: entered as root, then only the jail's root's powers)"),
        )
        .arg(
            Arg::new("as-pid-1")
                .long("as-pid-1")
                .action(ArgAction::SetTrue)
                .help("Run the program as the jail's PID 1 (an init of its own, e.g. systemd: it reaps orphans and handles its signals; the jail ends when it exits)"),
        )
        .arg(
            Arg::new("stop-signal")
                .long("stop-signal")
                .value_name("SIGNAL")
                .value_parser(parse_signal)
                .help("Deliver a SIGTERM sent to ljspawn (and --timeout's) to the jail as SIGNAL (e.g. RTMIN+3, systemd's halt) [default: TERM]"),
        )
        .arg(
            Arg::new("sysfs")
                .long("sysfs")
                .action(ArgAction::SetTrue)
                .help("Mount a fresh sysfs at /sys, read-only (needs the jail's own network namespace outside root mode)"),
        )
        .arg(
            Arg::new("net-sysctls-rw")
                .long("net-sysctls-rw")
                .action(ArgAction::SetTrue)
                .help("Leave /proc/sys/net writable (the jail's own network namespace's settings, e.g. for a container runtime in the jail; not with --net host)"),
        )
        .arg(
            Arg::new("proc-unmasked")
                .long("proc-unmasked")
                .action(ArgAction::SetTrue)
                .help("Leave /proc without its read-only binds and masks, so nested jails (user namespaces in the jail) can mount a proc of their own; rootless and setuid only (the jail's ids hold no host root), refused in root mode"),
        )
        .arg(
            Arg::new("delegate-cgroup")
                .long("delegate-cgroup")
                .action(ArgAction::SetTrue)
                .help("Give the jail a cgroup v2 of its own, writable by the jail's root and mounted at /sys/fs/cgroup as its / (for an init such as systemd; rootless: in a subtree delegated to you; setuid: with a limits grant)"),
        )
        .arg(
            Arg::new("die-with-parent")
                .long("die-with-parent")
                .action(ArgAction::SetTrue)
                .help("Kill the jail when the process that started ljspawn dies"),
        )
        .arg(
            Arg::new("no-pty")
                .long("no-pty")
                .action(ArgAction::SetTrue)
                .help("When stdin is a terminal, hand it to the jail as it is instead of giving the jail a pty of its own relayed by ljspawn"),
        )
        .arg(
            Arg::new("dry-run")
                .long("dry-run")
                .action(ArgAction::SetTrue)
                .help("Print the plan (namespaces, id maps, mounts in order, environment) and do nothing"),
        )
        .arg(
            Arg::new("command")
                .value_name("COMMAND")
                .num_args(1..)
                .trailing_var_arg(true)
                .help("The program and its arguments (searched in the jail's PATH)"),
        )
}

/// A signal by name (`TERM`, `SIGUSR1`, `RTMIN+3`) or number.
fn parse_signal(s: &str) -> Result<i32, String> {
    let name = s.strip_prefix("SIG").unwrap_or(s);
    let bad = || format!("'{s}' is not a signal (e.g. TERM, INT, USR1, RTMIN+3 or a number)");
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "TERM" => libc::SIGTERM,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "PWR" => libc::SIGPWR,
        "KILL" => libc::SIGKILL,
        _ => match name.strip_prefix("RTMIN") {
            Some("") => libc::SIGRTMIN(),
            Some(off) => {
                libc::SIGRTMIN()
                    + off.strip_prefix('+').and_then(|o| o.parse::<i32>().ok()).ok_or_else(bad)?
            }
            None => name.parse().map_err(|_| bad())?,
        },
    };
    if (1..=libc::SIGRTMAX()).contains(&n) {
        Ok(n)
    } else {
        Err(bad())
    }
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if (0.01..=4096.0).contains(&c) => Ok(c),
        _ => Err(format!("'{s}' is not a number of CPUs (e.g. 0.5 or 2)")),
    }
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>), String> {
    let num = |t: &str| t.parse::<u32>().map_err(|_| format!("'{t}' is not a numeric id"));
    match s.split_once(':') {
        Some((u, g)) => Ok((num(u)?, Some(num(g)?))),
        None => Ok((num(s)?, None)),
    }
}

/// `500ms`, `30s`, `5m`, `1h`, or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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
    Ok(Duration::from_secs_f64(n * scale))
}

/// The common command line, parsed without clap: `[--root DIR | -d DIR] [--rw] [--layer DIR]...
/// -- COMMAND [ARGS...]` (`args` after argv\[0\]; options in any order, `--root`/`-d` and `--rw`
/// at most once; each DIR non-empty and not starting with `-`; the command non-empty, and
/// every argument UTF-8). Building clap's command and parsing costs a spawn about 0.1 ms of CPU
/// and 20 page faults (bench/README.md). Anything else is `None`: the caller parses with clap,
/// whose request is the same for every list this accepts (test `fast_path_is_claps_parse`).
/// Nothing is validated here that clap would check: the plan checks the request either way.
pub fn fast_request(args: &[OsString]) -> Option<Request> {
    // A DIR value: what clap's PathBuf parser takes as a value, not as the next option.
    fn dir(word: Option<&OsString>) -> Option<PathBuf> {
        word?.to_str().filter(|v| !v.is_empty() && !v.starts_with('-')).map(PathBuf::from)
    }
    let mut req = Request::default();
    let mut words = args.iter();
    loop {
        match words.next()?.to_str()? {
            "--" => break,
            "--root" | "-d" if req.root.is_none() => req.root = Some(dir(words.next())?),
            "--rw" if !req.rw => req.rw = true,
            "--layer" => req.layers.push(dir(words.next())?),
            _ => return None,
        }
    }
    req.command = words.map(|w| w.to_str().map(String::from)).collect::<Option<_>>()?;
    if !matches!(req.command.first(), Some(c) if !c.is_empty()) {
        return None;
    }
    req.idmap = vec![false; req.layers.len()];
    Some(req)
}

/// Translates parsed arguments into a request. Mount options keep their command-line order.
pub fn request(m: &ArgMatches) -> Request {
    let mut mounts: Vec<(usize, MountReq)> = Vec::new();
    for (name, ro, dev) in [("bind", false, false), ("ro-bind", true, false), ("dev-bind", false, true)] {
        if let (Some(vals), Some(idx)) = (m.get_many::<String>(name), m.indices_of(name)) {
            let vals: Vec<&String> = vals.collect();
            let idx: Vec<usize> = idx.collect();
            for (pair, &i) in vals.chunks(2).zip(idx.iter().step_by(2)) {
                let bind = MountReq::Bind { src: PathBuf::from(pair[0]), dest: pair[1].clone(), ro, dev };
                mounts.push((i, bind));
            }
        }
    }
    for name in ["tmpfs", "dir"] {
        if let (Some(vals), Some(idx)) = (m.get_many::<String>(name), m.indices_of(name)) {
            mounts.extend(idx.zip(vals).map(|(i, d)| {
                let dest = d.clone();
                (i, if name == "dir" { MountReq::Dir { dest, mode: None } } else { MountReq::Tmpfs { dest } })
            }));
        }
    }
    for name in ["symlink", "file"] {
        if let (Some(vals), Some(idx)) = (m.get_many::<String>(name), m.indices_of(name)) {
            let vals: Vec<&String> = vals.collect();
            let idx: Vec<usize> = idx.collect();
            for (pair, &i) in vals.chunks(2).zip(idx.iter().step_by(2)) {
                let dest = pair[1].clone();
                let req = match name {
                    "symlink" => MountReq::Symlink { target: pair[0].clone(), dest },
                    // Not a number: -1, which the plan refuses as not an open descriptor.
                    _ => MountReq::File { fd: pair[0].parse().unwrap_or(-1), dest, mode: None },
                };
                mounts.push((i, req));
            }
        }
    }
    mounts.sort_by_key(|(i, _)| *i);

    let setenv = m
        .get_many::<String>("setenv")
        .map(|v| v.collect::<Vec<_>>().chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
        .unwrap_or_default();
    let command = match m.get_one::<String>("shell") {
        Some(cmd) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
        None => m.get_many::<String>("command").map(|v| v.cloned().collect()).unwrap_or_default(),
    };
    let user = if m.get_flag("nobody") {
        Some((65534, Some(65534)))
    } else {
        m.get_one::<(u32, Option<u32>)>("user").copied()
    };
    // --layer and --idmap-layer make one stack, in command-line order.
    let mut layers: Vec<(usize, PathBuf, bool)> = Vec::new();
    for (name, idmap) in [("layer", false), ("idmap-layer", true)] {
        if let (Some(vals), Some(idx)) = (m.get_many::<PathBuf>(name), m.indices_of(name)) {
            layers.extend(idx.zip(vals).map(|(i, p)| (i, p.clone(), idmap)));
        }
    }
    layers.sort_by_key(|(i, ..)| *i);
    Request {
        root: m.get_one::<PathBuf>("root").cloned(),
        rw: m.get_flag("rw"),
        idmap: layers.iter().map(|(_, _, i)| *i).collect(),
        layers: layers.into_iter().map(|(_, p, _)| p).collect(),
        upper: m.get_one::<PathBuf>("upper").cloned(),
        work: m.get_one::<PathBuf>("work").cloned(),
        host_usr: m.get_flag("host-usr"),
        mounts: mounts.into_iter().map(|(_, m)| m).collect(),
        setenv,
        chdir: m.get_one::<String>("chdir").cloned(),
        hostname: m.get_one::<String>("hostname").cloned(),
        user,
        userns: m.get_flag("userns"),
        subids: m.get_flag("subids") || m.contains_id("subids-base"),
        subids_base: m.get_one::<u64>("subids-base").copied(),
        net: m
            .get_one::<String>("iface")
            .map(|i| format!("macvlan:{i}"))
            .or_else(|| m.get_one::<String>("net").cloned()),
        ip: m.get_one::<String>("ip").cloned(),
        gateway: m.get_one::<String>("gateway").cloned(),
        cap_add: m.get_many::<String>("cap-add").map(|v| v.cloned().collect()).unwrap_or_default(),
        pass_fds: m.get_many::<i32>("pass-fd").map(|v| v.copied().collect()).unwrap_or_default(),
        json_status: m.get_one::<i32>("json-status").copied(),
        json_log: m.get_flag("json-log"),
        stdout_file: m.get_one::<PathBuf>("stdout").cloned(),
        stderr_file: m.get_one::<PathBuf>("stderr").cloned(),
        timeout: m.get_one::<Duration>("timeout").copied(),
        kill_after: m.get_one::<Duration>("kill-after").copied(),
        memory: m
            .get_one::<String>("memory")
            .cloned()
            .or_else(|| m.get_one::<u64>("memory-mb").map(|mb| format!("{mb}M"))),
        pids: m.get_one::<u64>("pids").copied(),
        cpus: m.get_one::<f64>("cpus").copied(),
        rlimits: m.get_many::<String>("rlimit").map(|v| v.cloned().collect()).unwrap_or_default(),
        seccomp: m.get_one::<String>("seccomp").cloned(),
        allow_userns: m.get_flag("allow-userns"),
        allow_setuid_files: m.get_flag("allow-setuid-files"),
        seccomp_fds: m.get_one::<i32>("seccomp-fd").copied().into_iter().collect(),
        die_with_parent: m.get_flag("die-with-parent"),
        join: m.get_one::<i32>("join").copied(),
        dry_run: m.get_flag("dry-run"),
        no_pty: m.get_flag("no-pty"),
        command,
        bwrap: false,
        env_base: None,
        unsetenv: Vec::new(),
        info_fd: None,
        as_pid_1: m.get_flag("as-pid-1"),
        stop_signal: m.get_one::<i32>("stop-signal").copied(),
        sysfs: m.get_flag("sysfs"),
        net_sysctls_rw: m.get_flag("net-sysctls-rw"),
        proc_unmasked: m.get_flag("proc-unmasked"),
        delegate_cgroup: m.get_flag("delegate-cgroup"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(args: &[&str]) -> Request {
        let mut v = vec!["ljspawn"];
        v.extend_from_slice(args);
        request(&command().try_get_matches_from(v).expect("parses"))
    }

    #[test]
    fn mounts_keep_command_line_order() {
        let r = req(&[
            "--tmpfs",
            "/a",
            "--ro-bind",
            "/s",
            "/b",
            "--bind",
            "/t",
            "/c",
            "--tmpfs",
            "/d",
            "--symlink",
            "x",
            "/e",
            "--dir",
            "/f",
            "--file",
            "7",
            "/g",
            "true",
        ]);
        let dests: Vec<&str> = r
            .mounts
            .iter()
            .map(|m| match m {
                MountReq::Bind { dest, .. }
                | MountReq::Tmpfs { dest }
                | MountReq::Symlink { dest, .. }
                | MountReq::Dir { dest, .. }
                | MountReq::File { dest, .. } => dest.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(dests, ["/a", "/b", "/c", "/d", "/e", "/f", "/g"]);
        assert_eq!(r.mounts[6], MountReq::File { fd: 7, dest: "/g".into(), mode: None });
        assert_eq!(r.command, ["true"]);
    }

    #[test]
    fn fast_path_is_claps_parse() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(b"/w\xff".to_vec());
        let os = |args: &[&str]| args.iter().map(OsString::from).collect::<Vec<_>>();
        let with = |mut args: Vec<OsString>, at: usize, w: OsString| {
            args.insert(at, w);
            args
        };
        // (arguments after argv[0], whether the fast path takes them)
        let mut cases: Vec<(Vec<OsString>, bool)> = [
            (&["--root", "/w", "--", "/bin/true"][..], true),
            (&["-d", "/w", "--", "/bin/true"], true),
            (&["--rw", "--root", "/w", "--", "sh", "-c", "echo hi"], true),
            (&["--root", "/w", "--rw", "--", "x"], true),
            (&["--layer", "/a", "--", "x"], true),
            (&["--layer", "/a", "--layer", "/b", "--root", "/c", "--layer", "/d", "--", "x"], true),
            (&["--layer", "/a", "--layer", "/a", "--", "x"], true),
            (&["--rw", "--", "x"], true),
            (&["--", "x"], true),
            (&["--root", "w=1", "--", "x", "", "y"], true),
            (&["--root", "/a b/ü", "--", "-x"], true),
            // After `--` every word is the command's, options and a second `--` too.
            (
                &[
                    "--root",
                    "/w",
                    "--",
                    "ls",
                    "-l",
                    "--root",
                    "/x",
                    "--rw",
                    "-h",
                    "--help",
                    "--version",
                    "--",
                    "-d",
                ],
                true,
            ),
            (&[], false),
            (&["--root", "/w"], false),
            (&["--root", "/w", "true"], false),
            (&["--root", "/w", "--"], false),
            (&["--root", "/w", "--", ""], false),
            (&["--root=/w", "--", "x"], false),
            (&["--layer=/w", "--", "x"], false),
            (&["-d/w", "--", "x"], false),
            (&["-d=/w", "--", "x"], false),
            (&["--root", "/a", "--root", "/b", "--", "x"], false),
            (&["-d", "/a", "--root", "/b", "--", "x"], false),
            (&["--root", "/a", "-d", "/a", "--", "x"], false),
            (&["--rw", "--rw", "--", "x"], false),
            (&["--root", "", "--", "x"], false),
            (&["--layer", "", "--", "x"], false),
            (&["--root", "-", "--", "x"], false),
            (&["--root", "--rw", "--", "x"], false),
            (&["--root", "--", "x"], false),
            (&["--layer", "--", "x"], false),
            (&["--root"], false),
            (&["--layer"], false),
            (&["-h"], false),
            (&["--help"], false),
            (&["-V"], false),
            (&["--version"], false),
            (&["--root", "/w", "--help", "--", "x"], false),
            (&["--root", "/w", "--tmpfs", "/t", "--", "x"], false),
            (&["--root", "/w", "--dry-run", "--", "x"], false),
            (&["--root", "/w", "-0", "--", "x"], false),
            (&["--root", "/w", "--idmap-layer", "/l", "--", "x"], false),
            (&["--ro", "/w", "--", "x"], false),
            (&["--RW", "--", "x"], false),
            (&["--bwrap", "--", "x"], false),
        ]
        .iter()
        .map(|(a, ok)| (os(a), *ok))
        .collect();
        let base = os(&["--root", "/w", "--", "x", "y"]);
        for at in [0, 1, 3, 4] {
            cases.push((with(base.clone(), at + 1, bad()), false));
            let mut v = base.clone();
            v[at] = bad();
            cases.push((v, false));
        }
        for (args, takes) in cases {
            let fast = fast_request(&args);
            let clap = command().try_get_matches_from(std::iter::once("ljspawn".into()).chain(args.clone()));
            if takes {
                let clap = request(&clap.unwrap_or_else(|e| panic!("{args:?}: clap refuses: {e}")));
                assert_eq!(fast.as_ref(), Some(&clap), "{args:?}");
            } else {
                assert_eq!(fast, None, "{args:?}");
            }
        }
        // The table holds what the fast path must get right.
        let r = fast_request(&os(&["--layer", "/a", "--root", "/r", "--layer", "/b", "--rw", "--", "x"]))
            .unwrap();
        assert_eq!(
            (r.root, r.rw, r.layers, r.idmap),
            (Some("/r".into()), true, vec!["/a".into(), "/b".into()], vec![false; 2])
        );
    }

    #[test]
    fn stop_signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("RTMIN+3"), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(parse_signal("SIGRTMIN"), Ok(libc::SIGRTMIN()));
        assert_eq!(parse_signal("9"), Ok(9));
        for bad in ["", "0", "RTMIN+", "RTMIN-1", "BOGUS", "1000"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
        let r = req(&["--as-pid-1", "--sysfs", "--delegate-cgroup", "--stop-signal", "RTMIN+3", "init"]);
        assert!(r.as_pid_1 && r.sysfs && r.delegate_cgroup);
        assert_eq!(r.stop_signal, Some(libc::SIGRTMIN() + 3));
    }

    #[test]
    fn command_after_double_dash_may_look_like_an_option() {
        let r = req(&["--root", "/w", "--", "--bind", "x"]);
        assert_eq!(r.command, ["--bind", "x"]);
        assert!(r.mounts.is_empty());
    }

    #[test]
    fn options_stop_at_the_command() {
        let r = req(&["-d", "/w", "ls", "-l", "--tmpfs", "/x"]);
        assert_eq!(r.command, ["ls", "-l", "--tmpfs", "/x"]);
        assert!(r.mounts.is_empty());
    }

    #[test]
    fn lightjail_form() {
        let r = req(&["-d", "/w", "-p", "echo hi", "-n", "box", "-0"]);
        assert_eq!(r.command, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(r.hostname.as_deref(), Some("box"));
        assert_eq!(r.user, Some((65534, Some(65534))));
    }

    #[test]
    fn lightjail_j_is_json_on_stderr() {
        assert!(req(&["-d", "/w", "-j", "-p", "true"]).json_log);
        assert!(command().try_get_matches_from(["ljspawn", "-j", "--json-status", "5", "true"]).is_err());
    }

    #[test]
    fn setenv_pairs_and_user() {
        let r = req(&["--setenv", "A", "-1", "--setenv", "B", "", "--user", "5:6", "true"]);
        assert_eq!(r.setenv, [("A".to_string(), "-1".to_string()), ("B".to_string(), String::new())]);
        assert_eq!(r.user, Some((5, Some(6))));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(command().try_get_matches_from(["ljspawn", "--user", "x", "true"]).is_err());
        assert!(command().try_get_matches_from(["ljspawn", "--timeout", "5y", "true"]).is_err());
        assert!(command().try_get_matches_from(["ljspawn", "--frobnicate", "true"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("s").is_err());
    }
}
