//! The ephemeral upper layer of an overlay root (`--layer` without `--upper`) where tmpfs
//! cannot hold it.
//!
//! Normally the upper is a tmpfs that only the jail's mount references (see `jail`). Overlayfs
//! is always mounted with `userxattr` (layers stay interchangeable between root and rootless),
//! so its upper must store `user.*` xattrs, which tmpfs does only since Linux 6.6: on older
//! kernels (Debian 12's 6.1, Ubuntu 22.04's 5.15) the mount fails. There the jail's PID 1 makes
//! the upper on disk instead: `/var/tmp/ljspawn-upper.*` (made by the caller, mode 0700), and
//! holds an `flock` on it for the jail's life. PID 1 removes it once the program and
//! everything it started are gone; if the jail was killed first (SIGKILL of ljspawn takes PID
//! 1 with it), the next jail that needs one removes every unlocked one of the same owner.
//!
//! Paths are used only through descriptors opened here: the host's `/var/tmp` with
//! `RESOLVE_NO_SYMLINKS`, its entries fd-relative (`/proc/self/fd/N/NAME`, whose last
//! component std's `remove_dir_all` never follows).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use crate::sys;

/// Where disk-backed uppers are made: disk on every distribution (unlike `/tmp`, often a
/// tmpfs), world-writable and sticky, kept across reboots only by what cleans it.
pub const DIR: &str = "/var/tmp";
const PREFIX: &str = "ljspawn-upper.";
const PROBE_XATTR: &str = "user.lightjail.probe";

/// True if the directory `dir` (an open directory, not `O_PATH`) stores `user.*` xattrs.
pub fn has_user_xattrs(dir: BorrowedFd<'_>) -> io::Result<bool> {
    match sys::fsetxattr(dir, PROBE_XATTR, b"") {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One disk-backed upper: `DIR/NAME` with `upper/` and `work/` in it, locked while held.
#[derive(Debug)]
pub struct DiskUpper {
    parent: OwnedFd,
    name: String,
    dir: OwnedFd,
}

/// The jail's disk uppers (the root's, bwrap's `--tmp-overlay`s), for PID 1 to remove at the
/// end ([`remove_held`]).
static HELD: Mutex<Vec<DiskUpper>> = Mutex::new(Vec::new());

impl DiskUpper {
    /// Removes the caller's stale uppers, then makes a new one.
    pub fn make() -> io::Result<DiskUpper> {
        let parent =
            sys::openat2(None, DIR, libc::O_RDONLY | libc::O_DIRECTORY, 0, sys::RESOLVE_NO_SYMLINKS)?;
        sweep(parent.as_fd());
        let uid = sys::geteuid();
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(sys::getpid().unsigned_abs()) << 40;
        for _ in 0..100 {
            // A name no other jail uses: mkdirat fails on anything already there (symlinks too).
            let name = format!("{PREFIX}{seed:016x}");
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            match sys::mkdirat(parent.as_fd(), &name, 0o700) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(e),
            }
            let dir = open_own(parent.as_fd(), &name, uid)?
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EEXIST))?;
            // Locked before anything is in it; a sweep that won the race only removed an empty
            // directory, and the mkdirat below fails.
            if !sys::try_lock_exclusive(dir.as_fd())? {
                continue;
            }
            for d in ["upper", "work"] {
                sys::mkdirat(dir.as_fd(), d, 0o755)?;
            }
            let upper = DiskUpper { parent, name, dir };
            // A /var/tmp that is itself a tmpfs (or another file system without user xattrs)
            // would fail the mount with a bare "invalid argument": say it here.
            let work =
                sys::openat2(Some(upper.dir.as_fd()), "work", libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)?;
            if !has_user_xattrs(work.as_fd())? {
                upper.remove();
                return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
            }
            return Ok(upper);
        }
        Err(io::Error::from_raw_os_error(libc::EEXIST))
    }

    /// `upperdir` and `workdir` for overlayfs, through this process's descriptor.
    pub fn paths(&self) -> (String, String) {
        let base = format!("/proc/self/fd/{}", self.dir.as_raw_fd());
        (format!("{base}/upper"), format!("{base}/work"))
    }

    /// Keeps it until [`remove_held`].
    pub fn hold(self) {
        if let Ok(mut h) = HELD.lock() {
            h.push(self);
        }
    }

    fn remove(self) {
        let _ = std::fs::remove_dir_all(format!("/proc/self/fd/{}/{}", self.parent.as_raw_fd(), self.name));
        drop(self.dir);
    }
}

/// Removes the jail's disk uppers, if it has any (PID 1, once the program's processes are gone).
pub fn remove_held() {
    let held = HELD.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default();
    for u in held {
        u.remove();
    }
}

/// Whether the jail holds a disk upper (which its PID 1 must remove at the end).
pub fn any_held() -> bool {
    HELD.lock().map(|h| !h.is_empty()).unwrap_or(true)
}

/// `parent/name` if it is a directory owned by `uid` (opened without following a symlink).
fn open_own(parent: BorrowedFd<'_>, name: &str, uid: u32) -> io::Result<Option<OwnedFd>> {
    let fd = sys::openat2(
        Some(parent),
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
        sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS,
    )?;
    let st = sys::fstat(fd.as_fd())?;
    Ok((st.st_uid == uid && st.st_mode & libc::S_IFMT == libc::S_IFDIR).then_some(fd))
}

/// Removes the uppers in `parent` that this user owns and no live jail holds (their jail was
/// killed before its PID 1 could remove them). Best effort: what cannot be removed stays.
fn sweep(parent: BorrowedFd<'_>) {
    let uid = sys::geteuid();
    let base = format!("/proc/self/fd/{}", parent.as_raw_fd());
    let Ok(entries) = std::fs::read_dir(&base) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with(PREFIX)) else { continue };
        let Ok(Some(dir)) = open_own(parent, name, uid) else { continue };
        if matches!(sys::try_lock_exclusive(dir.as_fd()), Ok(true)) {
            let _ = std::fs::remove_dir_all(format!("{base}/{name}"));
        }
    }
}
