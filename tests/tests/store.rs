//! End-to-end tests of `--idmap-layer`: layers of a root-owned store granted in
//! `/etc/lightjail.conf` (`store DIR allow WHO`), idmapped onto the jail's user namespace so a
//! non-root caller sees root's files as the jail's root and can change them (in its upper).
//!
//! The stores are made under `/var/lib` (a root-owned 0755 path: `/tmp` is writable by others,
//! which ljspawn refuses for a store) and removed afterwards. `/etc/lightjail.conf` is never
//! written on the host: each setuid run happens in a private mount namespace where `/etc` is
//! an overlay holding the test's own file (as in `net.rs`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lj_tests::{path_str, run_with_timeout, Ctx, Mode, Output};

mod store {
    lj_tests::mode_tests! {
        prefix = "store::", run = lj_tests::run_ctx;
        layers_show_their_owners: root setuid;
        refusals: setuid;
        rootless_refused: rootless;
        host_cannot_reach_layers: setuid;
    }
}

/// A root-owned store under `/var/lib` holding one world, `worlds/bb` (a copy of the test
/// world, mode 0700, with a few root-owned files), removed on drop.
struct Store {
    dir: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Store {
    fn new(cx: &Ctx) -> Store {
        let dir = PathBuf::from(format!(
            "/var/lib/lj-test-store-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("worlds")).unwrap();
        for d in [&dir, &dir.join("worlds")] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let w = dir.join("worlds/bb");
        sh(&format!(
            "cp -a {src} {w} && chown -R 0:0 {w} && chmod 0700 {w} && \
             echo secret > {w}/etc/secret && chown 42:42 {w}/etc/secret && chmod 0600 {w}/etc/secret && \
             echo victim > {w}/etc/victim && chmod 0644 {w}/etc/victim && \
             cp {w}/bin/busybox {w}/bin/busybox.suid && chmod 4755 {w}/bin/busybox.suid",
            src = path_str(&cx.world()),
            w = path_str(&w)
        ));
        Store { dir }
    }

    fn world(&self) -> String {
        path_str(&self.dir.join("worlds/bb"))
    }

    fn path(&self) -> String {
        path_str(&self.dir)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = Command::new("chmod").args(["-R", "u+rwX"]).arg(&self.dir).status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn sh(script: &str) {
    let st = Command::new("/bin/sh").args(["-c", script]).status().expect("run sh");
    assert!(st.success(), "failed: {script}");
}

fn user_name(cx: &Ctx) -> String {
    cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string()
}

/// ljspawn of this mode with `args`; setuid runs see `conf` (None: no file) as
/// `/etc/lightjail.conf`, in a private mount namespace.
fn lj(cx: &Ctx, conf: Option<&str>, args: &[&str]) -> Output {
    let mut argv: Vec<String> = Vec::new();
    if cx.mode == Mode::Setuid {
        let scratch = cx.root_tempdir();
        let mnt = scratch.join("etc");
        fs::create_dir(&mnt).unwrap();
        let conf_file = scratch.join("lightjail.conf");
        if let Some(t) = conf {
            fs::write(&conf_file, t).unwrap();
        }
        argv.extend(lj_tests::private_etc_argv(&mnt, conf.map(|_| conf_file.as_path()), 0, 0o644));
        std::mem::forget(scratch); // removed with the test dir; the mount namespace is gone
    }
    if let Some(user) = &cx.run_as {
        argv.push("setpriv".into());
        argv.extend(lj_tests::setpriv_args(user));
    }
    argv.push(path_str(&cx.bin));
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(&cx.dir);
    run_with_timeout(cmd, None, Duration::from_secs(60)).unwrap_or_else(|e| panic!("cannot run ljspawn: {e}"))
}

/// An upper and work dir owned by the caller, for a kept upper.
fn upper(cx: &Ctx) -> (lj_tests::TempDir, String, String) {
    let t = cx.tempdir();
    let (u, w) = (t.join("u"), t.join("w"));
    for d in [&u, &w] {
        fs::create_dir(d).unwrap();
        cx.chown_caller(d);
    }
    (t, path_str(&u), path_str(&w))
}

fn subuid_base(cx: &Ctx) -> Option<u32> {
    let name = user_name(cx);
    fs::read_to_string("/etc/subuid").ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.next()?.parse().ok())?
    })
}

/// Root's files show as the jail's root (and uid 42 as 42), can be modified, deleted and
/// chowned, and what the jail writes lands in the upper owned by the caller or its subuids.
fn layers_show_their_owners(cx: &Ctx) {
    let s = Store::new(cx);
    let conf = format!(
        "# test\nstore /nonexistent allow *\nstore {} allow nosuchuser,{}\n",
        s.path(),
        user_name(cx)
    );
    let (_t, u, w) = upper(cx);
    let script = "stat -c '%u:%g %a %n' /etc/passwd /etc/secret; \
                  echo added >> /etc/passwd && rm /etc/victim && chown 42:42 /etc/group && cat /etc/secret && \
                  test ! -e /etc/victim && echo DONE";
    let out = lj(
        cx,
        Some(&conf),
        &[
            "--subids",
            "--cap-add",
            "container",
            "--idmap-layer",
            &s.world(),
            "--upper",
            &u,
            "--work",
            &w,
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
    )
    .ok();
    assert_eq!(out.stdout, "0:0 644 /etc/passwd\n42:42 600 /etc/secret\nsecret\nDONE\n", "{}", out.report());
    // The upper holds the changes, owned by the caller (jail 0) and its subuid for jail 42.
    let up = Path::new(&u);
    let passwd = fs::metadata(up.join("etc/passwd")).unwrap();
    assert_eq!(passwd.uid(), cx.caller_uid, "etc/passwd in the upper");
    assert!(fs::read_to_string(up.join("etc/passwd")).unwrap().ends_with("added\n"));
    let group = fs::metadata(up.join("etc/group")).unwrap();
    let want42 = if cx.mode == Mode::Root { 42 } else { subuid_base(cx).expect("subuid range") + 41 };
    assert_eq!(group.uid(), want42, "etc/group chowned to jail 42");
    let victim = fs::symlink_metadata(up.join("etc/victim")).unwrap();
    assert_eq!(victim.mode() & libc::S_IFMT, libc::S_IFCHR, "a whiteout for the deleted file");
    // The store is untouched.
    assert_eq!(fs::read_to_string(s.dir.join("worlds/bb/etc/victim")).unwrap(), "victim\n");
    assert_eq!(fs::metadata(s.dir.join("worlds/bb/etc/group")).unwrap().uid(), 0);
    // A setuid-root file of the layer gives nothing in the jail (nosuid): a jail user stays itself.
    let out = lj(
        cx,
        Some(&conf),
        &["--subids", "--user", "1000", "--idmap-layer", &s.world(), "--", "/bin/busybox.suid", "id", "-u"],
    )
    .ok();
    assert_eq!(out.stdout, "1000\n", "{}", out.report());
    // The plan says which layer is idmapped.
    let out =
        lj(cx, Some(&conf), &["--dry-run", "--subids", "--idmap-layer", &s.world(), "--", "/bin/true"]).ok();
    assert!(out.stdout.contains(&format!("{} (idmapped)", s.world())), "{}", out.report());
}

fn expect_refused(out: Output, want: &str) {
    let out = out.expect_ljspawn_error(125);
    assert_eq!(out.stderr.trim_end(), want, "{}", out.report());
}

/// Every way out of a granted store is refused with one line, and nothing runs.
fn refusals(cx: &Ctx) {
    let s = Store::new(cx);
    let user = user_name(cx);
    let grant = format!("store {} allow {user}\n", s.path());
    let w = s.world();
    let run = |conf: Option<&str>, layer: &str| {
        lj(cx, conf, &["--subids", "--idmap-layer", layer, "--", "/bin/echo", "RAN"])
    };
    let not_granted = |l: &str| {
        format!(
            "ljspawn: --idmap-layer {l} is not in a store granted to you in /etc/lightjail.conf \
             (a line like 'store DIR allow USER' is missing, DIR the lightjail root holding the layer)"
        )
    };
    // No grant: no file, another user's grant, another store's.
    for conf in [
        None,
        Some(format!("store {} allow root,@nosuchgroup\n", s.path())),
        Some("store /usr/local/lj allow *\n".into()),
    ] {
        expect_refused(run(conf.as_deref(), &w), &not_granted(&w));
    }
    // A layer outside the store, and the store itself.
    expect_refused(run(Some(&grant), &path_str(&cx.world())), &not_granted(&path_str(&cx.world())));
    expect_refused(run(Some(&grant), &s.path()), &not_granted(&s.path()));
    // `..` (and '.', '//').
    let out = run(Some(&grant), &format!("{}/worlds/../worlds/bb", s.path())).expect_status(2);
    assert!(out.stderr.contains("must not contain '..'"), "{}", out.report());
    let out = run(Some(&grant), &format!("{}//worlds/bb", s.path())).expect_status(2);
    assert!(out.stderr.contains("must be an absolute path without"), "{}", out.report());
    // A hidden directory beneath the store (a lightjail root's staging areas and logs).
    fs::create_dir(s.dir.join(".logs")).unwrap();
    let l = format!("{}/.logs", s.path());
    expect_refused(
        run(Some(&grant), &l),
        &format!("ljspawn: refused: --idmap-layer {l}: a hidden directory ('.NAME') beneath the store {} is not a layer", s.path()),
    );
    // A symlink in the store's path (to the real layer).
    std::os::unix::fs::symlink(s.dir.join("worlds"), s.dir.join("link")).unwrap();
    let l = format!("{}/link/bb", s.path());
    expect_refused(
        run(Some(&grant), &l),
        &format!(
            "ljspawn: refused: --idmap-layer {l}: {}/link is a symlink (a store's path follows none)",
            s.path()
        ),
    );
    // A store directory writable by others (or its group), or not root's.
    for (mode, what) in [(0o757, "writable by group or others"), (0o775, "writable by group or others")] {
        fs::set_permissions(s.dir.join("worlds"), fs::Permissions::from_mode(mode)).unwrap();
        expect_refused(
            run(Some(&grant), &w),
            &format!("ljspawn: refused: --idmap-layer {w}: {}/worlds is {what}", s.path()),
        );
    }
    fs::set_permissions(s.dir.join("worlds"), fs::Permissions::from_mode(0o755)).unwrap();
    // A layer swapped between resolution and open: a directory the caller owns is in the
    // granted path, and the caller flips it between the real layer (a symlink) and its own
    // directory while ljspawn runs: every run is refused, none runs.
    let mine = s.dir.join("mine");
    fs::create_dir(&mine).unwrap();
    cx.chown_caller(&mine);
    let grant_mine = format!("store {} allow {user}\n", path_str(&mine));
    let target = format!("{}/bb", path_str(&mine));
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (stop, mine, real) = (stop.clone(), mine.clone(), s.dir.join("worlds/bb"));
        std::thread::spawn(move || {
            let (bb, tmp) = (mine.join("bb"), mine.join("bb.new"));
            let own = mine.join("own");
            let _ = fs::create_dir(&own);
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let _ = fs::remove_file(&tmp);
                let _ = if i.is_multiple_of(2) {
                    std::os::unix::fs::symlink(&real, &tmp)
                } else {
                    std::os::unix::fs::symlink(&own, &tmp)
                };
                let _ = fs::rename(&tmp, &bb);
                i += 1;
            }
        })
    };
    for _ in 0..10 {
        let out = run(Some(&grant_mine), &target).expect_ljspawn_error(125);
        assert!(!out.stdout.contains("RAN"), "{}", out.report());
        assert!(
            out.stderr.starts_with(&format!("ljspawn: refused: --idmap-layer {target}: ")),
            "{}",
            out.report()
        );
    }
    stop.store(true, Ordering::SeqCst);
    flipper.join().unwrap();
    expect_refused(run(Some(&grant_mine), &target), &format!("ljspawn: refused: --idmap-layer {target}: {} is not owned by root (a store is root's, from / down)", path_str(&mine)));
    // Control: the granted layer runs.
    let out = run(Some(&grant), &w).ok();
    assert_eq!(out.stdout, "RAN\n", "{}", out.report());
}

/// Plain rootless ljspawn says what is missing and how to get it.
fn rootless_refused(cx: &Ctx) {
    let out = lj(cx, None, &["--idmap-layer", &path_str(&cx.world()), "--", "/bin/true"]);
    expect_refused(
        out,
        "ljspawn: --idmap-layer needs setuid ljspawn (make install-setuid) and a store grant in \
         /etc/lightjail.conf (a line like 'store /usr/local/lj allow USER'); rootless ljspawn cannot idmap",
    );
}

/// From the host, the granted user can neither read a layer's file nor run its setuid-root
/// program; through the jail it can (nosuid, in its own user namespace).
fn host_cannot_reach_layers(cx: &Ctx) {
    let s = Store::new(cx);
    let w = s.world();
    // Through sh: setpriv itself still holds root's capabilities while it execs its program.
    let out = cx.command(["/bin/sh", "-c", &format!("exec /bin/cat {w}/etc/passwd")]).output().unwrap();
    assert!(!out.status.success(), "the user read a layer file from the host");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    let out = cx.command(["/bin/sh", "-c", &format!("exec {w}/bin/busybox.suid id -u")]).output().unwrap();
    assert!(
        !out.status.success(),
        "the user ran a layer's setuid file from the host: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let grant = format!("store {} allow {}\n", s.path(), user_name(cx));
    let out =
        lj(cx, Some(&grant), &["--subids", "--idmap-layer", &w, "--", "/bin/head", "-c", "5", "/etc/passwd"])
            .ok();
    assert_eq!(out.stdout, "root:", "{}", out.report());
}
