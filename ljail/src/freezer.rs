//! The cgroup freezer, to hold a running jail still while it is snapshotted or cloned.
//!
//! The supervisor (`ljail-supervisor`, as root, where the v1 freezer hierarchy is mounted, as
//! on hybrid hosts) makes `/sys/fs/cgroup/freezer/lightjail/ljail-PID` and moves itself in
//! before it starts ljspawn, so the whole jail is in it (ljspawn's own cgroups for limits are in other
//! hierarchies). On a pure cgroup v2 host, or for non-root users, there is no freezer cgroup
//! and a running jail cannot be snapshotted (stop it first): ljail says so.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::Error;

/// The v1 freezer hierarchy.
pub const V1: &str = ljail_supervisor::FREEZER_V1;

/// Removes a freezer cgroup left behind (thawed first, so nothing stays frozen).
pub fn remove(cg: &Path) {
    if !cg.starts_with(V1) || !cg.is_dir() {
        return;
    }
    let _ = fs::write(cg.join("freezer.state"), "THAWED");
    // Its last processes leave it when the kernel has run their exit: seconds on a loaded
    // machine, so a deadline rather than a count of tries.
    let start = Instant::now();
    loop {
        if fs::remove_dir(cg).is_ok() || !cg.exists() || start.elapsed() > Duration::from_secs(10) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Freezes `cg` and waits until the kernel says it is frozen.
pub fn freeze(cg: &Path) -> Result<(), Error> {
    let st = cg.join("freezer.state");
    fs::write(&st, "FROZEN").map_err(Error::io("cannot freeze", &st))?;
    let start = Instant::now();
    loop {
        let s = fs::read_to_string(&st).map_err(Error::io("cannot read", &st))?;
        if s.trim() == "FROZEN" {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            thaw(cg);
            return Err(Error::Failed(format!(
                "{} did not freeze within 10 s (state {})",
                cg.display(),
                s.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Thaws `cg`.
pub fn thaw(cg: &Path) {
    let _ = fs::write(cg.join("freezer.state"), "THAWED");
}

/// The state of `cg` (`THAWED`, `FREEZING`, `FROZEN`).
pub fn state(cg: &Path) -> Option<String> {
    fs::read_to_string(cg.join("freezer.state")).ok().map(|s| s.trim().to_string())
}
