//! A jail on disk and the ljspawn command line that runs it.
//!
//! ```text
//! ROOT/jails/                   0700
//!   NAME/
//!     config                    the config file (see `config`)
//!     upper/ work/              thin jails: the persistent overlay upper and its work dir
//!     rootfs/                   full copies (--copy): the root file system, mounted read-write
//!     snapshots/SNAP/           a snapshot: config and upper/ (or rootfs/)
//!     log                       the jail's output and the supervisor's lines
//!     state.json                the supervisor's state (pids, restarts, last exit)
//!     stop-requested            written by `stop`: the supervisor does not restart
//! ROOT/.locks/j%NAME.lock       held while a command changes the jail (create, start, stop, ...)
//! ROOT/.locks/r%NAME.lock       held by the jail's supervisor for as long as it runs
//! ```

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use ljbuild::resolve;
use ljbuild::store::{Lock, Root};

use crate::config::{self, Config, Mount, RootKind, Source};
use crate::error::Error;

/// Checks a jail or snapshot name: 1-64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "bad {what} name '{name}' (1-64 ASCII letters, digits, '.', '_' and '-', starting with a letter or digit)"
        )))
    }
}

/// The jails of one root.
#[derive(Debug, Clone)]
pub struct Jails {
    /// The lightjail root.
    pub root: Root,
    /// The systemd manager `start` runs jails under, if any (else ljail's own supervisor).
    pub manager: Option<crate::systemd::Scope>,
}

impl Jails {
    /// The jails of `root` (creating `jails/`, 0700).
    pub fn open(root: Root) -> Result<Jails, Error> {
        let dir = root.path.join("jails");
        if !dir.is_dir() {
            ljbuild::store::mkdir_private(&dir)?;
        }
        Ok(Jails { root, manager: None })
    }

    /// `ROOT/jails`.
    pub fn dir(&self) -> PathBuf {
        self.root.path.join("jails")
    }

    /// The jail `name` (checked; it may not exist).
    pub fn jail(&self, name: &str) -> Result<Jail, Error> {
        check_name("jail", name)?;
        Ok(Jail { name: name.to_string(), dir: self.dir().join(name) })
    }

    /// The jail `name`, which must exist.
    pub fn existing(&self, name: &str) -> Result<Jail, Error> {
        let j = self.jail(name)?;
        if !j.config_path().is_file() {
            let names = self.names()?;
            let avail = if names.is_empty() { "none".to_string() } else { names.join(", ") };
            return Err(Error::NotFound(format!(
                "no jail '{name}' in {} (jails: {avail})",
                self.dir().display()
            )));
        }
        Ok(j)
    }

    /// Every jail's name, sorted.
    pub fn names(&self) -> Result<Vec<String>, Error> {
        let mut v: Vec<String> = ljbuild::store::read_dir_names(&self.dir())?
            .into_iter()
            .filter(|n| check_name("jail", n).is_ok() && self.dir().join(n).join("config").is_file())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Takes the jail's management lock (waits for another command on the same jail).
    pub fn lock(&self, j: &Jail) -> Result<Lock, Error> {
        Ok(self.root.lock(&format!("j%{}", j.name), || {})?)
    }

    /// Takes the jail's run lock if it is free (`None`: its supervisor runs).
    pub fn try_run_lock(&self, j: &Jail) -> Result<Option<Lock>, Error> {
        Ok(self.root.try_lock(&format!("r%{}", j.name))?)
    }

    /// The run lock's file (the supervisor opens and holds it itself).
    pub fn run_lock_path(&self, j: &Jail) -> PathBuf {
        self.root.lock_path(&format!("r%{}", j.name))
    }

    /// Whether the jail runs: its supervisor runs (its run lock is held), or its systemd unit
    /// is up. A supervisor that has written the jail's final state is at its very end (it
    /// writes that state last, then frees the lock): waited for, so that a jail `status` calls
    /// ended is not running for `start`, `destroy` or any other command either. So is one that
    /// is `stopping` (the jail has ended, its cgroups go: up to 12 s), for up to
    /// [`STOPPING_WAIT`]; past it the jail runs, still `stopping`.
    pub fn running(&self, j: &Jail) -> Result<bool, Error> {
        self.running_as(j, true)
    }

    /// [`Jails::running`] without waiting for a `stopping` supervisor (which runs): for
    /// `status` and `list`, which show that state.
    pub fn running_now(&self, j: &Jail) -> Result<bool, Error> {
        self.running_as(j, false)
    }

    fn running_as(&self, j: &Jail, wait_stopping: bool) -> Result<bool, Error> {
        if self.try_run_lock(j)?.is_none() && !self.supervisor_ended(j, wait_stopping)? {
            return Ok(true);
        }
        Ok(crate::supervise::unit_of(j)
            .is_some_and(|(scope, unit)| crate::systemd::show(scope, &unit).running()))
    }

    /// Whether the run lock, held, is freed within 10 s by a supervisor that has written the
    /// jail's final state (`exited`, `stopped`, `failed`) and so is ending; with
    /// `wait_stopping`, also after a `stopping` state (its teardown), waited for up to
    /// [`STOPPING_WAIT`] until it is final. (The state of a previous run, whose supervisor is
    /// gone, is no such sign: a new supervisor holds the lock.)
    fn supervisor_ended(&self, j: &Jail, wait_stopping: bool) -> Result<bool, Error> {
        let ours = |st: &crate::supervise::State| {
            st.supervisor_pid != 0 && ljail_supervisor::is_ours(st.supervisor_pid, Path::new(&j.name))
        };
        let mut st = crate::supervise::read_state(j);
        if wait_stopping && st.state == "stopping" && ours(&st) {
            let deadline = std::time::Instant::now() + STOPPING_WAIT;
            // The lock first, after each read of the state: a supervisor that wrote its final
            // state may have freed the lock and ended since (it is then no longer ours).
            loop {
                if self.try_run_lock(j)?.is_some() {
                    return Ok(true);
                }
                if !(st.state == "stopping" && ours(&st)) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Ok(false);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                st = crate::supervise::read_state(j);
            }
        }
        let ending = |st: &crate::supervise::State| {
            matches!(st.state.as_str(), "exited" | "stopped" | "failed") && ours(st)
        };
        if !ending(&st) {
            return Ok(false);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if self.try_run_lock(j)?.is_some() {
                return Ok(true);
            }
            if !ending(&st) || std::time::Instant::now() > deadline {
                // (Gone without freeing it: another supervisor holds the lock.)
                return Ok(self.try_run_lock(j)?.is_some());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// How long `start`, `stop`, `destroy` and the other commands that need a jail stopped wait
/// for a `stopping` supervisor to end: its teardown takes up to 12 s (the v1 freezer's cgroup
/// 10, the v2 payload's 2, while their last processes leave them), more on a loaded machine.
pub const STOPPING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// One jail.
#[derive(Debug, Clone)]
pub struct Jail {
    /// Its name.
    pub name: String,
    /// `ROOT/jails/NAME`.
    pub dir: PathBuf,
}

impl Jail {
    /// The jail `name` of the same root.
    pub fn sibling(&self, name: &str) -> Jail {
        Jail { name: name.to_string(), dir: self.dir.with_file_name(name) }
    }

    /// What names the jail outside its root, in unit names (`lightjail-ID.service`), machine
    /// names and its cgroup (`ljail-ID`): its name in the default root of the caller (the one
    /// without `--root` or `LIGHTJAIL_ROOT`: `systemctl status lightjail-NAME` works), else
    /// `NAME:HASH`, HASH 8 hex digits of its root's path, so jails of one name in two roots
    /// never share a unit or a cgroup (`:` is in no jail name, so no other jail's id is it).
    pub fn unit_id(&self) -> String {
        let root = self.dir.parent().and_then(Path::parent).unwrap_or(Path::new("/"));
        let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let env = ljbuild::store::RootEnv { lightjail_root: None, ..ljbuild::store::RootEnv::current() };
        let default = ljbuild::store::locate(None, &env).ok().map(|(p, _)| canon(&p));
        let root = canon(root);
        if default.as_deref() == Some(root.as_path()) {
            return self.name.clone();
        }
        // FNV-1a (64 bits), folded to 32: stable across builds and versions.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in root.as_os_str().as_encoded_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{}:{:08x}", self.name, (h ^ (h >> 32)) as u32)
    }

    /// `config`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config")
    }

    /// `log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// `stop-requested`.
    pub fn stop_path(&self) -> PathBuf {
        self.dir.join("stop-requested")
    }

    /// `containers/` and `docker/` (`docker yes` jails): the container storage, bound at
    /// /var/lib/containers and /var/lib/docker (an overlayfs, the jail's root, cannot be the
    /// upper layer of the overlays podman and dockerd make).
    pub fn storage_dirs(&self) -> [(PathBuf, &'static str); 2] {
        [(self.dir.join("containers"), "/var/lib/containers"), (self.dir.join("docker"), "/var/lib/docker")]
    }

    /// Makes the storage directories of a `docker yes` jail if missing (0700: they hold the
    /// images' setuid files), owned as its data is (by the jail's root, host BASE, in a private
    /// id range).
    pub fn ensure_storage(&self) -> Result<(), Error> {
        use std::os::unix::fs::DirBuilderExt;
        let owner = [RootKind::Thin, RootKind::Copy].iter().find_map(|k| self.data_owner(*k));
        for (d, _) in self.storage_dirs() {
            if !d.is_dir() {
                fs::DirBuilder::new().mode(0o700).create(&d).map_err(Error::io("cannot create", &d))?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&d, Some(uid), Some(gid))
                        .map_err(Error::io("cannot chown", &d))?;
                }
            }
        }
        Ok(())
    }

    /// The owner of the jail's data directory when it is not this process's (root's jail in a
    /// private id range: host BASE, the jail's root): what ljail makes in the jail's files
    /// is given to it.
    fn data_owner(&self, kind: RootKind) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        let md = fs::symlink_metadata(self.data_dir(kind)).ok()?;
        let me = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        (md.is_dir() && (md.uid(), md.gid()) != me).then_some((md.uid(), md.gid()))
    }

    /// The jail's `/etc/machine-id` in its own data (`upper/` or `rootfs/`).
    pub fn machine_id_path(&self, kind: RootKind) -> PathBuf {
        self.data_dir(kind).join("etc/machine-id")
    }

    /// `init yes` jails: gives the jail a machine id of its own in its data, unless it has one
    /// (32 hex digits): 128 random bits, a version 4 UUID's, as systemd-machine-id-setup makes
    /// them. Written into the jail's files, not bound over them: systemd takes a mount point at
    /// /etc/machine-id for a transient id and tries to commit it. (A clone gets a new one at
    /// its first start; a snapshot keeps the jail's.)
    pub fn ensure_machine_id(&self, kind: RootKind) -> Result<(), Error> {
        use rustix::fs::{Mode, OFlags};
        let p = self.machine_id_path(kind);
        let sys = |what: &'static str| {
            let p = p.clone();
            move |e: rustix::io::Errno| Error::io(what, &p)(e.into())
        };
        // The data is the jail's own: every name in it is opened without following a symlink
        // (ljail may be root, and the jail's root may have planted one).
        let data = rustix::fs::open(
            self.data_dir(kind),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("cannot open"))?;
        // What is made here is the jail's root's (host BASE in a private id range).
        let owner = self.data_owner(kind);
        let give = |fd: &rustix::fd::OwnedFd| match owner {
            Some((u, g)) => rustix::fs::fchown(
                fd,
                Some(rustix::process::Uid::from_raw(u)),
                Some(rustix::process::Gid::from_raw(g)),
            )
            .map_err(sys("cannot chown")),
            None => Ok(()),
        };
        let made_etc = match rustix::fs::mkdirat(&data, "etc", Mode::from_raw_mode(0o755)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(sys("cannot create")(e)),
        };
        let nofollow = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let etc =
            rustix::fs::openat(&data, "etc", OFlags::RDONLY | OFlags::DIRECTORY | nofollow, Mode::empty())
                .map_err(sys("cannot open the directory of"))?;
        if made_etc {
            give(&etc)?;
        }
        if let Ok(f) = rustix::fs::openat(
            &etc,
            "machine-id",
            OFlags::RDONLY | OFlags::NONBLOCK | nofollow,
            Mode::empty(),
        ) {
            let mut buf = [0u8; 64];
            let is_file = rustix::fs::fstat(&f)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file());
            let n = if is_file { rustix::io::read(&f, &mut buf).unwrap_or(0) } else { 0 };
            let id = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
            if id.len() == 32 && id.iter().all(u8::is_ascii_hexdigit) {
                return Ok(());
            }
        }
        let mut bytes = [0u8; 16];
        let mut f = fs::File::open("/dev/urandom").map_err(Error::io("cannot open", "/dev/urandom"))?;
        std::io::Read::read_exact(&mut f, &mut bytes).map_err(Error::io("cannot read", "/dev/urandom"))?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match rustix::fs::unlinkat(&etc, "machine-id", rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(sys("cannot replace")(e)),
        }
        let f = rustix::fs::openat(
            &etc,
            "machine-id",
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | nofollow,
            Mode::from_raw_mode(0o444),
        )
        .map_err(sys("cannot create"))?;
        give(&f)?;
        let mut f = fs::File::from(f);
        std::io::Write::write_all(&mut f, format!("{hex}\n").as_bytes())
            .map_err(Error::io("cannot write", &p))
    }

    /// `snapshots/`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// The data directory of a root kind: `upper` or `rootfs`.
    pub fn data_dir(&self, kind: RootKind) -> PathBuf {
        self.dir.join(data_name(kind))
    }

    /// Reads and parses the config.
    pub fn config(&self) -> Result<Config, Error> {
        let p = self.config_path();
        let text = fs::read_to_string(&p).map_err(Error::io("cannot read", &p))?;
        config::parse(&text).map_err(|err| Error::Config { path: p, err })
    }

    /// The snapshots, sorted.
    pub fn snapshots(&self) -> Result<Vec<String>, Error> {
        let mut v: Vec<String> = ljbuild::store::read_dir_names(&self.snapshots_dir())?
            .into_iter()
            .filter(|n| check_name("snapshot", n).is_ok())
            .collect();
        v.sort();
        Ok(v)
    }
}

/// `upper` or `rootfs`.
pub fn data_name(kind: RootKind) -> &'static str {
    match kind {
        RootKind::Thin => "upper",
        RootKind::Copy => "rootfs",
    }
}

/// The layers (bottom first) a source stands on.
pub fn layers(root: &Root, source: &Source) -> Result<Vec<PathBuf>, Error> {
    match source {
        Source::World(w) => {
            let dir = resolve::world(root, w)?.1;
            let mut v = vec![root.layer_path(&dir)];
            v.extend(ljbuild::oci::world_layers(root, &dir));
            Ok(v)
        }
        Source::Image { name, version } => {
            let meta = root.read_meta(name, version)?.ok_or_else(|| {
                Error::NotFound(format!(
                    "image {name}@{version} is not published in {} (the jail was made on it; rebuild it or import it again)",
                    root.path.display()
                ))
            })?;
            let (chain, _warning) = resolve::chain_of(root, &meta)?;
            Ok(chain.layers(root))
        }
    }
}

/// What a jail's config stands for on this host now: its layers and its `--gpu` devices.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The `--gpu` mounts.
    pub devices: Vec<Mount>,
    /// `docker yes`: those of the host's /dev/fuse and /dev/net/tun that the caller may open.
    pub docker_devices: Vec<String>,
}

/// Resolves `cfg`'s layers and devices.
pub fn resolve(root: &Root, cfg: &Config) -> Result<Resolved, Error> {
    let devices = match &cfg.gpu {
        Some(v) => crate::gpu::mounts(v)?,
        None => Vec::new(),
    };
    // With a private id range the jail's root is not the host's: only what others may open.
    let private = cfg.private_base().is_some();
    let docker_devices = if cfg.docker {
        ["/dev/fuse", "/dev/net/tun"]
            .iter()
            .filter(|d| fs::OpenOptions::new().read(true).write(true).open(d).is_ok())
            .filter(|d| {
                use std::os::unix::fs::MetadataExt;
                !private || fs::metadata(d).is_ok_and(|m| m.mode() & 0o006 == 0o006)
            })
            .map(|d| d.to_string())
            .collect()
    } else {
        Vec::new()
    };
    Ok(Resolved { layers: layers(root, &cfg.source)?, devices, docker_devices })
}

/// What an `init yes` jail's PID 1 keeps: systemd-nspawn's default capability set (held in the
/// jail's own user namespace). Without CAP_SYS_RAWIO, CAP_SYS_MODULE and the like, the units
/// that need them (debugfs, tracefs, module loading) are skipped by their conditions.
pub const INIT_CAPS: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_NICE",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TTY_CONFIG",
];

/// The ljspawn arguments (without the program) that run `jail` with `cfg` on `r`.
/// `json_fd` adds `--json-status FD` (the supervisor's pipe).
pub fn ljspawn_args(jail: &Jail, cfg: &Config, r: &Resolved, json_fd: Option<i32>) -> Vec<OsString> {
    let layers = &r.layers;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |v: &[&dyn AsRefOs]| a.extend(v.iter().map(|x| x.os()));
    // A private id range (`private-users BASE`): the layers, host root's files, are idmapped
    // onto the jail's namespace (they show as its root's); its data is BASE's already.
    let base = cfg.private_base().map(|b| b.to_string());
    if let Some(b) = &base {
        push(&[&"--subids-base", b]);
    }
    let layer_opt = if base.is_some() { "--idmap-layer" } else { "--layer" };
    match cfg.root {
        RootKind::Thin => {
            for l in layers {
                push(&[&layer_opt, &l.as_path()]);
            }
            push(&[
                &"--upper",
                &jail.dir.join("upper").as_path(),
                &"--work",
                &jail.dir.join("work").as_path(),
            ]);
        }
        RootKind::Copy => push(&[&"--root", &jail.dir.join("rootfs").as_path(), &"--rw"]),
    }
    let host_resolv = cfg.net_mode() == "host" && Path::new("/etc/resolv.conf").exists();
    if host_resolv {
        push(&[&"--ro-bind", &"/etc/resolv.conf", &"/etc/resolv.conf"]);
    }
    if cfg.init {
        // The jail's own init as PID 1 (systemd's container interface): a user namespace with
        // the whole id range (services run as their own users), a cgroup of its own, /sys
        // read-only, /run and /run/lock fresh tmpfs, `container=lightjail`, its machine id.
        push(&[
            &"--as-pid-1",
            &"--stop-signal",
            &"RTMIN+3",
            &"--subids",
            &"--sysfs",
            &"--delegate-cgroup",
            &"--allow-setuid-files",
            &"--tmpfs",
            &"/run",
            &"--tmpfs",
            &"/run/lock",
            &"--setenv",
            &"container",
            &"lightjail",
        ]);
        for c in INIT_CAPS {
            push(&[&"--cap-add", c]);
        }
    }
    if cfg.docker {
        // Container runtimes in the jail (podman, dockerd): root of a user namespace of its
        // own with every capability there (never the host's), the container filter, a
        // cgroup to delegate to containers, sysfs for theirs, the devices fuse-overlayfs and
        // slirp/pasta use (where the caller may open them), storage off the overlay root.
        if !cfg.init {
            push(&[&"--subids", &"--sysfs", &"--delegate-cgroup", &"--tmpfs", &"/run"]);
        }
        push(&[&"--cap-add", &"ALL", &"--seccomp", &"container"]);
        if cfg.net_mode() != "host" {
            // The runtime sets its containers' network settings (ping_group_range, ...).
            push(&[&"--net-sysctls-rw"]);
        }
        for dev in &r.docker_devices {
            push(&[&"--dev-bind", &dev.as_str(), &dev.as_str()]);
        }
        for (d, dest) in jail.storage_dirs() {
            push(&[&"--bind", &d.as_path(), &dest]);
        }
    }
    for m in r.devices.iter().chain(&cfg.mounts) {
        match m {
            Mount::Bind(s, d) => push(&[&"--bind", s, d]),
            Mount::RoBind(s, d) => push(&[&"--ro-bind", s, d]),
            Mount::DevBind(s, d) => push(&[&"--dev-bind", s, d]),
            Mount::Tmpfs(d) => push(&[&"--tmpfs", d]),
        }
    }
    for (k, v) in &cfg.setenv {
        push(&[&"--setenv", k, v]);
    }
    let hostname = cfg.hostname.clone().unwrap_or_else(|| default_hostname(&jail.name));
    push(&[&"--hostname", &hostname]);
    let opts = [
        ("--chdir", &cfg.chdir),
        ("--user", &cfg.user),
        ("--net", &cfg.net),
        ("--ip", &cfg.ip),
        ("--gateway", &cfg.gateway),
        ("--memory", &cfg.memory),
        ("--pids", &cfg.pids),
        ("--cpus", &cfg.cpus),
    ];
    for (flag, v) in opts {
        if let Some(v) = v {
            push(&[&flag, v]);
        }
    }
    if cfg.dhcp() {
        // eth0 up without an address; the jail's own DHCP client (udhcpc, dhclient,
        // systemd-networkd) needs these two in the jail to configure it.
        push(&[&"--ip", &"dhcp", &"--cap-add", &"CAP_NET_ADMIN", &"--cap-add", &"CAP_NET_RAW"]);
    }
    for r in &cfg.rlimits {
        push(&[&"--rlimit", r]);
    }
    for c in &cfg.cap_add {
        push(&[&"--cap-add", c]);
    }
    if cfg.allow_userns {
        push(&[&"--allow-userns"]);
    }
    if cfg.proc_unmasked {
        // Jails nested in this one (their own user namespaces) may mount a proc only where one
        // is fully visible (ljspawn's check_proc_unmasked says why that is safe, and where).
        push(&[&"--proc-unmasked"]);
    }
    if let Some(fd) = json_fd {
        push(&[&"--die-with-parent", &"--json-status", &fd.to_string()]);
    }
    push(&[&"--"]);
    for w in &cfg.command {
        push(&[w]);
    }
    a
}

/// The init an `init yes` jail runs when `create` is given no command: `/sbin/init` where the
/// image has one (systemd-sysv, sysvinit), else systemd itself, found in its layers (top first).
pub fn default_init(layers: &[PathBuf]) -> Vec<String> {
    let has = |p: &str| {
        layers.iter().rev().any(|l| {
            // (Usr-merged worlds link /sbin and /lib into /usr: look there too, never following
            // a link out of the layer.)
            [p.to_string(), format!("usr/{p}")].iter().any(|q| fs::symlink_metadata(l.join(q)).is_ok())
        })
    };
    let init =
        if has("sbin/init") || !has("lib/systemd/systemd") { "/sbin/init" } else { "/lib/systemd/systemd" };
    vec![init.to_string()]
}

/// The jail's name as a host name (`_` is not allowed in host names: `-`).
pub fn default_hostname(name: &str) -> String {
    let h: String = name.chars().map(|c| if c == '_' { '-' } else { c }).collect();
    if config::check_hostname(&h).is_ok() {
        h
    } else {
        "lj".into()
    }
}

/// Something that is an OS string argument.
trait AsRefOs {
    fn os(&self) -> OsString;
}
impl AsRefOs for &str {
    fn os(&self) -> OsString {
        (*self).into()
    }
}
impl AsRefOs for String {
    fn os(&self) -> OsString {
        self.into()
    }
}
impl AsRefOs for &Path {
    fn os(&self) -> OsString {
        self.as_os_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("jail", "web-1.a_b").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", &"x".repeat(65), "ü"] {
            assert!(check_name("jail", bad).is_err(), "{bad}");
        }
        assert_eq!(default_hostname("my_web"), "my-web");
    }

    #[test]
    fn args() {
        let j = Jail { name: "web".into(), dir: "/r/jails/web".into() };
        let mut c = Config::new(Source::World("busybox".into()), vec!["/bin/httpd".into(), "-f".into()]);
        c.mounts = vec![Mount::Bind("/srv".into(), "/data".into())];
        c.memory = Some("64M".into());
        let r = Resolved { layers: vec!["/r/worlds/busybox".into()], ..Resolved::default() };
        let a = ljspawn_args(&j, &c, &r, Some(5));
        let line = ljbuild::spawn::command_line(Path::new("ljspawn"), &a);
        assert_eq!(
            line,
            "ljspawn --layer /r/worlds/busybox --upper /r/jails/web/upper --work /r/jails/web/work \
             --bind /srv /data --hostname web --memory 64M --die-with-parent --json-status 5 -- /bin/httpd -f"
        );
        c.root = RootKind::Copy;
        let a = ljspawn_args(&j, &c, &Resolved::default(), None);
        assert!(ljbuild::spawn::command_line(Path::new("l"), &a)
            .starts_with("l --root /r/jails/web/rootfs --rw --bind"));
    }
}
