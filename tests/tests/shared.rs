//! End-to-end: a non-root user builds from and runs the administrator's images (a shared
//! system root, `LIGHTJAIL_PATH`, `store DIR allow WHO`, setuid ljspawn idmapping the
//! system's layers).
//!
//! The system root is made under `/var/lib` (a root-owned path: a store under `/tmp` is
//! refused, `/tmp` being writable by others) and removed afterwards; the Debian world is
//! imported (copied) into it from the shared `/var/tmp/lj-debian-world`, never changed.
//! `/etc/lightjail.conf` is a private overlay of `/etc` for each setuid run (as in `net.rs`).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lj_tests::{path_str, run_with_timeout, Ctx, Mode, Output};

mod shared {
    lj_tests::mode_tests! {
        prefix = "shared::", run = lj_tests::run_ctx;
        debian_system_images: setuid;
        busybox_system_images: setuid;
        rootless_refused_in_one_line: rootless;
    }
}

/// A shared system root (0755, root's) under `/var/lib`, removed on drop.
struct System {
    dir: PathBuf,
}

impl System {
    fn new(tag: &str) -> System {
        let dir = PathBuf::from(format!("/var/lib/lj-test-shared-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        System { dir }
    }

    fn path(&self) -> String {
        path_str(&self.dir)
    }

    /// ljbuild as root on the system root.
    fn ljbuild(&self, cx: &Ctx, args: &[&str], limit: Duration) -> Output {
        let mut cmd = Command::new(cx.dir.join("bin/ljbuild"));
        cmd.args(args).env("LIGHTJAIL_ROOT", &self.dir).env_remove("LIGHTJAIL_PATH").current_dir(&cx.dir);
        run_with_timeout(cmd, None, limit).expect("run ljbuild")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The user's side: its own root, and the system root searched after it.
struct User<'a> {
    cx: &'a Ctx,
    td: lj_tests::TempDir,
    system: String,
}

impl User<'_> {
    fn root(&self) -> PathBuf {
        self.td.join("root")
    }

    /// ljbuild as the user (setuid mode: `/etc/lightjail.conf` is `conf`, None: no file),
    /// with the setuid ljspawn of this mode (or, rootless, the plain one).
    fn ljbuild(&self, conf: Option<&str>, args: &[&str], limit: Duration) -> Output {
        let scratch = self.cx.root_tempdir();
        let mnt = scratch.join("etc");
        fs::create_dir(&mnt).unwrap();
        let conf_file = scratch.join("lightjail.conf");
        if let Some(t) = conf {
            fs::write(&conf_file, t).unwrap();
        }
        let user = self.cx.run_as.as_ref().expect("the tests run as root");
        let mut argv: Vec<OsString> =
            lj_tests::private_etc_argv(&mnt, conf.map(|_| conf_file.as_path()), 0, 0o644)
                .into_iter()
                .map(OsString::from)
                .collect();
        argv.push("setpriv".into());
        argv.extend(lj_tests::setpriv_args(user).into_iter().map(OsString::from));
        argv.extend(
            [
                "/usr/bin/env".into(),
                "PATH=/usr/bin:/bin".into(),
                "CI=true".into(),
                format!("HOME={}", path_str(self.td.path())),
                format!("LIGHTJAIL_ROOT={}", path_str(&self.root())),
                format!("LIGHTJAIL_PATH={}", self.system),
                format!("LJSPAWN={}", path_str(&self.cx.bin)),
                path_str(&self.cx.dir.join("bin/ljbuild")),
            ]
            .map(OsString::from),
        );
        argv.extend(args.iter().map(OsString::from));
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(self.td.path());
        let mut out = run_with_timeout(cmd, None, limit).expect("run ljbuild");
        out.command = format!("[{}] ljbuild {}", self.cx.mode, args.join(" "));
        out
    }

    fn jailfile(&self, dir: &str, text: &str) -> String {
        let d = self.td.join(dir);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("Jailfile"), text).unwrap();
        self.cx.chown_caller(&d);
        self.cx.chown_caller(&d.join("Jailfile"));
        path_str(&d)
    }

    /// A shell line run as the user on the host (through sh: setpriv itself still holds
    /// root's capabilities when it execs).
    fn host(&self, script: &str) -> std::process::Output {
        self.cx.command(["/bin/sh", "-c", script]).output().unwrap()
    }
}

fn user<'a>(cx: &'a Ctx, system: &System) -> User<'a> {
    let td = cx.tempdir();
    User { cx, td, system: system.path() }
}

fn name(cx: &Ctx) -> String {
    cx.run_as.as_ref().map_or("ljtest", |u| u.name.as_str()).to_string()
}

/// The store directory a layer reference (`worlds/NAME`, `NS/NAME/VERSION/root`, a symlink to
/// `../[../../]store/sha256/HEX`) names: what ljbuild hands ljspawn.
fn stored(link: &Path) -> PathBuf {
    let target = fs::read_link(link)
        .unwrap_or_else(|e| panic!("{} is not a link into the store: {e}", link.display()));
    let mut dir = link.parent().unwrap().to_path_buf();
    for c in target.components() {
        match c {
            std::path::Component::ParentDir => {
                dir.pop();
            }
            c => dir.push(c),
        }
    }
    assert!(dir.parent().unwrap().ends_with("store/sha256"), "{}", dir.display());
    dir
}

fn not_granted(layer: &Path) -> String {
    format!(
        "ljspawn: --idmap-layer {} is not in a store granted to you in /etc/lightjail.conf \
         (a line like 'store DIR allow USER' is missing, DIR the lightjail root holding the layer)",
        layer.display()
    )
}

/// The busybox world: the whole story in seconds (no network).
fn busybox_system_images(cx: &Ctx) {
    let sys = System::new("bb");
    sys.ljbuild(cx, &["world", "import", "bb", &path_str(&cx.world())], Duration::from_secs(60)).ok();
    let base = cx.tempdir();
    fs::write(base.join("Jailfile"), "name ci/base\nversion 1\nworld bb\n---\necho base > /etc/base\necho v > /etc/victim\nchown 42:42 /etc/victim\n").unwrap();
    sys.ljbuild(cx, &["--net", "none", &base.str()], Duration::from_secs(60)).ok();
    // What resolution reads is readable; the layers are not.
    for (rel, mode) in [
        ("", 0o755),
        ("worlds", 0o755),
        ("worlds/bb", 0o700),
        ("ci/base/1", 0o755),
        ("ci/base/1/root", 0o700),
        ("ci/base/1/meta.json", 0o644),
        ("ci/base/1/build.log", 0o600),
    ] {
        let m = fs::metadata(sys.dir.join(rel)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, mode, "{rel}: {m:o}");
    }
    let u = user(cx, &sys);
    let grant = format!("store {} allow nosuchuser,{}\n", sys.path(), name(cx));
    let child = u.jailfile(
        "child",
        "name me/child\nfrom ci/base 1\n---\nstat -c '%u:%g %n' /etc/base /etc/victim\necho more >> /etc/base\nrm /etc/victim\n",
    );
    let out = u.ljbuild(Some(&grant), &["--net", "none", &child], Duration::from_secs(60)).ok();
    assert!(out.stdout.contains("0:0 /etc/base\n42:42 /etc/victim\n"), "{}", out.report());
    let meta: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(
            fs::read_dir(u.root().join("me/child"))
                .unwrap()
                .flatten()
                .next()
                .unwrap()
                .path()
                .join("meta.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["parents"][0]["root"], serde_json::json!(sys.path()), "{meta}");
    assert_eq!(meta["world"]["root"], serde_json::json!(sys.path()), "{meta}");
    let out = u
        .ljbuild(
            Some(&grant),
            &["run", "me/child", "--", "/bin/sh", "-c", "cat /etc/base; test -e /etc/victim || echo GONE"],
            Duration::from_secs(60),
        )
        .ok();
    assert_eq!(out.stdout, "base\nmore\nGONE\n", "{}", out.report());
    // `list` shows both, the system's marked.
    let out = u.ljbuild(None, &["list"], Duration::from_secs(30)).ok();
    let line = |p: &str| out.stdout.lines().find(|l| l.starts_with(p)).unwrap_or("").to_string();
    assert!(line("ci/base@1 ").ends_with(&format!("(from {})", sys.path())), "{}", out.report());
    assert!(
        line("me/child@").contains("ci/base@1") && !line("me/child@").contains("(from"),
        "{}",
        out.report()
    );
    // Cached: the same inputs; a rebuild of the system image changes the key.
    let out = u.ljbuild(Some(&grant), &["--net", "none", &child], Duration::from_secs(60)).ok();
    assert!(out.stdout.contains("cached me/child@"), "{}", out.report());
    // Removed and built again with the same inputs: the same bytes, the same layer digest, so
    // the child is still cached (early cutoff).
    sys.ljbuild(cx, &["rm", "ci/base@1", "--force"], Duration::from_secs(60)).ok();
    sys.ljbuild(cx, &["--net", "none", &base.str()], Duration::from_secs(60)).ok();
    let out = u.ljbuild(Some(&grant), &["--net", "none", &child], Duration::from_secs(60)).ok();
    assert!(out.stdout.contains("cached me/child@"), "{}", out.report());
    // Rebuilt into other bytes (same version, --force): another layer, so the child is built.
    fs::write(base.join("Jailfile"), "name ci/base\nversion 1\nworld bb\n---\necho base2 > /etc/base\necho v > /etc/victim\nchown 42:42 /etc/victim\n").unwrap();
    sys.ljbuild(cx, &["--net", "none", "--force", &base.str()], Duration::from_secs(60)).ok();
    let out = u.ljbuild(Some(&grant), &["--net", "none", &child], Duration::from_secs(60)).ok();
    assert!(out.stdout.contains("built me/child@"), "{}", out.report());
    assert!(out.stdout.contains("0:0 /etc/base\n42:42 /etc/victim\n"), "{}", out.report());
    // Ungranted: refused, naming the rule.
    let out =
        u.ljbuild(None, &["run", "ci/base", "--", "/bin/true"], Duration::from_secs(30)).expect_status(125);
    assert!(out.stderr.contains(&not_granted(&stored(&sys.dir.join("worlds/bb")))), "{}", out.report());
}

/// The administrator's Debian image with packages; the user's child runs apt-get install,
/// useradd, edits a root-owned file in /etc and deletes another; the child runs with them.
fn debian_system_images(cx: &Ctx) {
    let world = PathBuf::from(
        std::env::var_os("LJ_DEBIAN_WORLD").unwrap_or_else(|| "/var/tmp/lj-debian-world".into()),
    );
    if !world.join("usr/bin/apt-get").is_file() {
        cx.skip(&format!("no Debian world at {} (tests/prepare.sh makes one)", world.display()));
        return;
    }
    let sys = System::new("deb");
    let t = Instant::now();
    sys.ljbuild(cx, &["world", "import", "debian", &path_str(&world)], Duration::from_secs(300)).ok();
    eprintln!("system world import: {:?}", t.elapsed());
    let base = cx.tempdir();
    fs::write(
        base.join("Jailfile"),
        "name ci/base\nversion 1\nworld debian\n---\napt-get update && apt-get install -y uuid-runtime\n",
    )
    .unwrap();
    let out = sys.ljbuild(cx, &[&base.str()], Duration::from_secs(300));
    if out.status() == 1
        && (out.stdout.contains("Temporary failure resolving") || out.stdout.contains("Could not resolve"))
    {
        cx.skip("no network to the Debian mirror");
        return;
    }
    out.ok();
    let u = user(cx, &sys);
    let grant = format!("store {} allow {}\n", sys.path(), name(cx));
    let child = u.jailfile(
        "child",
        "name me/app\nfrom ci/base 1\n---\nstat -c '%U:%G %n' /etc/passwd /var/lib/libuuid\n\
         apt-get install -y bc\nuseradd -m alice\necho 'lj shared' >> /etc/issue\nrm /etc/issue.net\n",
    );
    let out = u.ljbuild(Some(&grant), &[&child], Duration::from_secs(300)).ok();
    assert!(out.stdout.contains("root:root /etc/passwd\nuuidd:uuidd /var/lib/libuuid\n"), "{}", out.report());
    assert!(out.stdout.contains("Setting up bc"), "{}", out.report());
    for bad in ["Permission denied", "Operation not permitted", "nobody"] {
        assert!(!out.stdout.contains(bad), "{bad}\n{}", out.report());
    }
    let out = u.ljbuild(
        Some(&grant),
        &["run", "me/app", "--", "/bin/sh", "-c", "echo 2+3 | bc; id -un alice; tail -1 /etc/issue; test -e /etc/issue.net || echo GONE; stat -c %U /etc/issue /home/alice; uuidgen | wc -c"],
        Duration::from_secs(60),
    )
    .ok();
    assert_eq!(out.stdout, "5\nalice\nlj shared\nGONE\nroot\nalice\n37\n", "{}", out.report());
    // From the host the user reads no layer file and runs no setuid program of the store.
    let layer = sys.dir.join("ci/base/1/root");
    let o = u.host(&format!("exec cat {}/etc/passwd", path_str(&sys.dir.join("worlds/debian"))));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    let o = u.host(&format!("ls {}", path_str(&layer)));
    assert!(!o.status.success(), "the user listed a system layer");
    let o = u.host(&format!("exec {}/usr/bin/passwd --help", path_str(&sys.dir.join("worlds/debian"))));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    // Ungranted.
    let out = u
        .ljbuild(Some("# nothing\n"), &["run", "ci/base", "--", "/bin/true"], Duration::from_secs(30))
        .expect_status(125);
    assert!(out.stderr.contains(&not_granted(&stored(&sys.dir.join("worlds/debian")))), "{}", out.report());
}

/// Plain rootless ljspawn: one line saying what is missing and how the administrator grants it.
fn rootless_refused_in_one_line(cx: &Ctx) {
    if cx.run_as.is_none() {
        cx.skip("needs the tests to run as root (root builds the system image)");
        return;
    }
    let sys = System::new("rl");
    sys.ljbuild(cx, &["world", "import", "bb", &path_str(&cx.world())], Duration::from_secs(60)).ok();
    let u = user(cx, &sys);
    let child = u.jailfile("c", "name me/c\nworld bb\n---\ntrue\n");
    let out = u.ljbuild(None, &[&child], Duration::from_secs(30)).expect_status(7);
    assert_eq!(
        out.stderr.lines().last().unwrap_or(""),
        format!(
            "ljbuild: layers from {0} need a setuid ljspawn, and {1} is not setuid root (the administrator \
             installs ljspawn setuid (make install-setuid) and grants the store in /etc/lightjail.conf: \
             'store {0} allow USER')",
            sys.path(),
            path_str(&cx.bin)
        ),
        "{}",
        out.report()
    );
    assert_eq!(cx.mode, Mode::Rootless);
}
