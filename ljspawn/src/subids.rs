//! The caller's subordinate id ranges from `/etc/subuid` and `/etc/subgid`, read the way
//! `newuidmap` trusts them: only from a regular, root-owned file that no one else may write,
//! only the lines naming the caller (by login name or by number), and only sane ranges.
//! Used in setuid mode only; any doubt means "no ranges", never an error that stops a jail.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// At most this many ranges are used (each becomes a map line; the kernel allows 340).
const MAX_RANGES: usize = 8;

/// The caller's ranges (start, count) in `path`, or none; `name` is its login name.
pub fn ranges(path: &str, uid: u32, name: Option<&str>) -> Vec<(u32, u32)> {
    let Some(text) = read_trusted(path) else { return Vec::new() };
    parse(&text, uid, name)
}

/// Reads `path` if it is a regular, root-owned file that only root may write (checked on the
/// opened file, not on the name). `Ok(None)`: there is no such file.
pub fn read_trusted_file(path: &str) -> Result<Option<String>, String> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{path}: {e}")),
    };
    let m = f.metadata().map_err(|e| format!("{path}: {e}"))?;
    if !m.is_file() || m.uid() != 0 || m.mode() & 0o022 != 0 || m.len() > 1 << 20 {
        return Err(format!("{path}: not a regular file owned by root and writable only by root"));
    }
    let mut s = String::new();
    f.read_to_string(&mut s).map_err(|e| format!("{path}: {e}"))?;
    Ok(Some(s))
}

/// `read_trusted_file`, any doubt meaning "nothing".
pub fn read_trusted(path: &str) -> Option<String> {
    read_trusted_file(path).ok().flatten()
}

/// The login name of `uid` from `/etc/passwd` (no NSS: a setuid program loads no modules).
pub fn login_name(uid: u32) -> Option<String> {
    let text = read_trusted("/etc/passwd")?;
    text.lines().find_map(|l| {
        let mut it = l.split(':');
        let name = it.next()?;
        let id: u32 = it.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Lines `owner:start:count`, owner a login name or a numeric id. Ranges must not be empty,
/// overflow, or contain the caller's own id or 0 (root).
pub fn parse(text: &str, uid: u32, name: Option<&str>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 3 {
            continue;
        }
        let mine = Some(f[0]) == name || f[0].parse::<u32>() == Ok(uid);
        let (Ok(start), Ok(count)) = (f[1].parse::<u32>(), f[2].parse::<u32>()) else { continue };
        let Some(end) = start.checked_add(count) else { continue };
        if !mine || count == 0 || start == 0 || end == u32::MAX || (start..end).contains(&uid) {
            continue;
        }
        if out.len() < MAX_RANGES {
            out.push((start, count));
        }
    }
    out
}

/// The names of the groups `gids` from `/etc/group` (no NSS, as above).
pub fn group_names(gids: &[u32]) -> Vec<String> {
    let Some(text) = read_trusted("/etc/group") else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(':');
            let name = it.next()?;
            let id: u32 = it.nth(1)?.parse().ok()?;
            gids.contains(&id).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_callers_sane_ranges() {
        let text = "alice:100000:65536\n# comment\nbob:200000:65536\n1000:300000:10\n\
                    alice:0:10\nalice:4294967290:10\nalice:5:0\nalice:990:20\nalice:x:1\nalice:1:2:3\n";
        assert_eq!(parse(text, 1000, Some("alice")), vec![(100000, 65536), (300000, 10)]);
        assert_eq!(parse(text, 1001, Some("bob")), vec![(200000, 65536)]);
        assert_eq!(parse(text, 1002, None), vec![]);
    }
}
