//! End-to-end tests of OCI images in `ljbuild`: import of image layouts, OCI and docker
//! archives (whiteouts, opaque directories, hard links, modes, owners, xattrs, digests), the
//! image config as `ljbuild run`'s defaults, export, and the real tools on the other side
//! (buildah, skopeo, umoci, podman). Images are made offline by `tests/probes/mkimage.py` or by
//! buildah. Needs `tests/prepare.sh` (as root) after a build; see `tests/src/lib.rs`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lj_tests::{path_str, run_with_timeout, which, Ctx, Mode, TempDir};

fn run(name: &str, mode: Mode, test: fn(&Lj)) {
    let Some(cx) = Ctx::new(name, mode) else { return };
    let Some(lj) = Lj::new(&cx) else { return };
    test(&lj);
}

lj_tests::mode_tests! {
    prefix = "oci::", run = crate::run;
    import_layout_whiteouts_links_modes: root rootless;
    import_archives: root rootless;
    corrupt_blob_publishes_nothing: root rootless;
    not_an_image_is_refused: root rootless;
    run_defaults_from_config: root rootless;
    export_round_trip: root rootless;
    registry_two_roots: root rootless;
    registry_auth: root rootless;
    registry_token_auth: root rootless;
    owners_shifted_and_restored: root rootless;
    zstd_layers: root rootless;
    registry_interrupted: root rootless;
    pull_verifies_claimed_layers: root rootless;
    images_share_base_layers: root rootless;
    deep_image_is_flattened: root rootless;
    capabilities_and_big_ids: root rootless;
}

/// One test's lightjail root, as the caller of its mode ([`lj_tests::Ljbuild`]'s methods, and
/// the images and worlds of these tests).
struct Lj<'a>(lj_tests::Ljbuild<'a>);

impl<'a> std::ops::Deref for Lj<'a> {
    type Target = lj_tests::Ljbuild<'a>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> Lj<'a> {
    fn new(cx: &'a Ctx) -> Option<Lj<'a>> {
        if which("python3").is_none() {
            cx.skip("python3 not installed (tests/probes/mkimage.py makes the test images)");
            return None;
        }
        lj_tests::Ljbuild::new(cx).map(Lj)
    }

    /// Writes an image from `spec` (JSON, see mkimage.py) at `out` (`kind`: layout,
    /// oci-archive, docker-archive), readable by the caller.
    fn image(&self, spec: &str, out: &str, kind: &str) -> PathBuf {
        let spec_file = self.td.join(format!("{out}.spec.json"));
        fs::write(&spec_file, spec).expect("write spec");
        let dest = self.td.join(out);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/mkimage.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&spec_file).arg(&dest).arg(kind);
        let out = run_with_timeout(cmd, None, Duration::from_secs(60)).expect("run mkimage.py");
        assert_eq!(out.status(), 0, "mkimage.py: {}", out.report());
        let mut chown = Command::new("chown");
        chown.arg("-R").arg(format!("{}:{}", self.cx.caller_uid, self.cx.caller_gid)).arg(&dest);
        if self.cx.caller_uid != lj_tests::current_uid() {
            assert_eq!(run_with_timeout(chown, None, Duration::from_secs(60)).unwrap().status(), 0);
        }
        dest
    }

    fn world(&self, name: &str) -> PathBuf {
        self.root().join("worlds").join(name)
    }

    /// The merged tree of world `name`: the world's directory itself, or, for a world of
    /// several layers, a read-only overlay of them the test mounts (as ljspawn does, with
    /// `userxattr`), unmounted when dropped.
    fn view(&self, name: &str) -> View {
        let parts = world_parts(self, name);
        if parts.is_empty() {
            return View { dir: self.world(name), _td: None };
        }
        let td = self.cx.root_tempdir();
        let dir = td.join("merged");
        fs::create_dir(&dir).unwrap();
        let mut lowers: Vec<String> = parts
            .iter()
            .rev()
            .map(|d| path_str(&self.root().join("store/sha256").join(d.trim_start_matches("sha256:"))))
            .collect();
        lowers.push(path_str(&fs::canonicalize(self.world(name)).unwrap()));
        tool(&[
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("ro,userxattr,lowerdir={}", lowers.join(":")),
            &path_str(&dir),
        ]);
        View { dir, _td: Some(td) }
    }

    /// Builds `name` on `world` with `script`.
    fn build_on(&self, world: &str, name: &str, script: &str) {
        self.build(name, &format!("world {world}"), script);
    }

    /// Builds `name` with the header line `head` (`world W`, `from P`) and `script`.
    fn build(&self, name: &str, head: &str, script: &str) {
        let dir = self.td.join(format!("jf-{}", name.replace('/', "-")));
        fs::create_dir_all(&dir).unwrap();
        self.cx.chown_caller(&dir);
        let jf = dir.join("Jailfile");
        self.cx.write_caller_file(&jf, &format!("name {name}\n{head}\n---\n{script}\n"));
        self.ok(&[&path_str(&jf)]);
    }
}

fn busybox(cx: &Ctx) -> String {
    path_str(&cx.world().join("bin/busybox"))
}

/// The main test image: layer 1 a small busybox system with the cases, layer 2 whiteouts, an
/// opaque directory, a file replaced by a directory, writes into a read-only directory and
/// through a symlink that points outside.
fn main_spec(cx: &Ctx, planted: &str, gzip: bool) -> String {
    format!(
        r#"{{"tag": "v1", "gzip": {gzip},
  "config": {{"Env": ["FOO=bar", "PATH=/bin"], "WorkingDir": "/data", "Cmd": ["/bin/cat", "hello"]}},
  "layers": [[
    {{"path": "bin", "type": "dir"}},
    {{"path": "bin/busybox", "src": "{bb}", "mode": 493}},
    {{"path": "bin/sh", "type": "symlink", "target": "busybox"}},
    {{"path": "bin/cat", "type": "symlink", "target": "busybox"}},
    {{"path": "bin/ls", "type": "symlink", "target": "busybox"}},
    {{"path": "bin/stat", "type": "symlink", "target": "busybox"}},
    {{"path": "etc", "type": "dir"}},
    {{"path": "etc/passwd", "data": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/data:/bin/sh\n"}},
    {{"path": "etc/group", "data": "root:x:0:\napp:x:1001:\n"}},
    {{"path": "tmp", "type": "dir", "mode": 1023}},
    {{"path": "data", "type": "dir"}},
    {{"path": "data/gone", "data": "g"}},
    {{"path": "data/keep", "data": "k"}},
    {{"path": "data/hello", "data": "hello\n"}},
    {{"path": "data/hello2", "type": "link", "target": "data/hello"}},
    {{"path": "data/suid", "data": "s", "mode": 2541, "uid": 1000, "gid": 1001}},
    {{"path": "data/attr", "data": "a", "xattrs": {{"user.lj.test": "v1"}}}},
    {{"path": "data/fifo", "type": "fifo"}},
    {{"path": "replaced", "type": "dir"}},
    {{"path": "replaced/old", "data": "old"}},
    {{"path": "replaced/sub", "type": "dir"}},
    {{"path": "replaced/sub/deep", "data": "d"}},
    {{"path": "ro", "type": "dir", "mode": 365}},
    {{"path": "ro/inner", "data": "i"}},
    {{"path": "esc", "type": "symlink", "target": "/tmp"}},
    {{"path": "dev", "type": "dir"}},
    {{"path": "dev/zero-file", "data": "never"}}
  ], [
    {{"path": "data/.wh.gone"}},
    {{"path": "replaced", "type": "dir"}},
    {{"path": "replaced/new", "data": "new"}},
    {{"path": "replaced/.wh..wh..opq"}},
    {{"path": "ro/added", "data": "a"}},
    {{"path": "esc/{planted}", "data": "p"}},
    {{"path": "data/keep", "type": "dir"}},
    {{"path": "data/keep/inside", "data": "in"}}
  ]]}}"#,
        bb = busybox(cx)
    )
}

fn planted_name() -> String {
    format!("lj-oci-planted-{}", std::process::id())
}

fn xattr(p: &Path, name: &str) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(format!("import os,sys;sys.stdout.write(os.getxattr({:?},{name:?}).decode())", path_str(p)));
    run_with_timeout(cmd, None, Duration::from_secs(20)).unwrap().ok().stdout
}

/// Checks the main image's world at `w`.
fn check_main_world(lj: &Lj, w: &Path, planted: &str) {
    let caller = (lj.cx.caller_uid, lj.cx.caller_gid);
    assert!(!w.join("data/gone").exists(), "whiteout .wh.gone not applied");
    assert!(w.join("data/keep").is_dir() && fs::read_to_string(w.join("data/keep/inside")).unwrap() == "in");
    assert!(
        !w.join("replaced/old").exists() && !w.join("replaced/sub").exists(),
        "opaque dir kept lower entries"
    );
    assert_eq!(
        fs::read_to_string(w.join("replaced/new")).unwrap(),
        "new",
        "opaque dir lost this layer's entry"
    );
    let (h1, h2) =
        (fs::metadata(w.join("data/hello")).unwrap(), fs::metadata(w.join("data/hello2")).unwrap());
    assert_eq!((h1.ino(), h1.nlink()), (h2.ino(), 2), "hard link not kept");
    let suid = fs::metadata(w.join("data/suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755, "mode not kept");
    let _ = caller;
    assert_eq!((suid.uid(), suid.gid()), on_host(lj, 1000, 1001), "owner (root: kept; rootless: shifted)");
    assert_eq!(fs::metadata(w.join("ro")).unwrap().permissions().mode() & 0o7777, 0o555);
    assert!(w.join("ro/inner").is_file() && w.join("ro/added").is_file(), "writes into a read-only dir");
    assert_eq!(fs::metadata(w.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
    assert!(fs::symlink_metadata(w.join("data/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(xattr(&w.join("data/attr"), "user.lj.test"), "v1", "user xattr not kept");
    assert!(w.join("tmp").join(planted).is_file(), "a write through a symlink must land inside the world");
    assert!(!Path::new("/tmp").join(planted).exists(), "a layer wrote outside the world through a symlink");
    assert!(!w.join("dev/zero-file").exists(), "/dev's contents must be skipped");
    assert_eq!(fs::read_link(w.join("esc")).unwrap(), Path::new("/tmp"));
}

/// The host owner of an image's `uid:gid` in a world the caller imported: root keeps them;
/// rootless, they are shifted into the caller's subordinate range (start + N - 1; 0 is the
/// caller), as rootless podman stores them.
fn on_host(lj: &Lj, uid: u32, gid: u32) -> (u32, u32) {
    if lj.cx.mode == Mode::Root {
        return (uid, gid);
    }
    let start = |file: &str| -> u32 {
        let text = fs::read_to_string(file).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{}:", lj_tests::TEST_USER)))
            .unwrap_or_else(|| panic!("no range for {} in {file}", lj_tests::TEST_USER));
        line.split(':').nth(1).unwrap().parse().unwrap()
    };
    let shift = |id: u32, me: u32, file: &str| if id == 0 { me } else { start(file) + id - 1 };
    (shift(uid, lj.cx.caller_uid, "/etc/subuid"), shift(gid, lj.cx.caller_gid, "/etc/subgid"))
}

fn no_staging_left(lj: &Lj) {
    let left: Vec<_> =
        fs::read_dir(lj.root().join(".tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

fn import_layout_whiteouts_links_modes(lj: &Lj) {
    let planted = planted_name();
    let img = lj.image(&main_spec(lj.cx, &planted, true), "layout", "layout");
    let out = lj.ok(&["world", "import", "img", &format!("oci:{}:v1", path_str(&img))]);
    assert!(out.stdout.contains("imported world img"), "{}", out.report());
    check_main_world(lj, &lj.world("img"), &planted);
    let side: serde_json::Value =
        serde_json::from_slice(&fs::read(lj.root().join("worlds/.img.image.json")).unwrap()).unwrap();
    assert_eq!(side["diff_ids"].as_array().map(Vec::len), Some(2), "the sidecar records both layers");
    assert_eq!(side["defaults"]["working_dir"], "/data");
    // A plain directory holding a layout is recognized too; an unknown tag lists the tags.
    lj.ok(&["world", "import", "img-again", &path_str(&img)]);
    lj.fails(&["world", "import", "x", &format!("oci:{}:nope", path_str(&img))], 8, &["no tag 'nope'", "v1"]);
    no_staging_left(lj);
}

fn import_archives(lj: &Lj) {
    let planted = planted_name();
    let oa = lj.image(&main_spec(lj.cx, &planted, true), "img.oci.tar", "oci-archive");
    lj.ok(&["world", "import", "from-oci-archive", &format!("oci-archive:{}", path_str(&oa))]);
    check_main_world(lj, &lj.world("from-oci-archive"), &planted);
    let da = lj.image(&main_spec(lj.cx, &planted, false), "img.docker.tar", "docker-archive");
    // Detected without a prefix, too.
    lj.ok(&["world", "import", "from-docker", &path_str(&da)]);
    check_main_world(lj, &lj.world("from-docker"), &planted);
    no_staging_left(lj);
}

fn corrupt_blob_publishes_nothing(lj: &Lj) {
    let spec = format!(
        r#"{{"gzip": false, "layers": [[{{"path": "bin", "type": "dir"}}, {{"path": "bin/busybox", "src": "{}", "mode": 493}}],
            [{{"path": "payload", "data": "lj-payload-lj-payload-lj-payload"}}]]}}"#,
        busybox(lj.cx)
    );
    let img = lj.image(&spec, "layout", "layout");
    // Flip one byte of the payload in the second layer's blob (same size, other digest).
    let mut flipped = 0;
    for e in fs::read_dir(img.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let mut data = fs::read(&p).unwrap();
        if let Some(i) = data.windows(8).position(|w| w == b"lj-paylo") {
            data[i + 3] = b'B';
            fs::write(&p, &data).unwrap();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 1, "the payload is in exactly one blob");
    lj.fails(
        &["world", "import", "bad", &format!("oci:{}", path_str(&img))],
        8,
        &["digest mismatch", "nothing imported"],
    );
    assert!(fs::symlink_metadata(lj.world("bad")).is_err(), "a corrupt image was published");
    assert!(!lj.root().join("worlds/.bad.image.json").exists());
    no_staging_left(lj);
}

fn not_an_image_is_refused(lj: &Lj) {
    // Looks like a layout, is not one: it must not "succeed" as a world of blobs/.
    let d = lj.td.join("fake");
    fs::create_dir_all(d.join("blobs/sha256")).unwrap();
    fs::write(d.join("index.json"), "{\"schemaVersion\": 2}").unwrap();
    fs::write(d.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").unwrap();
    let o = Command::new("chown").arg("-R").arg(format!("{}", lj.cx.caller_uid)).arg(&d).status().unwrap();
    assert!(o.success());
    lj.fails(&["world", "import", "fake", &path_str(&d)], 8, &["malformed image", "index.json"]);
    assert!(fs::symlink_metadata(lj.world("fake")).is_err());
    no_staging_left(lj);
}

fn run_defaults_from_config(lj: &Lj) {
    let planted = planted_name();
    let img = lj.image(&main_spec(lj.cx, &planted, true), "layout", "layout");
    lj.ok(&["world", "import", "img", &format!("oci:{}", path_str(&img))]);
    lj.build_on("img", "t/app", "echo built > /data/b");
    // Cmd, WorkingDir and Env of the image config.
    assert_eq!(lj.ok(&["run", "t/app"]).stdout, "hello\n");
    let out = lj.ok(&["run", "t/app", "--", "/bin/sh", "-c", "pwd; echo $FOO; cat b; echo $PATH"]);
    assert_eq!(out.stdout, "/data\nbar\nbuilt\n/bin\n", "{}", out.report());
}

/// Runs a host tool (as the test process: root) and expects success; its stdout.
#[track_caller]
fn tool(argv: &[&str]) -> String {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let mut out = run_with_timeout(cmd, None, Duration::from_secs(300)).expect("run tool");
    out.command = argv.join(" ");
    out.ok().stdout
}

/// The tools on the other side of an export, or a skip.
fn other_side(lj: &Lj) -> bool {
    for t in ["skopeo", "umoci", "buildah"] {
        if which(t).is_none() {
            lj.cx.skip(&format!("{t} not installed (Debian package {t})"));
            return false;
        }
    }
    if lj_tests::current_uid() != 0 {
        lj.cx.skip("the other side (umoci unpack, buildah) runs as root here");
        return false;
    }
    true
}

/// Checks a tree made of the exported `t/child`: whiteouts, the opaque directory, hard links,
/// owners (rootless: the caller became 0).
fn check_child_tree(w: &Path) {
    assert!(!w.join("opt/del").exists(), "overlay whiteout not exported");
    assert!(w.join("opt/kept").is_file());
    assert_eq!(fs::read_to_string(w.join("opt/d/c")).unwrap(), "new\n");
    assert!(!w.join("opt/d/a").exists() && !w.join("opt/d/sub").exists(), "opaque directory not exported");
    let (a, b) = (fs::metadata(w.join("data/hello")).unwrap(), fs::metadata(w.join("data/hello2")).unwrap());
    assert_eq!(a.ino(), b.ino(), "hard link lost");
    let (l1, l2) = (fs::metadata(w.join("opt/l1")).unwrap(), fs::metadata(w.join("opt/l2")).unwrap());
    assert_eq!(l1.ino(), l2.ino(), "hard link in an overlay lost");
    assert_eq!(fs::metadata(w.join("data/suid")).unwrap().mode() & 0o7777, 0o4755);
}

fn export_round_trip(lj: &Lj) {
    if !other_side(lj) {
        return;
    }
    let planted = planted_name();
    let img = lj.image(&main_spec(lj.cx, &planted, true), "layout", "layout");
    lj.ok(&["world", "import", "img", &format!("oci:{}", path_str(&img))]);
    lj.build(
        "t/base",
        "world img",
        "mkdir -p /opt/d/sub; echo 1 > /opt/d/a; echo 2 > /opt/d/sub/b; echo x > /opt/del; echo k > /opt/kept",
    );
    lj.build(
        "t/child",
        "from t/base",
        "rm /opt/del; rm -rf /opt/d; mkdir /opt/d; echo new > /opt/d/c; echo l > /opt/l1; ln /opt/l1 /opt/l2",
    );
    let out_dir = lj.td.join("out");
    let out = lj.ok(&["export", "t/child", &format!("oci:{}:v1", path_str(&out_dir))]);
    assert!(out.stdout.contains("exported t/child@"), "{}", out.report());

    // skopeo reads it: three layers, the image's Env.
    let inspect: serde_json::Value =
        serde_json::from_str(&tool(&["skopeo", "inspect", &format!("oci:{}:v1", path_str(&out_dir))]))
            .unwrap();
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(3), "{inspect}");
    assert!(inspect["Env"].as_array().unwrap().iter().any(|e| e == "FOO=bar"), "{inspect}");

    // umoci unpacks it to the same tree (owned by root, rootless included).
    let bundle = lj.cx.root_tempdir();
    let b = bundle.join("b");
    tool(&["umoci", "unpack", "--image", &format!("{}:v1", path_str(&out_dir)), &path_str(&b)]);
    check_child_tree(&b.join("rootfs"));
    let c = fs::metadata(b.join("rootfs/opt/d/c")).unwrap();
    assert_eq!((c.uid(), c.gid()), (0, 0), "files of jail root must be root's in the image");

    // buildah runs it and prints what ljbuild run prints.
    let store = lj.cx.root_tempdir();
    let st = path_str(store.path());
    let (broot, brun) = (format!("{st}/storage"), format!("{st}/run"));
    let bh = |args: &[&str]| {
        let mut v = vec!["buildah", "--root", &broot, "--runroot", &brun, "--storage-driver", "vfs"];
        v.extend_from_slice(args);
        tool(&v)
    };
    let ctr = format!("lj-oci-test-{}-{}", lj.cx.mode, std::process::id());
    // (buildah names an image pulled from oci:DIR after DIR, which must then be a valid name.)
    tool(&[
        "skopeo",
        "copy",
        &format!("oci:{}:v1", path_str(&out_dir)),
        &format!("containers-storage:[vfs@{broot}+{brun}]localhost/lj-oci-test:v1"),
    ]);
    bh(&["from", "--pull-never", "--name", &ctr, "localhost/lj-oci-test:v1"]);
    let script = "cat hello; echo $FOO; pwd; ls /opt /opt/d; cat /opt/d/c";
    let theirs = bh(&["run", "--isolation", "chroot", &ctr, "--", "/bin/sh", "-c", script]);
    let ours = lj.ok(&["run", "t/child", "--", "/bin/sh", "-c", script]).stdout;
    assert_eq!(theirs, ours, "buildah run of the exported image differs from ljbuild run");
    assert_eq!(theirs, "hello\nbar\n/data\n/opt:\nd\nkept\nl1\nl2\n\n/opt/d:\nc\nnew\n");
    bh(&["rm", &ctr]);
    // podman runs it too, with runc: crun cannot run containers on this host (it refuses the
    // hybrid cgroup layout), and both runtimes fail to raise RLIMIT_NOFILE and RLIMIT_NPROC
    // to podman's defaults here (the host's hard limits are lower and CAP_SYS_RESOURCE is
    // missing), so the limits are given below the host's.
    if which("runc").is_some() && which("podman").is_some() {
        // (podman wants a run root of at most 50 characters.)
        let prun = format!("/tmp/lj-pod.{}.{}", std::process::id(), lj.cx.mode);
        let pm = |args: &[&str]| {
            let mut v = vec!["podman", "--root", &broot, "--runroot", &prun, "--storage-driver", "vfs"];
            v.extend_from_slice(&["--runtime", "runc"]);
            v.extend_from_slice(args);
            tool(&v)
        };
        // What the container printed is read back from its log, not from `podman run`'s own
        // output: podman 4.3 can lose a fast-exiting container's output on its attach socket
        // (run exits 0 and prints nothing while the log has it, under load). conmon writes the
        // log before the exit file `podman run` waits for.
        let pctr = format!("{ctr}-podman");
        pm(&[
            "run",
            "--name",
            &pctr,
            "--log-driver",
            "k8s-file",
            "--net",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "localhost/lj-oci-test:v1",
            "/bin/sh",
            "-c",
            script,
        ]);
        let theirs = pm(&["logs", &pctr]);
        pm(&["rm", &pctr]);
        let _ = fs::remove_dir_all(&prun);
        assert_eq!(theirs, ours, "podman run of the exported image differs from ljbuild run");
    } else {
        lj.cx.skip("podman or runc not installed (Debian packages podman, runc): no podman run check");
    }
    let _ = Command::new("buildah")
        .args(["--root", &broot, "--runroot", &brun, "--storage-driver", "vfs", "rmi", "--all", "--force"])
        .output();

    // And back: the exported image imports as a world with the same tree and defaults.
    lj.ok(&["world", "import", "back", &format!("oci:{}:v1", path_str(&out_dir))]);
    check_child_tree(&lj.view("back").dir);
    lj.build_on("back", "t/on-back", "true");
    assert_eq!(lj.ok(&["run", "t/on-back"]).stdout, "hello\n");

    // An archive, gzip-compressed, is accepted too.
    let tarf = lj.td.join("child.tar");
    lj.ok(&["export", "--gzip", "t/child", &format!("oci-archive:{}:v2", path_str(&tarf))]);
    let inspect: serde_json::Value =
        serde_json::from_str(&tool(&["skopeo", "inspect", &format!("oci-archive:{}:v2", path_str(&tarf))]))
            .unwrap();
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(3));
    lj.ok(&["world", "import", "back2", &path_str(&tarf)]);
    check_child_tree(&lj.view("back2").dir);
}

/// A `docker-registry` (the CNCF distribution registry, from Debian) on 127.0.0.1 with its
/// storage in a temporary directory; killed when dropped.
struct Registry {
    child: Option<std::process::Child>,
    dir: TempDir,
    port: u16,
    auth: bool,
}

impl Registry {
    fn start(cx: &Ctx, htpasswd: Option<(&str, &str)>) -> Option<Registry> {
        Registry::start_auth(cx, htpasswd, None)
    }

    /// With `token`: `auth: token` (the registry trusts tokens signed by the key of `token`'s
    /// certificate and sends clients to its realm).
    fn start_auth(cx: &Ctx, htpasswd: Option<(&str, &str)>, token: Option<&TokenServer>) -> Option<Registry> {
        let Some(bin) = which("docker-registry") else {
            cx.skip("docker-registry not installed (Debian package docker-registry)");
            return None;
        };
        let dir = cx.root_tempdir();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut auth = String::new();
        if let Some((user, pass)) = htpasswd {
            if which("htpasswd").is_none() {
                cx.skip("htpasswd not installed (Debian package apache2-utils)");
                return None;
            }
            let line = tool(&["htpasswd", "-Bbn", user, pass]);
            fs::write(dir.join("htpasswd"), line.trim()).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: lj-test\n    path: {}\n",
                path_str(&dir.join("htpasswd"))
            );
        }
        if let Some(t) = token {
            auth = format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.port,
                path_str(&t.dir.join("cert.pem"))
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: lj-test-secret\n{auth}",
            path_str(&dir.join("data"))
        );
        fs::write(dir.join("config.yml"), config).unwrap();
        let mut r = Registry { child: None, dir, port, auth: htpasswd.is_some() || token.is_some() };
        r.spawn(&bin);
        Some(r)
    }

    fn spawn(&mut self, bin: &Path) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let up = lj_tests::wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "docker-registry did not listen on 127.0.0.1:{}: {}", self.port, self.log());
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn(&which("docker-registry").unwrap());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Blob downloads the registry served so far (its access log).
    fn blob_gets(&self) -> usize {
        self.log().lines().filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:")).count()
    }

    /// skopeo inspect of `repo:tag`: `Ok(layers)` or `Err(stderr)`.
    fn inspect(&self, repo_tag: &str, authfile: Option<&Path>) -> Result<usize, String> {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--tls-verify=false"]);
        if let Some(a) = authfile {
            cmd.arg("--authfile").arg(a);
        } else if self.auth {
            cmd.arg("--no-creds");
        }
        cmd.arg(format!("docker://{}/{repo_tag}", self.host()));
        let out = run_with_timeout(cmd, None, Duration::from_secs(60)).unwrap();
        if out.status() != 0 {
            return Err(out.stderr);
        }
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        Ok(v["Layers"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// World `img` from the main image, `t/base` and `t/child` on it (as in `export_round_trip`).
fn child_chain(lj: &Lj) -> PathBuf {
    let img = lj.image(&main_spec(lj.cx, &planted_name(), true), "layout", "layout");
    lj.ok(&["world", "import", "img", &format!("oci:{}", path_str(&img))]);
    lj.build("t/base", "world img", CHILD_BASE);
    lj.build("t/child", "from t/base", CHILD_SCRIPT);
    img
}

const CHILD_BASE: &str =
    "mkdir -p /opt/d/sub; echo 1 > /opt/d/a; echo 2 > /opt/d/sub/b; echo x > /opt/del; echo k > /opt/kept";
const CHILD_SCRIPT: &str =
    "rm /opt/del; rm -rf /opt/d; mkdir /opt/d; echo new > /opt/d/c; echo l > /opt/l1; ln /opt/l1 /opt/l2";

fn registry_two_roots(lj: &Lj) {
    let Some(reg) = Registry::start(lj.cx, None) else { return };
    if which("skopeo").is_none() {
        return lj.cx.skip("skopeo not installed");
    }
    let img = child_chain(lj);
    let ref_ = format!("docker://{}/lj/child:v1", reg.host());
    // Loopback registries speak plain HTTP: TLS is required unless told otherwise.
    lj.fails(&["push", "t/child", &ref_], 8, &["--tls-verify=false"]);
    let out = lj.ok(&["push", "t/child", &ref_, "--tls-verify=false"]);
    assert!(
        out.stdout.contains("4 blob(s) uploaded") && out.stdout.contains("0 already there"),
        "{}",
        out.report()
    );
    let out = lj.ok(&["push", "t/child", &ref_, "--tls-verify=false"]);
    assert!(
        out.stdout.contains("0 blob(s) uploaded") && out.stdout.contains("4 already there"),
        "{}",
        out.report()
    );
    assert_eq!(reg.inspect("lj/child:v1", None), Ok(3), "skopeo inspect of the pushed image");

    // A second runner: another root, which has nothing.
    let b = Lj::new(lj.cx).unwrap();
    let out = b.ok(&["pull", &ref_, "--tls-verify=false"]);
    assert!(
        out.stdout.contains("4 blob(s) fetched") && out.stdout.contains("0 layer(s) already here"),
        "{}",
        out.report()
    );
    let script = "cat hello; echo $FOO; ls /opt /opt/d; cat /opt/d/c";
    let ours = lj.ok(&["run", "t/child", "--", "/bin/sh", "-c", script]).stdout;
    assert_eq!(b.ok(&["run", "t/child", "--", "/bin/sh", "-c", script]).stdout, ours);
    check_child_tree_layers(&b);
    // Builds there key as they did here: the same Jailfiles are cache hits.
    for (name, head, script) in
        [("t/base", "world img", CHILD_BASE), ("t/child", "from t/base", CHILD_SCRIPT)]
    {
        let dir = b.td.join(format!("jf-{}", name.replace('/', "-")));
        fs::create_dir_all(&dir).unwrap();
        b.cx.chown_caller(&dir);
        b.cx.write_caller_file(&dir.join("Jailfile"), &format!("name {name}\n{head}\n---\n{script}\n"));
        let out = b.ok(&[&path_str(&dir.join("Jailfile"))]);
        assert!(out.stdout.contains("cached"), "{name} rebuilt on the second runner\n{}", out.report());
    }
    // Pulling again transfers no blob at all.
    let before = reg.blob_gets();
    let out = b.ok(&["pull", &ref_, "--tls-verify=false"]);
    assert!(
        out.stdout.contains("0 blob(s) fetched") && out.stdout.contains("3 layer(s) already here"),
        "{}",
        out.report()
    );
    assert_eq!(reg.blob_gets(), before, "the registry served blobs to a pull of an all-present image");
    // Layers are stored by content digest, the same in both roots (import, build and pull make
    // the same bytes), and a pull skips a layer whose digest is here under another name.
    assert_eq!(stored(&b, "worlds/img"), stored(lj, "worlds/img"));
    let layer = |l: &Lj, n: &str| -> String {
        let dir = l.root().join(n);
        let v = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        let m: serde_json::Value = serde_json::from_slice(&fs::read(v.join("meta.json")).unwrap()).unwrap();
        m["layer"].as_str().unwrap().to_string()
    };
    assert_eq!(layer(&b, "t/base"), layer(lj, "t/base"));
    assert_eq!(layer(&b, "t/child"), layer(lj, "t/child"));
    let out = b.ok(&["pull", &ref_, "t/copy@2", "--tls-verify=false"]);
    assert!(
        out.stdout.contains("pulled t/copy@2") && out.stdout.contains("0 blob(s) fetched"),
        "{}",
        out.report()
    );
    assert_eq!(reg.blob_gets(), before, "the registry served a blob whose digest the root has");
    assert_eq!(layer(&b, "t/copy"), layer(&b, "t/child"));
    assert_eq!(b.ok(&["run", "t/copy", "--", "/bin/sh", "-c", script]).stdout, ours);
    // A third runner holding only the world (imported from the same image under another name):
    // the world layer is not fetched, the overlays are.
    let c = Lj::new(lj.cx).unwrap();
    c.ok(&["world", "import", "mine", &format!("oci:{}", path_str(&img))]);
    assert_eq!(stored(&c, "worlds/mine"), stored(lj, "worlds/img"));
    let out = c.ok(&["pull", &ref_, "--tls-verify=false"]);
    assert!(out.stdout.contains("1 layer(s) already here"), "{}", out.report());
    assert_eq!(stored(&c, "worlds/img"), stored(&c, "worlds/mine"));
    assert_eq!(c.ok(&["run", "t/child", "--", "/bin/sh", "-c", script]).stdout, ours);

    // Any image works as a world: one skopeo pushed, and the one ljbuild pushed.
    tool(&[
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", path_str(&img)),
        &format!("docker://{}/test/img:v1", reg.host()),
    ]);
    let foreign = format!("docker://{}/test/img:v1", reg.host());
    b.ok(&["world", "import", "foreign", &foreign, "--tls-verify=false"]);
    check_main_world(&b, &b.world("foreign"), &planted_name());
    b.ok(&["world", "import", "whole", &ref_, "--tls-verify=false"]);
    check_child_tree(&b.view("whole").dir);
    b.fails(&["pull", &foreign, "--tls-verify=false"], 8, &["not an image ljbuild exported", "world import"]);
    b.fails(
        &["pull", &format!("docker://{}/lj/nothing:v1", reg.host()), "--tls-verify=false"],
        8,
        &["manifest"],
    );
}

/// The digest the layer reference `rel` (a symlink into the root's store) names.
fn stored(lj: &Lj, rel: &str) -> String {
    let t = fs::read_link(lj.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let t = path_str(&t);
    let hex =
        t.rsplit_once("store/sha256/").map(|(_, h)| h.to_string()).unwrap_or_else(|| panic!("{rel} -> {t}"));
    assert!(lj.root().join("store/sha256").join(&hex).is_dir(), "{rel} -> {t}");
    hex
}

/// The pulled chain's layers are overlays as a build makes them (whiteouts, opaque dirs).
fn check_child_tree_layers(b: &Lj) {
    let child = b.root().join("t/child");
    let v: Vec<_> = fs::read_dir(&child).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(v.len(), 1, "one version of t/child");
    let meta: serde_json::Value = serde_json::from_slice(&fs::read(v[0].join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["parents"][0]["name"]["name"], "base", "{meta}");
    assert!(fs::symlink_metadata(v[0].join("root/opt/del")).is_ok(), "the whiteout of /opt/del is missing");
}

fn registry_auth(lj: &Lj) {
    let Some(reg) = Registry::start(lj.cx, Some(("ljuser", "s3cret"))) else { return };
    child_chain(lj);
    let ref_ = format!("docker://{}/lj/child:v1", reg.host());
    let authfile = |pass: &str| {
        let p = lj.td.join(format!("auth-{pass}.json"));
        let b64 = tool(&["sh", "-c", &format!("printf %s ljuser:{pass} | base64 -w0")]);
        lj.cx.write_caller_file(
            &p,
            &format!("{{\"auths\": {{\"{}\": {{\"auth\": \"{b64}\"}}}}}}", reg.host()),
        );
        p
    };
    let (good, bad) = (authfile("s3cret"), authfile("wrong"));
    let empty = lj.td.join("none.json");
    lj.cx.write_caller_file(&empty, "{\"auths\": {}}");
    for file in [&empty, &bad] {
        let env = [("REGISTRY_AUTH_FILE", path_str(file))];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = lj.fails_env(
            &["push", "t/child", &ref_, "--tls-verify=false"],
            &env,
            8,
            &["authentication to", "failed"],
        );
        assert_eq!(
            out.stderr.lines().filter(|l| l.starts_with("ljbuild: ") && !l.contains(": layer:")).count(),
            1,
            "one error line\n{}",
            out.report()
        );
    }
    assert!(reg.inspect("lj/child:v1", Some(&good)).is_err(), "a refused push published something");
    let env = [("REGISTRY_AUTH_FILE", path_str(&good))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = lj.run_env(&["push", "t/child", &ref_, "--tls-verify=false"], &env).ok();
    assert!(out.stdout.contains("4 blob(s) uploaded"), "{}", out.report());
    assert_eq!(reg.inspect("lj/child:v1", Some(&good)), Ok(3));
    let b = Lj::new(lj.cx).unwrap();
    b.fails(&["pull", &ref_, "--tls-verify=false"], 8, &["authentication to"]);
    b.run_env(&["pull", &ref_, "--tls-verify=false"], &env).ok();
    assert_eq!(b.ok(&["run", "t/child"]).stdout, "hello\n");
}

const TOKEN_SERVICE: &str = "lj-test-registry";
const TOKEN_ISSUER: &str = "lj-test-issuer";

/// A bearer-token server for `docker-registry` with `auth: token` (the distribution token
/// protocol): on 127.0.0.1, it answers `GET /token?scope=...&service=...` with Basic
/// credentials `user:password` by a JWT (RS256, signed with `openssl dgst` by a key whose
/// self-signed certificate, made here with `openssl req`, is in the `x5c` header and is the
/// registry's `rootcertbundle`) granting the asked scope; anything else gets 401.
struct TokenServer {
    dir: TempDir,
    port: u16,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn b64(data: &[u8], url: bool) -> String {
    let abc: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(abc[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - c.len()));
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            _ => 63,
        }
    };
    let s: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for c in s.chunks(4) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | (val(b) << (18 - 6 * i)));
        for i in 0..c.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(if b[i] == b'+' { b' ' } else { b[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    fn start(cx: &Ctx, user: &str, password: &str) -> Option<TokenServer> {
        if which("openssl").is_none() {
            cx.skip("openssl not installed (it makes the token server's signing key)");
            return None;
        }
        let dir = cx.root_tempdir();
        let (key, cert) = (path_str(&dir.join("key.pem")), path_str(&dir.join("cert.pem")));
        tool(&[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            "/CN=lj-test-token",
        ]);
        let der =
            Command::new("openssl").args(["x509", "-in", &cert, "-outform", "DER"]).output().unwrap().stdout;
        assert!(!der.is_empty(), "openssl x509 -outform DER gave nothing");
        let x5c = b64(&der, false);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (iss, refs, want) = (issued.clone(), refused.clone(), format!("{user}:{password}"));
        let keyfile = dir.join("key.pem");
        let work = dir.join("sign");
        // Serves until the process ends (the listener lives in the thread; the test's registry,
        // the only client, is killed when the test ends).
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match std::io::Read::read(&mut conn, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let creds = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.eq_ignore_ascii_case("authorization")).then(|| v.trim().to_string())
                    })
                    .and_then(|v| {
                        v.strip_prefix("Basic ").map(|b| String::from_utf8_lossy(&unb64(b)).into_owned())
                    });
                let query: std::collections::HashMap<String, String> = path
                    .split_once('?')
                    .map(|(_, q)| q)
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), percent_decode(v)))
                    .collect();
                let answer = if !path.starts_with("/token") || creds.as_deref() != Some(want.as_str()) {
                    refs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    let access: Vec<serde_json::Value> = query
                        .get("scope")
                        .map(|s| s.split(' ').collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|sc| {
                            let mut p = sc.splitn(3, ':');
                            let (t, n, a) = (p.next()?, p.next()?, p.next()?);
                            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                        })
                        .collect();
                    let now =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    let n = iss.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
                    let claims = serde_json::json!({
                        "iss": TOKEN_ISSUER, "sub": "ljuser", "aud": TOKEN_SERVICE,
                        "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("lj-{n}"),
                        "access": access,
                    });
                    let input = format!(
                        "{}.{}",
                        b64(header.to_string().as_bytes(), true),
                        b64(claims.to_string().as_bytes(), true)
                    );
                    fs::write(&work, &input).unwrap();
                    let sig = Command::new("openssl")
                        .args(["dgst", "-sha256", "-binary", "-sign"])
                        .arg(&keyfile)
                        .arg(&work)
                        .output()
                        .unwrap();
                    assert!(sig.status.success(), "openssl dgst -sign failed");
                    let jwt = format!("{input}.{}", b64(&sig.stdout, true));
                    let body =
                        serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 600}).to_string();
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                let _ = std::io::Write::write_all(&mut conn, answer.as_bytes());
            }
        });
        Some(TokenServer { dir, port, issued, refused })
    }
}

/// Bearer tokens: docker-registry with `auth: token`, the token server above; a refused login
/// is one line, the right one pushes and pulls.
fn registry_token_auth(lj: &Lj) {
    let Some(ts) = TokenServer::start(lj.cx, "ljuser", "t0ken-pass") else { return };
    let Some(reg) = Registry::start_auth(lj.cx, None, Some(&ts)) else { return };
    child_chain(lj);
    let ref_ = format!("docker://{}/lj/child:v1", reg.host());
    let authfile = |pass: &str| {
        let p = lj.td.join(format!("auth-{pass}.json"));
        let b64 = b64(format!("ljuser:{pass}").as_bytes(), false);
        lj.cx.write_caller_file(
            &p,
            &format!("{{\"auths\": {{\"{}\": {{\"auth\": \"{b64}\"}}}}}}", reg.host()),
        );
        p
    };
    let (good, bad) = (authfile("t0ken-pass"), authfile("wrong"));
    let env_of = |p: &Path| vec![("REGISTRY_AUTH_FILE".to_string(), path_str(p))];
    let bad_env = env_of(&bad);
    let bad_env: Vec<(&str, &str)> = bad_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = lj.fails_env(
        &["push", "t/child", &ref_, "--tls-verify=false"],
        &bad_env,
        8,
        &["authentication to", "failed"],
    );
    assert_eq!(
        out.stderr.lines().filter(|l| l.starts_with("ljbuild: ") && !l.contains(": layer:")).count(),
        1,
        "one error line\n{}",
        out.report()
    );
    assert!(ts.refused.load(std::sync::atomic::Ordering::SeqCst) > 0, "the token server refused nothing");
    assert_eq!(ts.issued.load(std::sync::atomic::Ordering::SeqCst), 0);
    let good_env = env_of(&good);
    let good_env: Vec<(&str, &str)> = good_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = lj.run_env(&["push", "t/child", &ref_, "--tls-verify=false"], &good_env).ok();
    assert!(out.stdout.contains("4 blob(s) uploaded"), "{}", out.report());
    assert!(ts.issued.load(std::sync::atomic::Ordering::SeqCst) > 0, "no token was issued");
    assert_eq!(reg.inspect("lj/child:v1", Some(&good)), Ok(3), "skopeo with the same token server");
    let b = Lj::new(lj.cx).unwrap();
    b.fails(&["pull", &ref_, "--tls-verify=false"], 8, &["authentication to"]);
    b.run_env(&["pull", &ref_, "--tls-verify=false"], &good_env).ok();
    assert_eq!(b.ok(&["run", "t/child"]).stdout, "hello\n");
}

/// Rootless import keeps an image's owners, shifted into the caller's subordinate range on the
/// host, so `ljbuild run` shows them as in the image; export gives them back (a 0600 file of a
/// subordinate id the caller cannot read on the host included).
fn owners_shifted_and_restored(lj: &Lj) {
    if !other_side(lj) {
        return;
    }
    let spec = format!(
        r#"{{"tag": "o", "gzip": true, "config": {{"Cmd": ["/bin/sh"]}}, "layers": [[
    {{"path": "bin", "type": "dir"}},
    {{"path": "bin/busybox", "src": "{bb}", "mode": 493}},
    {{"path": "bin/sh", "type": "symlink", "target": "busybox"}},
    {{"path": "etc", "type": "dir"}},
    {{"path": "etc/owned", "data": "o\n", "uid": 1000, "gid": 1000}},
    {{"path": "etc/rootf", "data": "r\n"}},
    {{"path": "etc/link", "type": "symlink", "target": "owned", "uid": 1000, "gid": 1000}},
    {{"path": "home", "type": "dir"}},
    {{"path": "home/u", "type": "dir", "mode": 448, "uid": 1000, "gid": 1000}},
    {{"path": "home/u/secret", "data": "s3\n", "mode": 384, "uid": 1000, "gid": 1000}},
    {{"path": "tmp", "type": "dir", "mode": 1023}}
  ]]}}"#,
        bb = busybox(lj.cx)
    );
    let img = lj.image(&spec, "owners", "layout");
    lj.ok(&["world", "import", "ow", &format!("oci:{}:o", path_str(&img))]);
    let w = lj.world("ow");
    let md = |rel: &str| fs::symlink_metadata(w.join(rel)).unwrap();
    assert_eq!((md("etc/owned").uid(), md("etc/owned").gid()), on_host(lj, 1000, 1000));
    assert_eq!((md("etc/rootf").uid(), md("etc/rootf").gid()), on_host(lj, 0, 0));
    assert_eq!((md("etc/link").uid(), md("etc/link").gid()), on_host(lj, 1000, 1000));
    assert_eq!(md("home/u").uid(), on_host(lj, 1000, 0).0);
    lj.build_on("ow", "t/ow", "echo x > /etc/new; chown 1000:1000 /etc/new");
    let script = "stat -c '%u:%g %a %n' /etc/owned /etc/rootf /home/u /etc/new";
    let out = lj.ok(&["run", "t/ow", "--", "/bin/sh", "-c", script]);
    assert_eq!(
        out.stdout,
        "1000:1000 644 /etc/owned\n0:0 644 /etc/rootf\n1000:1000 700 /home/u\n1000:1000 644 /etc/new\n",
        "{}",
        out.report()
    );
    // (Jail root has no capabilities in `run`: the owner reads its 0700 home.)
    let script = "stat -c '%u:%g %a %n' /home/u/secret; cat /home/u/secret; id -u";
    let out = lj.ok(&["run", "t/ow", "--user", "1000", "--", "/bin/sh", "-c", script]);
    assert_eq!(out.stdout, "1000:1000 600 /home/u/secret\ns3\n1000\n", "{}", out.report());
    // Exported: the image's owners again (rootless too), the unreadable file included.
    let out_dir = lj.td.join("ow-out");
    lj.ok(&["export", "t/ow", &format!("oci:{}:o", path_str(&out_dir))]);
    let bundle = lj.cx.root_tempdir();
    let b = bundle.join("b");
    tool(&["umoci", "unpack", "--image", &format!("{}:o", path_str(&out_dir)), &path_str(&b)]);
    let r = b.join("rootfs");
    let owner = |rel: &str| {
        let m = fs::symlink_metadata(r.join(rel)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner("etc/owned"), (1000, 1000, 0o644));
    assert_eq!(owner("etc/rootf"), (0, 0, 0o644));
    assert_eq!(owner("home/u"), (1000, 1000, 0o700));
    assert_eq!(owner("home/u/secret"), (1000, 1000, 0o600));
    assert_eq!(owner("etc/new"), (1000, 1000, 0o644));
    assert_eq!(fs::read_to_string(r.join("home/u/secret")).unwrap(), "s3\n");
}

/// zstd layers: an image skopeo recompressed with zstd imports; `--compression zstd` exports
/// one that skopeo reads and that imports back.
fn zstd_layers(lj: &Lj) {
    if !other_side(lj) {
        return;
    }
    let planted = planted_name();
    let img = lj.image(&main_spec(lj.cx, &planted, true), "layout", "layout");
    let z = lj.cx.root_tempdir();
    let zdir = z.join("z");
    tool(&[
        "skopeo",
        "copy",
        "--dest-compress",
        "--dest-compress-format",
        "zstd",
        &format!("oci:{}:v1", path_str(&img)),
        &format!("oci:{}:v1", path_str(&zdir)),
    ]);
    let manifest = tool(&["skopeo", "inspect", "--raw", &format!("oci:{}:v1", path_str(&zdir))]);
    assert!(manifest.contains("tar+zstd"), "skopeo did not write zstd layers: {manifest}");
    lj.cx.chown_caller(z.path());
    tool(&["chown", "-R", &format!("{}:{}", lj.cx.caller_uid, lj.cx.caller_gid), &path_str(&zdir)]);
    lj.ok(&["world", "import", "zimg", &format!("oci:{}:v1", path_str(&zdir))]);
    check_main_world(lj, &lj.world("zimg"), &planted);
    lj.build_on("zimg", "t/z", "echo z > /z");
    let out_dir = lj.td.join("zout");
    lj.ok(&["export", "t/z", &format!("oci:{}:z", path_str(&out_dir)), "--compression", "zstd"]);
    let manifest = tool(&["skopeo", "inspect", "--raw", &format!("oci:{}:z", path_str(&out_dir))]);
    assert_eq!(manifest.matches("application/vnd.oci.image.layer.v1.tar+zstd").count(), 2, "{manifest}");
    lj.ok(&["world", "import", "zback", &format!("oci:{}:z", path_str(&out_dir))]);
    let zback = lj.view("zback");
    assert_eq!(fs::read_to_string(zback.dir.join("z")).unwrap(), "z\n");
    assert_eq!(fs::read_to_string(zback.dir.join("data/hello")).unwrap(), "hello\n");
    lj.fails(
        &["export", "t/z", "oci:/nonexistent/x", "--gzip", "--compression", "zstd"],
        2,
        &["cannot be used with"],
    );
}

/// Waits until `f` finds a file of at least `min` bytes; `false` after 60 s or if `done()`.
fn wait_for_file(
    mut find: impl FnMut() -> Option<PathBuf>,
    min: u64,
    mut done: impl FnMut() -> bool,
) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if find().and_then(|p| fs::metadata(p).ok()).is_some_and(|m| m.len() >= min) {
            return true;
        }
        if done() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// The first file named `name` under `dir`.
fn find_named(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if e.file_name() == name && p.is_file() {
            return Some(p);
        }
        if e.file_type().ok()?.is_dir() {
            if let Some(f) = find_named(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

fn registry_interrupted(lj: &Lj) {
    let Some(mut reg) = Registry::start(lj.cx, None) else { return };
    let img = lj.image(&main_spec(lj.cx, &planted_name(), true), "layout", "layout");
    lj.ok(&["world", "import", "img", &format!("oci:{}", path_str(&img))]);
    lj.build("t/big", "world img", "/bin/busybox head -c 64000000 /dev/urandom > /big");
    let ref_ = format!("docker://{}/lj/big:v1", reg.host());

    // Push, and kill the registry while the big layer is being uploaded.
    let mut push = lj.command(&["push", "t/big", &ref_, "--tls-verify=false"], &[]);
    push.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = push.spawn().unwrap();
    let uploads = reg.dir.join("data");
    let caught = wait_for_file(
        || find_named(&uploads, "data").filter(|p| p.to_string_lossy().contains("_uploads")),
        1 << 20,
        || matches!(child.try_wait(), Ok(Some(_))),
    );
    reg.kill();
    let out = child.wait_with_output().unwrap();
    assert!(caught, "the upload finished before it could be interrupted");
    assert_eq!(out.status.code(), Some(8), "push: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().last().unwrap_or("").contains("nothing published"), "{err}");
    reg.restart();
    assert!(reg.inspect("lj/big:v1", None).is_err(), "an interrupted push published the image");
    let left: Vec<_> =
        fs::read_dir(lj.root().join(".tmp")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "push left staging behind: {left:?}");

    // A complete push, then a pull the registry dies under.
    lj.ok(&["push", "t/big", &ref_, "--tls-verify=false"]);
    let b = Lj::new(lj.cx).unwrap();
    let mut pull = b.command(&["pull", &ref_, "--tls-verify=false"], &[]);
    pull.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = pull.spawn().unwrap();
    let tmp = b.root().join(".tmp");
    let caught =
        wait_for_file(|| find_named(&tmp, "big"), 1 << 20, || matches!(child.try_wait(), Ok(Some(_))));
    reg.kill();
    let out = child.wait_with_output().unwrap();
    assert!(caught, "the download finished before it could be interrupted");
    assert_eq!(out.status.code(), Some(8), "pull: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!b.root().join("t/big").exists(), "an interrupted pull published the overlay");
    let left: Vec<_> = fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "pull left staging behind: {left:?}");
    // Once the registry is back, the pull completes.
    reg.restart();
    b.ok(&["pull", &ref_, "--tls-verify=false"]);
    assert!(b.root().join("t/big").is_dir());
}

/// The meta.json of the one version of overlay `name` in `lj`'s root, and its path.
fn meta_of(lj: &Lj, name: &str) -> (serde_json::Value, PathBuf) {
    let dir = lj.root().join(name);
    let v = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path().join("meta.json");
    (serde_json::from_slice(&fs::read(&v).unwrap()).unwrap(), v)
}

/// A pull decides what it has from the store's own records (or from ljbuild's export of the
/// stored layer matching the image's diff id), never from the layer digest an image's
/// annotations claim: an image claiming a layer this root has, but carrying other bytes, is
/// fetched, and the stored layer is not substituted for it.
fn pull_verifies_claimed_layers(lj: &Lj) {
    let Some(reg) = Registry::start(lj.cx, None) else { return };
    let img = lj.image(&main_spec(lj.cx, &planted_name(), true), "layout", "layout");
    lj.ok(&["world", "import", "img", &format!("oci:{}", path_str(&img))]);
    lj.build_on("img", "t/good", "echo good > /verdict");
    lj.build_on("img", "t/evil", "echo evil > /verdict");
    let good = format!("docker://{}/lj/good:v1", reg.host());
    let evil = format!("docker://{}/lj/evil:v1", reg.host());
    lj.ok(&["push", "t/good", &good, "--tls-verify=false"]);
    let (good_meta, _) = meta_of(lj, "t/good");
    let good_layer = good_meta["layer"].as_str().unwrap().to_string();
    // The hostile image: t/evil's bytes, annotated with t/good's layer digest.
    let (mut evil_meta, evil_path) = meta_of(lj, "t/evil");
    assert_ne!(evil_meta["layer"].as_str().unwrap(), good_layer);
    evil_meta["layer"] = serde_json::Value::String(good_layer.clone());
    fs::write(&evil_path, serde_json::to_vec(&evil_meta).unwrap()).unwrap();
    lj.ok(&["push", "t/evil", &evil, "--tls-verify=false"]);

    // The victim has the world and t/good's layer.
    let b = Lj::new(lj.cx).unwrap();
    b.ok(&["pull", &good, "--tls-verify=false"]);
    assert_eq!(b.ok(&["run", "t/good", "--", "/bin/cat", "/verdict"]).stdout, "good\n");
    let before = reg.blob_gets();
    let out = b.ok(&["pull", &evil, "--tls-verify=false"]);
    assert!(out.stdout.contains("1 layer(s) already here"), "only the world is here\n{}", out.report());
    assert!(reg.blob_gets() > before, "the layer the annotation claims was not fetched\n{}", out.report());
    assert_eq!(
        b.ok(&["run", "t/evil", "--", "/bin/cat", "/verdict"]).stdout,
        "evil\n",
        "the stored layer was substituted for the image's"
    );
    let (pulled, _) = meta_of(&b, "t/evil");
    assert_ne!(pulled["layer"].as_str().unwrap(), good_layer, "t/evil references t/good's layer");
    assert_ne!(
        stored(&b, &format!("t/evil/{}/root", pulled["version"].as_str().unwrap())),
        stored(&b, &format!("t/good/{}/root", meta_of(&b, "t/good").0["version"].as_str().unwrap()))
    );
    // What is recorded is trusted: pulling t/good again (as another version) fetches nothing.
    let before = reg.blob_gets();
    let out = b.ok(&["pull", &good, "t/good2@1", "--tls-verify=false"]);
    assert!(out.stdout.contains("0 blob(s) fetched"), "{}", out.report());
    assert_eq!(reg.blob_gets(), before);
    assert_eq!(meta_of(&b, "t/good2").0["layer"].as_str().unwrap(), good_layer);
}

/// A three-layer image: a busybox base, a middle layer with a whiteout, an opaque directory, a
/// directory it implies (its mode from the base) and a hard link, and a top layer of its own.
fn chain_spec(cx: &Ctx, top: &str) -> String {
    format!(
        r#"{{"tag": "v1", "gzip": true, "config": {{"Env": ["PATH=/bin"], "Cmd": ["/bin/cat", "/top"]}},
  "layers": [[
    {{"path": "bin", "type": "dir"}},
    {{"path": "bin/busybox", "src": "{bb}", "mode": 493}},
    {{"path": "bin/sh", "type": "symlink", "target": "busybox"}},
    {{"path": "bin/cat", "type": "symlink", "target": "busybox"}},
    {{"path": "etc", "type": "dir"}},
    {{"path": "etc/gone", "data": "g"}},
    {{"path": "opq", "type": "dir"}},
    {{"path": "opq/old", "data": "old"}},
    {{"path": "ro", "type": "dir", "mode": 365}},
    {{"path": "ro/inner", "data": "i"}}
  ], [
    {{"path": "etc/.wh.gone"}},
    {{"path": "opq", "type": "dir"}},
    {{"path": "opq/.wh..wh..opq"}},
    {{"path": "opq/new", "data": "new"}},
    {{"path": "ro/added", "data": "a"}},
    {{"path": "mid", "data": "m"}},
    {{"path": "mid2", "type": "link", "target": "mid"}}
  ], [
    {{"path": "top", "data": "{top}\n"}}
  ]]}}"#,
        bb = busybox(cx)
    )
}

/// The world's layers as the sidecar lists them (its further layers, bottom first).
fn world_parts(lj: &Lj, name: &str) -> Vec<String> {
    let side: serde_json::Value =
        serde_json::from_slice(&fs::read(lj.root().join(format!("worlds/.{name}.image.json"))).unwrap())
            .unwrap();
    side["layers"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Two images that share their base layers share them in the store: the second import reads
/// only its own top layer; each world is a chain (its first layer and one overlay layer per
/// further image layer), stacked by `ljbuild run`; export gives back the same layers; `world
/// rm` of one keeps the layers the other references.
fn images_share_base_layers(lj: &Lj) {
    let a = lj.image(&chain_spec(lj.cx, "a"), "img-a", "layout");
    let b = lj.image(&chain_spec(lj.cx, "b"), "img-b", "layout");
    lj.ok(&["world", "import", "wa", &format!("oci:{}", path_str(&a))]);
    let out = lj.ok(&["world", "import", "wb", &format!("oci:{}", path_str(&b))]);
    assert_eq!(
        out.stderr.matches("(here)").count(),
        2,
        "the shared layers were read again\n{}",
        out.report()
    );
    let (pa, pb) = (world_parts(lj, "wa"), world_parts(lj, "wb"));
    assert_eq!((pa.len(), pb.len()), (2, 2), "each further image layer is a layer of the world");
    assert_eq!(stored(lj, "worlds/wa"), stored(lj, "worlds/wb"), "the base layer is stored once");
    assert_eq!(pa[0], pb[0], "the middle layer is stored once");
    assert_ne!(pa[1], pb[1]);
    // The chain stacked: whiteout, opaque directory, implied directory, hard link, top.
    let check = "cat /top; ls /etc; ls /opq; stat -c %a /ro; ls /ro; stat -c %i /mid /mid2 | uniq | wc -l";
    let want = |t: &str| format!("{t}\nnew\n555\nadded\ninner\n1\n");
    lj.build_on("wa", "t/a", "true");
    lj.build_on("wb", "t/b", "echo built > /built");
    assert_eq!(lj.ok(&["run", "t/a"]).stdout, "a\n", "the image's Cmd");
    assert_eq!(lj.ok(&["run", "t/a", "--", "/bin/sh", "-c", check]).stdout, want("a"));
    assert_eq!(lj.ok(&["run", "t/b", "--", "/bin/sh", "-c", check]).stdout, want("b"));

    // Export: one layer per world layer and overlay; imported back, the same stored layers.
    if other_side(lj) {
        let out_dir = lj.td.join("out");
        lj.ok(&["export", "t/b", &format!("oci:{}:v1", path_str(&out_dir))]);
        let inspect: serde_json::Value =
            serde_json::from_str(&tool(&["skopeo", "inspect", &format!("oci:{}:v1", path_str(&out_dir))]))
                .unwrap();
        assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(4), "{inspect}");
        lj.ok(&["world", "import", "back", &format!("oci:{}:v1", path_str(&out_dir))]);
        let back = world_parts(lj, "back");
        assert_eq!(stored(lj, "worlds/back"), stored(lj, "worlds/wb"));
        assert_eq!(&back[..2], &pb[..], "the exported world layers are the stored ones");
    }

    // world rm keeps what the other world references, and removes what only it did.
    let va = meta_of(lj, "t/a").0["version"].as_str().unwrap().to_string();
    lj.ok(&["rm", &format!("t/a@{va}")]);
    lj.ok(&["world", "rm", "wa"]);
    lj.ok(&["gc"]);
    let layer_dir = |d: &str| lj.root().join("store/sha256").join(d.trim_start_matches("sha256:"));
    assert!(!layer_dir(&pa[1]).exists(), "world rm left the layer only it referenced");
    assert!(layer_dir(&pb[0]).is_dir() && layer_dir(&pb[1]).is_dir(), "gc took a layer wb references");
    assert_eq!(lj.ok(&["run", "t/b", "--", "/bin/sh", "-c", check]).stdout, want("b"));

    // Through a registry: the pulled world is the same chain, and runs the same.
    let Some(reg) = Registry::start(lj.cx, None) else { return };
    let ref_ = format!("docker://{}/lj/b:v1", reg.host());
    lj.ok(&["push", "t/b", &ref_, "--tls-verify=false"]);
    let c = Lj::new(lj.cx).unwrap();
    c.ok(&["pull", &ref_, "--tls-verify=false"]);
    assert_eq!(world_parts(&c, "wb"), pb, "the pulled world's layers");
    assert_eq!(stored(&c, "worlds/wb"), stored(lj, "worlds/wb"));
    assert_eq!(c.ok(&["run", "t/b", "--", "/bin/sh", "-c", check]).stdout, want("b"));
    let before = reg.blob_gets();
    let out = c.ok(&["pull", &ref_, "t/b2@1", "--tls-verify=false"]);
    assert!(out.stdout.contains("0 blob(s) fetched"), "{}", out.report());
    assert_eq!(reg.blob_gets(), before);
}

/// An image deeper than a world keeps (64 layers) has its bottom layers flattened into the
/// world's first layer; the rest stay layers, and the files of every layer are there.
fn deep_image_is_flattened(lj: &Lj) {
    let mut layers = vec![format!(
        r#"[{{"path": "bin", "type": "dir"}}, {{"path": "bin/busybox", "src": "{}", "mode": 493}},
            {{"path": "bin/sh", "type": "symlink", "target": "busybox"}}, {{"path": "d", "type": "dir"}}]"#,
        busybox(lj.cx)
    )];
    for i in 1..70 {
        layers.push(format!(r#"[{{"path": "d", "type": "dir"}}, {{"path": "d/f{i}", "data": "{i}"}}]"#));
    }
    let spec = format!(r#"{{"gzip": false, "layers": [{}]}}"#, layers.join(","));
    let img = lj.image(&spec, "deep", "layout");
    let out = lj.ok(&["world", "import", "deep", &format!("oci:{}", path_str(&img))]);
    assert!(out.stderr.contains("the bottom 7 become the world's first layer"), "{}", out.report());
    assert_eq!(world_parts(lj, "deep").len(), 63);
    lj.build_on("deep", "t/deep", "true");
    let out = lj.ok(&[
        "run",
        "t/deep",
        "--setenv",
        "PATH",
        "/bin",
        "--",
        "/bin/sh",
        "-c",
        "busybox cat /d/f1 /d/f6 /d/f7 /d/f69; echo; busybox ls /d | busybox wc -l",
    ]);
    assert_eq!(out.stdout, "16769\n69\n", "{}", out.report());
}

/// A world's merged tree (see [`Lj::view`]).
struct View {
    dir: PathBuf,
    _td: Option<TempDir>,
}

impl Drop for View {
    fn drop(&mut self) {
        if self._td.is_some() {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

/// A file capability (`security.capability`, as `setcap cap_net_raw=ep` writes it: a v2
/// `vfs_cap_data`) is kept by an import, root and rootless (there the kernel stores it for the
/// jail's root), and `getcap` in a jail shows it; a `trusted.*` attribute and an owner above
/// 65535 cannot be kept rootless: one warning line each, with the count.
fn capabilities_and_big_ids(lj: &Lj) {
    let Some(getcap) = which("getcap") else {
        return lj.cx.skip("getcap not installed (Debian package libcap2-bin)");
    };
    let real = |p: &str| path_str(&fs::canonicalize(p).unwrap());
    // getcap and what it links, from the host, so the busybox image can run it.
    let libs = [
        "/lib/x86_64-linux-gnu/libcap.so.2",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ];
    if libs.iter().any(|l| !Path::new(l).exists()) {
        return lj.cx.skip("getcap's libraries are not where this test looks (x86_64 Debian)");
    }
    let cap = "\\u0001\\u0000\\u0000\\u0002\\u0000 \\u0000\\u0000".to_string() + &"\\u0000".repeat(12);
    let spec = format!(
        r#"{{"gzip": false, "layers": [[
    {{"path": "bin", "type": "dir"}},
    {{"path": "bin/busybox", "src": "{bb}", "mode": 493}},
    {{"path": "bin/sh", "type": "symlink", "target": "busybox"}},
    {{"path": "bin/pingish", "data": "p", "mode": 493, "xattrs": {{"security.capability": "{cap}"}}}},
    {{"path": "usr", "type": "dir"}}, {{"path": "usr/sbin", "type": "dir"}},
    {{"path": "usr/sbin/getcap", "src": "{getcap}", "mode": 493}},
    {{"path": "lib", "type": "dir"}}, {{"path": "lib/x86_64-linux-gnu", "type": "dir"}},
    {{"path": "lib/x86_64-linux-gnu/libcap.so.2", "src": "{l0}", "mode": 420}},
    {{"path": "lib/x86_64-linux-gnu/libc.so.6", "src": "{l1}", "mode": 493}},
    {{"path": "lib64", "type": "dir"}},
    {{"path": "lib64/ld-linux-x86-64.so.2", "src": "{l2}", "mode": 493}},
    {{"path": "data", "type": "dir"}},
    {{"path": "data/trusted", "data": "t", "xattrs": {{"trusted.lj": "1"}}}},
    {{"path": "data/bigid", "data": "b", "uid": 70000, "gid": 70001}}
  ]]}}"#,
        bb = busybox(lj.cx),
        getcap = path_str(&getcap),
        l0 = real(libs[0]),
        l1 = real(libs[1]),
        l2 = real(libs[2]),
    );
    let img = lj.image(&spec, "cap", "layout");
    let out = lj.ok(&["world", "import", "capw", &format!("oci:{}", path_str(&img))]);
    let warns: Vec<&str> = out.stderr.lines().filter(|l| l.contains("warning")).collect();
    let bigid = fs::metadata(lj.world("capw").join("data/bigid")).unwrap();
    if lj.cx.mode == Mode::Root {
        assert!(warns.is_empty(), "{}", out.report());
        assert_eq!((bigid.uid(), bigid.gid()), (70000, 70001));
        assert_eq!(xattr(&lj.world("capw").join("data/trusted"), "trusted.lj"), "1");
    } else {
        assert_eq!(warns.len(), 2, "one line for the attributes, one for the owners\n{}", out.report());
        assert!(
            warns[0].contains("1 extended attribute(s) not kept (trusted.lj)")
                && warns[0].contains("file capabilities are kept"),
            "{}",
            out.report()
        );
        assert!(warns[1].contains("1 owner(s) above 65535 became 65534"), "{}", out.report());
        assert_eq!((bigid.uid(), bigid.gid()), on_host(lj, 65534, 65534));
    }
    lj.build_on("capw", "t/cap", "true");
    let out = lj.ok(&["run", "t/cap", "--", "/usr/sbin/getcap", "/bin/pingish"]);
    assert!(
        out.stdout.contains("/bin/pingish cap_net_raw=ep"),
        "the file capability is lost\n{}",
        out.report()
    );
}
