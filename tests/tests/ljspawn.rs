//! End-to-end tests of `ljspawn`, each in root and rootless mode where that means something.
//! Test names are `<what>::<mode>`, so a failure says which mode broke.
//! Needs `tests/prepare.sh` (as root) first; see the harness in `tests/src/lib.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lj_tests::{
    current_uid, host_mountinfo, host_ns, json_get, marker, net_dev_names, ns_inode, parse_flat_json,
    parse_mountinfo, path_str, procs_with_env, status_field, wait_until, Ctx, Json, Mode, MountEntry, Output,
};

const JAIL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

lj_tests::mode_tests! {
    prefix = "", run = lj_tests::run_ctx;
    cli_forms: root rootless setuid;
    options_end_at_command: root rootless setuid;
    common_form_as_clap: root rootless setuid;
    namespaces: root rootless setuid;
    uid_map: root rootless setuid;
    userns_as_root: root;
    root_read_only: root rootless setuid;
    root_rw: root rootless setuid;
    overlay_layer: root rootless setuid;
    overlay_two_layers: root rootless setuid;
    overlay_upper_kept: root rootless setuid;
    proc_fresh: root rootless setuid;
    proc_read_only_paths: root rootless setuid;
    dev_minimal: root rootless setuid;
    tmp_tmpfs: root rootless setuid;
    hostname: root rootless setuid;
    chdir: root rootless setuid;
    cpu_affinity_kept: root rootless setuid;
    env_clean: root rootless setuid;
    env_nobody_home: root rootless setuid;
    env_term_with_tty: root rootless setuid;
    user_option: root rootless setuid;
    nobody: root rootless setuid;
    bind_rw: root rootless setuid;
    bind_ro: root rootless setuid;
    bind_ro_submounts: root;
    dev_bind_vs_bind: root rootless setuid;
    tmpfs_option: root rootless setuid;
    mounts_in_order: root rootless setuid;
    dest_created: root rootless setuid;
    ro_root_missing_dest: root rootless setuid;
    symlink_dest_stays_inside: root rootless setuid;
    dotdot_at_root_stays_inside: root rootless setuid;
    without_cap_sys_chroot: root;
    mount_flags: root rootless setuid;
    fds_closed: root rootless setuid;
    pass_fd: root rootless setuid;
    host_root_fd: root rootless setuid;
    session: root rootless setuid;
    no_new_privs_no_caps: root rootless setuid;
    cap_add: root;
    cap_add_in_own_userns: rootless setuid;
    subids_map_0_to_65535: root rootless setuid;
    subids_without_ranges: rootless setuid;
    subids_base_private_range: root rootless setuid;
    mknod_fails: root rootless setuid;
    kill9_kills_jail: root rootless setuid;
    background_dies: root rootless setuid;
    signal_forwarded: root rootless setuid;
    signals_sanitized: root rootless setuid;
    exit_codes: root rootless setuid;
    not_found_127: root rootless setuid;
    not_executable_126: root rootless setuid;
    missing_root_125: root rootless setuid;
    usage_errors_2: root rootless setuid;
    timeout: root rootless setuid;
    kill_after: root rootless setuid;
    rlimit: root rootless setuid;
    seccomp_nested_userns: root rootless setuid;
    seccomp_none_root_only: rootless setuid;
    dry_run: root rootless setuid;
    lines_into_closed_stderr: root rootless setuid;
    json_status: root rootless setuid;
    json_log_lightjail_j: root rootless;
    output_files: root rootless setuid;
    output_file_caller_credentials: rootless setuid;
    net_none: root rootless setuid;
    net_host: root rootless setuid;
    host_mounts_unchanged: root rootless setuid;
    pivot_root_old_root_gone: root rootless setuid;
    mount_table_exact: root rootless setuid;
    mount_table_exact_without_open_tree_attr: root rootless;
    mount_table_exact_without_mount_setattr: root rootless;
    executable_named_like_option: root rootless setuid;
    root_only_file_not_readable: rootless setuid;
    caller_cannot_reach_root_dir: rootless setuid;
    setuid_mode: setuid;
}

// ---------------------------------------------------------------- helpers

fn world(cx: &Ctx) -> String {
    cx.world_str()
}

/// `ljspawn --root WORLD EXTRA... -- /bin/sh -c SCRIPT`.
fn sh_with(cx: &Ctx, extra: &[&str], script: &str) -> Output {
    cx.ljspawn().args(["--root", &world(cx)]).args(extra).args(["--", "/bin/sh", "-c", script]).run()
}

/// The jail's mount table.
fn jail_mounts(cx: &Ctx, extra: &[&str]) -> Vec<MountEntry> {
    let out = cx.ljspawn().args(extra).args(["--", "/bin/cat", "/proc/self/mountinfo"]).run().ok();
    let m = parse_mountinfo(&out.stdout);
    assert!(!m.is_empty(), "no mountinfo parsed\n{}", out.report());
    m
}

/// The last (topmost) mount at `point`.
fn mount_at<'a>(mounts: &'a [MountEntry], point: &str) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mount_point == point)
}

#[track_caller]
fn assert_lines(out: &Output, want: &[&str]) {
    assert_eq!(out.lines(), want, "unexpected stdout\n{}", out.report());
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// A name unique to this test process (for files that must not appear on the host).
fn unique(tag: &str) -> String {
    marker(tag)
}

// ---------------------------------------------------------------- command line

fn cli_forms(cx: &Ctx) {
    // bwrap-style long options.
    let out = cx.ljspawn().args(["--root", &world(cx), "--", "/bin/echo", "hello", "world"]).run().ok();
    assert_lines(&out, &["hello world"]);
    // lightjail's form: -d DIR -p 'SHELL CMD' -n NAME -0 (options after -p too).
    let out = cx
        .ljspawn()
        .args(["-d", &world(cx), "-p", "echo hi; hostname; id -u; id -g", "-n", "box", "-0"])
        .run()
        .ok();
    assert_lines(&out, &["hi", "box", "65534", "65534"]);
    // Without `--`, and the command found through the jail's PATH.
    let out = cx.ljspawn().args(["-d", &world(cx), "echo", "x"]).run().ok();
    assert_lines(&out, &["x"]);
}

fn options_end_at_command(cx: &Ctx) {
    // Options end at the first non-option: the rest are the program's arguments.
    let out = cx.ljspawn().args(["--root", &world(cx), "echo", "--hostname", "x", "-0"]).run().ok();
    assert_lines(&out, &["--hostname x -0"]);
    let out = cx.ljspawn().args(["--root", &world(cx), "--", "echo", "--", "-n"]).run().ok();
    assert_lines(&out, &["-- -n"]);
}

/// ljspawn parses its common command line (`--root`/`-d DIR`, `--rw`, `--layer DIR`, `--`,
/// the command) without clap; `--root=DIR` only clap takes. Both forms give the same jail (ids,
/// capabilities, mounts, writability) and the same refusal of a root the caller cannot read
/// (setuid: checked as the caller, not as root).
fn common_form_as_clap(cx: &Ctx) {
    let probe = "id; hostname; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; \
                 cut -d' ' -f5,6 /proc/self/mountinfo";
    let write = format!("{probe}; touch /lj-form 2>/dev/null && echo wrote && rm /lj-form");
    let copy = cx.world_copy();
    // A root-owned copy of the world in a directory only root may enter.
    let hidden = cx.root_tempdir();
    fs::set_permissions(hidden.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let cp = std::process::Command::new("cp").arg("-a").arg(cx.world()).arg(hidden.join("w")).status();
    assert!(cp.as_ref().is_ok_and(|s| s.success()), "cp -a the world: {cp:?}");
    let (w, c, h) = (world(cx), copy.str(), path_str(&hidden.join("w")));
    // (common form, clap's form, script)
    let cases: [(Vec<&str>, Vec<String>, &str); 5] = [
        (vec!["--root", &w], vec![format!("--root={w}")], probe),
        (vec!["-d", &w], vec![format!("--root={w}")], probe),
        (vec!["--rw", "--root", &c], vec!["--rw".into(), format!("--root={c}")], &write),
        (vec!["--layer", &w, "--layer", &c], vec![format!("--layer={w}"), format!("--layer={c}")], &write),
        (vec!["--root", &h], vec![format!("--root={h}")], probe),
    ];
    for (common, clap, script) in cases {
        let fast = cx.ljspawn().args(&common).args(["--", "/bin/sh", "-c", script]).run();
        let slow = cx.ljspawn().args(&clap).args(["--", "/bin/sh", "-c", script]).run();
        assert_eq!(
            (fast.status(), &fast.stdout, &fast.stderr),
            (slow.status(), &slow.stdout, &slow.stderr),
            "{common:?} against {clap:?}\n{}\n{}",
            fast.report(),
            slow.report()
        );
        // (Tests run as root: the caller of rootless and setuid mode is another user.)
        if common.contains(&h.as_str()) && cx.mode != Mode::Root && current_uid() == 0 {
            let fast = fast.expect_ljspawn_error(125);
            assert!(fast.stderr.contains(&format!("--root {h}")), "{}", fast.report());
        } else {
            let fast = fast.ok();
            assert!(fast.stdout.contains("NoNewPrivs:\t1"), "{}", fast.report());
            assert_eq!(fast.stdout.contains("wrote"), script == write, "{}", fast.report());
        }
    }
    assert!(!copy.join("lj-form").exists());
}

// ---------------------------------------------------------------- namespaces, ids

const NAMESPACES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "uts", "user"];

fn jail_ns(cx: &Ctx, extra: &[&str]) -> Vec<(String, String)> {
    let out = sh_with(
        cx,
        extra,
        "for n in cgroup ipc mnt net pid uts user; do echo \"$n $(readlink /proc/self/ns/$n)\"; done",
    )
    .ok();
    let v: Vec<(String, String)> = out
        .lines()
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
        .collect();
    assert_eq!(v.len(), NAMESPACES.len(), "readlink /proc/self/ns/*\n{}", out.report());
    for (n, link) in &v {
        assert!(ns_inode(link).is_some(), "namespace {n}: unreadable link {link:?}\n{}", out.report());
    }
    v
}

fn namespaces(cx: &Ctx) {
    let inside = jail_ns(cx, &[]);
    for (n, link) in &inside {
        let host = host_ns(n);
        let new_user_ns = cx.mode != Mode::Root;
        if n == "user" && !new_user_ns {
            assert_eq!(link, &host, "root mode without --userns must stay in the host user namespace");
        } else {
            assert_ne!(link, &host, "namespace {n} is the host's ({host})");
        }
    }
    // --net host shares only the network namespace.
    let inside = jail_ns(cx, &["--net", "host"]);
    for (n, link) in &inside {
        if n == "net" {
            assert_eq!(link, &host_ns("net"), "--net host: not the host network namespace");
        } else if n != "user" {
            assert_ne!(link, &host_ns(n), "--net host: namespace {n} is the host's");
        }
    }
}

fn map_lines(text: &str) -> Vec<Vec<u64>> {
    text.lines()
        .map(|l| l.split_whitespace().filter_map(|x| x.parse().ok()).collect::<Vec<u64>>())
        .filter(|v| !v.is_empty())
        .collect()
}

fn uid_map(cx: &Ctx) {
    let uid = sh_with(cx, &[], "cat /proc/self/uid_map").ok();
    let gid = sh_with(cx, &[], "cat /proc/self/gid_map").ok();
    match cx.mode {
        Mode::Root => {
            assert_eq!(map_lines(&uid.stdout), vec![vec![0, 0, 4294967295]], "{}", uid.report());
        }
        Mode::Rootless => {
            let u = u64::from(cx.caller_uid);
            let g = u64::from(cx.caller_gid);
            assert_eq!(
                map_lines(&uid.stdout),
                vec![vec![0, u, 1]],
                "uid 0 must map to the caller\n{}",
                uid.report()
            );
            assert_eq!(
                map_lines(&gid.stdout),
                vec![vec![0, g, 1]],
                "gid 0 must map to the caller\n{}",
                gid.report()
            );
        }
        Mode::Setuid => {
            // The caller's own id at 0, then nothing but the caller's subordinate ranges.
            for (out, own, file) in
                [(&uid, cx.caller_uid, "/etc/subuid"), (&gid, cx.caller_gid, "/etc/subgid")]
            {
                let lines = map_lines(&out.stdout);
                assert_eq!(
                    lines.first(),
                    Some(&vec![0, u64::from(own), 1]),
                    "0 must map to the caller\n{}",
                    out.report()
                );
                let ranges = sub_ranges(file, lj_tests::TEST_USER);
                for l in &lines[1..] {
                    let ok = l.len() == 3
                        && l[0] >= 1
                        && ranges.iter().any(|&(start, count)| l[1] >= start && l[1] + l[2] <= start + count);
                    assert!(ok, "{file}: map line {l:?} is not within {ranges:?}\n{}", out.report());
                }
            }
        }
    }
    // Inside, the program is uid 0 / gid 0 by default.
    let out = sh_with(cx, &[], "id -u; id -g").ok();
    assert_lines(&out, &["0", "0"]);
}

/// `name`'s ranges `(start, count)` in /etc/subuid or /etc/subgid.
fn sub_ranges(file: &str, name: &str) -> Vec<(u64, u64)> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == name).then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?)))?
        })
        .collect()
}

fn userns_as_root(cx: &Ctx) {
    let inside = jail_ns(cx, &["--userns"]);
    for (n, link) in &inside {
        assert_ne!(link, &host_ns(n), "--userns: namespace {n} is the host's");
    }
    let out = sh_with(cx, &["--userns"], "cat /proc/self/uid_map; id -u").ok();
    assert_eq!(
        map_lines(&out.stdout),
        vec![vec![0, 0, 1], vec![0]],
        "--userns as root: 0 -> 0\n{}",
        out.report()
    );
}

// ---------------------------------------------------------------- root file system

fn root_read_only(cx: &Ctx) {
    let name = unique("ro");
    let out = sh_with(
        cx,
        &[],
        &format!("if touch /{name} 2>/dev/null || mkdir /etc/{name} 2>/dev/null; then echo WROTE; else echo ro; fi"),
    )
    .ok();
    assert_lines(&out, &["ro"]);
    assert!(!cx.world().join(&name).exists() && !cx.world().join("etc").join(&name).exists());
    let mounts = jail_mounts(cx, &["--root", &world(cx)]);
    let root = mount_at(&mounts, "/").expect("a mount at /");
    assert!(root.has("ro"), "/ not mounted ro: {root:?}");
}

fn root_rw(cx: &Ctx) {
    let copy = cx.world_copy();
    let out = cx
        .ljspawn()
        .args([
            "--rw",
            "--root",
            &copy.str(),
            "--",
            "/bin/sh",
            "-c",
            "echo new > /newfile && echo e > /etc/newfile && cat /newfile",
        ])
        .run()
        .ok();
    assert_lines(&out, &["new"]);
    assert_eq!(read(&copy.join("newfile")).as_deref(), Some("new\n"), "--rw: write not visible on the host");
    assert_eq!(read(&copy.join("etc/newfile")).as_deref(), Some("e\n"));
}

fn overlay_layer(cx: &Ctx) {
    let layer = cx.world_copy();
    let out = cx
        .ljspawn()
        .args(["--layer", &layer.str(), "--", "/bin/sh", "-c"])
        .arg("echo hi > /etc/lj-new && cat /etc/lj-new && mkdir /newdir && echo x > /bin/busybox-not && rm /etc/passwd && echo done")
        .run()
        .ok();
    assert_lines(&out, &["hi", "done"]);
    for p in ["etc/lj-new", "newdir", "bin/busybox-not"] {
        assert!(!layer.join(p).exists(), "overlay write leaked into the layer: {p}");
    }
    assert!(layer.join("etc/passwd").exists(), "overlay delete leaked into the layer");
    // The ephemeral upper is discarded: a second jail does not see the first one's writes.
    let out = cx
        .ljspawn()
        .args(["--layer", &layer.str(), "--", "/bin/sh", "-c"])
        .arg("[ -e /etc/lj-new ] || [ -e /newdir ] && echo KEPT; echo end")
        .run()
        .ok();
    assert_lines(&out, &["end"]);
    // overlayfs with userxattr.
    let mounts = jail_mounts(cx, &["--layer", &layer.str()]);
    let root = mount_at(&mounts, "/").expect("a mount at /");
    assert_eq!(root.fstype, "overlay", "{root:?}");
    assert!(root.super_opts.iter().any(|o| o == "userxattr"), "overlay without userxattr: {root:?}");
}

fn overlay_two_layers(cx: &Ctx) {
    let bottom = cx.world_copy();
    fs::write(bottom.join("etc/which"), "bottom\n").unwrap();
    fs::write(bottom.join("etc/only-bottom"), "b\n").unwrap();
    cx.chown_caller(&bottom.join("etc/which"));
    cx.chown_caller(&bottom.join("etc/only-bottom"));
    let top = cx.tempdir();
    fs::create_dir(top.join("etc")).unwrap();
    cx.chown_caller(&top.join("etc"));
    cx.write_caller_file(&top.join("etc/which"), "top\n");
    cx.write_caller_file(&top.join("etc/only-top"), "t\n");
    let out = cx
        .ljspawn()
        .args([
            "--layer",
            &bottom.str(),
            "--layer",
            &top.str(),
            "--",
            "/bin/cat",
            "/etc/which",
            "/etc/only-bottom",
            "/etc/only-top",
        ])
        .run()
        .ok();
    assert_lines(&out, &["top", "b", "t"]);
}

fn overlay_upper_kept(cx: &Ctx) {
    let layer = cx.world_copy();
    let t = cx.tempdir();
    for d in ["upper", "work"] {
        fs::create_dir(t.join(d)).unwrap();
        cx.chown_caller(&t.join(d));
    }
    let (upper, work) = (cx_path(&t, "upper"), cx_path(&t, "work"));
    cx.ljspawn()
        .args([
            "--layer",
            &layer.str(),
            "--upper",
            &upper,
            "--work",
            &work,
            "--",
            "/bin/sh",
            "-c",
            "echo kept > /kept",
        ])
        .run()
        .ok();
    assert_eq!(
        read(&t.join("upper/kept")).as_deref(),
        Some("kept\n"),
        "--upper: write not kept in the upper dir"
    );
    assert!(!layer.join("kept").exists(), "write went to the layer");
    let out = cx
        .ljspawn()
        .args(["--layer", &layer.str(), "--upper", &upper, "--work", &work, "--", "/bin/cat", "/kept"])
        .run()
        .ok();
    assert_lines(&out, &["kept"]);
}

fn cx_path(t: &lj_tests::TempDir, rel: &str) -> String {
    lj_tests::path_str(&t.join(rel))
}

// ---------------------------------------------------------------- /proc /dev /tmp

fn proc_fresh(cx: &Ctx) {
    // The program is pid 2 under ljspawn's PID 1: /proc shows exactly those two.
    let out = cx.ljspawn().args(["--root", &world(cx), "--", "/bin/ls", "/proc"]).run().ok();
    let pids: BTreeSet<u32> = out.lines().iter().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(pids, BTreeSet::from([1, 2]), "/proc must show only the jail's pids\n{}", out.report());
    let out = sh_with(cx, &[], "echo $$").ok();
    assert_lines(&out, &["2"]);
}

fn proc_read_only_paths(cx: &Ctx) {
    let out = sh_with(
        cx,
        &[],
        "for p in /proc/sys /proc/sysrq-trigger /proc/irq /proc/bus; do [ -e $p ] && echo $p; done; echo --; cat /proc/self/mountinfo",
    )
    .ok();
    let (present, mi) = out.stdout.split_once("--\n").expect("separator");
    let mounts = parse_mountinfo(mi);
    let proc = mount_at(&mounts, "/proc").expect("/proc mounted");
    assert_eq!(proc.fstype, "proc");
    assert!(present.lines().any(|l| l == "/proc/sys"), "no /proc/sys\n{}", out.report());
    for p in present.lines() {
        let m = mount_at(&mounts, p)
            .unwrap_or_else(|| panic!("{p} is not a separate read-only mount\n{}", out.report()));
        assert!(m.has("ro"), "{p} is not read-only: {m:?}");
    }
    // And really read-only (EROFS, whatever the credentials).
    let out =
        sh_with(cx, &[], "echo lj > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE; hostname").ok();
    assert_lines(&out, &["lj"]);
}

fn dev_minimal(cx: &Ctx) {
    let out = cx.ljspawn().args(["--root", &world(cx), "--", "/bin/ls", "-A", "/dev"]).run().ok();
    let names: BTreeSet<String> = out.lines().into_iter().collect();
    for n in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin", "stdout",
        "stderr",
    ] {
        assert!(names.contains(n), "/dev/{n} missing\n{}", out.report());
    }
    for n in ["mem", "kmem", "kmsg", "port", "vda", "sda", "loop0", "nvme0"] {
        assert!(!names.contains(n), "/dev/{n} must not be in the jail\n{}", out.report());
    }
    let out = sh_with(
        cx,
        &[],
        "echo x > /dev/null && head -c 3 /dev/zero | wc -c && head -c 5 /dev/urandom | wc -c && \
         head -c 2 /dev/random | wc -c; if echo x > /dev/full; then echo FULL-WROTE; fi 2>/dev/null; \
         for l in /dev/fd /dev/stdin /dev/stdout /dev/stderr; do readlink $l; done; [ -c /dev/pts/ptmx ] && echo ptmx",
    )
    .ok();
    let got: Vec<String> = out.lines().iter().map(|l| l.trim().to_string()).collect();
    assert_eq!(
        got,
        ["3", "5", "2", "/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2", "ptmx"],
        "{}",
        out.report()
    );
}

fn tmp_tmpfs(cx: &Ctx) {
    let mounts = jail_mounts(cx, &["--root", &world(cx)]);
    let tmp = mount_at(&mounts, "/tmp").expect("/tmp mounted");
    assert_eq!(tmp.fstype, "tmpfs", "{tmp:?}");
    assert!(tmp.has("rw"), "{tmp:?}");
    let out = sh_with(cx, &[], "stat -c %a /tmp; echo x > /tmp/f && cat /tmp/f").ok();
    assert_lines(&out, &["1777", "x"]);
}

// ---------------------------------------------------------------- hostname, cwd, env, user

fn hostname(cx: &Ctx) {
    let host_before = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_lines(&sh_with(cx, &[], "hostname; cat /proc/sys/kernel/hostname").ok(), &["lj", "lj"]);
    assert_lines(&sh_with(cx, &["--hostname", "web-1.example"], "hostname").ok(), &["web-1.example"]);
    assert_lines(&sh_with(cx, &["-n", "box"], "hostname").ok(), &["box"]);
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_before,
        "host hostname changed"
    );
}

fn chdir(cx: &Ctx) {
    assert_lines(&sh_with(cx, &[], "pwd").ok(), &["/"]);
    assert_lines(&sh_with(cx, &["--chdir", "/etc"], "pwd; ls passwd").ok(), &["/etc", "passwd"]);
    assert_lines(&sh_with(cx, &["--chdir", "/tmp"], "pwd").ok(), &["/tmp"]);
}

/// The program runs on the caller's CPUs, whichever the caller has: ljspawn keeps the jail's
/// PID 1 off its own CPU while it makes the network namespace (`spawn::step_aside`) and the
/// jail gets the caller's set back before the program starts. Both forms, from every CPU set
/// `taskset` gives the caller: all CPUs, one, and (with two or more) the first two.
fn cpu_affinity_kept(cx: &Ctx) {
    let ours = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let all = status_field(&ours, "Cpus_allowed_list").expect("Cpus_allowed_list");
    let first: Vec<String> = all
        .split(',')
        .flat_map(|r| match r.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()).collect::<Vec<_>>(),
            None => vec![r.parse::<u32>().unwrap()],
        })
        .take(2)
        .map(|c| c.to_string())
        .collect();
    let mut sets = vec![all.clone(), first[0].clone()];
    if first.len() == 2 {
        sets.push(format!("{},{}", first[0], first[1]));
    }
    let w = world(cx);
    let probe = "grep Cpus_allowed_list /proc/self/status";
    for set in &sets {
        for form in [
            vec!["--root", &w, "--", "/bin/sh", "-c", probe],
            vec!["--bwrap", "--unshare-all", "--ro-bind", &w, "/", "--proc", "/proc", "/bin/sh", "-c", probe],
        ] {
            let out = cx.ljspawn().wrapper(["taskset", "-c", set]).args(&form).run().ok();
            // (taskset's list of the set, as the kernel writes it.)
            let want =
                cx.command(["taskset", "-c", set, "grep", "Cpus_allowed_list", "/proc/self/status"]).output();
            let want = String::from_utf8_lossy(&want.expect("run taskset").stdout).trim().to_string();
            assert!(want.starts_with("Cpus_allowed_list:"), "taskset -c {set}: {want:?}");
            assert_eq!(out.stdout.trim(), want, "taskset -c {set}, {form:?}\n{}", out.report());
        }
    }
}

fn jail_env(out: &Output) -> BTreeSet<String> {
    out.lines().into_iter().collect()
}

fn env_clean(cx: &Ctx) {
    let out = cx
        .ljspawn()
        .prelude("export LJ_SECRET=hunter2 TERM=xterm-secret HOME=/secret-home LANG=fr_FR.UTF-8 PATH=/secret-path:$PATH")
        .args(["--root", &world(cx), "--setenv", "FOO", "bar baz", "--setenv", "EMPTY", "", "--", "/bin/env"])
        .run()
        .ok();
    let want: BTreeSet<String> = [
        format!("PATH={JAIL_PATH}"),
        "LANG=C.UTF-8".into(),
        "LC_ALL=C.UTF-8".into(),
        "SHELL=/bin/sh".into(),
        "HOME=/root".into(),
        "FOO=bar baz".into(),
        "EMPTY=".into(),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        jail_env(&out),
        want,
        "the jail's environment must be exactly the allow-list\n{}",
        out.report()
    );
    assert!(!out.stdout.contains("hunter2"));
}

fn env_nobody_home(cx: &Ctx) {
    let out = cx.ljspawn().args(["--root", &world(cx), "-0", "--", "/bin/env"]).run().ok();
    assert!(jail_env(&out).contains("HOME=/"), "{}", out.report());
    let out = cx.ljspawn().args(["--root", &world(cx), "--user", "1000:1000", "--", "/bin/env"]).run().ok();
    assert!(jail_env(&out).contains("HOME=/"), "{}", out.report());
}

fn env_term_with_tty(cx: &Ctx) {
    // With a terminal on stdin (a pty the test made), TERM is passed on.
    let mut p = match lj_tests::Pty::open() {
        Ok(p) => p,
        Err(e) => {
            cx.skip(&format!("cannot open a pty pair: {e}"));
            return;
        }
    };
    let out = cx
        .ljspawn()
        .wrapper(["/usr/bin/env", "TERM=xterm-lj"])
        .args(["--root", &world(cx), "--", "/bin/env"])
        .start_on_pty(&p)
        .output(&mut p, Duration::from_secs(30));
    let env: BTreeSet<String> = out.stdout.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    assert_eq!(out.status(), 0, "{}", out.report());
    if cx.mode == Mode::Setuid {
        // A setuid ljspawn never reads the caller's environment (DESIGN: privilege model), so
        // TERM may be left out; it must not be anything but the caller's.
        let term: Vec<&String> = env.iter().filter(|v| v.starts_with("TERM=")).collect();
        assert!(term.is_empty() || term == ["TERM=xterm-lj"], "{}", out.report());
        assert!(env.contains("HOME=/root") && env.len() == 5 + term.len(), "environment\n{}", out.report());
        return;
    }
    assert!(env.contains("TERM=xterm-lj"), "TERM not passed with a terminal\n{}", out.report());
    assert!(env.contains("HOME=/root") && env.len() == 6, "environment with a terminal\n{}", out.report());
}

fn user_option(cx: &Ctx) {
    assert_lines(&sh_with(cx, &["--user", "1000:1000"], "id -u; id -g").ok(), &["1000", "1000"]);
    assert_lines(&sh_with(cx, &["--user", "1234:4321"], "id -u; id -g").ok(), &["1234", "4321"]);
    assert_lines(&sh_with(cx, &["--user", "1000"], "id -u").ok(), &["1000"]);
}

fn nobody(cx: &Ctx) {
    assert_lines(&sh_with(cx, &["-0"], "id -u; id -g").ok(), &["65534", "65534"]);
}

// ---------------------------------------------------------------- binds and tmpfs

fn bind_rw(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("in"), "from host\n");
    let out = sh_with(cx, &["--bind", &t.str(), "/home"], "cat /home/in && echo from jail > /home/out").ok();
    assert_lines(&out, &["from host"]);
    assert_eq!(read(&t.join("out")).as_deref(), Some("from jail\n"), "--bind: write not visible on the host");
}

fn bind_ro(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("in"), "from host\n");
    let out = sh_with(
        cx,
        &["--ro-bind", &t.str(), "/home"],
        "cat /home/in; if echo x > /home/out 2>/dev/null || echo y >> /home/in 2>/dev/null; then echo WROTE; else echo ro; fi",
    )
    .ok();
    assert_lines(&out, &["from host", "ro"]);
    assert!(!t.join("out").exists());
    assert_eq!(read(&t.join("in")).as_deref(), Some("from host\n"));
}

fn bind_ro_submounts(cx: &Ctx) {
    // A tmpfs mounted under the directory that is ro-bound must be read-only in the jail too.
    // The submount is made in a private mount namespace so the host's table never changes.
    let t = cx.tempdir();
    fs::create_dir(t.join("sub")).unwrap();
    let sub = cx_path(&t, "sub");
    let out = cx
        .ljspawn()
        .wrapper([
            "unshare",
            "-m",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            "mount -t tmpfs lj-sub \"$0\" || exit 99; exec \"$@\"",
            &sub,
        ])
        .args(["--root", &world(cx), "--ro-bind", &t.str(), "/home", "--", "/bin/sh", "-c"])
        .arg("grep -q ' /home/sub ' /proc/self/mountinfo && echo submount; if touch /home/sub/x 2>/dev/null; then echo WROTE; else echo ro; fi")
        .run()
        .ok();
    assert_lines(&out, &["submount", "ro"]);
}

fn dev_bind_vs_bind(cx: &Ctx) {
    // --dev-bind keeps device access; a plain --bind of a device node is nodev.
    let out = sh_with(
        cx,
        &["--dev-bind", "/dev/null", "/etc/hostname"],
        "echo x > /etc/hostname && echo ok; wc -c < /etc/hostname",
    )
    .ok();
    assert_eq!(out.lines().iter().map(|l| l.trim()).collect::<Vec<_>>(), ["ok", "0"], "{}", out.report());
    let out = sh_with(
        cx,
        &["--bind", "/dev/null", "/etc/hostname"],
        "if echo x > /etc/hostname; then echo DEVICE-WORKS; else echo nodev; fi 2>/dev/null",
    )
    .ok();
    assert_lines(&out, &["nodev"]);
}

fn tmpfs_option(cx: &Ctx) {
    let mounts = jail_mounts(cx, &["--root", &world(cx), "--tmpfs", "/home"]);
    let m = mount_at(&mounts, "/home").expect("--tmpfs /home mounted");
    assert_eq!(m.fstype, "tmpfs", "{m:?}");
    let out = sh_with(cx, &["--tmpfs", "/home"], "echo x > /home/f && cat /home/f").ok();
    assert_lines(&out, &["x"]);
}

fn mounts_in_order(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("f"), "bound\n");
    // The later tmpfs hides the earlier bind ...
    let out = sh_with(cx, &["--bind", &t.str(), "/home", "--tmpfs", "/home"], "ls -A /home | wc -l").ok();
    assert_eq!(out.stdout.trim(), "0", "--tmpfs after --bind must cover it\n{}", out.report());
    // ... and a bind after a tmpfs lands inside it (its destination created in the tmpfs).
    let out = sh_with(cx, &["--tmpfs", "/home", "--ro-bind", &t.str(), "/home/a/b"], "cat /home/a/b/f").ok();
    assert_lines(&out, &["bound"]);
}

fn dest_created(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("f"), "bound\n");
    // On an overlay root: created in the ephemeral upper, never in the layer.
    let layer = cx.world_copy();
    let out = cx
        .ljspawn()
        .args([
            "--layer",
            &layer.str(),
            "--bind",
            &t.str(),
            "/new/deep/dir",
            "--tmpfs",
            "/newtmp/x",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg("cat /new/deep/dir/f && echo w > /new/deep/dir/w && grep -c ' /newtmp/x ' /proc/self/mountinfo")
        .run()
        .ok();
    assert_lines(&out, &["bound", "1"]);
    assert_eq!(read(&t.join("w")).as_deref(), Some("w\n"));
    assert!(
        !layer.join("new").exists() && !layer.join("newtmp").exists(),
        "destination created in the layer"
    );
    // On a --rw root: created in it.
    let copy = cx.world_copy();
    let out = cx
        .ljspawn()
        .args(["--rw", "--root", &copy.str(), "--ro-bind", &t.str(), "/mnt/t", "--", "/bin/cat", "/mnt/t/f"])
        .run()
        .ok();
    assert_lines(&out, &["bound"]);
    // A file destination for a file source.
    let out = cx
        .ljspawn()
        .args([
            "--layer",
            &layer.str(),
            "--ro-bind",
            &cx_path(&t, "f"),
            "/etc/newfile",
            "--",
            "/bin/cat",
            "/etc/newfile",
        ])
        .run()
        .ok();
    assert_lines(&out, &["bound"]);
}

fn ro_root_missing_dest(cx: &Ctx) {
    // A read-only --root is never written on the host, not even to make a mount point: the
    // missing destination is made some other way, or ljspawn refuses (125).
    let copy = cx.world_copy();
    let name = unique("dest");
    let dest = format!("/{name}/x");
    let out = cx
        .ljspawn()
        .args([
            "--root",
            &copy.str(),
            "--tmpfs",
            &dest,
            "--",
            "/bin/sh",
            "-c",
            &format!("grep -c ' {dest} ' /proc/self/mountinfo"),
        ])
        .run();
    if out.status() == 125 {
        out.clone().expect_ljspawn_error(125);
    } else {
        assert_lines(&out.clone().ok(), &["1"]);
    }
    assert!(
        !copy.join(&name).exists(),
        "read-only root modified on the host: {name} created\n{}",
        out.report()
    );
}

fn symlink_dest_stays_inside(cx: &Ctx) {
    // Symlinks in a destination resolve inside the jail root, never on the host.
    let name = unique("evil");
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("f"), "bound\n");
    let copy = cx.world_copy();
    std::os::unix::fs::symlink("/etc", copy.join("evil")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../../etc", copy.join("evil2")).unwrap();
    std::os::unix::fs::symlink(format!("/etc/{name}"), copy.join("evil3")).unwrap();
    for p in ["evil", "evil2", "evil3"] {
        cx.chown_caller(&copy.join(p));
    }
    let host_etc = Path::new("/etc").join(&name);
    let cases: Vec<Vec<String>> = vec![
        vec!["--rw".into(), "--root".into(), copy.str(), "--tmpfs".into(), format!("/evil/{name}")],
        vec![
            "--rw".into(),
            "--root".into(),
            copy.str(),
            "--bind".into(),
            t.str(),
            format!("/evil2/{name}/d"),
        ],
        vec!["--rw".into(), "--root".into(), copy.str(), "--tmpfs".into(), "/evil3".into()],
        vec!["--layer".into(), copy.str(), "--tmpfs".into(), format!("/evil/{name}")],
        vec!["--layer".into(), copy.str(), "--ro-bind".into(), t.str(), format!("/evil2/{name}")],
        vec!["--root".into(), copy.str(), "--tmpfs".into(), format!("/evil/{name}")],
    ];
    for args in cases {
        let out = cx
            .ljspawn()
            .args(&args)
            .args(["--", "/bin/sh", "-c", &format!("grep -c '{name}' /proc/self/mountinfo; true")])
            .run();
        let exists = host_etc.exists();
        if exists {
            let _ = fs::remove_dir_all(&host_etc);
            let _ = fs::remove_file(&host_etc);
        }
        assert!(
            !exists,
            "host {} created through a symlinked destination\n{}",
            host_etc.display(),
            out.report()
        );
        match out.status() {
            125 => {
                out.expect_ljspawn_error(125);
            }
            0 => {
                // Mounted inside the jail (at its /etc/NAME...), where the symlink points in it.
                let n: u32 = out.stdout.trim().parse().unwrap_or(0);
                assert!(n >= 1 && !out.pipes_held && !out.timed_out, "no mount made\n{}", out.report());
            }
            _ => panic!("expected 0 (mounted inside the jail) or 125 (refused)\n{}", out.report()),
        }
    }
}

/// `..` at the jail's root is the jail's root, in destinations (through the world's own
/// symlinks `up -> ..`, `upup -> ../..`, `abs -> /..`) and for the program: nothing is made on
/// the host's `/`, a destination (or the parent of one) that is the root itself is refused,
/// and the program's `/..` is its `/` (the world's marker file is there).
fn dotdot_at_root_stays_inside(cx: &Ctx) {
    let name = unique("lj-dotdot");
    let marker = unique("lj-world");
    let t = cx.tempdir();
    let copy = cx.world_copy();
    for (link, target) in [("up", ".."), ("upup", "../.."), ("abs", "/..")] {
        std::os::unix::fs::symlink(target, copy.join(link)).unwrap();
        cx.chown_caller(&copy.join(link));
    }
    cx.write_caller_file(&copy.join(&marker), "world\n");
    let host = Path::new("/").join(&name);
    let check =
        format!("test -e /../{marker} && test -e /up/{marker} && test -e /abs/../{marker} && echo inside");
    let d = |p: &str| format!("/{p}/{name}");
    let cases: Vec<(Vec<String>, bool)> = vec![
        (vec!["--bind".into(), t.str(), "/up".into()], false),
        (vec!["--bind".into(), t.str(), "/upup".into()], false),
        (vec!["--ro-bind".into(), t.str(), "/abs".into()], false),
        (vec!["--bind".into(), t.str(), d("up")], true),
        (vec!["--ro-bind".into(), t.str(), d("upup")], true),
        // (A parent that is the root itself is refused too, whatever is made in it.)
        (vec!["--dir".into(), d("abs")], false),
        (vec!["--symlink".into(), "x".into(), d("up")], false),
    ];
    for (extra, ok) in cases {
        let out = cx
            .ljspawn()
            .args(["--rw", "--root", &copy.str()])
            .args(&extra)
            .args(["--", "/bin/sh", "-c", &check])
            .run();
        let made = fs::symlink_metadata(&host).is_ok();
        if made {
            let _ = fs::remove_dir_all(&host);
            let _ = fs::remove_file(&host);
        }
        assert!(!made, "host {} made through `..` at the jail's root\n{}", host.display(), out.report());
        if ok {
            assert_lines(&out.ok(), &["inside"]);
            assert!(fs::symlink_metadata(copy.join(&name)).is_ok(), "{extra:?}: not made in the world");
            let _ = fs::remove_dir_all(copy.join(&name));
            let _ = fs::remove_file(copy.join(&name));
        } else {
            let e = out.expect_ljspawn_error(125);
            assert!(e.stderr.contains("the jail's root itself"), "{extra:?}\n{}", e.report());
        }
    }
}

/// A root caller without CAP_SYS_CHROOT in its bounding set (a hardened service, say) still
/// gets its jail, the same one: ljspawn's PID 1 then does without its `chroot` (it
/// `pivot_root`s first, which needs only CAP_SYS_ADMIN).
fn without_cap_sys_chroot(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("f"), "bound\n");
    let script = "cat /home/f; cut -d' ' -f5 /proc/self/mountinfo";
    let args = ["--root", &world(cx), "--ro-bind", &t.str(), "/home", "--", "/bin/sh", "-c", script];
    let with = cx.ljspawn().args(args).run().ok();
    let without = cx.ljspawn().wrapper(["setpriv", "--bounding-set", "-sys_chroot"]).args(args).run().ok();
    assert_eq!(with.stdout, without.stdout, "{}", without.report());
    assert!(with.stdout.starts_with("bound\n/\n"), "{}", with.report());
}

fn mount_flags(cx: &Ctx) {
    let t = cx.tempdir();
    let layer = cx.world_copy();
    for extra in [
        vec![
            "--root".to_string(),
            world(cx),
            "--bind".into(),
            t.str(),
            "/home".into(),
            "--tmpfs".into(),
            "/root".into(),
        ],
        vec!["--layer".to_string(), layer.str(), "--ro-bind".into(), t.str(), "/home".into()],
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mounts = jail_mounts(cx, &extra);
        for m in &mounts {
            assert!(m.has("nosuid"), "mount without nosuid: {m:?}");
            let is_dev = m.mount_point == "/dev" || m.mount_point.starts_with("/dev/");
            if !is_dev {
                assert!(m.has("nodev"), "mount without nodev: {m:?}");
            }
        }
    }
}

// ---------------------------------------------------------------- fds, session, privileges

/// Open fds of `ls` in the jail, leaving out the directory it is reading.
fn jail_fds(out: &Output) -> BTreeSet<u32> {
    out.lines()
        .iter()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd: u32 = left.split_whitespace().last()?.parse().ok()?;
            let own_dir = target.starts_with("/proc/") && target.ends_with("/fd");
            (!own_dir).then_some(fd)
        })
        .collect()
}

fn fds_closed(cx: &Ctx) {
    let out = cx
        .ljspawn()
        .prelude("exec 7</etc/hostname 9>/dev/null")
        .args(["--root", &world(cx), "--", "/bin/ls", "-l", "/proc/self/fd"])
        .run()
        .ok();
    assert_eq!(
        jail_fds(&out),
        BTreeSet::from([0, 1, 2]),
        "only fds 0-2 may reach the program\n{}",
        out.report()
    );
}

fn pass_fd(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("f"), "passed\n");
    let f = cx_path(&t, "f");
    let out = cx
        .ljspawn()
        .prelude(&format!("exec 7<'{f}' 9</etc/hostname"))
        .args(["--root", &world(cx), "--pass-fd", "7", "--", "/bin/ls", "-l", "/proc/self/fd"])
        .run()
        .ok();
    assert_eq!(jail_fds(&out), BTreeSet::from([0, 1, 2, 7]), "--pass-fd 7\n{}", out.report());
    let out = cx
        .ljspawn()
        .prelude(&format!("exec 7<'{f}'"))
        .args(["--root", &world(cx), "--pass-fd", "7", "--", "/bin/sh", "-c", "cat <&7"])
        .run()
        .ok();
    assert_lines(&out, &["passed"]);
}

fn host_root_fd(cx: &Ctx) {
    // A leaked fd on the host's / must not reach the jail.
    let out = cx
        .ljspawn()
        .prelude("exec 8</")
        .args([
            "--root",
            &world(cx),
            "--",
            "/bin/sh",
            "-c",
            "[ -d /proc/self/fd ] && echo proc; ls /proc/self/fd/8/ 2>/dev/null; echo rc=$?",
        ])
        .run()
        .ok();
    let last = out.lines().last().cloned().unwrap_or_default();
    assert!(
        last != "rc=0" && out.lines().len() == 2 && out.lines()[0] == "proc",
        "host / reachable through fd 8\n{}",
        out.report()
    );
}

fn session(cx: &Ctx) {
    // A new session: the program is its session leader (TIOCSTI cannot reach the caller's tty).
    let out = sh_with(cx, &[], "echo $$; cut -d' ' -f6 /proc/$$/stat").ok();
    let l = out.lines();
    assert!(l.len() == 2 && l[0] == l[1], "program is not a session leader (pid, sid)\n{}", out.report());
}

const CAP_FIELDS: [&str; 5] = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

fn no_new_privs_no_caps(cx: &Ctx) {
    for extra in [&[][..], &["-0"][..], &["--user", "1000:1000"][..]] {
        let out = sh_with(cx, extra, "cat /proc/self/status").ok();
        assert_eq!(
            status_field(&out.stdout, "NoNewPrivs").as_deref(),
            Some("1"),
            "{extra:?}\n{}",
            out.report()
        );
        for f in CAP_FIELDS {
            assert_eq!(
                status_field(&out.stdout, f).as_deref(),
                Some("0000000000000000"),
                "{f} must be empty ({extra:?})\n{}",
                out.report()
            );
        }
    }
}

fn cap_add(cx: &Ctx) {
    for cap in ["net_admin", "CAP_NET_ADMIN"] {
        let out = sh_with(cx, &["--cap-add", cap], "cat /proc/self/status").ok();
        let eff = status_field(&out.stdout, "CapEff").unwrap_or_default();
        let eff = u64::from_str_radix(&eff, 16).unwrap_or(u64::MAX);
        assert_eq!(eff, 1 << 12, "--cap-add {cap}: CapEff must be exactly CAP_NET_ADMIN\n{}", out.report());
    }
    // It works (on the jail's own loopback), and does not without it.
    let out = sh_with(cx, &["--cap-add", "net_admin"], "ip link set lo down && echo down").ok();
    assert_lines(&out, &["down"]);
    let out = sh_with(cx, &[], "ip link set lo down 2>/dev/null && echo DOWN; echo end").ok();
    assert_lines(&out, &["end"]);
}

/// Rootless and setuid jails keep capabilities inside their own user namespace: they work on
/// what the jail owns (its loopback), and give nothing over the host (a host root's file stays
/// unreadable with CAP_DAC_OVERRIDE, its owner not being mapped).
fn cap_add_in_own_userns(cx: &Ctx) {
    let out = sh_with(cx, &["--cap-add", "net_admin"], "cat /proc/self/status").ok();
    let eff = status_field(&out.stdout, "CapEff").unwrap_or_default();
    assert_eq!(u64::from_str_radix(&eff, 16).ok(), Some(1 << 12), "{}", out.report());
    let out = sh_with(cx, &["--cap-add", "net_admin"], "ip link set lo down && echo down").ok();
    assert_lines(&out, &["down"]);
    let Some((dir, _secret)) = cx.root_only_file("HOST-SECRET-caps") else { return };
    for caps in [&["--cap-add", "all"][..], &["--cap-add", "container"], &["--subids", "--cap-add", "all"]] {
        let mut extra = caps.to_vec();
        extra.extend(["--ro-bind", dir.path().to_str().unwrap(), "/tmp/m"]);
        let out = sh_with(cx, &extra, "cat /tmp/m/secret 2>&1; echo end").ok();
        assert!(
            !out.stdout.contains("HOST-SECRET"),
            "a capability in the jail read a host root's file\n{}",
            out.report()
        );
        assert!(
            out.stdout.contains("Permission denied") && out.stdout.ends_with("end\n"),
            "{}",
            out.report()
        );
    }
}

/// The caller's first /etc/subuid and /etc/subgid ranges.
fn first_ranges(cx: &Ctx) -> Option<((u32, u32), (u32, u32))> {
    let name = lj_tests::lookup_user(lj_tests::TEST_USER)
        .filter(|u| u.uid == cx.caller_uid)
        .map(|_| lj_tests::TEST_USER)?;
    let get = |f: &str| {
        let text = fs::read_to_string(f).ok()?;
        text.lines().find_map(|l| {
            let v: Vec<&str> = l.split(':').collect();
            if v.len() != 3 || v[0] != name {
                return None;
            }
            Some((v[1].parse::<u32>().ok()?, v[2].parse::<u32>().ok()?))
        })
    };
    Some((get("/etc/subuid")?, get("/etc/subgid")?))
}

/// --subids: jail ids 0-65535 as a container gets them: root the same ids; rootless and setuid
/// the caller as 0 and its ranges from 1 up (newuidmap/newgidmap; the setuid parent), with
/// setgroups allowed; with the container capabilities chown and chgrp to any of them work.
fn subids_map_0_to_65535(cx: &Ctx) {
    let out =
        sh_with(cx, &["--subids"], "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups").ok();
    let maps: Vec<String> =
        out.lines().iter().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    if cx.mode == Mode::Root {
        assert_eq!(maps, ["0 0 65536", "0 0 65536", "allow"], "{}", out.report());
    } else {
        let Some(((us, uc), (gs, gc))) = first_ranges(cx) else {
            cx.skip("no /etc/subuid and /etc/subgid ranges for the test user (tests/prepare.sh adds them)");
            return;
        };
        let me = cx.caller_uid;
        let g = cx.caller_gid;
        assert_eq!(
            maps,
            [
                format!("0 {me} 1"),
                format!("1 {us} {uc}"),
                format!("0 {g} 1"),
                format!("1 {gs} {gc}"),
                "allow".into()
            ],
            "{}",
            out.report()
        );
    }
    let script = "cd /tmp && touch f && chown 1000:1000 f && chgrp 42 f && stat -c %u:%g f && id -u";
    let out = sh_with(cx, &["--subids", "--cap-add", "container"], script).ok();
    assert_lines(&out, &["1000:42", "0"]);
    let out = sh_with(cx, &["--subids", "--user", "1000:1000"], "id -u; id -g").ok();
    assert_lines(&out, &["1000", "1000"]);
    // Without capabilities the jail root still cannot chown (nothing is kept by default).
    let out =
        sh_with(cx, &["--subids"], "cd /tmp && touch f && chown 1000 f 2>/dev/null || echo refused").ok();
    assert_lines(&out, &["refused"]);
}

/// --subids-base BASE (root only): jail ids 0-65535 are host ids BASE.., so the jail's root is
/// no host root: the world's files (idmapped) show as the jail's root's, what the jail writes
/// in its upper is owned by BASE+uid on the host, and even with every capability of its user
/// namespace and its /proc/sys mask unmounted it cannot write kernel/core_pattern. Bad bases
/// are usage errors (2); rootless and setuid callers are refused (125, one line).
fn subids_base_private_range(cx: &Ctx) {
    use std::os::unix::fs::MetadataExt;
    const BASE: u32 = 0x7a0000;
    if cx.mode != Mode::Root {
        let out = cx
            .ljspawn()
            .args(["--subids-base", "524288", "--root", &world(cx), "--", "/bin/echo", "RAN"])
            .run();
        assert!(!out.stdout.contains("RAN"), "{}", out.report());
        assert_eq!(out.status(), 125, "{}", out.report());
        assert_eq!(
            out.stderr.trim_end(),
            format!("ljspawn: --subids-base is not allowed in {} mode (root only: it maps host ids of root's choosing; use --subids, which maps your /etc/subuid ranges)", cx.mode)
        );
        return;
    }
    for bad in ["0", "65535", "65537", "4294901760", "4294967296", "x"] {
        let out = cx.ljspawn().args(["--subids-base", bad, "--", "/bin/true"]).run();
        assert_eq!(out.status(), 2, "--subids-base {bad}\n{}", out.report());
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.report());
        assert!(out.stderr.contains("--subids-base"), "{}", out.report());
    }
    let td = cx.root_tempdir();
    let (upper, work) = (td.join("upper"), td.join("work"));
    for d in [&upper, &work] {
        fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(BASE), Some(BASE)).unwrap();
    }
    let script = "cat /proc/self/uid_map /proc/self/gid_map; stat -c %u:%g /bin/busybox; \
        touch /made && chown 1000:42 /made && stat -c %u:%g /made; \
        for m in /proc/sys/kernel/core_pattern /proc/sys/kernel /proc/sys; do umount $m 2>/dev/null; done; \
        grep -c ' /proc/sys ' /proc/self/mountinfo; \
        echo '|/tmp/pwned' > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE; true";
    let out = cx
        .ljspawn()
        .args(["--subids-base", &BASE.to_string(), "--idmap-layer", &world(cx)])
        .args([
            "--upper",
            &lj_tests::path_str(&upper),
            "--work",
            &lj_tests::path_str(&work),
            "--cap-add",
            "ALL",
        ])
        .args(["--", "/bin/sh", "-c", script])
        .run()
        .ok();
    let map = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = out.lines().iter().map(|l| map(l)).collect();
    assert_eq!(
        lines[..4],
        [format!("0 {BASE} 65536"), format!("0 {BASE} 65536"), "0:0".into(), "1000:42".into()],
        "{}",
        out.report()
    );
    assert!(!out.stdout.contains("WROTE"), "the jail wrote core_pattern\n{}", out.report());
    assert_ne!(fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap().trim(), "|/tmp/pwned");
    let md = fs::metadata(upper.join("made")).unwrap();
    assert_eq!((md.uid(), md.gid()), (BASE + 1000, BASE + 42), "the upper's file on the host");
}

/// --subids for a user without subordinate ids: one line, exit 125, never a one-id jail.
fn subids_without_ranges(cx: &Ctx) {
    if lj_tests::current_uid() != 0 {
        cx.skip("needs root to run ljspawn as a user without subordinate ids");
        return;
    }
    let Some(setpriv) = lj_tests::which("setpriv") else {
        cx.skip("setpriv (util-linux) not installed");
        return;
    };
    let uid = 54321; // no /etc/passwd entry, no range
    let mut cmd = std::process::Command::new(setpriv);
    cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()])
        .arg(&cx.bin)
        .args(["--subids", "--root", &world(cx), "--", "/bin/echo", "RAN"])
        .current_dir("/");
    let out = lj_tests::run_with_timeout(cmd, None, Duration::from_secs(30)).expect("run ljspawn");
    assert!(!out.stdout.contains("RAN"), "{}", out.report());
    assert_eq!(out.status(), 125, "{}", out.report());
    assert_eq!(
        out.stderr.trim_end(),
        format!("ljspawn: --subids: no range for uid {uid} in /etc/subuid or /etc/subgid (ask an administrator: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)")
    );
}

fn mknod_fails(cx: &Ctx) {
    let n = unique("null");
    let out = sh_with(
        cx,
        &[],
        &format!(
            "for d in /tmp /dev/shm /dev; do mknod $d/{n} c 1 3 2>/dev/null && echo MADE-$d; done; echo end"
        ),
    )
    .ok();
    assert_lines(&out, &["end"]);
}

// ---------------------------------------------------------------- processes and signals

fn wait_for_procs(var: &str, m: &str, comm: &str, n: usize) -> bool {
    wait_until(Duration::from_secs(30), || {
        procs_with_env(var, m).iter().filter(|(_, c)| c == comm).count() >= n
    })
}

fn assert_no_procs_left(m: &str, what: &str) {
    let gone = wait_until(Duration::from_secs(30), || procs_with_env("LJ_MARKER", m).is_empty());
    if !gone {
        let left = procs_with_env("LJ_MARKER", m);
        // Do not leave the survivors (and the jail's PID 1 above them) running after the test.
        let mut pids: BTreeSet<u32> = left.iter().map(|&(p, _)| p).collect();
        for &(p, _) in &left {
            if let Some(pp) = lj_tests::parent_pid(p) {
                if fs::read_to_string(format!("/proc/{pp}/comm")).is_ok_and(|c| c.trim() == "ljspawn") {
                    pids.insert(pp);
                }
            }
        }
        let _ =
            std::process::Command::new("kill").arg("-KILL").args(pids.iter().map(u32::to_string)).status();
        panic!("{what}: jail processes survived: {left:?}");
    }
}

fn kill9_kills_jail(cx: &Ctx) {
    let m = marker("kill9");
    let running = cx
        .ljspawn()
        .args([
            "--root",
            &world(cx),
            "--setenv",
            "LJ_MARKER",
            &m,
            "--",
            "/bin/sh",
            "-c",
            "sleep 1000 & sleep 1000; wait",
        ])
        .start();
    assert!(wait_for_procs("LJ_MARKER", &m, "sleep", 2), "the jail's sleeps never appeared");
    running.signal("KILL");
    let out = running.wait();
    assert_eq!(out.status(), 137, "{}", out.report());
    assert_no_procs_left(&m, "kill -9 of ljspawn");
    assert!(!out.pipes_held, "{}", out.report());
}

fn background_dies(cx: &Ctx) {
    let m = marker("bg");
    let out = sh_with(
        cx,
        &["--setenv", "LJ_MARKER", &m],
        "[ -n \"$LJ_MARKER\" ] || exit 99; sleep 1000 >/dev/null 2>&1 & exit 0",
    )
    .ok();
    // (The background `sleep 1000` did not keep the jail: it ended with its program.)
    assert!(out.elapsed < Duration::from_secs(30), "{}", out.report());
    assert_no_procs_left(&m, "background process after the program exited");
    // Still holding ljspawn's stdout: must be killed too, so the pipe closes.
    let m = marker("bg2");
    let out = sh_with(
        cx,
        &["--setenv", "LJ_MARKER", &m],
        "[ -n \"$LJ_MARKER\" ] || exit 99; sleep 1000 & echo started",
    )
    .ok();
    assert_lines(&out, &["started"]);
    assert_no_procs_left(&m, "background process holding stdout");
}

fn signal_forwarded(cx: &Ctx) {
    for (sig, code) in [("TERM", 42), ("INT", 43), ("HUP", 44)] {
        let m = marker("sig");
        let running = cx
            .ljspawn()
            .args(["--root", &world(cx), "--setenv", "LJ_MARKER", &m, "--", "/bin/sh", "-c"])
            .arg(format!("trap 'exit {code}' {sig}; sleep 100 & wait"))
            .timeout(Duration::from_secs(15))
            .start();
        assert!(wait_for_procs("LJ_MARKER", &m, "sleep", 1), "the jail's sleep never appeared");
        running.signal(sig);
        let out = running.wait();
        assert_eq!(out.status(), code, "SIG{sig} to ljspawn must reach the program\n{}", out.report());
        assert_no_procs_left(&m, "after the forwarded signal");
    }
}

fn signals_sanitized(cx: &Ctx) {
    // Dispositions and the mask the caller had do not reach the program (Rust's runtime also
    // ignores SIGPIPE in ljspawn itself): `yes | head` must work in the jail.
    let out = cx
        .ljspawn()
        .prelude("trap '' INT QUIT PIPE HUP TERM USR1")
        .args(["--root", &world(cx), "--", "/bin/cat", "/proc/self/status"])
        .run()
        .ok();
    // Signals 32 and 33 are glibc's own (SIGCANCEL, SIGSETXID): sigaction() refuses them, and
    // the environment the tests run in may have them ignored. All others must be default.
    let glibc_reserved: u64 = 0b11 << 31;
    for f in ["SigIgn", "SigBlk", "SigPnd"] {
        let v = status_field(&out.stdout, f).unwrap_or_default();
        let v = u64::from_str_radix(&v, 16).unwrap_or(u64::MAX);
        assert_eq!(
            v & !glibc_reserved,
            0,
            "{f}: the program must start with default signal handling\n{}",
            out.report()
        );
    }
}

fn exit_codes(cx: &Ctx) {
    sh_with(cx, &[], "exit 3").expect_status(3);
    sh_with(cx, &[], "exit 0").expect_status(0);
    sh_with(cx, &[], "exit 255").expect_status(255);
    sh_with(cx, &[], "kill -9 $$").expect_status(137);
    sh_with(cx, &[], "kill -TERM $$").expect_status(143);
    cx.ljspawn().args(["--root", &world(cx), "--", "false"]).run().expect_status(1);
}

fn not_found_127(cx: &Ctx) {
    cx.ljspawn().args(["--root", &world(cx), "--", "/no/such/program"]).run().expect_ljspawn_error(127);
    cx.ljspawn()
        .args(["--root", &world(cx), "--", "no-such-program-on-path"])
        .run()
        .expect_ljspawn_error(127);
}

fn not_executable_126(cx: &Ctx) {
    cx.ljspawn().args(["--root", &world(cx), "--", "/etc/passwd"]).run().expect_ljspawn_error(126);
    cx.ljspawn().args(["--root", &world(cx), "--", "/etc"]).run().expect_ljspawn_error(126);
}

fn missing_root_125(cx: &Ctx) {
    let out =
        cx.ljspawn().args(["--root", "/no/such/root", "--", "/bin/true"]).run().expect_ljspawn_error(125);
    assert!(out.stdout.is_empty(), "{}", out.report());
    cx.ljspawn().args(["--layer", "/no/such/layer", "--", "/bin/true"]).run().expect_ljspawn_error(125);
    cx.ljspawn()
        .args(["--root", &world(cx), "--bind", "/no/such/source", "/home", "--", "/bin/true"])
        .run()
        .expect_ljspawn_error(125);
}

fn usage_errors_2(cx: &Ctx) {
    cx.ljspawn()
        .args(["--no-such-option", "--root", &world(cx), "--", "/bin/true"])
        .run()
        .expect_ljspawn_error(2);
    cx.ljspawn().args(["--root"]).run().expect_ljspawn_error(2);
    cx.ljspawn().args(["--root", &world(cx), "--bind", "/tmp"]).run().expect_ljspawn_error(2);
    cx.ljspawn()
        .args(["--root", &world(cx), "--timeout", "soon", "--", "/bin/true"])
        .run()
        .expect_ljspawn_error(2);
}

fn timeout(cx: &Ctx) {
    let out = cx
        .ljspawn()
        .args(["--root", &world(cx), "--timeout", "500ms", "--", "sleep", "100"])
        .timeout(Duration::from_secs(15))
        .run();
    let out = out.expect_status(124);
    assert!(
        out.elapsed >= Duration::from_millis(400) && out.elapsed < Duration::from_secs(15),
        "{}",
        out.report()
    );
    // A program that ignores SIGTERM is killed after the grace.
    let m = marker("timeout");
    let out = cx
        .ljspawn()
        .args([
            "--root",
            &world(cx),
            "--setenv",
            "LJ_MARKER",
            &m,
            "--timeout",
            "300ms",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg("[ -n \"$LJ_MARKER\" ] || exit 99; trap '' TERM; sleep 100 & wait; sleep 100")
        .timeout(Duration::from_secs(40))
        .run()
        .expect_status(124);
    assert!(out.elapsed < Duration::from_secs(30), "{}", out.report());
    assert_no_procs_left(&m, "after --timeout");
    // Not reached: the program's status.
    cx.ljspawn()
        .args(["--root", &world(cx), "--timeout", "1m", "--", "/bin/sh", "-c", "exit 5"])
        .run()
        .expect_status(5);
    cx.ljspawn().args(["--root", &world(cx), "--timeout", "2s", "--", "/bin/true"]).run().ok();
}

fn kill_after(cx: &Ctx) {
    let m = marker("killafter");
    let jail = |script: &str| {
        cx.ljspawn()
            .args([
                "--root",
                &world(cx),
                "--setenv",
                "LJ_MARKER",
                &m,
                "--timeout",
                "200ms",
                "--kill-after",
                "300ms",
            ])
            .args(["--", "/bin/sh", "-c", script])
            .timeout(Duration::from_secs(20))
            .run()
            .expect_status(124)
    };
    // The same jail whose program ends at the SIGTERM: what start, timeout and end cost now.
    let baseline = jail("[ -n \"$LJ_MARKER\" ] || exit 99; sleep 100").elapsed;
    // The program ignores SIGTERM: only the SIGKILL 300 ms later ends it (without --kill-after:
    // 5 s later; not at all: the 20 s run limit, not 124).
    let out = jail("[ -n \"$LJ_MARKER\" ] || exit 99; trap '' TERM; sleep 100 & wait; sleep 100");
    assert!(
        out.elapsed < baseline + Duration::from_secs(3),
        "--kill-after 300ms not honoured (ended at the SIGTERM: {baseline:?})\n{}",
        out.report()
    );
    assert_no_procs_left(&m, "after --kill-after");
}

fn rlimit(cx: &Ctx) {
    let out = sh_with(cx, &["--rlimit", "nofile=64", "--rlimit", "core=0"], "ulimit -n; ulimit -c").ok();
    assert_lines(&out, &["64", "0"]);
}

fn seccomp_nested_userns(cx: &Ctx) {
    // The default filter denies new user namespaces; --allow-userns lets them through.
    let out = sh_with(cx, &[], "unshare -U true 2>/dev/null && echo MADE; echo end").ok();
    assert_lines(&out, &["end"]);
    let out = sh_with(cx, &["--allow-userns"], "unshare -U true && echo made").ok();
    assert_lines(&out, &["made"]);
}

fn seccomp_none_root_only(cx: &Ctx) {
    let out = sh_with(cx, &["--seccomp", "none"], "echo RAN");
    assert!(!out.stdout.contains("RAN"), "{}", out.report());
    out.expect_ljspawn_error(125);
}

fn dry_run(cx: &Ctx) {
    let t = cx.tempdir();
    let out = cx
        .ljspawn()
        .args([
            "--dry-run",
            "--root",
            &world(cx),
            "--bind",
            &t.str(),
            "/home",
            "--tmpfs",
            "/lj-dry-tmpfs",
            "--setenv",
            "DRYVAR",
            "dryvalue",
        ])
        .args(["--", "/bin/sh", "-c", "touch /home/ran"])
        .run()
        .ok();
    assert!(!t.join("ran").exists(), "--dry-run ran the program\n{}", out.report());
    let lines = out.lines();
    let find = |pat: &str| lines.iter().position(|l| l.contains(pat));
    for ns in ["pid", "net", "uts", "ipc", "cgroup"] {
        assert!(find(ns).is_some(), "--dry-run does not name the {ns} namespace\n{}", out.report());
    }
    for p in ["/proc", "/dev", "/tmp", "DRYVAR", "PATH="] {
        assert!(find(p).is_some(), "--dry-run plan lacks {p}\n{}", out.report());
    }
    let bind = find(&t.str()).unwrap_or_else(|| panic!("--dry-run lacks the bind\n{}", out.report()));
    let tmpfs =
        find("/lj-dry-tmpfs").unwrap_or_else(|| panic!("--dry-run lacks the tmpfs\n{}", out.report()));
    assert!(bind < tmpfs, "--dry-run mounts out of command-line order\n{}", out.report());
    if cx.mode != Mode::Root {
        assert!(find("uid map").is_some(), "--dry-run lacks the uid map\n{}", out.report());
    }
    // What ljspawn prints itself, into a pipe whose reader has gone (`ljspawn --dry-run ... |
    // head -0`): 141 (128 + SIGPIPE), quietly; never a panic.
    let w = world(cx);
    let printing: [&[&str]; 3] =
        [&["--dry-run", "--root", &w, "--", "/bin/true"], &["--bwrap", "--help"], &["--bwrap", "--version"]];
    let fifos = cx.tempdir();
    for (i, args) in printing.iter().enumerate() {
        let prelude = lj_tests::closed_pipe_prelude(&fifos.join(format!("fifo-{i}")));
        let out = cx.ljspawn().prelude(&prelude).args(*args).run();
        assert!(out.status() == 141 && out.stderr.is_empty(), "into a closed pipe:\n{}", out.report());
    }
}

/// ljspawn's failure and warning lines into a stderr whose reader has gone (`ljspawn ... 2>&1 |
/// head -0`, a log reader that went away): the exit status stays the one the line goes with,
/// never a panic's abort (134: `eprintln!` panics on EPIPE), and nothing says "panicked" on
/// stdout, which stays the test's.
fn lines_into_closed_stderr(cx: &Ctx) {
    let w = world(cx);
    let cases: [(&[&str], i32); 4] = [
        (&["--root", "/no/such/root", "--", "/bin/true"], 125),
        (&["--no-such-option", "--root", &w, "--", "/bin/true"], 2),
        (&["--bwrap", "--no-such-option"], 1),
        // bwrap's warning, then the program runs: 0.
        (&["--bwrap", "--ro-bind", "/", "/", "--chdir", "/", "--chdir", "/", "--", "/bin/true"], 0),
    ];
    let fifos = cx.tempdir();
    for (i, (args, code)) in cases.iter().enumerate() {
        let prelude = lj_tests::closed_pipe_prelude_on(&fifos.join(format!("fifo-{i}")), 2);
        let out = cx.ljspawn().prelude(&prelude).args(*args).run();
        assert!(
            out.status() == *code && !out.stdout.contains("panicked"),
            "expected {code} into a closed stderr:\n{}",
            out.report()
        );
    }
}

fn json_status(cx: &Ctx) {
    // Several times: the namespace ids must be there every time, not when a race is won.
    for _ in 0..10 {
        json_status_once(cx);
    }
}

/// lightjail's `-j`: the same JSON lines, on stderr.
fn json_log_lightjail_j(cx: &Ctx) {
    let out = cx.ljspawn().args(["-d", &world(cx), "-j", "-p", "exit 5"]).run().expect_status(5);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 2, "-j wrote {:?}\n{}", out.stderr, out.report());
    let first = parse_flat_json(lines[0]).unwrap_or_else(|e| panic!("{:?}: {e}", lines[0]));
    assert!(json_get(&first, "child-pid").and_then(Json::as_i64).is_some_and(|p| p > 0), "{}", lines[0]);
    assert!(json_get(&first, "pid-namespace").is_some(), "{}", lines[0]);
    let last = parse_flat_json(lines[1]).unwrap_or_else(|e| panic!("{:?}: {e}", lines[1]));
    assert_eq!(json_get(&last, "exit-code").and_then(Json::as_i64), Some(5), "{}", lines[1]);
}

fn json_status_once(cx: &Ctx) {
    let t = cx.tempdir();
    let status = cx_path(&t, "status");
    cx.ljspawn()
        .prelude(&format!("exec 5>'{status}'"))
        .args(["--root", &world(cx), "--json-status", "5", "--", "/bin/sh", "-c", "exit 7"])
        .run()
        .expect_status(7);
    let text = read(Path::new(&status)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "--json-status wrote {text:?}");
    let first = parse_flat_json(lines[0]).unwrap_or_else(|e| panic!("first line {:?}: {e}", lines[0]));
    let last = parse_flat_json(lines[lines.len() - 1]).unwrap_or_else(|e| panic!("last line: {e}"));
    let int = |obj: &[(String, Json)], k: &str| json_get(obj, k).and_then(Json::as_i64);
    assert!(int(&first, "child-pid").is_some_and(|p| p > 0), "child-pid in {}", lines[0]);
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "uts"] {
        let key = format!("{ns}-namespace");
        let id = int(&first, &key).unwrap_or_else(|| panic!("no {key} in {}", lines[0]));
        let host = ns_inode(&host_ns(ns)).unwrap() as i64;
        assert_ne!(id, host, "{key} is the host's in {}", lines[0]);
    }
    let user = int(&first, "user-namespace");
    match cx.mode {
        Mode::Root => assert!(user.is_none(), "user-namespace reported without one in {}", lines[0]),
        _ => assert!(user.is_some_and(|u| u != ns_inode(&host_ns("user")).unwrap() as i64), "{}", lines[0]),
    }
    assert_eq!(int(&last, "exit-code"), Some(7), "last line {}", lines[lines.len() - 1]);
}

fn output_files(cx: &Ctx) {
    let t = cx.tempdir();
    cx.write_caller_file(&t.join("out"), &"old content that must be truncated\n".repeat(10));
    let (o, e) = (cx_path(&t, "out"), cx_path(&t, "err"));
    let out = sh_with(cx, &["-O", &o, "-E", &e], "echo to-out; echo to-err >&2").ok();
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", out.report());
    assert_eq!(read(Path::new(&o)).as_deref(), Some("to-out\n"));
    assert_eq!(read(Path::new(&e)).as_deref(), Some("to-err\n"));
    let meta = fs::metadata(&e).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), cx.caller_uid, "-E file not owned by the caller");
}

fn output_file_caller_credentials(cx: &Ctx) {
    // A directory the caller cannot write: ljspawn must not create the file with more rights.
    if lj_tests::current_uid() != 0 {
        cx.skip("needs root to make a directory the caller cannot write");
        return;
    }
    let rd = cx.root_tempdir();
    let o = cx_path(&rd, "out");
    let out = sh_with(cx, &["-O", &o], "echo RAN");
    assert!(!rd.join("out").exists(), "-O created a file where the caller cannot\n{}", out.report());
    out.expect_ljspawn_error(125);
    // An existing root-owned file is not truncated.
    let f = rd.join("victim");
    fs::write(&f, "intact\n").unwrap();
    chmod(&f, 0o644);
    let out = sh_with(cx, &["-O", &lj_tests::path_str(&f), "-E", &lj_tests::path_str(&f)], "echo RAN");
    assert_eq!(read(&f).as_deref(), Some("intact\n"), "-O/-E truncated a root-owned file\n{}", out.report());
    out.expect_ljspawn_error(125);
}

fn caller_cannot_reach_root_dir(cx: &Ctx) {
    // A root directory the caller cannot reach (behind a 0700 root-owned directory) is refused.
    if lj_tests::current_uid() != 0 {
        cx.skip("needs root to make a directory the caller cannot reach");
        return;
    }
    let hidden = cx.root_tempdir();
    let mut cp = std::process::Command::new("cp");
    cp.arg("-a").arg(world(cx)).arg(hidden.join("w"));
    assert_eq!(lj_tests::run_with_timeout(cp, None, Duration::from_secs(60)).unwrap().status(), 0);
    chmod(hidden.path(), 0o700);
    let w = cx_path(&hidden, "w");
    for args in [vec!["--root", &w], vec!["--layer", &w]] {
        let out = cx.ljspawn().args(&args).args(["--", "/bin/echo", "RAN"]).run();
        assert!(!out.stdout.contains("RAN"), "ran in a root the caller cannot reach\n{}", out.report());
        out.expect_ljspawn_error(125);
    }
}

// ---------------------------------------------------------------- network

fn net_none(cx: &Ctx) {
    for extra in [&[][..], &["--net", "none"][..]] {
        let out = sh_with(cx, extra, "cat /proc/net/dev").ok();
        assert_eq!(net_dev_names(&out.stdout), ["lo"], "only lo in the jail\n{}", out.report());
        let out = sh_with(cx, extra, "ip link show lo").ok();
        let flags = out.stdout.split(['<', '>']).nth(1).unwrap_or_default().to_string();
        assert!(flags.split(',').any(|f| f == "UP"), "lo is not up\n{}", out.report());
    }
}

fn net_host(cx: &Ctx) {
    let host = net_dev_names(&fs::read_to_string("/proc/net/dev").unwrap());
    let out = sh_with(cx, &["--net", "host"], "cat /proc/net/dev").ok();
    assert_eq!(net_dev_names(&out.stdout), host, "--net host: the host's interfaces\n{}", out.report());
}

// ---------------------------------------------------------------- host isolation

/// The caller's mount table is the same after its jails as before, and the jail shows none of
/// the host's mounts.
///
/// Other tests running at the same time mount and unmount in the host's mount namespace (buildah
/// and podman do), so the caller here has a mount namespace of its own, made by root: a copy of
/// the host's, cut off from it (private), then made shared again in peer groups of its own, so
/// anything a jail's mounts propagated back would show there as it would on a host whose mounts
/// are shared. Nothing of the other tests reaches it.
fn host_mounts_unchanged(cx: &Ctx) {
    let t = cx.tempdir();
    let layer = cx.world_copy();
    let tables = cx.root_tempdir();
    let (before, after) = (tables.join("before"), tables.join("after"));
    let jails: [Vec<String>; 2] = [
        [
            "--root",
            &world(cx),
            "--bind",
            &t.str(),
            "/home",
            "--tmpfs",
            "/root",
            "--",
            "/bin/sh",
            "-c",
            "true",
        ]
        .map(String::from)
        .to_vec(),
        ["--layer", &layer.str(), "--tmpfs", "/x", "--", "/bin/true"].map(String::from).to_vec(),
    ];
    let as_caller = |args: &[String]| {
        let mut argv: Vec<String> = Vec::new();
        if let Some(u) = &cx.run_as {
            let setpriv = lj_tests::which("setpriv").expect("setpriv (Ctx checked it)");
            argv.push(lj_tests::path_str(&setpriv));
            argv.extend([format!("--reuid={}", u.uid), format!("--regid={}", u.gid)]);
            argv.extend(["--init-groups", "--reset-env", "--"].map(String::from));
        }
        argv.push(lj_tests::path_str(&cx.bin));
        argv.extend(args.iter().cloned());
        argv.iter().map(|a| lj_tests::shell_quote(a)).collect::<Vec<_>>().join(" ")
    };
    if lj_tests::current_uid() == 0 {
        let script = format!(
            "set -e; mount --make-rshared /; cat /proc/self/mountinfo > {b}; {j1}; {j2}; cat /proc/self/mountinfo > {a}",
            b = lj_tests::shell_quote(&lj_tests::path_str(&before)),
            a = lj_tests::shell_quote(&lj_tests::path_str(&after)),
            j1 = as_caller(&jails[0]),
            j2 = as_caller(&jails[1]),
        );
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "/bin/sh", "-c", &script]).current_dir(&cx.dir);
        let out = lj_tests::run_with_timeout(cmd, None, Duration::from_secs(60)).expect("run unshare").ok();
        let (before, after) = (read(&before).unwrap_or_default(), read(&after).unwrap_or_default());
        assert!(!before.is_empty(), "no mount table before the jails\n{}", out.report());
        assert_eq!(after, before, "the caller's mount table changed\n{}", out.report());
    } else {
        // (No mount namespace of its own without root: the host's table, as it is.)
        let before = host_mountinfo();
        for args in &jails {
            cx.ljspawn().args(args).run().ok();
        }
        assert_eq!(host_mountinfo(), before, "the host's mount table changed");
    }
    let before = host_mountinfo();
    // And no host mount is visible in the jail.
    let host_points: BTreeSet<String> = parse_mountinfo(&before).into_iter().map(|m| m.mount_point).collect();
    let inside = jail_mounts(cx, &["--root", &world(cx), "--bind", &t.str(), "/home"]);
    for m in &inside {
        let p = m.mount_point.as_str();
        let expected = ["/", "/proc", "/dev", "/tmp", "/home"].contains(&p)
            || p.starts_with("/proc/")
            || p.starts_with("/dev/");
        assert!(expected, "unexpected mount in the jail: {m:?} (host has {:?})", host_points.contains(p));
    }
}

fn pivot_root_old_root_gone(cx: &Ctx) {
    let out = sh_with(cx, &[], "stat -c %d:%i / /.. /../..").ok();
    let l = out.lines();
    assert!(
        l.len() == 3 && l[0] == l[1] && l[1] == l[2],
        "/.. is not / (old root reachable?)\n{}",
        out.report()
    );
    // The world's marker is what / is.
    let out = sh_with(cx, &[], "cat /etc/lj-world").ok();
    assert!(out.stdout.starts_with("world: busybox"), "{}", out.report());
}

fn executable_named_like_option(cx: &Ctx) {
    let copy = cx.world_copy();
    let p = copy.join("bin/--bind");
    fs::write(&p, "#!/bin/sh\necho \"ran --bind $*\"\n").unwrap();
    chmod(&p, 0o755);
    cx.chown_caller(&p);
    let out = cx.ljspawn().args(["--root", &copy.str(), "--", "--bind", "a", "b"]).run().ok();
    assert_lines(&out, &["ran --bind a b"]);
    let out = cx.ljspawn().args(["--root", &copy.str(), "--", "/bin/--bind"]).run().ok();
    assert_lines(&out, &["ran --bind"]);
}

fn root_only_file_not_readable(cx: &Ctx) {
    let secret = "TOP-SECRET-lj-content";
    let Some((dir, file)) = cx.root_only_file(secret) else { return };
    let dir_s = dir.str();
    let file_s = lj_tests::path_str(&file);
    // A root-only directory holding a world-readable file.
    let hidden = cx.root_tempdir();
    chmod(hidden.path(), 0o700);
    fs::write(hidden.join("f"), secret).unwrap();
    chmod(&hidden.join("f"), 0o644);
    let hidden_f = cx_path(&hidden, "f");
    let cases: Vec<Vec<&str>> = vec![
        vec!["--ro-bind", &dir_s, "/home", "--", "/bin/cat", "/home/secret"],
        vec!["--bind", &dir_s, "/home", "--", "/bin/cat", "/home/secret"],
        vec!["--ro-bind", &file_s, "/etc/hostname", "--", "/bin/cat", "/etc/hostname"],
        vec!["--bind", &file_s, "/etc/hostname", "--", "/bin/cat", "/etc/hostname"],
        vec!["--ro-bind", &hidden_f, "/etc/hostname", "--", "/bin/cat", "/etc/hostname"],
    ];
    for args in cases {
        let out = cx.ljspawn().args(["--root", &world(cx)]).args(&args).run();
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "root-only content readable rootless\n{}",
            out.report()
        );
        assert_ne!(out.status(), 0, "{}", out.report());
        if out.status() == 125 {
            out.expect_ljspawn_error(125);
        }
    }
    // The content is there: the same bind as root reads it (so this test can fail).
    if let Some(root) = Ctx::new(&format!("{}(root check)", cx.name), Mode::Root) {
        let out = root
            .ljspawn()
            .args([
                "--root",
                &world(cx),
                "--ro-bind",
                &file_s,
                "/etc/hostname",
                "--",
                "/bin/cat",
                "/etc/hostname",
            ])
            .run()
            .ok();
        assert_eq!(out.stdout, secret);
    }
}

fn setuid_mode(cx: &Ctx) {
    // While a setuid jail runs, no process of it (ljspawn included) holds root on the host:
    // every uid (real, effective, saved, fs) is the caller's, and ljspawn has no capabilities.
    let m = marker("setuid");
    let running = cx
        .ljspawn()
        .args(["--root", &world(cx), "--setenv", "LJ_MARKER", &m, "--", "/bin/sleep", "1000"])
        .timeout(Duration::from_secs(20))
        .start();
    assert!(wait_for_procs("LJ_MARKER", &m, "sleep", 1), "the jail's sleep never appeared");
    let tree = lj_tests::process_tree(running.pid());
    assert!(tree.len() >= 3, "ljspawn, its PID 1 and the program: {tree:?}");
    for pid in &tree {
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let uids = status_field(&status, "Uid").unwrap_or_default();
        let want = format!("{0}\t{0}\t{0}\t{0}", cx.caller_uid);
        assert_eq!(uids, want, "pid {pid} of the setuid jail keeps another uid:\n{status}");
        if *pid == running.pid() {
            assert_eq!(status_field(&status, "CapEff").as_deref(), Some("0000000000000000"), "{status}");
            assert_eq!(status_field(&status, "CapPrm").as_deref(), Some("0000000000000000"), "{status}");
        }
    }
    running.signal("TERM");
    let out = running.wait();
    assert_eq!(out.status(), 143, "{}", out.report());
    assert_no_procs_left(&m, "setuid jail after SIGTERM");
    // And the jail itself is an ordinary rootless-style one.
    let out = sh_with(cx, &[], "id -u; grep CapEff /proc/self/status").ok();
    assert_eq!(out.lines(), ["0", "CapEff:\t0000000000000000"], "{}", out.report());
    let inside = jail_ns(cx, &[]);
    let userns = inside.iter().find(|(n, _)| n == "user").map(|(_, l)| l.clone()).unwrap_or_default();
    assert_ne!(userns, host_ns("user"), "setuid mode must use a user namespace");
}

// ---------------------------------------------------------------- the whole mount table

/// One mount of a jail's table as `mount_table_exact` compares it: its mount point, the mount
/// point of its parent ("-": not in the table, the jail's root), its root in its file system,
/// the file system type, the per-mount flags that matter (ro/rw, nosuid, nodev, noexec, in that
/// order) and the superblock options of the file systems the jail makes (tmpfs, devpts, proc;
/// "" for binds of host file systems, whose options are the host's).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MountRow {
    point: String,
    parent: String,
    root: String,
    fstype: String,
    flags: String,
    sb: String,
}

fn mount_rows(mounts: &[MountEntry]) -> Vec<MountRow> {
    let mut rows: Vec<MountRow> = mounts
        .iter()
        .map(|m| {
            let parent =
                mounts.iter().find(|p| p.id == m.parent).map_or("-".to_string(), |p| p.mount_point.clone());
            let has = |o: &str| m.opts.iter().any(|x| x == o);
            let mut flags = vec![if has("ro") { "ro" } else { "rw" }];
            flags.extend(["nosuid", "nodev", "noexec"].into_iter().filter(|o| has(o)));
            let sb = match m.fstype.as_str() {
                "tmpfs" | "devpts" | "proc" => m.super_opts.join(","),
                _ => String::new(),
            };
            MountRow {
                point: m.mount_point.clone(),
                parent,
                root: m.root.clone(),
                fstype: m.fstype.clone(),
                flags: flags.join(","),
                sb,
            }
        })
        .collect();
    rows.sort();
    rows
}

/// Where `path` (a host path) comes from: the root field and file system type a bind of it has.
fn host_source(path: &str) -> (String, String) {
    let canon = fs::canonicalize(path).unwrap_or_else(|e| panic!("canonicalize {path}: {e}"));
    let m = lj_tests::mount_of(&canon).unwrap_or_else(|| panic!("no host mount holds {path}"));
    let rel = canon.strip_prefix(&m.mount_point).expect("mount_of gives a prefix");
    let root = Path::new(&m.root).join(rel);
    (root.display().to_string(), m.fstype)
}

/// The table a jail on the busybox world must have, made here from what the jail is meant to
/// look like (README: the jail), not from ljspawn's plan: `bwrap_form` is
/// `--bwrap --unshare-all --ro-bind WORLD / --proc /proc --dev /dev --tmpfs /tmp`, else
/// `--root WORLD`.
fn expected_rows(cx: &Ctx, bwrap_form: bool) -> Vec<MountRow> {
    let row = |point: &str, parent: &str, root: &str, fstype: &str, flags: &str, sb: &str| MountRow {
        point: point.into(),
        parent: parent.into(),
        root: root.into(),
        fstype: fstype.into(),
        flags: flags.into(),
        sb: sb.into(),
    };
    // A tmpfs a rootless or setuid jail makes is its caller's (a new user namespace's).
    let owner = match cx.mode {
        Mode::Root => String::new(),
        _ => format!(",uid={},gid={}", cx.caller_uid, cx.caller_gid),
    };
    let (world_root, world_fs) = host_source(&world(cx));
    let mut rows = vec![
        row("/", "-", &world_root, &world_fs, "ro,nosuid,nodev", ""),
        row("/proc", "/", "/", "proc", "rw,nosuid,nodev,noexec", "rw"),
        row("/dev", "/", "/", "tmpfs", "rw,nosuid,nodev,noexec", &format!("rw,mode=755{owner}")),
        row("/dev/pts", "/dev", "/", "devpts", "rw,nosuid,noexec", "rw,mode=620,ptmxmode=666"),
        // ljspawn's /tmp is 1777 (tmpfs's default, not shown); bwrap's --tmpfs is 0755.
        row(
            "/tmp",
            "/",
            "/",
            "tmpfs",
            "rw,nosuid,nodev",
            &format!("rw{}{owner}", if bwrap_form { ",mode=755" } else { "" }),
        ),
    ];
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let (root, fstype) = host_source(&format!("/dev/{d}"));
        rows.push(row(&format!("/dev/{d}"), "/dev", &root, &fstype, "ro,nosuid,noexec", ""));
    }
    // Where this kernel's proc has them (the jail's proc is of the same kernel).
    let exists = |p: &str| fs::symlink_metadata(format!("/proc/{p}")).is_ok();
    for p in ["sys", "sysrq-trigger", "irq", "bus"].into_iter().filter(|p| exists(p)) {
        rows.push(row(
            &format!("/proc/{p}"),
            "/proc",
            &format!("/{p}"),
            "proc",
            "ro,nosuid,nodev,noexec",
            "rw",
        ));
    }
    // Masked with /dev/null: keys everywhere; a jail of host root also hides what host root
    // alone may read.
    let mut masks = vec!["keys", "key-users"];
    if cx.mode == Mode::Root {
        masks.extend(["kcore", "slabinfo", "vmallocinfo", "timer_list", "sched_debug"]);
    }
    let (null_root, null_fs) = host_source("/dev/null");
    for p in masks.into_iter().filter(|p| exists(p)) {
        rows.push(row(&format!("/proc/{p}"), "/proc", &null_root, &null_fs, "ro,nosuid,nodev,noexec", ""));
    }
    rows.sort();
    rows
}

/// The jail's mount table (own form, then bwrap form), run through `wrapper` (if not empty).
fn jail_tables(cx: &Ctx, wrapper: &[String]) -> [(bool, Vec<MountRow>, Output); 2] {
    let w = world(cx);
    let own: Vec<&str> = vec!["--root", &w, "--", "/bin/cat", "/proc/self/mountinfo"];
    let bwrap: Vec<&str> = vec![
        "--bwrap",
        "--unshare-all",
        "--ro-bind",
        &w,
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "/bin/cat",
        "/proc/self/mountinfo",
    ];
    [(false, own), (true, bwrap)].map(|(bwrap_form, args)| {
        let out = cx.ljspawn().wrapper(wrapper).args(args).run().ok();
        let rows = mount_rows(&parse_mountinfo(&out.stdout));
        (bwrap_form, rows, out)
    })
}

#[track_caller]
fn assert_tables(cx: &Ctx, wrapper: &[String]) {
    for (bwrap_form, rows, out) in jail_tables(cx, wrapper) {
        let want = expected_rows(cx, bwrap_form);
        if rows != want {
            let show = |v: &[MountRow]| v.iter().map(|r| format!("  {r:?}")).collect::<Vec<_>>().join("\n");
            let missing: Vec<MountRow> = want.iter().filter(|r| !rows.contains(r)).cloned().collect();
            let extra: Vec<MountRow> = rows.iter().filter(|r| !want.contains(r)).cloned().collect();
            panic!(
                "{} mount table ({}) differs\nmissing:\n{}\nunexpected:\n{}\n{}",
                if bwrap_form { "bwrap form" } else { "own form" },
                cx.mode,
                show(&missing),
                show(&extra),
                out.report()
            );
        }
    }
}

/// The whole mount table of a jail, exactly: every mount point, its parent, its source, its
/// flags; root mode's extra /proc masks only in root mode. A change in how the jail is set up
/// (fewer or merged system calls) must leave it the same.
fn mount_table_exact(cx: &Ctx) {
    assert_tables(cx, &[]);
}

/// `tests/probes/deny_syscalls.py RULES... --` as a wrapper, run as the caller (the probes
/// copied where the test user can read them); `None` (after a SKIP) without python3.
fn deny_wrapper(cx: &Ctx, rules: &[&str]) -> Option<(lj_tests::TempDir, Vec<String>)> {
    const PYTHON: &str = "/usr/bin/python3";
    if !Path::new(PYTHON).is_file() {
        cx.skip(&format!("{PYTHON} missing (the seccomp wrapper is a python3 ctypes probe)"));
        return None;
    }
    let dir = cx.root_tempdir();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/deny_syscalls.py");
    let to = dir.join("deny_syscalls.py");
    fs::copy(&src, &to).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    chmod(&to, 0o644);
    let mut argv = vec![PYTHON.to_string(), "-I".into(), "-S".into(), lj_tests::path_str(&to)];
    argv.extend(rules.iter().map(|r| r.to_string()));
    argv.push("--".into());
    Some((dir, argv))
}

/// open_tree_attr(2) is system call 467 (Linux 6.15); mount_setattr(2) is 442.
const NR_OPEN_TREE_ATTR: &str = "467";
const NR_MOUNT_SETATTR: &str = "442";

/// Whether this kernel has open_tree_attr(2): on a bad fd it fails with EBADF, not ENOSYS.
fn kernel_has_open_tree_attr() -> bool {
    // SAFETY: a bad fd and NULL pointers: the kernel refuses the call before it reads memory.
    let ret =
        unsafe { libc::syscall(467, -1, std::ptr::null::<libc::c_char>(), 0, std::ptr::null::<u8>(), 0) };
    !(ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// An older kernel (open_tree_attr fails with ENOSYS), or an outer sandbox refusing it (EPERM):
/// ljspawn takes open_tree + mount_setattr, and the table is the same.
fn mount_table_exact_without_open_tree_attr(cx: &Ctx) {
    for errno in ["ENOSYS", "EPERM"] {
        let Some((_dir, wrapper)) = deny_wrapper(cx, &[&format!("{NR_OPEN_TREE_ATTR}={errno}")]) else {
            return;
        };
        assert_tables(cx, &wrapper);
    }
}

/// Where the kernel has open_tree_attr, a plain jail makes its binds with it alone: with
/// mount_setattr refused, the table is the same (and without either call, ljspawn fails
/// cleanly instead of making a jail with writable or suid binds).
fn mount_table_exact_without_mount_setattr(cx: &Ctx) {
    if !kernel_has_open_tree_attr() {
        cx.skip("this kernel has no open_tree_attr(2) (Linux 6.15)");
        return;
    }
    let Some((_dir, wrapper)) = deny_wrapper(cx, &[&format!("{NR_MOUNT_SETATTR}=EPERM")]) else { return };
    assert_tables(cx, &wrapper);
    let both = [format!("{NR_OPEN_TREE_ATTR}=ENOSYS"), format!("{NR_MOUNT_SETATTR}=EPERM")];
    let Some((_dir2, wrapper)) = deny_wrapper(cx, &[&both[0], &both[1]]) else { return };
    let out = cx.ljspawn().wrapper(&wrapper).args(["--root", &world(cx), "--", "/bin/true"]).run();
    assert_eq!(out.status(), 125, "want a setup failure\n{}", out.report());
    assert!(out.stderr.contains("operation not permitted"), "{}", out.report());
}
