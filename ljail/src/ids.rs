//! Private id ranges of root's jails (`private-users BASE`, ljspawn `--subids-base`): jail ids
//! 0-65535 are host ids BASE..BASE+65535, so the jail's root is not the host's.
//!
//! * [`pick`]: a range as `systemd-nspawn --private-users=pick` chooses one: a hash of the
//!   jail's name (and its root's path, but for the default root) into 0x24000000-0x6FFF0000 (65536-aligned,
//!   above useradd's default subordinate ranges), probing the next range while it
//!   overlaps another jail's (of every lightjail root ljail can see: its own, `LIGHTJAIL_PATH`'s
//!   and the default one), an `/etc/subuid` or `/etc/subgid` entry, or a user or group of the
//!   host (`/etc/passwd`, `/etc/group`). Under the root's `ids` lock, held until the jail's
//!   config is in place.
//! * [`shift_tree`]: a jail's data moved from one range to another (a clone gets a range of
//!   its own; a `root copy` jail's copy of its layers is moved from host root's ids to its
//!   range at create): owners shifted by the offset (`lchown`, never following a link), and what
//!   `chown` clears restored: the setuid and setgid bits, and the file capabilities
//!   (`security.capability`, whose version 3 root id is shifted too); POSIX ACL entries of
//!   named users and groups are shifted. Only trees no jail can reach are shifted (a new
//!   jail's staging directory).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{self, PICK_END, PICK_MIN};
use crate::error::Error;
use crate::jail::Jails;

/// The ids of one jail: 0-65535.
pub const RANGE: u32 = 65536;

/// An id range in use: (first, count, who uses it).
pub type Used = (u64, u64, String);

/// What the ranges of root's jails must not overlap: the private ranges of the jails of every
/// root ljail can see (but `except`, a jail of its own root), the subordinate ranges of
/// `/etc/subuid` and `/etc/subgid`, and the host's users and groups.
pub fn used(jails: &Jails, except: Option<&str>) -> Vec<Used> {
    let mut roots: Vec<PathBuf> = vec![jails.root.path.clone()];
    roots.extend(jails.root.others.iter().cloned());
    roots.push(PathBuf::from(ljbuild::store::DEFAULT_ROOT));
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for r in roots {
        let canon = fs::canonicalize(&r).unwrap_or(r.clone());
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        let own = r == jails.root.path;
        let Ok(entries) = fs::read_dir(r.join("jails")) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if own && except == Some(name.as_str()) {
                continue;
            }
            let Ok(text) = fs::read_to_string(e.path().join("config")) else { continue };
            if let Some(b) = config::parse(&text).ok().and_then(|c| c.private_base()) {
                out.push((u64::from(b), u64::from(RANGE), format!("jail {name} of {}", r.display())));
            }
        }
    }
    for f in ["/etc/subuid", "/etc/subgid"] {
        for l in fs::read_to_string(f).unwrap_or_default().lines() {
            let p: Vec<&str> = l.trim().split(':').collect();
            if let [who, start, count] = p[..] {
                if let (Ok(s), Ok(c)) = (start.parse::<u64>(), count.parse::<u64>()) {
                    out.push((s, c, format!("{who}'s range in {f}")));
                }
            }
        }
    }
    for (f, what) in [("/etc/passwd", "user"), ("/etc/group", "group")] {
        for l in fs::read_to_string(f).unwrap_or_default().lines() {
            let p: Vec<&str> = l.split(':').collect();
            if let Some(id) = p.get(2).and_then(|v| v.parse::<u64>().ok()) {
                out.push((id, 1, format!("the {what} {} of {f}", p[0])));
            }
        }
    }
    out
}

/// True in the initial user namespace (uid map `0 0 4294967295`): there root's jails get a
/// private range by default. Inside a jail's user namespace (ljail in a booted jail) its root
/// is no host root, and the ranges are not mapped there: its jails keep the namespace's ids.
pub fn in_initial_userns() -> bool {
    let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// Who uses some of `base..base+65536`, if anyone.
pub fn overlap(base: u32, used: &[Used]) -> Option<&str> {
    let (b, e) = (u64::from(base), u64::from(base) + u64::from(RANGE));
    used.iter().find(|(s, c, _)| *s < e && s + c > b).map(|(_, _, who)| who.as_str())
}

/// What [`pick`] hashes for the jail `name` of `jails`: its name, and its root's path where
/// that is not the default root (jails of the same name in roots ljail cannot see from each
/// other, e.g. two test roots, then start from different ranges).
pub fn pick_key(jails: &Jails, name: &str) -> String {
    let root = &jails.root.path;
    if root == Path::new(ljbuild::store::DEFAULT_ROOT) {
        name.to_string()
    } else {
        format!("{}:{name}", root.display())
    }
}

/// A free range for the jail whose [`pick_key`] is `name` (see the module's comment).
pub fn pick(name: &str, used: &[Used]) -> Result<u32, Error> {
    let slots = (PICK_END - PICK_MIN) / RANGE;
    // FNV-1a: stable across builds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let first = (h % u64::from(slots)) as u32;
    (0..slots)
        .map(|i| PICK_MIN + ((first + i) % slots) * RANGE)
        .find(|&b| overlap(b, used).is_none())
        .ok_or_else(|| {
            Error::Failed("no free private id range left between 0x24000000 and 0x6FFF0000".into())
        })
}

/// `id` moved from the range at `from` to the one at `to` (ids outside it unchanged).
fn shifted(id: u32, from: u32, to: u32) -> u32 {
    if id >= from && id - from < RANGE {
        to + (id - from)
    } else {
        id
    }
}

/// A `security.capability` value with its version 3 root id shifted (version 2 has none).
fn shift_caps(mut v: Vec<u8>, from: u32, to: u32) -> Vec<u8> {
    const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
    if v.len() == 24 && u32::from_le_bytes([v[0], v[1], v[2], v[3]]) & 0xff00_0000 == VFS_CAP_REVISION_3 {
        let root = u32::from_le_bytes([v[20], v[21], v[22], v[23]]);
        v[20..24].copy_from_slice(&shifted(root, from, to).to_le_bytes());
    }
    v
}

/// A POSIX ACL xattr value with its named users' and groups' ids shifted.
fn shift_acl(mut v: Vec<u8>, from: u32, to: u32) -> Vec<u8> {
    const ACL_USER: u16 = 0x02;
    const ACL_GROUP: u16 = 0x08;
    // Header: u32 version; then entries of u16 tag, u16 perm, u32 id.
    let mut i = 4;
    while i + 8 <= v.len() {
        let tag = u16::from_le_bytes([v[i], v[i + 1]]);
        if tag == ACL_USER || tag == ACL_GROUP {
            let id = u32::from_le_bytes([v[i + 4], v[i + 5], v[i + 6], v[i + 7]]);
            v[i + 4..i + 8].copy_from_slice(&shifted(id, from, to).to_le_bytes());
        }
        i += 8;
    }
    v
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    let n = rustix::fs::lgetxattr(p, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Shifts the owners of the tree `dir` from the range at `from` to the one at `to` (see the
/// module's comment); returns how many entries changed. `dir` must be out of every jail's
/// reach while this runs.
pub fn shift_tree(dir: &Path, from: u32, to: u32) -> Result<u64, Error> {
    let md = fs::symlink_metadata(dir).map_err(Error::io("cannot stat", dir))?;
    let mut n = shift_entry(dir, &md, from, to)?;
    if md.is_dir() {
        for e in fs::read_dir(dir).map_err(Error::io("cannot list", dir))? {
            let e = e.map_err(Error::io("cannot list", dir))?;
            n += shift_tree(&e.path(), from, to)?;
        }
    }
    Ok(n)
}

fn shift_entry(p: &Path, md: &fs::Metadata, from: u32, to: u32) -> Result<u64, Error> {
    let (uid, gid) = (shifted(md.uid(), from, to), shifted(md.gid(), from, to));
    let link = md.file_type().is_symlink();
    let acls = ["system.posix_acl_access", "system.posix_acl_default"];
    let acl_vals: Vec<(&str, Vec<u8>)> = if link {
        Vec::new()
    } else {
        acls.iter().filter_map(|a| get_xattr(p, a).map(|v| (*a, v))).collect()
    };
    if (uid, gid) == (md.uid(), md.gid()) && acl_vals.is_empty() {
        return Ok(0);
    }
    let caps = if md.is_file() { get_xattr(p, "security.capability") } else { None };
    let set = |name: &str, v: &[u8]| {
        rustix::fs::lsetxattr(p, name, v, rustix::fs::XattrFlags::empty())
            .map_err(|e| Error::io("cannot restore an xattr of", p)(e.into()))
    };
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(Error::io("cannot chown", p))?;
    if !link {
        // chown clears the setuid and setgid bits (and the file capabilities): back as they were.
        if md.mode() & 0o6000 != 0 {
            fs::set_permissions(p, fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(Error::io("cannot chmod", p))?;
        }
        if let Some(c) = caps {
            set("security.capability", &shift_caps(c, from, to))?;
        }
        for (a, v) in acl_vals {
            set(a, &shift_acl(v, from, to))?;
        }
    }
    Ok(1)
}

/// Gives `p` (a jail's new directory: its upper, work, storage) to the jail's root, host
/// `base` (`lchown`: never following a link).
pub fn give(p: &Path, base: u32) -> Result<(), Error> {
    std::os::unix::fs::lchown(p, Some(base), Some(base)).map_err(Error::io("cannot chown", p))
}

const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_UNDEFINED_ID: u32 = u32::MAX;

/// `dir` opened as a directory (following a symlink to it: a root reached through one, e.g.
/// /var/lib/lightjail -> /data/lightjail, has its ACLs on the directory itself).
fn open_dir(dir: &Path) -> Result<rustix::fd::OwnedFd, Error> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("cannot open", dir)(e.into()))
}

/// The access ACL of the directory `fd` as (tag, perm, id) entries: its own, or the one its
/// mode stands for.
fn read_acl(fd: &rustix::fd::OwnedFd, dir: &Path) -> Result<Vec<(u16, u16, u32)>, Error> {
    let mut buf = vec![0u8; 65536];
    if let Ok(n) = rustix::fs::fgetxattr(fd, ACL_ACCESS, &mut buf) {
        let mut out = Vec::new();
        for e in buf[..n].get(4..).unwrap_or(&[]).chunks_exact(8) {
            out.push((
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            ));
        }
        return Ok(out);
    }
    let mode = rustix::fs::fstat(fd).map_err(|e| Error::io("cannot stat", dir)(e.into()))?.st_mode;
    let bits = |shift: u32| ((mode >> shift) & 7) as u16;
    Ok(vec![
        (ACL_USER_OBJ, bits(6), ACL_UNDEFINED_ID),
        (ACL_GROUP_OBJ, bits(3), ACL_UNDEFINED_ID),
        (ACL_OTHER, bits(0), ACL_UNDEFINED_ID),
    ])
}

/// Writes the access ACL `acl` of the directory `fd` (the mask recomputed; without named
/// entries, the plain mode again).
fn write_acl(fd: &rustix::fd::OwnedFd, dir: &Path, mut acl: Vec<(u16, u16, u32)>) -> Result<(), Error> {
    acl.retain(|e| e.0 != ACL_MASK);
    let named = acl.iter().any(|e| e.0 == ACL_USER || e.0 == ACL_GROUP);
    if !named {
        let perm = |tag| acl.iter().find(|e| e.0 == tag).map_or(0, |e| u32::from(e.1));
        let _ = rustix::fs::fremovexattr(fd, ACL_ACCESS);
        let mode = (perm(ACL_USER_OBJ) << 6) | (perm(ACL_GROUP_OBJ) << 3) | perm(ACL_OTHER);
        let old = rustix::fs::fstat(fd).map_err(|e| Error::io("cannot stat", dir)(e.into()))?.st_mode;
        return rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode((old & 0o7000) | mode))
            .map_err(|e| Error::io("cannot chmod", dir)(e.into()));
    }
    let mask =
        acl.iter().filter(|e| matches!(e.0, ACL_GROUP_OBJ | ACL_USER | ACL_GROUP)).fold(0, |m, e| m | e.1);
    acl.push((ACL_MASK, mask, ACL_UNDEFINED_ID));
    acl.sort_by_key(|e| (e.0, e.2));
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in acl {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    rustix::fs::fsetxattr(fd, ACL_ACCESS, &v, rustix::fs::XattrFlags::empty()).map_err(|e| {
        let e: std::io::Error = e.into();
        let why = if e.raw_os_error() == Some(libc_eopnotsupp()) {
            "its file system has no POSIX ACLs, which a jail in a private id range needs to reach its files (use --private-users no there, or a root on ext4, btrfs, xfs or tmpfs)"
        } else {
            "cannot set the ACL of"
        };
        Error::io(why, dir)(e)
    })
}

fn libc_eopnotsupp() -> i32 {
    rustix::io::Errno::OPNOTSUPP.raw_os_error()
}

/// Grants (`on`) or takes back search permission on `dir` to host uid `uid` alone (a named
/// user entry of its access ACL).
fn acl_search(dir: &Path, uid: u32, on: bool) -> Result<(), Error> {
    let fd = open_dir(dir)?;
    let mut acl = read_acl(&fd, dir)?;
    let had = acl.iter().any(|e| e.0 == ACL_USER && e.2 == uid);
    acl.retain(|e| !(e.0 == ACL_USER && e.2 == uid));
    if on {
        acl.push((ACL_USER, 1, uid));
    } else if !had {
        return Ok(());
    }
    write_acl(&fd, dir, acl)
}

/// Lets the jail's root (host `base`, which ljspawn's setup runs as until it has pivoted into
/// the jail) reach the jail's directory `dir` to open its data there, and no one else: the
/// root directory and its `jails/` (root's 0700) get an ACL entry granting `base` search (not
/// listing), `dir` is root:BASE 0710. Above the root, every directory must let others search
/// (it is checked here, with the fix named).
pub fn open_path_to(jails: &Jails, dir: &Path, base: u32) -> Result<(), Error> {
    std::os::unix::fs::chown(dir, Some(0), Some(base)).map_err(Error::io("cannot chown", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o710)).map_err(Error::io("cannot chmod", dir))?;
    let root = &jails.root.path;
    for d in [root.clone(), jails.dir()] {
        let md = fs::metadata(&d).map_err(Error::io("cannot stat", &d))?;
        if md.mode() & 0o001 == 0 {
            acl_search(&d, base, true)?;
        }
    }
    let abs = fs::canonicalize(root).map_err(Error::io("cannot resolve", root))?;
    for a in abs.ancestors().skip(1) {
        let md = fs::metadata(a).map_err(Error::io("cannot stat", a))?;
        if md.mode() & 0o001 == 0 {
            return Err(Error::Failed(format!(
                "{} is not searchable by others, so a jail in a private id range cannot reach its files in {} (chmod o+x {}, or --private-users no)",
                a.display(),
                root.display(),
                a.display()
            )));
        }
    }
    Ok(())
}

/// Takes back what [`open_path_to`] granted `base` (a destroyed jail's range, a failed
/// create's or clone's), unless a jail of this root still has that range (its config; a
/// half-made jail holds the root's `ids` lock, which the caller holds too).
pub fn close_path_to(jails: &Jails, base: u32) {
    let in_use = fs::read_dir(jails.dir()).into_iter().flatten().flatten().any(|e| {
        fs::read_to_string(e.path().join("config"))
            .ok()
            .and_then(|t| config::parse(&t).ok())
            .and_then(|c| c.private_base())
            == Some(base)
    });
    if in_use {
        return;
    }
    for d in [jails.root.path.clone(), jails.dir()] {
        let _ = acl_search(&d, base, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_probes_past_used_ranges() {
        let first = pick("web", &[]).unwrap();
        assert!(first >= PICK_MIN && first + RANGE <= PICK_END && first.is_multiple_of(RANGE));
        assert_eq!(pick("web", &[]).unwrap(), first, "stable");
        let used = vec![(u64::from(first) + 5, 1, "x".to_string())];
        let next = pick("web", &used).unwrap();
        assert_eq!(next, if first + 2 * RANGE > PICK_END { PICK_MIN } else { first + RANGE });
        assert_eq!(overlap(first, &used), Some("x"));
        assert_eq!(overlap(next, &used), None);
    }

    #[test]
    fn acl_grants_search_to_one_uid_and_takes_it_back() {
        let d = std::env::temp_dir().join(format!("ljail-acl-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        if acl_search(&d, 0x80000, true).is_err() {
            fs::remove_dir_all(&d).unwrap();
            return; // (no ACLs on the temporary directory's file system)
        }
        let acl = read_acl(&open_dir(&d).unwrap(), &d).unwrap();
        assert!(
            acl.contains(&(ACL_USER, 1, 0x80000)) && acl.contains(&(ACL_MASK, 1, ACL_UNDEFINED_ID)),
            "{acl:?}"
        );
        assert!(
            acl.contains(&(ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID))
                && acl.contains(&(ACL_OTHER, 0, ACL_UNDEFINED_ID))
        );
        acl_search(&d, 0x90000, true).unwrap();
        acl_search(&d, 0x80000, false).unwrap();
        assert!(!read_acl(&open_dir(&d).unwrap(), &d).unwrap().iter().any(|e| e.2 == 0x80000));
        acl_search(&d, 0x90000, false).unwrap();
        assert!(get_xattr(&d, ACL_ACCESS).is_none());
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn shifts_ids_caps_and_acls() {
        assert_eq!(shifted(0x80000 + 7, 0x80000, 0x90000), 0x90007);
        assert_eq!(shifted(5, 0x80000, 0x90000), 5);
        assert_eq!(shifted(5, 0, 0x90000), 0x90005);
        let mut caps = vec![0u8; 24];
        caps[0..4].copy_from_slice(&0x0300_0000u32.to_le_bytes());
        caps[20..24].copy_from_slice(&0x80000u32.to_le_bytes());
        assert_eq!(&shift_caps(caps, 0x80000, 0x90000)[20..24], &0x90000u32.to_le_bytes());
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, id) in [(0x01u16, u32::MAX), (0x02, 0x80000 + 1000), (0x08, 0x80000 + 42)] {
            acl.extend(tag.to_le_bytes());
            acl.extend(7u16.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        let out = shift_acl(acl, 0x80000, 0x90000);
        assert_eq!(&out[8..12], &u32::MAX.to_le_bytes());
        assert_eq!(&out[16..20], &(0x90000u32 + 1000).to_le_bytes());
        assert_eq!(&out[24..28], &(0x90000u32 + 42).to_le_bytes());
    }
}
