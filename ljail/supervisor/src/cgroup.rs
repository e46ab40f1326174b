//! A jail's own cgroup v2 on hosts whose v2 hierarchy has the controllers (pure cgroup v2).
//!
//! ljspawn makes a jail's limits cgroup inside its caller's cgroup, and a v2 cgroup with
//! processes of its own gives no controller to a child (the kernel's "no internal processes"
//! rule): ljspawn sharing its cgroup with its supervisor would refuse every limit. So, as
//! `systemd-nspawn` splits its unit into supervisor and payload, a jail gets a cgroup of its
//! own below the one `ljail start` runs in (`OWN`):
//!
//! ```text
//! OWN/ljail-NAME/              the jail's cgroup (memory, pids and cpu enabled for children)
//!   supervisor/                the supervisor (and `ljail start` while it waits), unless OWN
//!                              is the root cgroup, where they stay
//!   payload/                   ljspawn, alone (it makes its leaf and the limits cgroup here);
//!                              frozen for a snapshot (`cgroup.freeze`)
//! ```
//!
//! OWN must give the controllers to `ljail-NAME`: the root cgroup does (as root), any other
//! only when it has no process left, so `ljail start` moves itself (then the supervisor it
//! starts is born there) into `supervisor/` when it is the only process of OWN, as it is under
//! `systemd-run --scope -p Delegate=yes ljail start NAME` or a cgroup made for it (rootless:
//! one delegated to the user); a command that starts several jails moves on to the next one's. With other processes in OWN, nothing is made and ljspawn runs in
//! OWN as before (its refusal of limits says why). `payload/` is removed by the supervisor when
//! it ends; `ljail-NAME` (which holds the supervisor until its very end) by `stop`, `destroy` or
//! the next `start`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{io_error, Error};

/// The controllers given to a jail's cgroup (those ljspawn's limits use), where available.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The directory of the v2 hierarchy's root cgroup (None where the mount shows a cgroup below
/// it, as in a container given only its own) and this process's cgroup directory, when the v2
/// hierarchy has one of [`CONTROLLERS`] (on a hybrid host they are v1's, and v2 is left alone).
pub fn detect() -> Option<(Option<PathBuf>, PathBuf)> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let (top, dir) = locate(&mountinfo, &own)?;
    let available = fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
    if !available.split_whitespace().any(|c| CONTROLLERS.contains(&c)) {
        return None;
    }
    Some((top, dir))
}

/// From the texts of `/proc/self/mountinfo` and `/proc/self/cgroup`: the last cgroup v2 mount
/// that shows this process's cgroup (its root, mountinfo's fourth field, is that cgroup or above
/// it) and is not mounted over; the root cgroup's directory if the mount shows it, and this
/// process's cgroup directory. (ljspawn's `limits` reads mountinfo the same way; neither
/// depends on the other.)
fn locate(mountinfo: &str, self_cgroup: &str) -> Option<(Option<PathBuf>, PathBuf)> {
    let own = Path::new(self_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim());
    // Plain: `/`, or `/` and names, none empty, `.` or `..` (a process outside its cgroup
    // namespace's root reads `/../sib/svc`, which joined to the mount would leave it).
    let plain = own.as_os_str().as_encoded_bytes().strip_prefix(b"/").is_some_and(|rest| {
        rest.is_empty() || rest.split(|c| *c == b'/').all(|c| !c.is_empty() && c != b"." && c != b"..")
    });
    if !plain {
        return None;
    }
    // ID PARENT DEV ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
    let mounts: Vec<(PathBuf, PathBuf, &str)> = mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (root, point) = (f.nth(3)?, f.next()?);
            f.next()?;
            f.find(|x| *x == "-")?;
            Some((unescape(root), unescape(point), f.next()?))
        })
        .collect();
    let (_, (root, point, _)) = mounts.iter().enumerate().rev().find(|(i, (root, point, fstype))| {
        *fstype == "cgroup2" && own.starts_with(root) && !mounts[i + 1..].iter().any(|l| l.1 == *point)
    })?;
    let dir = point.join(own.strip_prefix(root).ok()?);
    Some(((root == Path::new("/")).then(|| point.clone()), dir))
}

/// Whether the cgroup directory `own` is the hierarchy's root cgroup (`top`, where the mount
/// shows it), which the kernel makes without `cgroup.type`: not the root of a cgroup namespace
/// (in a container), which `/proc/self/cgroup` names `/` too.
fn is_root(top: Option<&Path>, own: &Path) -> bool {
    top == Some(own) && !own.join("cgroup.type").exists()
}

/// A mountinfo path with its `\\NNN` (octal) escapes decoded (space, tab, newline, backslash).
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct =
            b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct.map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'))) {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn pids(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Removes the cgroup `dir` and its child cgroups once they are empty (a supervisor that just
/// ended may still be leaving its cgroup: waited for up to `wait`). Missing: nothing to do.
pub fn remove(dir: &Path, wait: Duration) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        let mut last = None;
        for sub in ["payload", "supervisor", ""] {
            let d = if sub.is_empty() { dir.to_path_buf() } else { dir.join(sub) };
            match fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => last = Some(io_error("cannot remove cgroup", &d, &e)),
            }
        }
        match last {
            None => return Ok(()),
            Some(e) if start.elapsed() >= wait => return Err(e),
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Removes the one cgroup `dir` once it is empty (waited for up to `wait`).
pub fn remove_one(dir: &Path, wait: Duration) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if start.elapsed() >= wait => return Err(io_error("cannot remove cgroup", dir, &e)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `ljail start`, before it runs the supervisor of the jail `name`: makes the jail's cgroup
/// (see the module's documentation) and returns it, moving this process into its
/// `supervisor/` when it must leave its own cgroup; `None` where there is none to make (no
/// controllers in v2, other processes in this cgroup, no right to change it).
pub fn prepare(name: &str) -> Result<Option<PathBuf>, Error> {
    let Some((top, mut own)) = detect() else { return Ok(None) };
    let me = std::process::id();
    // Moved already by an earlier jail of this command (`start --all`, `restart`): its cgroup,
    // which has no process of its own left, is OWN.
    let moved = own.file_name().is_some_and(|n| n == "supervisor")
        && own
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"ljail-"));
    if moved {
        own = own.parent().and_then(Path::parent).map_or_else(|| own.clone(), Path::to_path_buf);
    }
    let at_root = is_root(top.as_deref(), &own);
    if !at_root && !moved && pids(&own) != [me] {
        return Ok(None);
    }
    let g = own.join(format!("ljail-{name}"));
    // A cgroup left by an earlier supervisor of this jail (it cannot remove its own): empty,
    // or something of the jail still runs in it.
    remove(&g, Duration::ZERO)
        .map_err(|e| Error(format!("{e} (is an earlier run of the jail still there?)")))?;
    match fs::create_dir(&g) {
        Ok(()) => {}
        // Not ours to change (rootless outside a delegated cgroup): as without a cgroup.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(io_error("cannot create cgroup", &g, &e)),
    }
    let made = (|| {
        if !at_root {
            let sup = g.join("supervisor");
            fs::create_dir(&sup).map_err(|e| io_error("cannot create cgroup", &sup, &e))?;
            let procs = sup.join("cgroup.procs");
            fs::write(&procs, me.to_string()).map_err(|e| io_error("cannot move into", &procs, &e))?;
        }
        // Best effort: without them ljspawn says which one a limit lacks.
        let available = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = CONTROLLERS
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        for d in [&own, &g] {
            for c in &enable {
                let _ = fs::write(d.join("cgroup.subtree_control"), c);
            }
        }
        Ok(())
    })();
    match made {
        Ok(()) => Ok(Some(g)),
        Err(e) => {
            let _ = fs::write(own.join("cgroup.procs"), me.to_string());
            let _ = remove(&g, Duration::ZERO);
            Err(e)
        }
    }
}

/// The supervisor: makes `G/payload`, where ljspawn runs.
pub fn payload(g: &Path) -> Result<PathBuf, Error> {
    let p = g.join("payload");
    match fs::create_dir(&p) {
        Ok(()) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && pids(&p).is_empty() => Ok(p),
        Err(e) => Err(io_error("cannot create cgroup", &p, &e)),
    }
}

/// `ljail-supervisor --enter DIR -- PROGRAM ARGS...`: moves itself into the cgroup DIR, then
/// becomes PROGRAM (so ljspawn is born alone in its cgroup, never seen in the supervisor's).
pub fn enter_and_exec(args: &[std::ffi::OsString]) -> Error {
    use std::os::unix::process::CommandExt;
    let (dir, rest) = match args {
        [dir, dashes, program, rest @ ..] if dashes == "--" => (Path::new(dir), (program, rest)),
        _ => return Error("usage: ljail-supervisor --enter DIR -- PROGRAM ARGS...".into()),
    };
    let procs = dir.join("cgroup.procs");
    if let Err(e) = fs::write(&procs, std::process::id().to_string()) {
        return io_error("cannot move into", &procs, &e);
    }
    let e = std::process::Command::new(rest.0).args(rest.1).exec();
    io_error("cannot run", Path::new(rest.0), &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup v2 mount's root (a container given only its own cgroup) and mountinfo's octal
    /// escapes; a mount that does not show this process's cgroup, or one mounted over, is not it.
    #[test]
    fn locates_the_mount_that_shows_this_cgroup() {
        let text = "\
30 1 0:26 /../.. /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw
31 1 0:26 / /old rw - cgroup2 cgroup2 rw
32 1 0:26 /job/7 /run/my\\040cg\\134x rw,nosuid shared:5 master:1 - cgroup2 none rw
33 1 0:27 / /old rw shared:6 - tmpfs tmpfs rw
";
        assert_eq!(locate(text, "0::/job/7/svc\n"), Some((None, PathBuf::from("/run/my cg\\x/svc"))));
        assert_eq!(locate(text, "0::/job/70\n"), None);
        let host = "30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
        let top = Some(PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(locate(host, "0::/\n"), Some((top.clone(), PathBuf::from("/sys/fs/cgroup"))));
        assert_eq!(locate(host, "0::/a/b\n"), Some((top, PathBuf::from("/sys/fs/cgroup/a/b"))));
        // A path leaving the mount (`..`), or with `.` or an empty name: none.
        for bad in ["0::/..\n", "0::/../../etc/x\n", "0::/a/../b\n", "0::/a/./b\n", "0::/a//b\n", "0::a\n"] {
            assert_eq!(locate(host, bad), None, "{bad:?}");
            assert_eq!(locate(text, bad), None, "{bad:?}");
        }
    }

    /// The hierarchy's root has no `cgroup.type`; a cgroup namespace's root (mounted at the same
    /// point inside a container) has one.
    #[test]
    fn the_root_cgroup_is_the_one_without_a_type() {
        let d = std::env::temp_dir().join(format!("ljail-supervisor-root-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        assert!(is_root(Some(&d), &d));
        assert!(!is_root(Some(&d), &d.join("child")));
        assert!(!is_root(None, &d));
        fs::write(d.join("cgroup.type"), "domain\n").unwrap();
        assert!(!is_root(Some(&d), &d), "a cgroup namespace's root");
        fs::remove_dir_all(&d).unwrap();
    }
}
