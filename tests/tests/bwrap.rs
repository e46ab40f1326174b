//! ljspawn's bwrap form (issue 14, item 1): invoked as `bwrap` (a link so named) or with a first
//! argument `--bwrap`, it takes bubblewrap's command line with bubblewrap's semantics. Each test
//! runs in root, rootless and setuid modes. bubblewrap's own suite is the yardstick; none of it
//! is copied here. Test names are `bwrap::<what>::<mode>`. Needs `tests/prepare.sh` (as root).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use lj_tests::{ns_inode, path_str, run_with_timeout, Ctx, Mode, DEFAULT_TIMEOUT};

/// How long a test waits for what a sandbox does, or for it to be gone: seconds on a loaded
/// machine (a deadline, not a timing check).
const UP: std::time::Duration = std::time::Duration::from_secs(30);

mod bwrap {
    lj_tests::mode_tests! {
        prefix = "bwrap::", run = lj_tests::run_ctx;
        host_program_env_and_cwd: root rootless setuid;
        invoked_as_bwrap: root rootless setuid;
        nothing_unshared_unless_asked: root rootless setuid;
        exit_codes_and_messages: root rootless setuid;
        operations_in_order: root rootless setuid;
        environment_options: root rootless setuid;
        root_bind_and_remount: root rootless setuid;
        args_from_a_descriptor: root rootless setuid;
        setuid_gives_nothing_more: rootless setuid;
        fd_options: root rootless setuid;
        chmod_argv0_mqueue_mount_points: root rootless setuid;
        ids_and_proc_masks: root rootless setuid;
        overlays: root rootless setuid;
        as_pid_1_and_block_fd: root rootless setuid;
        stacked_seccomp_programs: root rootless setuid;
        console_on_a_terminal: root rootless setuid;
        nested_through_proc_self_exe: root rootless setuid;
        userns_block_fd: root rootless setuid;
        join_user_namespaces: root rootless setuid;
        join_a_pid_namespace: root rootless setuid;
        pidns_under_an_ancestors_proc: root rootless;
        later_bind_onto_root: root rootless setuid;
        dev_core_and_json_status: root rootless setuid;
        dir_and_file_modes: root rootless setuid;
        capabilities_in_order: root rootless setuid;
        seccomp_stacking_and_bad_programs: root rootless setuid;
        messages_in_bwraps_words: root rootless setuid;
        overlay_names_with_escapes: root rootless setuid;
        try_binds_fd_bind_and_namespaces: root rootless setuid;
        sync_fd_session_and_userns_rules: root rootless setuid;
        dies_with_its_parent: root rootless setuid;
        lock_file_held: root rootless setuid;
        failures_word_for_word: root rootless setuid;
    }
}

/// Runs `args` (after `--bwrap`) through ljspawn and, where this mode has one (not setuid:
/// Debian's bwrap is not installed setuid), through the host's bwrap: (ours, theirs).
fn with_bwrap(cx: &Ctx, prelude: &str, args: &[&str]) -> (lj_tests::Output, Option<lj_tests::Output>) {
    let ours = cx.ljspawn().prelude(prelude).arg("--bwrap").args(args).run();
    let theirs = match lj_tests::which("bwrap") {
        Some(b) if cx.mode != Mode::Setuid => {
            let mut argv = vec!["/bin/sh".to_string(), "-c".into(), format!("{prelude}\nexec \"$0\" \"$@\"")];
            argv.push(path_str(&b));
            argv.extend(args.iter().map(|s| s.to_string()));
            Some(run_with_timeout(cx.command(&argv), None, DEFAULT_TIMEOUT).expect("run bwrap"))
        }
        _ => None,
    };
    (ours, theirs)
}

/// The same lines from ljspawn's bwrap form and (where there is one) from bwrap itself.
fn same_as_bwrap(cx: &Ctx, prelude: &str, args: &[&str], want: &[&str]) {
    let (ours, theirs) = with_bwrap(cx, prelude, args);
    let ours = ours.ok();
    assert_eq!(ours.lines(), want, "{}", ours.report());
    match theirs {
        // Debian's bwrap 0.8.0 predates some options (--argv0, the overlays).
        Some(t) if t.stderr.contains("Unknown option") => {
            eprintln!("note: this bwrap cannot compare: {}", t.stderr.trim_end());
        }
        Some(t) => assert_eq!(t.lines(), want, "bwrap itself differs\n{}", t.report()),
        None => {}
    }
}

/// bwrap's usual host sandbox: /usr read-only, the usr-merge links, /proc and /dev.
const HOST: [&str; 16] = [
    "--bwrap",
    "--ro-bind",
    "/usr",
    "/usr",
    "--symlink",
    "usr/bin",
    "/bin",
    "--symlink",
    "usr/lib",
    "/lib",
    "--symlink",
    "usr/lib64",
    "/lib64",
    "--proc",
    "/proc",
    "--dev",
];

fn host<'a>(cx: &'a Ctx) -> lj_tests::Cmd<'a> {
    cx.ljspawn().args(HOST).arg("/dev")
}

/// The caller's environment and directory are kept (bwrap does not clean either).
fn host_program_env_and_cwd(cx: &Ctx) {
    let here = path_str(&cx.dir);
    let out = host(cx)
        .prelude("export LJ_PROBE='a b'")
        .args([
            "--bind",
            &here,
            &here,
            "--",
            "sh",
            "-c",
            "echo \"$LJ_PROBE\"; pwd; test -c /dev/null && echo dev",
        ])
        .run()
        .ok();
    assert_eq!(out.lines(), ["a b", here.as_str(), "dev"], "{}", out.report());
    // Without the directory in the sandbox: /.
    let out = host(cx).args(["--", "pwd"]).run().ok();
    assert_eq!(out.lines(), ["/"], "{}", out.report());
    // PWD names the directory the program starts in, as bwrap sets it: the caller's (whatever
    // PWD the caller had), or --chdir's.
    let out = host(cx)
        .prelude(&format!("cd {here}; export PWD=/elsewhere"))
        .args(["--bind", &here, &here, "--", "printenv", "PWD"])
        .run()
        .ok();
    assert_eq!(out.lines(), [here.as_str()], "{}", out.report());
    let out = host(cx).args(["--chdir", "/usr", "--clearenv", "--", "/usr/bin/printenv", "PWD"]).run().ok();
    assert_eq!(out.lines(), ["/usr"], "{}", out.report());
    // The caller's directory not in the sandbox: the program's HOME if the sandbox has it (as
    // --setenv and --clearenv left it), else /; PWD names it (printenv: a shell would put its
    // own PWD right).
    let probe = ["--", "/bin/sh", "-c", "pwd; /usr/bin/printenv PWD"];
    for (prelude, args, want) in [
        ("export HOME=/usr/lib", &[][..], "/usr/lib"),
        ("export HOME=/nonexistent", &[], "/"),
        ("unset HOME", &[], "/"),
        ("export HOME=/nonexistent", &["--setenv", "HOME", "/usr/bin"], "/usr/bin"),
        ("export HOME=/usr/lib", &["--clearenv"], "/"),
    ] {
        let out = host(cx).prelude(prelude).args(args).args(probe).run().ok();
        assert_eq!(out.lines(), [want, want], "{prelude}\n{}", out.report());
    }
    // The caller's directory comes first when the sandbox has it.
    let out = host(cx)
        .prelude(&format!("cd {here}; export HOME=/usr/lib"))
        .args(["--bind", &here, &here])
        .args(probe)
        .run()
        .ok();
    assert_eq!(out.lines(), [here.as_str(), here.as_str()], "{}", out.report());
}

/// A link named `bwrap` takes bwrap's command line; `usage:` names argv[0]; `--version`.
fn invoked_as_bwrap(cx: &Ctx) {
    let d = cx.tempdir();
    let link = d.join("bwrap");
    symlink(&cx.bin, &link).expect("ln -s ljspawn bwrap");
    let run = |args: &[&str]| {
        let mut argv = vec![path_str(&link)];
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = run_with_timeout(cx.command(&argv), None, DEFAULT_TIMEOUT).expect("run bwrap link");
        (out.status(), out.stdout, out.stderr)
    };
    let (code, _, err) = run(&[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim_end(), format!("usage: {} [OPTIONS...] [--] COMMAND [ARGS...]", path_str(&link)));
    let (code, out, _) = run(&["--version"]);
    assert!(code == 0 && out.starts_with("bubblewrap "), "{out}");
    let (code, out, err) = run(&[
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/lib",
        "/lib",
        "--",
        "sh",
        "-c",
        "echo in; exit 7",
    ]);
    assert_eq!((code, out.as_str()), (7, "in\n"), "{err}");
}

/// Network and host name are the host's unless `--unshare-net` / `--hostname`; the other
/// namespaces are always new (a documented difference).
fn nothing_unshared_unless_asked(cx: &Ctx) {
    let link = fs::read_link("/proc/self/ns/net").expect("readlink /proc/self/ns/net");
    let host_net = ns_inode(&path_str(&link)).expect("host net ns");
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let probe = "stat -L -c %i /proc/self/ns/net; hostname";
    let out = host(cx).args(["--", "sh", "-c", probe]).run().ok();
    assert_eq!(out.lines(), [host_net.to_string(), host_name.clone()], "{}", out.report());
    let out = host(cx).args(["--unshare-net", "--hostname", "box", "--", "sh", "-c", probe]).run().ok();
    let lines = out.lines();
    assert!(lines[0] != host_net.to_string() && lines[1] == "box", "{}", out.report());
    let out = host(cx).args(["--unshare-all", "--share-net", "--", "sh", "-c", probe]).run().ok();
    assert_eq!(out.lines()[0], host_net.to_string(), "{}", out.report());
}

/// bwrap's exit status: the program's, 1 for bwrap's own failures with `bwrap: ` lines.
fn exit_codes_and_messages(cx: &Ctx) {
    let out = host(cx).args(["--", "sh", "-c", "exit 42"]).run().expect_status(42);
    assert!(out.stderr.is_empty(), "{}", out.report());
    let one = |args: &[&str], want: &str| {
        let out = host(cx).args(args).run().expect_status(1);
        assert!(
            out.stderr.starts_with("bwrap: ") && out.stderr.contains(want),
            "want {want:?}\n{}",
            out.report()
        );
    };
    one(&["--", "no-such-program"], "no-such-program");
    one(&["--frobnicate", "true"], "Unknown option --frobnicate");
    one(&["--exec-label", "x", "true"], "--exec-label is not supported");
    one(&["--bind", "/nonexistent-src", "/x", "true"], "/nonexistent-src");
    one(&["--dir"], "--dir takes an argument");
}

/// Operations act in order on the tmpfs root: --perms, --dir, --file, --symlink, --tmpfs with
/// --size, --bind-try with a missing source, --chdir (last one wins, with bwrap's warning).
fn operations_in_order(cx: &Ctx) {
    let src = cx.tempdir();
    cx.write_caller_file(&src.join("c"), "content\n");
    let script = "stat -c %a /a; cat /a/f; readlink /l; stat -c %a /t; stat -f -c '%b*%S' /t; \
                  test -e /n || echo no-n; pwd";
    let out = host(cx)
        .prelude(&format!("exec 7<{}", path_str(&src.join("c"))))
        .args(["--perms", "0700", "--dir", "/a", "--file", "7", "/a/f", "--symlink", "/a/f", "/l"])
        .args([
            "--perms",
            "0750",
            "--size",
            "1048576",
            "--tmpfs",
            "/t",
            "--ro-bind-try",
            "/nonexistent-src",
            "/n",
        ])
        .args(["--chdir", "/usr", "--chdir", "/a", "--", "sh", "-c", script])
        .run()
        .ok();
    assert_eq!(out.lines(), ["700", "content", "/a/f", "750", "256*4096", "no-n", "/a"], "{}", out.report());
    assert!(out.stderr.contains("bwrap: Only the last --chdir option will take effect"), "{}", out.report());
}

/// `--clearenv` leaves only PWD; `--setenv` and `--unsetenv` in order.
fn environment_options(cx: &Ctx) {
    let out = host(cx)
        .prelude("export KEEP=1 DROP=2")
        .args(["--unsetenv", "DROP", "--setenv", "NEW", "x y", "--", "sh", "-c", "echo $KEEP-$DROP-$NEW"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["1--x y"], "{}", out.report());
    let out = host(cx)
        .prelude("export KEEP=1")
        .args(["--clearenv", "--setenv", "ONLY", "1", "--", "/usr/bin/env"])
        .run()
        .ok();
    let mut names: Vec<String> =
        out.lines().iter().map(|l| l.split('=').next().unwrap().to_string()).collect();
    names.sort();
    names.retain(|n| n != "PWD");
    assert_eq!(names, ["ONLY"], "{}", out.report());
    // A variable that is not UTF-8 reaches the program as it came (bwrap's does); --unsetenv
    // and --clearenv take it away like any other.
    let bad = "export XBAD=\"$(printf 'a\\377')\"";
    let show = ["sh", "-c", "printenv XBAD | od -An -tx1"];
    let out = host(cx).prelude(bad).arg("--").args(show).run().ok();
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["61", "ff", "0a"], "{}", out.report());
    for opt in ["--unsetenv XBAD", "--clearenv"] {
        let out = host(cx).prelude(bad).args(opt.split(' ')).arg("--").args(show).run().ok();
        assert_eq!(out.stdout.trim(), "", "{opt}: {}", out.report());
    }
}

/// `--ro-bind / /` makes the host's tree the (read-only) root; `--remount-ro` a bind.
fn root_bind_and_remount(cx: &Ctx) {
    let out = cx
        .ljspawn()
        .args([
            "--bwrap",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--",
            "sh",
            "-c",
            "test -d /etc && echo etc; touch /x 2>/dev/null || echo ro",
        ])
        .run()
        .ok();
    assert_eq!(out.lines(), ["etc", "ro"], "{}", out.report());
    let d = cx.tempdir();
    cx.write_caller_file(&d.join("f"), "x");
    let out = host(cx)
        .args([
            "--bind",
            &d.str(),
            "/w",
            "--remount-ro",
            "/w",
            "--",
            "sh",
            "-c",
            "echo y > /w/f 2>/dev/null || echo ro; cat /w/f",
        ])
        .run()
        .ok();
    assert_eq!(out.lines(), ["ro", "x"], "{}", out.report());
}

/// `--args FD`: NUL-separated options read from a descriptor (flatpak passes its whole
/// command line so), spliced in where `--args` stood.
fn args_from_a_descriptor(cx: &Ctx) {
    let d = cx.tempdir();
    let file = d.join("args");
    fs::write(&file, b"--setenv\0FROM_FD\0yes\0--dir\0/made\0").unwrap();
    cx.chown_caller(&file);
    let out = host(cx)
        .prelude(&format!("exec 5<{}", path_str(&file)))
        .args(["--args", "5", "--", "sh", "-c", "echo $FROM_FD; test -d /made && echo made"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["yes", "made"], "{}", out.report());
}

/// What rootless would not give, setuid bwrap does not either: host root's files stay root's
/// (unreadable `/etc/shadow` through `--ro-bind / /`), no capability over the host, no
/// `--seccomp`-less run.
fn setuid_gives_nothing_more(cx: &Ctx) {
    assert!(cx.mode != Mode::Root);
    if !Path::new("/etc/shadow").exists() {
        cx.skip("no /etc/shadow");
        return;
    }
    let out = cx
        .ljspawn()
        .args(["--bwrap", "--ro-bind", "/", "/", "--proc", "/proc", "--", "sh", "-c"])
        .arg("cat /etc/shadow >/dev/null 2>&1 && echo READ; grep CapEff /proc/self/status; id -u")
        .run()
        .ok();
    let lines = out.lines();
    assert!(!lines.contains(&"READ".to_string()), "{}", out.report());
    assert!(lines.contains(&"CapEff:\t0000000000000000".to_string()), "{}", out.report());
    // Writing as the caller to a file the caller may not write: refused.
    let out = cx
        .ljspawn()
        .args([
            "--bwrap",
            "--bind",
            "/etc",
            "/etc",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
        ])
        .args(["--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--", "sh", "-c"])
        .arg("echo x >> /etc/passwd 2>/dev/null && echo WROTE; true")
        .run()
        .ok();
    assert!(!out.stdout.contains("WROTE"), "{}", out.report());
}

/// `--ro-bind-fd`, `--bind-data`/`--ro-bind-data` (with `--perms`), `--lock-file` and
/// `--info-fd` (bwrap's JSON object with the child pid, then end-of-file while the program
/// still runs), as flatpak uses them.
fn fd_options(cx: &Ctx) {
    let d = cx.tempdir();
    fs::create_dir(d.join("tree")).unwrap();
    cx.write_caller_file(&d.join("tree/inside"), "tree\n");
    cx.chown_caller(&d.join("tree"));
    cx.write_caller_file(&d.join("data"), "data\n");
    let script =
        "cat /t/inside; cat /etc/data; stat -c %a /etc/data; echo x > /etc/data 2>/dev/null || echo ro; \
                  cat /rw; test -e /t/.ref && echo locked";
    fs::write(d.join("tree/.ref"), "").unwrap();
    cx.chown_caller(&d.join("tree/.ref"));
    let out = host(cx)
        .prelude(&format!(
            "exec 5<{t} 6<{f} 7<{f} 8>{i}",
            t = path_str(&d.join("tree")),
            f = path_str(&d.join("data")),
            i = path_str(&d.join("info"))
        ))
        .args([
            "--ro-bind-fd",
            "5",
            "/t",
            "--lock-file",
            "/t/.ref",
            "--perms",
            "0640",
            "--ro-bind-data",
            "6",
            "/etc/data",
        ])
        .args(["--bind-data", "7", "/rw", "--info-fd", "8", "--", "sh", "-c", script])
        .run()
        .ok();
    assert_eq!(out.lines(), ["tree", "data", "640", "ro", "data", "locked"], "{}", out.report());
    let info = fs::read_to_string(d.join("info")).unwrap();
    // bwrap's shape: one key a line (scripts grep the child-pid line for its number).
    let lines: Vec<&str> = info.lines().collect();
    let keys = &lines[1..lines.len().saturating_sub(1).max(1)];
    assert!(
        lines.len() > 2
            && lines[0] == "{"
            && lines[lines.len() - 1] == "}"
            && lines[1].starts_with("    \"child-pid\": ")
            && lines[1].trim_end_matches(',').rsplit(' ').next().is_some_and(|p| p.parse::<u32>().is_ok())
            && keys.iter().all(|l| l.starts_with("    \"") && l.matches(": ").count() == 1),
        "info-fd wrote {info:?}"
    );
    // --info-fd reaches end-of-file while the program runs (flatpak reads it to the end).
    let out = host(cx)
        .args(["--info-fd", "8", "--", "sleep", "3"])
        .wrapper([
            "sh",
            "-c",
            "s=$(date +%s); \"$@\" 8>&1 >/dev/null | { cat >/dev/null; echo eof $(($(date +%s) - s)); }",
            "sh",
        ])
        .run()
        .ok();
    let secs: u64 = out.stdout.trim().strip_prefix("eof ").and_then(|s| s.parse().ok()).unwrap_or(99);
    assert!(secs < 2, "no end-of-file on --info-fd while the program ran\n{}", out.report());
}

/// `--chmod` after `--dir`, `--argv0`, `--mqueue`, and the mount points bwrap makes: 0755
/// directories and 0444 files (seen on the host, in a bound directory of the caller's).
fn chmod_argv0_mqueue_mount_points(cx: &Ctx) {
    let d = cx.tempdir();
    fs::create_dir(d.join("mp")).unwrap();
    cx.chown_caller(&d.join("mp"));
    cx.write_caller_file(&d.join("f"), "f\n");
    let (mp, f) = (path_str(&d.join("mp")), path_str(&d.join("f")));
    let (newdir, newfile) = (format!("{mp}/newdir"), format!("{mp}/newfile"));
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--bind", &mp, &mp, "--bind", &mp, &newdir, "--bind", &f, &newfile]);
    args.extend(["--dir", "/d", "--chmod", "1751", "/d", "--mqueue", "/dev/mqueue", "--argv0", "right"]);
    let script = format!("echo $0; stat -c %a /d; stat -f -c %T /dev/mqueue; cat {newfile}");
    let args_with_file: Vec<&str> = args.iter().copied().chain(["sh", "-c", &script]).collect();
    for run in 0..2 {
        let (ours, theirs) = with_bwrap(cx, "", &args_with_file);
        let out = match theirs {
            _ if run == 0 => ours,
            Some(t) if !t.stderr.contains("Unknown option") => t,
            // Debian's bwrap 0.8.0 has no --argv0: no comparison.
            _ => break,
        };
        assert_eq!(out.lines(), ["right", "1751", "mqueue", "f"], "{}", out.report());
        let mode = |p: &str| {
            fs::metadata(p).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        };
        assert_eq!((mode(&newdir).ok(), mode(&newfile).ok()), (Some(0o755), Some(0o444)), "{}", out.report());
        fs::remove_dir(&newdir).unwrap();
        fs::remove_file(&newfile).unwrap();
    }
    // --chmod of what does not exist fails; setuid and setgid bits are never given.
    for (mode, path) in [("755", "/none"), ("4755", "/d")] {
        let out = host(cx).args(["--dir", "/d", "--chmod", mode, path, "true"]).run().expect_status(1);
        assert!(out.stderr.starts_with("bwrap: "), "{}", out.report());
    }
}

/// `--gid` alone keeps the caller's uid (it once made it 0), `--uid` alone the caller's gid;
/// `--proc` gets ljspawn's masks (bwrap has none: a documented difference).
fn ids_and_proc_masks(cx: &Ctx) {
    let (uid, gid) = (cx.caller_uid.to_string(), cx.caller_gid.to_string());
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--unshare-user", "--gid", "7", "sh", "-c", "id -u; id -g"]);
    same_as_bwrap(cx, "", &args, &[&uid, "7"]);
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--unshare-user", "--uid", "5", "sh", "-c", "id -u; id -g"]);
    same_as_bwrap(cx, "", &args, &["5", &gid]);
    let out = host(cx).args(["--", "sh", "-c", "cat /proc/keys >/dev/null 2>&1 || echo masked"]).run().ok();
    assert_eq!(out.lines(), ["masked"], "{}", out.report());
}

/// `--overlay-src` (bottom first, the last on top) with `--overlay RWSRC WORKDIR`,
/// `--tmp-overlay` and `--ro-overlay`, on directories of the caller's; in setuid mode too (the
/// overlay is mounted inside the jail's user namespace, as rootless mounts it).
fn overlays(cx: &Ctx) {
    let d = cx.tempdir();
    for dir in ["l1", "l2", "up", "wk"] {
        fs::create_dir(d.join(dir)).unwrap();
        cx.chown_caller(&d.join(dir));
    }
    cx.write_caller_file(&d.join("l1/a"), "1");
    cx.write_caller_file(&d.join("l1/b"), "1");
    cx.write_caller_file(&d.join("l2/b"), "2");
    let p = |n: &str| path_str(&d.join(n));
    let (l1, l2, up, wk) = (p("l1"), p("l2"), p("up"), p("wk"));
    let script = "cat /o/a /o/b; echo; touch /o/c 2>/dev/null || echo ro; echo t > /t/b; cat /t/b; \
                  printf 5 > /w/b; cat /w/b; echo; cat /w/a";
    let out = host(cx)
        .args(["--overlay-src", &l1, "--overlay-src", &l2, "--ro-overlay", "/o"])
        .args(["--overlay-src", &l1, "--tmp-overlay", "/t"])
        .args(["--overlay-src", &l1, "--overlay-src", &l2, "--overlay", &up, &wk, "/w"])
        .args(["--", "sh", "-c", script])
        .run()
        .ok();
    assert_eq!(out.lines(), ["12", "ro", "t", "5", "1"], "{}", out.report());
    // Writes went to the upper directory only; the lower ones are untouched.
    assert_eq!(fs::read_to_string(d.join("up/b")).ok().as_deref(), Some("5"), "{}", out.report());
    assert_eq!(fs::read_to_string(d.join("l1/b")).unwrap(), "1");
    assert_eq!(fs::read_to_string(d.join("l2/b")).unwrap(), "2");
    assert!(!d.join("up/a").exists() && !d.join("l1/c").exists());
    // A lower directory the caller may not read is not a way in.
    if let Some((_t, secret)) = (cx.mode != Mode::Root).then(|| cx.root_only_file("secret\n")).flatten() {
        let dir = path_str(secret.parent().unwrap());
        let out = host(cx)
            .args([
                "--overlay-src",
                &dir,
                "--tmp-overlay",
                "/s",
                "--",
                "sh",
                "-c",
                "cat /s/* 2>/dev/null; true",
            ])
            .run();
        assert!(!out.stdout.contains("secret"), "{}", out.report());
    }
    let one = |args: &[&str], want: &str| {
        let out = host(cx).args(args).run().expect_status(1);
        assert!(out.stderr.starts_with("bwrap: ") && out.stderr.contains(want), "{}", out.report());
    };
    one(
        &["--overlay-src", &l1, "--ro-overlay", "/o", "true"],
        "--ro-overlay requires at least two --overlay-src",
    );
    one(&["--tmp-overlay", "/o", "true"], "--tmp-overlay requires at least one --overlay-src");
    one(&["--overlay-src", &l1, "true"], "--overlay-src must be followed by");
}

/// `--as-pid-1`: the program is PID 1 (no ljspawn init), and its exit status is returned;
/// `--block-fd`: the program starts only once the caller writes to the descriptor.
fn as_pid_1_and_block_fd(cx: &Ctx) {
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--unshare-pid", "--as-pid-1", "sh", "-c", "echo $$; cat /proc/1/comm"]);
    same_as_bwrap(cx, "", &args, &["1", "sh"]);
    let out =
        host(cx).args(["--unshare-pid", "--as-pid-1", "--", "sh", "-c", "exit 9"]).run().expect_status(9);
    assert!(out.stderr.is_empty(), "{}", out.report());
    // --block-fd: wait until the jail is set up (--info-fd), check that the program has not
    // run, then let it go.
    let d = cx.tempdir();
    let o = path_str(&d.join("ran"));
    let script = format!(
        "mkfifo {d}/fifo; exec 3<>{d}/fifo; \
         \"$@\" 8>{d}/info & pid=$!; \
         for i in $(seq 300); do grep -q child-pid {d}/info 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done; \
         sleep 0.5; test -e {o} && echo early; echo go >&3; wait $pid; echo status $?",
        d = d.str()
    );
    let out = host(cx)
        .args(["--bind", &d.str(), &d.str(), "--info-fd", "8", "--block-fd", "3", "--"])
        .args(["sh", "-c", &format!("echo ran > {o}")])
        .wrapper(["sh", "-c", &script, "sh"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["status 0"], "{}", out.report());
    assert_eq!(fs::read_to_string(&o).unwrap(), "ran\n");
}

/// A seccomp program of one rule on x86_64: syscall `nr` fails with EPERM.
fn deny_bpf(nr: u32) -> Vec<u8> {
    const LD_ABS: u16 = 0x20;
    const JEQ: u16 = 0x15;
    const RET: u16 = 0x06;
    let prog: [(u16, u8, u8, u32); 6] = [
        (LD_ABS, 0, 0, 4),        // arch
        (JEQ, 0, 3, 0xc000_003e), // AUDIT_ARCH_X86_64, else allow
        (LD_ABS, 0, 0, 0),        // nr
        (JEQ, 0, 1, nr),
        (RET, 0, 0, 0x0005_0001), // SECCOMP_RET_ERRNO | EPERM
        (RET, 0, 0, 0x7fff_0000), // SECCOMP_RET_ALLOW
    ];
    prog.iter()
        .flat_map(|&(code, jt, jf, k)| {
            let mut v = code.to_le_bytes().to_vec();
            v.extend([jt, jf]);
            v.extend(k.to_le_bytes());
            v
        })
        .collect()
}

/// `--add-seccomp-fd` repeated: every program applies (on top of ljspawn's own filter);
/// `--seccomp` with `--add-seccomp-fd` is refused with bwrap's message.
fn stacked_seccomp_programs(cx: &Ctx) {
    if !cfg!(target_arch = "x86_64") || !Path::new("/usr/bin/python3").exists() {
        cx.skip("needs x86_64 and /usr/bin/python3");
        return;
    }
    let d = cx.tempdir();
    // uname (63) and getpriority (140).
    for (name, nr) in [("a.bpf", 63), ("b.bpf", 140)] {
        fs::write(d.join(name), deny_bpf(nr)).unwrap();
        cx.chown_caller(&d.join(name));
    }
    let prelude = format!("exec 5<{0}/a.bpf 6<{0}/b.bpf", d.str());
    let py = "import os\nfor f in (os.uname, lambda: os.getpriority(os.PRIO_PROCESS, 0)):\n  \
              try: f(); print('ok')\n  except OSError as e: print(e.errno)";
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend([
        "/dev",
        "--add-seccomp-fd",
        "5",
        "--add-seccomp-fd",
        "6",
        "/usr/bin/python3",
        "-I",
        "-S",
        "-c",
        py,
    ]);
    same_as_bwrap(cx, &prelude, &args, &["1", "1"]);
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--add-seccomp-fd", "6", "/usr/bin/python3", "-I", "-S", "-c", py]);
    same_as_bwrap(cx, &prelude, &args, &["ok", "1"]);
    // --seccomp FD alone: that one program.
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--seccomp", "5", "/usr/bin/python3", "-I", "-S", "-c", py]);
    same_as_bwrap(cx, &prelude, &args, &["1", "ok"]);
    let out = host(cx).prelude(&prelude).args(["--seccomp", "5", "--add-seccomp-fd", "6", "true"]).run();
    let out = out.expect_status(1);
    assert!(out.stderr.contains("--add-seccomp-fd cannot be combined with --seccomp"), "{}", out.report());
}

/// `--dev` on a terminal: `/dev/console` is the terminal on stdout (bwrap's way to make
/// ttyname() work): the jail's own pty when stdin is a terminal too, else the caller's
/// terminal, as bwrap binds it. Without a terminal there is none.
fn console_on_a_terminal(cx: &Ctx) {
    let probe = "test -c /dev/console && echo console; \
                 f=%d:%i:%t:%T; test \"$(stat -c $f /dev/console)\" = \"$(stat -L -c $f /proc/$$/fd/1)\" && echo same; \
                 echo end";
    let theirs = (cx.mode != Mode::Setuid).then(|| lj_tests::which("bwrap")).flatten();
    // ljspawn's bwrap form, then bwrap itself (run in its place by the wrapper).
    let progs: Vec<Option<String>> =
        std::iter::once(None).chain(theirs.map(|b| Some(path_str(&b)))).collect();
    for prog in &progs {
        // stdin a terminal (ljspawn: the jail's pty), then not (the caller's terminal).
        for stdin in ["", "</dev/null"] {
            let mut p = match lj_tests::Pty::open() {
                Ok(p) => p,
                Err(e) => return cx.skip(&format!("cannot open a pty pair: {e}")),
            };
            p.give_to(cx.caller_uid);
            let exec = match prog {
                Some(b) => format!("shift 2; exec {b} \"$@\" {stdin}"),
                None => format!("exec \"$@\" {stdin}"),
            };
            let mut child =
                host(cx).args(["--", "sh", "-c", probe]).wrapper(["sh", "-c", &exec, "sh"]).start_on_pty(&p);
            let limit = std::time::Duration::from_secs(20);
            assert!(p.expect("end", limit), "{}: {}", child.command, p.output);
            assert_eq!(child.wait(limit), Some(0), "{}: {}", child.command, p.output);
            let lines: Vec<&str> = p.output.lines().map(|l| l.trim_end_matches('\r')).collect();
            assert_eq!(lines, ["console", "same", "end"], "{}: {:?}", child.command, p.output);
        }
    }
    let out = host(cx).args(["--", "sh", "-c", "test -e /dev/console || echo none"]).run().ok();
    assert_eq!(out.lines(), ["none"], "{}", out.report());
}

/// A sandbox that runs `/proc/self/exe` with bwrap's options runs ljspawn's bwrap form again
/// (bwrap's own way to nest, used by its test suite); `--disable-userns` forbids it.
fn nested_through_proc_self_exe(cx: &Ctx) {
    let outer = ["--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "ALL", "--bind", "/", "/"];
    let mut args: Vec<&str> = outer.to_vec();
    args.extend(["--bind", "/proc", "/proc", "--", "/proc/self/exe", "--unshare-all", "--bind", "/", "/"]);
    args.extend(["--bind", "/proc", "/proc", "echo", "hello"]);
    same_as_bwrap(cx, "", &args, &["hello"]);
    // The inner one really is a sandbox of its own: its own host name, PID namespace and /proc.
    let mut args: Vec<&str> = outer.to_vec();
    args.extend(["--bind", "/proc", "/proc", "--", "/proc/self/exe", "--unshare-all", "--hostname", "inner"]);
    args.extend(["--ro-bind", "/", "/", "--proc", "/proc", "sh", "-c", "hostname; echo $$"]);
    same_as_bwrap(cx, "", &args, &["inner", "2"]);
    let mut args: Vec<&str> = outer.to_vec();
    args.extend(["--disable-userns", "--bind", "/proc", "/proc", "--", "/proc/self/exe", "--unshare-all"]);
    args.extend(["--bind", "/", "/", "echo", "hello"]);
    let out = cx.ljspawn().arg("--bwrap").args(&args).run();
    assert!(out.status() != 0 && !out.stdout.contains("hello"), "{}", out.report());
    // bwrap's own "can pivot to new rootfs recursively": the inner sandbox makes its own /proc
    // and /dev, and its stdin is the host's /dev/null, seen through the outer `--bind / /`
    // (nodev). Rootless and setuid the inner root is the caller, who cannot chmod host root's
    // node: it is passed as it is. Root: the inner root is host root, and the node cannot be
    // reopened from the inner /dev (nodev): refused (README, the bwrap form's differences).
    let mut args: Vec<&str> = outer.to_vec();
    args.extend(["--bind", "/proc", "/proc", "--", "/proc/self/exe", "--unshare-all"]);
    args.extend(&HOST[1..]);
    args.extend(["/dev", "sh", "-c", "test -c /dev/null && test -c /proc/self/fd/0 && echo ok"]);
    if cx.mode == Mode::Root {
        let out = cx.ljspawn().arg("--bwrap").args(&args).run().expect_status(1);
        assert_eq!(
            out.stderr.trim_end(),
            "bwrap: cannot open the jail's /dev/null for fd 0: permission denied",
            "{}",
            out.report()
        );
    } else {
        same_as_bwrap(cx, "", &args, &["ok"]);
    }
}

/// `--userns-block-fd`: ljspawn writes no id maps; the caller writes them once `--info-fd`
/// has the pid, then lets the jail go on. Refused in setuid mode (there ljspawn writes the
/// maps of a namespace its privileged side made).
fn userns_block_fd(cx: &Ctx) {
    let d = cx.tempdir();
    let script = format!(
        "mkfifo {d}/fifo; exec 9<>{d}/fifo; \"$@\" 8>{d}/info & bg=$!; \
         for i in $(seq 300); do grep -q child-pid {d}/info 2>/dev/null && break; kill -0 $bg 2>/dev/null || break; sleep 0.1; done; \
         pid=$(grep -o '\"child-pid\": *[0-9]*' {d}/info | grep -o '[0-9]*$'); \
         echo deny > /proc/$pid/setgroups; echo \"0 $(id -g) 1\" > /proc/$pid/gid_map; \
         echo \"0 $(id -u) 1\" > /proc/$pid/uid_map; echo x >&9; wait $bg",
        d = d.str()
    );
    let out = host(cx)
        .args([
            "--unshare-user",
            "--info-fd",
            "8",
            "--userns-block-fd",
            "9",
            "--uid",
            "0",
            "--gid",
            "0",
            "--",
        ])
        .args(["sh", "-c", "cat /proc/self/uid_map; id -u"])
        .wrapper(["sh", "-c", &script, "sh"])
        .run();
    if cx.mode == Mode::Setuid {
        let out = out.expect_status(1);
        assert!(out.stderr.contains("--userns-block-fd is not available in setuid mode"), "{}", out.report());
        return;
    }
    let out = out.ok();
    let lines = out.lines();
    let map: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        (map, lines[1].as_str()),
        (vec!["0", &*cx.caller_uid.to_string(), "1"], "0"),
        "{}",
        out.report()
    );
}

/// `--userns FD`: the sandbox is made in the user namespace of another one (bwrap's
/// test-specifying-userns.sh, in our words); `--userns2 FD`: its program ends up in a user
/// namespace made inside that one. Both refused in setuid mode.
fn join_user_namespaces(cx: &Ctx) {
    let d = cx.tempdir();
    let dir = d.str();
    // A first sandbox: its program leaves a process in the sandbox's user namespace, then
    // makes one of its own (Y) and waits. The second sandbox joins them.
    let hs = "\"$@\" --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc";
    let first = format!(
        "{hs} --dev /dev --bind {dir} {dir} --info-fd 8 --unshare-user --cap-add ALL -- \
         sh -c 'sleep 600 & readlink /proc/self/ns/user > {dir}/outer-ns; \
         exec unshare --user --map-root-user sh -c \"readlink /proc/self/ns/user > {dir}/inner-ns; cat {dir}/fifo\"'"
    );
    let kids = |p: &str| format!("$(cat /proc/{p}/task/{p}/children | cut -d' ' -f1)");
    let script = format!(
        "mkfifo {dir}/fifo; {first} 8>{dir}/info >/dev/null & bg=$!; \
         for i in $(seq 300); do test -s {dir}/inner-ns && break; kill -0 $bg 2>/dev/null || break; sleep 0.1; done; \
         init=$(grep -o '\"child-pid\": *[0-9]*' {dir}/info | grep -o '[0-9]*$'); \
         inner={k1}; outer={k2}; \
         {hs} --userns 11 -- sh -c 'readlink /proc/self/ns/user' 11</proc/$outer/ns/user; echo status $?; \
         {hs} --userns 11 --userns2 12 --uid 0 --gid 0 -- sh -c 'readlink /proc/self/ns/user' \
            11</proc/$outer/ns/user 12</proc/$inner/ns/user; echo status $?; \
         cat {dir}/outer-ns {dir}/inner-ns; echo done > {dir}/fifo; wait $bg",
        k1 = kids("$init"),
        k2 = kids("$inner"),
    );
    if cx.mode == Mode::Setuid {
        for opt in ["--userns", "--userns2"] {
            let out = host(cx)
                .args([opt, "11", "--", "true"])
                .wrapper(["sh", "-c", "exec \"$@\" 11</proc/self/ns/user", "sh"])
                .run();
            let out = out.expect_status(1);
            assert!(
                out.stderr.contains(&format!("{opt} is not available in setuid mode")),
                "{}",
                out.report()
            );
        }
        return;
    }
    let out = cx.ljspawn().arg("--bwrap").wrapper(["bash", "-c", &script, "sh"]).run();
    let lines = out.lines();
    let out = out.ok();
    assert_eq!(lines.len(), 6, "{}", out.report());
    let (outer, inner) = (&lines[4], &lines[5]);
    assert!(outer.starts_with("user:[") && outer != inner, "{}", out.report());
    assert_eq!(
        lines[..4],
        [outer.clone(), "status 0".into(), inner.clone(), "status 0".into()],
        "{}",
        out.report()
    );
}

/// `--pidns FD`: the sandbox is a process of the PID namespace FD is open on (a holder's, made
/// by `unshare --pid --fork`), which sees the sandbox's processes; with `--unshare-pid` a new
/// one is nested in it (bwrap's test-specifying-pidns.sh, in our words). Rootless needs
/// `--userns` with the namespace that owns it, as bwrap does. Refused in setuid mode.
fn join_a_pid_namespace(cx: &Ctx) {
    if cx.mode == Mode::Setuid {
        let out = host(cx)
            .args(["--pidns", "11", "--", "true"])
            .wrapper(["bash", "-c", "exec \"$@\" 11</proc/self/ns/pid", "sh"])
            .run()
            .expect_status(1);
        assert_eq!(
            out.stderr.trim_end(),
            "bwrap: --pidns is not available in setuid mode (the namespaces setuid ljspawn makes belong to root, and joining one as root is more than rootless gives); use rootless mode",
            "{}",
            out.report()
        );
        return;
    }
    // Bad descriptors: not open, not a namespace.
    let out = host(cx).args(["--pidns", "42", "--", "true"]).run().expect_status(1);
    assert_eq!(out.stderr.trim_end(), "bwrap: --pidns 42 is not an open file descriptor", "{}", out.report());
    let out = host(cx)
        .args(["--pidns", "11", "--", "true"])
        .wrapper(["bash", "-c", "exec \"$@\" 11</dev/null", "sh"])
        .run()
        .expect_status(1);
    assert!(
        out.stderr.starts_with("bwrap: cannot join the --pidns PID namespace (not a PID namespace"),
        "{}",
        out.report()
    );
    if cx.mode == Mode::Rootless {
        // Without --userns a rootless caller has no CAP_SYS_ADMIN over any PID namespace.
        let out = host(cx)
            .args(["--pidns", "11", "--", "true"])
            .wrapper(["bash", "-c", "exec \"$@\" 11</proc/self/ns/pid", "sh"])
            .run()
            .expect_status(1);
        assert!(
            out.stderr.contains("it needs --userns with the user namespace that owns it"),
            "{}",
            out.report()
        );
    }
    let d = cx.tempdir();
    let dir = d.str();
    let (holder, userns) = match cx.mode {
        Mode::Root => ("unshare --pid --fork --kill-child --mount-proc", ""),
        _ => (
            "unshare --user --map-root-user --pid --fork --kill-child --mount-proc",
            "--userns 11 --uid 0 --gid 0",
        ),
    };
    // The holder lists, in its own /proc, the processes whose command line has the marker
    // (ljspawn's init is a copy of ljspawn: its command line has it too), once per sandbox;
    // then it stays (its namespace, and every one nested in it, ends when it exits).
    fs::write(
        format!("{dir}/holder.sh"),
        format!(
            "echo > {dir}/ready\n\
             for r in 1 2; do\n\
               timeout 60 sh -c 'read x < {dir}/go' || exit\n\
               for p in /proc/[0-9]*; do\n\
                 tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q 'pidns-marke[r]' && echo ${{p#/proc/}}\n\
               done > {dir}/seen\n\
               echo done > {dir}/done\n\
             done\n\
             exec sleep 600\n"
        ),
    )
    .unwrap();
    fs::write(
        format!("{dir}/sandbox.sh"),
        format!(
            "readlink /proc/self/ns/pid; echo $$; echo go > {dir}/go; timeout 60 cat {dir}/done >/dev/null\n"
        ),
    )
    .unwrap();
    let script = format!(
        "mkfifo {dir}/go {dir}/done; {holder} sh {dir}/holder.sh & u=$!; \
         for i in $(seq 300); do test -e {dir}/ready && break; sleep 0.1; done; \
         h=$(cut -d' ' -f1 /proc/$u/task/$u/children); readlink /proc/$h/ns/pid; \
         for nest in '' --unshare-pid; do \
           \"$@\" --bind {dir} {dir} {userns} $nest --pidns 12 -- sh {dir}/sandbox.sh pidns-marker \
             11</proc/$h/ns/user 12</proc/$h/ns/pid; \
           echo status $?; echo $(cat {dir}/seen); \
         done; kill -9 $u; wait"
    );
    let out = host(cx).wrapper(["bash", "-c", &script, "sh"]).run().ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 9, "{}", out.report());
    let seen = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    // Joined: the same namespace as the holder's, whose /proc shows the sandbox's program
    // (by the pid it has there) and ljspawn's init.
    let ns = &lines[0];
    assert!(ns.starts_with("pid:["), "{}", out.report());
    assert_eq!((&lines[1], lines[3].as_str()), (ns, "status 0"), "{}", out.report());
    // (At least ljspawn's init and the program; a child the program just forked may still
    // carry its command line too.)
    let first = seen(&lines[4]);
    assert!(first.len() >= 2 && first.contains(&lines[2]), "{}", out.report());
    // Nested: a namespace of its own (its program is 2, after ljspawn's init), whose
    // processes the holder's namespace sees too.
    assert!(lines[5].starts_with("pid:[") && &lines[5] != ns, "{}", out.report());
    assert_eq!((lines[6].as_str(), lines[7].as_str()), ("2", "status 0"), "{}", out.report());
    assert!(seen(&lines[8]).len() >= 2, "{}", out.report());
}

/// `--unshare-pid --pidns FD` where ljspawn's /proc is an ancestor PID namespace's (`unshare
/// --pid --fork` without `--mount-proc`), whose pids are not ljspawn's: a SIGTERM to ljspawn
/// still reaches the sandbox's program (ljspawn knows the sandbox by its pid in ljspawn's own
/// namespace), which dies of it: status 143, long before its `sleep 30` ends.
fn pidns_under_an_ancestors_proc(cx: &Ctx) {
    let d = cx.tempdir();
    let dir = d.str();
    // Rootless: the caller is root of a user namespace of its own, with its subordinate ids
    // mapped (ljspawn clears the supplementary groups, which `--map-root-user` alone denies).
    let unshare = match cx.mode {
        Mode::Root => "unshare --pid --fork --kill-child",
        _ => "unshare --user --map-root-user --map-auto --pid --fork --kill-child",
    };
    let help =
        std::process::Command::new("unshare").arg("--help").output().map(|o| o.stdout).unwrap_or_default();
    if cx.mode != Mode::Root && !String::from_utf8_lossy(&help).contains("--map-auto") {
        cx.skip("this unshare has no --map-auto (util-linux 2.38)");
        return;
    }
    // In the new namespace (its /proc still the outer one), a shell starts ljspawn, waits for
    // the program to be up, and signals ljspawn by the pid it has there.
    let script = format!(
        "{unshare} bash -c '\
           \"$@\" 12</proc/self/ns/pid & lj=$!; \
           for i in $(seq 600); do test -e {dir}/up && break; kill -0 $lj 2>/dev/null || break; sleep 0.1; done; \
           kill -TERM $lj; wait $lj; echo status $?' \
         sh \"$@\" --bind {dir} {dir} --unshare-pid --pidns 12 -- sh -c 'echo > {dir}/up; exec sleep 30'"
    );
    let out = host(cx).wrapper(["bash", "-c", &script, "sh"]).run().ok();
    assert!(
        std::path::Path::new(&format!("{dir}/up")).exists(),
        "the program never started\n{}",
        out.report()
    );
    assert_eq!(out.lines(), ["status 143"], "the program did not die of the SIGTERM\n{}", out.report());
}

/// A later bind onto `/` is mounted over what came before it (bwrap's `--bind / / --tmpfs /tmp
/// --ro-bind / /`, the prefix of its own tests): what it covers is gone. `--symlink` again with
/// the same target is fine; with another target it fails in bwrap's words. An operation whose
/// effect would outlive the covered tree is refused before a later bind onto `/`.
fn later_bind_onto_root(cx: &Ctx) {
    let args = ["--bind", "/", "/", "--tmpfs", "/etc", "--ro-bind", "/", "/", "--"];
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["sh", "-c", "test -f /etc/passwd && echo etc; touch /x 2>/dev/null || echo ro"]);
    same_as_bwrap(cx, "", &all, &["etc", "ro"]);
    let d = cx.tempdir();
    let ds = d.str();
    let link = format!("{ds}/link");
    let make = |target: &str| {
        cx.ljspawn()
            .args(["--bwrap", "--bind", "/", "/", "--tmpfs", "/tmp", "--ro-bind", "/", "/"])
            .args(["--bind", &ds, &ds, "--symlink", target, &link, "true"])
            .run()
    };
    make("/dev/null").ok();
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("/dev/null"));
    make("/dev/null").ok();
    let out = make("/dev/full").expect_status(1);
    let want = format!("bwrap: Can't make symlink at {link}: existing destination is /dev/null");
    assert_eq!(out.stderr.trim_end(), want, "{}", out.report());
    let out =
        cx.ljspawn().args(["--bwrap", "--dir", "/x", "--bind", "/", "/", "true"]).run().expect_status(1);
    assert!(out.stderr.contains("--dir before a later bind onto / is not supported"), "{}", out.report());
}

/// bwrap's `/dev` has `core` (a link to `/proc/kcore`). `--json-status-fd` gets the
/// `exit-code` line only once the program ran: not when it could not be started.
fn dev_core_and_json_status(cx: &Ctx) {
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "readlink", "/dev/core"]);
    same_as_bwrap(cx, "", &args, &["/proc/kcore"]);
    let d = cx.tempdir();
    let status = d.join("status");
    let prelude = format!("exec 9>{}", path_str(&status));
    let out = host(cx).prelude(&prelude).args(["--json-status-fd", "9", "--", "/"]).run().expect_status(1);
    let json = fs::read_to_string(&status).unwrap();
    assert!(json.contains("\"child-pid\": ") && !json.contains("exit-code"), "{json}\n{}", out.report());
    let out = host(cx).prelude(&prelude).args(["--json-status-fd", "9", "--", "sh", "-c", "exit 3"]).run();
    out.expect_status(3);
    let json = fs::read_to_string(&status).unwrap();
    assert!(json.lines().last() == Some("{ \"exit-code\": 3 }"), "{json}");
}

/// `--perms` with `--dir`: the mode of a directory made, never of one already there; missing
/// parents 0755 without the group's or others' access where the mode gives them none.
/// `--file 0` (stdin) and `--bind-data 0`, 0666 and 0600 unless `--perms`, whatever the umask.
fn dir_and_file_modes(cx: &Ctx) {
    let d = cx.tempdir();
    let ds = d.str();
    fs::create_dir(d.join("old")).unwrap();
    fs::set_permissions(d.join("old"), fs::Permissions::from_mode(0o710)).unwrap();
    cx.chown_caller(&d.join("old"));
    let out = host(cx)
        .prelude("umask 022")
        .args(["--bind", &ds, &ds, "--perms", "0741", "--dir", &format!("{ds}/old")])
        .args(["--perms", "1741", "--dir", &format!("{ds}/new")])
        .args(["--perms", "0710", "--dir", &format!("{ds}/p750/x")])
        .args(["--perms", "0604", "--dir", &format!("{ds}/p705/x")])
        .args(["--perms", "0600", "--dir", &format!("{ds}/p700/x"), "true"])
        .run()
        .ok();
    let mode = |n: &str| fs::metadata(d.join(n)).unwrap().permissions().mode() & 0o7777;
    let got: Vec<u32> = ["old", "new", "p750", "p705", "p700", "p750/x"].iter().map(|n| mode(n)).collect();
    assert_eq!(got, [0o710, 0o1741, 0o750, 0o705, 0o700, 0o710], "{}", out.report());
    let prelude = "exec </dev/null; umask 022";
    for (opts, want) in [
        (&["--file", "0", "/f"][..], "666"),
        (&["--perms", "0640", "--file", "0", "/f"][..], "640"),
        (&["--bind-data", "0", "/f"][..], "600"),
        (&["--perms", "0640", "--ro-bind-data", "0", "/f"][..], "640"),
    ] {
        let mut args: Vec<&str> = HOST[1..].to_vec();
        args.push("/dev");
        args.extend(opts);
        args.extend(["stat", "-c", "%a", "/f"]);
        same_as_bwrap(cx, prelude, &args, &[want]);
    }
    let out = host(cx).stdin(b"from-stdin\n").args(["--file", "0", "/f", "--", "cat", "/f"]).run();
    assert_eq!(out.ok().lines(), ["from-stdin"]);
}

/// `--cap-add` and `--cap-drop` in order, as bwrap: `--cap-add ALL --cap-drop CAP_KILL` keeps all
/// but CAP_KILL (in the jail's own user namespace when not root). Without `--cap-add` nothing
/// is kept, root included (a documented difference: bwrap's root keeps what it holds).
fn capabilities_in_order(cx: &Ctx) {
    let probe = ["sh", "-c", "grep CapEff /proc/self/status | cut -f2"];
    let userns: &[&str] = if cx.mode == Mode::Root { &[] } else { &["--unshare-user"] };
    let caps = |opts: &[&str]| {
        let out = host(cx).args(userns).args(opts).args(probe).run().ok();
        let hex = out.lines().first().cloned().unwrap_or_default();
        (u64::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("CapEff\n{}", out.report())), out)
    };
    // What `--cap-add ALL` keeps: all that are held (root), the user namespace's (others).
    let (all, out) = caps(&["--cap-add", "ALL"]);
    let kill = 1u64 << 5;
    assert!(all & kill != 0, "{}", out.report());
    let cases: [(&[&str], u64); 5] = [
        (&["--cap-add", "ALL", "--cap-drop", "CAP_KILL"], all & !kill),
        (&["--cap-add", "ALL", "--cap-drop", "CAP_KILL", "--cap-add", "CAP_KILL"], all),
        (&["--cap-add", "ALL", "--cap-drop", "ALL", "--cap-add", "CAP_KILL"], kill),
        (&["--cap-drop", "CAP_KILL", "--cap-add", "ALL"], all),
        (&[], 0),
    ];
    for (opts, want) in cases {
        let (got, out) = caps(opts);
        assert_eq!(got, want, "{}", out.report());
    }
    // bwrap itself (rootless: root's bwrap keeps what root holds without --cap-add).
    if let (Some(b), Mode::Rootless) = (lj_tests::which("bwrap"), cx.mode) {
        let mut argv = vec![path_str(&b)];
        argv.extend(HOST[1..].iter().map(|s| s.to_string()));
        argv.extend(
            ["/dev", "--unshare-user", "--cap-add", "ALL", "--cap-drop", "CAP_KILL"].map(String::from),
        );
        argv.extend(probe.map(String::from));
        let t = run_with_timeout(cx.command(&argv), None, DEFAULT_TIMEOUT).expect("run bwrap").ok();
        assert_eq!(t.lines(), [format!("{:016x}", all & !kill)], "bwrap itself differs\n{}", t.report());
    }
}

/// A caller's program that denies seccomp(2) still lets the next one be stacked (bwrap
/// installs them with prctl). A descriptor given twice, and a program that is not whole
/// instructions, fail with bwrap's messages.
fn seccomp_stacking_and_bad_programs(cx: &Ctx) {
    if !cfg!(target_arch = "x86_64") || !Path::new("/usr/bin/python3").exists() {
        cx.skip("needs x86_64 and /usr/bin/python3");
        return;
    }
    let d = cx.tempdir();
    // seccomp (317), then uname (63); and a broken program.
    fs::write(d.join("no-seccomp.bpf"), deny_bpf(317)).unwrap();
    fs::write(d.join("no-uname.bpf"), deny_bpf(63)).unwrap();
    fs::write(d.join("odd.bpf"), [1u8, 2, 3]).unwrap();
    for n in ["no-seccomp.bpf", "no-uname.bpf", "odd.bpf"] {
        cx.chown_caller(&d.join(n));
    }
    let prelude = format!("exec 5<{0}/no-seccomp.bpf 6<{0}/no-uname.bpf 7<{0}/odd.bpf", d.str());
    let py = "import os\ntry: os.uname(); print('ok')\nexcept OSError as e: print(e.errno)";
    let mut args: Vec<&str> = HOST[1..].to_vec();
    args.extend(["/dev", "--add-seccomp-fd", "5", "--add-seccomp-fd", "6"]);
    args.extend(["/usr/bin/python3", "-I", "-S", "-c", py]);
    same_as_bwrap(cx, &prelude, &args, &["1"]);
    let out =
        host(cx).prelude(&prelude).args(["--add-seccomp-fd", "6", "--add-seccomp-fd", "6", "true"]).run();
    let out = out.expect_status(1);
    assert!(out.stderr.starts_with("bwrap: Can't read seccomp data: "), "{}", out.report());
    let out = host(cx).prelude(&prelude).args(["--add-seccomp-fd", "7", "true"]).run().expect_status(1);
    assert_eq!(
        out.stderr.trim_end(),
        "bwrap: Invalid seccomp data, must be multiple of 8",
        "{}",
        out.report()
    );
}

/// bwrap's words where callers look for them: `--level-prefix` (`<4>` warnings, `<3>` the
/// failure), a missing bind source, a `--size` beyond an off_t.
fn messages_in_bwraps_words(cx: &Ctx) {
    let out = host(cx).args(["--level-prefix", "--chdir", "/", "--chdir", "/", "true"]).run().ok();
    assert_eq!(out.stderr.trim_end(), "<4>bwrap: Only the last --chdir option will take effect");
    let out = host(cx).args(["--level-prefix", "--bind", "/nonexistent-src", "/x", "true"]).run();
    let out = out.expect_status(1);
    assert_eq!(
        out.stderr.trim_end(),
        "<3>bwrap: Can't find source path /nonexistent-src: No such file or directory",
        "{}",
        out.report()
    );
    let out =
        host(cx).args(["--size", "9223372036854775808", "--tmpfs", "/t", "true"]).run().expect_status(1);
    assert!(out.stderr.contains("--size"), "{}", out.report());
    let out = host(cx).args(["--size", "9223372036854775807", "--tmpfs", "/t", "true"]).run().ok();
    assert!(out.stderr.is_empty(), "{}", out.report());
}

/// Overlay directories whose names hold overlayfs's separators and escape (`"`, `:`, `,`,
/// `\`) are the directories named, as in bwrap.
fn overlay_names_with_escapes(cx: &Ctx) {
    let d = cx.tempdir();
    let name = |n: &str| format!("{n} \":,\\");
    for n in ["lower", "upper", "work"] {
        fs::create_dir(d.join(name(n))).unwrap();
        cx.chown_caller(&d.join(name(n)));
    }
    cx.write_caller_file(&d.join(name("lower")).join("a"), "1");
    let p = |n: &str| path_str(&d.join(name(n)));
    let out = host(cx)
        .args(["--overlay-src", &p("lower"), "--overlay", &p("upper"), &p("work"), "/o"])
        .args(["--", "sh", "-c", "cat /o/a; printf 2 > /o/a; cat /o/a"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["12"], "{}", out.report());
    assert_eq!(fs::read_to_string(d.join(name("upper")).join("a")).unwrap(), "2");
    assert_eq!(fs::read_to_string(d.join(name("lower")).join("a")).unwrap(), "1");
}

/// `--bind-fd` (writable), `--bind-try` and `--dev-bind-try` with a missing source (skipped)
/// and an existing one (bound, writable; a device usable), and the namespace options bwrap
/// callers pass (`--unshare-ipc`, `--unshare-uts`, `--unshare-cgroup[-try]`,
/// `--unshare-user-try`): accepted, and those namespaces are the sandbox's own.
fn try_binds_fd_bind_and_namespaces(cx: &Ctx) {
    let d = cx.tempdir();
    for sub in ["fd", "try"] {
        fs::create_dir(d.join(sub)).unwrap();
        cx.chown_caller(&d.join(sub));
    }
    let script = "echo fd > /b/w && echo try > /t/w && echo dev > /dn && test -c /dn && \
                  test ! -e /m1 && test ! -e /m2 && echo ok; \
                  for n in ipc uts cgroup; do readlink /proc/self/ns/$n; done";
    let out = host(cx)
        .prelude(&format!("exec 5<{}", path_str(&d.join("fd"))))
        .args(["--bind-fd", "5", "/b", "--bind-try", "/nonexistent-src", "/m1"])
        .args(["--bind-try", &d.join("try").to_string_lossy(), "/t"])
        .args(["--dev-bind-try", "/nonexistent-src", "/m2", "--dev-bind-try", "/dev/null", "/dn"])
        .args(["--unshare-ipc", "--unshare-uts", "--unshare-cgroup", "--unshare-cgroup-try"])
        .args(["--unshare-user-try", "--", "sh", "-c", script])
        .run()
        .ok();
    let lines = out.lines();
    assert_eq!(lines.first().map(String::as_str), Some("ok"), "{}", out.report());
    assert_eq!(fs::read_to_string(d.join("fd/w")).unwrap(), "fd\n");
    assert_eq!(fs::read_to_string(d.join("try/w")).unwrap(), "try\n");
    for (n, got) in ["ipc", "uts", "cgroup"].iter().zip(&lines[1..]) {
        assert_ne!(
            got,
            &lj_tests::host_ns(n),
            "the sandbox shares the host's {n} namespace\n{}",
            out.report()
        );
    }
    assert_eq!(lines.len(), 4, "{}", out.report());
}

/// `--sync-fd`: held open while the sandbox runs, so the caller reads end-of-file on the other
/// end of the pipe only once it is gone. `--new-session`: the program leads a session of its
/// own. `--assert-userns-disabled` without `--disable-userns` is bwrap's failure; with it
/// (and `--unshare-user`) the program cannot make a user namespace, which it can without.
fn sync_fd_session_and_userns_rules(cx: &Ctx) {
    let d = cx.tempdir();
    let here = path_str(d.path());
    // The program writes `done` a moment before it ends; the caller's `cat` of the sync pipe
    // returns only after that (never before: the sandbox holds the pipe's write end).
    let out = host(cx)
        .args(["--bind", &here, &here, "--sync-fd", "7", "--", "sh", "-c"])
        .arg(format!("sleep 1; echo done > {here}/m"))
        .wrapper(["sh", "-c", &format!("\"$@\" 7>&1 >/dev/null | cat; cat {here}/m"), "sh"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["done"], "the sync fd closed before the sandbox ended\n{}", out.report());
    let out = host(cx)
        .args(["--new-session", "--", "sh", "-c"])
        .arg("read -r _ _ _ _ _ sid _ < /proc/$$/stat; [ \"$sid\" = $$ ] && echo leader")
        .run()
        .ok();
    assert_eq!(out.lines(), ["leader"], "{}", out.report());
    let out = host(cx).args(["--assert-userns-disabled", "--", "true"]).run().expect_status(1);
    assert!(
        out.stderr.contains("bwrap: creation of new user namespaces was not disabled as requested"),
        "{}",
        out.report()
    );
    let probe = "unshare -U true 2>/dev/null && echo made || echo refused";
    let out = host(cx).args(["--unshare-user", "--", "sh", "-c", probe]).run().ok();
    assert_eq!(out.lines(), ["made"], "{}", out.report());
    let out = host(cx)
        .args(["--unshare-user", "--disable-userns", "--assert-userns-disabled", "--", "sh", "-c", probe])
        .run()
        .ok();
    assert_eq!(out.lines(), ["refused"], "{}", out.report());
}

/// `--die-with-parent`: when the process that started the sandbox is killed (`kill -9`), the
/// sandbox and its program end too.
fn dies_with_its_parent(cx: &Ctx) {
    let d = cx.tempdir();
    let pidf = d.join("pid");
    let parent = host(cx)
        .args(["--die-with-parent", "--", "sleep", "1000"])
        .wrapper(["sh", "-c", &format!("\"$@\" & echo $! > {}; wait", path_str(&pidf)), "sh"])
        .start();
    let mut tree = Vec::new();
    let up = lj_tests::wait_until(UP, || {
        let Some(pid) = fs::read_to_string(&pidf).ok().and_then(|p| p.trim().parse::<u32>().ok()) else {
            return false;
        };
        tree = lj_tests::process_tree(pid);
        tree.iter().any(|p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x001000\x00"))
    });
    assert!(up, "the sandbox's sleep never ran (tree {tree:?})");
    parent.signal("KILL");
    let dead = |p: &u32| {
        fs::read_to_string(format!("/proc/{p}/stat"))
            .map_or(true, |s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')))
    };
    let gone = lj_tests::wait_until(UP, || tree.iter().all(dead));
    let left: Vec<_> = tree.iter().filter(|p| !dead(p)).collect();
    assert!(gone, "the sandbox outlived its parent: {left:?} of {tree:?} still run");
    let _ = parent.wait();
}

/// `--lock-file DEST`: a read lock (fcntl) on DEST while the sandbox runs, as flatpak takes one
/// on its instance's `.ref` file and tests it with a write lock from outside: refused while the
/// program runs, free once the sandbox is gone.
fn lock_file_held(cx: &Ctx) {
    if !Path::new("/usr/bin/python3").exists() {
        cx.skip("needs /usr/bin/python3 (fcntl locks from outside)");
        return;
    }
    let d = cx.tempdir();
    let ds = d.str();
    cx.write_caller_file(&d.join(".ref"), "");
    cx.write_caller_file(
        &d.join("try.py"),
        "import fcntl, sys\nf = open(sys.argv[1], 'r+')\ntry:\n    \
         fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\nexcept OSError: print('locked')\n",
    );
    let script = format!(
        "mkfifo {ds}/go; exec 3<>{ds}/go; \"$@\" & bg=$!; \
         for i in $(seq 300); do test -e {ds}/up && break; kill -0 $bg 2>/dev/null || break; sleep 0.1; done; \
         /usr/bin/python3 {ds}/try.py {ds}/.ref; echo >&3; wait $bg; echo status $?; \
         /usr/bin/python3 {ds}/try.py {ds}/.ref"
    );
    let out = host(cx)
        .args(["--bind", &ds, &ds, "--lock-file", &format!("{ds}/.ref"), "--", "sh", "-c"])
        .arg(format!("echo > {ds}/up; read x < {ds}/go"))
        .wrapper(["sh", "-c", &script, "sh"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["locked", "status 0", "free"], "{}", out.report());
}

/// The failures callers see most (a missing or unexecutable command, a missing `--chdir`
/// directory or bind source, bad options and arguments, bad descriptors, a failed `--chmod` or
/// `--lock-file`) are bwrap's own: the same stderr, byte for byte, and the same exit status as
/// the host's bwrap (the oracle, run as this mode's caller: unprivileged as the test user in
/// setuid mode too, as Debian's is not setuid). Left out, each a listed difference (README):
/// texts that changed between bwrap versions (a symlink over another file), bwrap's internal
/// paths in its words (`/newroot/...` of `--remount-ro`), ljspawn's stricter checks (`--size`
/// or `--perms` with nothing after them, descriptors checked before use), `--uid` without
/// `--unshare-user` as root (accepted), a file without `#!` (no `sh` fallback).
fn failures_word_for_word(cx: &Ctx) {
    let Some(bwrap) = lj_tests::which("bwrap") else {
        panic!("no bwrap to compare with: install bubblewrap");
    };
    let d = cx.tempdir();
    let plain = d.join("f");
    cx.write_caller_file(&plain, "#!/bin/sh\necho ran\n");
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let dir = path_str(d.path());
    let file = path_str(&plain);
    let mut cases: Vec<Vec<&str>> = vec![
        vec!["--", "no-such-program"],
        vec!["--", "/nonexistent/prog"],
        vec!["--", "/usr"],
        vec!["--ro-bind", &file, "/f", "--", "/f"],
        // Through PATH: denied in one directory, missing in the next (execvp: EACCES).
        vec!["--ro-bind", &dir, "/d", "--setenv", "PATH", "/d:/usr/bin", "--", "f"],
        vec!["--chdir", "/nonexistent-dir", "true"],
        vec!["--chdir", "/usr/bin/true", "true"],
        vec!["--chdir", "/nonexistent-dir", "no-such-program"],
        vec!["--bind", "/nonexistent-src", "/x", "true"],
        vec!["--ro-bind", "/nonexistent-src", "/x", "true"],
        vec!["--dev-bind", "/nonexistent-src", "/x", "true"],
        vec!["--bind-try", "/nonexistent-src", "/x", "true"],
        vec!["--frobnicate", "true"],
        vec!["--dir"],
        vec!["--bind", "/usr"],
        vec!["--setenv", "X"],
        vec!["--perms", "999", "--dir", "/d", "true"],
        vec!["--chmod", "8", "/x", "true"],
        vec!["--chmod", "0755", "/nonexistent", "true"],
        vec!["--size", "abc", "--tmpfs", "/t", "true"],
        vec!["--size", "0x10", "--tmpfs", "/t", "true"],
        vec!["--size", "9223372036854775808", "--tmpfs", "/t", "true"],
        vec!["--cap-add", "CAP_FOO", "true"],
        vec!["--lock-file", "/nonexistent/x", "true"],
        vec!["--args", "99", "true"],
        vec!["--seccomp", "99", "true"],
    ];
    if cx.mode != Mode::Root {
        // (Unprivileged, bwrap makes a user namespace of its own accord.)
        cases.push(vec!["--uid", "5", "true"]);
    }
    let host_args: Vec<&str> = HOST[1..].iter().copied().chain(["/dev"]).collect();
    for case in &cases {
        let ours = host(cx).args(case).run();
        let mut argv = vec![path_str(&bwrap)];
        argv.extend(host_args.iter().chain(case).map(|s| s.to_string()));
        let theirs = run_with_timeout(cx.command(&argv), None, DEFAULT_TIMEOUT).expect("run bwrap");
        assert!(
            (ours.status(), &ours.stderr) == (theirs.status(), &theirs.stderr),
            "{case:?}: ljspawn's bwrap form differs from bwrap\n{}\nbwrap:\n{}",
            ours.report(),
            theirs.report()
        );
    }
}
