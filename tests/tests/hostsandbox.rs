//! The host-sandbox form of ljspawn's own command line (issue 14, item 3): without `--root`
//! or `--layer` the root is an empty tmpfs in which the mount points are made; `--symlink`,
//! `--dir`, `--file`; the caller's directory kept when it exists inside (else `/`);
//! `--host-usr` for the host's `/usr` and its usr-merge links.
//! Test names are `hostsandbox::<what>::<mode>`. Needs `tests/prepare.sh` (as root) first.

use std::fs;
use std::path::Path;

use lj_tests::{path_str, Ctx};

mod hostsandbox {
    lj_tests::mode_tests! {
        prefix = "hostsandbox::", run = lj_tests::run_ctx;
        python_one_liner: root rootless setuid;
        host_usr_option: root rootless setuid;
        empty_tmpfs_root: root rootless setuid;
        symlink_dir_file: root rootless setuid;
        caller_directory_kept: root rootless setuid;
    }
}

/// The one-liner, word for word: the host's python3 in a jail with only /usr.
fn python_one_liner(cx: &Ctx) {
    if !Path::new("/usr/bin/python3").exists() {
        cx.skip("no /usr/bin/python3 on this host");
        return;
    }
    let out = cx
        .ljspawn()
        .args(["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib"])
        .args(["--symlink", "usr/lib64", "/lib64", "--", "python3", "-c", "print(1)"])
        .run()
        .ok();
    assert_eq!(out.lines(), ["1"], "{}", out.report());
    // Without the usr-merge links the ELF loader is missing: the line says so (the kernel's
    // ENOENT alone reads as if python3 were not there), by PATH and by path.
    if fs::symlink_metadata("/lib64").is_ok_and(|m| m.file_type().is_symlink()) {
        for prog in ["python3", "/usr/bin/python3"] {
            let out = cx
                .ljspawn()
                .args(["--ro-bind", "/usr", "/usr", "--", prog, "-c", "print(1)"])
                .run()
                .expect_ljspawn_error(127);
            assert!(
                out.stderr.contains("cannot execute /usr/bin/python3: no such file or directory (the file is there: its interpreter is not"),
                "{}",
                out.report()
            );
        }
    }
    // bwrap's `--ro-bind / /` is --root in ljspawn's own form, and the line says so.
    let out = cx.ljspawn().args(["--ro-bind", "/", "/", "--", "true"]).run().expect_ljspawn_error(2);
    assert!(out.stderr.contains("a bind onto / is not a mount of ljspawn's own form"), "{}", out.report());
}

/// `--host-usr`: /usr read-only, and each of /bin /sbin /lib* as the host has it (a link with
/// the same target, or a read-only bind of the directory).
fn host_usr_option(cx: &Ctx) {
    let mut script = String::from("touch /usr/x 2>/dev/null && echo WROTE; ");
    let mut want = Vec::new();
    for d in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
        let Ok(m) = fs::symlink_metadata(d) else { continue };
        if m.file_type().is_symlink() {
            let t = fs::read_link(d).unwrap();
            script.push_str(&format!("echo {d} $(readlink {d}); "));
            want.push(format!("{d} {}", t.display()));
        } else if m.is_dir() {
            script.push_str(&format!("test -d {d} && ! touch {d}/x 2>/dev/null && echo {d} dir; "));
            want.push(format!("{d} dir"));
        }
    }
    script.push_str("ls /");
    let out = cx.ljspawn().args(["--host-usr", "--", "sh", "-c", &script]).run().ok();
    let lines = out.lines();
    assert!(!lines.contains(&"WROTE".to_string()), "/usr is writable\n{}", out.report());
    assert_eq!(&lines[..want.len()], &want[..], "{}", out.report());
    // Nothing else of the host: no /etc, /home, /root, /var.
    for absent in ["etc", "home", "root", "var"] {
        assert!(
            !lines[want.len()..].contains(&absent.to_string()),
            "/{absent} in the jail\n{}",
            out.report()
        );
    }
    // Dry run says what it binds.
    let out = cx.ljspawn().args(["--dry-run", "--host-usr", "--", "true"]).run().ok();
    assert!(out.stdout.contains("/usr <- bind /usr (ro on every submount"), "{}", out.report());
    assert!(out.stdout.contains("/ <- tmpfs mode 755, empty"), "{}", out.report());
}

/// The root is an empty, writable tmpfs: only ljspawn's own mounts and what was asked for are
/// there; the mount points for binds are made in it; `--rw` is refused.
fn empty_tmpfs_root(cx: &Ctx) {
    let data = cx.tempdir();
    cx.write_caller_file(&data.join("f"), "hello\n");
    let out = cx
        .ljspawn()
        .args(["--host-usr", "--ro-bind", &data.str(), "/deep/er/data"])
        .args([
            "--",
            "sh",
            "-c",
            "ls -A / | tr '\\n' ' '; echo; cat /deep/er/data/f; echo w > /new && cat /new",
        ])
        .run()
        .ok();
    let lines = out.lines();
    let top: Vec<&str> = lines[0].split_whitespace().collect();
    let mut want = vec!["deep", "dev", "proc", "tmp", "usr"];
    for d in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        if fs::symlink_metadata(format!("/{d}")).is_ok() {
            want.push(d);
        }
    }
    want.sort_unstable();
    assert_eq!(top, want, "{}", out.report());
    assert_eq!(&lines[1..], ["hello", "w"], "{}", out.report());
    let out = cx.ljspawn().args(["--rw", "--host-usr", "--", "true"]).run().expect_ljspawn_error(2);
    assert!(out.stderr.contains("empty tmpfs"), "{}", out.report());
}

/// `--symlink`, `--dir` and `--file` in command-line order; parents are made; an existing
/// symlink with the same target is fine, a different one is an error; `--file` takes the
/// content of a descriptor, which must be open.
fn symlink_dir_file(cx: &Ctx) {
    let src = cx.tempdir();
    cx.write_caller_file(&src.join("content"), "from fd 7\n");
    let script = "readlink /a/link; test -d /d1/d2/d3 && echo dir; cat /d1/d2/file; cat /a/link; \
                  stat -c %a /d1/d2/file";
    let out = cx
        .ljspawn()
        .prelude(&format!("exec 7<{}; umask 022", path_str(&src.join("content"))))
        .args(["--host-usr", "--dir", "/d1/d2/d3", "--file", "7", "/d1/d2/file"])
        .args(["--symlink", "/d1/d2/file", "/a/link", "--symlink", "/d1/d2/file", "/a/link"])
        .args(["--", "sh", "-c", script])
        .run()
        .ok();
    assert_eq!(out.lines(), ["/d1/d2/file", "dir", "from fd 7", "from fd 7", "644"], "{}", out.report());
    let out = cx
        .ljspawn()
        .args(["--host-usr", "--symlink", "x", "/l", "--symlink", "y", "/l", "--", "true"])
        .run()
        .expect_ljspawn_error(125);
    assert!(out.stderr.contains("cannot create symlink /l: existing destination is x"), "{}", out.report());
    let out =
        cx.ljspawn().args(["--host-usr", "--file", "9", "/f", "--", "true"]).run().expect_ljspawn_error(2);
    assert!(out.stderr.contains("--file 9 is not an open file descriptor"), "{}", out.report());
    // A file where one already is: refused, never overwritten or followed.
    let out = cx
        .ljspawn()
        .prelude(&format!("exec 7<{}", path_str(&src.join("content"))))
        .args(["--host-usr", "--file", "7", "/usr/bin/sh", "--", "true"])
        .run()
        .expect_ljspawn_error(125);
    assert!(out.stderr.contains("cannot create file /usr/bin/sh"), "{}", out.report());
}

/// Without `--chdir`, the program starts in the caller's directory when the jail has it, else
/// in `/`; `--chdir` wins; a `--root` jail starts in `/` as before.
fn caller_directory_kept(cx: &Ctx) {
    let here = path_str(&cx.dir);
    let out = cx.ljspawn().args(["--host-usr", "--bind", &here, &here, "--", "pwd"]).run().ok();
    assert_eq!(out.lines(), [here.as_str()], "{}", out.report());
    let out = cx.ljspawn().args(["--host-usr", "--", "pwd"]).run().ok();
    assert_eq!(out.lines(), ["/"], "{}", out.report());
    let out =
        cx.ljspawn().args(["--host-usr", "--bind", &here, &here, "--chdir", "/tmp", "--", "pwd"]).run().ok();
    assert_eq!(out.lines(), ["/tmp"], "{}", out.report());
    let out = cx.ljspawn().args(["--root", &cx.world_str(), "--", "/bin/pwd"]).run().ok();
    assert_eq!(out.lines(), ["/"], "{}", out.report());
}
