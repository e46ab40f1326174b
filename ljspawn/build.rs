//! Compiles ljspawn's default seccomp filter with libseccomp and writes it as raw BPF
//! (`struct sock_filter` array) to OUT_DIR, where `src/seccomp.rs` embeds it.
//!
//! Four variants: `default.bpf` denies creating user namespaces and setuid/setgid files;
//! `allow-userns.bpf` (`--allow-userns`) the latter only, `allow-suid.bpf`
//! (`--allow-setuid-files`) the former only, `allow-userns-suid.bpf` neither; `container.bpf`
//! (`--seccomp container`) neither, and allows keyrings and bpf too. All cover every
//! x86 ABI a 64-bit kernel accepts (x86_64, i386 through `int 0x80`, x32), since a filter
//! written for one ABI says nothing about the others.

use std::env;
use std::fs::File;
use std::path::PathBuf;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};

/// Denied with EPERM: no jailed program has a use for these, and each is a well-known way
/// into the kernel (modules, kexec, keyrings shared across namespaces, bpf, perf, userfaultfd
/// races, swap and reboot).
const DENIED: &[&str] = &[
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "acct",
    "lookup_dcookie",
    "syslog",
    // io_uring runs open, chmod-like and socket operations where seccomp cannot see them
    // (Docker's default profile blocks it too).
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

/// S_ISUID, S_ISGID: a jail never makes a file with either (systemd's RestrictSUIDSGID=).
const SUID_BITS: [u64; 2] = [0o4000, 0o2000];
/// O_CREAT and __O_TMPFILE: the open flags that create a file with the mode argument.
const CREATE_FLAGS: [u64; 2] = [0o100, 0o20000000];

const TIOCSTI: u64 = 0x5412;
const TIOCLINUX: u64 = 0x541c;
const CLONE_NEWUSER: u64 = 0x1000_0000;
const EPERM: i32 = 1;
const ENOSYS: i32 = 38;

/// What the `container` filter (`--seccomp container`, for podman or dockerd in the jail) allows
/// beyond the default's user-namespace and setuid-file rules: the system calls Jailmaker's
/// docker template adds to systemd-nspawn's filter (`--system-call-filter='add_key keyctl
/// bpf'`: container runtimes make a session keyring per container and load cgroup device
/// programs).
const CONTAINER_ALLOWED: &[&str] = &["add_key", "keyctl", "bpf"];

fn filter(allow_userns: bool, allow_suid: bool) -> ScmpFilterContext {
    filter_with(allow_userns, allow_suid, &[])
}

fn filter_with(allow_userns: bool, allow_suid: bool, allowed: &[&str]) -> ScmpFilterContext {
    let mut f = ScmpFilterContext::new(ScmpAction::Allow).expect("seccomp_init");
    f.set_act_badarch(ScmpAction::KillProcess).expect("bad-arch action");
    // A binary tree over syscall numbers instead of a linear list: the kernel emulates the
    // filter for every syscall of every ABI when it is installed (to cache the always-allowed
    // ones), so a short path for allowed calls makes installing it, and every call, cheaper.
    f.set_ctl_optimize(2).expect("binary tree optimization");
    // Arches first: rules added afterwards apply to every arch in the filter.
    let extra: &[ScmpArch] = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => &[ScmpArch::X86, ScmpArch::X32],
        Ok("aarch64") => &[ScmpArch::Arm],
        _ => &[],
    };
    for &arch in extra {
        f.add_arch(arch).expect("add arch");
    }
    let sys = |name: &str| ScmpSyscall::from_name(name).unwrap_or_else(|_| panic!("unknown syscall {name}"));
    for name in DENIED.iter().filter(|n| !allowed.contains(n)) {
        f.add_rule(ScmpAction::Errno(EPERM), sys(name)).unwrap_or_else(|e| panic!("rule for {name}: {e}"));
    }
    // Faking terminal input (TIOCSTI) and the console's TIOCLINUX: the ioctl number is an int,
    // so compare the low 32 bits only (a 64-bit value with junk above must not slip past).
    for req in [TIOCSTI, TIOCLINUX] {
        let cmp = ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(0xffff_ffff), req);
        f.add_rule_conditional(ScmpAction::Errno(EPERM), sys("ioctl"), &[cmp]).expect("ioctl rule");
    }
    if !allow_userns {
        let cmp = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(CLONE_NEWUSER), CLONE_NEWUSER);
        for name in ["unshare", "clone"] {
            f.add_rule_conditional(ScmpAction::Errno(EPERM), sys(name), &[cmp]).expect("userns rule");
        }
        // clone3 passes its flags in memory, out of the filter's reach: say it does not exist,
        // and libc falls back to clone, which the rule above checks.
        f.add_rule(ScmpAction::Errno(ENOSYS), sys("clone3")).expect("clone3 rule");
    }
    if !allow_suid {
        no_suid(&mut f);
    }
    f
}

/// EPERM for every call that would give a file the setuid or setgid bit: the chmod family,
/// and the open family and mknod when they create a file with such a mode. `openat2` passes
/// its mode in memory, out of the filter's reach: it says it does not exist (ENOSYS), and libc
/// and programs fall back to openat.
fn no_suid(f: &mut ScmpFilterContext) {
    let sys = |name: &str| ScmpSyscall::from_name(name).unwrap_or_else(|_| panic!("unknown syscall {name}"));
    let bit = |arg: u32, b: u64| ScmpArgCompare::new(arg, ScmpCompareOp::MaskedEqual(b), b);
    // (syscall, index of the mode argument)
    let mut chmods =
        vec![("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("mknod", 1), ("mknodat", 2), ("creat", 1)];
    // fchmodat2 (Linux 6.6) is known to libseccomp 2.5.5 and later.
    if ScmpSyscall::from_name("fchmodat2").is_ok() {
        chmods.push(("fchmodat2", 2));
    }
    for (name, mode) in chmods {
        for b in SUID_BITS {
            f.add_rule_conditional(ScmpAction::Errno(EPERM), sys(name), &[bit(mode, b)])
                .unwrap_or_else(|e| panic!("setuid rule for {name}: {e}"));
        }
    }
    for (name, flags, mode) in [("open", 1, 2), ("openat", 2, 3)] {
        for c in CREATE_FLAGS {
            for b in SUID_BITS {
                f.add_rule_conditional(ScmpAction::Errno(EPERM), sys(name), &[bit(flags, c), bit(mode, b)])
                    .unwrap_or_else(|e| panic!("setuid rule for {name}: {e}"));
            }
        }
    }
    f.add_rule(ScmpAction::Errno(ENOSYS), sys("openat2")).expect("openat2 rule");
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    for (name, allow_userns, allow_suid) in [
        ("default.bpf", false, false),
        ("allow-userns.bpf", true, false),
        ("allow-suid.bpf", false, true),
        ("allow-userns-suid.bpf", true, true),
    ] {
        let mut file = File::create(out.join(name)).expect("create bpf file");
        filter(allow_userns, allow_suid).export_bpf(&mut file).expect("export bpf");
    }
    let mut file = File::create(out.join("container.bpf")).expect("create bpf file");
    filter_with(true, true, CONTAINER_ALLOWED).export_bpf(&mut file).expect("export bpf");
}
