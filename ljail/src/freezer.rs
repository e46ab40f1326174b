//! The cgroup freezer, to hold a running jail still while it is snapshotted or cloned.
//!
//! v1 (hybrid hosts, as root): the supervisor (`ljail-supervisor`) makes
//! `/sys/fs/cgroup/freezer/lightjail/ljail-PID` and moves itself in before it starts ljspawn,
//! so the whole jail is in it (ljspawn's own cgroups for limits are in other hierarchies).
//! v2 (pure v2 hosts): the jail's own cgroup's `payload` (see `ljail_supervisor::cgroup`),
//! frozen through `cgroup.freeze`. Without either (non-root users on a hybrid host, a jail
//! started from a cgroup with other processes on a v2 host) a running jail cannot be
//! snapshotted (stop it first): ljail says so.

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
    ljail_supervisor::remove_thawed(cg);
}

fn v1(cg: &Path) -> bool {
    cg.starts_with(V1)
}

/// Freezes `cg` (v1: `freezer.state`; v2: `cgroup.freeze`) and waits until the kernel says it
/// is frozen.
pub fn freeze(cg: &Path) -> Result<(), Error> {
    let (file, value) = if v1(cg) { ("freezer.state", "FROZEN") } else { ("cgroup.freeze", "1") };
    let f = cg.join(file);
    fs::write(&f, value).map_err(Error::io("cannot freeze", &f))?;
    let start = Instant::now();
    loop {
        let s = state(cg).unwrap_or_default();
        if s == "FROZEN" {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(10) {
            thaw(cg);
            return Err(Error::Failed(format!("{} did not freeze within 10 s (state {s})", cg.display())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Thaws `cg`.
pub fn thaw(cg: &Path) {
    let _ = if v1(cg) {
        fs::write(cg.join("freezer.state"), "THAWED")
    } else {
        fs::write(cg.join("cgroup.freeze"), "0")
    };
}

/// The state of `cg`: `THAWED`, `FREEZING` or `FROZEN` (v2: from `cgroup.freeze`, what was
/// asked, and `cgroup.events`' `frozen`, what the kernel did).
pub fn state(cg: &Path) -> Option<String> {
    if v1(cg) {
        return fs::read_to_string(cg.join("freezer.state")).ok().map(|s| s.trim().to_string());
    }
    let asked = fs::read_to_string(cg.join("cgroup.freeze")).ok()?.trim() == "1";
    let events = fs::read_to_string(cg.join("cgroup.events")).ok()?;
    let frozen = events.lines().any(|l| l.trim() == "frozen 1");
    Some(
        match (asked, frozen) {
            (_, true) => "FROZEN",
            (true, false) => "FREEZING",
            (false, false) => "THAWED",
        }
        .to_string(),
    )
}
