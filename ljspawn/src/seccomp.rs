//! The default seccomp filter, compiled at build time by `build.rs` (libseccomp) and embedded
//! here as BPF, and the checks on a caller's own filter (`--seccomp-fd`).
//!
//! Denied with EPERM on every ABI of the machine (x86_64, i386, x32): kernel modules, kexec,
//! reboot, swap, keyrings, bpf, perf_event_open, userfaultfd, acct, lookup_dcookie, syslog,
//! `ioctl` TIOCSTI/TIOCLINUX (low 32 bits compared), and — unless `--allow-userns` — new user
//! namespaces (`clone`/`unshare` with CLONE_NEWUSER; `clone3` fails with ENOSYS so libc falls
//! back to `clone`), io_uring (its operations bypass seccomp), and — unless
//! `--allow-setuid-files` — giving a file the setuid or setgid bit (chmod, fchmod, fchmodat,
//! fchmodat2, mknod, mknodat, creat, and open/openat with O_CREAT or O_TMPFILE and such a
//! mode; `openat2` fails with ENOSYS as its mode is out of reach). Any other architecture's
//! system calls kill the process. `--seccomp container` (for podman or dockerd in the jail)
//! also allows keyrings and bpf, as Jailmaker's docker template does, and user namespaces and
//! setuid files.

/// The default filter.
pub const DEFAULT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default.bpf"));
/// The default filter without the user namespace rules (`--allow-userns`).
pub const ALLOW_USERNS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/allow-userns.bpf"));
/// The default filter without the setuid/setgid file rules (`--allow-setuid-files`).
pub const ALLOW_SUID: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/allow-suid.bpf"));
/// Neither rule (`--allow-userns --allow-setuid-files`).
pub const ALLOW_USERNS_SUID: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/allow-userns-suid.bpf"));

/// For container runtimes in the jail (`--seccomp container`): new user namespaces and setuid
/// files allowed, and keyrings and bpf too (Jailmaker's docker template).
pub const CONTAINER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/container.bpf"));

/// The built-in filter for a plan's choices.
pub fn builtin(allow_userns: bool, allow_suid: bool) -> &'static [u8] {
    match (allow_userns, allow_suid) {
        (false, false) => DEFAULT,
        (true, false) => ALLOW_USERNS,
        (false, true) => ALLOW_SUID,
        (true, true) => ALLOW_USERNS_SUID,
    }
}

/// The kernel's limit on one filter's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// Checks the shape of a caller's BPF program (`--seccomp-fd`): whole `sock_filter`
/// instructions, at least one, at most `MAX_INSNS`. The kernel verifies the rest.
pub fn check_program(bpf: &[u8]) -> Result<(), String> {
    if bpf.is_empty() {
        return Err("the seccomp program is empty".into());
    }
    if !bpf.len().is_multiple_of(8) {
        return Err(format!(
            "the seccomp program is {} bytes, not a whole number of 8-byte instructions",
            bpf.len()
        ));
    }
    if bpf.len() / 8 > MAX_INSNS {
        return Err(format!("the seccomp program has {} instructions (at most {MAX_INSNS})", bpf.len() / 8));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_filters_are_well_formed_and_differ() {
        check_program(DEFAULT).unwrap();
        check_program(ALLOW_USERNS).unwrap();
        check_program(ALLOW_SUID).unwrap();
        check_program(ALLOW_USERNS_SUID).unwrap();
        check_program(CONTAINER).unwrap();
        assert!(ALLOW_USERNS_SUID.len() > CONTAINER.len());
        assert!(DEFAULT.len() > ALLOW_USERNS.len());
        assert!(DEFAULT.len() > ALLOW_SUID.len());
        assert!(ALLOW_SUID.len() > ALLOW_USERNS_SUID.len());
        // The last instruction of a libseccomp filter is a return (BPF_RET = 0x06).
        assert_eq!(DEFAULT[DEFAULT.len() - 8] & 0x07, 0x06);
    }

    #[test]
    fn caller_programs_are_checked() {
        assert!(check_program(&[]).is_err());
        assert!(check_program(&[0; 12]).is_err());
        assert!(check_program(&vec![0; 8 * (MAX_INSNS + 1)]).is_err());
        assert!(check_program(&[0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]).is_ok());
    }
}
