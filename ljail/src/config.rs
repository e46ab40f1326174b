//! The jail's config file, `ROOT/jails/NAME/config`.
//!
//! One setting per line: a key, then its values, separated by blanks. A value with blanks or
//! quotes is quoted as in a POSIX shell (`'...'`, `"..."` with `\"` `\\` `\$` escapes, or a
//! backslash before one character). `#` at the start of a word starts a comment; blank lines
//! are ignored. Keys are ljspawn's option names without the dashes. Unknown keys, a repeated
//! key that may appear once, a wrong number of values or a bad value are errors naming the
//! line; nothing is ignored.
//!
//! ```text
//! image web/nginx@1.2.3         # the image (exact version), or: world NAME
//! root thin                     # thin: a persistent upper over the image; copy: a full copy
//! init yes                      # the command is the jail's own init (e.g. systemd) as PID 1
//! docker yes                    # what podman or dockerd inside need (the --docker profile)
//! command /bin/httpd -f -p 80   # what the jail runs (required)
//! hostname web                  # default: the jail's name
//! net bridge:br0                # none (default), host, bridge:BR, macvlan:IFACE
//! ip 10.0.0.2/24                # bridge and macvlan only; without it, DHCP (the jail's own client)
//! gateway 10.0.0.1
//! bind /srv/web /data           # also: ro-bind SRC DEST, dev-bind SRC DEST, tmpfs DEST
//! setenv LANG C.UTF-8
//! chdir /data
//! user 1000:1000
//! memory 512M                   # also: pids N, cpus FRACTION, rlimit NAME=SOFT[:HARD]
//! gpu nvidia                    # the host's GPU devices (nvidia, intel, amd); NVIDIA's libraries
//! cap-add CAP_NET_RAW           # kept in the jail's own user namespace (root: on the host); also: allow-userns yes
//! proc-unmasked yes             # /proc without masks, for nested jails (not root's; default: init/docker jails of users)
//! restart on-failure            # no (default), on-failure, always
//! restart-delay 1s              # between restarts (default 1s)
//! restart-max 5                 # give up after this many restarts (0: never; default 0)
//! stop-timeout 10s              # SIGTERM, then SIGKILL after this long (default 10s)
//! autostart yes                 # started by `ljail start --all` (default no)
//! priority 10                   # boot order of --all: lower first (default 50)
//! ```

use std::fmt;
use std::time::Duration;

use ljbuild::spawn::shell_quote;
use ljbuild::store::OverlayName;

/// A config error: the line (1-based; 0 when the file as a whole is wrong) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The line, 1-based; 0 for the whole file.
    pub line: usize,
    /// What is wrong, one line.
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.msg)
        } else {
            write!(f, "line {}: {}", self.line, self.msg)
        }
    }
}

/// What the jail stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A published image (overlay) at an exact version.
    Image {
        /// `NAMESPACE/NAME`.
        name: OverlayName,
        /// The exact version.
        version: String,
    },
    /// A world under `ROOT/worlds`.
    World(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Image { name, version } => write!(f, "image {name}@{version}"),
            Source::World(w) => write!(f, "world {w}"),
        }
    }
}

/// Thin (persistent upper over the layers) or a full copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// `upper/` and `work/` over the image's layers.
    Thin,
    /// `rootfs/`, a full copy, mounted read-write.
    Copy,
}

impl RootKind {
    /// `thin` or `copy`.
    pub fn as_str(self) -> &'static str {
        match self {
            RootKind::Thin => "thin",
            RootKind::Copy => "copy",
        }
    }
}

/// The restart policy of the supervisor (defined with it, in `ljail-supervisor`).
pub use ljail_supervisor::Restart;

/// A mount, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// `bind SRC DEST`.
    Bind(String, String),
    /// `ro-bind SRC DEST`.
    RoBind(String, String),
    /// `dev-bind SRC DEST`.
    DevBind(String, String),
    /// `tmpfs DEST`.
    Tmpfs(String),
}

/// `private-users`: how a root jail's user namespace maps its ids 0-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateUsers {
    /// `private-users no`: the same host ids (the jail's root is host root; no boundary).
    No,
    /// `private-users BASE`: host ids BASE..BASE+65535 (ljspawn `--subids-base`).
    Base(u32),
}

/// The first and the end of the ranges `private-users pick` chooses from: 0x24000000-0x6FFF0000,
/// 65536-aligned (systemd-nspawn's `--private-users=pick` starts at 0x00080000; this starts
/// above useradd's default SUB_UID_MAX and SUB_GID_MAX, 600100000, plus a range of 65536,
/// so the subordinate ranges `useradd` gives later users cannot cover a jail's).
pub const PICK_MIN: u32 = 0x2400_0000;
/// (See [`PICK_MIN`].)
pub const PICK_END: u32 = 0x6fff_0000;

/// A `private-users BASE` value: a multiple of 65536, at least 65536, BASE+65536 below
/// 2^32-1 (ljspawn's rule for `--subids-base`).
pub fn check_private_base(v: &str) -> Result<u32, String> {
    match v.parse::<u64>() {
        Ok(b) if b >= 65536 && b.is_multiple_of(65536) && b + 65536 < u64::from(u32::MAX) => Ok(b as u32),
        _ => Err(format!(
            "expected no or a host id BASE, a multiple of 65536 from 65536 up (BASE+65536 below 4294967295), not '{v}'"
        )),
    }
}

/// A parsed config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// What it stands on.
    pub source: Source,
    /// Thin or copy.
    pub root: RootKind,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// `setenv VAR VALUE`.
    pub setenv: Vec<(String, String)>,
    /// `chdir DIR`.
    pub chdir: Option<String>,
    /// `user UID[:GID]`.
    pub user: Option<String>,
    /// `hostname NAME` (default: the jail's name).
    pub hostname: Option<String>,
    /// `net MODE` (default none).
    pub net: Option<String>,
    /// `ip ADDR/PREFIX`.
    pub ip: Option<String>,
    /// `gateway GW`.
    pub gateway: Option<String>,
    /// `memory SIZE`.
    pub memory: Option<String>,
    /// `pids N`.
    pub pids: Option<String>,
    /// `cpus FRACTION`.
    pub cpus: Option<String>,
    /// `rlimit NAME=SOFT[:HARD]`, repeated.
    pub rlimits: Vec<String>,
    /// `cap-add CAP`, repeated.
    pub cap_add: Vec<String>,
    /// `allow-userns yes`.
    pub allow_userns: bool,
    /// `gpu nvidia|intel|amd`: the host's GPU devices (and NVIDIA's user-space files).
    pub gpu: Option<String>,
    /// `init yes`: the command is the jail's own init (systemd), run as its PID 1.
    pub init: bool,
    /// `docker yes`: what podman or dockerd in the jail need (see `jail::ljspawn_args`).
    pub docker: bool,
    /// `proc-unmasked yes`: ljspawn's `--proc-unmasked` (nested jails can mount a proc).
    pub proc_unmasked: bool,
    /// `private-users BASE|no` (root's jails): None without the key, which is `no`'s mapping.
    pub private_users: Option<PrivateUsers>,
    /// The restart policy.
    pub restart: Restart,
    /// Delay between restarts.
    pub restart_delay: Duration,
    /// Restarts before giving up (0: no limit).
    pub restart_max: u32,
    /// Grace period of `stop`.
    pub stop_timeout: Duration,
    /// Started by `start --all`.
    pub autostart: bool,
    /// Boot order of `start --all` (lower first).
    pub priority: i32,
}

/// Defaults.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(1);
/// Default `stop-timeout`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `priority`.
pub const DEFAULT_PRIORITY: i32 = 50;

impl Config {
    /// A config with defaults for everything but what it stands on and runs.
    pub fn new(source: Source, command: Vec<String>) -> Config {
        Config {
            source,
            root: RootKind::Thin,
            command,
            mounts: Vec::new(),
            setenv: Vec::new(),
            chdir: None,
            user: None,
            hostname: None,
            net: None,
            ip: None,
            gateway: None,
            memory: None,
            pids: None,
            cpus: None,
            rlimits: Vec::new(),
            cap_add: Vec::new(),
            allow_userns: false,
            gpu: None,
            init: false,
            docker: false,
            proc_unmasked: false,
            private_users: None,
            restart: Restart::No,
            restart_delay: DEFAULT_RESTART_DELAY,
            restart_max: 0,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            autostart: false,
            priority: DEFAULT_PRIORITY,
        }
    }

    /// A bridge or macvlan without an address: the jail's own DHCP client configures eth0.
    pub fn dhcp(&self) -> bool {
        self.ip.is_none()
            && (self.net_mode().starts_with("bridge:") || self.net_mode().starts_with("macvlan:"))
    }

    /// `private-users BASE`: the jail's host id range starts at BASE.
    pub fn private_base(&self) -> Option<u32> {
        match self.private_users {
            Some(PrivateUsers::Base(b)) => Some(b),
            _ => None,
        }
    }

    /// The network mode (`none` unless set).
    pub fn net_mode(&self) -> &str {
        self.net.as_deref().unwrap_or("none")
    }

    /// The file's text: a header, then one line per setting (defaults left out).
    pub fn to_text(&self) -> String {
        self.text_checked().0
    }

    /// A value with a control character (a newline, a tab, an escape...), which neither the
    /// config file nor a systemd unit may hold: its key and the value.
    pub fn control_char(&self) -> Option<(String, String)> {
        self.text_checked().1
    }

    fn text_checked(&self) -> (String, Option<(String, String)>) {
        let mut out = String::from(
            "# ljail jail config: KEY VALUE... per line, values quoted as in sh (see README.md, ljail)\n",
        );
        let mut bad: Option<(String, String)> = None;
        let mut line = |key: &str, vals: &[&str]| {
            out.push_str(key);
            for v in vals {
                if bad.is_none() && v.chars().any(char::is_control) {
                    bad = Some((key.to_string(), v.to_string()));
                }
                out.push(' ');
                out.push_str(&shell_quote(v.as_ref()));
            }
            out.push('\n');
        };
        match &self.source {
            Source::Image { name, version } => line("image", &[&format!("{name}@{version}")]),
            Source::World(w) => line("world", &[w]),
        }
        line("root", &[self.root.as_str()]);
        if self.init {
            line("init", &["yes"]);
        }
        if self.docker {
            line("docker", &["yes"]);
        }
        if self.proc_unmasked {
            line("proc-unmasked", &["yes"]);
        }
        match self.private_users {
            Some(PrivateUsers::Base(b)) => line("private-users", &[&b.to_string()]),
            Some(PrivateUsers::No) => line("private-users", &["no"]),
            None => {}
        }
        let cmd: Vec<&str> = self.command.iter().map(String::as_str).collect();
        line("command", &cmd);
        let opt = |k: &str, v: &Option<String>, line: &mut dyn FnMut(&str, &[&str])| {
            if let Some(v) = v {
                line(k, &[v]);
            }
        };
        opt("hostname", &self.hostname, &mut line);
        opt("net", &self.net, &mut line);
        opt("ip", &self.ip, &mut line);
        opt("gateway", &self.gateway, &mut line);
        for m in &self.mounts {
            match m {
                Mount::Bind(s, d) => line("bind", &[s, d]),
                Mount::RoBind(s, d) => line("ro-bind", &[s, d]),
                Mount::DevBind(s, d) => line("dev-bind", &[s, d]),
                Mount::Tmpfs(d) => line("tmpfs", &[d]),
            }
        }
        for (k, v) in &self.setenv {
            line("setenv", &[k, v]);
        }
        opt("chdir", &self.chdir, &mut line);
        opt("user", &self.user, &mut line);
        opt("memory", &self.memory, &mut line);
        opt("pids", &self.pids, &mut line);
        opt("cpus", &self.cpus, &mut line);
        for r in &self.rlimits {
            line("rlimit", &[r]);
        }
        for c in &self.cap_add {
            line("cap-add", &[c]);
        }
        if self.allow_userns {
            line("allow-userns", &["yes"]);
        }
        opt("gpu", &self.gpu, &mut line);
        line("restart", &[self.restart.as_str()]);
        if self.restart_delay != DEFAULT_RESTART_DELAY {
            line("restart-delay", &[&humantime::format_duration(self.restart_delay).to_string()]);
        }
        if self.restart_max != 0 {
            line("restart-max", &[&self.restart_max.to_string()]);
        }
        if self.stop_timeout != DEFAULT_STOP_TIMEOUT {
            line("stop-timeout", &[&humantime::format_duration(self.stop_timeout).to_string()]);
        }
        line("autostart", &[if self.autostart { "yes" } else { "no" }]);
        if self.priority != DEFAULT_PRIORITY {
            line("priority", &[&self.priority.to_string()]);
        }
        (out, bad)
    }
}

/// Every key, for the "expected one of" hint.
pub const KEYS: &[&str] = &[
    "image",
    "world",
    "root",
    "init",
    "docker",
    "proc-unmasked",
    "private-users",
    "command",
    "hostname",
    "net",
    "ip",
    "gateway",
    "bind",
    "ro-bind",
    "dev-bind",
    "tmpfs",
    "setenv",
    "chdir",
    "user",
    "memory",
    "pids",
    "cpus",
    "rlimit",
    "cap-add",
    "allow-userns",
    "gpu",
    "restart",
    "restart-delay",
    "restart-max",
    "stop-timeout",
    "autostart",
    "priority",
];

/// Keys that may appear more than once.
const REPEATABLE: &[&str] = &["bind", "ro-bind", "dev-bind", "tmpfs", "setenv", "rlimit", "cap-add"];

/// Splits one line into words (shell quoting; `#` at the start of a word ends the line).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) if c.is_control() => return Err(format!("control character {:?}", c)),
                        Some(c) => cur.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) if c.is_control() => return Err(format!("control character {:?}", c)),
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) if c.is_control() => return Err(format!("control character {:?}", c)),
                        Some(c) => cur.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) if c.is_control() => return Err(format!("control character {:?}", c)),
                    Some(c) => cur.push(c),
                    None => return Err("a backslash at the end of the line".into()),
                }
            }
            c if c.is_control() => return Err(format!("control character {:?}", c)),
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Parses a config file's text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    let mut source: Option<(Source, usize)> = None;
    let mut command: Option<Vec<String>> = None;
    let mut c = Config::new(Source::World(String::new()), Vec::new());
    let mut ip_line = 0;
    let mut gw_line = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let err = |msg: String| ConfigError { line: n, msg };
        let words = split_words(raw).map_err(err)?;
        let Some((key, vals)) = words.split_first() else { continue };
        let Some(&key) = KEYS.iter().find(|k| **k == key.as_str()) else {
            return Err(err(format!("unknown key '{key}' (expected one of: {})", KEYS.join(", "))));
        };
        if !REPEATABLE.contains(&key) {
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(err(format!("'{key}' repeated (first on line {first})")));
            }
            seen.push((key, n));
        }
        let want = |count: usize, what: &str| -> Result<(), ConfigError> {
            if vals.len() == count {
                Ok(())
            } else {
                Err(err(format!(
                    "'{key}' takes {count} value{} ({what}), got {}",
                    if count == 1 { "" } else { "s" },
                    vals.len()
                )))
            }
        };
        let one = |what: &str| -> Result<String, ConfigError> {
            want(1, what)?;
            Ok(vals[0].clone())
        };
        let bad = |v: &str, why: &str| err(format!("bad {key} '{v}': {why}"));
        match key {
            "image" | "world" => {
                let v = one(if key == "image" { "NAMESPACE/NAME@VERSION" } else { "NAME" })?;
                if let Some((_, first)) = &source {
                    return Err(err(format!(
                        "'{key}' conflicts with the source on line {first} (give one image or world)"
                    )));
                }
                let s = if key == "image" {
                    let (name, ver) = v.split_once('@').ok_or_else(|| bad(&v, "no @VERSION"))?;
                    let name = OverlayName::parse(name).map_err(|e| bad(&v, &e))?;
                    ljbuild::version::validate(ver).map_err(|e| bad(&v, &e))?;
                    Source::Image { name, version: ver.to_string() }
                } else {
                    jailfile_world(&v).map_err(|e| bad(&v, &e))?;
                    Source::World(v)
                };
                source = Some((s, n));
            }
            "root" => {
                c.root = match one("thin or copy")?.as_str() {
                    "thin" => RootKind::Thin,
                    "copy" => RootKind::Copy,
                    v => return Err(bad(v, "expected thin or copy")),
                }
            }
            "command" => {
                if vals.is_empty() {
                    return Err(err("'command' needs the program (and its arguments)".into()));
                }
                command = Some(vals.to_vec());
            }
            "hostname" => {
                let v = one("NAME")?;
                check_hostname(&v).map_err(|e| bad(&v, &e))?;
                c.hostname = Some(v);
            }
            "net" => {
                let v = one("none, host, bridge:BR or macvlan:IFACE")?;
                check_net(&v).map_err(|e| bad(&v, &e))?;
                c.net = Some(v);
            }
            "ip" => {
                let v = one("ADDR/PREFIX")?;
                check_ip(&v, true).map_err(|e| bad(&v, &e))?;
                c.ip = Some(v);
                ip_line = n;
            }
            "gateway" => {
                let v = one("ADDR")?;
                check_ip(&v, false).map_err(|e| bad(&v, &e))?;
                c.gateway = Some(v);
                gw_line = n;
            }
            "bind" | "ro-bind" | "dev-bind" => {
                want(2, "SRC DEST")?;
                check_abs(&vals[0]).map_err(|e| bad(&vals[0], &e))?;
                check_abs(&vals[1]).map_err(|e| bad(&vals[1], &e))?;
                let (s, d) = (vals[0].clone(), vals[1].clone());
                c.mounts.push(match key {
                    "bind" => Mount::Bind(s, d),
                    "ro-bind" => Mount::RoBind(s, d),
                    _ => Mount::DevBind(s, d),
                });
            }
            "tmpfs" => {
                let v = one("DEST")?;
                check_abs(&v).map_err(|e| bad(&v, &e))?;
                c.mounts.push(Mount::Tmpfs(v));
            }
            "setenv" => {
                want(2, "VAR VALUE")?;
                let var = &vals[0];
                let ok = var.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(bad(var, "a variable name is letters, digits and _"));
                }
                c.setenv.push((var.clone(), vals[1].clone()));
            }
            "chdir" => {
                let v = one("DIR")?;
                check_abs(&v).map_err(|e| bad(&v, &e))?;
                c.chdir = Some(v);
            }
            "user" => {
                let v = one("UID[:GID]")?;
                let ok = v.split(':').count() <= 2
                    && v.split(':')
                        .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()));
                if !ok {
                    return Err(bad(&v, "expected UID or UID:GID (numbers)"));
                }
                c.user = Some(v);
            }
            "memory" => {
                let v = one("SIZE")?;
                check_size(&v).map_err(|e| bad(&v, &e))?;
                c.memory = Some(v);
            }
            "pids" => {
                let v = one("N")?;
                match v.parse::<u64>() {
                    Ok(n) if n > 0 => c.pids = Some(v),
                    _ => return Err(bad(&v, "expected a number of processes, at least 1")),
                }
            }
            "cpus" => {
                let v = one("FRACTION")?;
                match v.parse::<f64>() {
                    Ok(f) if f > 0.0 && f.is_finite() => c.cpus = Some(v),
                    _ => return Err(bad(&v, "expected a positive number of CPUs (0.5 is half a core)")),
                }
            }
            "rlimit" => {
                let v = one("NAME=SOFT[:HARD]")?;
                let ok = v.split_once('=').is_some_and(|(name, lim)| {
                    !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_lowercase())
                        && lim.split(':').count() <= 2
                        && lim.split(':').all(|p| p == "unlimited" || p.parse::<u64>().is_ok())
                });
                if !ok {
                    return Err(bad(&v, "expected NAME=SOFT[:HARD], e.g. nofile=1024:4096"));
                }
                c.rlimits.push(v);
            }
            "cap-add" => {
                let v = one("CAP")?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(bad(&v, "expected a capability name, e.g. CAP_NET_RAW"));
                }
                c.cap_add.push(v);
            }
            "gpu" => {
                let v = one("nvidia, intel or amd")?;
                crate::gpu::check_vendor(&v).map_err(err)?;
                c.gpu = Some(v);
            }
            "allow-userns" => c.allow_userns = yes_no(&one("yes or no")?).map_err(&err)?,
            "init" => c.init = yes_no(&one("yes or no")?).map_err(&err)?,
            "docker" => c.docker = yes_no(&one("yes or no")?).map_err(&err)?,
            "proc-unmasked" => c.proc_unmasked = yes_no(&one("yes or no")?).map_err(&err)?,
            "private-users" => {
                let v = one("BASE or no")?;
                c.private_users = Some(match v.as_str() {
                    "no" => PrivateUsers::No,
                    _ => PrivateUsers::Base(check_private_base(&v).map_err(&err)?),
                });
            }
            "autostart" => c.autostart = yes_no(&one("yes or no")?).map_err(&err)?,
            "restart" => {
                let v = one("no, on-failure or always")?;
                c.restart = Restart::parse(&v).map_err(err)?;
            }
            "restart-delay" | "stop-timeout" => {
                let v = one("DURATION")?;
                let d = humantime::parse_duration(&v).map_err(|e| bad(&v, &e.to_string()))?;
                if key == "restart-delay" {
                    c.restart_delay = d;
                } else {
                    c.stop_timeout = d;
                }
            }
            "restart-max" => {
                let v = one("N")?;
                c.restart_max = v.parse().map_err(|_| bad(&v, "expected a number (0: no limit)"))?;
            }
            "priority" => {
                let v = one("N")?;
                match v.parse::<i32>() {
                    Ok(p) if (0..=999).contains(&p) => c.priority = p,
                    _ => return Err(bad(&v, "expected a number from 0 to 999")),
                }
            }
            _ => unreachable!("every key in KEYS is handled"),
        }
    }
    let whole = |msg: &str| ConfigError { line: 0, msg: msg.into() };
    let (src, _) = source.ok_or_else(|| whole("no 'image' or 'world' line (what the jail stands on)"))?;
    c.source = src;
    c.command = command.ok_or_else(|| whole("no 'command' line (what the jail runs)"))?;
    let bridged = c.net.as_deref().is_some_and(|n| n.starts_with("bridge:") || n.starts_with("macvlan:"));
    if !bridged {
        for (l, k) in [(ip_line, "ip"), (gw_line, "gateway")] {
            if l != 0 {
                return Err(ConfigError {
                    line: l,
                    msg: format!("'{k}' needs 'net bridge:BR' or 'net macvlan:IFACE'"),
                });
            }
        }
    } else if ip_line == 0 && gw_line != 0 {
        // Without an address the jail's own DHCP client configures eth0, routes included.
        return Err(ConfigError {
            line: gw_line,
            msg: "'gateway' needs an 'ip ADDR/PREFIX' line (without one, DHCP gives the route)".into(),
        });
    }
    Ok(c)
}

fn yes_no(v: &str) -> Result<bool, String> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("expected yes or no, not '{v}'")),
    }
}

fn jailfile_world(v: &str) -> Result<(), String> {
    if v == "default" || v.starts_with('.') || v.contains('/') || v.is_empty() {
        return Err(
            "a world is a name under ROOT/worlds (not 'default', no '/', not starting with '.')".into()
        );
    }
    if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err("a world name is ASCII letters, digits, '.', '_' and '-'".into());
    }
    Ok(())
}

/// A jail path: absolute, no `..`, no NUL.
fn check_abs(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err("a path here is absolute".into());
    }
    if p.split('/').any(|c| c == "..") {
        return Err("a path here has no '..'".into());
    }
    Ok(())
}

/// A host name: 1 to 64 of `[A-Za-z0-9.-]`, not starting with `-` or `.`.
pub fn check_hostname(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !h.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err("a host name is 1-64 ASCII letters, digits, '-' and '.', not starting with '-' or '.'".into())
    }
}

/// `none`, `host`, `bridge:BR`, `macvlan:IFACE`.
pub fn check_net(n: &str) -> Result<(), String> {
    let iface = |i: &str| {
        !i.is_empty() && i.len() <= 15 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    match n.split_once(':') {
        None if n == "none" || n == "host" => Ok(()),
        Some(("bridge" | "macvlan", i)) if iface(i) => Ok(()),
        _ => Err(
            "expected none, host, bridge:BR or macvlan:IFACE (an interface name of at most 15 characters)"
                .into(),
        ),
    }
}

fn check_ip(v: &str, prefix_ok: bool) -> Result<(), String> {
    let (addr, prefix) = match v.split_once('/') {
        Some((a, p)) if prefix_ok => (a, Some(p)),
        Some(_) => return Err("expected an IPv4 address without /PREFIX".into()),
        None => (v, None),
    };
    addr.parse::<std::net::Ipv4Addr>().map_err(|_| "expected an IPv4 address".to_string())?;
    if let Some(p) = prefix {
        match p.parse::<u8>() {
            Ok(p) if (1..=32).contains(&p) => {}
            _ => return Err("the prefix is 1 to 32".into()),
        }
    }
    Ok(())
}

fn check_size(v: &str) -> Result<(), String> {
    let digits = v.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix = v.len() - digits.len();
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && suffix <= 1 => Ok(()),
        _ => Err("expected a size such as 512M or 2G".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(cmd: &[&str]) -> Config {
        Config::new(Source::World("busybox".into()), cmd.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn words() {
        assert_eq!(split_words("a  b\tc # x").unwrap(), ["a", "b", "c"]);
        assert_eq!(split_words("a 'b c' \"d \\\" e\" f\\ g").unwrap(), ["a", "b c", "d \" e", "f g"]);
        assert_eq!(split_words("'it'\\''s' ''").unwrap(), ["it's", ""]);
        assert_eq!(split_words("a#b").unwrap(), ["a#b"]);
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \\").is_err());
        // Control characters: refused everywhere, escaped too.
        for bad in ["a\x1bb", "'a\x1bb'", "\"a\x1bb\"", "a\\\x1bb", "\"a\\\x1bb\"", "a\\\tb", "\"a\\\rb\""] {
            assert!(split_words(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trip() {
        let mut c = world(&["/bin/sh", "-c", "echo 'hi there' > /x; sleep 1"]);
        c.net = Some("bridge:br0".into());
        c.ip = Some("10.0.0.2/24".into());
        c.gateway = Some("10.0.0.1".into());
        c.mounts = vec![Mount::Bind("/srv/a b".into(), "/data".into()), Mount::Tmpfs("/run".into())];
        c.setenv = vec![("X".into(), "a \"b\" $c".into())];
        c.restart = Restart::OnFailure;
        c.restart_delay = Duration::from_millis(200);
        c.restart_max = 3;
        c.autostart = true;
        c.priority = 10;
        c.init = true;
        c.docker = true;
        c.rlimits = vec!["nofile=64:128".into()];
        let text = c.to_text();
        assert_eq!(parse(&text).unwrap(), c, "{text}");
        let img = Config::new(
            Source::Image { name: OverlayName::parse("web/app").unwrap(), version: "1.2.3".into() },
            vec!["/bin/true".into()],
        );
        assert_eq!(parse(&img.to_text()).unwrap(), img);
    }

    #[test]
    fn errors_name_the_line() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e("world busybox\ncommand /bin/true\nfoo bar\n"),
            format!("line 3: unknown key 'foo' (expected one of: {})", KEYS.join(", "))
        );
        assert_eq!(
            e("world busybox\ncommand /bin/true\nnet host\nnet none"),
            "line 4: 'net' repeated (first on line 3)"
        );
        assert_eq!(e("world a\nworld b\ncommand x"), "line 2: 'world' repeated (first on line 1)");
        assert_eq!(
            e("world a\nimage a/b@1\ncommand x"),
            "line 2: 'image' conflicts with the source on line 1 (give one image or world)"
        );
        assert_eq!(e("world a\ncommand x\nbind /a"), "line 3: 'bind' takes 2 values (SRC DEST), got 1");
        assert_eq!(e("world a\ncommand x\nbind a /b"), "line 3: bad bind 'a': a path here is absolute");
        assert_eq!(e("world a\ncommand x\nnet bridge"), "line 3: bad net 'bridge': expected none, host, bridge:BR or macvlan:IFACE (an interface name of at most 15 characters)");
        assert_eq!(
            e("world a\ncommand x\nip 10.0.0.2/24"),
            "line 3: 'ip' needs 'net bridge:BR' or 'net macvlan:IFACE'"
        );
        assert!(parse("world a\ncommand x\nnet bridge:br0").unwrap().dhcp());
        assert_eq!(
            e("world a\ncommand x\nnet bridge:br0\ngateway 10.0.0.1"),
            "line 4: 'gateway' needs an 'ip ADDR/PREFIX' line (without one, DHCP gives the route)"
        );
        assert_eq!(
            e("world a\ncommand x\nrestart sometimes"),
            "line 3: bad restart policy 'sometimes' (expected no, on-failure or always)"
        );
        assert_eq!(e("world a\ncommand 'x"), "line 2: unterminated ' quote");
        assert_eq!(e("command x"), "no 'image' or 'world' line (what the jail stands on)");
        assert_eq!(e("world a"), "no 'command' line (what the jail runs)");
        assert_eq!(e("image a/b\ncommand x"), "line 1: bad image 'a/b': no @VERSION");
        assert_eq!(
            e("world a\ncommand x\nmemory lots"),
            "line 3: bad memory 'lots': expected a size such as 512M or 2G"
        );
        assert_eq!(e("world a\ncommand x\nautostart maybe"), "line 3: expected yes or no, not 'maybe'");
        assert!(parse("# c\n\n  world a # w\r\ncommand x\n").is_ok());
    }
}
