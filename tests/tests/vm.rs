//! The kernel VM tier (issue 11): Debian bookworm's own kernel (6.1) booted under qemu by
//! `tests/vm/run.sh` (once per `make test`, after `tests/prepare.sh`), where the checks of
//! `tests/vm/guest/checks.sh` run what this host cannot: pure cgroup v2 limits as root and
//! rootless under a delegated subtree, setuid mode with `kernel.unprivileged_userns_clone = 0`,
//! overlays and ljbuild on a kernel without `lowerdir+` and whose tmpfs has no user xattrs,
//! and `flatpak run` through the setuid bwrap form where user namespaces are forbidden.
//!
//! Each check is one test here, `vm::NAME`, passing when the guest reported status 0 for it and
//! failing with the check's output (and the kernel's messages) otherwise. A VM that did not
//! boot, or stopped early, fails every test with the console's last lines. Run only this tier:
//! `sh tests/vm/run.sh && cargo nextest run -p lj-tests -E 'binary(vm)'` (as root, with
//! `LJ_TEST_DIR` as for the other tests), or `make test-vm`.

use std::fs;
use std::path::PathBuf;

use lj_tests::test_dir;

fn vm_dir() -> PathBuf {
    test_dir().join("vm")
}

fn tail(path: &std::path::Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The result of the guest's check `name`: passes, skips (the tier could not run here, which
/// `LJ_MUST_WORK=1` makes a failure) or panics with the guest's output.
fn check(name: &str) {
    let test = format!("vm::{name}");
    let dir = vm_dir();
    let status = match fs::read_to_string(dir.join("status")) {
        Ok(s) => s.trim().to_string(),
        Err(_) => {
            return lj_tests::skip(
                &test,
                &format!(
                    "the VM tier did not run ({} missing): run `sh tests/vm/run.sh` first",
                    dir.join("status").display()
                ),
            )
        }
    };
    if let Some(why) = status.strip_prefix("skip: ") {
        return lj_tests::skip(&test, &format!("the VM tier could not run: {why}"));
    }
    let timing = fs::read_to_string(dir.join("timing")).unwrap_or_default();
    let log = fs::read_to_string(dir.join("checks").join(format!("{name}.log")));
    let rc = fs::read_to_string(dir.join("checks").join(format!("{name}.rc")));
    match (rc, log) {
        (Ok(rc), Ok(log)) if rc.trim() == "0" => {
            eprintln!("{test}: passed in the VM ({})\n{log}", timing.trim());
        }
        (Ok(rc), Ok(log)) => panic!("{test}: the check failed in the VM (status {})\n{log}", rc.trim()),
        _ => panic!(
            "{test}: no result from the VM ({status}; {})\nlast lines of the console ({}):\n{}\nqemu: {}",
            timing.trim(),
            dir.join("console.log").display(),
            tail(&dir.join("console.log"), 30),
            tail(&dir.join("qemu.log"), 5),
        ),
    }
}

macro_rules! vm_checks {
    ($($name:ident),* $(,)?) => {
        mod vm {
            $(
                #[test]
                fn $name() {
                    super::check(stringify!($name));
                }
            )*
        }
        /// Every check of the guest's list has a test here, and no test names a check the
        /// guest does not have.
        #[test]
        fn vm_checks_match_the_guest() {
            let script = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vm/guest/checks.sh"))
                .expect("tests/vm/guest/checks.sh");
            let all = script.split("ALL=\"").nth(1).and_then(|s| s.split('"').next()).expect("ALL= in checks.sh");
            let mut guest: Vec<&str> = all.split_whitespace().collect();
            let mut here = vec![$(stringify!($name)),*];
            guest.sort_unstable();
            here.sort_unstable();
            assert_eq!(guest, here, "the checks in checks.sh and the tests in vm.rs differ");
        }
    };
}

vm_checks! {
    kernel_layout,
    root_memory_oom,
    root_memory_sizes,
    root_pids,
    root_cpus,
    root_cgroup_cleanup,
    net_bridge_macvlan,
    rootless_delegated_limits,
    ljail_v2_cgroups,
    ljail_v2_cgroups_rootless,
    overlay_root,
    overlay_stack,
    ljbuild_root,
    userns_forbidden_rootless,
    setuid_jails,
    setuid_limits,
    setuid_escapes,
    setuid_ljbuild,
    setuid_idmap_layer,
    setuid_flatpak,
    setuid_ljail_exec,
    cgroup_born_in,
}
