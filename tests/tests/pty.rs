//! The jail's own terminal (issue 10, item 5): when fd 0 is a terminal, the jail gets a pty of
//! its own devpts and ljspawn relays. Each test runs ljspawn on a pty the test made (standing
//! in for the caller's terminal: `Pty`), types on its master and reads what comes back.
//! Test names are `<what>::<mode>`. Needs `tests/prepare.sh` (as root) first.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use lj_tests::{path_str, process_tree, wait_until, Ctx, Pty, PtyChild};

lj_tests::mode_tests! {
    prefix = "pty::", run = lj_tests::run_ctx;
    own_pty_tty_and_window_size: root rootless setuid;
    ctrl_c_and_ctrl_z_reach_the_jail: root rootless setuid;
    bash_gets_job_control: root rootless setuid;
    terminal_restored_after_sigterm_and_errors: root rootless setuid;
    caller_terminal_cannot_be_chmodded: root rootless setuid;
    no_pty_passes_the_terminal: root rootless setuid;
    bwrap_form_gets_a_pty_with_dev: root rootless setuid;
    join_gets_a_pty_of_the_jails_devpts: root rootless;
}

const LIMIT: Duration = Duration::from_secs(30);

fn pty(cx: &Ctx) -> Option<Pty> {
    match Pty::open() {
        Ok(p) => Some(p),
        Err(e) => {
            cx.skip(&format!("cannot open a pty pair: {e}"));
            None
        }
    }
}

fn expect(p: &mut Pty, child: &PtyChild, needle: &str) {
    assert!(
        p.expect(needle, LIMIT),
        "{}: no {needle:?} on the terminal; it shows:\n{}",
        child.command,
        p.output
    );
}

/// The pid of the process running `cmdline` (arguments joined by spaces) under ljspawn `root`.
fn find_proc(root: u32, cmdline: &str) -> Option<u32> {
    process_tree(root).into_iter().find(|p| {
        fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).trim_end_matches('\0').replace('\0', " ") == cmdline)
            .unwrap_or(false)
    })
}

fn wait_proc(child: &PtyChild, cmdline: &str) -> u32 {
    let mut found = None;
    wait_until(LIMIT, || {
        found = find_proc(child.pid(), cmdline);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("{}: no process {cmdline:?} in the jail", child.command))
}

/// The state letter of /proc/PID/stat (R, S, T, ...).
fn state(pid: u32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next()).unwrap_or('?')
}

/// The process has exited (a zombie counts).
fn gone(pid: u32) -> bool {
    matches!(state(pid), '?' | 'Z' | 'X')
}

fn finish(p: &mut Pty, mut child: PtyChild, want: i32) {
    let st = child.wait(LIMIT);
    p.read_now();
    assert_eq!(st, Some(want), "{}: exit status; the terminal shows:\n{}", child.command, p.output);
}

// ---------------------------------------------------------------- tests

/// `tty` names /dev/pts/0 of the jail's own devpts (the caller's pty is another instance's);
/// `stty size` sees the caller's window size, and a resize (SIGWINCH to ljspawn) reaches the
/// jail; the caller's terminal is raw while the jail runs and its modes come back after.
fn own_pty_tty_and_window_size(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    p.set_size(33, 111);
    let before = p.modes();
    let script = "tty; stty size; test -t 1 && echo out-is-tty; echo ready; read x; stty size; echo done-$x";
    let child =
        cx.ljspawn().args(["--root", &cx.world_str(), "--", "/bin/sh", "-c", script]).start_on_pty(&p);
    expect(&mut p, &child, "ready");
    assert!(p.output.contains("/dev/pts/0\r\n"), "tty:\n{}", p.output);
    assert!(p.output.contains("33 111\r\n"), "stty size:\n{}", p.output);
    assert!(p.output.contains("out-is-tty"), "stdout is not the pty:\n{}", p.output);
    assert!(!p.canonical(), "the caller's terminal is not raw while the jail runs");
    p.set_size(40, 120);
    p.write(b"ok\r");
    expect(&mut p, &child, "done-ok");
    assert!(p.output.contains("40 120\r\n"), "resize not passed on:\n{}", p.output);
    finish(&mut p, child, 0);
    assert_eq!(p.modes(), before, "the caller's terminal modes were not restored");
}

/// An interactive busybox sh has job control: Ctrl-C stops a foreground `sleep` (the shell
/// lives on), Ctrl-Z stops it, `fg` continues it.
fn ctrl_c_and_ctrl_z_reach_the_jail(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    let child = cx
        .ljspawn()
        .args(["--root", &cx.world_str(), "--setenv", "PS1", "lj$ ", "--", "/bin/sh", "-i"])
        .start_on_pty(&p);
    expect(&mut p, &child, "lj$ ");
    p.write(b"sleep 100\r");
    let sleep = wait_proc(&child, "sleep 100");
    p.write(b"\x03");
    assert!(wait_until(LIMIT, || gone(sleep)), "^C did not stop sleep");
    p.write(b"echo st=$((0+$?))\r");
    expect(&mut p, &child, "st=130");
    p.write(b"sleep 101\r");
    let sleep = wait_proc(&child, "sleep 101");
    p.write(b"\x1a");
    assert!(wait_until(LIMIT, || state(sleep) == 'T'), "^Z did not stop sleep\n{}", p.output);
    expect(&mut p, &child, "Stopped");
    p.write(b"fg\r");
    assert!(wait_until(LIMIT, || state(sleep) == 'S'), "fg did not continue sleep\n{}", p.output);
    p.write(b"\x03");
    assert!(wait_until(LIMIT, || gone(sleep)), "^C after fg");
    p.write(b"echo alive-$((40+2))\r");
    expect(&mut p, &child, "alive-42");
    p.write(b"exit\r");
    finish(&mut p, child, 0);
    assert!(!p.output.contains("job control turned off"), "no job control:\n{}", p.output);
}

/// The Debian world's bash: no "no job control" complaint, ^Z and fg work.
fn bash_gets_job_control(cx: &Ctx) {
    let world = match cx.mode {
        lj_tests::Mode::Root => std::env::var_os("LJ_DEBIAN_WORLD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/lj-debian-world")),
        _ => cx.dir.join("worlds/debian-ljtest"),
    };
    if !world.join("bin/bash").exists() {
        cx.skip(&format!("no Debian world with bash at {} (tests/prepare.sh makes it)", world.display()));
        return;
    }
    let Some(mut p) = pty(cx) else { return };
    let args = ["--root", &path_str(&world), "--setenv", "PS1", "lj$ ", "--", "/bin/bash", "--norc", "-i"];
    let child = cx.ljspawn().args(args).start_on_pty(&p);
    expect(&mut p, &child, "lj$ ");
    p.write(b"sleep 102\r");
    let sleep = wait_proc(&child, "sleep 102");
    p.write(b"\x1a");
    assert!(wait_until(LIMIT, || state(sleep) == 'T'), "^Z did not stop sleep\n{}", p.output);
    p.write(b"jobs; fg\r");
    assert!(wait_until(LIMIT, || state(sleep) == 'S'), "fg did not continue sleep\n{}", p.output);
    p.write(b"\x03");
    assert!(wait_until(LIMIT, || gone(sleep)), "^C after fg");
    p.write(b"echo st=$? tty=$(tty)\r");
    expect(&mut p, &child, "st=130 tty=/dev/pts/0");
    p.write(b"exit\r");
    finish(&mut p, child, 0);
    assert!(!p.output.contains("no job control"), "bash has no job control:\n{}", p.output);
    assert!(p.output.contains("Stopped"), "^Z: no Stopped line:\n{}", p.output);
}

/// SIGTERM to ljspawn ends the jail and the caller's terminal gets its modes back; so does a
/// jail that fails to start (command not found).
fn terminal_restored_after_sigterm_and_errors(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    let before = p.modes();
    let child = cx.ljspawn().args(["--root", &cx.world_str(), "--", "/bin/sleep", "103"]).start_on_pty(&p);
    wait_proc(&child, "/bin/sleep 103");
    assert!(wait_until(LIMIT, || !p.canonical()), "the caller's terminal is not raw while the jail runs");
    let st = std::process::Command::new("kill").args(["-TERM", &child.pid().to_string()]).status();
    assert!(st.is_ok_and(|s| s.success()), "kill -TERM ljspawn");
    finish(&mut p, child, 128 + libc::SIGTERM);
    assert_eq!(p.modes(), before, "modes not restored after SIGTERM to ljspawn");
    let child = cx.ljspawn().args(["--root", &cx.world_str(), "--", "no-such-program"]).start_on_pty(&p);
    finish(&mut p, child, 127);
    assert!(p.output.contains("no-such-program: command not found"), "{}", p.output);
    assert_eq!(p.modes(), before, "modes not restored after a failed start");
}

/// The jail's fds 0-2 are its own pty: chmod through them changes the jail's pty, never the
/// caller's terminal (which the caller owns, as after a login). With `--no-pty` (the old
/// behaviour) the same chmod reaches the caller's terminal: the test can fail.
fn caller_terminal_cannot_be_chmodded(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    p.give_to(cx.caller_uid);
    let script =
        "chmod 0666 /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; stat -L -c mode=%a /proc/self/fd/0";
    let run = |p: &mut Pty, extra: &[&str]| {
        let child = cx
            .ljspawn()
            .args(extra)
            .args(["--root", &cx.world_str(), "--", "/bin/sh", "-c", script])
            .start_on_pty(p);
        expect(p, &child, "mode=666");
        finish(p, child, 0);
        p.slave_meta().mode() & 0o7777
    };
    assert_eq!(run(&mut p, &[]), 0o620, "the jail changed the caller's terminal:\n{}", p.output);
    assert_eq!(p.slave_meta().uid(), cx.caller_uid);
    // Control: the caller's own terminal handed in as it is.
    assert_eq!(run(&mut p, &["--no-pty"]), 0o666, "control: --no-pty should pass the terminal itself");
    fs::set_permissions(&p.slave_path, fs::Permissions::from_mode(0o620)).unwrap();
}

/// `--no-pty`: the caller's terminal itself, which the jail's devpts does not name (`tty` says
/// so), and its modes are left alone.
fn no_pty_passes_the_terminal(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    let before = p.modes();
    let script = "tty; test -t 0 && echo in-is-tty; echo ready; read x; echo got-$x";
    let child = cx
        .ljspawn()
        .args(["--no-pty", "--root", &cx.world_str(), "--", "/bin/sh", "-c", script])
        .start_on_pty(&p);
    expect(&mut p, &child, "ready");
    assert!(p.output.contains("not a tty") && p.output.contains("in-is-tty"), "{}", p.output);
    assert!(p.canonical(), "--no-pty changed the caller's terminal modes");
    p.write(b"line\n");
    expect(&mut p, &child, "got-line");
    finish(&mut p, child, 0);
    assert_eq!(p.modes(), before);
}

/// The bwrap form with `--dev /dev` (its own devpts) gets the pty too; without one (the
/// host's /dev bound in), the terminal is passed as bwrap passes it.
fn bwrap_form_gets_a_pty_with_dev(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    let w = cx.world_str();
    let common = ["--bwrap", "--unshare-all", "--ro-bind", &w, "/", "--proc", "/proc"];
    let child =
        cx.ljspawn().args(common).args(["--dev", "/dev", "/bin/sh", "-c", "tty; echo end"]).start_on_pty(&p);
    expect(&mut p, &child, "end");
    finish(&mut p, child, 0);
    assert!(p.output.contains("/dev/pts/0\r\n"), "bwrap form with --dev: {}", p.output);
    p.output.clear();
    let child = cx
        .ljspawn()
        .args(common)
        .args(["--dev-bind", "/dev", "/dev", "/bin/sh", "-c", "tty; echo end"])
        .start_on_pty(&p);
    expect(&mut p, &child, "end");
    finish(&mut p, child, 0);
    let shown = path_str(&p.slave_path);
    assert!(p.output.contains(&format!("{shown}\r\n")), "bwrap form with the host's /dev: {}", p.output);
}

/// `--join` (ljail's `exec` and `shell`) on a terminal: a pty of the running jail's own devpts,
/// with job control, and the caller's modes back afterwards.
fn join_gets_a_pty_of_the_jails_devpts(cx: &Ctx) {
    let Some(mut p) = pty(cx) else { return };
    let before = p.modes();
    let w = cx.world_str();
    let jail = cx.ljspawn().args(["--root", &w, "--", "/bin/sleep", "60"]).start();
    let mut pid1 = None;
    wait_until(LIMIT, || {
        pid1 = fs::read_to_string(format!("/proc/{0}/task/{0}/children", jail.pid()))
            .ok()
            .and_then(|c| c.split_whitespace().next().map(str::to_string));
        pid1.is_some() && find_proc(jail.pid(), "/bin/sleep 60").is_some()
    });
    let pid1 = pid1.expect("the jail's PID 1");
    let child = cx
        .ljspawn()
        .args(["--root", &w, "--setenv", "PS1", "lj$ ", "--join", &pid1, "--", "/bin/sh", "-i"])
        .start_on_pty(&p);
    expect(&mut p, &child, "lj$ ");
    assert!(!p.canonical(), "the caller's terminal is not raw while joined");
    p.write(b"tty; sleep 104\r");
    let sleep = wait_proc(&child, "sleep 104");
    p.write(b"\x03");
    assert!(wait_until(LIMIT, || gone(sleep)), "^C did not stop sleep");
    p.write(b"echo st=$((0+$?))\r");
    expect(&mut p, &child, "st=130");
    assert!(p.output.contains("/dev/pts/0\r\n"), "tty in the joined shell:\n{}", p.output);
    p.write(b"exit\r");
    finish(&mut p, child, 0);
    assert_eq!(p.modes(), before, "modes not restored after --join");
    drop(jail);
}
