//! End-to-end test harness: runs the binaries that `tests/prepare.sh` installed under
//! `$LJ_TEST_DIR` (default `/tmp/lj-test`) as root, rootless (as the user `ljtest`) and through
//! the setuid copy.
//!
//! Every test starts with [`Ctx::new`], which checks what the test needs (root, a prepared
//! `LJ_TEST_DIR`, the user, user namespaces, ...). When something is missing it prints
//! `SKIP <test>: <reason>` on stderr and the test returns, unless `LJ_MUST_WORK=1`, where it
//! panics instead. Tests never skip silently.
//!
//! Tests run in parallel, one process per test (cargo-nextest): all state lives in the [`Ctx`]
//! of one test, temporary directories have unique names, and every child process runs under a
//! timeout so a hung jail cannot hang CI.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The unprivileged user the rootless and setuid tests run as.
pub const TEST_USER: &str = "ljtest";

/// How long any child may run before it is killed (override: `LJ_TEST_TIMEOUT` in seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long stdout/stderr may stay open after the child exited. Longer means something the
/// jail started outlived it and still holds the pipe. (The end of file comes at once when
/// nothing did; the grace is for a loaded machine's scheduling, not a timing check.)
pub const PIPE_GRACE: Duration = Duration::from_secs(15);

/// How ljspawn is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As root (real uid 0).
    Root,
    /// As the unprivileged user [`TEST_USER`] (or the current user when the tests do not run
    /// as root): the jail lives in an unprivileged user namespace.
    Rootless,
    /// The setuid-root copy, run as [`TEST_USER`].
    Setuid,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Root => "root",
            Mode::Rootless => "rootless",
            Mode::Setuid => "setuid",
        })
    }
}

impl Mode {
    /// `root`, `rootless` or `setuid` (the names the test macros use).
    pub fn from_name(name: &str) -> Mode {
        match name {
            "root" => Mode::Root,
            "rootless" => Mode::Rootless,
            "setuid" => Mode::Setuid,
            other => panic!("unknown mode {other:?}"),
        }
    }
}

/// `$LJ_TEST_DIR`, default `/tmp/lj-test`.
/// Runs `test` with a context for `mode`, unless the test must skip (see `Ctx::new`).
pub fn run_ctx(name: &str, mode: Mode, test: fn(&Ctx)) {
    if let Some(cx) = Ctx::new(name, mode) {
        test(&cx);
    }
}

/// `mode_tests! { prefix = "net::", run = crate::run; name: root rootless; ... }` makes
/// `mod name { #[test] fn root() ... }`, each calling `run("net::name::root", Mode::Root,
/// crate::name)`: one test per mode, named so a failure says the mode.
// `crate::$name` is meant: the test functions live in the test file that calls the macro.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! mode_tests {
    (prefix = $prefix:literal, run = $run:path; $($name:ident: $($mode:ident)+;)*) => {$(
        mod $name {
            $(
                #[test]
                fn $mode() {
                    $run(
                        concat!($prefix, stringify!($name), "::", stringify!($mode)),
                        $crate::Mode::from_name(stringify!($mode)),
                        crate::$name,
                    );
                }
            )+
        }
    )*};
}

pub fn test_dir() -> PathBuf {
    match std::env::var_os("LJ_TEST_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/tmp/lj-test"),
    }
}

/// `LJ_MUST_WORK=1`: a missing prerequisite is a failure, not a skip.
pub fn must_work() -> bool {
    std::env::var("LJ_MUST_WORK").is_ok_and(|v| v == "1")
}

/// Report that `test` cannot run: `SKIP test: reason` on stderr, or a panic under
/// `LJ_MUST_WORK=1`.
pub fn skip(test: &str, reason: &str) {
    if must_work() {
        panic!("{test}: cannot run: {reason} (LJ_MUST_WORK=1 forbids skipping)");
    }
    eprintln!("SKIP {test}: {reason}");
}

fn timeout_default() -> Duration {
    std::env::var("LJ_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// The effective uid of this process (owner of `/proc/self`).
pub fn current_uid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.uid()).expect("stat /proc/self")
}

/// The effective gid of this process (group of `/proc/self`).
pub fn current_gid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.gid()).expect("stat /proc/self")
}

/// A local user from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// ljbuild run as a test's caller on a lightjail root of its own (`td/root`, its
/// `LIGHTJAIL_ROOT`): what the ljbuild and oci tests share.
#[derive(Debug)]
pub struct Ljbuild<'a> {
    pub cx: &'a Ctx,
    /// `bin/ljbuild` of the test directory.
    pub bin: PathBuf,
    /// Owned by the caller: `root/` (LIGHTJAIL_ROOT), and the test's own files.
    pub td: TempDir,
}

impl<'a> Ljbuild<'a> {
    /// None (the test skipped, saying why) without `bin/ljbuild` in the test directory.
    pub fn new(cx: &'a Ctx) -> Option<Ljbuild<'a>> {
        let bin = cx.dir.join("bin/ljbuild");
        if !bin.is_file() {
            cx.skip(&format!(
                "{} missing: cargo build --release --workspace, then tests/prepare.sh",
                bin.display()
            ));
            return None;
        }
        Some(Ljbuild { cx, bin, td: cx.tempdir() })
    }

    pub fn root(&self) -> PathBuf {
        self.td.join("root")
    }

    /// A command running ljbuild as the caller, with `LIGHTJAIL_ROOT` set and `env`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut argv: Vec<OsString> =
            vec!["/usr/bin/env".into(), format!("LIGHTJAIL_ROOT={}", path_str(&self.root())).into()];
        for (k, v) in env {
            argv.push(format!("{k}={v}").into());
        }
        argv.push(self.bin.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let mut cmd = self.cx.command(argv);
        cmd.current_dir(self.td.path());
        cmd
    }

    /// ljbuild `args` with `env`, killed after `limit`.
    pub fn run_for(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
        let cmd = self.command(args, env);
        let mut out = run_with_timeout(cmd, None, limit).expect("run ljbuild");
        out.command = format!("[{}] ljbuild {}", self.cx.mode, args.join(" "));
        out
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run_for(args, env, Duration::from_secs(120))
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        self.run(args).ok()
    }

    /// Runs ljbuild, expecting exit status `code` and a last stderr line `ljbuild: ...`
    /// containing every string of `wants`.
    #[track_caller]
    pub fn fails(&self, args: &[&str], code: i32, wants: &[&str]) -> Output {
        self.fails_env(args, &[], code, wants)
    }

    /// [`Ljbuild::fails`] with `env`.
    #[track_caller]
    pub fn fails_env(&self, args: &[&str], env: &[(&str, &str)], code: i32, wants: &[&str]) -> Output {
        let out = self.run_env(args, env).expect_status(code);
        let last = out.stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("ljbuild: "), "last stderr line is not 'ljbuild: ...'\n{}", out.report());
        for w in wants {
            assert!(last.contains(w), "stderr does not say {w:?}\n{}", out.report());
        }
        out
    }
}

/// A network namespace made for one test, held by `unshare --net cat` (whose stdin is a pipe
/// from this process: it ends with the test, whatever happens), with `lo` up; gone when
/// dropped, with every link in it, once no jail is left in it.
///
/// Not `ip netns add`: that mounts the namespace on `/run/netns/NAME` in the host's mount table,
/// which other tests running at the same time compare before and after their jails.
#[derive(Debug)]
pub struct NetNs {
    holder: Child,
    /// `/proc/PID/ns/net` of the holder.
    pub path: String,
}

impl NetNs {
    /// A new namespace with `lo` up (root only).
    pub fn make() -> NetNs {
        let holder = Command::new("unshare")
            .args(["--net", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare --net: {e}"));
        let path = format!("/proc/{}/ns/net", holder.id());
        let ns = NetNs { holder, path };
        let mine = fs::read_link("/proc/self/ns/net").expect("readlink /proc/self/ns/net");
        assert!(
            wait_until(Duration::from_secs(30), || fs::read_link(&ns.path).is_ok_and(|l| l != mine)),
            "unshare --net made no network namespace"
        );
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The holder's pid (for `ip link ... netns PID`).
    pub fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// `nsenter --net=NS`: the start of a command line run in the namespace.
    pub fn enter(&self) -> Vec<String> {
        vec!["nsenter".into(), format!("--net={}", self.path)]
    }

    /// `ip ARGS...` in the namespace, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path)).arg("ip").args(args);
        let mut out = run_with_timeout(cmd, None, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"));
        out.command = format!("ip {}", args.join(" "));
        out.ok().stdout
    }

    /// The names of the links in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        drop(self.holder.stdin.take());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `setpriv` arguments that run the rest as `user` (its groups, a reset environment).
pub fn setpriv_args(user: &User) -> Vec<String> {
    vec![
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--init-groups".into(),
        "--reset-env".into(),
        "--".into(),
    ]
}

/// The start of a command line (root's) that runs the rest in a mount namespace of its own
/// where `/etc` is an overlay of the host's, its upper layer on a tmpfs mounted at `mnt` (an
/// empty directory), so the host's `/etc` is never written: there `/etc/lightjail.conf` is a
/// copy of the file `conf` owned by `owner` (uid, group 0) with `mode`, or (None) absent.
pub fn private_etc_argv(mnt: &Path, conf: Option<&Path>, owner: u32, mode: u32) -> Vec<String> {
    let script = r#"set -e
t=$1 conf=$2 uid=$3 mode=$4
shift 4
mount -t tmpfs -o mode=0755 lj-etc "$t"
mkdir "$t/u" "$t/w"
mount -t overlay -o "lowerdir=/etc,upperdir=$t/u,workdir=$t/w" lj-etc /etc
rm -f /etc/lightjail.conf
if [ -n "$conf" ]; then
    cat "$conf" > /etc/lightjail.conf
    chown "$uid:0" /etc/lightjail.conf
    chmod "$mode" /etc/lightjail.conf
fi
exec "$@""#;
    let mut v: Vec<String> =
        ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script, "sh"].map(String::from).into();
    v.extend([path_str(mnt), conf.map(path_str).unwrap_or_default(), owner.to_string(), format!("{mode:o}")]);
    v
}

/// Look a user up in `/etc/passwd` by name.
pub fn lookup_user(name: &str) -> Option<User> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some(User { name: name.to_string(), uid: f[2].parse().ok()?, gid: f[3].parse().ok()? })
        } else {
            None
        }
    })
}

/// Find an executable on `PATH` (or the usual sbin/bin directories).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(prog))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0));
    found
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The path as a `String` (test paths are always UTF-8).
    pub fn str(&self) -> String {
        path_str(&self.path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.path).is_err() {
            // An overlay work dir leaves `work/work` mode 000; open everything up and retry.
            make_removable(&self.path);
            if let Err(e) = fs::remove_dir_all(&self.path) {
                eprintln!("warning: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

fn make_removable(dir: &Path) {
    if let Ok(meta) = fs::symlink_metadata(dir) {
        if meta.is_dir() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    make_removable(&e.path());
                }
            }
        }
    }
}

/// A path as a `String`; the tests only use UTF-8 paths.
pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display())).to_string()
}

/// Everything one test needs: its name, the mode, where things are.
#[derive(Debug)]
pub struct Ctx {
    /// `name::mode`, as printed in SKIP lines and failures.
    pub name: String,
    pub mode: Mode,
    /// `$LJ_TEST_DIR`.
    pub dir: PathBuf,
    /// The ljspawn this mode runs.
    pub bin: PathBuf,
    /// The user ljspawn runs as when the tests run as root and the mode is not `Root`.
    pub run_as: Option<User>,
    /// uid and gid of the caller of ljspawn (root, ljtest or the current user).
    pub caller_uid: u32,
    pub caller_gid: u32,
    setpriv: Option<PathBuf>,
}

impl Ctx {
    /// Check the prerequisites of a test running in `mode`; `None` (after printing `SKIP`, or a
    /// panic under `LJ_MUST_WORK=1`) when one is missing.
    pub fn new(name: &str, mode: Mode) -> Option<Ctx> {
        match Ctx::try_new(name, mode) {
            Ok(cx) => Some(cx),
            Err(reason) => {
                skip(name, &reason);
                None
            }
        }
    }

    fn try_new(name: &str, mode: Mode) -> Result<Ctx, String> {
        let dir = test_dir();
        let is_root = current_uid() == 0;
        let not_prepared = |what: &str| {
            format!("{} not prepared ({what}): run tests/prepare.sh as root first", dir.display())
        };
        let bin = match mode {
            Mode::Setuid => dir.join("setuid/ljspawn"),
            _ => dir.join("bin/ljspawn"),
        };
        let meta = fs::metadata(&bin).map_err(|_| not_prepared(&format!("no {}", bin.display())))?;
        if !dir.join("worlds/busybox/bin/busybox").is_file() {
            return Err(not_prepared("no busybox world"));
        }
        if !dir.join("tmp").is_dir() {
            return Err(not_prepared("no tmp/"));
        }
        let mut cx = Ctx {
            name: name.to_string(),
            mode,
            dir: dir.clone(),
            bin,
            run_as: None,
            caller_uid: current_uid(),
            caller_gid: current_gid(),
            setpriv: None,
        };
        match mode {
            Mode::Root => {
                if !is_root {
                    return Err("needs root (run the tests as root)".into());
                }
            }
            Mode::Rootless | Mode::Setuid => {
                if is_root {
                    let user = lookup_user(TEST_USER)
                        .ok_or_else(|| format!("user {TEST_USER} missing (tests/prepare.sh creates it)"))?;
                    cx.setpriv = Some(which("setpriv").ok_or("setpriv (util-linux) not installed")?);
                    cx.caller_uid = user.uid;
                    cx.caller_gid = user.gid;
                    cx.run_as = Some(user);
                }
            }
        }
        if mode == Mode::Setuid {
            if meta.uid() != 0 || meta.permissions().mode() & 0o4000 == 0 {
                return Err(not_prepared(&format!("{} is not setuid root", cx.bin.display())));
            }
            if cx.caller_uid == 0 {
                return Err("setuid mode needs a non-root caller".into());
            }
            if mount_of(&cx.bin).is_some_and(|m| m.opts.iter().any(|o| o == "nosuid")) {
                return Err(format!("{} is on a nosuid mount", cx.bin.display()));
            }
        }
        if mode == Mode::Rootless {
            cx.check_userns()?;
        }
        Ok(cx)
    }

    /// Can the caller make a user namespace? (Disabled by sysctl, AppArmor, seccomp...)
    fn check_userns(&self) -> Result<(), String> {
        if fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|s| s.trim() == "0") {
            return Err("user namespaces disabled (user.max_user_namespaces = 0)".into());
        }
        if fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone").is_ok_and(|s| s.trim() == "0") {
            return Err("unprivileged user namespaces disabled (kernel.unprivileged_userns_clone = 0)".into());
        }
        let Some(unshare) = which("unshare") else {
            return Ok(()); // cannot probe; the sysctls said yes
        };
        let mut cmd = self.wrap(&unshare, &["--user", "--map-root-user", "true"]);
        cmd.stdin(Stdio::null());
        let out = run_with_timeout(cmd, None, Duration::from_secs(20))
            .map_err(|e| format!("cannot run {}: {e}", unshare.display()))?;
        if out.status() != 0 {
            return Err(format!(
                "unprivileged user namespaces not available to the caller (unshare -Ur: {})",
                out.stderr.trim()
            ));
        }
        Ok(())
    }

    /// The shared, root-owned busybox world (read-only use only: never write into it).
    pub fn world(&self) -> PathBuf {
        self.dir.join("worlds/busybox")
    }

    /// The shared world as a string.
    pub fn world_str(&self) -> String {
        path_str(&self.world())
    }

    fn new_temp_path(&self, what: &str) -> PathBuf {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '.' })
            .collect();
        self.dir.join("tmp").join(format!("{name}.{what}.{}.{n}", std::process::id()))
    }

    /// A new empty directory, mode 0755, owned by the caller of ljspawn (so the jail can
    /// write into it through a bind), removed when dropped.
    pub fn tempdir(&self) -> TempDir {
        let td = self.root_tempdir();
        self.chown_caller(td.path());
        td
    }

    /// A new empty directory, mode 0755, owned by the test process (root), removed when dropped.
    pub fn root_tempdir(&self) -> TempDir {
        let path = self.new_temp_path("d");
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        TempDir { path }
    }

    /// A private copy of the busybox world owned by the caller of ljspawn (for `--rw`, for
    /// layers the jail writes through, for planting files in).
    pub fn world_copy(&self) -> TempDir {
        let td = self.root_tempdir();
        let mut cp = Command::new("cp");
        cp.arg("-a").arg(format!("{}/.", self.world_str())).arg(td.path());
        let out = run_with_timeout(cp, None, Duration::from_secs(60)).expect("run cp");
        // Not root: the world's root-only parts (/root, 0700) cannot be read; the rest is enough.
        let only_denied = current_uid() != 0 && out.stderr.lines().all(|l| l.contains("Permission denied"));
        assert!(out.status() == 0 || only_denied, "cp -a world: {}", out.stderr);
        if self.caller_uid != current_uid() || self.caller_gid != current_gid() {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(format!("{}:{}", self.caller_uid, self.caller_gid)).arg(td.path());
            let out = run_with_timeout(chown, None, Duration::from_secs(60)).expect("run chown");
            assert_eq!(out.status(), 0, "chown -R world copy: {}", out.stderr);
        }
        td
    }

    /// Give `path` to the caller of ljspawn (no-op when that is us).
    pub fn chown_caller(&self, path: &Path) {
        if self.caller_uid != current_uid() || self.caller_gid != current_gid() {
            std::os::unix::fs::lchown(path, Some(self.caller_uid), Some(self.caller_gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }

    /// Write `content` to `path` (created 0644) and give it to the caller.
    pub fn write_caller_file(&self, path: &Path, content: &str) {
        fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.chown_caller(path);
    }

    /// A root-owned directory (0755) holding `secret`, a root-only file (root:root 0600) with
    /// `content`. Needs the tests to run as root: `None` after a SKIP otherwise.
    pub fn root_only_file(&self, content: &str) -> Option<(TempDir, PathBuf)> {
        if current_uid() != 0 {
            skip(&self.name, "needs root to make a root-only file");
            return None;
        }
        let td = self.root_tempdir();
        let f = td.join("secret");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&f)
            .unwrap_or_else(|e| panic!("create {}: {e}", f.display()));
        file.write_all(content.as_bytes()).expect("write secret");
        drop(file);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).expect("chmod secret");
        Some((td, f))
    }

    /// Print `SKIP` (or panic under `LJ_MUST_WORK=1`) for a prerequisite found missing inside a
    /// test.
    pub fn skip(&self, reason: &str) {
        skip(&self.name, reason);
    }

    /// A `Command` that runs `prog args` as the caller of this mode.
    fn wrap(&self, prog: &Path, args: &[&str]) -> Command {
        let mut v: Vec<OsString> = vec![prog.as_os_str().to_owned()];
        v.extend(args.iter().map(OsString::from));
        self.wrap_argv(v)
    }

    /// A `Command` running `argv` as the caller of this mode (through setpriv when the tests run
    /// as root and the mode is not `Root`), in `$LJ_TEST_DIR`.
    pub fn command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrap_argv(argv.into_iter().map(|a| a.as_ref().to_owned()).collect())
    }

    fn wrap_argv(&self, argv: Vec<OsString>) -> Command {
        let mut cmd = match (&self.run_as, &self.setpriv) {
            (Some(user), Some(setpriv)) => {
                let mut c = Command::new(setpriv);
                c.args(setpriv_args(user)).args(&argv);
                c
            }
            _ => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        // The caller's working directory: reachable by the test user (the repository may not be).
        cmd.current_dir(&self.dir);
        cmd
    }

    /// A new ljspawn command line for this mode.
    pub fn ljspawn(&self) -> Cmd<'_> {
        Cmd {
            cx: self,
            args: Vec::new(),
            prelude: None,
            timeout: timeout_default(),
            stdin: None,
            wrapper: Vec::new(),
        }
    }

    /// `ljspawn --root WORLD -- /bin/sh -c SCRIPT`, run.
    pub fn sh(&self, script: &str) -> Output {
        self.ljspawn().args(["--root", &self.world_str(), "--", "/bin/sh", "-c", script]).run()
    }

    /// Like [`Ctx::sh`] and the jail must exit 0: its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        self.sh(script).ok().stdout
    }
}

/// An ljspawn invocation being built.
#[derive(Debug)]
pub struct Cmd<'a> {
    cx: &'a Ctx,
    args: Vec<OsString>,
    prelude: Option<String>,
    timeout: Duration,
    stdin: Option<Vec<u8>>,
    wrapper: Vec<OsString>,
}

impl Cmd<'_> {
    /// Run ljspawn (and the prelude) through `argv` as the caller, e.g.
    /// `["unshare", "-m", "--propagation", "private"]`.
    pub fn wrapper<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// One more argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Shell commands run (by `/bin/sh`, as the caller) just before ljspawn is exec'd in the
    /// same process: `exec 7</`, `export SECRET=x`, ...
    pub fn prelude(mut self, script: &str) -> Self {
        self.prelude = Some(script.to_string());
        self
    }

    /// Kill ljspawn after `d` (default 60 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Feed `data` on stdin (default: /dev/null).
    pub fn stdin(mut self, data: &[u8]) -> Self {
        self.stdin = Some(data.to_vec());
        self
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for w in &self.wrapper {
            s.push_str(&shell_quote(&w.to_string_lossy()));
            s.push(' ');
        }
        if let Some(p) = &self.prelude {
            s.push_str(&format!("[sh: {p}] "));
        }
        s.push_str(&format!("[{}] {}", self.cx.mode, self.cx.bin.display()));
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        s
    }

    fn command(&self) -> Command {
        let mut argv: Vec<OsString> = self.wrapper.clone();
        if let Some(p) = &self.prelude {
            argv.push("/bin/sh".into());
            argv.push("-c".into());
            argv.push(format!("{p}\nexec \"$0\" \"$@\"").into());
        }
        argv.push(self.cx.bin.as_os_str().to_owned());
        argv.extend(self.args.iter().cloned());
        let mut cmd = self.cx.wrap_argv(argv);
        cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd
    }

    /// Run to completion (or timeout) and collect the output.
    pub fn run(self) -> Output {
        let what = self.describe();
        let mut out = run_with_timeout(self.command(), self.stdin.clone(), self.timeout)
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        out.command = what;
        out
    }

    /// Start in the background.
    pub fn start(self) -> Running {
        let what = self.describe();
        let mut cmd = self.command();
        let child =
            spawn_piped(&mut cmd, self.stdin.clone()).unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Running { child: Some(child), started: Instant::now(), timeout: self.timeout, command: what }
    }
}

/// Shell commands that point stdout at a FIFO made at `fifo` whose only reader has closed it:
/// the first write there fails with EPIPE, whatever the scheduling (what `... | head -0`
/// gives, racily). For [`Cmd::prelude`], or before `exec "$@"`.
pub fn closed_pipe_prelude(fifo: &Path) -> String {
    closed_pipe_prelude_on(fifo, 1)
}

/// [`closed_pipe_prelude`] for descriptor `fd` (1: stdout, 2: stderr: what `prog 2>&1 | head
/// -0` or a log reader that went away gives). Rust programs ignore SIGPIPE, so their write
/// there fails with EPIPE rather than killing them.
pub fn closed_pipe_prelude_on(fifo: &Path, fd: u8) -> String {
    let f = shell_quote(&fifo.to_string_lossy());
    format!("mkfifo {f} && exec 3<>{f} 4>{f} 3<&- && exec {fd}>&4 4>&-")
}

/// Runs `argv` as `cx`'s caller (`Ctx::command`) with descriptor `fd` a pipe whose reader has
/// gone ([`closed_pipe_prelude_on`], the FIFO made at `fifo`), killed after a minute.
pub fn run_into_closed_pipe(cx: &Ctx, fifo: &Path, fd: u8, argv: &[OsString]) -> Output {
    let script = format!("{}\nexec \"$@\"", closed_pipe_prelude_on(fifo, fd));
    let mut full: Vec<OsString> = ["/bin/sh", "-c", &script, "sh"].map(OsString::from).to_vec();
    full.extend(argv.iter().cloned());
    let mut out = run_with_timeout(cx.command(&full), None, Duration::from_secs(60)).expect("run");
    out.command = format!(
        "[{}] {} {fd}>(a pipe whose reader has gone)",
        cx.mode,
        argv.iter().map(|a| shell_quote(&a.to_string_lossy())).collect::<Vec<_>>().join(" ")
    );
    out
}

/// Quote for display.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished child did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub exit: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Killed by the harness after the timeout.
    pub timed_out: bool,
    /// stdout/stderr were still open [`PIPE_GRACE`] after the child exited: some process it
    /// started survived it.
    pub pipes_held: bool,
}

impl Output {
    /// The exit status as a shell reports it: the code, or 128+N when killed by signal N.
    pub fn status(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match self.exit {
            Some(st) => st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
            None => -1,
        }
    }

    /// Everything about this run, for an assertion message.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {}{}{}\nelapsed: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.command,
            self.status(),
            if self.timed_out { " (KILLED BY THE HARNESS AFTER THE TIMEOUT)" } else { "" },
            if self.pipes_held { " (stdout/stderr STILL HELD OPEN by a surviving process)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    /// Assert the exit status (and that nothing outlived the jail); returns self.
    #[track_caller]
    pub fn expect_status(self, want: i32) -> Self {
        assert!(
            self.status() == want && !self.timed_out && !self.pipes_held,
            "expected exit status {want}\n{}",
            self.report()
        );
        self
    }

    /// Assert exit status 0; returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_status(0)
    }

    /// Assert an ljspawn failure: status `want` and exactly one stderr line starting with
    /// `ljspawn: `.
    #[track_caller]
    pub fn expect_ljspawn_error(self, want: i32) -> Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            self.status() == want
                && !self.timed_out
                && lines.len() == 1
                && lines[0].starts_with("ljspawn: ")
                && lines[0].len() > "ljspawn: ".len(),
            "expected exit status {want} and one stderr line 'ljspawn: ...'\n{}",
            self.report()
        );
        self
    }

    /// stdout lines, trimmed of trailing whitespace.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lines().map(|l| l.trim_end().to_string()).collect()
    }
}

struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

fn collect(mut r: impl Read + Send + 'static) -> Collector {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel();
    let b = Arc::clone(&buf);
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => b.lock().expect("collector lock").extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    Collector { buf, done }
}

impl Collector {
    /// Wait until EOF or `deadline`; the text so far and whether EOF was reached.
    fn finish(&self, deadline: Instant) -> (String, bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        let eof = self.done.recv_timeout(left).is_ok();
        let text = String::from_utf8_lossy(&self.buf.lock().expect("collector lock")).into_owned();
        (text, eof)
    }
}

struct PipedChild {
    child: Child,
    out: Collector,
    err: Collector,
}

fn spawn_piped(cmd: &mut Command, stdin: Option<Vec<u8>>) -> io::Result<PipedChild> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn()?;
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let out = collect(child.stdout.take().expect("piped stdout"));
    let err = collect(child.stderr.take().expect("piped stderr"));
    Ok(PipedChild { child, out, err })
}

fn wait_piped(mut pc: PipedChild, started: Instant, timeout: Duration, command: String) -> Output {
    let mut timed_out = false;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match pc.child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            let _ = pc.child.kill();
            break pc.child.wait().ok();
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let deadline = Instant::now() + PIPE_GRACE;
    let (stdout, eof_out) = pc.out.finish(deadline);
    let (stderr, eof_err) = pc.err.finish(deadline);
    Output { command, exit: status, stdout, stderr, elapsed, timed_out, pipes_held: !(eof_out && eof_err) }
}

/// Run `cmd` with stdout/stderr captured, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> io::Result<Output> {
    let started = Instant::now();
    let command = format!("{cmd:?}");
    let pc = spawn_piped(&mut cmd, stdin)?;
    Ok(wait_piped(pc, started, timeout, command))
}

/// An ljspawn running in the background. Dropping it kills it.
pub struct Running {
    child: Option<PipedChild>,
    started: Instant,
    timeout: Duration,
    command: String,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Running({})", self.command)
    }
}

impl Running {
    /// The pid of ljspawn (setpriv and the prelude shell exec it, so it is the child's pid).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").child.id()
    }

    /// Has it exited?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().expect("running").child.try_wait(), Ok(Some(_)))
    }

    /// Send signal `sig` (`TERM`, `KILL`, `INT`, ...) to ljspawn.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Wait for it to finish (within its timeout).
    pub fn wait(mut self) -> Output {
        let pc = self.child.take().expect("running");
        wait_piped(pc, self.started, self.timeout, self.command.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pc) = self.child.as_mut() {
            let _ = pc.child.kill();
            let _ = pc.child.wait();
        }
    }
}

/// Poll `cond` every 10 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A unique marker for this test process, e.g. to tag the jail's processes through
/// `--setenv LJ_MARKER <marker>` and find them with [`procs_with_env`].
pub fn marker(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("lj-{tag}-{}-{n}-{t:x}", std::process::id())
}

/// Processes (other than this one) whose environment holds exactly `VAR=value`: `(pid, comm)`.
/// Reading other users' environments needs root; as another user only its own are seen.
pub fn procs_with_env(var: &str, value: &str) -> Vec<(u32, String)> {
    let want = format!("{var}={value}");
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else { return found };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(e.path().join("environ")) else { continue };
        if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            // A zombie already reaped between the two reads, or exiting: still report it.
            found.push((pid, comm.trim().to_string()));
        }
    }
    found
}

/// The parent pid of `pid` (from `/proc/PID/stat`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and all its descendants, as seen now.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                .filter_map(|p| Some((p, parent_pid(p)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|&&(_, pp)| pp == parent).map(|&(p, _)| p));
        i += 1;
    }
    tree
}

/// One line of `/proc/PID/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub parent: u64,
    /// `major:minor`.
    pub dev: String,
    /// The root of the mount within its file system.
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`ro`, `nosuid`, `nodev`, ...).
    pub opts: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options.
    pub super_opts: Vec<String>,
}

impl MountEntry {
    /// Has the per-mount option `opt`?
    pub fn has(&self, opt: &str) -> bool {
        self.opts.iter().any(|o| o == opt)
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|&x| x == "-")?;
            if sep < 6 || f.len() < sep + 3 {
                return None;
            }
            Some(MountEntry {
                id: f[0].parse().ok()?,
                parent: f[1].parse().ok()?,
                dev: f[2].to_string(),
                root: unescape_mountinfo(f[3]),
                mount_point: unescape_mountinfo(f[4]),
                opts: f[5].split(',').map(String::from).collect(),
                fstype: f[sep + 1].to_string(),
                source: unescape_mountinfo(f[sep + 2]),
                super_opts: f
                    .get(sep + 3)
                    .map(|s| s.split(',').map(String::from).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// This process's mount table, raw.
pub fn host_mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo")
}

/// The mount (of this process's table) that holds `path`: the last-mounted entry whose mount
/// point is the longest prefix of the canonical path.
pub fn mount_of(path: &Path) -> Option<MountEntry> {
    let path = fs::canonicalize(path).ok()?;
    let mounts = parse_mountinfo(&host_mountinfo());
    let mut best: Option<MountEntry> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best.as_ref().is_none_or(|b| m.mount_point.len() >= b.mount_point.len())
        {
            best = Some(m);
        }
    }
    best
}

/// The link text of `/proc/self/ns/NAME` in this process, e.g. `pid:[4026531836]`.
pub fn host_ns(name: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{name}"))
        .map(|p| path_str(&p))
        .unwrap_or_else(|e| panic!("readlink /proc/self/ns/{name}: {e}"))
}

/// The inode number in a namespace link text (`pid:[4026531836]` -> 4026531836).
pub fn ns_inode(link: &str) -> Option<u64> {
    let start = link.find('[')? + 1;
    let end = link.rfind(']')?;
    link.get(start..end)?.parse().ok()
}

/// Interface names in `/proc/net/dev` text.
pub fn net_dev_names(text: &str) -> Vec<String> {
    let mut v: Vec<String> =
        text.lines().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_string()).collect();
    v.sort();
    v
}

/// A `/proc/PID/status` field, e.g. `status_field(text, "CapEff")` -> `0000000000000000`.
pub fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

/// A JSON value of a flat object (all `--json-status` emits).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
}

impl Json {
    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Num(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        }
    }
}

/// Parse one flat JSON object (`{"key": value, ...}`, values numbers, strings, booleans or
/// null) into its members, in order. Nested objects and arrays are an error.
pub fn parse_flat_json(text: &str) -> Result<Vec<(String, Json)>, String> {
    let mut p = JsonParser { s: text.as_bytes(), i: 0 };
    p.ws();
    p.eat(b'{')?;
    let mut members = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let k = p.string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            let v = p.value()?;
            members.push((k, v));
            p.ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or '}}' at byte {} of {text:?}", p.i)),
            }
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing data at byte {} of {text:?}", p.i));
    }
    Ok(members)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = self.peek().ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                            let v =
                                u32::from_str_radix(std::str::from_utf8(hex).map_err(|e| e.to_string())?, 16)
                                    .map_err(|e| e.to_string())?;
                            out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                            self.i += 4;
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    }
                }
                _ => {
                    // Copy one UTF-8 sequence.
                    let start = self.i - 1;
                    let mut end = self.i;
                    while end < self.s.len() && (self.s[end] & 0xc0) == 0x80 {
                        end += 1;
                    }
                    out.push_str(std::str::from_utf8(&self.s[start..end]).map_err(|e| e.to_string())?);
                    self.i = end;
                }
            }
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        match self.peek() {
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.s[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.s[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.s[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Json::Null)
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
                t.parse::<f64>().map(Json::Num).map_err(|e| format!("bad number {t:?}: {e}"))
            }
            _ => Err(format!("unsupported value at byte {} (only flat objects)", self.i)),
        }
    }
}

/// Look a member up in a parsed flat object.
pub fn json_get<'a>(obj: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Bytes of a path, for comparisons that must not go through UTF-8.
pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flat() {
        let o = parse_flat_json(
            r#"{"child-pid": 12, "pid-namespace": 4026532000, "s": "a\"b\u0041", "t": true}"#,
        )
        .unwrap();
        assert_eq!(json_get(&o, "child-pid").and_then(Json::as_i64), Some(12));
        assert_eq!(json_get(&o, "pid-namespace").and_then(Json::as_i64), Some(4026532000));
        assert_eq!(json_get(&o, "s"), Some(&Json::Str("a\"bA".into())));
        assert_eq!(json_get(&o, "t"), Some(&Json::Bool(true)));
        assert!(parse_flat_json(r#"{"a": {"b": 1}}"#).is_err());
        assert!(parse_flat_json(r#"{"a": 1} x"#).is_err());
        assert_eq!(parse_flat_json("{}").unwrap(), vec![]);
    }

    #[test]
    fn mountinfo_parse() {
        let t = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                 22 27 0:21 / /proc rw,relatime - proc proc rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt/a b");
        assert_eq!(m[0].fstype, "ext3");
        assert!(m[0].has("noatime"));
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[1].super_opts, vec!["rw".to_string()]);
    }

    #[test]
    fn ns_link() {
        assert_eq!(ns_inode("pid:[4026531836]"), Some(4026531836));
        assert_eq!(ns_inode("pid"), None);
    }

    #[test]
    fn net_dev() {
        let t = "Inter-|   Receive\n face |bytes\n    lo:    1 2\n  eth0: 3 4\n";
        assert_eq!(net_dev_names(t), vec!["eth0".to_string(), "lo".to_string()]);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

/// A pseudo-terminal made by the test, standing in for the caller's terminal: ljspawn runs
/// with its slave as fds 0-2 and controlling terminal ([`Cmd::start_on_pty`]); the test
/// types on and reads from the master.
#[derive(Debug)]
pub struct Pty {
    master: fs::File,
    /// The test's own copy of the slave: its modes and owner are what the checks read, and
    /// it keeps the master readable after ljspawn exits.
    slave: fs::File,
    pub slave_path: PathBuf,
    /// Everything read from the master so far.
    pub output: String,
}

/// A terminal's modes, as compared before and after a run.
pub type TermModes = (u32, u32, u32, u32, Vec<u8>);

impl Pty {
    /// A new pty pair from the host's `/dev/ptmx`.
    pub fn open() -> io::Result<Pty> {
        let master = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open("/dev/ptmx")?;
        let unlock: libc::c_int = 0;
        let mut n: libc::c_uint = 0;
        // SAFETY: `master` is an open pty master; TIOCSPTLCK reads one int from the live
        // `unlock`.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `master` is an open pty master; TIOCGPTN writes one unsigned int into the
        // live `n`.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let slave_path = PathBuf::from(format!("/dev/pts/{n}"));
        let slave =
            fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&slave_path)?;
        Ok(Pty { master, slave, slave_path, output: String::new() })
    }

    /// Sets the window size (rows, columns), as a terminal emulator does when resized: the
    /// kernel sends SIGWINCH to the terminal's foreground process group.
    pub fn set_size(&self, rows: u16, cols: u16) {
        let w = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: `master` is an open pty master; TIOCSWINSZ reads one winsize from the live `w`.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &w) };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", io::Error::last_os_error());
    }

    /// The terminal's modes (iflag, oflag, cflag, lflag, control characters).
    pub fn modes(&self) -> TermModes {
        // SAFETY: termios is plain data; zeroed is valid and is overwritten by tcgetattr.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `slave` is an open terminal; `t` is a live, writable termios.
        let r = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) };
        assert_eq!(r, 0, "tcgetattr: {}", io::Error::last_os_error());
        (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc.to_vec())
    }

    /// True when the terminal is in canonical (line-editing) mode.
    pub fn canonical(&self) -> bool {
        self.modes().3 & libc::ICANON != 0
    }

    /// The slave's metadata (owner, mode) as the host sees it.
    pub fn slave_meta(&self) -> fs::Metadata {
        self.slave.metadata().expect("stat the pty slave")
    }

    /// Gives the slave to `uid` with mode 0620, as a login does with the user's terminal.
    pub fn give_to(&self, uid: u32) {
        use std::os::unix::fs::fchown;
        fchown(&self.slave, Some(uid), None).expect("chown the pty slave");
        self.slave.set_permissions(fs::Permissions::from_mode(0o620)).expect("chmod the pty slave");
    }

    /// Types `data` on the terminal.
    pub fn write(&mut self, data: &[u8]) {
        self.master.write_all(data).expect("write to the pty master");
    }

    /// Reads what is there now (without waiting).
    pub fn read_now(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.output.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads until the output (since the start) holds `needle`, at most `limit`.
    pub fn expect(&mut self, needle: &str, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            self.read_now();
            if self.output.contains(needle) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().expect("dup the pty slave"))
    }
}

/// An ljspawn running on a [`Pty`]. Dropping it kills it.
#[derive(Debug)]
pub struct PtyChild {
    pub child: Child,
    pub command: String,
}

impl PtyChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for it to exit: its status (128+N for signal N), None on timeout
    /// (then it is killed).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        self.wait_status(limit).map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
    }

    fn wait_status(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        status
    }

    /// Waits up to `limit` for it to exit; what the terminal showed is its stdout.
    pub fn output(mut self, pty: &mut Pty, limit: Duration) -> Output {
        let started = Instant::now();
        let exit = self.wait_status(limit);
        pty.read_now();
        Output {
            command: self.command.clone(),
            exit,
            stdout: pty.output.clone(),
            stderr: String::new(),
            elapsed: started.elapsed(),
            timed_out: exit.is_none(),
            pipes_held: false,
        }
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Cmd<'_> {
    /// Starts ljspawn on `pty`: its slave as fds 0-2 and, through `setsid -c`, the controlling
    /// terminal of ljspawn's own session (as in a terminal emulator's shell, ljspawn is in the
    /// foreground process group and gets SIGWINCH).
    pub fn start_on_pty(self, pty: &Pty) -> PtyChild {
        let what = format!("{} (on {})", self.describe(), pty.slave_path.display());
        let setsid = which("setsid").expect("setsid (util-linux) not installed");
        let mut argv: Vec<OsString> = vec![setsid.into_os_string(), "-c".into()];
        argv.extend(self.wrapper.iter().cloned());
        argv.push(self.cx.bin.as_os_str().to_owned());
        argv.extend(self.args.iter().cloned());
        let mut cmd = self.cx.wrap_argv(argv);
        cmd.stdin(pty.stdio()).stdout(pty.stdio()).stderr(pty.stdio());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        PtyChild { child, command: what }
    }
}
