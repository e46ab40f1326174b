//! End-to-end tests of `ljail`, as root, rootless and setuid. Each test has its own
//! `LIGHTJAIL_ROOT` (in a temporary directory owned by the caller) with a busybox world
//! imported by `ljbuild world import`, and runs `$LJ_TEST_DIR/bin/ljail` as the caller (root,
//! or `ljtest` through setpriv); ljail finds `ljspawn` next to itself (setuid mode: `LJSPAWN`
//! names the setuid copy). Every jail a test starts is stopped when the test ends, also when it
//! fails (`stop --all` from a drop guard).
//!
//! Bridged jails live in a network namespace the test makes (`unshare --net`, never
//! `ip netns add`): `ljail start` runs there through `nsenter --net`, so the supervisor and the
//! jail's veth are in it, and the host's interfaces are never touched.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lj_tests::{
    host_mountinfo, path_str, run_with_timeout, wait_until, which, Ctx, Mode, NetNs, Output, TempDir,
};
use serde_json::Value;

fn run(name: &str, mode: Mode, test: fn(&Lj)) {
    let Some(cx) = Ctx::new(name, mode) else { return };
    let Some(lj) = Lj::new(&cx) else { return };
    test(&lj);
}

lj_tests::mode_tests! {
    prefix = "ljail::", run = crate::run;
    service_survives_stop_start: root rootless setuid;
    restart_policy: root rootless setuid;
    restart_and_follow_log: root rootless setuid;
    start_waits_for_the_jail: root rootless setuid;
    stopping_while_torn_down: root;
    concurrent_start_serialized: root rootless setuid;
    destroy_and_start_right_after_exit: root rootless setuid;
    snapshot_rollback_clone: root rootless setuid;
    btrfs_snapshots: root rootless setuid;
    reflink_copies_on_xfs: root rootless setuid;
    copy_jail: root rootless setuid;
    from_an_image: root rootless setuid;
    start_all_in_boot_order: root rootless setuid;
    json_outputs: root rootless setuid;
    bad_names_and_config_lines: root rootless setuid;
    lines_into_closed_stderr: root rootless setuid;
    dry_run_runs_nothing: root rootless setuid;
    exec_into_running_jail: root rootless setuid;
    gpu_profile: root rootless setuid;
    init_boots_systemd: root rootless;
    shell_on_its_own_pty: root rootless setuid;
    docker_profile_runs_podman: root rootless;
    dhcp_with_the_jails_own_client: root;
    macvlan_network: root;
    systemd_units_in_a_booted_jail: root;
    users_own_jails_in_a_booted_jail: rootless;
    private_users_of_roots_jails: root rootless;
    private_range_grants: root;
}

/// How long a test waits for what a started jail does (its first lines, its files, a namespace
/// appearing): seconds on a loaded machine.
const UP: Duration = Duration::from_secs(30);

/// How long a test waits for what the kernel removes after a jail is gone (processes being
/// reaped, cgroups, a veth that goes with its network namespace: the kernel's netns cleanup is
/// asynchronous and late on a busy machine). A deadline, not a timing check.
const GONE: Duration = Duration::from_secs(30);

/// One test's root and the ljail it runs.
struct Lj<'a> {
    cx: &'a Ctx,
    bin: PathBuf,
    /// LIGHTJAIL_ROOT: `td/root`, or on the btrfs of `mount`.
    root: PathBuf,
    /// A btrfs file system mounted for the test (unmounted after the jails are stopped, before
    /// `td` is removed: fields drop in this order).
    mount: Option<LoopMount>,
    /// Owned by the caller: `root/` (LIGHTJAIL_ROOT) and the test's files.
    td: TempDir,
}

/// A file system in a file, mounted through a loop device (`mount -o loop`: the device goes
/// with the unmount), unmounted when dropped.
struct LoopMount(PathBuf);

impl Drop for LoopMount {
    fn drop(&mut self) {
        let gone = |lazy: bool| {
            let mut c = Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.0).status().is_ok_and(|s| s.success())
        };
        if !wait_until(Duration::from_secs(10), || gone(false)) {
            gone(true);
        }
    }
}

impl<'a> Lj<'a> {
    fn new(cx: &'a Ctx) -> Option<Lj<'a>> {
        Lj::new_on(cx, None)
    }

    /// `fs`: the root on a file system of that type (`btrfs`, or `xfs` with reflinks) made for
    /// the test in a sparse file; `None` (skipped, with the reason) without its mkfs or the
    /// kernel's support.
    fn new_on(cx: &'a Ctx, fs: Option<&str>) -> Option<Lj<'a>> {
        let bin = cx.dir.join("bin/ljail");
        let ljbuild = cx.dir.join("bin/ljbuild");
        if !bin.is_file() || !ljbuild.is_file() {
            cx.skip(&format!(
                "{} missing: cargo build --release --workspace, then tests/prepare.sh",
                bin.display()
            ));
            return None;
        }
        let td = cx.tempdir();
        let (mut root, mut mount) = (td.join("root"), None);
        if let Some(fstype) = fs {
            // (XFS needs 300 MB at least.)
            let (args, size, package): (&[&str], u64, &str) = match fstype {
                "xfs" => (&["-q", "-m", "reflink=1"], 512 << 20, "xfsprogs"),
                _ => (&["-q"], 256 << 20, "btrfs-progs"),
            };
            let Some(mkfs) = which(&format!("mkfs.{fstype}")) else {
                cx.skip(&format!("mkfs.{fstype} missing (Debian's {package}; make deps installs it)"));
                return None;
            };
            let (img, mnt) = (td.join(format!("{fstype}.img")), td.join("mnt"));
            std::fs::File::create(&img).and_then(|f| f.set_len(size)).expect("fs image");
            let made = Command::new(mkfs).args(args).arg(&img).output().expect("mkfs");
            assert!(made.status.success(), "mkfs.{fstype}: {}", String::from_utf8_lossy(&made.stderr));
            std::fs::create_dir(&mnt).expect("mnt");
            let m = Command::new("mount").arg("-o").arg("loop").arg(&img).arg(&mnt).output().expect("mount");
            if !m.status.success() {
                cx.skip(&format!(
                    "cannot mount a {fstype} loop file: {}",
                    String::from_utf8_lossy(&m.stderr).trim()
                ));
                return None;
            }
            mount = Some(LoopMount(mnt.clone()));
            cx.chown_caller(&mnt);
            root = mnt.join("root");
        }
        let lj = Lj { cx, bin, root, mount, td };
        // The world: imported (copied) by the caller, so a rootless caller owns its files.
        let src = if cx.caller_uid == lj_tests::current_uid() { None } else { Some(cx.world_copy()) };
        let world = src.as_ref().map_or_else(|| cx.world(), |t| t.path().to_path_buf());
        let mut argv = lj.env_argv();
        argv.push(ljbuild.into());
        argv.extend(["world", "import", "busybox", &path_str(&world)].map(OsString::from));
        let out = run_with_timeout(cx.command(argv), None, Duration::from_secs(60)).expect("run ljbuild");
        assert_eq!(out.status(), 0, "ljbuild world import:\n{}", out.report());
        Some(lj)
    }

    fn root(&self) -> PathBuf {
        self.root.clone()
    }

    fn jail_dir(&self, name: &str) -> PathBuf {
        self.root().join("jails").join(name)
    }

    /// `env LIGHTJAIL_ROOT=... [LJSPAWN=setuid copy]`.
    fn env_argv(&self) -> Vec<OsString> {
        // ljail's own supervisor, also where systemd is PID 1 (the systemd units are tested in
        // a booted jail: systemd_units_in_a_booted_jail).
        let mut argv: Vec<OsString> = vec![
            "/usr/bin/env".into(),
            format!("LIGHTJAIL_ROOT={}", path_str(&self.root())).into(),
            "LJAIL_SUPERVISOR=ljail".into(),
        ];
        if self.cx.mode == Mode::Setuid {
            argv.push(format!("LJSPAWN={}", path_str(&self.cx.bin)).into());
        }
        argv
    }

    /// ljail ARGS as the caller, behind `prefix` (e.g. nsenter, run as root before the caller
    /// is switched to).
    fn command_in(&self, prefix: &[String], args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut argv: Vec<OsString> = prefix.iter().map(OsString::from).collect();
        let mut inner = self.env_argv();
        for (k, v) in env {
            inner.push(format!("{k}={v}").into());
        }
        inner.push(self.bin.clone().into());
        inner.extend(args.iter().map(OsString::from));
        let mut cmd = if prefix.is_empty() {
            self.cx.command(inner)
        } else {
            // The prefix runs as root, then the caller's ljail (through setpriv via the harness).
            let wrapped = self.cx.command(inner);
            argv.push(wrapped.get_program().to_owned());
            argv.extend(wrapped.get_args().map(|a| a.to_owned()));
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        };
        cmd.current_dir(self.td.path());
        cmd
    }

    fn run_in(&self, prefix: &[String], args: &[&str], env: &[(&str, &str)]) -> Output {
        let cmd = self.command_in(prefix, args, env);
        let mut out = run_with_timeout(cmd, None, Duration::from_secs(90)).expect("run ljail");
        out.command = format!("[{}] ljail {}", self.cx.mode, args.join(" "));
        out
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&[], args, &[])
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        self.run(args).ok()
    }

    /// Expects exit status `code` and one stderr line `ljail: ...` containing `want`.
    #[track_caller]
    fn fails(&self, args: &[&str], code: i32, want: &str) -> String {
        let out = self.run(args);
        expect_error(&out, code, want)
    }

    fn status(&self, name: &str) -> Value {
        let out = self.ok(&["status", name, "--json"]);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{}", out.report()))
    }

    fn log(&self, name: &str) -> String {
        self.ok(&["log", name]).stdout
    }

    /// Waits until `name`'s state is `state`.
    #[track_caller]
    fn wait_state(&self, name: &str, state: &str) -> Value {
        let mut last = Value::Null;
        let ok = wait_until(UP, || {
            last = self.status(name);
            last["state"] == state
        });
        assert!(ok, "{name} never got to state {state}: {last}\nlog:\n{}", self.log(name));
        last
    }

    /// A file in the test directory, owned by the caller.
    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.td.join(rel);
        self.cx.write_caller_file(&p, content);
        p
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let d = self.td.join(rel);
        fs::create_dir_all(&d).expect("mkdir");
        self.cx.chown_caller(&d);
        d
    }
}

impl Drop for Lj<'_> {
    /// Nothing a test started outlives it.
    fn drop(&mut self) {
        if self.root().join("jails").is_dir() {
            let _ = self.run(&["stop", "--all", "--timeout", "2s"]);
        }
    }
}

#[track_caller]
fn expect_error(out: &Output, code: i32, want: &str) -> String {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        out.status() == code
            && lines.len() == 1
            && lines[0].starts_with("ljail: ")
            && lines[0].contains(want),
        "expected status {code} and one line 'ljail: ...{want}...'\n{}",
        out.report()
    );
    lines[0].to_string()
}

/// Processes whose command line mentions `needle`.
fn procs_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(c) = fs::read(e.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&c).replace('\0', " ");
        if text.contains(needle) {
            v.push((pid, text));
        }
    }
    v
}

/// The jail's program: the child of its PID 1 (waiting for PID 1 to start it).
#[track_caller]
fn program_of(pid1: u32) -> u32 {
    let mut prog = None;
    wait_until(UP, || {
        prog = fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
            .ok()
            .and_then(|k| k.split_whitespace().next().and_then(|p| p.parse().ok()));
        prog.is_some()
    });
    prog.unwrap_or_else(|| panic!("jail {pid1} runs no program"))
}

/// The jail's PID 1 from its status.
fn pid_of(st: &Value) -> u32 {
    st["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {st}")) as u32
}

/// What answers at `url` from inside the network namespace `net` (a path to an ns file).
/// (python3: the host's busybox wget crashes in some network namespaces.)
fn fetch(net: &str, url: &str) -> Option<String> {
    let py = which("python3")?;
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={net}")).arg(py).args([
        "-c",
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
        url,
    ]);
    let out = run_with_timeout(cmd, None, Duration::from_secs(30)).ok()?;
    (out.status() == 0).then_some(out.stdout)
}

/// Waits for `url` to answer with something containing `want`.
#[track_caller]
fn expect_answer(net: &str, url: &str, want: &str) {
    let mut got = None;
    let ok = wait_until(UP, || {
        got = fetch(net, url);
        got.as_deref().is_some_and(|g| g.contains(want))
    });
    assert!(ok, "{url} in {net} never answered '{want}' (last: {got:?})");
}

/// Nothing of the jail is left: no process mentions its directory, no mount, no freezer
/// cgroup of its supervisor, no ljspawn cgroup.
#[track_caller]
fn assert_nothing_left(lj: &Lj, name: &str, supervisor: u32, ljspawn: u32) {
    let dir = path_str(&lj.jail_dir(name));
    assert!(!lj.jail_dir(name).exists(), "{dir} still exists");
    let left = || procs_mentioning(&dir);
    assert!(wait_until(GONE, || left().is_empty()), "processes left: {:?}", left());
    assert!(!host_mountinfo().contains(&dir), "a mount of {dir} is left:\n{}", host_mountinfo());
    let freezer = PathBuf::from(format!("/sys/fs/cgroup/freezer/lightjail/ljail-{supervisor}"));
    assert!(!freezer.exists(), "{} is left", freezer.display());
    // ljspawn makes the jail's cgroups inside its caller's, wherever that is in each hierarchy.
    fn find(dir: &std::path::Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            if e.file_name().to_str() == Some(name) {
                out.push(e.path());
            } else if depth < 8 {
                find(&e.path(), name, depth + 1, out);
            }
        }
    }
    let mut left = Vec::new();
    for h in ["memory", "pids", "cpu", "cpu,cpuacct", "unified"] {
        find(&PathBuf::from(format!("/sys/fs/cgroup/{h}")), &format!("lightjail-{ljspawn}"), 0, &mut left);
    }
    assert!(left.is_empty(), "cgroups of the jail's ljspawn are left: {left:?}");
}

/// A busybox httpd service whose data is in the jail's upper: each start counts itself in
/// /data/boots and serves "boot N". On a bridge (root) or without network (rootless, setuid:
/// then reached by entering the jail's network namespace). Stop and start keep the data;
/// destroy leaves nothing.
fn service_survives_stop_start(lj: &Lj) {
    let script = "n=$(cat /data/boots 2>/dev/null || echo 0); n=$((n+1)); mkdir -p /data /www; \
                  echo $n > /data/boots; echo \"boot $n\" > /www/index.html; exec httpd -f -p 8080 -h /www";
    let bridged = lj.cx.mode == Mode::Root;
    let ns = bridged.then(NetNs::make);
    let mut create = vec!["create", "web", "--world", "busybox", "--restart", "on-failure"];
    if lj.cx.mode == Mode::Root {
        // With a cgroup of its own, which destroy must remove too.
        create.extend(["--pids", "64"]);
    }
    if bridged {
        ns.as_ref().unwrap().ip(&["link", "add", "ljtbr0", "type", "bridge"]);
        ns.as_ref().unwrap().ip(&["addr", "add", "10.213.0.1/24", "dev", "ljtbr0"]);
        ns.as_ref().unwrap().ip(&["link", "set", "ljtbr0", "up"]);
        create.extend(["--net", "bridge:ljtbr0", "--ip", "10.213.0.2/24", "--gateway", "10.213.0.1"]);
    }
    create.extend(["--", "/bin/sh", "-c", script]);
    lj.ok(&create);
    let prefix = ns.as_ref().map(NetNs::enter).unwrap_or_default();
    let start = |want: &str| {
        let out = lj.run_in(&prefix, &["start", "web"], &[]).ok();
        assert!(out.stderr.contains("ljail: start: web (pid "), "{}", out.report());
        let st = lj.wait_state("web", "running");
        let (net, url) = match &ns {
            Some(ns) => (ns.path.clone(), "http://10.213.0.2:8080/index.html".to_string()),
            None => (format!("/proc/{}/ns/net", pid_of(&st)), "http://127.0.0.1:8080/index.html".to_string()),
        };
        expect_answer(&net, &url, want);
        st
    };
    start("boot 1");
    lj.ok(&["stop", "web"]);
    assert_eq!(lj.status("web")["state"], "stopped");
    let st = start("boot 2");
    assert_eq!(fs::read_to_string(lj.jail_dir("web").join("upper/data/boots")).unwrap().trim(), "2");
    // Running: destroy refuses without --force.
    lj.fails(&["destroy", "web"], 5, "jail 'web' is running (stop it first, or destroy --force)");
    let sup = st["supervisor_pid"].as_u64().unwrap() as u32;
    let state: Value =
        serde_json::from_slice(&fs::read(lj.jail_dir("web").join("state.json")).unwrap()).unwrap();
    let ljspawn = state["ljspawn_pid"].as_u64().unwrap() as u32;
    lj.ok(&["destroy", "--force", "web"]);
    assert_nothing_left(lj, "web", sup, ljspawn);
    if let Some(ns) = &ns {
        // The kernel removes the veth with the jail's network namespace, asynchronously, a
        // moment after the jail's last process is gone (see ljspawn/src/net.rs).
        let jail_veth = |links: Vec<String>| links.iter().any(|l| l.starts_with("lj") && l != "ljtbr0");
        let gone = wait_until(GONE, || !jail_veth(ns.links()));
        assert!(gone, "veth left {GONE:?} after destroy: {:?}", ns.links());
    }
    lj.fails(&["status", "web"], 4, "no jail 'web'");
}

/// on-failure restarts a crashed service (a new pid, its count of runs grows); restart-max
/// ends it as failed; a clean exit is not restarted.
fn restart_policy(lj: &Lj) {
    let svc = "echo run >> /runs; exec sleep 1000";
    lj.ok(&[
        "create",
        "svc",
        "--world",
        "busybox",
        "--restart",
        "on-failure",
        "--restart-delay",
        "100ms",
        "--",
        "/bin/sh",
        "-c",
        svc,
    ]);
    lj.ok(&["start", "svc"]);
    let st = lj.wait_state("svc", "running");
    let pid1 = pid_of(&st);
    // Crash the service (the jail's program: the child of its PID 1).
    let prog = program_of(pid1);
    let runs = lj.jail_dir("svc").join("upper/runs");
    assert!(wait_until(UP, || fs::read_to_string(&runs).is_ok_and(|r| r.lines().count() == 1)));
    assert!(Command::new("kill").args(["-KILL", &prog.to_string()]).status().unwrap().success());
    let mut st = Value::Null;
    assert!(
        wait_until(UP, || {
            st = lj.status("svc");
            st["state"] == "running" && st["restarts"] == 1 && st["pid"].as_u64() != Some(pid1 as u64)
        }),
        "not restarted: {st}\n{}",
        lj.log("svc")
    );
    assert_eq!(st["last_exit"], 137);
    assert!(wait_until(UP, || fs::read_to_string(&runs).is_ok_and(|r| r.lines().count() == 2)));
    let log = lj.log("svc");
    assert!(log.contains("exited with status 137; restart 1 in 100ms"), "{log}");
    lj.ok(&["stop", "svc"]);

    // Failing at once: restarted restart-max times, then failed.
    lj.ok(&[
        "create",
        "bad",
        "--world",
        "busybox",
        "--restart",
        "on-failure",
        "--restart-delay",
        "50ms",
        "--restart-max",
        "2",
        "--",
        "/bin/sh",
        "-c",
        "echo run >> /runs; sleep 0.2; exit 3",
    ]);
    lj.ok(&["start", "bad"]);
    let st = lj.wait_state("bad", "failed");
    assert_eq!((st["restarts"].as_u64(), st["last_exit"].as_i64()), (Some(2), Some(3)), "{st}");
    assert_eq!(fs::read_to_string(lj.jail_dir("bad").join("upper/runs")).unwrap().lines().count(), 3);
    assert!(lj.log("bad").contains("not restarted: 2 restarts already (restart-max)"));

    // A clean exit under on-failure: exited, not restarted.
    lj.ok(&[
        "create",
        "once",
        "--world",
        "busybox",
        "--restart",
        "on-failure",
        "--",
        "/bin/sh",
        "-c",
        "sleep 0.2; exit 0",
    ]);
    lj.ok(&["start", "once"]);
    let st = lj.wait_state("once", "exited");
    assert_eq!((st["restarts"].as_u64(), st["last_exit"].as_i64()), (Some(0), Some(0)), "{st}");
}

/// `restart` stops a running jail and starts it again (a new pid, its program run once more);
/// `log -f` follows the log: lines the jail writes after it began are printed as they come.
fn restart_and_follow_log(lj: &Lj) {
    let svc = "echo run >> /runs; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    lj.ok(&["create", "t", "--world", "busybox", "--", "/bin/sh", "-c", svc]);
    lj.ok(&["start", "t"]);
    let pid1 = pid_of(&lj.wait_state("t", "running"));
    // (Running is the jail's pid known: its program may not have begun yet.)
    let runs = lj.jail_dir("t").join("upper/runs");
    let count = || fs::read_to_string(&runs).map_or(0, |r| r.lines().count());
    assert!(wait_until(UP, || count() == 1), "the first run never began:\n{}", lj.log("t"));
    let out = lj.ok(&["restart", "t"]);
    assert!(out.stderr.contains("ljail: restart: t (pid "), "{}", out.report());
    let st = lj.wait_state("t", "running");
    assert_ne!(pid_of(&st), pid1, "restart kept the old jail: {st}");
    assert!(wait_until(UP, || count() == 2), "runs: {}\n{}", count(), lj.log("t"));
    // `log -f` into a file: it prints what is there, then what the jail writes later (a line
    // that was not in the log when it started), and keeps running until killed.
    let before = lj.log("t").lines().filter(|l| l.starts_with("tick ")).count();
    let followed = lj.td.join("followed");
    let file = fs::File::create(&followed).expect("create followed");
    let mut cmd = lj.command_in(&[], &["log", "-f", "t"], &[]);
    cmd.stdout(file).stderr(Stdio::null()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("ljail log -f");
    let later = format!("tick {}", before + 3);
    let seen = wait_until(UP, || fs::read_to_string(&followed).is_ok_and(|t| t.lines().any(|l| l == later)));
    let still = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    let text = fs::read_to_string(&followed).unwrap_or_default();
    assert!(seen && still, "log -f did not follow ({later:?}; running: {still}):\n{text}");
    assert!(text.contains("started (pid "), "{text}");
    // `log` and `log -f` into a pipe whose reader has gone (`ljail log t | head -1`): 141,
    // quietly, as `list` (the log has lines: the first write fails).
    for (i, args) in [&["log", "t"][..], &["log", "-f", "t"]].iter().enumerate() {
        let mut argv = lj.env_argv();
        argv.push(lj.bin.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let out = lj_tests::run_into_closed_pipe(lj.cx, &lj.td.join(format!("log-fifo-{i}")), 1, &argv);
        assert!(out.status() == 141 && out.stderr.is_empty(), "{}", out.report());
    }
    lj.ok(&["stop", "t"]);
}

/// `start` returns once the supervisor has the jail's pid from ljspawn (whenever that comes),
/// and a jail that never got one is the start's error, with ljspawn's line (or the
/// supervisor's). Stand-ins for ljspawn (`LJSPAWN`), which the supervisor runs as it would
/// ljspawn: `--die-with-parent --json-status FD ...`.
fn start_waits_for_the_jail(lj: &Lj) {
    use std::os::unix::fs::PermissionsExt;
    let fake = |name: &str, body: &str| {
        let p = lj.file(name, &format!("#!/bin/sh\n{body}\n"));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        path_str(&p)
    };
    // Fails after a while without a pid for the jail, as ljspawn does when it cannot set it up.
    let fails =
        fake("fails", "sleep 0.3; echo 'ljspawn: cannot frobnicate the jail: no such thing' >&2; exit 125");
    // Gives its own pid as the jail's, late, and runs on until `stop`'s SIGTERM.
    let late = fake(
        "late",
        "sleep 0.3; echo \"{ \\\"child-pid\\\": $$ }\" > /proc/$$/fd/$3; echo late up\n\
         sleep 1000 & trap 'kill $!; exit 0' TERM; wait",
    );
    lj.ok(&["create", "j", "--world", "busybox", "--", "/bin/true"]);
    let out = lj.run_in(&[], &["start", "j"], &[("LJSPAWN", &fails)]);
    expect_error(&out, 1, "j did not start: ljspawn: cannot frobnicate the jail: no such thing");
    let st = lj.status("j");
    assert_eq!((st["state"].as_str(), st["last_exit"].as_i64()), (Some("failed"), Some(125)), "{st}");
    // The supervisor's own failure: its line.
    let out = lj.run_in(&[], &["start", "j"], &[("LJSPAWN", "/nonexistent/ljspawn")]);
    expect_error(&out, 1, "cannot run the jail: cannot run /nonexistent/ljspawn: no such file or directory");

    let out = lj.run_in(&[], &["start", "j"], &[("LJSPAWN", &late)]).ok();
    let pid: u64 = out
        .stderr
        .trim()
        .strip_prefix("ljail: start: j (pid ")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {}", out.report()));
    // Running, with that pid, as soon as start has returned.
    let st = lj.status("j");
    assert_eq!((st["state"].as_str(), st["pid"].as_u64()), (Some("running"), Some(pid)), "{st}");
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "{st}");
    lj.ok(&["stop", "j", "--timeout", "5s"]);
    assert!(lj.log("j").contains("late up"), "{}", lj.log("j"));
}

/// A process the test put in a jail's cgroup, killed (and the cgroups it kept named in `cgroups`
/// removed) when dropped: it keeps a supervisor's teardown waiting, as a process of the jail slow
/// to leave the cgroup would.
struct Holder {
    child: Child,
    cgroups: Vec<PathBuf>,
}

impl Holder {
    /// A `sleep` moved into the cgroup `cg` (v1: its `cgroup.procs`).
    fn into(cg: &Path) -> Holder {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("run sleep");
        let holder = Holder { child, cgroups: Vec::new() };
        fs::write(cg.join("cgroup.procs"), holder.child.id().to_string())
            .unwrap_or_else(|e| panic!("cannot move a process into {}: {e}", cg.display()));
        holder
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for cg in &self.cgroups {
            wait_until(GONE, || fs::remove_dir(cg).is_ok() || !cg.exists());
        }
    }
}

/// `stopping` while the supervisor tears an ended jail down: a root jail's supervisor removes
/// its v1 freezer cgroup once the jail's last processes have left it (up to 10 s), here held
/// by a process the test put there. `status` and `list` say `stopping` then (not `running`), and
/// `stopped` once the test lets the cgroup go; `stop` returns only then; `start` of a jail that
/// is stopping waits until it is stopped and starts it anew (not "running already"). Root only:
/// the other modes' supervisors have no cgroup to wait for on this kind of host (v1
/// controllers; the v2 `payload/` is the VM tier's), so their `stopping` is a moment.
fn stopping_while_torn_down(lj: &Lj) {
    if !Path::new("/sys/fs/cgroup/freezer/cgroup.procs").is_file() {
        lj.cx.skip("no v1 freezer hierarchy: a root jail's supervisor has no cgroup to wait for");
        return;
    }
    let gate = lj.dir("gate");
    let wait_gate = "while [ ! -e /gate/end ]; do sleep 0.1; done";
    lj.ok(&[
        "create",
        "s",
        "--world",
        "busybox",
        "--bind",
        &path_str(&gate),
        "/gate",
        "--",
        "/bin/sh",
        "-c",
        wait_gate,
    ]);
    let freezer = |st: &Value| {
        let sup = st["supervisor_pid"].as_u64().unwrap_or_else(|| panic!("no supervisor pid: {st}"));
        PathBuf::from(format!("/sys/fs/cgroup/freezer/lightjail/ljail-{sup}"))
    };
    let shows_stopping = || {
        let text = lj.ok(&["status", "s"]).stdout;
        let listed = lj.ok(&["list"]).stdout;
        text.lines().any(|l| l.split_whitespace().eq(["state", "stopping"]))
            && listed.lines().any(|l| l.split_whitespace().take(2).eq(["s", "stopping"]))
    };

    // `stop`: the jail ends at its SIGTERM; its teardown waits for the holder.
    lj.ok(&["start", "s"]);
    let st = lj.wait_state("s", "running");
    let cg = freezer(&st);
    let holder = Holder::into(&cg);
    let stop = lj.command_in(&[], &["stop", "s"], &[]);
    let stop =
        std::thread::spawn(move || run_with_timeout(stop, None, Duration::from_secs(90)).expect("run"));
    assert!(wait_until(UP, shows_stopping), "never stopping: {}\nlog:\n{}", lj.status("s"), lj.log("s"));
    drop(holder);
    let out = stop.join().unwrap().ok();
    assert!(out.stderr.contains("ljail: stop: s\n"), "{}", out.report());
    let st = lj.status("s");
    assert_eq!(st["state"], "stopped", "{st}");
    assert!(lj.ok(&["status", "s"]).stdout.lines().any(|l| l.split_whitespace().eq(["state", "stopped"])));
    assert!(!cg.exists(), "{} is left", cg.display());

    // `start` while it is stopping (the jail ended on its own): it waits for the teardown, which
    // the holder keeps going until the supervisor gives up on the cgroup (its 10 s), then
    // starts the jail anew.
    lj.ok(&["start", "s"]);
    let st = lj.wait_state("s", "running");
    let mut holder = Holder::into(&freezer(&st));
    holder.cgroups.push(freezer(&st));
    lj.file("gate/end", "");
    assert!(wait_until(UP, shows_stopping), "never stopping: {}\nlog:\n{}", lj.status("s"), lj.log("s"));
    fs::remove_file(gate.join("end")).expect("rm gate/end");
    let out = lj.ok(&["start", "s"]);
    assert!(out.stderr.contains("ljail: start: s (pid "), "not started anew:\n{}", out.report());
    let now = lj.wait_state("s", "running");
    assert_ne!(now["supervisor_pid"], st["supervisor_pid"], "{now}");
    let log = lj.log("s");
    assert!(log.contains("exited with status 0"), "{log}");
    drop(holder);
    lj.ok(&["stop", "s"]);
}

/// Four `start`s of one jail at the same time: one starts it, the others find it running;
/// one supervisor, one ljspawn.
fn concurrent_start_serialized(lj: &Lj) {
    lj.ok(&["create", "one", "--world", "busybox", "--", "/bin/sleep", "1000"]);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let cmd = lj.command_in(&[], &["start", "one"], &[]);
            std::thread::spawn(move || run_with_timeout(cmd, None, Duration::from_secs(60)).expect("run"))
        })
        .collect();
    let outs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let started = outs.iter().filter(|o| o.stderr.contains("ljail: start: one (pid ")).count();
    let already = outs.iter().filter(|o| o.stderr.contains("one is running already")).count();
    for o in &outs {
        assert_eq!(o.status(), 0, "{}", o.report());
    }
    assert_eq!((started, already), (1, 3), "{outs:#?}");
    let root = path_str(&lj.root());
    let sups: Vec<_> = procs_mentioning(&root)
        .into_iter()
        .filter(|(_, c)| c.contains("ljail-supervisor --name one "))
        .collect();
    assert_eq!(sups.len(), 1, "{sups:?}");
    let dir = path_str(&lj.jail_dir("one"));
    // ljspawn, and not the jail's PID 1 (a clone of it, with the same command line).
    let spawns: Vec<_> = procs_mentioning(&dir)
        .into_iter()
        .filter(|(p, c)| c.contains("--json-status") && lj_tests::parent_pid(*p) == Some(sups[0].0))
        .collect();
    assert_eq!(spawns.len(), 1, "{spawns:?}");
    lj.ok(&["stop", "one"]);
    assert!(procs_mentioning(&dir).is_empty());
}

/// As soon as `status` says a jail exited, it is not running for every other command either:
/// `start` runs it again (not "running already"), and `destroy` removes it (not "jail is
/// running"). The supervisor's end (its cleanup, then its exit, which frees the run lock) came
/// after the final state it wrote: most tries of this loop were refused.
fn destroy_and_start_right_after_exit(lj: &Lj) {
    for i in 0..10 {
        let name = format!("t{i}");
        lj.ok(&["create", &name, "--world", "busybox", "--", "/bin/true"]);
        lj.ok(&["start", &name]);
        lj.wait_state(&name, "exited");
        let again = lj.ok(&["start", &name]);
        assert!(again.stderr.contains(&format!("ljail: start: {name} (pid ")), "{}", again.report());
        let st = lj.wait_state(&name, "exited");
        let started = lj.log(&name).lines().filter(|l| l.contains(" started (pid ")).count();
        assert_eq!(started, 2, "{st}\n{}", lj.log(&name));
        lj.ok(&["destroy", &name]);
        assert!(!lj.jail_dir(&name).exists());
    }
}

/// `btrfs subvolume show P`: its UUID and its Parent UUID (`-` for none).
fn subvolume_uuids(p: &Path) -> (String, String) {
    let out =
        Command::new("btrfs").arg("subvolume").arg("show").arg(p).output().expect("btrfs subvolume show");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "btrfs subvolume show {}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    (field("UUID:"), field("Parent UUID:"))
}

/// `p` is a subvolume's root (inode 256, and btrfs says so), a snapshot of `parent` if given.
#[track_caller]
fn assert_subvolume(p: &Path, parent: Option<&Path>) {
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::symlink_metadata(p).expect("stat").ino(),
        256,
        "{} is not a subvolume's root",
        p.display()
    );
    let (_, from) = subvolume_uuids(p);
    if let Some(parent) = parent {
        assert_eq!(
            from,
            subvolume_uuids(parent).0,
            "{} is not a snapshot of {}",
            p.display(),
            parent.display()
        );
    }
}

/// On btrfs (a file system in a file the test makes, on a loop device) a jail's upper is a
/// subvolume of its own, and snapshot, rollback and clone take subvolume snapshots (each one's
/// Parent UUID is its source's), of a running jail too (frozen, as root here); the data round
/// trips and `destroy` leaves no subvolume.
fn btrfs_snapshots(lj: &Lj) {
    let Some(b) = Lj::new_on(lj.cx, Some("btrfs")) else { return };
    let show = "echo \"v=$(cat /v 2>/dev/null)\"; exec sleep 1000";
    let out = b.ok(&["create", "j", "--world", "busybox", "--", "/bin/sh", "-c", show]);
    assert!(out.stderr.contains("a btrfs subvolume"), "{}", out.report());
    let upper = b.jail_dir("j").join("upper");
    assert_subvolume(&upper, None);
    b.cx.write_caller_file(&upper.join("v"), "one");
    let out = b.ok(&["snapshot", "j", "s1"]);
    assert!(out.stderr.contains("(a btrfs subvolume snapshot)"), "{}", out.report());
    let s1 = b.jail_dir("j").join("snapshots/s1/upper");
    assert_subvolume(&s1, Some(&upper));
    b.cx.write_caller_file(&upper.join("v"), "two");
    assert_eq!(fs::read_to_string(s1.join("v")).unwrap(), "one");
    b.ok(&["rollback", "j", "s1"]);
    assert_subvolume(&upper, Some(&s1));
    assert_eq!(fs::read_to_string(upper.join("v")).unwrap(), "one");
    b.ok(&["start", "j"]);
    b.wait_state("j", "running");
    assert!(wait_until(UP, || b.log("j").contains("v=one")), "{}", b.log("j"));
    if b.cx.mode == Mode::Root && Path::new("/sys/fs/cgroup/freezer/cgroup.procs").exists() {
        b.cx.write_caller_file(&upper.join("v"), "live");
        b.ok(&["snapshot", "j", "live"]);
        let live = b.jail_dir("j").join("snapshots/live/upper");
        assert_subvolume(&live, Some(&upper));
        assert_eq!(fs::read_to_string(live.join("v")).unwrap(), "live");
    }
    b.ok(&["clone", "j", "k", "--snapshot", "s1"]);
    let k = b.jail_dir("k").join("upper");
    assert_subvolume(&k, Some(&s1));
    b.ok(&["start", "k"]);
    assert!(wait_until(UP, || b.log("k").contains("v=one")), "{}", b.log("k"));
    b.ok(&["stop", "--all"]);
    b.ok(&["destroy", "j"]);
    b.ok(&["destroy", "k"]);
    let mnt = b.mount.as_ref().expect("mounted").0.clone();
    let list =
        Command::new("btrfs").arg("subvolume").arg("list").arg(&mnt).output().expect("btrfs subvolume list");
    assert!(
        list.status.success() && list.stdout.is_empty(),
        "subvolumes left: {}",
        String::from_utf8_lossy(&list.stdout)
    );
}

/// On XFS with reflinks, a `--copy` jail's rootfs, snapshots, rollbacks and clones share the
/// data of what they copy (FICLONE: every regular file cloned, none copied; `filefrag` shows
/// the extents shared), and the data round trips.
fn reflink_copies_on_xfs(lj: &Lj) {
    let Some(x) = Lj::new_on(lj.cx, Some("xfs")) else { return };
    let show = "echo \"v=$(cat /v 2>/dev/null)\"; exec sleep 1000";
    let cloned_only = |out: &Output| {
        let e = &out.stderr;
        assert!(
            e.contains(" files cloned, 0 copied)") && !e.contains("(0 files cloned"),
            "not cloned:\n{}",
            out.report()
        );
    };
    cloned_only(&x.ok(&["create", "full", "--world", "busybox", "--copy", "--", "/bin/true"]));
    x.ok(&["create", "j", "--world", "busybox", "--", "/bin/sh", "-c", show]);
    let upper = x.jail_dir("j").join("upper");
    x.cx.write_caller_file(&upper.join("v"), &"one".repeat(20000));
    cloned_only(&x.ok(&["snapshot", "j", "s1"]));
    let snap = x.jail_dir("j").join("snapshots/s1/upper/v");
    let frag = Command::new("filefrag").arg("-v").arg(&snap).output().expect("filefrag");
    let text = String::from_utf8_lossy(&frag.stdout);
    assert!(text.contains("shared"), "the snapshot's file shares no extent:\n{text}");
    x.cx.write_caller_file(&upper.join("v"), "two");
    cloned_only(&x.ok(&["rollback", "j", "s1"]));
    assert_eq!(fs::read_to_string(upper.join("v")).unwrap(), "one".repeat(20000));
    cloned_only(&x.ok(&["clone", "j", "k", "--snapshot", "s1"]));
    x.ok(&["start", "k"]);
    assert!(wait_until(UP, || x.log("k").contains("v=oneone")), "{}", x.log("k"));
    x.ok(&["stop", "--all"]);
    for n in ["full", "j", "k"] {
        x.ok(&["destroy", n]);
    }
}

/// snapshot, change, rollback, clone (of a snapshot and of the live jail), and what the jail
/// sees of each. A running jail is frozen for its snapshot (root); elsewhere that is refused.
fn snapshot_rollback_clone(lj: &Lj) {
    let show = "echo \"v=$(cat /v 2>/dev/null)\"; exec sleep 1000";
    lj.ok(&["create", "j", "--world", "busybox", "--", "/bin/sh", "-c", show]);
    let upper = lj.jail_dir("j").join("upper");
    lj.cx.write_caller_file(&upper.join("v"), "one");
    lj.ok(&["snapshot", "j", "s1"]);
    lj.cx.write_caller_file(&upper.join("v"), "two");
    lj.fails(&["snapshot", "j", "s1"], 5, "snapshot 's1' of 'j' exists already");
    lj.fails(&["snapshot", "j", "../x"], 2, "bad snapshot name '../x'");
    lj.fails(&["rollback", "j", "nope"], 4, "no snapshot 'nope' of 'j' (snapshots: s1)");

    lj.ok(&["start", "j"]);
    lj.wait_state("j", "running");
    assert!(wait_until(UP, || lj.log("j").contains("v=two")), "{}", lj.log("j"));
    lj.fails(&["rollback", "j", "s1"], 5, "jail 'j' is running (stop it before a rollback)");
    if lj.cx.mode == Mode::Root && Path::new("/sys/fs/cgroup/freezer/cgroup.procs").exists() {
        lj.ok(&["snapshot", "j", "live"]);
        assert_eq!(fs::read_to_string(lj.jail_dir("j").join("snapshots/live/upper/v")).unwrap(), "two");
        // Thawed afterwards: the jail still runs and is not frozen.
        let st = lj.status("j");
        assert_eq!((st["state"].as_str(), st["frozen"].as_bool()), (Some("running"), Some(false)), "{st}");
        lj.ok(&["clone", "j", "live-copy"]);
        assert_eq!(fs::read_to_string(lj.jail_dir("live-copy").join("upper/v")).unwrap(), "two");
    } else {
        lj.fails(&["snapshot", "j", "live"], 5, "is running and cannot be frozen");
    }
    lj.ok(&["stop", "j"]);

    lj.ok(&["rollback", "j", "s1"]);
    assert_eq!(fs::read_to_string(upper.join("v")).unwrap(), "one");
    lj.ok(&["start", "j"]);
    assert!(wait_until(UP, || lj.log("j").contains("v=one")), "{}", lj.log("j"));
    lj.ok(&["stop", "j"]);

    lj.ok(&["clone", "j", "c", "--snapshot", "s1"]);
    lj.fails(&["clone", "j", "c"], 5, "jail 'c' exists already");
    lj.ok(&["start", "c"]);
    assert!(wait_until(UP, || lj.log("c").contains("v=one")), "{}", lj.log("c"));
    assert!(!lj.log("c").contains("v=two"));
    assert_eq!(lj.status("c")["snapshots"], Value::Array(vec![]));
    lj.ok(&["stop", "c"]);
    lj.ok(&["destroy", "c"]);
    lj.ok(&["destroy", "j"]);
    assert!(!lj.jail_dir("j").exists() && !lj.jail_dir("c").exists());
}

/// `create NAME IMAGE[@PREFIX]`: a jail on an image ljbuild built (resolved at create to an
/// exact version, the config saying which), its layers under the jail's upper; a prefix no
/// version matches is one line and status 4.
fn from_an_image(lj: &Lj) {
    lj.dir("img");
    let jf =
        lj.file("img/Jailfile", "name demo/hello\nversion 1.2.0\nworld busybox\n---\necho built > /hello\n");
    let mut argv = lj.env_argv();
    argv.push(lj.cx.dir.join("bin/ljbuild").into());
    argv.push(jf.into());
    let out = run_with_timeout(lj.cx.command(argv), None, Duration::from_secs(90)).expect("run ljbuild");
    assert_eq!(out.status(), 0, "ljbuild:\n{}", out.report());
    let out =
        lj.ok(&["create", "hi", "demo/hello@1.2", "--", "/bin/sh", "-c", "cat /hello; echo mine > /mine"]);
    assert!(out.stderr.contains("demo/hello@1.2.0 (the highest version matching '1.2')"), "{}", out.report());
    assert!(fs::read_to_string(lj.jail_dir("hi").join("config"))
        .unwrap()
        .contains("\nimage demo/hello@1.2.0\n"));
    assert_eq!(lj.status("hi")["source"], "image demo/hello@1.2.0");
    lj.ok(&["start", "hi"]);
    lj.wait_state("hi", "exited");
    assert!(lj.log("hi").lines().any(|l| l == "built"), "{}", lj.log("hi"));
    assert_eq!(fs::read_to_string(lj.jail_dir("hi").join("upper/mine")).unwrap(), "mine\n");
    lj.fails(
        &["create", "no", "demo/hello@9", "--", "/bin/true"],
        4,
        "no version of demo/hello matches '9' (available: 1.2.0)",
    );
    // (The supervisor may still be ending after `exited` is reported: stop waits for it.)
    lj.ok(&["stop", "hi"]);
    lj.ok(&["destroy", "hi"]);
}

/// `--copy`: a full copy of the world, mounted read-write, independent of it.
fn copy_jail(lj: &Lj) {
    let out = lj.ok(&[
        "create",
        "full",
        "--world",
        "busybox",
        "--copy",
        "--",
        "/bin/sh",
        "-c",
        "rm /etc/lj-world; echo copied > /mark; exec sleep 1000",
    ]);
    assert!(out.stderr.contains("a full copy:"), "{}", out.report());
    let rootfs = lj.jail_dir("full").join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    lj.ok(&["start", "full"]);
    assert!(wait_until(UP, || rootfs.join("mark").is_file()));
    assert!(!rootfs.join("etc/lj-world").exists(), "the copy is written in place");
    assert!(lj.root().join("worlds/busybox/etc/lj-world").exists(), "the world is untouched");
    lj.ok(&["stop", "full"]);
    assert!(lj.ok(&["snapshot", "full", "s"]).stderr.contains("full@s"));
    assert!(lj.jail_dir("full").join("snapshots/s/rootfs/mark").is_file());
    assert_eq!(lj.status("full")["root"], "copy");
}

/// `start --all`: autostart jails by priority (lower first); `stop --all`: the other way.
fn start_all_in_boot_order(lj: &Lj) {
    let shared = lj.dir("shared");
    let shared_s = path_str(&shared);
    for (name, prio, auto) in [("a", "30", true), ("b", "10", true), ("c", "20", false)] {
        let svc = format!("trap 'echo stop-{name} >> /shared/order; exit 0' TERM; echo {name} >> /shared/order; sleep 1000 & wait");
        let mut args =
            vec!["create", name, "--world", "busybox", "--bind", &shared_s, "/shared", "--priority", prio];
        if auto {
            args.push("--autostart");
        }
        args.extend(["--", "/bin/sh", "-c", &svc]);
        lj.ok(&args);
    }
    let out = lj.ok(&["start", "--all"]);
    assert!(out.stderr.find("start: b").unwrap() < out.stderr.find("start: a").unwrap(), "{}", out.report());
    assert_eq!(lj.status("c")["state"], "stopped");
    let order = shared.join("order");
    // `start` returns once the jail's program runs, not once that program has written its line:
    // the start order is ljail's (above); here both services ran, and c did not.
    assert!(wait_until(UP, || fs::read_to_string(&order).is_ok_and(|o| o.lines().count() == 2)));
    let started = fs::read_to_string(&order).unwrap();
    let mut lines: Vec<&str> = started.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["a", "b"], "{started}");
    // `stop` waits for the jail to exit, so the shutdown order is exact.
    lj.ok(&["stop", "--all"]);
    assert_eq!(fs::read_to_string(&order).unwrap(), format!("{started}stop-a\nstop-b\n"));
    for n in ["a", "b", "c"] {
        assert_eq!(lj.status(n)["state"], "stopped", "{n}");
    }
    // Idempotent: stopping a stopped jail, starting a running one.
    let out = lj.ok(&["stop", "a"]);
    assert!(out.stderr.contains("a is not running"));
}

/// `status --json` and `list --json`.
fn json_outputs(lj: &Lj) {
    lj.ok(&[
        "create",
        "x",
        "--world",
        "busybox",
        "--autostart",
        "--priority",
        "7",
        "--setenv",
        "K",
        "v w",
        "--",
        "/bin/sleep",
        "1000",
    ]);
    lj.ok(&["create", "y", "--world", "busybox", "--", "/bin/true"]);
    let st = lj.status("x");
    assert_eq!(st["name"], "x");
    assert_eq!(st["state"], "stopped");
    assert_eq!(st["pid"], Value::Null);
    assert_eq!(st["source"], "world busybox");
    assert_eq!(st["root"], "thin");
    assert_eq!(st["net"], "none");
    assert_eq!(st["command"], serde_json::json!(["/bin/sleep", "1000"]));
    assert_eq!((st["autostart"].as_bool(), st["priority"].as_i64()), (Some(true), Some(7)));
    lj.ok(&["start", "x"]);
    let st = lj.status("x");
    assert_eq!(st["state"], "running");
    let pid = pid_of(&st);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let out = lj.ok(&["list", "--json"]);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["x", "y"]);
    assert_eq!(list[0]["pid"].as_u64(), Some(pid as u64));
    assert_eq!(list[1]["state"], "stopped");
    let text = lj.ok(&["list"]).stdout;
    assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("x ") && l.contains("running")), "{text}");
    // Into a pipe whose reader has gone (`ljail list | head -1`): ljail ends quietly with
    // 141 (128 + SIGPIPE), never a panic. A FIFO opened for writing, its only reader closed
    // before ljail runs, gives EPIPE at the first write, whatever the scheduling.
    for (i, args) in
        [&["list"][..], &["list", "--json"], &["status", "x"], &["status", "x", "--json"]].iter().enumerate()
    {
        let mut argv: Vec<OsString> =
            ["/bin/sh", "-c", "mkfifo \"$0\" && exec 3<>\"$0\" 4>\"$0\" 3<&- && exec \"$@\" >&4"]
                .map(OsString::from)
                .to_vec();
        argv.push(lj.td.join(format!("fifo-{i}")).into());
        argv.extend(lj.env_argv());
        argv.push(lj.bin.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let out = run_with_timeout(lj.cx.command(argv), None, Duration::from_secs(60)).expect("run ljail");
        assert!(
            out.status() == 141 && out.stderr.is_empty(),
            "ljail {args:?} into a closed pipe\n{}",
            out.report()
        );
    }
    lj.ok(&["stop", "x"]);
}

/// ljail's and ljail-supervisor's failure and status lines into a stderr whose reader has gone
/// (`ljail ... 2>&1 | head -0`, a log reader that went away): each exit status stays the one
/// the line goes with, never a panic's abort (134: `eprintln!` panics on EPIPE), and nothing
/// says "panicked" on stdout, which stays the test's.
fn lines_into_closed_stderr(lj: &Lj) {
    let run = |i: usize, env: &[&str], prog: &Path, args: &[&str]| {
        let mut argv = lj.env_argv();
        argv.extend(env.iter().map(OsString::from));
        argv.push(prog.into());
        argv.extend(args.iter().map(OsString::from));
        lj_tests::run_into_closed_pipe(lj.cx, &lj.td.join(format!("fifo-{i}")), 2, &argv)
    };
    let supervisor = lj.bin.with_file_name("ljail-supervisor");
    let cases: [(&[&str], &Path, &[&str], i32); 9] = [
        // "no jails in ROOT", a status line: 0.
        (&[], &lj.bin, &["list"], 0),
        (&[], &lj.bin, &["--no-such-option"], 2),
        (&[], &lj.bin, &["start", "nosuch"], 4),
        (&[], &lj.bin, &["create", "j", "--world", "busybox", "--", "/bin/sleep", "1000"], 0),
        // The supervisor's own failure, then ljail's line.
        (&["LJSPAWN=/nonexistent/ljspawn"], &lj.bin, &["start", "j"], 1),
        // "start: j (pid N)", then "stop: j".
        (&[], &lj.bin, &["start", "j"], 0),
        (&[], &lj.bin, &["stop", "j"], 0),
        (&[], &supervisor, &["--no-such-option", "x", "--"], 2),
        (&[], &supervisor, &["--enter"], 125),
    ];
    for (i, (env, prog, args, code)) in cases.iter().enumerate() {
        let out = run(i, env, prog, args);
        assert!(
            out.status() == *code && !out.stdout.contains("panicked"),
            "expected {code} into a closed stderr:\n{}",
            out.report()
        );
    }
    assert_eq!(lj.status("j")["state"], "stopped");
}

/// Bad names, bad config lines (by `edit` and in the file), unknown jails and ljspawn's own
/// refusals: one line each, with their exit codes.
fn bad_names_and_config_lines(lj: &Lj) {
    for bad in ["bad/name", ".hidden", "a b", "ä"] {
        lj.fails(
            &["create", bad, "--world", "busybox", "--", "/bin/true"],
            2,
            &format!("bad jail name '{bad}'"),
        );
    }
    lj.fails(&["start", "nosuch"], 4, "no jail 'nosuch' in ");
    lj.fails(&["create", "w", "--world", "nosuch", "--", "/bin/true"], 4, "world 'nosuch' not found");
    lj.fails(&["create", "w", "nosuch/image", "--", "/bin/true"], 4, "no overlay nosuch/image");
    lj.fails(
        &["create", "w", "--world", "busybox", "--net", "bridge", "--", "/bin/true"],
        2,
        "bad net 'bridge'",
    );
    lj.fails(
        &["create", "w", "--world", "busybox", "--ip", "10.1.2.3/24", "--", "/bin/true"],
        2,
        "'ip' needs 'net bridge:BR'",
    );
    lj.fails(&["create", "w", "--world", "busybox"], 2, "(see ljail --help)");
    // Nothing with a control character reaches a config or a systemd unit.
    lj.fails(
        &["create", "w", "--world", "busybox", "--", "/bin/sh", "-c", "echo a\nb"],
        2,
        "command \"echo a\\nb\" has a control character: a jail's config and its systemd unit hold none",
    );
    lj.fails(
        &["create", "w", "--world", "busybox", "--setenv", "A", "x\u{1b}y", "--", "/bin/true"],
        2,
        "setenv \"x\\u{1b}y\" has a control character",
    );
    // The proc masks stay for root's jails (their ids are the host's).
    if lj.cx.mode == Mode::Root {
        lj.fails(
            &["create", "w", "--world", "busybox", "--proc-unmasked", "--", "/bin/true"],
            2,
            "--proc-unmasked is not for root's jails",
        );
    }
    if lj.cx.mode != Mode::Root {
        // ljspawn's own refusal, found at create (by ljspawn --dry-run), not at the first start.
        lj.fails(
            // (A bridge: root's, or granted to a setuid caller. `--cap-add` is no refusal any more:
            // it is kept inside the jail's own user namespace.)
            &[
                "create",
                "w",
                "--world",
                "busybox",
                "--net",
                "bridge:ljnobr0",
                "--ip",
                "10.1.2.3/24",
                "--",
                "/bin/true",
            ],
            7,
            "ljspawn refuses the jail's settings: ljspawn: ",
        );
    }
    assert!(!lj.jail_dir("w").exists());
    lj.ok(&["create", "ok", "--world", "busybox", "--", "/bin/true"]);
    lj.fails(&["create", "ok", "--world", "busybox", "--", "/bin/true"], 5, "jail 'ok' exists already");

    let config = lj.jail_dir("ok").join("config");
    let before = fs::read_to_string(&config).unwrap();
    let n = before.lines().count() + 1;
    let editor = lj.file("editor.sh", "#!/bin/sh\necho 'frobnicate yes' >> \"$1\"\n");
    fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = lj.run_in(&[], &["edit", "ok"], &[("EDITOR", &path_str(&editor))]);
    let line = expect_error(
        &out,
        3,
        &format!("{}: line {n}: unknown key 'frobnicate' (expected one of: image, world,", path_str(&config)),
    );
    assert!(!line.contains('\n'));
    assert_eq!(fs::read_to_string(&config).unwrap(), before, "a bad edit leaves the config as it was");
    // A good edit is saved.
    let editor2 = lj.file("editor2.sh", "#!/bin/sh\necho 'hostname edited' >> \"$1\"\n");
    fs::set_permissions(&editor2, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    lj.run_in(&[], &["edit", "ok"], &[("EDITOR", &path_str(&editor2))]).ok();
    assert!(fs::read_to_string(&config).unwrap().ends_with("hostname edited\n"));
    // A config broken by hand: every command that reads it names the line.
    lj.cx.write_caller_file(&config, &format!("{before}net host\nnet none\n"));
    let line = lj.fails(
        &["start", "ok"],
        3,
        &format!("{}: line {}: 'net' repeated (first on line {})", path_str(&config), n + 1, n),
    );
    assert_eq!(line.matches("ljail:").count(), 1);
    lj.cx.write_caller_file(&config, "world busybox\n");
    lj.fails(&["status", "ok"], 3, "no 'command' line (what the jail runs)");
    // Another user's root (root's, 0700): its jails are out of reach, and the line says whose
    // it is (not "cannot create" a directory that exists).
    if lj.cx.mode != Mode::Root && lj_tests::current_uid() == 0 {
        let theirs = lj.cx.root_tempdir();
        fs::set_permissions(theirs.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let root = theirs.str();
        for args in [&["list"][..], &["status", "web"], &["stop", "web"]] {
            let out = lj.run_in(&[], args, &[("LIGHTJAIL_ROOT", &root)]);
            expect_error(
                &out,
                6,
                &format!("cannot open {root}: permission denied: it is uid 0's (mode 0700)"),
            );
        }
    }
}

/// `create --dry-run` and `start --dry-run` print the ljspawn command and change nothing.
fn dry_run_runs_nothing(lj: &Lj) {
    let out = lj.ok(&[
        "create",
        "d",
        "--world",
        "busybox",
        "--memory",
        "64M",
        "--dry-run",
        "--",
        "/bin/sh",
        "-c",
        "echo hi",
    ]);
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("ljspawn "))
        .unwrap_or_else(|| panic!("{}", out.report()));
    assert!(
        line.contains("--upper ") && line.contains("jails/d/upper") && line.contains("--memory 64M"),
        "{line}"
    );
    assert!(line.ends_with("-- /bin/sh -c 'echo hi'"), "{line}");
    assert!(!line.contains("--proc-unmasked"), "{line}");
    assert!(!lj.jail_dir("d").exists());
    // A --docker jail of a user hosts nested jails: its /proc unmasked (root's keeps the masks).
    let out = lj.ok(&["create", "d", "--world", "busybox", "--docker", "--dry-run", "--", "/bin/true"]);
    let line = out.lines().into_iter().find(|l| l.starts_with("ljspawn ")).unwrap_or_default();
    assert_eq!(line.contains(" --proc-unmasked "), lj.cx.mode != Mode::Root, "{}", out.report());
    lj.ok(&["create", "d", "--world", "busybox", "--", "/bin/sleep", "1000"]);
    let out = lj.ok(&["start", "d", "--dry-run"]);
    assert!(
        out.stdout.contains("--hostname d") && out.stdout.trim_end().ends_with("-- /bin/sleep 1000"),
        "{}",
        out.report()
    );
    assert_eq!(lj.status("d")["state"], "stopped");
    assert!(!lj.jail_dir("d").join("log").exists());
}

/// The status fields that make up a process's confinement.
fn confinement(pid: u32) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            [
                "Uid:",
                "Gid:",
                "Groups:",
                "CapInh:",
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
                "Seccomp_filters:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

/// `ljail exec`: the command runs in the jail (its hostname, files, processes, cgroup) under
/// the confinement of the jail's own program (ids, groups, capabilities, no_new_privs, seccomp;
/// the same namespaces, seen from the host and from inside), with its own exit status; not
/// into a stopped jail; ljspawn's `--join` refuses what is not a jail (a pid of the test's, the
/// caller's own plain process), another user's jail (root's) and, setuid, the rest below.
fn exec_into_running_jail(lj: &Lj) {
    let svc = "echo ready > /state; exec sleep 1000";
    let mut create = vec!["create", "ex", "--world", "busybox", "--setenv", "GREETING", "hi there"];
    if lj.cx.mode == Mode::Root {
        create.extend(["--pids", "64"]);
    }
    create.extend(["--", "/bin/sh", "-c", svc]);
    lj.ok(&create);
    lj.fails(&["exec", "ex", "--", "/bin/true"], 5, "jail 'ex' is not running");
    lj.ok(&["start", "ex"]);
    let out = lj.ok(&["exec", "ex", "--", "/bin/sh", "-c", "hostname; for i in $(seq 300); do test -e /state && break; sleep 0.1; done; cat /state; echo \"$GREETING\"; cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/self/cgroup"]);
    let lines = out.lines();
    assert_eq!(&lines[..3], ["ex", "ready", "hi there"], "{}", out.report());
    assert!(
        lines[3].contains("ljspawn") && lines[3].contains("/jails/ex/upper"),
        "PID 1 is the jail's: {}",
        out.report()
    );
    if lj.cx.mode == Mode::Root {
        // In the jail's cgroups (the jail's cgroup namespace shows them as /).
        for c in ["pids", "freezer"] {
            assert!(
                lines.iter().any(|l| l.ends_with(&format!(":{c}:/"))),
                "not in the jail's {c} cgroup:\n{}",
                out.report()
            );
        }
    }
    assert_eq!(lj.run(&["exec", "ex", "/bin/sh", "-c", "exit 7"]).status(), 7);
    assert_eq!(lj.run(&["exec", "ex", "--", "nosuch"]).status(), 127);
    // The same confinement as the jail's program, read from the host while both run.
    let st = lj.status("ex");
    let pid1 = pid_of(&st);
    let program = program_of(pid1);
    let mut joined = lj.command_in(&[], &["exec", "ex", "--", "/bin/sleep", "30"], &[]);
    joined.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = joined.spawn().expect("ljail exec");
    let mut sleeper = None;
    wait_until(UP, || {
        sleeper = lj_tests::process_tree(child.id()).into_iter().find(|p| {
            fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == "/bin/sleep\x0030\x00")
        });
        sleeper.is_some()
    });
    let sleeper = sleeper.expect("the joined sleep");
    let (a, b) = (confinement(sleeper), confinement(program));
    let ns = |p: u32, n: &str| fs::read_link(format!("/proc/{p}/ns/{n}")).unwrap();
    let joined_ns: Vec<_> = NAMESPACES.iter().map(|n| ns(sleeper, n)).collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(a.len(), 11, "{a:?}");
    assert_eq!(a, b, "the joined process and the jail's program differ");
    assert!(
        a.contains(&"CapEff:\t0000000000000000".to_string()) && a.contains(&"NoNewPrivs:\t1".to_string()),
        "{a:?}"
    );
    if lj.cx.mode != Mode::Root {
        // The caller's ids on the host (its jail's), none of root's.
        let me = lj.cx.caller_uid;
        assert!(a.contains(&format!("Uid:\t{me}\t{me}\t{me}\t{me}")), "{a:?}");
    }
    for (n, j) in NAMESPACES.iter().zip(&joined_ns) {
        assert_eq!(j, &ns(program, n), "{n} namespace");
    }
    // Seen from inside, too: the joined command's own namespace links are the program's.
    let inside = lj.ok(&[
        "exec",
        "ex",
        "--",
        "/bin/sh",
        "-c",
        "for n in mnt pid net uts ipc user cgroup; do readlink /proc/self/ns/$n; done",
    ]);
    let want: Vec<String> =
        NAMESPACES.iter().map(|n| ns(program, n).to_string_lossy().into_owned()).collect();
    assert_eq!(inside.lines(), want, "{}", inside.report());

    // ljspawn --join itself: not a jail; another user's jail.
    let ljspawn = |args: &[&str]| {
        let mut argv: Vec<String> = vec![path_str(&lj.cx.bin), "--root".into(), lj.cx.world_str()];
        argv.extend(args.iter().map(|s| s.to_string()));
        run_with_timeout(lj.cx.command(&argv), None, Duration::from_secs(20)).expect("ljspawn")
    };
    let me = std::process::id().to_string();
    let out = ljspawn(&["--join", &me, "--", "/bin/true"]);
    assert_eq!(out.status(), 125, "{}", out.report());
    assert!(out.stderr.contains("is not the PID 1 of a jail"), "{}", out.report());
    // The caller's own plain process (a sleep it started) is no jail either.
    let mut own = lj.cx.command(["/bin/sleep", "30"]);
    own.stdin(Stdio::null());
    let mut own = own.spawn().expect("the caller's sleep");
    let out = ljspawn(&["--join", &own.id().to_string(), "--", "/bin/true"]);
    let _ = own.kill();
    let _ = own.wait();
    assert_eq!(out.status(), 125, "{}", out.report());
    assert!(out.stderr.contains("is not the PID 1 of a jail"), "{}", out.report());
    if lj.cx.mode == Mode::Setuid {
        setuid_join_refusals(lj, pid1, &ljspawn);
    }
    if lj.cx.mode != Mode::Root && lj_tests::current_uid() == 0 {
        // A jail of root's: refused to another user.
        // (Made by the same executable: setuid, the setuid copy, which runs as root for root.)
        let mut root_jail = Command::new(&lj.cx.bin);
        root_jail.args(["--root", &lj.cx.world_str(), "--", "/bin/sleep", "30"]).stdin(Stdio::null());
        let mut rj = root_jail.spawn().expect("root jail");
        let mut pid1 = None;
        wait_until(UP, || {
            pid1 = fs::read_to_string(format!("/proc/{0}/task/{0}/children", rj.id()))
                .ok()
                .and_then(|c| c.split_whitespace().next().map(str::to_string));
            pid1.is_some()
        });
        let out = ljspawn(&["--join", pid1.as_deref().expect("root jail's PID 1"), "--", "/bin/true"]);
        let _ = rj.kill();
        let _ = rj.wait();
        assert_eq!(out.status(), 125, "{}", out.report());
        assert_eq!(
            out.stderr.trim(),
            format!("ljspawn: jail {} is not yours", pid1.unwrap()),
            "{}",
            out.report()
        );
    }
    lj.ok(&["stop", "ex"]);
}

/// The parent pid of `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// The namespaces a joined command shares with the jail's program.
const NAMESPACES: [&str; 7] = ["mnt", "pid", "net", "uts", "ipc", "user", "cgroup"];

/// Setuid `--join` (root enters the jail's user namespace for the caller): what it refuses
/// beyond another user's jail. `ljspawn` runs the setuid copy as the caller.
fn setuid_join_refusals(lj: &Lj, pid1: u32, ljspawn: &dyn Fn(&[&str]) -> Output) {
    let pid1 = pid1.to_string();
    // Options that give the jail other maps than its own (`--user 5` with the jail's root
    // being the caller): the namespace is not the one setuid ljspawn makes for them.
    let out = ljspawn(&["--join", &pid1, "--user", "5", "--", "/bin/true"]);
    assert_eq!(out.status(), 125, "{}", out.report());
    assert_eq!(
        out.stderr.trim(),
        format!("ljspawn: refused: jail {pid1}: its user namespace maps other ids than setuid ljspawn maps for you with these options (not your jail, or not its own options)"),
        "{}",
        out.report()
    );
    // What setuid mode forces on every jail is forced on a joined command.
    let out = ljspawn(&["--join", &pid1, "--seccomp", "none", "--", "/bin/true"]);
    assert_eq!(out.status(), 125, "{}", out.report());
    assert!(out.stderr.contains("--seccomp none is not allowed in setuid mode"), "{}", out.report());
    // A jail whose uid 0 is not the caller (`--user 5`: the caller is its uid 5, its uid 0 a
    // subordinate id): joined as its uid 5, which is the caller's host uid.
    let mut j5 = lj.cx.command([
        path_str(&lj.cx.bin),
        "--root".into(),
        lj.cx.world_str(),
        "--user".into(),
        "5".into(),
        "--".into(),
        "/bin/sleep".into(),
        "60".into(),
    ]);
    j5.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut j5 = j5.spawn().expect("a --user 5 jail");
    let mut p5 = None;
    wait_until(UP, || {
        p5 = lj_tests::process_tree(j5.id()).into_iter().find(|p| {
            fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == "/bin/sleep\x0060\x00")
        });
        p5.is_some()
    });
    let p5 = p5.expect("the --user 5 jail's program");
    let p5_pid1 = parent_of(p5).expect("its PID 1");
    let out =
        ljspawn(&["--join", &p5_pid1.to_string(), "--user", "5", "--", "/bin/sh", "-c", "id -u; id -g"]);
    let program = confinement(p5);
    let _ = j5.kill();
    let _ = j5.wait();
    assert_eq!((out.status(), out.lines()), (0, vec!["5".to_string(), "5".to_string()]), "{}", out.report());
    let me = lj.cx.caller_uid;
    assert!(program.contains(&format!("Uid:\t{me}\t{me}\t{me}\t{me}")), "{program:?}");
    crafted_userns_refused(lj);
    if lj_tests::current_uid() != 0 {
        return;
    }
    // A jail of root's made with the setuid copy whose PID 1 runs as the caller's uid (root's
    // `--user UID --as-pid-1`, no user namespace): the same executable, the caller's uid, and
    // still refused, for its namespace is the host's.
    let me = lj.cx.caller_uid.to_string();
    let mut rj = Command::new(&lj.cx.bin);
    rj.args(["--root", &lj.cx.world_str(), "--user", &me, "--as-pid-1", "--", "/bin/sleep", "30"])
        .stdin(Stdio::null());
    let mut rj = rj.spawn().expect("root jail");
    let mut rpid = None;
    // (Its PID 1 is the program, running as the caller's uid, once it runs sleep: before that,
    // still root's setup.)
    wait_until(UP, || {
        rpid = fs::read_to_string(format!("/proc/{0}/task/{0}/children", rj.id()))
            .ok()
            .and_then(|c| c.split_whitespace().next().map(str::to_string))
            .filter(|p| {
                fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == "/bin/sleep\x0030\x00")
            });
        rpid.is_some()
    });
    let rpid = rpid.expect("root jail's PID 1 running its program");
    let out = ljspawn(&["--join", &rpid, "--as-pid-1", "--", "/bin/true"]);
    let _ = rj.kill();
    let _ = rj.wait();
    assert_eq!(out.status(), 125, "{}", out.report());
    assert_eq!(
        out.stderr.trim(),
        format!("ljspawn: refused: jail {rpid}: it has no user namespace of its own"),
        "{}",
        out.report()
    );
}

/// Setuid `--join` of a jail in a user namespace the caller made, with exactly the maps setuid
/// ljspawn writes for it (`--subids`: newuidmap/newgidmap) and the setuid copy run there as its
/// root (where setuid is ignored: root mode, no user namespace of the jail's own): every other
/// check passes, and the namespace's owner (the caller, not root) refuses it.
fn crafted_userns_refused(lj: &Lj) {
    let script = r#"set -eu
S=$1 W=$2 U=$(id -u) G=$(id -g) me=$(id -un)
SU=$(grep "^$me:" /etc/subuid | head -1 | cut -d: -f2)
SG=$(grep "^$me:" /etc/subgid | head -1 | cut -d: -f2)
unshare --user -- /bin/sleep 60 & h=$!
trap 'kill $h 2>/dev/null; pkill -u "$U" -xf "/bin/sleep 61" || true' EXIT
while [ "$(readlink /proc/$h/ns/user)" = "$(readlink /proc/self/ns/user)" ]; do sleep 0.05; done
newuidmap $h 0 "$U" 1 1 "$SU" 65536
newgidmap $h 0 "$G" 1 1 "$SG" 65536
nsenter -t $h -U -- "$S" --root "$W" -- /bin/sleep 61 &
i=0
while ! prog=$(pgrep -u "$U" -xf '/bin/sleep 61'); do i=$((i + 1)); [ $i -lt 400 ] || exit 9; sleep 0.05; done
pid1=$(ps -o ppid= -p "$prog" | tr -d ' ')
echo "pid1 $pid1"
"$S" --root "$W" --subids --join "$pid1" -- /bin/id || echo "status $?"
"#;
    let out = run_with_timeout(
        lj.cx.command(["/bin/sh", "-c", script, "sh", &path_str(&lj.cx.bin), &lj.cx.world_str()]),
        None,
        Duration::from_secs(30),
    )
    .expect("crafted namespace");
    let pid1 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid1 "))
        .unwrap_or_else(|| panic!("no jail in the crafted namespace: {}", out.report()))
        .to_string();
    assert!(out.stdout.contains("status 125"), "{}", out.report());
    assert!(!out.stdout.contains("uid=0"), "joined: {}", out.report());
    assert!(
        out.stderr.contains(&format!(
            "ljspawn: refused: jail {pid1}: its user namespace was not made by setuid ljspawn (not root's)"
        )),
        "{}",
        out.report()
    );
}

/// `--gpu`: the device nodes and NVIDIA's files (as `nvidia-container-cli list` names them) the
/// test makes, in a private mount namespace whose `/dev` is a tmpfs (the host's is never
/// touched): refused without nodes; with them, bound into the jail, the files read-only.
fn gpu_profile(lj: &Lj) {
    let t = lj.dir("gpu");
    let ts = path_str(&t);
    lj.dir("gpu/bin");
    lj.dir("gpu/lib");
    lj.file("gpu/lib/libnvidia-ml.so.1", "fake nvidia-ml\n");
    let exe = |rel: &str, text: &str| {
        let p = lj.file(rel, text);
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    exe("gpu/bin/nvidia-smi", "#!/bin/sh\necho NVIDIA-SMI fake\n");
    exe(
        "gpu/bin/nvidia-container-cli",
        &format!("#!/bin/sh\n[ \"$1\" = list ] || exit 1\necho {ts}/lib/libnvidia-ml.so.1\necho {ts}/bin/nvidia-smi\n"),
    );
    // (The jail's program owns the library in every mode: only the read-only bind keeps it
    // from writing.)
    let show = format!(
        "ls -ln /dev/nvidia0 /dev/nvidiactl /dev/nvidia-caps/nvidia-cap1; cat {ts}/lib/libnvidia-ml.so.1; \
         {ts}/bin/nvidia-smi; (echo x >> {ts}/lib/libnvidia-ml.so.1) 2>/dev/null && echo writable || echo read-only"
    );
    // What the jail may open is what its caller may on the host: a 0666 node, any caller; the
    // 0660 render node of root's group, root only. (Opened for reading and writing: no driver
    // is behind the test's nodes, so an open the permissions allow fails with ENXIO instead.)
    let amd = "ls -ln /dev/kfd /dev/dri/card0 /dev/dri/renderD128; \
               for n in /dev/kfd /dev/dri/card0 /dev/dri/renderD128; do \
               if (: <> $n) 2>&1 | grep -q 'ermission denied'; then echo \"$n not usable\"; else echo \"$n usable\"; fi; done";
    // As root, in a mount namespace of the test's: a /dev of its own, with the GPU nodes when
    // $1 is `nodes`; then the caller's commands.
    let setup = r#"set -e
mount -t tmpfs -o mode=0755 lj-test-dev /dev
mk() { mknod -m 666 "/dev/$1" c "$2" "$3"; }
mk null 1 3; mk zero 1 5; mk full 1 7; mk random 1 8; mk urandom 1 9; mk tty 5 0
if [ "$0" = nodes ]; then
    mkdir /dev/dri /dev/nvidia-caps
    mknod -m 666 /dev/dri/card0 c 226 0
    mknod -m 660 /dev/dri/renderD128 c 226 128
    mknod -m 666 /dev/kfd c 240 0
    mknod -m 666 /dev/nvidia0 c 195 0
    mknod -m 666 /dev/nvidiactl c 195 255
    mknod -m 400 /dev/nvidia-caps/nvidia-cap1 c 236 1
fi
exec "$@"
"#;
    let refuse = r#"T=$1 LJAIL=$2
for v in nvidia amd intel; do
    "$LJAIL" create "none-$v" --world busybox --gpu $v -- /bin/true 2>> "$T/refused" && exit 10 || echo "status $?" >> "$T/refused"
done
"#;
    let run = r#"set -e
T=$1 LJAIL=$2 SHOW=$3 AMD=$4
export PATH="$T/bin:$PATH"
"$LJAIL" -q create g --world busybox --gpu nvidia -- /bin/sh -c "$SHOW"
"$LJAIL" -q create i --world busybox --gpu intel -- /bin/sh -c 'ls -ln /dev/dri/card0'
"$LJAIL" -q create a --world busybox --gpu amd -- /bin/sh -c "$AMD"
"$LJAIL" -q start g
"$LJAIL" -q start i
"$LJAIL" -q start a
for n in $(seq 600); do
    grep -q -e read-only -e writable "$LIGHTJAIL_ROOT/jails/g/log" && grep -q card0 "$LIGHTJAIL_ROOT/jails/i/log" \
        && grep -q -e 'renderD128 usable' -e 'renderD128 not usable' "$LIGHTJAIL_ROOT/jails/a/log" && break
    sleep 0.05
done
"$LJAIL" log g > "$T/g.log"
"$LJAIL" log i > "$T/i.log"
"$LJAIL" log a > "$T/a.log"
"$LJAIL" -q stop --all
"#;
    let in_ns = |phase: &str, script: &str| {
        let mut inner = lj.env_argv();
        inner
            .extend(["/bin/sh", "-c", script, "sh", &ts, &path_str(&lj.bin), &show, amd].map(OsString::from));
        let wrapped = lj.cx.command(inner);
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "/bin/sh", "-c", setup, phase]);
        cmd.arg(wrapped.get_program()).args(wrapped.get_args()).current_dir(lj.td.path());
        let out = run_with_timeout(cmd, None, Duration::from_secs(120)).expect("unshare");
        assert_eq!(out.status(), 0, "{phase}: {}", out.report());
    };
    in_ns("none", refuse);
    let refused = fs::read_to_string(t.join("refused")).unwrap();
    assert_eq!(
        refused,
        "ljail: --gpu nvidia: this host has no GPU device nodes (/dev/nvidia*): is the driver loaded?\nstatus 4\n\
         ljail: --gpu amd: this host has no GPU device nodes (/dev/dri, /dev/kfd): is the driver loaded?\nstatus 4\n\
         ljail: --gpu intel: this host has no GPU device nodes (/dev/dri): is the driver loaded?\nstatus 4\n"
    );
    in_ns("nodes", run);
    let g = fs::read_to_string(t.join("g.log")).unwrap();
    for want in ["195,   0 ", "195, 255 ", "236,   1 ", "fake nvidia-ml", "NVIDIA-SMI fake", "read-only"] {
        assert!(g.contains(want), "{want:?} missing in the jail's output:\n{g}");
    }
    assert!(!g.contains("writable"), "{g}");
    let i = fs::read_to_string(t.join("i.log")).unwrap();
    assert!(i.contains("226,   0 ") && i.contains("/dev/dri/card0"), "{i}");
    let a = fs::read_to_string(t.join("a.log")).unwrap();
    for want in ["240,   0 ", "226,   0 ", "226, 128 ", "/dev/kfd usable", "/dev/dri/card0 usable"] {
        assert!(a.contains(want), "{want:?} missing in the jail's output:\n{a}");
    }
    let render = if lj.cx.mode == Mode::Root { "usable" } else { "not usable" };
    assert!(a.lines().any(|l| l == format!("/dev/dri/renderD128 {render}")), "{a}");
    assert_eq!(fs::read_to_string(t.join("lib/libnvidia-ml.so.1")).unwrap(), "fake nvidia-ml\n");
    assert!(fs::read_to_string(lj.jail_dir("g").join("config")).unwrap().contains("\ngpu nvidia\n"));
    assert!(fs::read_to_string(lj.jail_dir("a").join("config")).unwrap().contains("\ngpu amd\n"));
}

/// The Debian world with systemd (tests/prepare.sh: `worlds/debian/make-world.sh
/// --include=systemd,dbus`, kept at `$LJ_DEBIAN_SYSTEMD_WORLD`) at `worlds/debsd` of the test's
/// root: the shared one (root), or the test user's copy (rootless, which must own its files).
fn systemd_world(lj: &Lj) -> bool {
    use std::os::unix::fs::MetadataExt;
    let shared = std::env::var_os("LJ_DEBIAN_SYSTEMD_WORLD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lj-debian-systemd-world"));
    let world = if lj.cx.caller_uid == lj_tests::current_uid() {
        shared
    } else {
        lj.cx.dir.join(format!("worlds/debian-systemd-{}", lj_tests::TEST_USER))
    };
    if !world.join("usr/lib/systemd/systemd").is_file()
        || fs::metadata(&world).map(|m| m.uid()).ok() != Some(lj.cx.caller_uid)
    {
        lj.cx.skip(&format!(
            "no Debian world with systemd of the caller's at {} (tests/prepare.sh makes it with debootstrap)",
            world.display()
        ));
        return false;
    }
    let link = lj.root().join("worlds/debsd");
    std::os::unix::fs::symlink(&world, &link).unwrap();
    let _ = std::os::unix::fs::lchown(&link, Some(lj.cx.caller_uid), Some(lj.cx.caller_gid));
    true
}

/// The cgroup v2 hierarchy's mount point (`/sys/fs/cgroup` on a pure v2 host, often
/// `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_mount() -> Option<PathBuf> {
    host_mountinfo().lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = left.split(' ').nth(4)?;
        (right.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mount))
    })
}

/// What systemd's user manager gives a user with `Delegate=yes`: a cgroup v2 subtree it owns
/// (`lj-test-PID/`), the commands run in its child `ljail/`. Rootless ljspawn makes the jail's
/// cgroup beside that one. Removed with everything below it when dropped.
struct Delegated {
    top: PathBuf,
}

impl Delegated {
    fn new(lj: &Lj) -> Delegated {
        let top =
            cgroup2_mount().expect("a cgroup v2 hierarchy").join(format!("lj-test-{}", std::process::id()));
        fs::create_dir_all(top.join("ljail")).unwrap_or_else(|e| panic!("mkdir {}: {e}", top.display()));
        for p in [
            top.clone(),
            top.join("cgroup.procs"),
            top.join("cgroup.subtree_control"),
            top.join("cgroup.threads"),
        ] {
            std::os::unix::fs::chown(&p, Some(lj.cx.caller_uid), Some(lj.cx.caller_gid))
                .expect("chown cgroup");
        }
        std::os::unix::fs::chown(top.join("ljail"), Some(lj.cx.caller_uid), Some(lj.cx.caller_gid))
            .expect("chown");
        std::os::unix::fs::chown(
            top.join("ljail/cgroup.procs"),
            Some(lj.cx.caller_uid),
            Some(lj.cx.caller_gid),
        )
        .expect("chown");
        Delegated { top }
    }

    /// The prefix that runs a command in the delegated cgroup (as root, before the caller's).
    fn enter(&self) -> Vec<String> {
        let procs = path_str(&self.top.join("ljail/cgroup.procs"));
        vec!["/bin/sh".into(), "-c".into(), format!("echo $$ > {procs} && exec \"$@\""), "sh".into()]
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        fn rm(d: &Path) {
            if let Ok(entries) = fs::read_dir(d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        rm(&e.path());
                    }
                }
            }
            let _ = fs::remove_dir(d);
        }
        // Whatever the test left in the subtree (a jail still being torn down) goes first: the
        // kernel removes only empty cgroups.
        let _ = fs::write(self.top.join("cgroup.kill"), "1");
        let gone = wait_until(Duration::from_secs(30), || {
            rm(&self.top);
            !self.top.exists()
        });
        if !gone {
            eprintln!("warning: cannot remove the test's cgroup {}", self.top.display());
        }
    }
}

/// Issue 15 item 4: `create --init` boots the world's own systemd as the jail's PID 1 (its own
/// user namespace with the whole id range, a delegated cgroup v2 seen as /, /sys read-only,
/// /run and /run/lock tmpfs, `container=lightjail`, a machine id of its own) to `running` or
/// `degraded`; `stop` halts it cleanly (SIGRTMIN+3: systemd exits 0), and an init that ignores
/// the halt is killed after the stop timeout. Rootless, in a cgroup subtree delegated to the
/// user (as systemd's `Delegate=yes` gives one).
fn init_boots_systemd(lj: &Lj) {
    if !systemd_world(lj) {
        return;
    }
    let deleg = (lj.cx.mode != Mode::Root).then(|| Delegated::new(lj));
    let prefix = deleg.as_ref().map(Delegated::enter).unwrap_or_default();
    let out = lj.ok(&["create", "sd", "--world", "debsd", "--init"]);
    assert!(out.stderr.contains("create: sd"), "{}", out.report());
    let config = fs::read_to_string(lj.jail_dir("sd").join("config")).unwrap();
    assert!(
        config.contains("\ninit yes\n") && config.contains("\ncommand /lib/systemd/systemd\n"),
        "{config}"
    );
    let id_file = lj.jail_dir("sd").join("upper/etc/machine-id");
    let id = fs::read_to_string(&id_file).unwrap();
    assert!(id.len() == 33 && id.trim_end().bytes().all(|b| b.is_ascii_hexdigit()), "machine id {id:?}");

    lj.run_in(&prefix, &["start", "sd"], &[]).ok();
    let st = lj.wait_state("sd", "running");
    let pid1 = pid_of(&st);
    let state: Value =
        serde_json::from_slice(&fs::read(lj.jail_dir("sd").join("state.json")).unwrap()).unwrap();
    let ljspawn = state["ljspawn_pid"].as_u64().unwrap() as u32;
    let exec = |cmd: &str| lj.run(&["exec", "sd", "--", "/bin/sh", "-c", cmd]);
    let mut last = None;
    let up = wait_until(Duration::from_secs(90), || {
        let out = exec("systemctl is-system-running");
        let s = out.stdout.trim().to_string();
        last = Some(out);
        s == "running" || s == "degraded"
    });
    assert!(
        up,
        "systemd never got to running or degraded: {}\nfailed units: {}\nlog:\n{}",
        last.map(|o| o.report()).unwrap_or_default(),
        exec("systemctl --failed --no-pager").stdout,
        lj.log("sd")
    );
    // The program is PID 1, with the container interface systemd expects.
    let facts = exec(
        "cat /proc/1/comm; tr '\\0' '\\n' < /proc/1/environ | grep '^container='; cat /etc/machine-id; \
         tail -n 1 /proc/1/cgroup; \
         while read -r dev mnt fs opts rest; do case $mnt in /sys|/sys/fs/cgroup|/run|/run/lock) echo \"$mnt $fs ${opts%%,*}\";; esac; done < /proc/self/mounts",
    )
    .ok()
    .stdout;
    let want = format!(
        "systemd\ncontainer=lightjail\n{id}0::/init.scope\n/sys sysfs ro\n/sys/fs/cgroup cgroup2 rw\n/run tmpfs rw\n/run/lock tmpfs rw\n"
    );
    assert_eq!(facts, want, "log:\n{}", lj.log("sd"));
    // Its cgroup is its own: systemd made its tree there (seen from the host under the jail's).
    let host_cg = fs::read_to_string(format!("/proc/{pid1}/cgroup")).unwrap();
    let v2 = host_cg.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("").to_string();
    assert!(v2.ends_with(&format!("/lightjail-{ljspawn}/init.scope")), "{host_cg}");
    let jail_cg = cgroup2_mount().unwrap().join(v2.trim_start_matches('/')).parent().unwrap().to_path_buf();
    assert!(jail_cg.join("system.slice").is_dir(), "{}", jail_cg.display());

    // A clean halt: systemd exits 0 (SIGKILL would be 137), and its cgroup tree goes.
    lj.ok(&["stop", "sd"]);
    let st = lj.status("sd");
    assert_eq!(
        (st["state"].as_str(), st["last_exit"].as_i64()),
        (Some("stopped"), Some(0)),
        "{st}\n{}",
        lj.log("sd")
    );
    assert!(wait_until(GONE, || !jail_cg.exists()), "{} is left", jail_cg.display());
    let dir = path_str(&lj.jail_dir("sd"));
    assert!(wait_until(GONE, || procs_mentioning(&dir).is_empty()), "{:?}", procs_mentioning(&dir));

    // An init that ignores SIGRTMIN+3 (PID 1 without a handler): killed after the timeout.
    lj.ok(&["create", "hang", "--world", "busybox", "--init", "--", "/bin/sleep", "1000"]);
    lj.run_in(&prefix, &["start", "hang"], &[]).ok();
    lj.wait_state("hang", "running");
    lj.ok(&["stop", "hang", "--timeout", "1s"]);
    let st = lj.status("hang");
    assert_eq!(
        (st["state"].as_str(), st["last_exit"].as_i64()),
        (Some("stopped"), Some(137)),
        "{st}\n{}",
        lj.log("hang")
    );
    drop(deleg);
}

/// `ljail shell NAME` on a terminal (a pty the test made, standing in for the user's): a login
/// shell (the jail user's from its /etc/passwd) on a pty of the jail's own devpts, with the
/// terminal's window size and its changes, job control (^Z, fg) and ^C reaching the foreground
/// job, not the shell; the user's terminal gets its modes back after `exit`. Without a
/// terminal: one line saying so.
fn shell_on_its_own_pty(lj: &Lj) {
    let mut p = match lj_tests::Pty::open() {
        Ok(p) => p,
        Err(e) => return lj.cx.skip(&format!("cannot open a pty pair: {e}")),
    };
    p.give_to(lj.cx.caller_uid);
    p.set_size(33, 111);
    let before = p.modes();
    lj.ok(&["create", "sh1", "--world", "busybox", "--", "/bin/sleep", "1000"]);
    lj.ok(&["start", "sh1"]);
    lj.wait_state("sh1", "running");
    lj.fails(
        &["shell", "sh1"],
        2,
        "shell needs a terminal on stdin (for a command without one: ljail exec sh1 -- CMD)",
    );
    let setsid = which("setsid").expect("setsid (util-linux)");
    let mut cmd = lj.command_in(&[path_str(&setsid), "-c".into()], &["shell", "sh1"], &[]);
    let slave = || {
        let f =
            fs::OpenOptions::new().read(true).write(true).open(&p.slave_path).expect("open the pty slave");
        Stdio::from(f)
    };
    cmd.stdin(slave()).stdout(slave()).stderr(slave());
    // (setsid: a session of its own whose controlling terminal is the pty, so ^C there never
    // reaches the test runner. Not a process group leader, so setsid execs without a fork.)
    let mut child = cmd.spawn().expect("ljail shell");
    let limit = Duration::from_secs(30);
    let expect = |p: &mut lj_tests::Pty, needle: &str| {
        assert!(p.expect(needle, limit), "no {needle:?} on the terminal; it shows:\n{}", p.output);
    };
    p.write(b"echo login-$0 home-$HOME; tty; stty size\r");
    expect(&mut p, "33 111\r\n");
    assert!(
        p.output.contains("login--sh home-/root") || p.output.contains("login-/bin/sh home-/root"),
        "{}",
        p.output
    );
    assert!(p.output.contains("/dev/pts/0\r\n"), "not the jail's own pty:\n{}", p.output);
    assert!(!p.canonical(), "the user's terminal is not raw while the shell runs");
    p.set_size(40, 120);
    p.write(b"stty size\r");
    expect(&mut p, "40 120\r\n");
    // A sleep no other mode's run of this test (running at the same time) has.
    let nap = format!(
        "sleep {}",
        match lj.cx.mode {
            Mode::Root => 105,
            Mode::Rootless => 106,
            Mode::Setuid => 107,
        }
    );
    p.write(format!("{nap}\r").as_bytes());
    let mut sleep = None;
    assert!(wait_until(limit, || {
        sleep = procs_mentioning(&nap).into_iter().map(|(pid, _)| pid).next();
        sleep.is_some()
    }));
    let sleep = sleep.unwrap();
    let st = |pid: u32| {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next()).unwrap_or('?')
    };
    p.write(b"\x1a");
    assert!(wait_until(limit, || st(sleep) == 'T'), "^Z did not stop sleep\n{}", p.output);
    p.write(b"fg\r");
    assert!(wait_until(limit, || st(sleep) == 'S'), "fg did not continue sleep\n{}", p.output);
    p.write(b"\x03");
    assert!(
        wait_until(limit, || matches!(st(sleep), '?' | 'Z' | 'X')),
        "^C did not stop sleep\n{}",
        p.output
    );
    p.write(b"echo st=$((0+$?)) alive\r");
    expect(&mut p, "st=130 alive");
    p.write(b"exit\r");
    let mut status = None;
    assert!(
        wait_until(limit, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        }),
        "ljail shell did not end after exit:\n{}",
        p.output
    );
    let _ = child.wait();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.output);
    assert_eq!(p.modes(), before, "the user's terminal modes were not restored");
    // The jail itself runs on.
    assert_eq!(lj.status("sh1")["state"], "running");
}

/// An OCI archive of a one-binary image (the host's static busybox, `CMD echo ...`), made
/// offline with buildah (as root, the test's helper), readable by the caller. buildah keeps its
/// storage in the test's own directory (vfs: nothing mounted on the host): the tests running at
/// the same time, both modes of this one among them, never share an image or a container.
fn busybox_oci_archive(lj: &Lj, name: &str) -> Option<PathBuf> {
    let Some(buildah) = which("buildah") else {
        lj.cx.skip("buildah not installed (Debian package buildah)");
        return None;
    };
    let bb = ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(PathBuf::from).find(|p| p.is_file())?;
    let archive = lj.td.join(format!("{name}.tar"));
    let store = lj.cx.root_tempdir();
    let b = format!(
        "{} --root {s}/storage --runroot {s}/run --storage-driver vfs",
        path_str(&buildah),
        s = store.str()
    );
    let script = format!(
        "set -e; c=$({b} from scratch); trap '{b} rm \"$c\" >/dev/null; {b} rmi -f {name}:1 >/dev/null 2>&1 || true' EXIT; \
         m=$({b} mount \"$c\"); mkdir -p \"$m/bin\"; cp {bb} \"$m/bin/busybox\"; \
         for t in sh echo cat id; do ln -s busybox \"$m/bin/$t\"; done; \
         {b} config --cmd '[\"/bin/sh\", \"-c\", \"echo hello from $(id -u) in podman\"]' \"$c\"; \
         {b} commit -q \"$c\" {name}:1 >/dev/null; {b} push -q {name}:1 oci-archive:{a}:{name}:1",
        bb = path_str(&bb),
        a = path_str(&archive),
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script]);
    let out = run_with_timeout(cmd, None, Duration::from_secs(120)).expect("buildah");
    assert_eq!(out.status(), 0, "making the OCI archive:\n{}", out.report());
    lj.cx.chown_caller(&archive);
    Some(archive)
}

/// Issue 15 item 5: a `--docker` jail runs podman: it loads an image from an OCI archive made
/// offline with buildah and runs a container of it (its own mount, PID and network
/// namespaces, crun, overlay storage in the jail's own `containers/`), as root of the jail's
/// user namespace; rootless in a cgroup subtree delegated to the user. Without `--docker`,
/// podman in the same world cannot.
fn docker_profile_runs_podman(lj: &Lj) {
    use std::os::unix::fs::MetadataExt;
    let shared = std::env::var_os("LJ_DEBIAN_PODMAN_WORLD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lj-debian-podman-world"));
    let world = if lj.cx.caller_uid == lj_tests::current_uid() {
        shared
    } else {
        lj.cx.dir.join(format!("worlds/debian-podman-{}", lj_tests::TEST_USER))
    };
    if !world.join("usr/bin/podman").is_file()
        || !world.join("etc/lj-world").is_file()
        || fs::metadata(&world).map(|m| m.uid()).ok() != Some(lj.cx.caller_uid)
    {
        return lj.cx.skip(&format!(
            "no Debian world with podman of the caller's at {} (tests/prepare.sh makes it with debootstrap)",
            world.display()
        ));
    }
    let link = lj.root().join("worlds/debpod");
    std::os::unix::fs::symlink(&world, &link).unwrap();
    let _ = std::os::unix::fs::lchown(&link, Some(lj.cx.caller_uid), Some(lj.cx.caller_gid));
    // Rootless: the delegated cgroup comes from a subtree delegated to the user.
    let deleg = (lj.cx.mode != Mode::Root).then(|| Delegated::new(lj));
    let prefix = deleg.as_ref().map(Delegated::enter).unwrap_or_default();
    let Some(archive) = busybox_oci_archive(lj, "lj-podman-test") else { return };
    let a = path_str(&archive);
    for (name, docker) in [("pod", true), ("plain", false)] {
        let mut create = vec!["create", name, "--world", "debpod", "--ro-bind", &a, "/image.tar"];
        if docker {
            create.push("--docker");
        }
        create.extend(["--", "/bin/sleep", "1000"]);
        lj.ok(&create);
        lj.run_in(&prefix, &["start", name], &[]).ok();
        lj.wait_state(name, "running");
    }
    // podman as in a container without systemd: cgroupfs, file events.
    let podman = "podman --cgroup-manager=cgroupfs --events-backend=file";
    // The container's line is read back from its log, not from `podman run`'s own output:
    // podman 4.3 can lose a fast-exiting container's output on its attach socket (run exits
    // 0, prints nothing, while the log has the line: seen under a full test run's load).
    // conmon writes the log before the exit file podman run waits for, so `podman logs`
    // after it has all of it. Everything but the logs goes to stderr (in the report).
    let run = format!(
        "{podman} load -q -i /image.tar >&2 && \
         {podman} run --name lj-hello --log-driver k8s-file --network none localhost/lj-podman-test:1 >&2 && \
         {podman} logs lj-hello && {podman} rm lj-hello >&2"
    );
    // (Rootless: from the user's delegated subtree, as everything of a user's session runs.)
    let out = lj.run_in(&prefix, &["exec", "pod", "--", "/bin/sh", "-c", &run], &[]);
    assert!(
        out.status() == 0 && out.stdout == "hello from 0 in podman\n",
        "podman in the --docker jail:\n{}",
        out.report()
    );
    // The images are in the jail's own storage, kept with it (root's: owned by the jail's
    // private range, BASE being its root).
    assert!(lj.jail_dir("pod").join("containers/storage/overlay-images").is_dir());
    if lj.cx.mode == Mode::Root {
        let base = private_base(lj, "pod").expect("root's --docker jail in a private id range");
        assert_eq!(ug(&lj.jail_dir("pod").join("containers")), (base, base));
        assert_eq!(ug(&lj.jail_dir("pod").join("containers/storage")), (base, base));
    }
    let out = lj.run_in(&prefix, &["exec", "plain", "--", "/bin/sh", "-c", &run], &[]);
    assert_ne!(out.status(), 0, "podman ran without --docker:\n{}", out.report());
    for name in ["pod", "plain"] {
        lj.ok(&["destroy", "--force", name]);
    }
    drop(deleg);
}

/// A bridged jail without an address gets one from a DHCP server on the bridge with its own
/// client: busybox udhcpd on a bridge in a test network namespace, busybox udhcpc in the jail
/// (eth0 up without an address, CAP_NET_ADMIN and CAP_NET_RAW in the jail); the service then
/// answers on the leased address, and the route is the server's.
fn dhcp_with_the_jails_own_client(lj: &Lj) {
    let Some(busybox) =
        ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(PathBuf::from).find(|p| p.is_file())
    else {
        return lj.cx.skip("no busybox for udhcpd (Debian package busybox-static)");
    };
    let ns = NetNs::make();
    ns.ip(&["link", "add", "ljtbr2", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.215.0.1/24", "dev", "ljtbr2"]);
    ns.ip(&["link", "set", "ljtbr2", "up"]);
    let conf = lj.file(
        "udhcpd.conf",
        &format!(
            "start 10.215.0.50\nend 10.215.0.59\ninterface ljtbr2\nlease_file {}\npidfile {}\n\
             option subnet 255.255.255.0\noption router 10.215.0.1\noption lease 600\n",
            path_str(&lj.td.join("leases")),
            path_str(&lj.td.join("udhcpd.pid"))
        ),
    );
    fs::write(lj.td.join("leases"), b"").unwrap();
    let mut server = Command::new("nsenter")
        .arg(format!("--net={}", ns.path))
        .arg(&busybox)
        .args(["udhcpd", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("udhcpd");
    // The client's script: what busybox udhcpc tells it, applied with ip.
    let script = lj.file(
        "dhcp.sh",
        "#!/bin/sh\ncase $1 in\n  deconfig) ip addr flush dev $interface; ip link set $interface up ;;\n  \
         bound|renew) ip addr add $ip/$mask dev $interface; for r in $router; do ip route add default via $r; done ;;\nesac\n",
    );
    let mut perms = fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&script, perms).unwrap();
    let cmd = "udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /dhcp.sh || exit 3; mkdir -p /www; \
               ip -4 -o addr show eth0 | awk '{print $4}' > /www/index.html; ip route >> /www/index.html; \
               exec httpd -f -p 8080 -h /www";
    lj.ok(&[
        "create",
        "dh",
        "--world",
        "busybox",
        "--net",
        "bridge:ljtbr2",
        "--ro-bind",
        &path_str(&script),
        "/dhcp.sh",
        "--",
        "/bin/sh",
        "-c",
        cmd,
    ]);
    let config = fs::read_to_string(lj.jail_dir("dh").join("config")).unwrap();
    assert!(config.contains("\nnet bridge:ljtbr2\n") && !config.contains("\nip "), "{config}");
    let dry = lj.ok(&["start", "--dry-run", "dh"]).stdout;
    assert!(dry.contains(" --ip dhcp --cap-add CAP_NET_ADMIN --cap-add CAP_NET_RAW "), "{dry}");
    lj.run_in(&ns.enter(), &["start", "dh"], &[]).ok();
    lj.wait_state("dh", "running");
    // The address the server leased (udhcpd picks one of its range from the client's MAC).
    let mut addr = None;
    let leased = wait_until(Duration::from_secs(30), || {
        let out = lj.run(&["exec", "dh", "--", "/bin/sh", "-c", "ip -4 -o addr show eth0"]);
        addr = out.stdout.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(str::to_string);
        addr.is_some()
    });
    assert!(leased, "eth0 never got an address; log:\n{}", lj.log("dh"));
    let addr = addr.unwrap();
    let host = addr.strip_suffix("/24").unwrap_or_else(|| panic!("not a /24 of the server's: {addr}"));
    let last: u8 = host.strip_prefix("10.215.0.").and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((50..=59).contains(&last), "{addr} is not in the server's range");
    let url = format!("http://{host}:8080/index.html");
    let mut page = None;
    let answered = wait_until(UP, || {
        page = fetch(&ns.path, &url);
        page.as_deref().is_some_and(|p| p.contains(&addr))
    });
    assert!(answered, "the jail never answered on {url}: {page:?}; log:\n{}", lj.log("dh"));
    let page = page.unwrap();
    assert!(page.contains("default via 10.215.0.1 dev eth0"), "{page}");
    lj.ok(&["destroy", "--force", "dh"]);
    let _ = server.kill();
    let _ = server.wait();
}

/// `--net macvlan:IFACE --ip --gateway`: the jail's eth0 is a macvlan (bridge mode) of IFACE
/// with the configured address and default route, and its service answers from the far end of
/// IFACE's link (a veth whose peer is in a second test namespace, as an uplink would be); the
/// macvlan goes with the jail.
fn macvlan_network(lj: &Lj) {
    let (ns, far) = (NetNs::make(), NetNs::make());
    ns.ip(&["link", "add", "ljtup0", "type", "veth", "peer", "name", "ljtup1", "netns", &far.pid()]);
    ns.ip(&["link", "set", "ljtup0", "up"]);
    far.ip(&["addr", "add", "10.216.0.1/24", "dev", "ljtup1"]);
    far.ip(&["link", "set", "ljtup1", "up"]);
    let cmd = "mkdir -p /www; ip -4 -o addr show eth0 | awk '{print $4}' > /www/index.html; \
               ip route >> /www/index.html; exec httpd -f -p 8080 -h /www";
    let net = ["--net", "macvlan:ljtup0", "--ip", "10.216.0.5/24", "--gateway", "10.216.0.1"];
    let mut create = vec!["create", "mv", "--world", "busybox"];
    create.extend(net);
    create.extend(["--", "/bin/sh", "-c", cmd]);
    lj.ok(&create);
    let config = fs::read_to_string(lj.jail_dir("mv").join("config")).unwrap();
    for line in ["net macvlan:ljtup0", "ip 10.216.0.5/24", "gateway 10.216.0.1"] {
        assert!(config.lines().any(|l| l == line), "no '{line}' in the config:\n{config}");
    }
    let dry = lj.ok(&["start", "--dry-run", "mv"]).stdout;
    assert!(dry.contains(&net.join(" ")), "{dry}");
    lj.run_in(&ns.enter(), &["start", "mv"], &[]).ok();
    let st = lj.wait_state("mv", "running");
    // Its own interface, in its own network namespace: a macvlan on ljtup0.
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{}/ns/net", pid_of(&st))).args(["ip", "-d", "-o", "link", "show", "eth0"]);
    let link = run_with_timeout(cmd, None, Duration::from_secs(30)).expect("nsenter ip").ok().stdout;
    assert!(link.contains("macvlan mode bridge"), "{link}");
    let index = ns.ip(&["-o", "link", "show", "ljtup0"]);
    let index = index.split(':').next().unwrap_or("?").trim();
    assert!(link.contains(&format!("eth0@if{index}:")), "eth0 is not on ljtup0 ({index}): {link}");
    let url = "http://10.216.0.5:8080/index.html";
    expect_answer(&far.path, url, "default via 10.216.0.1 dev eth0");
    let page = fetch(&far.path, url).unwrap_or_default();
    assert!(page.lines().next() == Some("10.216.0.5/24"), "{page}");
    lj.ok(&["stop", "mv"]);
    assert!(fetch(&far.path, url).is_none(), "{url} still answers after stop");
    assert_eq!(ns.links().iter().filter(|l| l.as_str() != "lo").collect::<Vec<_>>(), ["ljtup0"]);
    lj.ok(&["destroy", "mv"]);
}

/// Issue 15 item 3, where systemd is PID 1: a booted jail (`--init --docker`: Debian's systemd
/// 252 with systemd-machined, tests/prepare.sh's world at `$LJ_DEBIAN_MACHINED_WORLD`) gets the
/// built ljail and ljspawn (read-only) and a root of its own; ljail in it runs each jail as the
/// unit lightjail-NAME: `systemctl` shows it active with ljspawn as its main process,
/// `journalctl -u` has the jail's output (and so has `ljail log`), `machinectl list` shows it
/// (led by the jail's PID 1) until it stops, `exec` joins it, `stop` ends the unit (a jail that
/// ignores SIGTERM: SIGKILL after `--timeout`), the restart policy is systemd's (on-failure,
/// restart-max 2: three runs, then `failed`), and `enable` installs an enabled unit ordered after
/// the jails of lower priority, which the next boot starts in that order; `disable` removes it.
fn systemd_units_in_a_booted_jail(lj: &Lj) {
    let world = std::env::var_os("LJ_DEBIAN_MACHINED_WORLD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lj-debian-machined-world"));
    if !world.join("usr/lib/systemd/systemd-machined").is_file() {
        return lj.cx.skip(&format!(
            "no Debian world with systemd-machined at {} (tests/prepare.sh makes it)",
            world.display()
        ));
    }
    std::os::unix::fs::symlink(&world, lj.root().join("worlds/debmd")).unwrap();
    let inner = lj.dir("inner");
    let bin = path_str(&lj.cx.dir.join("bin"));
    let busybox = lj.cx.world_str();
    lj.ok(&[
        "create",
        "sdhost",
        "--world",
        "debmd",
        "--init",
        "--docker",
        "--ro-bind",
        &bin,
        "/opt/lj",
        "--ro-bind",
        &busybox,
        "/opt/busybox",
        "--bind",
        &path_str(&inner),
        "/usr/local/lj",
    ]);
    // Root's --init jail is in a private id range: its root, host uid BASE, owns the bound
    // root of its own jails.
    let base = private_base(lj, "sdhost").expect("private-users BASE");
    std::os::unix::fs::chown(&inner, Some(base), Some(base)).unwrap();
    let boot = || {
        lj.ok(&["start", "sdhost"]);
        lj.wait_state("sdhost", "running");
        let mut last = None;
        let up = wait_until(Duration::from_secs(90), || {
            let out = lj.run(&["exec", "sdhost", "--", "systemctl", "is-system-running"]);
            let s = out.stdout.trim().to_string();
            last = Some(out);
            s == "running" || s == "degraded"
        });
        assert!(up, "systemd in sdhost never got up: {}", last.map(|o| o.report()).unwrap_or_default());
    };
    boot();
    // A command in the booted jail (its root: ljail's system mode).
    let sh = |script: &str| lj.run(&["exec", "sdhost", "--", "/bin/sh", "-c", script]);
    let ok = |script: &str| sh(script).ok().stdout;
    let status = |name: &str| -> Value {
        let out = sh(&format!("/opt/lj/ljail status {name} --json")).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{}", out.report()))
    };
    let journal = |name: &str| ok(&format!("journalctl --no-pager -o cat -u lightjail-{name}.service"));
    ok("mkdir -p /usr/local/lj/worlds && ln -s /opt/busybox /usr/local/lj/worlds/busybox");

    // start: a transient unit running ljspawn, the jail's output in the journal.
    // A `$` reaches the jail's shell as written (the manager would expand `${x}` itself).
    ok("/opt/lj/ljail create web --world busybox -- /bin/sh -c 'x=lit; echo hello from web ${x}; exec sleep 1000'");
    assert_eq!(ok("ls -d /run/systemd/system; id -u"), "/run/systemd/system\n0\n");
    let dry = ok("/opt/lj/ljail start web --dry-run");
    assert!(
        dry.starts_with("systemd-run --quiet --collect --unit=lightjail-web.service ")
            && dry.contains(" --property=KillMode=mixed ")
            && dry.contains(" -- /opt/lj/ljspawn --layer /usr/local/lj/worlds/busybox "),
        "{dry}\n{}",
        sh("env; /opt/lj/ljail --supervisor systemd start web --dry-run").report()
    );
    assert_eq!(
        ok("systemctl is-active lightjail-web.service || true"),
        "inactive\n",
        "the dry run started it"
    );
    let out = sh("/opt/lj/ljail start web").ok();
    assert!(out.stderr.contains("start: web (pid "), "{}", out.report());
    let st = status("web");
    assert_eq!(
        (st["state"].as_str(), st["unit"].as_str()),
        (Some("running"), Some("lightjail-web.service")),
        "{st}"
    );
    let pid1 = pid_of(&st);
    let show = ok("systemctl show -p ActiveState,SubState,MainPID,FragmentPath lightjail-web.service");
    let main = ok("cat /usr/local/lj/jails/web/state.json | tr -d ' ,' | grep ljspawn_pid | cut -d: -f2");
    assert_eq!(
        show,
        format!(
            "MainPID={}\nActiveState=active\nSubState=running\nFragmentPath=/run/systemd/transient/lightjail-web.service\n",
            main.trim()
        )
    );
    assert!(ok("systemctl status --no-pager lightjail-web.service").contains("Active: active (running)"));
    let said = wait_until(UP, || journal("web").contains("hello from web lit"));
    assert!(said, "journalctl -u lightjail-web.service:\n{}", journal("web"));
    assert!(ok("/opt/lj/ljail log web").contains("hello from web lit"));
    assert_eq!(ok("/opt/lj/ljail exec web -- hostname"), "web\n");
    // machined knows it, led by the jail's PID 1, in its unit.
    let listed = wait_until(UP, || {
        ok("machinectl list --no-legend --no-pager").lines().any(|l| {
            l.split_whitespace().collect::<Vec<_>>() == ["web", "container", "lightjail", "-", "-", "-"]
        })
    });
    assert!(listed, "machinectl list:\n{}", ok("machinectl list --no-pager"));
    assert_eq!(
        ok("machinectl show web -p Leader -p Unit -p Class"),
        format!("Unit=lightjail-web.service\nLeader={pid1}\nClass=container\n")
    );

    // A jail of the same name in another root: a unit (and cgroup) of its own, the root's hash
    // in its name; lightjail-web stays the default root's.
    let r2 = "/opt/lj/ljail --root /usr/local/lj/r2";
    ok(&format!("mkdir -p /usr/local/lj/r2/worlds && ln -s /opt/busybox /usr/local/lj/r2/worlds/busybox && {r2} create web --world busybox -- /bin/sh -c 'echo other web; exec sleep 1000'"));
    let dry2 = ok(&format!("{r2} start web --dry-run"));
    let unit2 =
        dry2.split_whitespace().find_map(|w| w.strip_prefix("--unit=")).unwrap_or_default().to_string();
    let hash =
        unit2.strip_prefix("lightjail-web:").and_then(|u| u.strip_suffix(".service")).unwrap_or_default();
    assert!(hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{dry2}");
    ok(&format!("{r2} start web"));
    assert_eq!(status("web")["unit"], "lightjail-web.service");
    let st2: Value = serde_json::from_str(&ok(&format!("{r2} status web --json"))).unwrap();
    assert_eq!(
        (st2["state"].as_str(), st2["unit"].as_str()),
        (Some("running"), Some(unit2.as_str())),
        "{st2}"
    );
    assert_eq!(ok(&format!("systemctl is-active lightjail-web.service {unit2}")), "active\nactive\n");
    assert!(wait_until(UP, || sh(&format!("journalctl --no-pager -o cat -u {unit2}"))
        .stdout
        .contains("other web")));
    ok(&format!("{r2} stop web"));
    assert_eq!(
        ok(&format!("systemctl is-active lightjail-web.service; systemctl is-active {unit2} || true")),
        "active\ninactive\n"
    );

    // A snapshot of the running jail: frozen meanwhile (the unit's freezer; ljail's supervisor
    // would refuse here, without a v1 freezer), then thawed.
    ok("echo kept > /usr/local/lj/jails/web/upper/data");
    let out = sh("/opt/lj/ljail snapshot web s1").ok();
    assert!(out.stderr.contains("snapshot: web@s1"), "{}", out.report());
    assert_eq!(ok("cat /usr/local/lj/jails/web/snapshots/s1/upper/data"), "kept\n");
    assert_eq!(ok("systemctl show -p FreezerState --value lightjail-web.service"), "running\n");

    // stop: the unit's stop job; the machine goes.
    let out = sh("/opt/lj/ljail stop web").ok();
    assert!(out.stderr.contains("stop: web"), "{}", out.report());
    assert_eq!(ok("systemctl is-active lightjail-web.service || true"), "inactive\n");
    assert_eq!(status("web")["state"], "stopped");
    let gone = wait_until(UP, || !ok("machinectl list --no-legend --no-pager").contains("web"));
    assert!(gone, "machinectl list:\n{}", ok("machinectl list --no-pager"));
    assert!(journal("web").contains("Stopped lightjail-web.service"), "{}", journal("web"));

    // A jail that ignores SIGTERM: SIGKILL after --timeout.
    ok("/opt/lj/ljail create stub --world busybox --stop-timeout 60s -- /bin/sh -c 'trap \"\" TERM; while :; do sleep 1; done'");
    ok("/opt/lj/ljail start stub && /opt/lj/ljail stop stub --timeout 1s");
    let st = status("stub");
    assert_eq!((st["state"].as_str(), st["last_exit"].as_i64()), (Some("stopped"), Some(137)), "{st}");

    // The restart policy: on-failure, at most 2 restarts.
    ok("/opt/lj/ljail create crash --world busybox --restart on-failure --restart-delay 100ms --restart-max 2 -- /bin/sh -c 'echo crash run; exit 3'");
    ok("/opt/lj/ljail start crash");
    let mut last = Value::Null;
    let failed = wait_until(Duration::from_secs(30), || {
        last = status("crash");
        last["state"] == "failed"
    });
    assert!(failed, "{last}\n{}", journal("crash"));
    assert_eq!((last["restarts"].as_u64(), last["last_exit"].as_i64()), (Some(2), Some(3)), "{last}");
    let runs = || journal("crash").lines().filter(|l| *l == "crash run").count();
    assert!(wait_until(UP, || runs() >= 3), "{}", journal("crash"));
    assert_eq!(runs(), 3, "{}", journal("crash"));
    // A program that is not there: ljspawn's line, no restart.
    ok("/opt/lj/ljail create bad --world busybox --restart always -- /nonexistent");
    let out = sh("/opt/lj/ljail start bad");
    expect_error(
        &out,
        1,
        "bad did not start: ljspawn: cannot execute /nonexistent: no such file or directory",
    );

    // enable: a unit file for boot, after the jails of lower priority; the next boot starts both.
    ok("/opt/lj/ljail create early --world busybox --priority 10 -- /bin/sh -c 'echo early; exec sleep 1000'");
    ok("/opt/lj/ljail enable early && /opt/lj/ljail enable web");
    let unit = ok("cat /etc/systemd/system/lightjail-web.service");
    for want in [
        "\n[Unit]\n",
        "\nAfter=lightjail-early.service\n",
        "\nExecStart=/opt/lj/ljspawn --layer /usr/local/lj/worlds/busybox ",
        " -- /bin/sh -c \"x=lit; echo hello from web $${x}; exec sleep 1000\"\n",
        "\nKillMode=mixed\n",
        "\nTimeoutStopSec=10000ms\n",
        "\nExecStartPost=-/opt/lj/ljail --root /usr/local/lj unit-hook web started --unit lightjail-web.service\n",
        "\n[Install]\nWantedBy=multi-user.target\n",
    ] {
        assert!(unit.contains(want), "{want:?} missing:\n{unit}");
    }
    assert_eq!(
        ok("systemctl is-enabled lightjail-web.service lightjail-early.service"),
        "enabled\nenabled\n"
    );
    lj.ok(&["stop", "sdhost"]);
    boot();
    let both = wait_until(Duration::from_secs(30), || {
        ok("systemctl is-active lightjail-early.service lightjail-web.service || true") == "active\nactive\n"
    });
    assert!(both, "{}", ok("systemctl status --no-pager 'lightjail-*' || true"));
    let at = |u: &str| -> u64 {
        ok(&format!("systemctl show -p ActiveEnterTimestampMonotonic --value {u}")).trim().parse().unwrap()
    };
    assert!(at("lightjail-early.service") <= at("lightjail-web.service"), "web came up before early");
    let st = status("web");
    assert_eq!(
        (st["state"].as_str(), st["unit"].as_str()),
        (Some("running"), Some("lightjail-web.service")),
        "{st}"
    );
    assert!(ok("systemctl status --no-pager lightjail-web.service")
        .contains("Loaded: loaded (/etc/systemd/system/lightjail-web.service; enabled;"));
    assert_eq!(ok("/opt/lj/ljail exec web -- hostname"), "web\n");
    let listed = wait_until(UP, || ok("machinectl list --no-legend --no-pager").contains("web "));
    assert!(listed, "machinectl list:\n{}", ok("machinectl list --no-pager"));

    // disable: refused while it runs (its unit would lose its settings); then the file goes.
    expect_error(&sh("/opt/lj/ljail disable web"), 5, "jail 'web' is running: stop it, then disable it");
    ok("/opt/lj/ljail stop web");
    assert_eq!(ok("systemctl is-active lightjail-web.service || true"), "inactive\n");
    let out = sh("/opt/lj/ljail disable web").ok();
    assert!(
        out.stderr.contains("disable: web: lightjail-web.service disabled and removed"),
        "{}",
        out.report()
    );
    assert_eq!(ok("test -e /etc/systemd/system/lightjail-web.service || echo gone"), "gone\n");
    assert_eq!(ok("systemctl is-enabled lightjail-web.service 2>/dev/null || true"), "");
    ok("/opt/lj/ljail stop --all");
    assert_eq!(
        ok("systemctl is-active lightjail-early.service lightjail-web.service || true"),
        "inactive\ninactive\n"
    );
    lj.ok(&["stop", "sdhost"]);
}

/// Single quotes for `sh -c`.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Issue 15, rootless under systemd: a user's own jails in a booted jail. A rootless `--init
/// --docker` jail (the test user's, with the container filter: nested user namespaces and the
/// keyrings ljspawn needs; its /proc unmasked, ljail's default for a user's
/// `--init` jail, so the nested jails' own user namespaces may mount a proc) boots systemd;
/// in it a non-root user `u` with a user manager (`systemctl start user@1000`) runs `ljail
/// start` of its own jail, which becomes the user unit lightjail-web (`systemd-run --user`):
/// `systemctl --user` shows it active with ljspawn (rootless) as its main process, the journal
/// has its output, `exec` joins it, the restart policy is the user manager's, `stop` ends it,
/// and `enable` installs ~/.config/systemd/user/lightjail-web.service, which the user manager
/// starts when it starts again; `disable` removes it.
fn users_own_jails_in_a_booted_jail(lj: &Lj) {
    if !systemd_world(lj) {
        return;
    }
    let deleg = Delegated::new(lj);
    let prefix = deleg.enter();
    let bin = path_str(&lj.cx.dir.join("bin"));
    let busybox = lj.cx.world_str();
    lj.ok(&[
        "create",
        "sdu",
        "--world",
        "debsd",
        "--init",
        "--docker",
        "--ro-bind",
        &bin,
        "/opt/lj",
        "--ro-bind",
        &busybox,
        "/opt/busybox",
    ]);
    let config = fs::read_to_string(lj.jail_dir("sdu").join("config")).unwrap();
    assert!(config.contains("\nproc-unmasked yes\n"), "{config}");
    lj.run_in(&prefix, &["start", "sdu"], &[]).ok();
    lj.wait_state("sdu", "running");
    let sh = |script: &str| lj.run(&["exec", "sdu", "--", "/bin/sh", "-c", script]);
    let ok = |script: &str| sh(script).ok().stdout;
    let mut last = None;
    let up = wait_until(Duration::from_secs(90), || {
        let out = sh("systemctl is-system-running");
        let s = out.stdout.trim().to_string();
        last = Some(out);
        s == "running" || s == "degraded"
    });
    assert!(up, "systemd in sdu never got up: {}", last.map(|o| o.report()).unwrap_or_default());
    // The user and its manager.
    ok("useradd -m -u 1000 -s /bin/sh u && mkdir -p /home/u/.local/share/lightjail/worlds && ln -s /opt/busybox /home/u/.local/share/lightjail/worlds/busybox && chown -R u:u /home/u/.local");
    // (The world has no libpam-systemd, whose pam_systemd would set XDG_RUNTIME_DIR for the
    // user manager: a drop-in does.)
    ok("mkdir -p /etc/systemd/system/user@.service.d && printf '[Service]\\nEnvironment=XDG_RUNTIME_DIR=/run/user/%%i\\n' > /etc/systemd/system/user@.service.d/runtime-dir.conf && systemctl daemon-reload");
    let out = sh("systemctl start user@1000.service");
    assert!(
        out.status() == 0,
        "{}\n{}",
        out.report(),
        sh("journalctl --no-pager -o cat -u user@1000.service -u user-runtime-dir@1000.service | tail -n 30")
            .stdout
    );
    let user = |script: &str| {
        sh(&format!(
            "cd /home/u && exec runuser -u u -- env HOME=/home/u XDG_RUNTIME_DIR=/run/user/1000 /bin/sh -c {}",
            sq(script)
        ))
    };
    let uok = |script: &str| user(script).ok().stdout;
    let manager = wait_until(UP, || user("systemctl --user is-system-running").stdout.trim() != "");
    assert!(manager, "{}", user("systemctl --user is-system-running").report());
    let status = |name: &str| -> Value {
        let out = user(&format!("/opt/lj/ljail status {name} --json")).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{}", out.report()))
    };
    // Root reads every journal; the user's unit is a _SYSTEMD_USER_UNIT.
    let journal = |name: &str| {
        ok(&format!("journalctl --no-pager -o cat _UID=1000 _SYSTEMD_USER_UNIT=lightjail-{name}.service + _UID=1000 USER_UNIT=lightjail-{name}.service"))
    };

    // start: a transient user unit running rootless ljspawn.
    uok("/opt/lj/ljail create web --copy --world busybox -- /bin/sh -c 'echo hello from the users web; exec sleep 1000'");
    let dry = uok("/opt/lj/ljail start web --dry-run");
    assert!(
        dry.starts_with("systemd-run --user --quiet --collect --unit=lightjail-web.service ")
            && dry
                .contains(" -- /opt/lj/ljspawn --root /home/u/.local/share/lightjail/jails/web/rootfs --rw "),
        "{dry}"
    );
    let out = user("/opt/lj/ljail start web").ok();
    assert!(out.stderr.contains("start: web (pid "), "{}", out.report());
    let st = status("web");
    assert_eq!(
        (st["state"].as_str(), st["unit"].as_str()),
        (Some("running"), Some("lightjail-web.service")),
        "{st}"
    );
    let show = uok("systemctl --user show -p ActiveState,SubState,FragmentPath lightjail-web.service");
    assert_eq!(
        show,
        "ActiveState=active\nSubState=running\nFragmentPath=/run/user/1000/systemd/transient/lightjail-web.service\n"
    );
    assert!(
        uok("systemctl --user status --no-pager lightjail-web.service").contains("Active: active (running)")
    );
    let main: u32 =
        uok("systemctl --user show -p MainPID --value lightjail-web.service").trim().parse().unwrap();
    assert_eq!(ok(&format!("cat /proc/{main}/comm")), "ljspawn\n");
    let said = wait_until(UP, || journal("web").contains("hello from the users web"));
    assert!(said, "journal of the user's lightjail-web:\n{}", journal("web"));
    // The nested jail is the user's own, in a user namespace of its own, with its own proc.
    assert_eq!(uok("/opt/lj/ljail exec web -- hostname"), "web\n");
    let inside =
        uok("/opt/lj/ljail exec web -- /bin/sh -c 'id -u; cat /proc/1/comm; readlink /proc/self/ns/user'");
    let outer_ns = uok("readlink /proc/self/ns/user");
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines.len(), 3, "{inside}");
    assert_eq!(lines[0], "0", "{inside}");
    assert_ne!(lines[2], outer_ns.trim(), "{inside}");

    // The restart policy: the user manager's.
    uok("/opt/lj/ljail create crash --copy --world busybox --restart on-failure --restart-delay 100ms --restart-max 2 -- /bin/sh -c 'echo crash run; exit 3'");
    uok("/opt/lj/ljail start crash");
    let mut last = Value::Null;
    let failed = wait_until(Duration::from_secs(60), || {
        last = status("crash");
        last["state"] == "failed"
    });
    assert!(failed, "{last}\n{}", journal("crash"));
    assert_eq!((last["restarts"].as_u64(), last["last_exit"].as_i64()), (Some(2), Some(3)), "{last}");
    // The user manager's own record of it (a short-lived run's output lines may reach the
    // journal without their unit, so they are not counted).
    let record =
        |j: &str| j.contains("restart counter is at 2.") && j.contains("Start request repeated too quickly.");
    assert!(wait_until(UP, || record(&journal("crash"))), "{}", journal("crash"));

    // stop: the unit's stop job.
    let out = user("/opt/lj/ljail stop web").ok();
    assert!(out.stderr.contains("stop: web"), "{}", out.report());
    assert_eq!(uok("systemctl --user is-active lightjail-web.service || true"), "inactive\n");
    assert_eq!(status("web")["state"], "stopped");

    // enable: a user unit file, started when the user manager starts again.
    uok("/opt/lj/ljail enable web");
    let unit = uok("cat /home/u/.config/systemd/user/lightjail-web.service");
    for want in [
        "\nExecStart=/opt/lj/ljspawn --root /home/u/.local/share/lightjail/jails/web/rootfs --rw ",
        " --proc-unmasked ",
        "\n[Install]\nWantedBy=default.target\n",
    ] {
        if want == " --proc-unmasked " {
            // (Not a --init/--docker jail: its /proc keeps the masks.)
            assert!(!unit.contains(want), "{want:?} in:\n{unit}");
        } else {
            assert!(unit.contains(want), "{want:?} missing:\n{unit}");
        }
    }
    assert_eq!(uok("systemctl --user is-enabled lightjail-web.service"), "enabled\n");
    ok("systemctl stop user@1000.service && systemctl start user@1000.service");
    let back = wait_until(Duration::from_secs(60), || {
        user("systemctl --user is-active lightjail-web.service").stdout == "active\n"
    });
    assert!(back, "{}", user("systemctl --user status --no-pager lightjail-web.service").report());
    assert_eq!(status("web")["state"], "running");
    assert_eq!(uok("/opt/lj/ljail exec web -- hostname"), "web\n");
    uok("/opt/lj/ljail stop web");
    let out = user("/opt/lj/ljail disable web").ok();
    assert!(
        out.stderr.contains("disable: web: lightjail-web.service disabled and removed"),
        "{}",
        out.report()
    );
    assert_eq!(uok("test -e /home/u/.config/systemd/user/lightjail-web.service || echo gone"), "gone\n");

    // A jail of the default root its caller's XDG_DATA_HOME names, which the user manager's
    // environment has not: the unit is named once, where it is made (its hooks are told the
    // name), so stop, status and log find it.
    let xdg = |script: &str| user(&format!("export XDG_DATA_HOME=/home/u/xdg; {script}"));
    xdg("mkdir -p /home/u/xdg/lightjail/worlds && ln -s /opt/busybox /home/u/xdg/lightjail/worlds/busybox && /opt/lj/ljail create xd --copy --world busybox -- /bin/sleep 1000").ok();
    assert_eq!(uok("systemctl --user show-environment | grep ^XDG_DATA_HOME= || true"), "");
    xdg("/opt/lj/ljail start xd").ok();
    let out = xdg("/opt/lj/ljail status xd --json").ok();
    let st: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.report()));
    assert_eq!(
        (st["state"].as_str(), st["unit"].as_str()),
        (Some("running"), Some("lightjail-xd.service")),
        "{st}"
    );
    xdg("/opt/lj/ljail stop xd").ok();
    assert_eq!(uok("systemctl --user is-active lightjail-xd.service || true"), "inactive\n");
    xdg("/opt/lj/ljail destroy xd").ok();

    // A jail outside the default root enabled by an older ljail: its unit file is the plain
    // lightjail-NAME.service; disable removes it when it is this jail's (its hooks name the
    // jail's root), and leaves another root's alone.
    uok("mkdir -p /home/u/other/worlds && ln -s /opt/busybox /home/u/other/worlds/busybox && /opt/lj/ljail --root /home/u/other create old --copy --world busybox -- /bin/sleep 1000");
    let text = uok("/opt/lj/ljail --root /home/u/other enable old --dry-run | sed 1d");
    assert!(text.contains(" --root /home/u/other unit-hook old started"), "{text}");
    let old_file = "/home/u/.config/systemd/user/lightjail-old.service";
    let theirs = text.replace("/home/u/other", "/home/u/elsewhere");
    uok(&format!("mkdir -p /home/u/.config/systemd/user && printf %s {} > {old_file}", sq(&theirs)));
    let out = user("/opt/lj/ljail --root /home/u/other disable old").ok();
    assert!(out.stderr.contains("was not enabled"), "{}", out.report());
    assert_eq!(uok(&format!("cat {old_file}")), theirs);
    uok(&format!("printf %s {} > {old_file} && systemctl --user daemon-reload && systemctl --user enable lightjail-old.service", sq(&text)));
    let out = user("/opt/lj/ljail --root /home/u/other status old").ok();
    assert!(
        out.stderr.contains(&format!("warning: {old_file} is an older ljail's unit file of old ")),
        "{}",
        out.report()
    );
    let out = user("/opt/lj/ljail --root /home/u/other disable old").ok();
    assert!(
        out.stderr.contains("disable: old: lightjail-old.service disabled and removed"),
        "{}",
        out.report()
    );
    assert_eq!(uok(&format!("test -e {old_file} || echo gone")), "gone\n");
    assert_ne!(uok("systemctl --user is-enabled lightjail-old.service 2>&1 || true"), "enabled\n");
    // enable replaces it with the unit of its new name.
    uok(&format!("printf %s {} > {old_file} && systemctl --user daemon-reload && systemctl --user enable lightjail-old.service", sq(&text)));
    let out = user("/opt/lj/ljail --root /home/u/other enable old").ok();
    assert!(out.stderr.contains("enable: old: lightjail-old:"), "{}", out.report());
    assert_eq!(uok(&format!("test -e {old_file} || echo gone")), "gone\n");
    let out = user("/opt/lj/ljail --root /home/u/other status old").ok();
    assert!(!out.stderr.contains("warning"), "{}", out.report());
    let out = user("/opt/lj/ljail --root /home/u/other disable old").ok();
    assert!(out.stderr.contains("disable: old: lightjail-old:"), "{}", out.report());
    lj.ok(&["stop", "sdu"]);
    drop(deleg);
}

/// The uid, gid and mode of a host path (not following a link).
fn owner(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// The uid and gid of a host path.
fn ug(p: &Path) -> (u32, u32) {
    let (u, g, _) = owner(p);
    (u, g)
}

/// The `private-users BASE` line of a jail's config.
fn private_base(lj: &Lj, name: &str) -> Option<u32> {
    let config = fs::read_to_string(lj.jail_dir(name).join("config")).unwrap();
    config.lines().find_map(|l| l.strip_prefix("private-users ")).and_then(|v| v.parse().ok())
}

/// Root's `--init` (and `--docker`) jails get a private id range by default (systemd-nspawn's
/// `--private-users=pick`): `private-users BASE` in the config, BASE picked in
/// 0x24000000-0x6FFF0000. The booted systemd runs as host uid BASE (its PID 1 on the host), is
/// `running`, and its root cannot write /proc/sys/kernel/core_pattern even after unmounting
/// its masks; what it writes is BASE+uid's on the host. A clone gets a range of its own with
/// its files shifted (setuid bits kept) and boots; a `--copy` jail's files are shifted at
/// create; `private-users no` and a config without the key keep the identity map; `edit` may
/// not change it; destroy takes back the ACL grant on the root. A user's jails do not change:
/// `--private-users` is refused.
fn private_users_of_roots_jails(lj: &Lj) {
    if lj.cx.mode != Mode::Root {
        lj.fails(
            &["create", "p", "--world", "busybox", "--init", "--private-users", "pick"],
            2,
            "--private-users is for root's jails",
        );
        lj.ok(&["create", "p", "--world", "busybox", "--init", "--", "/bin/sleep", "1000"]);
        assert_eq!(private_base(lj, "p"), None);
        let dry = lj.ok(&["start", "p", "--dry-run"]).stdout;
        assert!(dry.contains("--subids") && !dry.contains("--subids-base"), "{dry}");
        return;
    }
    if !systemd_world(lj) {
        return;
    }
    for bad in ["0", "1000", "65537", "4294901760", "x"] {
        lj.fails(
            &["create", "b", "--world", "busybox", "--init", "--private-users", bad],
            2,
            "--private-users",
        );
    }
    lj.ok(&["create", "sd", "--world", "debsd", "--init"]);
    let base = private_base(lj, "sd").expect("private-users BASE in the config");
    assert!((0x2400_0000..=0x6ffe_0000).contains(&base) && base.is_multiple_of(65536), "{base:#x}");
    let dir = lj.jail_dir("sd");
    assert_eq!(ug(&dir.join("upper")), (base, base));
    assert_eq!(ug(&dir.join("work")), (base, base));
    assert_eq!(owner(&dir.join("upper/etc/machine-id")), (base, base, 0o444));
    assert_eq!(owner(&dir), (0, base, 0o710));
    let dry = lj.ok(&["start", "sd", "--dry-run"]).stdout;
    assert!(dry.contains(&format!("--subids-base {base}")) && dry.contains("--idmap-layer"), "{dry}");

    lj.ok(&["start", "sd"]);
    let st = lj.wait_state("sd", "running");
    assert_eq!(st["private_users"].as_u64(), Some(u64::from(base)), "{st}");
    let exec = |name: &str, cmd: &str| lj.run(&["exec", name, "--", "/bin/sh", "-c", cmd]);
    let booted = |name: &str| {
        let mut last = None;
        let up = wait_until(Duration::from_secs(90), || {
            let out = exec(name, "systemctl is-system-running");
            let s = out.stdout.trim().to_string();
            last = Some(out);
            s == "running" || s == "degraded"
        });
        let state = last.as_ref().map(|o| o.stdout.trim().to_string()).unwrap_or_default();
        assert!(
            up && state == "running",
            "systemd in {name} is not running: {}\nfailed units: {}\nlog:\n{}",
            last.map(|o| o.report()).unwrap_or_default(),
            exec(name, "systemctl --failed --no-pager").stdout,
            lj.log(name)
        );
    };
    booted("sd");
    // Its PID 1, seen from the host, is host uid BASE (real, effective, saved, fs).
    let pid1 = pid_of(&lj.status("sd"));
    let ids = |pid: u32, key: &str| -> Vec<u32> {
        let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let l = s.lines().find(|l| l.starts_with(key)).unwrap().to_string();
        l.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect()
    };
    assert_eq!(ids(pid1, "Uid:"), [base; 4]);
    assert_eq!(ids(pid1, "Gid:"), [base; 4]);
    // The jail's root (every capability of systemd's set in its namespace) unmounts what it
    // can of /proc's masks; core_pattern stays the host's.
    let before = fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = exec(
        "sd",
        "id -u; for m in /proc/sys/kernel/core_pattern /proc/sys/kernel /proc/sys /proc/sys; do umount $m 2>/dev/null || umount -l $m 2>/dev/null; done; \
         echo '|/bin/lj-test-pwned %p' > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE; true",
    );
    assert_eq!(out.stdout, "0\n", "{}", out.report());
    assert_eq!(fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(), before);
    // What it writes is BASE+uid's on the host; a setuid file of its own stays one.
    exec("sd", "touch /root/made && chown 1000:42 /root/made && install -m 4755 /bin/true /root/suid").ok();
    assert_eq!(owner(&dir.join("upper/root/made")), (base + 1000, base + 42, 0o644));
    assert_eq!(owner(&dir.join("upper/root/suid")), (base, base, 0o4755));
    let human = lj.ok(&["status", "sd"]).stdout;
    assert!(
        human.contains(&format!("ids         private: jail 0-65535 = host {base}-{}", base + 65535)),
        "{human}"
    );
    // edit may not move it to another range (its files are owned in this one).
    let out =
        lj.run_in(&[], &["edit", "sd"], &[("VISUAL", "sed -i 's/^private-users .*/private-users no/'")]);
    expect_error(&out, 2, "'private-users' cannot be changed");

    // A clone: a range of its own, the copy shifted into it, setuid bits kept; it boots.
    lj.ok(&["clone", "sd", "sd2"]);
    let b2 = private_base(lj, "sd2").expect("the clone's private-users");
    assert_ne!(b2, base);
    let d2 = lj.jail_dir("sd2");
    assert_eq!(owner(&d2.join("upper/root/made")), (b2 + 1000, b2 + 42, 0o644));
    assert_eq!(owner(&d2.join("upper/root/suid")), (b2, b2, 0o4755));
    assert_eq!(ug(&d2.join("upper")), (b2, b2));
    assert_eq!(ug(&d2.join("work")), (b2, b2));
    lj.ok(&["stop", "sd"]);
    lj.ok(&["start", "sd2"]);
    lj.wait_state("sd2", "running");
    booted("sd2");
    assert_eq!(exec("sd2", "stat -c %u:%g:%a /root/made /root/suid").ok().stdout, "1000:42:644\n0:0:4755\n");
    assert_eq!(ug(&d2.join("upper/etc/machine-id")), (b2, b2));
    lj.ok(&["stop", "sd2"]);
    // A snapshot and a rollback stay in the jail's range: it boots again.
    lj.ok(&["snapshot", "sd2", "s1"]);
    lj.ok(&["rollback", "sd2", "s1"]);
    assert_eq!(ug(&d2.join("work")), (b2, b2));
    assert_eq!(owner(&d2.join("upper/root/suid")), (b2, b2, 0o4755));
    lj.ok(&["start", "sd2"]);
    lj.wait_state("sd2", "running");
    booted("sd2");
    lj.ok(&["stop", "sd2"]);

    // A full copy: host root's files of the world are the jail's root's, shifted at create.
    lj.ok(&["create", "cp", "--world", "busybox", "--copy", "--init", "--", "/bin/sleep", "1000"]);
    let b3 = private_base(lj, "cp").expect("the copy jail's private-users");
    assert!(b3 != base && b3 != b2);
    assert_eq!(ug(&lj.jail_dir("cp").join("rootfs/bin/busybox")), (b3, b3));
    lj.ok(&["start", "cp"]);
    lj.wait_state("cp", "running");
    assert_eq!(exec("cp", "stat -c %u:%g /bin/busybox; id -u").ok().stdout, "0:0\n0\n");
    lj.ok(&["stop", "cp"]);

    // The identity map on request, and for a config without the key (an older jail's).
    lj.ok(&[
        "create",
        "id",
        "--world",
        "busybox",
        "--init",
        "--private-users",
        "no",
        "--",
        "/bin/sleep",
        "1000",
    ]);
    let config = fs::read_to_string(lj.jail_dir("id").join("config")).unwrap();
    assert!(config.contains("\nprivate-users no\n"), "{config}");
    fs::write(lj.jail_dir("id").join("config"), config.replace("private-users no\n", "")).unwrap();
    let dry = lj.ok(&["start", "id", "--dry-run"]).stdout;
    assert!(
        dry.contains("--subids") && !dry.contains("--subids-base") && !dry.contains("--idmap-layer"),
        "{dry}"
    );
    assert!(lj.ok(&["status", "id"]).stdout.contains("the jail's root is host root"));

    // Destroyed, the jails' ranges lose their grant on the root (0700 again, no ACL).
    for name in ["sd", "sd2", "cp", "id"] {
        lj.ok(&["destroy", "--force", name]);
    }
    assert_eq!(owner(&lj.root()).2, 0o700);
}

/// The uids of the named user entries of `p`'s access ACL (none without one).
fn acl_users(p: &Path) -> Vec<u32> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = c"system.posix_acl_access";
    let mut buf = vec![0u8; 65536];
    // SAFETY: both strings are NUL-terminated, buf is writable for its length.
    let n = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Vec::new();
    }
    buf.truncate(n as usize);
    buf.get(4..)
        .unwrap_or(&[])
        .chunks_exact(8)
        .filter(|e| u16::from_le_bytes([e[0], e[1]]) == 0x02)
        .map(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
        .collect()
}

/// The grants of root's private ranges on ROOT/ and ROOT/jails/: above 0x24000000 (useradd's
/// default subordinate ranges end below); taken back at destroy only when no jail of the root
/// has the range any more; none left by a create that fails after granting (a root whose
/// parent others cannot search); and a root reached through a symlink works (the ACLs of the
/// directory itself): a private jail created there starts and runs.
fn private_range_grants(lj: &Lj) {
    let root = lj.root();
    let jails = root.join("jails");
    let grants = |b: u32| (acl_users(&root).contains(&b), acl_users(&jails).contains(&b));
    let mk = |name: &str, extra: &[&str]| {
        let mut args = vec!["create", name, "--world", "busybox"];
        args.extend(extra);
        args.extend(["--", "/bin/sleep", "1000"]);
        lj.ok(&args);
    };
    mk("a", &["--private-users", "pick"]);
    mk("b", &["--private-users", "pick"]);
    let (a, b) = (private_base(lj, "a").unwrap(), private_base(lj, "b").unwrap());
    for base in [a, b] {
        assert!((0x2400_0000..=0x6ffe_0000).contains(&base) && base.is_multiple_of(65536), "{base:#x}");
        assert_eq!(grants(base), (true, true), "{base}");
    }
    // Another jail with a's range (a config copied by hand): a's destroy leaves the grant.
    fs::create_dir(jails.join("c")).unwrap();
    fs::copy(jails.join("a/config"), jails.join("c/config")).unwrap();
    lj.ok(&["destroy", "a"]);
    assert_eq!(grants(a), (true, true));
    fs::remove_dir_all(jails.join("c")).unwrap();
    lj.ok(&["destroy", "b"]);
    assert_eq!(grants(b), (false, false));
    mk("a", &["--private-users", &a.to_string()]);
    lj.ok(&["destroy", "a"]);
    assert_eq!((acl_users(&root), acl_users(&jails)), (vec![], vec![]));
    assert_eq!(owner(&root).2, 0o700);

    // A create refused after the grant (the root's parent not searchable by others).
    let parent = root.parent().unwrap().to_path_buf();
    let mode = owner(&parent).2;
    fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(mode & !0o001)).unwrap();
    let out = lj.run(&["create", "f", "--world", "busybox", "--private-users", "pick", "--", "/bin/true"]);
    fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    expect_error(&out, 1, "is not searchable by others");
    assert_eq!((acl_users(&root), acl_users(&jails)), (vec![], vec![]), "{}", out.report());
    assert_eq!(owner(&root).2, 0o700);
    assert!(!jails.join("f").exists() && !jails.join(".f.new").exists());

    // The root through a symlink.
    let link = lj.td.join("root-link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let env = [("LIGHTJAIL_ROOT", path_str(&link))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = |args: &[&str]| lj.run_in(&[], args, &env);
    let out =
        run(&["create", "s", "--world", "busybox", "--private-users", "pick", "--", "/bin/sleep", "1000"]);
    assert!(out.status() == 0, "{}", out.report());
    let s = private_base(lj, "s").unwrap();
    assert_eq!(grants(s), (true, true));
    let out = run(&["start", "s"]);
    assert!(out.status() == 0, "{}", out.report());
    let mut last = String::new();
    let up = wait_until(UP, || {
        last = run(&["status", "s", "--json"]).stdout;
        serde_json::from_str::<Value>(&last).is_ok_and(|v| v["state"] == "running")
    });
    assert!(up, "s never ran: {last}\nlog:\n{}", lj.log("s"));
    // `running` is written once the jail is cloned: its process may still be ljspawn's copy,
    // before the jail's ids are set (Uid 0); the program runs as the range's first id.
    let pid = pid_of(&lj.status("s"));
    let mut st = String::new();
    let as_range = wait_until(UP, || {
        st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        st.lines().any(|l| l.starts_with("Uid:") && l.contains(&s.to_string()))
    });
    assert!(as_range, "{st}");
    let out = run(&["destroy", "--force", "s"]);
    assert!(out.status() == 0, "{}", out.report());
    assert_eq!((acl_users(&root), acl_users(&jails)), (vec![], vec![]));
}
