//! End-to-end tests of `ljbuild`, in root and rootless mode. Each test has its own
//! `LIGHTJAIL_ROOT` (in a temporary directory owned by the caller) with a busybox world imported
//! by `ljbuild world import`, and runs `$LJ_TEST_DIR/bin/ljbuild` as the caller (root, or the
//! user `ljtest` through setpriv); ljbuild finds `ljspawn` next to itself.
//! Needs `tests/prepare.sh` (as root) after a release build; see the harness in `tests/src/lib.rs`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lj_tests::{host_mountinfo, path_str, run_with_timeout, wait_until, which, Ctx, Mode, Output};

fn run(name: &str, mode: Mode, test: fn(&Lj)) {
    let Some(cx) = Ctx::new(name, mode) else { return };
    let Some(lj) = Lj::new(&cx) else { return };
    test(&lj);
}

lj_tests::mode_tests! {
    prefix = "ljbuild::", run = crate::run;
    chain_of_three: root rootless;
    prefix_resolution: root rootless;
    cache_hit_and_miss: root rootless;
    immutable_versions: root rootless;
    failed_build_publishes_nothing: root rootless;
    sigkill_then_clean_rebuild: root rootless;
    concurrent_builds_serialize: root rootless;
    error_messages: root rootless;
    dry_run_runs_nothing: root rootless;
    rm_and_gc: root rootless;
    worlds: root rootless;
    copy_and_ljignore: root rootless;
    net_none: root rootless;
    root_layout_private: root rootless;
    setuid_files_kept_in_layers: root rootless;
    big_script_no_artifacts: root rootless;
    rootless_on_root_built_world: rootless;
    debian_apt_get: root rootless;
    debian_users_and_chown: root rootless;
    one_id_without_subids: rootless;
    files_of_other_ids: root rootless;
    copy_hash_cache: root rootless;
    default_root_per_user: root rootless;
    script_line_numbers_and_crlf: root rootless;
    version_rules: root rootless;
    run_ci_recipe: root rootless;
    usage_errors: root rootless;
    lines_into_closed_stderr: root rootless;
    tarball_without_dot_entry: root rootless;
    output_styles: root rootless;
    world_rm_and_json: root rootless;
    inspect_layer: root rootless;
    gc_unused_derived: root rootless;
    content_addressed_store: root rootless;
}

/// One test's lightjail root and Jailfile directories ([`lj_tests::Ljbuild`]'s methods, and
/// these tests' own).
struct Lj<'a>(lj_tests::Ljbuild<'a>);

impl<'a> std::ops::Deref for Lj<'a> {
    type Target = lj_tests::Ljbuild<'a>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'a> Lj<'a> {
    fn new(cx: &'a Ctx) -> Option<Lj<'a>> {
        if cx.run_as.is_some() && which("setpriv").is_none() {
            cx.skip("setpriv (util-linux) not installed");
            return None;
        }
        let lj = Lj(lj_tests::Ljbuild::new(cx)?);
        // The world: imported (copied) by the caller, so a rootless caller owns its files.
        let src = if cx.caller_uid == lj_tests::current_uid() { None } else { Some(cx.world_copy()) };
        let world = src.as_ref().map_or_else(|| cx.world(), |t| t.path().to_path_buf());
        lj.ok(&["world", "import", "busybox", &path_str(&world)]);
        Some(lj)
    }

    /// ljbuild as the caller with only `env` (`-i`: no LIGHTJAIL_ROOT, HOME, CI, ... unless given).
    fn run_bare(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut argv: Vec<OsString> = vec!["/usr/bin/env".into(), "-i".into(), "PATH=/usr/bin:/bin".into()];
        argv.extend(env.iter().map(|(k, v)| OsString::from(format!("{k}={v}"))));
        argv.push(self.bin.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let mut cmd = self.cx.command(argv);
        cmd.current_dir(self.td.path());
        let mut out = run_with_timeout(cmd, None, Duration::from_secs(120)).expect("run ljbuild");
        out.command = format!("[{}] env -i {env:?} ljbuild {}", self.cx.mode, args.join(" "));
        out
    }

    /// A directory under the temporary directory, owned by the caller.
    fn dir(&self, rel: &str) -> PathBuf {
        let d = self.td.join(rel);
        fs::create_dir_all(&d).expect("mkdir");
        self.cx.chown_caller(&d);
        d
    }

    /// Writes `DIR/Jailfile` (and the directory) as the caller; returns `DIR/Jailfile`.
    fn jailfile(&self, dir: &str, text: &str) -> String {
        let d = self.td.join(dir);
        if !d.is_dir() {
            fs::create_dir_all(&d).expect("mkdir");
            self.cx.chown_caller(&d);
        }
        self.file(&format!("{dir}/Jailfile"), text);
        format!("{dir}/Jailfile")
    }

    /// Writes a file under the temporary directory as the caller.
    fn file(&self, rel: &str, text: &str) {
        self.cx.write_caller_file(&self.td.join(rel), text);
    }

    /// `ljbuild run NAME -- /bin/sh -c SCRIPT`, its stdout.
    #[track_caller]
    fn jail(&self, name: &str, script: &str) -> String {
        self.ok(&["run", name, "--", "/bin/sh", "-c", script]).stdout
    }

    /// The published versions of `ns/name`, sorted.
    fn versions(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.root().join(name))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Entries of `ROOT/.tmp`.
    fn staging(&self) -> Vec<String> {
        fs::read_dir(self.root().join(".tmp"))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    /// Starts ljbuild in the background, stdout/stderr to files `NAME.out`/`NAME.err`.
    fn start(&self, args: &[&str], name: &str) -> Child {
        let mut cmd = self.command(args, &[]);
        let out = fs::File::create(self.td.join(format!("{name}.out"))).expect("create out");
        let err = fs::File::create(self.td.join(format!("{name}.err"))).expect("create err");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.spawn().expect("spawn ljbuild")
    }

    fn output_of(&self, name: &str) -> (String, String) {
        (
            fs::read_to_string(self.td.join(format!("{name}.out"))).unwrap_or_default(),
            fs::read_to_string(self.td.join(format!("{name}.err"))).unwrap_or_default(),
        )
    }

    /// Processes whose command line mentions this test's root.
    fn procs_using_root(&self) -> Vec<String> {
        let needle = path_str(&self.root());
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = fs::read(e.path().join("cmdline")) else { continue };
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&needle) {
                found.push(format!("{}: {text}", e.file_name().to_string_lossy()));
            }
        }
        found
    }
}

fn wait_child(mut child: Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ljbuild did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Three overlays on the busybox world; a file deleted in the middle layer is gone there and in
/// the top layer, and still present in the bottom one.
fn chain_of_three(lj: &Lj) {
    let a = lj.jailfile(
        "a",
        "name chain/a   # the bottom layer\nversion 1.0\n---\necho a > /etc/a\necho doomed > /etc/doomed\nmkdir -p /opt/keep\necho k > /opt/keep/k\n",
    );
    let b = lj.jailfile(
        "b",
        "name chain/b\nversion 2.0\nfrom chain/a\n---\ntest -f /etc/a\nrm /etc/doomed\nrm -r /opt/keep\necho b > /etc/b\n",
    );
    let c = lj.jailfile(
        "c",
        "name chain/c\nversion 3.0\nfrom chain/b 2\n---\ntest ! -e /etc/doomed\necho c > /etc/c\n",
    );
    for f in [&a, &b, &c] {
        let out = lj.ok(&[f]);
        assert!(out.stdout.contains("built chain/"), "{}", out.report());
    }
    assert_eq!(lj.jail("chain/a", "cat /etc/a /etc/doomed /opt/keep/k"), "a\ndoomed\nk\n");
    assert_eq!(lj.jail("chain/b", "cat /etc/a /etc/b; ls /etc/doomed /opt/keep 2>&1 | wc -l"), "a\nb\n2\n");
    let top = lj.jail(
        "chain/c",
        "cat /etc/a /etc/b /etc/c; test -e /etc/doomed || echo gone; test -e /opt/keep || echo gone",
    );
    assert_eq!(top, "a\nb\nc\ngone\ngone\n");
    // The layers on disk: the deletion is a whiteout in b's upper, a's file is untouched.
    assert!(lj.root().join("chain/a/1.0/root/etc/doomed").is_file());
    assert!(fs::symlink_metadata(lj.root().join("chain/b/2.0/root/etc/doomed")).is_ok());
    assert!(!lj.root().join("chain/c/3.0/root/etc/doomed").exists());
    // Metadata: the chain, oldest first.
    let meta = fs::read_to_string(lj.root().join("chain/c/3.0/meta.json")).expect("meta.json");
    let ia = meta.find("\"a\"").expect("a in parents");
    let ib = meta.find("\"b\"").expect("b in parents");
    assert!(ia < ib, "parents not oldest first: {meta}");
    for key in ["inputs_hash", "built_at", "world", "busybox", "build.log"] {
        assert!(meta.contains(key), "meta.json lacks {key}: {meta}");
    }
    assert!(lj.root().join("chain/c/3.0/build.log").is_file());
    let list = lj.ok(&["list"]).stdout;
    for want in ["chain/a@1.0", "chain/b@2.0", "chain/c@3.0"] {
        assert!(list.contains(want), "list lacks {want}: {list}");
    }
    let json = lj.ok(&["list", "--json"]).stdout;
    assert!(json.trim_start().starts_with('[') && json.matches("\"format\"").count() == 3, "{json}");
    // Into a pipe whose reader has gone (`ljbuild list | head -1`): 141 (128 + SIGPIPE),
    // quietly; never a panic.
    for (i, args) in [&["list"][..], &["list", "--json"], &["world", "list"]].iter().enumerate() {
        let prelude = lj_tests::closed_pipe_prelude(&lj.td.join(format!("fifo-{i}")));
        let mut argv: Vec<String> =
            vec!["/bin/sh".into(), "-c".into(), format!("{prelude}\nexec \"$@\""), "sh".into()];
        argv.extend(["/usr/bin/env".into(), format!("LIGHTJAIL_ROOT={}", path_str(&lj.root()))]);
        argv.push(path_str(&lj.bin));
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = run_with_timeout(lj.cx.command(argv), None, Duration::from_secs(60)).expect("run ljbuild");
        assert!(
            out.status() == 141 && out.stderr.is_empty(),
            "ljbuild {args:?} into a closed pipe:\n{}",
            out.report()
        );
    }
    // No mount of the builds is left on the host.
    assert!(!host_mountinfo().contains(&path_str(&lj.root())), "a mount under the root is left on the host");
}

/// `from NAME PREFIX` picks the highest version on whole segments with numeric ordering.
fn prefix_resolution(lj: &Lj) {
    for v in ["1.9", "1.10", "1.10.1-rc1", "2.1", "2.1.5", "2.10"] {
        let f = lj.jailfile(&format!("lib-{v}"), &format!("name x/lib\n---\necho {v} > /version\n"));
        lj.ok(&["-v", v, &f]);
    }
    let cases = [
        ("1", "1.10.1-rc1"),
        ("1.9", "1.9"),
        ("1.10", "1.10.1-rc1"),
        ("2.1", "2.1.5"),
        ("2", "2.10"),
        ("", "2.10"),
    ];
    for (i, (prefix, want)) in cases.iter().enumerate() {
        let from = if prefix.is_empty() { "from x/lib".to_string() } else { format!("from x/lib {prefix}") };
        let f =
            lj.jailfile(&format!("app{i}"), &format!("name x/app{i}\n{from}\n---\ncat /version > /picked\n"));
        lj.ok(&[&f]);
        let got = lj.jail(&format!("x/app{i}"), "cat /picked");
        assert_eq!(got.trim(), *want, "from x/lib {prefix}");
        // `run NAME@PREFIX` resolves the same way.
        if !prefix.is_empty() {
            assert_eq!(lj.jail(&format!("x/lib@{prefix}"), "cat /version").trim(), *want);
        }
    }
    // No match: the error lists what exists.
    let f = lj.jailfile("nomatch", "name x/nomatch\nfrom x/lib 3\n---\n");
    lj.fails(&[&f], 4, &["x/lib", "'3'", "1.9, 1.10, 1.10.1-rc1, 2.1, 2.1.5, 2.10"]);
    let f = lj.jailfile("noparent", "name x/orphan\nfrom x/nope\n---\n");
    lj.fails(&[&f], 4, &["no overlay x/nope", "x/lib"]);
}

/// Same inputs: nothing runs, answer at once. A touched copied file: a new build, and the
/// message says which input changed.
fn cache_hit_and_miss(lj: &Lj) {
    let f = lj.jailfile("app", "name c/app\ncopy /src\n---\ncat /src/data.txt > /copied\necho ran\n");
    lj.file("app/data.txt", "one\n");
    let first = lj.ok(&[&f]);
    assert!(first.stdout.contains("ran"), "{}", first.report());
    let v1 = lj.versions("c/app");
    assert_eq!(v1.len(), 1);
    assert!(v1[0].starts_with("0.0.0-h"), "default version is derived from the hash: {v1:?}");

    // What running ljbuild costs now (start, the store read), for scale.
    let t = Instant::now();
    lj.ok(&["list"]);
    let baseline = t.elapsed();
    let t = Instant::now();
    let hit = lj.ok(&[&f]);
    let took = t.elapsed();
    assert!(hit.stdout.contains(&format!("cached c/app@{}", v1[0])), "{}", hit.report());
    assert!(!hit.stdout.contains("ran"), "the script ran on a cache hit\n{}", hit.report());
    assert!(
        took < baseline + Duration::from_secs(2),
        "cache hit took {took:?} (`ljbuild list` {baseline:?})"
    );
    eprintln!("cache hit: {took:?}, `ljbuild list` {baseline:?} (including setpriv/env)");

    // Touching (rewriting with the same content) changes nothing; new content does.
    lj.file("app/data.txt", "one\n");
    assert!(lj.ok(&[&f]).stdout.contains("cached"));
    lj.file("app/data.txt", "two\n");
    let miss = lj.ok(&[&f]);
    assert!(miss.stdout.contains("ran") && miss.stdout.contains("built c/app@"), "{}", miss.report());
    assert!(miss.stderr.contains("copy: 1 file (data.txt)"), "miss reason not given\n{}", miss.report());
    let v2 = lj.versions("c/app");
    assert_eq!(v2.len(), 2, "{v2:?}");
    let newest = v2.iter().find(|v| **v != v1[0]).expect("a new version");
    assert_eq!(lj.jail(&format!("c/app@{newest}"), "cat /copied"), "two\n");
    // `from c/app` picks the most recently built derived version.
    let child = lj.jailfile("child", "name c/child\nfrom c/app\n---\ncp /copied /got\n");
    lj.ok(&[&child]);
    assert_eq!(lj.jail("c/child", "cat /got"), "two\n");
    // A script change is named by line.
    lj.jailfile("app", "name c/app\ncopy /src\n---\ncat /src/data.txt > /copied\necho ran again\n");
    let miss = lj.ok(&[&f]);
    assert!(miss.stderr.contains("script line 2"), "{}", miss.report());
}

/// An explicit version is immutable: other inputs are refused unless --force.
fn immutable_versions(lj: &Lj) {
    let f = lj.jailfile("p", "name i/p\nversion 1.0\n---\necho one > /v\n");
    lj.ok(&[&f]);
    lj.jailfile("p", "name i/p\nversion 1.0\n---\necho two > /v\n");
    lj.fails(&[&f], 5, &["i/p@1.0", "immutable", "--force"]);
    assert_eq!(lj.jail("i/p", "cat /v"), "one\n");
    // -v overrides the Jailfile's version.
    lj.ok(&["-v", "1.1", &f]);
    assert_eq!(lj.jail("i/p@1.1", "cat /v"), "two\n");
    let out = lj.ok(&["--force", &f]);
    assert!(out.stdout.contains("built i/p@1.0"), "{}", out.report());
    assert_eq!(lj.jail("i/p@1.0", "cat /v"), "two\n");
    assert!(lj.staging().is_empty(), "staging left: {:?}", lj.staging());
}

/// A failing script: exit status 1, nothing published, the log kept and named.
fn failed_build_publishes_nothing(lj: &Lj) {
    let f = lj.jailfile(
        "bad",
        "name f/bad\nversion 1\n---\necho partial > /etc/partial\necho about to fail\nexit 3\n",
    );
    let out = lj.fails(
        &[&f],
        1,
        &["f/bad@1", "step 'script'", "exited with status 3", "nothing was published", "log: "],
    );
    assert!(out.stdout.contains("about to fail"), "the script's output is streamed\n{}", out.report());
    assert!(lj.versions("f/bad").is_empty(), "something was published: {:?}", lj.versions("f/bad"));
    assert!(lj.staging().is_empty(), "staging left: {:?}", lj.staging());
    let last = out.stderr.lines().last().unwrap_or_default();
    let log = last.rsplit("log: ").next().unwrap_or_default().trim_end_matches(')');
    let text = fs::read_to_string(log).unwrap_or_else(|e| panic!("log {log}: {e}\n{}", out.report()));
    assert!(text.contains("about to fail"), "log: {text}");
    assert!(lj.ok(&["list"]).stdout.is_empty());
    // A killed script (signal) also fails the build.
    let f = lj.jailfile("killed", "name f/killed\n---\nkill -9 $$\n");
    lj.fails(&[&f], 1, &["f/killed", "killed by signal 9"]);
    // gc removes the failed logs.
    let gc = lj.ok(&["gc"]);
    assert!(gc.stdout.contains("2 failed build log(s)"), "{}", gc.report());
    assert!(!Path::new(log).exists());
}

/// ljbuild killed with SIGKILL in the middle of the script: nothing is published, no mount or
/// process is left once the next build ran, and the next build of the same version is clean.
fn sigkill_then_clean_rebuild(lj: &Lj) {
    let f = lj.jailfile(
        "s",
        "name k/slow\nversion 1.0\ncopy /src\n---\nif [ -e /src/slow ]; then touch /started; sleep 60; fi\necho done > /result\n",
    );
    lj.file("s/slow", "");
    let mut child = lj.start(&[&f], "killed");
    let started = lj.root().join(".tmp/o%k%slow%1.0/root/started");
    let ok =
        wait_until(Duration::from_secs(30), || started.exists() || child.try_wait().ok().flatten().is_some());
    assert!(ok && started.exists(), "the build did not start: {:?}", lj.output_of("killed"));
    child.kill().expect("kill -9 ljbuild");
    let _ = child.wait();
    assert!(lj.versions("k/slow").is_empty(), "a killed build published something");

    fs::remove_file(lj.td.join("s/slow")).expect("rm slow");
    let out = lj.ok(&[&f]);
    assert!(out.stdout.contains("built k/slow@1.0"), "{}", out.report());
    assert_eq!(lj.jail("k/slow", "cat /result; test -e /started || echo clean"), "done\nclean\n");
    assert!(lj.staging().is_empty(), "staging left: {:?}", lj.staging());
    let left = lj.procs_using_root();
    assert!(left.is_empty(), "processes of the killed build survive: {left:?}");
    assert!(!host_mountinfo().contains(&path_str(&lj.root())), "a mount under the root is left on the host");
}

/// Two builds of one version at once: the second waits for the first's lock, then finds it
/// published.
fn concurrent_builds_serialize(lj: &Lj) {
    let f = lj.jailfile("c", "name p/conc\nversion 1\n---\nsleep 1\necho built > /built\n");
    let first = lj.start(&[&f], "first");
    let staging = lj.root().join(".tmp/o%p%conc%1");
    assert!(wait_until(Duration::from_secs(30), || staging.exists()), "first build did not start");
    let second = lj.start(&[&f], "second");
    assert_eq!(wait_child(first, Duration::from_secs(60)), 0, "first: {:?}", lj.output_of("first"));
    assert_eq!(wait_child(second, Duration::from_secs(60)), 0, "second: {:?}", lj.output_of("second"));
    let (out1, _) = lj.output_of("first");
    let (out2, err2) = lj.output_of("second");
    assert!(out1.contains("built p/conc@1"), "{out1}");
    assert!(out2.contains("cached p/conc@1"), "second: {out2}\n{err2}");
    assert!(err2.contains("waiting for another build of p/conc@1"), "second did not wait: {err2}");
    assert_eq!(lj.versions("p/conc"), ["1"]);
}

/// Every error is one line `ljbuild: ...` with a distinct exit status.
fn error_messages(lj: &Lj) {
    let f = lj.jailfile("e1", "name e/x\nfrm e/y\n---\n");
    lj.fails(&[&f], 3, &["e1/Jailfile:2:1:", "unknown directive 'frm'"]);
    let f = lj.jailfile("e2", "name e/x\nname e/y\n---\n");
    lj.fails(&[&f], 3, &["e2/Jailfile:2:", "duplicate 'name'"]);
    let f = lj.jailfile("e3", "name e/x\n");
    lj.fails(&[&f], 3, &["e3/Jailfile:", "missing '---'"]);
    let f = lj.jailfile("e4", "name nonamespace\n---\n");
    lj.fails(&[&f], 3, &["e4/Jailfile:1:", "no '/'"]);
    let f = lj.jailfile("e5", "name worlds/x\n---\n");
    lj.fails(&[&f], 3, &["reserved"]);
    lj.fails(&["missing/Jailfile"], 3, &["cannot read missing/Jailfile"]);
    let f = lj.jailfile("e6", "name e/x\nworld nope\n---\n");
    lj.fails(&[&f], 4, &["world 'nope' not found", "available: busybox"]);
    let f = lj.jailfile("e7", "name e/x\n---\n");
    let out = lj.run_env(&[&f], &[("LIGHTJAIL_WORLD", "gone")]).expect_status(4);
    assert!(out.stderr.contains("world 'gone' not found"), "{}", out.report());
    lj.fails(&["-v", "-bad", &f], 2, &[]);
    lj.fails(&["-v", "1/2", &f], 2, &["version"]);
    lj.fails(&["rm", "e/x"], 2, &["no version"]);
    lj.fails(&["rm", "e/x@1"], 4, &["e/x"]);
    lj.fails(&["run", "e/none"], 4, &["no overlay e/none"]);
    lj.fails(&["world", "use", "nope"], 4, &["world 'nope' not found"]);
    lj.fails(&["world", "import", "busybox", "/"], 5, &["world 'busybox' exists"]);
    // ljspawn missing: exit 7.
    let out = lj.run_env(&[&f], &[("LJSPAWN", "/nonexistent/ljspawn")]).expect_status(7);
    assert!(out.stderr.lines().last().unwrap_or("").contains("/nonexistent/ljspawn"), "{}", out.report());
    // A world without /bin/sh: ljspawn cannot start the script.
    let empty = lj.td.join("root/worlds/empty");
    fs::create_dir(&empty).expect("mkdir empty world");
    lj.cx.chown_caller(&empty);
    let f = lj.jailfile("e8", "name e/y\nworld empty\n---\ntrue\n");
    let out = lj.run(&[&f]);
    assert!(matches!(out.status(), 1 | 7), "{}", out.report());
    assert!(lj.versions("e/y").is_empty());
}

/// --dry-run prints the plan and runs nothing.
fn dry_run_runs_nothing(lj: &Lj) {
    let base = lj.jailfile("b", "name d/base\nversion 1\n---\ntouch /b\n");
    lj.ok(&[&base]);
    let f = lj.jailfile("d", "name d/x\nversion 2\nfrom d/base\ncopy /src\n---\ntouch /ran\n");
    let out = lj.ok(&["--dry-run", &f]);
    let net = format!("--net {}", default_net(lj));
    for want in [
        "d/x@2",
        "would build",
        "world busybox > d/base@1",
        "--layer",
        "--upper",
        &net,
        "touch /ran",
        "sha256:",
    ] {
        assert!(out.stdout.contains(want), "dry run lacks {want:?}\n{}", out.report());
    }
    assert!(lj.versions("d/x").is_empty());
    assert!(lj.staging().is_empty());
    let out = lj.ok(&["--dry-run", "--net", "none", &base]);
    assert!(out.stdout.contains("cached") && out.stdout.contains("--net none"), "{}", out.report());
    let out = lj.ok(&["run", "--dry-run", "d/base", "--", "ls"]);
    assert!(out.stdout.contains("--layer") && out.stdout.contains("-- ls"), "{}", out.report());
}

/// rm refuses while a child depends on the overlay; gc cleans stale staging.
fn rm_and_gc(lj: &Lj) {
    let p = lj.jailfile("p", "name r/parent\nversion 1\n---\ntouch /p\n");
    let c = lj.jailfile("c", "name r/child\nversion 1\nfrom r/parent\n---\ntouch /c\n");
    lj.ok(&[&p]);
    lj.ok(&[&c]);
    lj.fails(&["rm", "r/parent@1"], 5, &["r/parent@1 is the parent of r/child@1"]);
    lj.ok(&["rm", "r/child@1"]);
    assert!(lj.versions("r/child").is_empty());
    lj.ok(&["rm", "r/parent@1"]);
    assert!(!lj.root().join("r").exists(), "empty namespace directories are removed");
    // A stale staging area (its lock is free) is removed by gc.
    let stale = lj.root().join(".tmp/o%r%gone%1");
    for d in [stale.clone(), stale.join("root"), stale.join("root/work")] {
        fs::create_dir(&d).expect("mkdir stale");
        lj.cx.chown_caller(&d);
    }
    let out = lj.ok(&["gc"]);
    assert!(out.stdout.contains("removed 1 stale staging area"), "{}", out.report());
    assert!(lj.staging().is_empty());
    // --force removes a parent anyway; its child then reports a broken chain.
    lj.ok(&[&p]);
    lj.ok(&[&c]);
    lj.ok(&["rm", "--force", "r/parent@1"]);
    lj.fails(&["run", "r/child", "--", "true"], 4, &["r/child@1 depends on r/parent@1, which is missing"]);
}

/// world list / use / import, and the default world.
fn worlds(lj: &Lj) {
    let out = lj.ok(&["world", "list"]);
    assert!(out.stdout.contains("* busybox"), "{}", out.report());
    // A second world from a tarball, made from the first.
    let tar = lj.td.join("w.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-cf").arg(&tar).arg("-C").arg(lj.root().join("worlds/busybox")).arg(".");
    let st = run_with_timeout(cmd, None, Duration::from_secs(60)).expect("tar");
    assert_eq!(st.status(), 0, "{}", st.report());
    lj.cx.chown_caller(&tar);
    lj.ok(&["world", "import", "bb2", &path_str(&tar)]);
    assert!(lj.root().join("worlds/bb2/bin/busybox").is_file());
    let f = lj.jailfile("w", "name w/x\nworld bb2\n---\necho on-bb2 > /w\n");
    lj.ok(&[&f]);
    let meta =
        fs::read_to_string(lj.root().join("w/x").join(&lj.versions("w/x")[0]).join("meta.json")).unwrap();
    assert!(meta.contains("\"bb2\""), "{meta}");
    lj.ok(&["world", "use", "bb2"]);
    assert!(lj.ok(&["world", "list"]).stdout.contains("* bb2"));
    assert_eq!(fs::read_link(lj.root().join("worlds/default")).unwrap(), PathBuf::from("bb2"));
    // LIGHTJAIL_WORLD picks the world when the Jailfile does not.
    let f = lj.jailfile("w2", "name w/y\n---\ntrue\n");
    let out = lj.run_env(&[&f], &[("LIGHTJAIL_WORLD", "busybox")]).ok();
    assert!(out.stderr.contains("world busybox"), "{}", out.report());
    // A child names its parent's world or none.
    let f = lj.jailfile("w3", "name w/z\nworld busybox\nfrom w/x\n---\n");
    lj.fails(&[&f], 4, &["conflicts with the parent w/x"]);
}

/// copy: modes and symlinks kept, .ljignore honoured, the script runs in DEST.
fn copy_and_ljignore(lj: &Lj) {
    let f = lj.jailfile("src", "name cp/x\ncopy /app/src\n---\npwd > /pwd\nls -la /app/src > /listing\n");
    lj.file("src/run.sh", "#!/bin/sh\necho hi\n");
    fs::set_permissions(lj.td.join("src/run.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o750))
        .unwrap();
    std::os::unix::fs::symlink("run.sh", lj.td.join("src/link")).unwrap();
    lj.cx.chown_caller(&lj.td.join("src/link"));
    fs::create_dir(lj.td.join("src/build")).unwrap();
    lj.cx.chown_caller(&lj.td.join("src/build"));
    lj.file("src/build/out.o", "junk");
    lj.file("src/notes.tmp", "junk");
    lj.file("src/.ljignore", "build/\n*.tmp\n");
    lj.ok(&[&f]);
    let got = lj.jail("cp/x", "cat /pwd; /app/src/link; readlink /app/src/link; stat -c %a /app/src/run.sh; ls /app/src/build /app/src/notes.tmp 2>&1 | grep -c 'No such'");
    assert_eq!(got, "/app/src\nhi\nrun.sh\n750\n2\n");
}

/// The network a build gets without --net: pasta where it can run (root; a caller who may open
/// /dev/net/tun, with a non-setuid ljspawn), else the host's.
fn default_net(lj: &Lj) -> &'static str {
    let tun = lj.cx.command(["/bin/sh", "-c", "exec 3<>/dev/net/tun"]).status().is_ok_and(|s| s.success());
    if lj.cx.mode == Mode::Root || tun {
        "pasta"
    } else {
        "host"
    }
}

/// --net none cuts the network of a build, --net host shares the host's; the default is a
/// network namespace of the build's own with outbound access through pasta (eth0 and lo),
/// where pasta can run.
fn net_none(lj: &Lj) {
    let f = lj.jailfile(
        "n",
        "name n/x\n---\ncat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort > /ifaces\n",
    );
    lj.ok(&["-v", "host", "--net", "host", &f]);
    lj.ok(&["-v", "none", "--net", "none", &f]);
    let out = lj.ok(&["-v", "default", &f]);
    assert_eq!(lj.jail("n/x@none", "cat /ifaces"), "lo\n");
    let host = lj.jail("n/x@host", "cat /ifaces");
    let host_ifaces = fs::read_to_string("/proc/net/dev").unwrap().lines().skip(2).count();
    assert_eq!(host.lines().count(), host_ifaces, "host networking: {host}");
    let own = fs::read_link("/proc/self/ns/net").unwrap();
    if default_net(lj) == "pasta" {
        assert_eq!(lj.jail("n/x@default", "cat /ifaces"), "eth0\nlo\n");
        assert!(!out.stderr.contains("host's network"), "{}", out.report());
    } else {
        assert!(out.stderr.contains("the build uses the host's network (--net host)"), "{}", out.report());
        eprintln!(
            "NOTE {}: pasta cannot run for this caller here ({own:?}): builds fall back to --net host",
            lj.cx.name
        );
    }
}

/// The root and what ljbuild creates in it are private (0700).
fn root_layout_private(lj: &Lj) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = lj.jailfile("l", "name lay/x\nversion 1\n---\ntouch /x\n");
    lj.ok(&[&f]);
    for rel in ["", ".tmp", ".locks", ".logs", "worlds", "lay", "lay/x", "lay/x/1"] {
        let m = fs::metadata(lj.root().join(rel)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{rel} is not 0700");
        assert_eq!(m.uid(), lj.cx.caller_uid, "{rel} not owned by the caller");
    }
    // The overlay's own root keeps the world's mode (it is the jail's /).
    let m = fs::metadata(lj.root().join("lay/x/1/root")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o755);
    // LIGHTJAIL_ROOT empty means the default, --root wins over the variable.
    let other = lj.td.join("other");
    let out = lj.run(&["--root", &path_str(&other), "list"]);
    assert_eq!(out.status(), 0, "{}", out.report());
    assert!(other.join("worlds").is_dir());
}

/// A build may install setuid/setgid files (as packages do: openssh-server's ssh-keysign): the
/// published layer keeps their mode, in the 0700 store. `ljbuild run`'s jail may not make one.
fn setuid_files_kept_in_layers(lj: &Lj) {
    use std::os::unix::fs::PermissionsExt;
    let f = lj.jailfile(
        "s",
        "name suid/x\nversion 1\n---\ntouch /keysign /sg\nchmod 4711 /keysign\nchmod 2755 /sg\n",
    );
    lj.ok(&[&f]);
    let mode =
        |rel: &str| fs::metadata(lj.root().join("suid/x/1/root").join(rel)).unwrap().permissions().mode();
    assert_eq!(mode("keysign") & 0o7777, 0o4711);
    assert_eq!(mode("sg") & 0o7777, 0o2755);
    let out = lj.run(&[
        "run",
        "suid/x",
        "--",
        "/bin/sh",
        "-c",
        "touch /tmp/y; chmod u+s /tmp/y && echo MADE; chmod u+s /sg && echo MADE; true",
    ]);
    assert_eq!(out.status(), 0, "{}", out.report());
    assert!(!out.stdout.contains("MADE"), "{}", out.report());
}

/// A script too long for one argument runs from a file; neither it nor the resolv.conf mount
/// point leaves anything in the published layer.
fn big_script_no_artifacts(lj: &Lj) {
    let mut text = String::from("name big/x\n---\n");
    for i in 0..3000 {
        text.push_str(&format!("echo line {i} with some padding to make the script long > /dev/null\n"));
    }
    text.push_str("echo last > /last\n");
    assert!(text.len() > 150 * 1024);
    let f = lj.jailfile("big", &text);
    lj.ok(&[&f]);
    let v = &lj.versions("big/x")[0];
    let mut top: Vec<String> = fs::read_dir(lj.root().join("big/x").join(v).join("root"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["last"], "the layer holds more than the script wrote");
    assert_eq!(lj.jail("big/x", "cat /last"), "last\n");
}

/// Rootless on a world root built (what lightjail could not do at all): the build runs; the
/// jail sees the root-owned files as nobody:nogroup, can read them and add new directories, but
/// cannot modify them (copy-up of a file it does not own fails). ljbuild warns up front.
fn rootless_on_root_built_world(lj: &Lj) {
    if lj.cx.run_as.is_none() {
        lj.cx.skip("needs the tests to run as root (a root-owned world for the rootless user)");
        return;
    }
    std::os::unix::fs::symlink(lj.cx.world(), lj.root().join("worlds/rootworld")).unwrap();
    lj.cx.chown_caller(&lj.root().join("worlds/rootworld"));
    let f = lj.jailfile(
        "r",
        "name rw/x\nworld rootworld\n---\nmkdir /opt && echo mine > /opt/mine\nstat -c '%U:%G' /etc/passwd > /opt/owner\n\
         if echo x >> /etc/passwd 2>/dev/null; then echo yes > /opt/wrote; else echo no > /opt/wrote; fi\n",
    );
    let out = lj.run(&["--net", "none", &f]).ok();
    assert!(out.stderr.contains("owned by uid 0") && out.stderr.contains("nobody"), "{}", out.report());
    assert_eq!(
        lj.jail("rw/x", "cat /opt/owner /opt/wrote /opt/mine; stat -c '%U' /opt/mine"),
        "nobody:nogroup\nno\nmine\nroot\n"
    );
}

/// Puts a Debian world at `worlds/debian` of the test's root: the shared one (root), or the
/// test user's copy made by tests/prepare.sh, imported with `ljbuild world import` (rootless).
/// False (after a SKIP) when there is none.
fn debian_world(lj: &Lj) -> bool {
    use std::os::unix::fs::MetadataExt;
    let world = std::env::var_os("LJ_DEBIAN_WORLD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lj-debian-world"));
    if !world.join("usr/bin/apt-get").is_file() {
        lj.cx.skip(&format!(
            "no Debian world at {} (tests/prepare.sh makes one with debootstrap; or set LJ_DEBIAN_WORLD=DIR)",
            world.display()
        ));
        return false;
    }
    if lj.cx.caller_uid == lj_tests::current_uid() {
        // Root (or the tests run unprivileged and own the world): use it in place, read-only.
        std::os::unix::fs::symlink(&world, lj.root().join("worlds/debian")).unwrap();
        return true;
    }
    let copy = lj.cx.dir.join(format!("worlds/debian-{}", lj_tests::TEST_USER));
    if fs::metadata(&copy).map(|m| m.uid()).ok() != Some(lj.cx.caller_uid) {
        lj.cx.skip(&format!("{} missing or not the test user's: run tests/prepare.sh", copy.display()));
        return false;
    }
    let t = Instant::now();
    lj.ok(&["world", "import", "debian", &path_str(&copy)]);
    eprintln!("rootless world import: {:?}", t.elapsed());
    true
}

/// A script that adds a user and a group and gives its own files to them (useradd, groupadd,
/// chown, chgrp): needs jail ids beyond one and CHOWN/FOWNER in the build's user namespace.
fn debian_users_and_chown(lj: &Lj) {
    if !debian_world(lj) {
        return;
    }
    let f = lj.jailfile(
        "users",
        "name deb/users\nworld debian\n---\ngroupadd -g 2000 builders\nuseradd -u 2001 -g builders -m builder\n\
         mkdir -p /srv/app && echo data > /srv/app/f\nchown builder /srv/app/f\nchgrp builders /srv/app\n\
         touch /srv/app/g && chown 3000:3000 /srv/app/g\n\
         chmod 2775 /srv/app\nstat -c '%U:%G %a' /srv/app /srv/app/f /home/builder\n",
    );
    let out = lj.run(&["--net", "none", &f]).ok();
    assert!(
        out.stdout.contains("root:builders 2775\nbuilder:root 644\nbuilder:builders 755\n"),
        "{}",
        out.report()
    );
    let got = lj.jail("deb/users", "stat -c '%u:%g' /srv/app /srv/app/f /srv/app/g; id builder");
    assert_eq!(
        got,
        "0:2000\n2001:0\n3000:3000\nuid=2001(builder) gid=2000(builders) groups=2000(builders)\n"
    );
}

/// A user without subordinate ids builds with one id and is told so (a warning naming the fix),
/// never silently.
fn one_id_without_subids(lj: &Lj) {
    if lj_tests::current_uid() != 0 {
        lj.cx.skip("needs root to run ljbuild as a user without subordinate ids");
        return;
    }
    let uid = 54321u32; // no /etc/passwd entry, no range
    let home = lj.dir("nosub");
    let chown = |p: &Path| {
        let mut c = Command::new("chown");
        c.arg("-R").arg(format!("{uid}:{uid}")).arg(p);
        assert_eq!(run_with_timeout(c, None, Duration::from_secs(60)).expect("chown").status(), 0);
    };
    let world = lj.cx.world_copy();
    chown(world.path());
    fs::write(home.join("Jailfile"), "name n/x\n---\nid -u > /who\n").unwrap();
    chown(&home);
    let setpriv = which("setpriv").expect("setpriv");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&setpriv);
        cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "--".into()])
            .arg("/usr/bin/env")
            .arg("-i")
            .arg(format!("LIGHTJAIL_ROOT={}/root", path_str(&home)))
            .arg(&lj.bin)
            .args(args)
            .current_dir(&home);
        run_with_timeout(cmd, None, Duration::from_secs(60)).expect("ljbuild")
    };
    let out = run(&["world", "import", "bb", &path_str(world.path())]);
    assert_eq!(out.status(), 0, "{}", out.report());
    let out = run(&["Jailfile"]);
    assert_eq!(out.status(), 0, "{}", out.report());
    assert!(
        out.stderr.contains(&format!("ljbuild: warning: no range for uid {uid} in /etc/subuid or /etc/subgid: the build maps one id (you, as root), so packages that add users or chown files fail (an administrator adds ranges: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER)")),
        "{}",
        out.report()
    );
    let out = run(&["run", "n/x", "--", "cat", "/who"]);
    assert_eq!(out.stdout, "0\n", "{}", out.report());
}

/// A real distribution, as buildah builds it: a Debian world (`debootstrap --variant=minbase
/// bookworm`, at `$LJ_DEBIAN_WORLD`), a Jailfile that runs plain `apt-get update` and installs
/// packages whose maintainer scripts add system users and chown files (uuid-runtime,
/// openssh-server), with no apt options: apt drops to its `_apt` user, dpkg chowns and sets
/// setuid modes. Root builds on the shared world; the rootless user imports its own copy
/// (made once per run by tests/prepare.sh). The published layer keeps ssh-keysign setuid, and
/// files owned by the packages' users keep those owners.
fn debian_apt_get(lj: &Lj) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !debian_world(lj) {
        return;
    }
    let f = lj.jailfile(
        "deb",
        "name deb/ssh\nworld debian\n---\napt-get update && apt-get install -y uuid-runtime openssh-server\n\
         apt-get clean\nid uuidd\nid sshd\n",
    );
    let t = Instant::now();
    let out = lj.run_for(&[&f], &[], Duration::from_secs(220));
    if out.status() == 1
        && (out.stdout.contains("Temporary failure resolving") || out.stdout.contains("Could not resolve"))
    {
        lj.cx.skip("no network to the Debian mirror");
        return;
    }
    let out = out.ok();
    eprintln!("debian build: {:?}", t.elapsed());
    for want in ["Setting up uuid-runtime", "Setting up openssh-server", "uid=", "(uuidd)", "(sshd)"] {
        assert!(out.stdout.contains(want), "the build's output lacks {want:?}\n{}", out.report());
    }
    for bad in ["setgroups", "seteuid", "Operation not permitted", "Permission denied"] {
        assert!(!out.stdout.contains(bad), "the build's output says {bad:?}\n{}", out.report());
    }
    let v = lj.versions("deb/ssh").pop().expect("published");
    let layer = lj.root().join("deb/ssh").join(&v).join("root");
    // The setuid helper keeps its mode in the published layer (owned by jail root).
    let keysign =
        fs::symlink_metadata(layer.join("usr/lib/openssh/ssh-keysign")).expect("ssh-keysign in the layer");
    assert_eq!(keysign.permissions().mode() & 0o7777, 0o4755, "ssh-keysign lost its setuid bit");
    assert_eq!(keysign.uid(), lj.cx.caller_uid);
    // uuidd's state directory belongs to its user, mapped (root: the same id; rootless: a
    // subordinate id above the caller's).
    let st = fs::metadata(layer.join("var/lib/libuuid")).expect("/var/lib/libuuid");
    // `ljbuild run` maps the ids as the build did: the package users' files show their owners.
    let inside = lj.jail(
        "deb/ssh",
        "stat -c '%U:%G %u' /var/lib/libuuid; /usr/bin/uuidgen | wc -c; stat -c %a /usr/lib/openssh/ssh-keysign",
    );
    let lines: Vec<&str> = inside.lines().collect();
    assert!(lines[0].starts_with("uuidd:uuidd "), "{inside}");
    let jail_uid: u32 = lines[0].rsplit(' ').next().unwrap().parse().unwrap();
    let want_host = if lj.cx.caller_uid == 0 {
        jail_uid
    } else {
        // The caller is jail root; its first /etc/subuid range holds jail ids 1 and up.
        let subuid = fs::read_to_string("/etc/subuid").unwrap();
        let start: u32 = subuid
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{}:", lj_tests::TEST_USER)))
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse().ok())
            .expect("a subuid range for the test user");
        start + jail_uid - 1
    };
    assert_eq!(st.uid(), want_host, "{inside}");
    assert_eq!(&lines[1..], ["37", "4755"], "{inside}");
    // The second time nothing runs.
    assert!(lj.ok(&[&f]).stdout.contains("cached deb/ssh@"));
    // The layer holds directories of the packages' users closed to others (apt's cache): rm
    // still removes it all, rootless too.
    lj.ok(&["rm", &format!("deb/ssh@{v}")]);
    assert!(!lj.root().join("deb/ssh").exists());
    assert!(lj.staging().is_empty(), "{:?}", lj.staging());
}

/// Files a build gives to other jail ids, in directories closed to others: rootless these are
/// the caller's subordinate ids on the host, which the caller cannot read or remove there;
/// inspect lists what it cannot read, and rm, gc and a failed build remove everything.
fn files_of_other_ids(lj: &Lj) {
    let script = "mkdir -p /d/e && echo x > /d/e/f && chown -R 1000:1000 /d && chmod 700 /d /d/e\n";
    let f = lj.jailfile("o", &format!("name o/x\nversion 1\n---\n{script}"));
    lj.ok(&[&f]);
    let out = lj.ok(&["inspect", "o/x@1"]);
    if lj.cx.caller_uid == 0 {
        assert!(out.stdout.contains("  0700 /d/e/\n"), "{}", out.report());
    } else {
        assert!(out.stdout.contains("unread   1\n  /d\n"), "{}", out.report());
    }
    lj.ok(&["rm", "o/x@1"]);
    assert!(!lj.root().join("o").exists());
    let bad = lj.jailfile("b", &format!("name o/bad\nversion 1\n---\n{script}false\n"));
    lj.fails(&[&bad], 1, &["o/bad@1", "Jailfile lines 4-5"]);
    assert!(lj.staging().is_empty(), "a failed build left {:?}", lj.staging());
}

/// The last stderr line, which must be the only `ljbuild: ` error line.
#[track_caller]
fn last_line(out: &Output) -> String {
    out.stderr.lines().last().unwrap_or_default().to_string()
}

/// Without --root and LIGHTJAIL_ROOT: root uses /usr/local/lj, everyone else
/// $XDG_DATA_HOME/lightjail, else ~/.local/share/lightjail. An unusable root is named, with
/// where it came from.
fn default_root_per_user(lj: &Lj) {
    let home = lj.dir("home");
    let h = path_str(&home);
    let file = lj.td.join("plainfile");
    lj.file("plainfile", "");
    let bad = format!("{}/root", path_str(&file));
    let out = lj.run_bare(&["list"], &[("LIGHTJAIL_ROOT", &bad), ("HOME", &h)]).expect_status(6);
    assert_eq!(
        last_line(&out),
        format!(
            "ljbuild: cannot use the lightjail root {bad} (LIGHTJAIL_ROOT): cannot create {bad}: Not a directory (os error 20)"
        ),
        "{}",
        out.report()
    );
    let out = lj.run_bare(&["--root", &bad, "list"], &[]).expect_status(6);
    assert!(
        last_line(&out).starts_with(&format!("ljbuild: cannot use the lightjail root {bad} (--root): ")),
        "{}",
        out.report()
    );
    if lj.cx.caller_uid == 0 {
        // The default itself is not touched (it is the host's); its error names it.
        let out = lj.run_bare(&["--help"], &[]).ok();
        assert!(out.stdout.contains("/usr/local/lj for root"), "{}", out.report());
        assert!(out.stdout.contains("~/.local/share/lightjail"), "{}", out.report());
        return;
    }
    let out = lj.run_bare(&["list"], &[("HOME", &h)]).ok();
    assert!(out.stderr.contains(&format!("no overlays in {h}/.local/share/lightjail")), "{}", out.report());
    assert!(home.join(".local/share/lightjail/worlds").is_dir());
    let xdg = lj.dir("xdg");
    let out = lj.run_bare(&["list"], &[("HOME", &h), ("XDG_DATA_HOME", &path_str(&xdg))]).ok();
    assert!(out.stderr.contains(&format!("no overlays in {}/lightjail", path_str(&xdg))), "{}", out.report());
    let out = lj.run_bare(&["list"], &[]).expect_status(6);
    assert_eq!(
        last_line(&out),
        "ljbuild: no lightjail root: set --root or LIGHTJAIL_ROOT (HOME and XDG_DATA_HOME are unset, so there is no default ~/.local/share/lightjail)"
    );
}

/// The shell's line numbers are the Jailfile's; a CRLF Jailfile reads as the same file with LF.
fn script_line_numbers_and_crlf(lj: &Lj) {
    let text = "name e/lines\n# a comment\nversion 1\n---\ntrue\nnosuchcmd\necho never\n";
    let f = lj.jailfile("l1", text);
    let out = lj.run(&[&f]).expect_status(1);
    let last = last_line(&out);
    assert!(
        last.starts_with("ljbuild: build of e/lines@1 failed in step 'script' (Jailfile line 6: nosuchcmd: not found): exited with status 127; nothing was published (log: "),
        "{}",
        out.report()
    );
    // No report from the shell: the script's lines.
    let f = lj.jailfile("l2", "name e/lines2\nversion 1\n---\ntrue\nfalse\n");
    let out = lj.run(&[&f]).expect_status(1);
    assert!(
        last_line(&out).starts_with("ljbuild: build of e/lines2@1 failed in step 'script' (Jailfile lines 4-5): exited with status 1;"),
        "{}",
        out.report()
    );
    // $LINENO agrees.
    let f = lj.jailfile("l3", "name e/lineno\n\n---\n\necho $LINENO > /lineno\n");
    lj.ok(&[&f]);
    assert_eq!(lj.jail("e/lineno", "cat /lineno"), "5\n");
    // CRLF: accepted, read as LF: it runs, and it is the same build (same inputs hash).
    let crlf_dir = lj.jailfile("c3", "name e/crlf3\r\nversion 1\r\n---\r\ntrue\r\necho ok > /ok\r\n");
    lj.ok(&[&crlf_dir]);
    assert_eq!(lj.jail("e/crlf3", "od -c /ok | head -1"), "0000000   o   k  \\n\n");
    let lf3 = lj.jailfile("c4", "name e/crlf3\nversion 1\n---\ntrue\necho ok > /ok\n");
    let out = lj.ok(&[&lf3]);
    assert!(
        out.stdout.contains("cached e/crlf3@1"),
        "CRLF and LF Jailfiles differ in inputs\n{}",
        out.report()
    );
}

/// `run` and `from` without a version pick the most recently built version; a prefix picks the
/// highest match; `0.0.0-h` + hex digits picks the derived version with that hash prefix; `run`
/// says what it picked on stderr (not with -q).
fn version_rules(lj: &Lj) {
    let f = lj.jailfile("app", "name v/app\nversion 0.2\n---\necho release > /which\n");
    lj.ok(&[&f]);
    lj.jailfile("app", "name v/app\n---\necho edited > /which\n");
    lj.ok(&[&f]);
    let derived =
        lj.versions("v/app").into_iter().find(|v| v.starts_with("0.0.0-h")).expect("a derived version");
    let out = lj.ok(&["run", "v/app", "--", "cat", "/which"]);
    assert_eq!(out.stdout, "edited\n");
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains("run")).collect::<Vec<_>>(),
        [format!("ljbuild: run: v/app@{derived} (the most recently built version)")],
        "{}",
        out.report()
    );
    let out = lj.ok(&["-q", "run", "v/app", "--", "true"]);
    assert_eq!(out.stderr, "", "-q still printed\n{}", out.report());
    // from without a version: the same rule.
    let c = lj.jailfile("child", "name v/child\nfrom v/app\n---\ncp /which /got\n");
    lj.ok(&[&c]);
    assert_eq!(lj.jail("v/child", "cat /got"), "edited\n");
    // A prefix: the highest version matching it.
    let out = lj.ok(&["run", "v/app@0", "--", "cat", "/which"]);
    assert_eq!(out.stdout, "release\n");
    assert!(
        out.stderr.contains("ljbuild: run: v/app@0.2 (the highest version matching '0')"),
        "{}",
        out.report()
    );
    // A short prefix of the derived hash.
    let short = &derived[..9];
    let out = lj.ok(&["run", &format!("v/app@{short}"), "--", "cat", "/which"]);
    assert_eq!(out.stdout, "edited\n");
    assert!(
        out.stderr.contains(&format!(
            "ljbuild: run: v/app@{derived} (the only derived version starting with '{short}')"
        )),
        "{}",
        out.report()
    );
    // Two derived versions and the bare derived prefix: ambiguous, named.
    lj.jailfile("app", "name v/app\n---\necho again > /which\n");
    lj.ok(&[&f]);
    let mut ds: Vec<String> = lj.versions("v/app").into_iter().filter(|v| v.starts_with("0.0.0-h")).collect();
    ds.sort();
    let out = lj.run(&["run", "v/app@0.0.0-h", "--", "true"]).expect_status(4);
    assert_eq!(
        last_line(&out),
        format!(
            "ljbuild: '0.0.0-h' matches more than one version of v/app ({}): give more of the hash",
            ds.join(", ")
        )
    );
    let out = lj.run(&["run", "v/app@0.0.0-hzz", "--", "true"]).expect_status(4);
    assert!(
        last_line(&out).starts_with("ljbuild: no version of v/app matches '0.0.0-hzz' (available: "),
        "{}",
        out.report()
    );
}

/// The README's CI recipe: build the image once, run the checkout's tests in it with the
/// checkout bound read-write; the job's status is the tests' status.
fn run_ci_recipe(lj: &Lj) {
    let img = lj.jailfile(
        "img",
        "name ci/img\nversion 1\n---\nmkdir -p /opt/tool && echo 'echo tool ran' > /opt/tool/run\n",
    );
    lj.ok(&[&img]);
    let checkout = lj.dir("checkout");
    lj.file(
        "checkout/test.sh",
        "sh /opt/tool/run\necho \"$MODE in $(pwd) as $(id -u)\" > result\n[ \"$MODE\" = pass ] || exit 3\n",
    );
    let co = path_str(&checkout);
    let job = |mode: &str| {
        lj.run(&[
            "run",
            "ci/img",
            "--bind",
            &co,
            "/src",
            "--chdir",
            "/src",
            "--setenv",
            "MODE",
            mode,
            "--tmpfs",
            "/src/scratch",
            "--timeout",
            "60s",
            "--",
            "/bin/sh",
            "test.sh",
        ])
    };
    let out = job("pass").ok();
    assert_eq!(out.stdout, "tool ran\n");
    assert!(
        out.stderr.contains("ljbuild: run: ci/img@1 (the most recently built version)"),
        "{}",
        out.report()
    );
    assert_eq!(fs::read_to_string(checkout.join("result")).unwrap(), "pass in /src as 0\n");
    let out = job("fail").expect_status(3);
    assert_eq!(
        fs::read_to_string(checkout.join("result")).unwrap(),
        "fail in /src as 0\n",
        "{}",
        out.report()
    );
    // A relative SRC is the caller's current directory's; --user runs as another jail user.
    let out = lj
        .run(&[
            "run",
            "ci/img",
            "--ro-bind",
            "checkout",
            "/src",
            "--user",
            "1000:1000",
            "--",
            "/bin/sh",
            "-c",
            "id -u; cat /src/result; touch /src/x 2>/dev/null || echo ro",
        ])
        .ok();
    assert_eq!(out.stdout, "1000\nfail in /src as 0\nro\n", "{}", out.report());
    // The limits are ljspawn's own options, passed on as spelled.
    let out = lj.ok(&[
        "run",
        "--dry-run",
        "ci/img",
        "--memory",
        "256M",
        "--pids",
        "64",
        "--cpus",
        "0.5",
        "--net",
        "host",
        "--",
        "true",
    ]);
    assert!(
        out.stdout.contains("--memory 256M --pids 64 --cpus 0.5 --net host --subids -- true")
            && out.stdout.contains("--ro-bind /etc/resolv.conf /etc/resolv.conf"),
        "{}",
        out.report()
    );
}

/// Bad values are usage errors (exit 2), said in one line.
/// ljbuild's failure and status lines into a stderr whose reader has gone (`ljbuild ... 2>&1 |
/// head -0`, a CI log reader that went away): each exit status stays the one the line goes
/// with, never a panic's abort (134: `eprintln!` panics on EPIPE), and nothing says "panicked"
/// on stdout, which stays the test's.
fn lines_into_closed_stderr(lj: &Lj) {
    let failing = lj.td.join(lj.jailfile("fails", "name t/fails\nversion 1.0\n---\nexit 3\n"));
    let ok = lj.td.join(lj.jailfile("ok", "name t/ok\nversion 1.0\n---\necho built\n"));
    let cases: [(&[&str], i32); 6] = [
        // "no overlays in ROOT", a status line: 0.
        (&["list"], 0),
        (&["--no-such-option"], 2),
        (&["run", "no/such", "--", "/bin/true"], 4),
        // The build's progress lines, its failure and the log's path.
        (&[&path_str(&failing)], 1),
        (&[&path_str(&ok)], 0),
        (&["--quiet", &path_str(&ok), "-v", "1.0"], 0),
    ];
    for (i, (args, code)) in cases.iter().enumerate() {
        let mut argv: Vec<OsString> =
            vec!["/usr/bin/env".into(), format!("LIGHTJAIL_ROOT={}", path_str(&lj.root())).into()];
        argv.push(lj.bin.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let out = lj_tests::run_into_closed_pipe(lj.cx, &lj.td.join(format!("fifo-{i}")), 2, &argv);
        assert!(
            out.status() == *code && !out.stdout.contains("panicked"),
            "expected {code} into a closed stderr:\n{}",
            out.report()
        );
    }
    assert_eq!(lj.versions("t/ok"), ["1.0"]);
    assert!(lj.versions("t/fails").is_empty());
}

fn usage_errors(lj: &Lj) {
    let f = lj.jailfile("u", "name u/x\n---\ntrue\n");
    let out = lj.run(&["--timeout", "5y", &f]).expect_status(2);
    assert_eq!(
        last_line(&out),
        "ljbuild: invalid value '5y' for '--timeout <DURATION>': unknown unit 'y' (expected ms, s, m or h) (see ljbuild --help)"
    );
    assert!(lj.versions("u/x").is_empty());
    let out = lj.run(&["run", "u/x", "--timeout", "soon", "--", "true"]).expect_status(2);
    assert!(
        last_line(&out).starts_with("ljbuild: invalid value 'soon' for '--timeout <DURATION>'"),
        "{}",
        out.report()
    );
}

/// A tarball without a `./` entry (every buildah/OCI layer blob) imports as a world whose `/`
/// is 0755, so an unprivileged jail user can enter it.
fn tarball_without_dot_entry(lj: &Lj) {
    use std::os::unix::fs::PermissionsExt;
    let world = lj.root().join("worlds/busybox");
    let tar = lj.td.join("layer.tar");
    let mut names: Vec<String> = fs::read_dir(&world)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut cmd = Command::new("tar");
    cmd.arg("-cf").arg(&tar).arg("-C").arg(&world).args(&names);
    let st = run_with_timeout(cmd, None, Duration::from_secs(60)).expect("tar");
    assert_eq!(st.status(), 0, "{}", st.report());
    lj.cx.chown_caller(&tar);
    lj.ok(&["world", "import", "layer", &path_str(&tar)]);
    let mode = fs::metadata(lj.root().join("worlds/layer")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    let f = lj.jailfile("t", "name t/x\nworld layer\n---\ntrue\n");
    lj.ok(&[&f]);
    let out =
        lj.ok(&["run", "t/x", "--user", "65534:65534", "--", "/bin/sh", "-c", "id -u; ls / | grep -cx bin"]);
    assert_eq!(out.stdout, "65534\n1\n");
}

/// Plain lines without escapes in CI and pipes; on a terminal styled lines and a live status,
/// without escapes when NO_COLOR is set.
fn output_styles(lj: &Lj) {
    let f = lj.jailfile("s", "name s/x\ncopy /src\n---\necho first line\nsleep 1\necho second\n");
    let root = path_str(&lj.root());
    let out = lj.run_env(&[&f], &[("CI", "true")]).ok();
    assert!(!out.stderr.contains('\x1b') && !out.stdout.contains('\x1b'), "escapes in CI\n{}", out.report());
    assert!(out.stderr.contains("ljbuild: script: running s/x@"), "{}", out.report());
    assert!(out.stdout.contains("first line\nsecond\n"), "{}", out.report());
    let Some(script) = which("script") else {
        lj.cx.skip("script (util-linux) not installed: no terminal to test on");
        return;
    };
    let on_tty = |file: &str, no_color: bool| {
        lj.file(&format!("s/{file}"), &format!("{file}\n")); // a new input: a new build
        let cmdline = format!(
            "env -u CI {} LIGHTJAIL_ROOT={root} {} {f}",
            if no_color { "NO_COLOR=1" } else { "" },
            path_str(&lj.bin)
        );
        let mut cmd = lj.cx.command([path_str(&script), "-qec".into(), cmdline, "/dev/null".into()]);
        cmd.current_dir(lj.td.path());
        run_with_timeout(cmd, None, Duration::from_secs(120)).expect("script").ok()
    };
    let out = on_tty("a", false);
    assert!(
        out.stdout.contains("\x1b[") && out.stdout.contains("==>"),
        "no styles on a terminal\n{}",
        out.report()
    );
    assert!(out.stdout.contains("  script 0 s  first line"), "no live status line\n{}", out.report());
    let out = on_tty("b", true);
    assert!(!out.stdout.contains('\x1b'), "NO_COLOR not honoured\n{}", out.report());
    assert!(out.stdout.contains("==> script") && out.stdout.contains("built s/x@"), "{}", out.report());
}

/// world rm refuses while overlays stand on the world; world list --json.
fn world_rm_and_json(lj: &Lj) {
    let tar = lj.td.join("w.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-cf").arg(&tar).arg("-C").arg(lj.root().join("worlds/busybox")).arg(".");
    assert_eq!(run_with_timeout(cmd, None, Duration::from_secs(60)).expect("tar").status(), 0);
    lj.cx.chown_caller(&tar);
    lj.ok(&["world", "import", "bb2", &path_str(&tar)]);
    let f = lj.jailfile("w", "name w/x\nversion 1\nworld bb2\n---\ntrue\n");
    lj.ok(&[&f]);
    let out = lj.ok(&["world", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("world list --json");
    let worlds = v.as_array().expect("an array");
    assert_eq!(worlds.len(), 2, "{v}");
    assert_eq!(worlds[0]["name"], "bb2");
    assert_eq!(worlds[0]["default"], false);
    assert_eq!(worlds[0]["overlays"], 1);
    assert_eq!(worlds[1]["name"], "busybox");
    assert_eq!(worlds[1]["default"], true);
    assert_eq!(worlds[1]["path"], path_str(&lj.root().join("worlds/busybox")));
    let out = lj.run(&["world", "rm", "bb2"]).expect_status(5);
    assert_eq!(
        last_line(&out),
        "ljbuild: world 'bb2' has overlays built on it: w/x@1 (remove those first, or use --force)"
    );
    assert!(lj.root().join("worlds/bb2/bin").is_dir());
    lj.ok(&["rm", "w/x@1"]);
    let out = lj.ok(&["world", "rm", "bb2"]);
    assert_eq!(out.stdout, "removed world bb2\n");
    assert!(!lj.root().join("worlds/bb2").exists());
    lj.fails(&["world", "rm", "bb2"], 4, &["world 'bb2' not found", "available: busybox"]);
    // The default world: removed with --force, the default link goes too.
    let f = lj.jailfile("w2", "name w/y\nversion 1\n---\ntrue\n");
    lj.ok(&[&f]);
    let out = lj.ok(&["world", "rm", "--force", "busybox"]);
    assert!(out.stdout.contains("removed world busybox (it was the default"), "{}", out.report());
    assert!(out.stderr.contains("1 overlay(s) were built on world 'busybox'"), "{}", out.report());
    assert!(fs::symlink_metadata(lj.root().join("worlds/default")).is_err());
    assert!(lj.ok(&["world", "list", "--json"]).stdout.trim() == "[]");
}

/// inspect: world, parents, inputs, sizes, log, and the layer's adds, changes and deletes
/// (whiteouts read as deletions).
fn inspect_layer(lj: &Lj) {
    let base = lj.jailfile(
        "b",
        "name in/base\nversion 1\n---\nmkdir -p /opt/old && echo x > /opt/old/f\necho keep > /etc/keep\n",
    );
    lj.ok(&[&base]);
    let f = lj.jailfile(
        "t",
        "name in/top\nversion 2\nfrom in/base\ncopy /src\n---\necho new > /etc/new\necho more >> /etc/passwd\nrm /etc/group\nrm -r /opt/old\nchmod 700 /etc\nln -s new /etc/link\n",
    );
    lj.ok(&[&f]);
    let out = lj.ok(&["inspect", "in/top@2"]);
    let text = &out.stdout;
    for want in [
        "overlay  in/top@2\n",
        "chain    world busybox > in/base@1 > in/top@2\n",
        "parent   in/base@1 (inputs ",
        "inputs   sha256:",
        "script   6 line(s)\n",
        "copy     2 entries to /src\n",
        "adds     4\n",
        "  0644 /etc/new\n",
        "  0777 /etc/link (symlink)\n",
        "  0755 /src/\n",
        "  0644 /src/Jailfile\n",
        "changes  2\n  0700 /etc/\n  0644 /etc/passwd\n",
        "deletes  2\n  /etc/group\n  /opt/old\n",
        "log      ",
    ] {
        assert!(text.contains(want), "inspect lacks {want:?}\n{}", out.report());
    }
    let out = lj.ok(&["inspect", "in/top", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect --json");
    assert_eq!(v["name"], "in/top");
    assert_eq!(v["version"], "2");
    assert_eq!(v["world"]["name"], "busybox");
    assert_eq!(v["parents"][0]["name"]["name"], "base");
    assert_eq!(v["deletes"], serde_json::json!(["/etc/group", "/opt/old"]));
    let adds: Vec<&str> = v["adds"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(adds, ["/etc/link", "/etc/new", "/src", "/src/Jailfile"]);
    assert!(v["size"]["files"].as_u64().unwrap() >= 3 && v["size"]["bytes"].as_u64().unwrap() > 0, "{v}");
    let log = v["log"].as_str().unwrap();
    assert!(Path::new(log).is_file(), "{log}");
    lj.fails(&["inspect", "in/none"], 4, &["no overlay in/none"]);
}

/// gc removes derived versions that nothing is built on and that are not the newest of their
/// name; --dry-run only says so.
fn gc_unused_derived(lj: &Lj) {
    let f = lj.jailfile("g", "name g/app\n---\necho one > /v\n");
    lj.ok(&[&f]);
    let first = lj.versions("g/app")[0].clone();
    let child = lj.jailfile("c", &format!("name g/child\nversion 1\nfrom g/app {first}\n---\ntrue\n"));
    lj.ok(&[&child]);
    lj.jailfile("g", "name g/app\n---\necho two > /v\n");
    lj.ok(&[&f]);
    let second = lj.versions("g/app").into_iter().find(|v| *v != first).unwrap();
    lj.jailfile("g", "name g/app\n---\necho three > /v\n");
    lj.ok(&[&f]);
    assert_eq!(lj.versions("g/app").len(), 3);
    // Its layer (in the store, referenced by nothing else) goes with it.
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(lj.root().join("g/app").join(&second).join("meta.json")).unwrap())
            .unwrap();
    let layer = meta["layer"].as_str().expect("a layer digest in meta.json").to_string();
    let stored = lj.root().join("store/sha256").join(layer.trim_start_matches("sha256:"));
    assert!(stored.is_dir(), "{}", stored.display());
    let out = lj.ok(&["gc", "--dry-run"]);
    assert_eq!(
        out.stdout,
        format!(
            "would remove g/app@{second}\nwould remove layer {layer}\nwould remove 1 unused derived version(s), 0 failed build log(s), 1 unreferenced layer(s)\n"
        )
    );
    assert_eq!(lj.versions("g/app").len(), 3);
    assert!(stored.is_dir());
    let out = lj.ok(&["gc"]);
    assert!(
        out.stdout.starts_with(&format!("removed g/app@{second}\nremoved layer {layer}\n")),
        "{}",
        out.report()
    );
    assert!(out.stdout.contains("1 unused derived version(s), 1 unreferenced layer(s)"), "{}", out.report());
    assert!(!stored.exists());
    let left = lj.versions("g/app");
    assert_eq!(left.len(), 2);
    assert!(left.contains(&first) && !left.contains(&second), "{left:?}");
    assert_eq!(lj.jail("g/app", "cat /v"), "three\n");
    assert!(lj.ok(&["gc"]).stdout.contains("0 unused derived version(s)"));
}

/// The digest a layer reference (`worlds/NAME`, `NS/NAME/VERSION/root`) links to, checked to be
/// a relative link into the root's own `store/sha256/`.
fn stored_digest(lj: &Lj, rel: &str) -> String {
    let link = lj.root().join(rel);
    let target = fs::read_link(&link).unwrap_or_else(|e| panic!("{rel} is not a link: {e}"));
    let t = path_str(&target);
    let depth = rel.matches('/').count();
    let want = format!("{}store/sha256/", "../".repeat(depth));
    let hex = t.strip_prefix(&want).unwrap_or_else(|| panic!("{rel} -> {t}, not into {want}"));
    assert!(hex.len() == 64 && lj.root().join("store/sha256").join(hex).is_dir(), "{rel} -> {t}");
    format!("sha256:{hex}")
}

fn meta_of(lj: &Lj, name: &str, version: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(lj.root().join(name).join(version).join("meta.json")).unwrap()).unwrap()
}

/// Layers are stored once by content digest; names and versions are references; a child keys
/// on its parent's digest, so a parent rebuilt into the same bytes leaves it cached (early
/// cutoff), and other bytes do not; rm and gc drop only unreferenced layers.
fn content_addressed_store(lj: &Lj) {
    let count = || fs::read_dir(lj.root().join("store/sha256")).unwrap().count();
    let world = stored_digest(lj, "worlds/busybox");
    assert_eq!(count(), 1, "the world is the only layer");
    // The same world imported again under another name: the same bytes, one copy.
    let src = lj.td.join("w.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-cf").arg(&src).arg("-C").arg(lj.root().join("worlds/busybox")).arg(".");
    assert_eq!(run_with_timeout(cmd, None, Duration::from_secs(60)).expect("tar").status(), 0);
    lj.cx.chown_caller(&src);
    lj.ok(&["world", "import", "again", &path_str(&src)]);
    assert_eq!(stored_digest(lj, "worlds/again"), world);
    assert_eq!(count(), 1);

    // /d is closed to a rootless caller on the host (a subordinate id's 0700 directory): its
    // digest is taken in a jail with the caller's ids mapped.
    let script = "echo a > /a\nmkdir /d\necho s > /d/f\nchown -R 5:6 /a /d\nchmod 700 /d\nrm /etc/lj-world\n";
    let p = lj.jailfile("p", &format!("name s/p\nversion 1\n---\n{script}"));
    lj.ok(&[&p]);
    let pl = stored_digest(lj, "s/p/1/root");
    assert_eq!(meta_of(lj, "s/p", "1")["layer"], pl.as_str());
    // Another name with the same bytes shares the layer.
    let q = lj.jailfile("q", &format!("name s/q\nversion 7\n---\n{script}"));
    lj.ok(&[&q]);
    assert_eq!(stored_digest(lj, "s/q/7/root"), pl);
    assert_eq!(count(), 2);
    let c = lj.jailfile("c", "name s/c\nfrom s/p 1\n---\ncat /a > /b\n");
    lj.ok(&[&c]);
    let cv = lj.versions("s/c")[0].clone();
    assert_eq!(meta_of(lj, "s/c", &cv)["parents"][0]["layer"], pl.as_str());
    assert_eq!(
        lj.jail("s/c", "stat -c '%u:%g' /a; cat /b; test -e /etc/lj-world || echo gone"),
        "5:6\na\ngone\n"
    );

    // The parent rebuilt (--force, another script) into the same files, with new times: the same
    // digest, and the child is a cache hit.
    std::thread::sleep(Duration::from_millis(1100));
    lj.jailfile("p", "name s/p\nversion 1\n---\nprintf 'a\\n' > /a\nmkdir -p -m 700 /d\nprintf 's\\n' > /d/f\nchown -R 5:6 /d /a\nrm -f /etc/lj-world\n");
    let out = lj.ok(&["--force", &p]);
    assert!(out.stdout.contains("built s/p@1"), "{}", out.report());
    assert_eq!(stored_digest(lj, "s/p/1/root"), pl, "a byte-identical rebuild has another digest");
    let out = lj.ok(&[&c]);
    assert!(out.stdout.contains(&format!("cached s/c@{cv}")), "{}", out.report());
    // Other bytes: another layer, and the child is built again.
    lj.jailfile("p", "name s/p\nversion 1\n---\necho b > /a\n");
    lj.ok(&["--force", &p]);
    let pl2 = stored_digest(lj, "s/p/1/root");
    assert_ne!(pl2, pl);
    let out = lj.ok(&[&c]);
    assert!(out.stdout.contains("built s/c@"), "{}", out.report());
    assert_eq!(lj.jail("s/c", "cat /b"), "b\n");

    // rm drops a layer nothing else references (since s/p was rebuilt, only s/q had pl), and
    // keeps one that is still referenced (the first s/c's, until it goes too).
    lj.ok(&["rm", "s/q@7"]);
    let old_child = lj
        .root()
        .join("store/sha256")
        .join(meta_of(lj, "s/c", &cv)["layer"].as_str().unwrap().trim_start_matches("sha256:"));
    assert!(old_child.is_dir());
    assert!(
        !lj.root().join("store/sha256").join(pl.trim_start_matches("sha256:")).exists(),
        "an unreferenced layer stayed after rm"
    );
    lj.ok(&["rm", &format!("s/c@{cv}")]);
    assert!(!old_child.exists());
    // world rm of one of two names keeps the bytes.
    lj.ok(&["world", "rm", "again"]);
    assert!(lj.root().join("store/sha256").join(world.trim_start_matches("sha256:")).is_dir());
    let out = lj.ok(&["gc"]);
    assert!(out.stdout.contains(", 0 unreferenced layer(s)"), "{}", out.report());
    // A layer left unreferenced (as by a build killed between storing and publishing) goes at gc.
    let stray = lj.root().join("store/sha256").join("ab".repeat(32));
    fs::create_dir(&stray).unwrap();
    lj.cx.chown_caller(&stray);
    let out = lj.ok(&["gc"]);
    assert!(out.stdout.contains(&format!("removed layer sha256:{}", "ab".repeat(32))), "{}", out.report());
    assert!(!stray.exists());
    assert_eq!(lj.jail("s/p", "cat /a"), "b\n");
}

/// The copy hash cache trusts a settled file's metadata, and nothing less: the same size and
/// mtime with new content (a new ctime) is hashed again.
fn copy_hash_cache(lj: &Lj) {
    let f = lj.jailfile("h", "name h/x\ncopy /src\n---\ncat /src/data > /got\n");
    lj.file("h/data", "aaaa\n");
    // Old enough to be trusted by the next scan (2 s, git's racy rule).
    std::thread::sleep(Duration::from_millis(2500));
    lj.ok(&[&f]);
    let cache = lj.root().join(".cache/copy");
    assert_eq!(fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0), 1, "no cache in {}", cache.display());
    assert!(lj.ok(&[&f]).stdout.contains("cached h/x@"));
    // Same size, mtime put back: only the ctime tells.
    let data = lj.td.join("h/data");
    let mtime = fs::metadata(&data).unwrap().modified().unwrap();
    lj.file("h/data", "bbbb\n");
    fs::File::options().write(true).open(&data).unwrap().set_modified(mtime).unwrap();
    let out = lj.ok(&[&f]);
    assert!(out.stdout.contains("built h/x@"), "a changed file was taken from the cache\n{}", out.report());
    assert_eq!(lj.jail("h/x", "cat /got"), "bbbb\n");
}
