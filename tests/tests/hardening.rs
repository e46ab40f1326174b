//! The second hardening round (issue 10): each attack a review of ljspawn's privileged paths
//! found, run end to end in the modes it applies to, asserting that it fails now.
//! Test names are `<attack>::<mode>`. Needs `tests/prepare.sh` (as root) first.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use lj_tests::{path_str, run_with_timeout, wait_until, which, Ctx, TempDir};

lj_tests::mode_tests! {
    prefix = "", run = lj_tests::run_ctx;
    own_mount_points_never_follow_symlinks: root rootless setuid;
    proc_read_only_parts_from_proc_itself: root rootless setuid;
    shared_world_symlink_race: root rootless setuid;
    outputs_opened_as_the_caller: rootless setuid;
    fd_given_twice_refused: root rootless setuid;
    keys_and_root_only_proc_files_hidden: root rootless setuid;
}

// ---------------------------------------------------------------- helpers

/// A private world copy owned by the caller, with `name` (a top-level directory) replaced by a
/// symlink to `target`.
fn world_with_symlink(cx: &Ctx, name: &str, target: &str) -> TempDir {
    let w = cx.world_copy();
    let p = w.join(name);
    if p.is_dir() {
        fs::remove_dir_all(&p).unwrap_or_else(|e| panic!("rm {}: {e}", p.display()));
    }
    symlink(target, &p).unwrap_or_else(|e| panic!("ln -s {target} {}: {e}", p.display()));
    cx.chown_caller(&p);
    w
}

// ---------------------------------------------------------------- 1. mount points and symlinks

/// A world whose `/proc`, `/dev` or `/tmp` is a symlink (to `/`, or elsewhere in the world) is
/// refused, as a read-only root, a writable one and an overlay layer: ljspawn's own mounts never
/// land on the jail's root or anywhere a symlink points.
fn own_mount_points_never_follow_symlinks(cx: &Ctx) {
    // Control: the same copy without a symlink runs.
    let plain = cx.world_copy();
    cx.ljspawn().args(["--root", &path_str(plain.path()), "--", "/bin/true"]).run().ok();
    for (name, target) in [("proc", "/"), ("proc", "bin/.."), ("dev", "/"), ("tmp", "/"), ("tmp", "/etc")] {
        let w = world_with_symlink(cx, name, target);
        let ws = path_str(w.path());
        for root in [vec!["--root", &ws], vec!["--root", &ws, "--rw"], vec!["--layer", &ws]] {
            let out = cx.ljspawn().args(&root).args(["--", "/bin/sh", "-c", "ls /bin/.. >/dev/null"]).run();
            let out = out.expect_ljspawn_error(125);
            assert!(
                out.stderr.contains(&format!("mount point /{name}")),
                "/{name} -> {target}: want a refusal naming the mount point\n{}",
                out.report()
            );
        }
    }
}

/// `/proc/sys` and `/proc/sysrq-trigger` are read-only in the jail's own proc mount (seen from
/// the mount table and by a write that must fail), and nothing else masks them.
fn proc_read_only_parts_from_proc_itself(cx: &Ctx) {
    let script = "grep -E ' /proc/(sys|sysrq-trigger) ' /proc/self/mountinfo | cut -d' ' -f5,6; \
                  echo x > /proc/sys/kernel/domainname && echo WROTE";
    let out = cx.sh(script);
    let lines = out.lines();
    assert!(!out.stdout.contains("WROTE"), "/proc/sys was writable\n{}", out.report());
    // (No /proc/sysrq-trigger at all on a kernel without MAGIC_SYSRQ.)
    for p in ["/proc/sys", "/proc/sysrq-trigger"].into_iter().filter(|p| Path::new(p).exists()) {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{p} "))
                && l.split(' ').nth(1).is_some_and(|o| o.starts_with("ro"))),
            "{p} not mounted read-only\n{}",
            out.report()
        );
    }
}

/// runc CVE-2019-19921's shape: one jail swaps a shared writable world's `/proc` for a symlink
/// to `/` in a loop while other jails start on that world. Each of them either gets a real
/// proc at /proc (with a read-only /proc/sys) or refuses; none gets proc over its root.
fn shared_world_symlink_race(cx: &Ctx) {
    let w = cx.world_copy();
    let ws = path_str(w.path());
    let swap = "i=0; while [ $i -lt 4000 ]; do \
                mv /w/proc /w/p2 && ln -s / /w/proc && rm /w/proc && mv /w/p2 /w/proc; i=$((i+1)); done";
    let attacker = cx
        .ljspawn()
        .timeout(Duration::from_secs(120))
        .args(["--layer", &cx.world_str(), "--bind", &ws, "/w", "--", "/bin/sh", "-c", swap])
        .start();
    // Once set up, the jail's mounts stay on the directories they were attached to, wherever
    // the attacker renames them: so the probe looks for a writable sysctl at every place.
    let probe = "test -d /bin || exit 9; \
                 for d in /proc /p2 /; do (echo x > $d/sys/kernel/domainname) 2>/dev/null && echo WROTE $d; done; \
                 test -r /proc/self/stat && echo GOOD";
    let (mut good, mut refused) = (0, 0);
    for _ in 0..30 {
        let out = cx.ljspawn().args(["--root", &ws, "--", "/bin/sh", "-c", probe]).run();
        if out.status() == 125 {
            let out = out.expect_ljspawn_error(125);
            assert!(out.stderr.contains("/proc"), "{}", out.report());
            refused += 1;
        } else {
            assert!(matches!(out.status(), 0 | 1) && !out.stdout.contains("WROTE"), "{}", out.report());
            good += usize::from(out.stdout.contains("GOOD"));
        }
    }
    let done = attacker.wait();
    assert!(done.stderr.is_empty() || !done.stderr.contains("Permission denied"), "{}", done.report());
    eprintln!("{}: {good} jails got their proc, {refused} refused", cx.name);
    assert!(Path::new(&w.join("proc")).is_dir() || Path::new(&w.join("p2")).is_dir());
}

// ---------------------------------------------------------------- 3. -O/-E as the caller

/// `-O /proc/PID/root/...` of a root process in a private mount namespace: the caller cannot
/// reach that file, so neither can ljspawn on its behalf (setuid: CAP_SYS_PTRACE must not
/// help). The file is in a tmpfs mounted (mode 1777) only in that namespace.
fn outputs_opened_as_the_caller(cx: &Ctx) {
    if lj_tests::current_uid() != 0 {
        return cx.skip("needs root to make a private mount namespace");
    }
    let Some(unshare) = which("unshare") else { return cx.skip("unshare (util-linux) missing") };
    let d = cx.root_tempdir();
    let ds = path_str(d.path());
    let script = format!("mount -t tmpfs -o mode=1777 lj-h10 {ds} && touch {ds}/ready && exec sleep 60");
    let mut child = std::process::Command::new(unshare)
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .spawn()
        .expect("spawn unshare");
    let pid = child.id();
    let inside = format!("/proc/{pid}/root{ds}");
    let ready = wait_until(Duration::from_secs(30), || Path::new(&format!("{inside}/ready")).exists());
    let result = std::panic::catch_unwind(|| {
        assert!(ready, "the private tmpfs never appeared");
        for flag in ["-O", "-E"] {
            let target = format!("{inside}/{}", flag.trim_start_matches('-'));
            let out =
                cx.ljspawn().args([flag, &target, "--root", &cx.world_str(), "--", "/bin/echo", "hi"]).run();
            let out = out.expect_ljspawn_error(125);
            assert!(out.stderr.contains(&format!("cannot open {flag}")), "{}", out.report());
            assert!(!Path::new(&target).exists(), "{target} was created\n{}", out.report());
        }
        // Control: a file the caller may write is opened (and written) as before.
        let ok = cx.tempdir();
        let f = ok.join("out");
        cx.ljspawn()
            .args(["-O", &path_str(&f), "--root", &cx.world_str(), "--", "/bin/echo", "hi"])
            .run()
            .ok();
        assert_eq!(fs::read_to_string(&f).unwrap(), "hi\n");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&f).unwrap().uid(), cx.caller_uid);
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = run_with_timeout(std::process::Command::new("true"), None, Duration::from_secs(1));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

// ---------------------------------------------------------------- 7. one fd, one use

/// `--seccomp-fd N --pass-fd N` (and `--json-status N --pass-fd N`): refused, so the program
/// never inherits what ljspawn reuses N for (its status or exit pipe). The seccomp program is
/// one instruction: allow everything.
fn fd_given_twice_refused(cx: &Ctx) {
    let d = cx.tempdir();
    let bpf = d.join("allow.bpf");
    fs::write(&bpf, [0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]).unwrap();
    cx.chown_caller(&bpf);
    let prelude = format!("exec 5<{}", path_str(&bpf));
    for twice in [["--seccomp-fd", "5"], ["--json-status", "5"]] {
        let out = cx
            .ljspawn()
            .prelude(&prelude)
            .args(twice)
            .args([
                "--pass-fd",
                "5",
                "--root",
                &cx.world_str(),
                "--",
                "/bin/sh",
                "-c",
                "ls -l /proc/self/fd/5; echo RAN",
            ])
            .run();
        let out = out.expect_ljspawn_error(2);
        assert!(out.stderr.contains("fd 5 is given to both"), "{}", out.report());
        assert!(!out.stdout.contains("RAN"), "{}", out.report());
    }
    // Control: each alone works (the filter is installed; the fd is passed).
    let out = cx
        .ljspawn()
        .prelude(&prelude)
        .args(["--seccomp-fd", "5", "--root", &cx.world_str(), "--", "/bin/echo", "RAN"])
        .run()
        .ok();
    assert_eq!(out.stdout, "RAN\n");
    let out = cx
        .ljspawn()
        .prelude(&prelude)
        .args(["--pass-fd", "5", "--root", &cx.world_str(), "--", "/bin/sh", "-c", "cat <&5 | wc -c"])
        .run()
        .ok();
    assert_eq!(out.stdout.trim(), "8");
}

// ---------------------------------------------------------------- 9. keys and /proc

/// Adds a user key described argv[1] to the session keyring, then execs argv[2:].
const WITH_KEY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_add_key, KEY_SPEC_SESSION_KEYRING = 248, -3
r = libc.syscall(ctypes.c_long(SYS_add_key), b"user", sys.argv[1].encode(), b"secret", ctypes.c_long(6),
                 ctypes.c_long(KEY_SPEC_SESSION_KEYRING))
if r < 0:
    sys.exit("add_key: errno %d" % ctypes.get_errno())
os.execv(sys.argv[2], sys.argv[2:])
"#;

/// The caller's keys (one added to its session keyring just before ljspawn) are not listed in
/// the jail's /proc/keys, nor counted in /proc/key-users; the program has a session keyring of
/// its own; in root mode, root-only kernel files (slabinfo, vmallocinfo, timer_list, kcore)
/// give nothing (masked: opening them fails). Control: the same key shows in /proc/keys outside a jail.
fn keys_and_root_only_proc_files_hidden(cx: &Ctx) {
    let py = "/usr/bin/python3";
    if !Path::new(py).is_file() {
        return cx.skip("python3 missing");
    }
    let desc = format!("lj-h10-key-{}", std::process::id());
    let ctl = cx.command([py, "-I", "-S", "-c", WITH_KEY, &desc, "/bin/cat", "/proc/keys"]).output().unwrap();
    let ctl_out = String::from_utf8_lossy(&ctl.stdout);
    if !ctl.status.success() {
        return cx.skip(&format!("cannot add a key here: {}", String::from_utf8_lossy(&ctl.stderr)));
    }
    assert!(ctl_out.contains(&desc), "control: the key is not in /proc/keys: {ctl_out}");
    let root_only = ["/proc/slabinfo", "/proc/vmallocinfo", "/proc/timer_list"];
    let script = format!(
        "cat /proc/keys 2>/dev/null; echo KEYS-END; cat /proc/key-users 2>/dev/null | wc -c; \
         for f in {}; do [ -e $f ] && cat $f 2>/dev/null | wc -c; done; echo END",
        root_only.join(" ")
    );
    let out = cx
        .ljspawn()
        .wrapper([py, "-I", "-S", "-c", WITH_KEY, &desc])
        .args(["--root", "/", "--", "/bin/sh", "-c", &script])
        .run();
    let out = out.ok();
    assert!(!out.stdout.contains(&desc), "the caller's key shows in the jail\n{}", out.report());
    let lines = out.lines();
    let after: Vec<&String> = lines.iter().skip_while(|l| *l != "KEYS-END").skip(1).collect();
    assert!(lines.first().is_some_and(|l| l == "KEYS-END"), "/proc/keys is not empty\n{}", out.report());
    // key-users, then (root mode) each root-only file: all empty.
    if cx.mode == lj_tests::Mode::Root {
        assert!(after.iter().take_while(|l| **l != "END").all(|l| l.trim() == "0"), "{}", out.report());
    } else {
        assert_eq!(after.first().map(|l| l.trim()), Some("0"), "{}", out.report());
    }
}
