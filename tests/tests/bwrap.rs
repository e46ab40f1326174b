//! ljspawn's bwrap form (issue 14, item 1): invoked as `bwrap` (a link so named) or with a first
//! argument `--bwrap`, it takes bubblewrap's command line with bubblewrap's semantics. Each test
//! runs in root, rootless and setuid modes. bubblewrap's own suite is the yardstick; none of it
//! is copied here. Test names are `bwrap::<what>::<mode>`. Needs `tests/prepare.sh` (as root).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use lj_tests::{ns_inode, path_str, run_with_timeout, Ctx, Mode, DEFAULT_TIMEOUT};

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
    one(&["--as-pid-1", "true"], "--as-pid-1 is not supported");
    one(&["--bind", "/nonexistent-src", "/x", "true"], "/nonexistent-src");
    one(&["--dir"], "--dir takes 1 argument");
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
/// `--info-fd` (the child-pid line, then end-of-file while the program still runs), as flatpak
/// uses them.
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
    assert!(info.starts_with("{\"child-pid\": ") && info.lines().count() == 1, "info-fd wrote {info:?}");
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
