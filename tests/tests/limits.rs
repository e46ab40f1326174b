//! End-to-end tests of ljspawn's resource limits (issue 5, limits part): the cgroup limits
//! `--memory`, `--pids` and `--cpus` (on cgroup v2, or the v1 hierarchies of a hybrid host),
//! their refusal rootless and their grants in `/etc/lightjail.conf` for setuid callers,
//! `--rlimit`, `--timeout`, and the removal of every jail's cgroup (also of stale ones).
//!
//! Test names are `limits::<what>::<mode>` (`cargo nextest run -p lj-tests limits`). Needs
//! `tests/prepare.sh` (as root) first; see the harness in `tests/src/lib.rs`.
//!
//! The jail's cgroup is found the way an administrator would: from `/proc/PID/cgroup` of the
//! jail's processes (whatever layout the host has), mapped to a directory through the host's
//! cgroup mounts. Nothing here assumes v1 or v2.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lj_tests::{current_uid, host_mountinfo, parse_mountinfo, process_tree, wait_until, Ctx, Mode, Output};

/// Every test is under `limits::`, so `cargo nextest run -p lj-tests limits` selects them.
mod limits {
    lj_tests::mode_tests! {
    prefix = "limits::", run = lj_tests::run_ctx;
        fork_bomb_contained: root;
        memory_hog_oom_killed: root;
        cpu_quota_half_core: root;
        timeout_one_second: root rootless setuid;
        no_cgroup_left: root;
        stale_cgroup_reaped: root;
        killed_ljspawn_cgroup_reaped: root;
        rootless_refused: rootless;
        setuid_grants: setuid;
        setuid_delegated_cgroup: setuid;
        setuid_failure_leaves_no_cgroup: setuid;
        rlimits: root rootless setuid;
        dry_run_lists_limits: root rootless;
        memory_sizes: root rootless setuid;
        jail_sees_its_cgroup_as_root: root;
        jail_cgroup_inside_the_callers: root setuid;
        cgroup_mounted_with_a_root_of_its_own: root;
        jail_born_in_its_cgroup: root setuid;
    }
}

// ---------------------------------------------------------------- helpers

const MIB: u64 = 1 << 20;
const NOTE_OOM: &str =
    "ljspawn: note: the jail reached its memory limit and the OOM killer killed a process in it";

/// `ljspawn --root WORLD EXTRA... -- /bin/sh -c SCRIPT`, as a command line still to run.
fn sh_cmd<'a>(cx: &'a Ctx, extra: &[&str], script: &str) -> lj_tests::Cmd<'a> {
    cx.ljspawn().args(["--root", &cx.world_str()]).args(extra).args(["--", "/bin/sh", "-c", script])
}

fn sh_with(cx: &Ctx, extra: &[&str], script: &str) -> Output {
    sh_cmd(cx, extra, script).run()
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_trim(p)?.parse().ok()
}

/// A `key value` line of a flat keyed file (`pids.events`, `cpu.stat`, `memory.events`).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(p)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The cgroup file system mounts of the host (`cgroup` v1 and `cgroup2`).
fn cgroup_mounts() -> Vec<lj_tests::MountEntry> {
    parse_mountinfo(&host_mountinfo())
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

/// Is `controller` usable on this host (in the v2 hierarchy, or a v1 one)?
fn host_has_controller(controller: &str) -> bool {
    cgroup_mounts().iter().any(|m| {
        if m.fstype == "cgroup2" {
            let list = read_trim(&Path::new(&m.mount_point).join("cgroup.controllers")).unwrap_or_default();
            list.split_whitespace().any(|c| c == controller)
        } else {
            m.super_opts.iter().any(|o| o == controller)
        }
    })
}

/// Skips (prints SKIP, or fails under LJ_MUST_WORK=1) unless the host has these controllers.
fn need_controllers(cx: &Ctx, controllers: &[&str]) -> bool {
    for c in controllers {
        if !host_has_controller(c) {
            cx.skip(&format!("no cgroup {c} controller on this host (neither v2 nor v1)"));
            return false;
        }
    }
    true
}

/// The directory of a cgroup path from `/proc/PID/cgroup` in the hierarchy mounted as `m`.
fn cgroup_dir(m: &lj_tests::MountEntry, path: &str) -> PathBuf {
    let rel = if m.root != "/" { path.strip_prefix(m.root.as_str()).unwrap_or(path) } else { path };
    Path::new(&m.mount_point).join(rel.trim_start_matches('/'))
}

/// The test's own cgroup (as `/proc/self/cgroup` names it) in the v1 hierarchy of
/// `controller`; `/` without one.
fn own_v1_cgroup(controller: &str) -> String {
    let me = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    me.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',').any(|x| x == controller).then(|| p.to_string())
        })
        .unwrap_or_else(|| "/".into())
}

/// A cgroup a test made for ljspawn's caller: removed when dropped, with the cgroups ljspawn
/// left empty in it (the jail's is gone by then; a v2 leaf ljspawn made for itself is empty).
struct CallerCgroup(PathBuf);

impl Drop for CallerCgroup {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(&self.0) {
            for e in rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                let _ = fs::remove_dir(e.path());
            }
        }
        let _ = fs::remove_dir(&self.0);
    }
}

fn pid_ns(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// The processes of the jail started by the ljspawn `lj` (its descendants in another pid
/// namespace: not the setuid mode's cgroup reaper, which stays on the host).
fn jail_procs(lj: u32) -> Vec<u32> {
    let host = pid_ns(lj);
    process_tree(lj).into_iter().filter(|&p| p != lj && pid_ns(p).is_some() && pid_ns(p) != host).collect()
}

/// The jail's cgroup directory for `controller` (`pids`, `memory`, `cpu`), found from
/// `/proc/PID/cgroup` of its processes: the cgroup named `lightjail-<ljspawn pid>`.
fn jail_cgroup(lj: u32, controller: &str) -> Option<PathBuf> {
    let name = format!("lightjail-{lj}");
    let mounts = cgroup_mounts();
    for p in jail_procs(lj) {
        let Ok(text) = fs::read_to_string(format!("/proc/{p}/cgroup")) else { continue };
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            if path.rsplit('/').next() != Some(name.as_str()) {
                continue;
            }
            let m = if ctrls.is_empty() {
                mounts.iter().find(|m| m.fstype == "cgroup2")
            } else if ctrls.split(',').any(|c| c == controller) {
                mounts.iter().find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == controller))
            } else {
                None
            };
            if let Some(m) = m {
                return Some(cgroup_dir(m, path));
            }
        }
    }
    None
}

/// Waits (up to 10 s) for the jail of `lj` to be in its cgroup for `controller`.
#[track_caller]
fn wait_jail_cgroup(lj: u32, controller: &str) -> PathBuf {
    let mut dir = None;
    let found = wait_until(Duration::from_secs(30), || {
        dir = jail_cgroup(lj, controller);
        dir.is_some()
    });
    assert!(found, "no {controller} cgroup lightjail-{lj} holds the jail of ljspawn {lj}");
    dir.expect("found")
}

/// Every `lightjail-<pid>` cgroup in any hierarchy (ljspawn makes them inside its caller's
/// cgroup, wherever that is).
fn all_lightjail_cgroups() -> Vec<(PathBuf, u32)> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<(PathBuf, u32)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            let pid = name.to_str().and_then(|s| s.strip_prefix("lightjail-")).and_then(|s| s.parse().ok());
            match pid {
                Some(pid) => found.push((e.path(), pid)),
                None if depth < 8 => walk(&e.path(), depth + 1, found),
                None => {}
            }
        }
    }
    let mut found = Vec::new();
    let mut seen = Vec::new();
    for m in cgroup_mounts() {
        let base = PathBuf::from(&m.mount_point);
        if seen.contains(&base) {
            continue;
        }
        seen.push(base.clone());
        walk(&base, 0, &mut found);
    }
    found
}

/// The cgroups named after the ljspawn `lj`, anywhere.
fn cgroups_of(lj: u32) -> Vec<PathBuf> {
    all_lightjail_cgroups().into_iter().filter(|&(_, p)| p == lj).map(|(d, _)| d).collect()
}

/// How long the setuid mode's root helper may take to remove a jail's cgroup after ljspawn
/// exited (it does so asynchronously, after its own wait; seconds on a loaded machine). Root and
/// rootless ljspawn remove theirs before they exit.
const SETUID_REAPED: Duration = Duration::from_secs(30);

/// Asserts that the cgroups of the ljspawn `lj` are gone (within `within`).
#[track_caller]
fn assert_cgroups_gone(lj: u32, within: Duration, what: &str) {
    let gone = wait_until(within, || cgroups_of(lj).is_empty());
    assert!(
        gone,
        "{what}: the jail's cgroup is still there {within:?} after ljspawn exited: {:?}",
        cgroups_of(lj)
    );
}

/// The memory limit written in the cgroup at `dir` (v2 `memory.max`, v1 `memory.limit_in_bytes`).
fn memory_limit(dir: &Path) -> Option<u64> {
    read_u64(&dir.join("memory.max")).or_else(|| read_u64(&dir.join("memory.limit_in_bytes")))
}

/// How long the host takes to run `true` (it must stay responsive while a jail misbehaves).
fn host_true_latency() -> Duration {
    let t = Instant::now();
    let st = Command::new("true").status().expect("run true on the host");
    assert!(st.success(), "true failed on the host");
    t.elapsed()
}

/// The worst [`host_true_latency`] of runs every 20 ms for `d`: how responsive the host is now,
/// whatever else loads it.
fn host_latency_for(d: Duration) -> Duration {
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    while t.elapsed() < d {
        worst = worst.max(host_true_latency());
        std::thread::sleep(Duration::from_millis(20));
    }
    worst
}

/// The host still responds while a jail runs wild: `true` takes under 2 s more than twice the
/// worst of a calm moment of the same test (`calm`, from [`host_latency_for`]).
fn responsive(calm: Duration) -> Duration {
    calm * 2 + Duration::from_secs(2)
}

/// A pid no process has now (for a fake stale cgroup), from the top of the pid range down.
fn unused_pid() -> u32 {
    let max: u32 =
        read_trim(Path::new("/proc/sys/kernel/pid_max")).and_then(|s| s.parse().ok()).unwrap_or(32768);
    (max / 2..max).rev().find(|&p| !pid_alive(p) && cgroups_of(p).is_empty()).expect("a free pid")
}

/// The script of a fork bomb that stops at the first failed fork: starts up to `n` `sleep
/// 100` in a subshell (busybox sh exits when a fork fails, so the subshell takes the hit),
/// then counts the jail's processes with builtins only (no fork needed) and prints
/// `procs N`.
fn fork_bomb_script(n: u32, then: &str) -> String {
    format!(
        "( i=0; while [ $i -lt {n} ]; do sleep 100 & i=$((i+1)); done ) 2>/dev/null; \
         n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs $n; {then}"
    )
}

/// `procs N` from the output of [`fork_bomb_script`].
#[track_caller]
fn procs_counted(out: &Output) -> u64 {
    out.lines()
        .iter()
        .find_map(|l| l.strip_prefix("procs ")?.parse().ok())
        .unwrap_or_else(|| panic!("no 'procs N' line\n{}", out.report()))
}

// ---------------------------------------------------------------- /etc/lightjail.conf

const CONF: &str = "/etc/lightjail.conf";
/// Every test that changes /etc/lightjail.conf takes this lock (flock(2), released when the
/// test process dies) first.
const CONF_LOCK: &str = "/tmp/lj-tests-etc-lightjail-conf.lock";

/// Holds the lock on /etc/lightjail.conf; restores the file as it was when dropped.
struct ConfGuard {
    _lock: fs::File,
    saved: Option<(Vec<u8>, u32)>,
}

impl ConfGuard {
    /// Takes the lock (waits up to 2 minutes for other tests) and saves the file.
    fn take() -> ConfGuard {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(CONF_LOCK)
            .unwrap_or_else(|e| panic!("open {CONF_LOCK}: {e}"));
        let locked = wait_until(Duration::from_secs(120), || {
            // SAFETY: flock on a descriptor we own.
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        });
        assert!(locked, "{CONF_LOCK} stayed locked for 2 minutes");
        let saved = fs::read(CONF).ok().map(|b| {
            let mode = fs::metadata(CONF).map(|m| m.mode() & 0o7777).unwrap_or(0o644);
            (b, mode)
        });
        ConfGuard { _lock: lock, saved }
    }

    /// The saved file without its `limits` lines (bridge and macvlan grants other tests may
    /// rely on stay).
    fn others(&self) -> String {
        let text =
            self.saved.as_ref().map(|(b, _)| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
        text.lines()
            .filter(|l| l.split_whitespace().next() != Some("limits"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// Writes /etc/lightjail.conf: the other grants, then `extra` (root, 0644).
    fn set(&self, extra: &str) {
        let text = format!("{}{extra}", self.others());
        let tmp = format!("{CONF}.lj-tests.{}", std::process::id());
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o644)
            .open(&tmp)
            .unwrap_or_else(|e| panic!("create {tmp}: {e}"));
        f.write_all(text.as_bytes()).expect("write lightjail.conf");
        drop(f);
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod lightjail.conf");
        std::os::unix::fs::chown(&tmp, Some(0), Some(0)).expect("chown lightjail.conf");
        fs::rename(&tmp, CONF).unwrap_or_else(|e| panic!("rename {tmp} {CONF}: {e}"));
    }
}

impl Drop for ConfGuard {
    fn drop(&mut self) {
        let res = match &self.saved {
            Some((b, mode)) => {
                fs::write(CONF, b).and_then(|()| fs::set_permissions(CONF, fs::Permissions::from_mode(*mode)))
            }
            None => fs::remove_file(CONF).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }),
        };
        if let Err(e) = res {
            eprintln!("warning: cannot restore {CONF}: {e}");
        }
    }
}

// ---------------------------------------------------------------- cgroup limits

/// A fork bomb under `--pids 64`: the jail never holds more than 64 tasks (the cgroup's
/// counters and the host's view of the jail agree), forks beyond it fail, the host stays
/// responsive, and the jail ends cleanly with its cgroup removed.
fn fork_bomb_contained(cx: &Ctx) {
    if !need_controllers(cx, &["pids"]) {
        return;
    }
    let calm = host_latency_for(Duration::from_secs(1));
    let script = fork_bomb_script(500, "sleep 3; echo end");
    let mut running = sh_cmd(cx, &["--pids", "64"], &script).timeout(Duration::from_secs(60)).start();
    let lj = running.pid();
    let dir = wait_jail_cgroup(lj, "pids");
    assert_eq!(read_u64(&dir.join("pids.max")), Some(64), "pids.max of {}", dir.display());
    // Watch the bomb, from its start to the jail's end, however long a loaded machine takes to
    // make its processes: the cgroup's count and the host's count of the jail's processes.
    let (mut peak_current, mut peak_host, mut worst_latency) = (0u64, 0usize, Duration::ZERO);
    let mut failed_forks = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && !running.exited() {
        if let Some(n) = read_u64(&dir.join("pids.current")) {
            peak_current = peak_current.max(n);
        }
        failed_forks = failed_forks.max(keyed(&dir.join("pids.events"), "max").unwrap_or(0));
        peak_host = peak_host.max(jail_procs(lj).len());
        worst_latency = worst_latency.max(host_true_latency());
        std::thread::sleep(Duration::from_millis(20));
    }
    let peak_file = read_u64(&dir.join("pids.peak"));
    let out = running.wait().ok();
    eprintln!(
        "fork bomb: pids.current peak {peak_current}, pids.peak {peak_file:?}, host view {peak_host}, \
         failed forks {failed_forks}, host `true` at worst {worst_latency:?} (before the bomb: {calm:?})"
    );
    let inside = procs_counted(&out);
    let report = format!(
        "pids.current peak {peak_current}, pids.peak {peak_file:?}, jail processes seen from the host \
         (peak) {peak_host}, counted inside {inside}, failed forks (pids.events max) {failed_forks}\n{}",
        out.report()
    );
    assert!(
        peak_current <= 64 && peak_host <= 64 && inside <= 64,
        "more than 64 tasks in the jail: {report}"
    );
    assert!(peak_file.is_none_or(|p| p <= 64), "pids.peak above 64: {report}");
    // Not vacuous: the bomb reached the limit and forks were refused.
    assert!(peak_current >= 60 && inside >= 55, "the bomb never reached the limit: {report}");
    assert!(failed_forks > 0, "no fork was refused (pids.events max is 0): {report}");
    assert!(
        worst_latency < responsive(calm),
        "host slow during the bomb ({worst_latency:?}, {calm:?} before it): {report}"
    );
    assert_eq!(out.lines().last().map(String::as_str), Some("end"), "{report}");
    // The 61 leftover `sleep 100` were killed with the jail.
    assert!(out.elapsed < Duration::from_secs(30), "the jail did not end cleanly: {report}");
    assert!(jail_procs(lj).is_empty(), "jail processes left: {report}");
    assert_cgroups_gone(lj, Duration::from_secs(1), "fork bomb");
}

/// A memory hog under `--memory 64M` is OOM-killed inside the jail: status 137, the note,
/// ljspawn itself exits normally; the same jail with a small allocation, and the hog without
/// the limit, succeed (controls).
fn memory_hog_oom_killed(cx: &Ctx) {
    if !need_controllers(cx, &["memory"]) {
        return;
    }
    let calm = host_latency_for(Duration::from_millis(500));
    // busybox tail keeps its whole input when it holds no newline: 300 MiB of zeros in memory.
    let hog = |n: u64| format!("head -c {} /dev/zero | tail", n * MIB);
    // Controls: 10 MiB fits in 64M; 300 MiB without a limit works (the hog is not broken).
    let out = sh_with(cx, &["--memory", "64M"], &format!("{} | wc -c", hog(10))).ok();
    assert_eq!(out.lines(), [(10 * MIB).to_string()], "{}", out.report());
    assert!(!out.stderr.contains("OOM"), "{}", out.report());
    let out = sh_with(cx, &[], &format!("{} | wc -c", hog(300))).ok();
    assert_eq!(out.lines(), [(300 * MIB).to_string()], "{}", out.report());

    // The hog, as the jail's last command: its status (137, SIGKILL) is the jail's.
    let running = sh_cmd(cx, &["--memory", "64M"], &format!("sleep 1; {} >/dev/null", hog(300))).start();
    let lj = running.pid();
    let dir = wait_jail_cgroup(lj, "memory");
    assert_eq!(memory_limit(&dir), Some(64 * MIB), "memory limit of {}", dir.display());
    let out = running.wait();
    let report = out.report();
    // ljspawn exited with 137 (it was not killed itself: that would be a signal).
    let st = out.exit.unwrap_or_else(|| panic!("no exit status\n{report}"));
    assert_eq!((st.code(), st.signal()), (Some(137), None), "ljspawn's own status\n{report}");
    assert!(!out.timed_out && !out.pipes_held, "{report}");
    assert!(out.stderr.lines().any(|l| l == NOTE_OOM), "no OOM note on stderr\n{report}");
    assert_cgroups_gone(lj, Duration::from_secs(1), "OOM");
    // The host is unaffected: it still runs programs.
    let after = host_true_latency();
    assert!(after < responsive(calm), "host `true` took {after:?} after the OOM ({calm:?} before)");

    // A hog that is the jail's program itself (python3 of the host, read-only root).
    let Some(py) =
        ["/usr/bin/python3", "/usr/local/bin/python3"].into_iter().find(|p| Path::new(p).is_file())
    else {
        cx.skip("python3 not installed (/usr/bin/python3): the python part of the memory test");
        return;
    };
    let code = "b = b'x' * (512 << 20); print('survived', len(b))";
    let out = cx.ljspawn().args(["--root", "/", "--memory", "64M", "--", py, "-c", code]).run();
    let st = out.exit.unwrap_or_else(|| panic!("no exit status\n{}", out.report()));
    assert_eq!((st.code(), st.signal()), (Some(137), None), "python hog\n{}", out.report());
    assert!(!out.stdout.contains("survived"), "{}", out.report());
    assert!(out.stderr.lines().any(|l| l == NOTE_OOM), "no OOM note on stderr\n{}", out.report());
    // Control: the same interpreter under the limit with 8 MiB.
    let out = cx
        .ljspawn()
        .args(["--root", "/", "--memory", "64M", "--", py, "-c", "b = b'x' * (8 << 20); print(len(b))"])
        .run()
        .ok();
    assert_eq!(out.lines(), [(8 * MIB).to_string()], "{}", out.report());
    assert!(!out.stderr.contains("OOM"), "{}", out.report());
}

/// CPU time (nanoseconds on a CPU, from `/proc/PID/schedstat`) of the jail's processes now.
fn jail_cpu_ns(lj: u32) -> u64 {
    jail_procs(lj)
        .iter()
        .filter_map(|p| {
            fs::read_to_string(format!("/proc/{p}/schedstat")).ok()?.split(' ').next()?.parse::<u64>().ok()
        })
        .sum()
}

/// What a busy loop got in its jail over the measuring window.
#[derive(Debug)]
struct Share {
    /// CPU time of the jail over wall time (1.0: one whole CPU).
    of_a_cpu: f64,
    /// Periods in which the kernel throttled the jail's cgroup during the window
    /// (`nr_throttled` of `cpu.stat`).
    throttled: u64,
}

/// Runs a busy loop in a jail with `--cpus CPUS` and measures its share of one CPU over 2 s of
/// wall time, and how often the kernel throttled it meanwhile.
///
/// Other load on the machine must not decide the result (a loaded machine gives a busy loop at
/// the default weight less than half a CPU, and then no quota is ever reached): the test gives
/// the jail's cgroup the highest scheduling weight (`cpu.shares` 262144 on v1, `cpu.weight`
/// 10000 on v2; ljspawn sets neither), so the loop gets a CPU whenever it is runnable and the
/// quota alone limits it. The jail then ends by SIGTERM (forwarded to the loop: 143).
fn busy_loop_share(cx: &Ctx, cpus: &str) -> Share {
    let running = sh_cmd(cx, &["--cpus", cpus, "--timeout", "60s"], "while :; do :; done")
        .timeout(Duration::from_secs(90))
        .start();
    let lj = running.pid();
    let dir = wait_jail_cgroup(lj, "cpu");
    let (weight, top) =
        if dir.join("cpu.weight").exists() { ("cpu.weight", "10000") } else { ("cpu.shares", "262144") };
    fs::write(dir.join(weight), top).unwrap_or_else(|e| panic!("write {}: {e}", dir.join(weight).display()));
    assert!(wait_until(Duration::from_secs(30), || jail_cpu_ns(lj) > 0), "the busy loop never ran");
    std::thread::sleep(Duration::from_millis(200));
    let throttled = || {
        keyed(&dir.join("cpu.stat"), "nr_throttled")
            .unwrap_or_else(|| panic!("no nr_throttled in {}", dir.display()))
    };
    let (t0, c0, n0) = (Instant::now(), jail_cpu_ns(lj), throttled());
    std::thread::sleep(Duration::from_secs(2));
    let (c1, t1, n1) = (jail_cpu_ns(lj), Instant::now(), throttled());
    running.signal("TERM");
    running.wait().expect_status(143);
    assert_cgroups_gone(lj, Duration::from_secs(1), "busy loop");
    Share { of_a_cpu: (c1 - c0) as f64 / 1e9 / (t1 - t0).as_secs_f64(), throttled: n1 - n0 }
}

/// `--cpus 0.5` holds a busy loop near half a core: the kernel throttles it, and it gets about
/// half a CPU; the control, `--cpus 2` (more than the loop can use), is never throttled and gets
/// clearly more.
fn cpu_quota_half_core(cx: &Ctx) {
    if !need_controllers(cx, &["cpu"]) {
        return;
    }
    let half = busy_loop_share(cx, "0.5");
    eprintln!("--cpus 0.5: {half:?}");
    assert!((0.3..=0.7).contains(&half.of_a_cpu), "--cpus 0.5: the busy loop got {half:?}");
    assert!(half.throttled > 0, "--cpus 0.5: the kernel never throttled the jail: {half:?}");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores < 2 {
        eprintln!("note: 1 CPU: the control with --cpus 2 is left out");
        return;
    }
    // The control shows the measurement can see more than the quota.
    let two = busy_loop_share(cx, "2");
    eprintln!("--cpus 2: {two:?}");
    assert_eq!(
        two.throttled, 0,
        "--cpus 2: a single busy loop was throttled: {two:?} ({half:?} with --cpus 0.5)"
    );
    assert!(two.of_a_cpu > 0.8, "--cpus 2: the busy loop got only {two:?} ({half:?} with --cpus 0.5)");
}

/// How much later than the same jail's `sleep 1` a `--timeout 1s` jail may end: the two run
/// one after the other, so load slows both; a timeout that fired late (or one that was not
/// honoured: the 20 s run limit) is seconds more.
const TIMEOUT_SLACK: Duration = Duration::from_secs(3);

/// `sleep 1000` under `--timeout 1s` ends in about a second: 124 and one line, no earlier than
/// a second and not much later than the same jail running `sleep 1` to its end.
fn timeout_one_second(cx: &Ctx) {
    let timed = |extra: &[&str]| {
        let baseline = cx
            .ljspawn()
            .args(["--root", &cx.world_str()])
            .args(extra)
            .args(["--", "sleep", "1"])
            .timeout(Duration::from_secs(20))
            .run()
            .ok()
            .elapsed;
        let running = cx
            .ljspawn()
            .args(["--root", &cx.world_str()])
            .args(extra)
            .args(["--timeout", "1s", "--", "sleep", "1000"])
            .timeout(Duration::from_secs(20))
            .start();
        let lj = running.pid();
        let out = running.wait().expect_ljspawn_error(124);
        assert!(out.stderr.starts_with("ljspawn: timed out after 1s: "), "{}", out.report());
        assert!(
            out.elapsed >= Duration::from_millis(900) && out.elapsed < baseline + TIMEOUT_SLACK,
            "not about a second (the same jail's `sleep 1` took {baseline:?})\n{}",
            out.report()
        );
        lj
    };
    timed(&[]);
    // With cgroup limits too (root and setuid callers with a grant; rootless has none here).
    if cx.mode == Mode::Root && host_has_controller("pids") {
        let lj = timed(&["--pids", "16"]);
        assert_cgroups_gone(lj, Duration::from_secs(1), "timeout");
    }
}

/// Jails of every kind end (normally, OOM, timeout, failed exec, ljspawn signalled) and
/// leave no cgroup; then no `lightjail-<pid>` cgroup of a dead ljspawn is left anywhere.
fn no_cgroup_left(cx: &Ctx) {
    if !need_controllers(cx, &["memory", "pids", "cpu"]) {
        return;
    }
    let all = ["--memory", "64M", "--pids", "32", "--cpus", "0.5"];
    let cases: [(&str, &[&str], &str, i32); 4] = [
        ("plain", &[], "echo ok", 0),
        ("oom", &[], "head -c 209715200 /dev/zero | tail >/dev/null", 137),
        ("timeout", &["--timeout", "300ms"], "sleep 100", 124),
        ("exit code", &[], "exit 7", 7),
    ];
    for (what, extra, script, want) in cases {
        let mut opts: Vec<&str> = all.to_vec();
        opts.extend_from_slice(extra);
        let running = sh_cmd(cx, &opts, script).timeout(Duration::from_secs(30)).start();
        let lj = running.pid();
        running.wait().expect_status(want);
        assert_cgroups_gone(lj, Duration::from_secs(1), what);
    }
    // Program not found (127) and ljspawn stopped by SIGTERM (forwarded to the jail).
    let running =
        cx.ljspawn().args(["--root", &cx.world_str()]).args(all).args(["--", "/nonexistent"]).start();
    let lj = running.pid();
    running.wait().expect_ljspawn_error(127);
    assert_cgroups_gone(lj, Duration::from_secs(1), "not found");
    let running = sh_cmd(cx, &all, "sleep 100").start();
    let lj = running.pid();
    wait_jail_cgroup(lj, "pids");
    running.signal("TERM");
    let out = running.wait();
    assert!(!out.timed_out && out.status() != 0, "{}", out.report());
    assert_cgroups_gone(lj, Duration::from_secs(1), "SIGTERM");
    // Nothing of a dead ljspawn anywhere (other tests' live jails are fine; a setuid jail's
    // cgroup goes shortly after its ljspawn, in the root helper).
    let stale = || all_lightjail_cgroups().into_iter().filter(|&(_, p)| !pid_alive(p)).collect::<Vec<_>>();
    let clean = wait_until(Duration::from_secs(30), || stale().is_empty());
    assert!(clean, "cgroups of ljspawns that ended are left: {:?}", stale());
}

/// A stale `lightjail-<dead pid>` cgroup is removed by the next run with limits; one named
/// after a live process is left alone.
fn stale_cgroup_reaped(cx: &Ctx) {
    if !need_controllers(cx, &["pids"]) {
        return;
    }
    // Where this host puts the jails' pids cgroups: from a running jail.
    let running = sh_cmd(cx, &["--pids", "10"], "sleep 1").start();
    let lj = running.pid();
    let base = wait_jail_cgroup(lj, "pids").parent().expect("parent of the jail's cgroup").to_path_buf();
    running.wait().ok();
    assert_cgroups_gone(lj, Duration::from_secs(1), "sleep 1");
    let dead = base.join(format!("lightjail-{}", unused_pid()));
    let live = base.join(format!("lightjail-{}", std::process::id()));
    for d in [&dead, &live] {
        fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    let out = sh_with(cx, &["--pids", "10"], "echo ran").ok();
    let (dead_left, live_left) = (dead.exists(), live.exists());
    let _ = fs::remove_dir(&live);
    let _ = fs::remove_dir(&dead);
    assert!(!dead_left, "stale {} was not removed by the next run\n{}", dead.display(), out.report());
    assert!(live_left, "{} (a live pid) was removed\n{}", live.display(), out.report());
}

/// ljspawn killed with SIGKILL cannot remove its jail's cgroups: the next run with limits
/// does (and the jail itself died with ljspawn).
fn killed_ljspawn_cgroup_reaped(cx: &Ctx) {
    if !need_controllers(cx, &["pids", "memory"]) {
        return;
    }
    let running = sh_cmd(cx, &["--pids", "10", "--memory", "64M"], "sleep 100").start();
    let lj = running.pid();
    let dirs = [wait_jail_cgroup(lj, "pids"), wait_jail_cgroup(lj, "memory")];
    let procs = jail_procs(lj);
    running.signal("KILL");
    let out = running.wait();
    assert_eq!(out.status(), 137, "{}", out.report());
    assert!(wait_until(Duration::from_secs(30), || procs.iter().all(|&p| !pid_alive(p))), "jail survived");
    let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    if left.is_empty() {
        eprintln!("note: the cgroups of the killed ljspawn were already gone (another run reaped them)");
    }
    sh_with(cx, &["--pids", "10", "--memory", "64M"], "true").ok();
    let left: Vec<&PathBuf> = dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups of the killed ljspawn {lj} survive the next run: {left:?}");
}

/// Rootless: limits need a delegated v2 subtree. This test runs the caller in a cgroup it does
/// not own, so ljspawn must refuse (125, one line naming what is missing) and not run the
/// program.
fn rootless_refused(cx: &Ctx) {
    if !need_controllers(cx, &["pids"]) {
        return;
    }
    let v2_has = |c: &str| {
        cgroup_mounts().iter().find(|m| m.fstype == "cgroup2").is_some_and(|m| {
            read_trim(&Path::new(&m.mount_point).join("cgroup.controllers"))
                .is_some_and(|l| l.split_whitespace().any(|x| x == c))
        })
    };
    for (opt, val, c) in [("--pids", "10", "pids"), ("--memory", "64M", "memory"), ("--cpus", "0.5", "cpu")] {
        if !host_has_controller(c) {
            continue;
        }
        let out = sh_with(cx, &[opt, val], "echo RAN");
        if current_uid() != 0 && out.status() == 0 && v2_has(c) {
            // Run by a user inside a delegated subtree: limits work there.
            assert_eq!(out.lines(), ["RAN"], "{}", out.report());
            continue;
        }
        let out = out.expect_ljspawn_error(125);
        assert!(!out.stdout.contains("RAN"), "{}", out.report());
        let want = if v2_has(c) { "delegated" } else { "cgroup v1" };
        assert!(out.stderr.contains(want), "{opt}: the message does not mention {want:?}\n{}", out.report());
    }
}

/// Setuid: `--delegate-cgroup` only with a `limits` grant; then the jail's root owns the
/// jail's cgroup v2 (it makes cgroups below it), and the cgroup goes when the jail ends.
/// (The case without subordinate ids, where the jail's own user gets it, is a unit test:
/// the test user has them.)
fn setuid_delegated_cgroup(cx: &Ctx) {
    if current_uid() != 0 {
        cx.skip("needs root to write /etc/lightjail.conf");
        return;
    }
    if !host_mountinfo().contains(" - cgroup2 ") {
        cx.skip("no cgroup v2 hierarchy on this host");
        return;
    }
    let user = cx.run_as.as_ref().expect("setuid caller").name.clone();
    let conf = ConfGuard::take();
    let script =
        "stat -c '%u %g' /sys/fs/cgroup; mkdir /sys/fs/cgroup/sub && echo made; rmdir /sys/fs/cgroup/sub";
    // A world with the mount point (the busybox world has an empty /sys).
    let d = cx.tempdir();
    let world = format!("{}/w", d.str());
    let made = std::process::Command::new("cp").args(["-a", &cx.world_str(), &world]).status();
    assert!(made.is_ok_and(|s| s.success()), "cp -a {} {world}", cx.world_str());
    fs::create_dir_all(format!("{world}/sys/fs/cgroup")).expect("mkdir sys/fs/cgroup");
    let run =
        || cx.ljspawn().args(["--root", &world, "--delegate-cgroup", "--", "/bin/sh", "-c", script]).run();
    conf.set("");
    let out = run().expect_ljspawn_error(125);
    assert!(out.stderr.contains("--delegate-cgroup") && !out.stdout.contains("made"), "{}", out.report());
    conf.set(&format!("limits allow {user} pids=100\n"));
    let out = run().ok();
    assert_eq!(out.lines(), ["0 0", "made"], "{}", out.report());
}

/// Setuid: cgroup limits only as /etc/lightjail.conf grants them.
fn setuid_grants(cx: &Ctx) {
    if current_uid() != 0 {
        cx.skip("needs root to write /etc/lightjail.conf");
        return;
    }
    if !need_controllers(cx, &["pids", "memory"]) {
        return;
    }
    let user = cx.run_as.as_ref().expect("setuid caller").name.clone();
    let conf = ConfGuard::take();
    // No limits line: refused, naming the line that is missing.
    conf.set("");
    let out = sh_with(cx, &["--pids", "10"], "echo RAN").expect_ljspawn_error(125);
    assert!(
        out.stderr.contains("limits allow") && out.stderr.contains(CONF) && !out.stdout.contains("RAN"),
        "{}",
        out.report()
    );
    // Someone else's grant is not this caller's.
    conf.set("limits allow root,@nonexistent-lj-group pids=100\n");
    let out = sh_with(cx, &["--pids", "10"], "echo RAN").expect_ljspawn_error(125);
    assert!(out.stderr.contains("limits allow"), "{}", out.report());

    conf.set(&format!("limits allow {user} memory=128M pids=32 cpus=1\n"));
    for over in [["--pids", "64"], ["--memory", "1G"], ["--cpus", "2"]] {
        let out = sh_with(cx, &over, "echo RAN").expect_ljspawn_error(125);
        assert!(
            out.stderr.contains("above what /etc/lightjail.conf grants") && !out.stdout.contains("RAN"),
            "{}",
            out.report()
        );
    }
    // Within the grant: the limits are those asked for, and they hold.
    let script = fork_bomb_script(100, "sleep 2; echo end");
    let running =
        sh_cmd(cx, &["--pids", "20", "--memory", "64M"], &script).timeout(Duration::from_secs(60)).start();
    let lj = running.pid();
    let pids_dir = wait_jail_cgroup(lj, "pids");
    let mem_dir = wait_jail_cgroup(lj, "memory");
    assert_eq!(read_u64(&pids_dir.join("pids.max")), Some(20), "{}", pids_dir.display());
    assert_eq!(memory_limit(&mem_dir), Some(64 * MIB), "{}", mem_dir.display());
    let out = running.wait().ok();
    let inside = procs_counted(&out);
    assert!((15..=20).contains(&inside), "--pids 20 in setuid mode: {inside} processes\n{}", out.report());
    assert_eq!(out.lines().last().map(String::as_str), Some("end"), "{}", out.report());
    // Removed by the root helper once ljspawn has exited.
    assert_cgroups_gone(lj, SETUID_REAPED, "setuid");
    // ljspawn killed: the root helper removes the cgroup all the same.
    let running = sh_cmd(cx, &["--pids", "20"], "sleep 100").start();
    let lj = running.pid();
    wait_jail_cgroup(lj, "pids");
    running.signal("KILL");
    assert_eq!(running.wait().status(), 137);
    assert_cgroups_gone(lj, SETUID_REAPED, "setuid ljspawn killed with SIGKILL");
    // The OOM note in setuid mode too.
    let out =
        sh_with(cx, &["--memory", "64M"], "head -c 209715200 /dev/zero | tail >/dev/null").expect_status(137);
    assert!(out.stderr.lines().any(|l| l == NOTE_OOM), "{}", out.report());
}

/// A setuid ljspawn that fails right after making the jail's cgroup (too few descriptors for
/// its pipes: RLIMIT_NOFILE 4) leaves no root-owned cgroup behind.
fn setuid_failure_leaves_no_cgroup(cx: &Ctx) {
    if current_uid() != 0 {
        return cx.skip("needs root to write /etc/lightjail.conf");
    }
    if !need_controllers(cx, &["pids"]) {
        return;
    }
    let user = cx.run_as.as_ref().expect("setuid caller").name.clone();
    let conf = ConfGuard::take();
    conf.set(&format!("limits allow {user} pids=32\n"));
    for _ in 0..3 {
        let running = sh_cmd(cx, &["--pids", "20"], "echo RAN").prelude("ulimit -n 4").start();
        let lj = running.pid();
        let out = running.wait().expect_ljspawn_error(125);
        assert!(!out.stdout.contains("RAN"), "{}", out.report());
        assert_cgroups_gone(lj, SETUID_REAPED, "setuid ljspawn failing with RLIMIT_NOFILE 4");
    }
    // Control: the same grant works with descriptors to spare.
    sh_with(cx, &["--pids", "20"], "echo RAN").ok();
}

// ---------------------------------------------------------------- rlimits, dry run

/// `--rlimit`: the limits are set and enforced, soft and hard.
fn rlimits(cx: &Ctx) {
    // nofile: ulimit shows it, and a descriptor above it cannot be made.
    let probe = "ulimit -n; ulimit -Hn; (exec 70</dev/null) 2>/dev/null && echo fd70 || echo no-fd70";
    let out = sh_with(cx, &["--rlimit", "nofile=64"], probe).ok();
    assert_eq!(out.lines(), ["64", "64", "no-fd70"], "{}", out.report());
    let out = sh_with(cx, &["--rlimit", "nofile=32:128"], probe).ok();
    assert_eq!(out.lines(), ["32", "128", "no-fd70"], "{}", out.report());
    let out = sh_with(cx, &[], probe).ok();
    assert_eq!(
        out.lines().last().map(String::as_str),
        Some("fd70"),
        "control without --rlimit\n{}",
        out.report()
    );
    // fsize: writing 4 KiB stops at 1 KiB (SIGXFSZ, or EFBIG); 1000 bytes are fine.
    let script = "head -c 4096 /dev/zero > /tmp/big; echo big $? $(wc -c < /tmp/big); \
                  head -c 1000 /dev/zero > /tmp/small; echo small $? $(wc -c < /tmp/small)";
    let out = sh_with(cx, &["--rlimit", "fsize=1024"], script).ok();
    let lines = out.lines();
    let big: Vec<&str> = lines.first().map(|l| l.split(' ').collect()).unwrap_or_default();
    assert!(
        big.len() == 3 && big[1] != "0" && big[2] == "1024",
        "--rlimit fsize=1024: a 4 KiB write did not stop at 1 KiB\n{}",
        out.report()
    );
    assert_eq!(lines.get(1).map(String::as_str), Some("small 0 1000"), "{}", out.report());
    let out = sh_with(cx, &[], script).ok();
    assert_eq!(out.lines(), ["big 0 4096", "small 0 1000"], "control without --rlimit\n{}", out.report());
}

/// Sizes without a unit are MiB (like `-m`); a memory limit too small to start a process is
/// refused with one line before anything runs (issue 14, item 4). Root also runs `true` at the
/// smallest accepted limit and at `--memory 100`.
fn memory_sizes(cx: &Ctx) {
    let w = cx.world_str();
    // Setuid: no `limits` grant. The lock also keeps out the grants other tests write meanwhile
    // (`setuid_grants` allows this user memory=128M), which would let these sizes through.
    let conf = (cx.mode == Mode::Setuid && current_uid() == 0).then(ConfGuard::take);
    if let Some(c) = &conf {
        c.set("");
    }
    let dry = |m: &str| cx.ljspawn().args(["--dry-run", "--root", &w, "--memory", m, "--", "true"]).run();
    for (m, bytes) in [("100", 100 * MIB), ("1M", MIB), ("2048K", 2 * MIB), ("3145728B", 3 * MIB)] {
        let out = dry(m);
        if cx.mode == Mode::Setuid {
            // Without a grant, limits are refused; the size is still read the same way.
            out.expect_ljspawn_error(125);
            continue;
        }
        let out = out.ok();
        let want = format!("cgroup: memory.max {bytes} bytes");
        assert!(out.stdout.lines().any(|l| l.contains(&want)), "--memory {m}: want {want}\n{}", out.report());
    }
    for m in ["100B", "512K", "1048575B"] {
        let out = cx
            .ljspawn()
            .args(["--root", &w, "--memory", m, "--", "/bin/sh", "-c", "echo RAN"])
            .run()
            .expect_ljspawn_error(2);
        assert!(
            out.stderr.contains(&format!("--memory {m} is too small to start a process"))
                && out.stdout.is_empty(),
            "{}",
            out.report()
        );
    }
    if cx.mode == Mode::Root && need_controllers(cx, &["memory"]) {
        for m in ["1M", "100"] {
            let out = sh_with(cx, &["--memory", m], "echo RAN").ok();
            assert_eq!(out.lines(), ["RAN"], "--memory {m}\n{}", out.report());
        }
    }
}

/// `--dry-run` lists the cgroup limits (and rlimits) and runs nothing.
fn dry_run_lists_limits(cx: &Ctx) {
    let out = cx
        .ljspawn()
        .args(["--dry-run", "--root", &cx.world_str(), "--memory", "64M", "--pids", "10", "--cpus", "0.5"])
        .args(["--rlimit", "nofile=64", "--", "/bin/sh", "-c", "echo RAN"])
        .run()
        .ok();
    let text = &out.stdout;
    for want in [
        "cgroup: memory.max 67108864 bytes",
        "cgroup: pids.max 10",
        "cgroup: cpu 0.5 CPUs",
        "rlimit: nofile soft 64 hard 64",
    ] {
        assert!(text.lines().any(|l| l.contains(want)), "--dry-run lacks {want:?}\n{}", out.report());
    }
    assert!(!text.lines().any(|l| l == "RAN"), "{}", out.report());
    // lightjail's -m MB.
    let out = cx.ljspawn().args(["--dry-run", "-d", &cx.world_str(), "-m", "32", "-p", "true"]).run().ok();
    assert!(out.stdout.contains("cgroup: memory.max 33554432 bytes"), "-m 32\n{}", out.report());
    // No limits: no cgroup lines.
    let out = cx.ljspawn().args(["--dry-run", "--root", &cx.world_str(), "--", "true"]).run().ok();
    assert!(!out.stdout.contains("cgroup:"), "{}", out.report());
}

/// With limits, the jail's cgroup namespace is rooted at the jail's own cgroup: every line of
/// its /proc/self/cgroup for the limited controllers ends in `:/` (and so does the v2 line),
/// while the host sees the jail under `CALLER/lightjail-<pid>`.
fn jail_sees_its_cgroup_as_root(cx: &Ctx) {
    let out = sh_with(cx, &["--pids", "20", "--memory", "64M"], "cat /proc/self/cgroup").ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let limited: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("0::") || l.contains(":pids:") || l.contains(":memory:"))
        .collect();
    assert!(!limited.is_empty(), "no cgroup lines\n{}", out.report());
    for l in limited {
        assert!(l.ends_with(":/"), "the jail sees {l:?}, not its own cgroup as /\n{}", out.report());
    }
}

/// The jail's cgroup is made inside the caller's own (issue 10, item 4): a caller placed in a
/// cgroup capped at 64M asks for 200M, and its jail is still held at 64M; the jail's cgroup is
/// under the caller's. On a v1 memory hierarchy (this kind of host) the cap is a child of the
/// test's own memory cgroup; on pure v2 a cgroup under the root where ljspawn is the only
/// process (ljspawn then delegates to the jail's cgroup itself).
fn jail_cgroup_inside_the_callers(cx: &Ctx) {
    if current_uid() != 0 {
        cx.skip("needs root to make the caller's capped cgroup");
        return;
    }
    if !need_controllers(cx, &["memory"]) {
        return;
    }
    let mounts = cgroup_mounts();
    let v2 = mounts.iter().find(|m| m.fstype == "cgroup2").filter(|m| {
        read_trim(&Path::new(&m.mount_point).join("cgroup.controllers"))
            .is_some_and(|l| l.split_whitespace().any(|c| c == "memory"))
    });
    let (mount, own) = match v2 {
        Some(m) => {
            // The root cgroup gives memory to its children (systemd hosts do; else root may).
            let top = PathBuf::from(&m.mount_point);
            let enabled = read_trim(&top.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                if let Err(e) = fs::write(top.join("cgroup.subtree_control"), "+memory") {
                    cx.skip(&format!("cannot enable the v2 memory controller at the root: {e}"));
                    return;
                }
            }
            (m.clone(), "/".to_string())
        }
        None => {
            let m = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == "memory"))
                .expect("a v1 memory hierarchy")
                .clone();
            (m, own_v1_cgroup("memory"))
        }
    };
    let cap = cgroup_dir(&mount, &own).join(lj_tests::marker("cap"));
    fs::create_dir(&cap).unwrap_or_else(|e| panic!("mkdir {}: {e}", cap.display()));
    let _rm = CallerCgroup(cap.clone());
    let limit = if v2.is_some() { "memory.max" } else { "memory.limit_in_bytes" };
    fs::write(cap.join(limit), (64 * MIB).to_string()).expect("cap the caller's cgroup at 64M");
    for swap in ["memory.swap.max", "memory.memsw.limit_in_bytes"] {
        if cap.join(swap).exists() {
            let v = if swap == "memory.swap.max" { "0".to_string() } else { (64 * MIB).to_string() };
            fs::write(cap.join(swap), v).unwrap_or_else(|e| panic!("{swap}: {e}"));
        }
    }
    let conf = (cx.mode == Mode::Setuid).then(ConfGuard::take);
    if let Some(c) = &conf {
        let user = &cx.run_as.as_ref().expect("setuid caller").name;
        c.set(&format!("limits allow {user} memory=256M\n"));
    }
    // Root moves the shell into the capped cgroup, then it becomes the caller and ljspawn (the
    // same process: ljspawn is the cgroup's only process).
    let spawn = |script: &str| {
        let mut argv: Vec<String> =
            vec!["sh".into(), "-c".into(), "echo $$ > \"$0\"/cgroup.procs && exec \"$@\"".into()];
        argv.push(cap.display().to_string());
        if let Some(u) = &cx.run_as {
            let setpriv = lj_tests::which("setpriv").expect("setpriv");
            argv.push(setpriv.display().to_string());
            argv.extend(lj_tests::setpriv_args(u));
        }
        argv.push(cx.bin.display().to_string());
        for a in ["--root", &cx.world_str(), "--memory", "200M", "--", "/bin/sh", "-c", script] {
            argv.push(a.to_string());
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(&cx.dir).stdin(std::process::Stdio::null());
        cmd
    };
    // Where the jail's cgroup is, while it runs.
    let mut sleeper = spawn("sleep 30").stdout(std::process::Stdio::null()).spawn().expect("start ljspawn");
    let lj = sleeper.id();
    let found = wait_until(Duration::from_secs(30), || jail_cgroup(lj, "memory").is_some());
    let dir = jail_cgroup(lj, "memory");
    // SIGTERM (forwarded to the jail): ljspawn removes the jail's cgroup on the way out.
    let _ = Command::new("kill").args(["-TERM", &lj.to_string()]).status();
    let _ = sleeper.wait();
    assert!(found, "no memory cgroup holds the jail of ljspawn {lj}");
    let dir = dir.expect("found");
    assert!(
        dir.starts_with(&cap),
        "the jail's cgroup {} is not inside the caller's {}",
        dir.display(),
        cap.display()
    );
    assert_eq!(dir.file_name().and_then(|n| n.to_str()), Some(format!("lightjail-{lj}").as_str()));
    assert!(wait_until(SETUID_REAPED, || !dir.exists()), "{} left behind", dir.display());
    // 100M of zeros held in memory: within the jail's 200M, above the caller's 64M.
    let out = lj_tests::run_with_timeout(
        spawn("head -c 104857600 /dev/zero | tail >/dev/null"),
        None,
        Duration::from_secs(60),
    )
    .expect("run ljspawn");
    drop(conf);
    assert_eq!(out.status(), 137, "the caller's 64M did not hold for the jail\n{}", out.report());
}

/// ljspawn run where its cgroup hierarchy is mounted with a root of its own (as a container
/// given only its own cgroup sees it: mountinfo's root field is that cgroup, and an earlier
/// mount of the whole hierarchy on the same point is hidden): the jail's cgroup is made in the
/// caller's, found at the mount point itself, and its `--pids 8` holds.
fn cgroup_mounted_with_a_root_of_its_own(cx: &Ctx) {
    if current_uid() != 0 {
        cx.skip("needs root to make a cgroup and mount it");
        return;
    }
    if !need_controllers(cx, &["pids"]) {
        return;
    }
    let mounts = cgroup_mounts();
    let v2 = mounts.iter().find(|m| {
        m.fstype == "cgroup2"
            && read_trim(&Path::new(&m.mount_point).join("cgroup.controllers"))
                .is_some_and(|l| l.split_whitespace().any(|c| c == "pids"))
    });
    // v1: a child of the test's own pids cgroup. v2: a child of the root cgroup (which gives
    // pids to its children: systemd hosts do; else root may), where the shell that becomes
    // ljspawn is the only process (ljspawn then delegates to the jail's cgroup itself).
    // Left enabled, as the memory test leaves memory: taking pids away from the root again
    // would take it from other tests' cgroups running at the same time.
    let (m, path) = match v2 {
        Some(m) => {
            let top = PathBuf::from(&m.mount_point);
            let enabled = read_trim(&top.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "pids") {
                if let Err(e) = fs::write(top.join("cgroup.subtree_control"), "+pids") {
                    cx.skip(&format!("cannot enable the v2 pids controller at the root: {e}"));
                    return;
                }
            }
            (m.clone(), "/".to_string())
        }
        None => {
            let m = mounts.iter().find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == "pids"));
            (m.expect("a v1 pids hierarchy").clone(), own_v1_cgroup("pids"))
        }
    };
    let cg = cgroup_dir(&m, &path).join(lj_tests::marker("own-root"));
    fs::create_dir(&cg).unwrap_or_else(|e| panic!("mkdir {}: {e}", cg.display()));
    let _rm = CallerCgroup(cg.clone());
    let unshare = lj_tests::which("unshare").expect("unshare");
    // In a mount namespace of its own: into the new cgroup, which is then mounted over the
    // hierarchy's mount point; ljspawn becomes that shell.
    let mut cmd = Command::new(unshare);
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"c=$0; m=$1; shift; echo $$ > "$c/cgroup.procs" && mount --bind "$c" "$m" && exec "$@""#)
        .arg(&cg)
        .arg(&m.mount_point)
        .arg(&cx.bin)
        .args(["--root", &cx.world_str(), "--pids", "8", "--", "/bin/sh", "-c"])
        .arg(fork_bomb_script(30, "echo end"))
        .current_dir(&cx.dir);
    let out = lj_tests::run_with_timeout(cmd, None, Duration::from_secs(60)).expect("run ljspawn").ok();
    let inside = procs_counted(&out);
    assert!((4..=8).contains(&inside), "{inside} processes in a jail under --pids 8\n{}", out.report());
    assert_eq!(out.lines().last().map(String::as_str), Some("end"), "{}", out.report());
}

/// A trace instance of the test's own (tracefs mounted in the test's directory, the instance
/// named by a marker, so other users of the tracing buffers see nothing of it) recording only
/// `cgroup:cgroup_attach_task`, the event of every task moved between cgroups. Gone when
/// dropped.
struct AttachTrace {
    mount: PathBuf,
    instance: PathBuf,
}

impl AttachTrace {
    fn start(cx: &Ctx) -> Result<AttachTrace, String> {
        let mount = cx.dir.join(lj_tests::marker("tracefs"));
        fs::create_dir(&mount).map_err(|e| format!("mkdir {}: {e}", mount.display()))?;
        let st = Command::new("mount").args(["-t", "tracefs", "nodev"]).arg(&mount).status();
        if !st.is_ok_and(|s| s.success()) {
            let _ = fs::remove_dir(&mount);
            return Err("cannot mount tracefs".into());
        }
        let instance = mount.join("instances").join(lj_tests::marker("lj-attach"));
        let t = AttachTrace { mount, instance };
        fs::create_dir(&t.instance).map_err(|e| format!("mkdir {}: {e}", t.instance.display()))?;
        let enable = t.instance.join("events/cgroup/cgroup_attach_task/enable");
        fs::write(&enable, "1").map_err(|e| format!("{}: {e}", enable.display()))?;
        Ok(t)
    }

    /// The (pid, dst_path) of every task moved so far.
    fn moves(&self) -> Vec<(u32, String)> {
        let text = fs::read_to_string(self.instance.join("trace")).expect("read the trace");
        text.lines()
            .filter(|l| l.contains("cgroup_attach_task:"))
            .filter_map(|l| {
                let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k));
                Some((field("pid=")?.parse().ok()?, field("dst_path=")?.to_string()))
            })
            .collect()
    }
}

impl Drop for AttachTrace {
    fn drop(&mut self) {
        let _ = fs::write(self.instance.join("events/cgroup/cgroup_attach_task/enable"), "0");
        let _ = fs::remove_dir(&self.instance);
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = fs::remove_dir(&self.mount);
    }
}

/// The jail's PID 1 is born in its cgroup (cgroup v2: `clone3` with `CLONE_INTO_CGROUP`; v1:
/// ljspawn clones it from inside the jail's cgroup and moves itself back): no task but ljspawn
/// itself is ever moved into `lightjail-<ljspawn pid>` (the kernel's own record of every move,
/// from tracefs), while the jail's processes do run there. (Moving PID 1 in after the clone, as
/// before, records its pid: this fails.) A control move of a process of the test's own into a
/// cgroup shows the trace records moves at all. Setuid: the same with a `limits` grant (the
/// test itself stays root, for tracefs).
fn jail_born_in_its_cgroup(cx: &Ctx) {
    if current_uid() != 0 {
        cx.skip("needs root to trace cgroup moves (tracefs)");
        return;
    }
    if !need_controllers(cx, &["memory", "pids"]) {
        return;
    }
    let trace = match AttachTrace::start(cx) {
        Ok(t) => t,
        Err(e) => {
            cx.skip(&format!("no tracefs cgroup:cgroup_attach_task event: {e}"));
            return;
        }
    };
    let conf = (cx.mode == Mode::Setuid).then(ConfGuard::take);
    if let Some(c) = &conf {
        let user = &cx.run_as.as_ref().expect("setuid caller").name;
        c.set(&format!("limits allow {user} memory=256M pids=512\n"));
    }
    let run = sh_cmd(cx, &["--memory", "256M", "--pids", "512"], "exec /bin/sleep 100").start();
    let lj = run.pid();
    let name = format!("/lightjail-{lj}");
    // Every process of the jail (PID 1 and the program) in the jail's cgroup of each hierarchy
    // the limits use; the program is running once the tree has both.
    let in_jail = |p: u32| {
        let text = fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        let limited: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(":pids:") || l.contains(":memory:") || l.starts_with("0::"))
            .filter(|l| !l.starts_with("0::") || !host_has_v1("pids"))
            .collect();
        !limited.is_empty() && limited.iter().all(|l| l.ends_with(&name))
    };
    // (The jail's processes: not the setuid mode's reaper, which stays in ljspawn's cgroup.)
    let jail = || jail_procs(lj);
    let ran = wait_until(Duration::from_secs(60), || {
        let j = jail();
        j.len() >= 2 && j.iter().all(|&p| in_jail(p))
    });
    let seen: Vec<(u32, String)> = jail()
        .iter()
        .map(|&p| (p, fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default()))
        .collect();
    // ljspawn itself back in its own cgroup of every hierarchy while the jail runs.
    let lj_cgroup = fs::read_to_string(format!("/proc/{lj}/cgroup")).unwrap_or_default();
    run.signal("TERM");
    let out = run.wait();
    assert!(ran, "the jail's processes are not all in {name}: {seen:?}\n{}", out.report());
    assert!(!lj_cgroup.is_empty(), "cannot read /proc/{lj}/cgroup\n{}", out.report());
    let stuck: Vec<&str> = lj_cgroup.lines().filter(|l| l.ends_with(&name)).collect();
    assert!(stuck.is_empty(), "ljspawn ({lj}) is still in the jail's cgroup: {stuck:?}\n{}", out.report());
    // The control: a process of the test's own moved into a cgroup of the test's.
    let (m, own) = cgroup_mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == "pids"))
        .map(|m| (m, own_v1_cgroup("pids")))
        .or_else(|| {
            let me = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let own = me.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
            cgroup_mounts().into_iter().find(|m| m.fstype == "cgroup2").map(|m| (m, own))
        })
        .expect("a pids hierarchy");
    let control = cgroup_dir(&m, &own).join(lj_tests::marker("attach-control"));
    fs::create_dir(&control).unwrap_or_else(|e| panic!("mkdir {}: {e}", control.display()));
    let _rm = CallerCgroup(control.clone());
    let mut sleep = Command::new("sleep").arg("100").spawn().expect("start sleep");
    let moved = fs::write(control.join("cgroup.procs"), sleep.id().to_string());
    let control_name = format!("/{}", control.file_name().unwrap().to_string_lossy());
    let recorded = wait_until(Duration::from_secs(30), || {
        trace.moves().iter().any(|(p, d)| *p == sleep.id() && d.ends_with(&control_name))
    });
    let _ = sleep.kill();
    let _ = sleep.wait();
    moved.expect("move the control process");
    assert!(recorded, "the trace did not record the control move: {:?}", trace.moves());
    let into_jail: Vec<(u32, String)> =
        trace.moves().into_iter().filter(|(_, d)| d.ends_with(&name)).collect();
    let others: Vec<&(u32, String)> = into_jail.iter().filter(|(p, _)| *p != lj).collect();
    assert!(
        others.is_empty(),
        "processes other than ljspawn ({lj}) were moved into the jail's cgroup (it was not born there): {others:?}\n{}",
        out.report()
    );
    // v1: ljspawn moved itself into the jail's cgroup of each limited hierarchy for the clone,
    // and the trace records it moved back into its own (the test's) after.
    let ours: Vec<String> = trace.moves().into_iter().filter(|(p, _)| *p == lj).map(|(_, d)| d).collect();
    for c in ["pids", "memory"].into_iter().filter(|c| host_has_v1(c)) {
        let own = own_v1_cgroup(c);
        let there = format!("{}{name}", own.trim_end_matches('/'));
        let went = ours.iter().position(|d| *d == there);
        let back = went.and_then(|i| ours[i + 1..].iter().position(|d| *d == own));
        assert!(
            went.is_some() && back.is_some(),
            "{c}: the trace does not show ljspawn ({lj}) moved into {there} and back into {own}: {ours:?}\n{}",
            out.report()
        );
    }
    // Where the birth cannot work (v1 `--pids 1`: ljspawn counts there for the clone), the
    // jail is cloned again and moved in as before: it runs.
    let one = sh_with(cx, &["--pids", "1", "--as-pid-1"], "echo ran").ok();
    assert_eq!(one.stdout.trim(), "ran", "{}", one.report());
}

/// Does a v1 hierarchy have `controller` (then the v2 line of /proc/PID/cgroup is not the one
/// the limits use)?
fn host_has_v1(controller: &str) -> bool {
    cgroup_mounts().iter().any(|m| m.fstype == "cgroup" && m.super_opts.iter().any(|o| o == controller))
}
