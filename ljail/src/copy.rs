//! Copying trees: snapshots, rollbacks, clones (verbatim: an overlay upper stays an upper, its
//! whiteouts and `*.overlay.*` xattrs included) and `--copy` jails (the layers merged, whiteouts
//! and opaque directories applied, overlay xattrs dropped).
//!
//! File data is cloned with FICLONE where the file system shares extents (btrfs, XFS with
//! reflink); elsewhere it is copied (`copy_file_range` through `std::io::copy`). Owners are
//! kept (as root; as another user a different owner is an error, never silently changed),
//! and so are modes, xattrs and modification times. Hard links become separate files. On
//! btrfs a jail's data is a subvolume, and its copies are subvolume snapshots ([`copy_data`]).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{FileType, Mode, Timespec, Timestamps, UTIME_OMIT};

use crate::error::Error;

/// How a tree is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Everything as it is (an overlay upper stays a valid upper).
    Verbatim,
    /// Apply an overlay layer onto the destination: whiteouts remove, opaque directories
    /// replace, overlay xattrs are not copied.
    Merge,
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Files whose data was cloned (FICLONE).
    pub cloned: u64,
    /// Files whose data was copied.
    pub copied: u64,
    /// Trees taken as one btrfs subvolume snapshot instead.
    pub snapshots: u64,
}

impl Stats {
    /// What was done, for a message: `a btrfs snapshot` or `N files cloned, M copied`.
    pub fn describe(&self) -> String {
        if self.snapshots > 0 && self.cloned + self.copied == 0 {
            "a btrfs subvolume snapshot".into()
        } else {
            format!("{} files cloned, {} copied", self.cloned, self.copied)
        }
    }
}

/// A jail's data directory (`upper`, `rootfs`) copied verbatim to `dst` (which must not
/// exist): a btrfs subvolume is snapshotted when `dst` is on btrfs too (a subvolume again, its
/// extents shared), anything else copied by [`copy_tree`].
pub fn copy_data(src: &Path, dst: &Path, stats: &mut Stats) -> Result<(), Error> {
    if crate::btrfs::is_subvolume(src) && dst.parent().is_some_and(crate::btrfs::is_btrfs) {
        crate::btrfs::snapshot(src, dst).map_err(Error::io("cannot snapshot (btrfs) into", dst))?;
        stats.snapshots += 1;
        return Ok(());
    }
    copy_tree(src, dst, How::Verbatim, stats)
}

/// Makes a jail's new data directory `dst`: a subvolume of its own on btrfs (so that its
/// snapshots are subvolume snapshots), else a plain directory.
pub fn make_data_dir(dst: &Path) -> Result<(), Error> {
    if dst.parent().is_some_and(crate::btrfs::is_btrfs) {
        return crate::btrfs::create(dst).map_err(Error::io("cannot create a btrfs subvolume at", dst));
    }
    fs::create_dir(dst).map_err(Error::io("cannot create", dst))
}

/// Copies the tree `src` to `dst` (which must not exist for [`How::Verbatim`]; it is merged
/// into for [`How::Merge`]).
pub fn copy_tree(src: &Path, dst: &Path, how: How, stats: &mut Stats) -> Result<(), Error> {
    let md = fs::symlink_metadata(src).map_err(Error::io("cannot stat", src))?;
    copy_entry(src, dst, &md, how, stats)
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

fn opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| rustix::fs::lgetxattr(p, *n, &mut buf).is_ok_and(|len| &buf[..len] == b"y"))
}

fn remove_any(p: &Path) -> Result<(), Error> {
    ljbuild::store::remove_tree(p).map_err(Error::io("cannot remove", p))
}

fn copy_entry(src: &Path, dst: &Path, md: &fs::Metadata, how: How, stats: &mut Stats) -> Result<(), Error> {
    let ft = md.file_type();
    let existing = fs::symlink_metadata(dst).ok();
    if how == How::Merge {
        if is_whiteout(md) {
            if existing.is_some() {
                remove_any(dst)?;
            }
            return Ok(());
        }
        match &existing {
            Some(e) if e.is_dir() && ft.is_dir() && !opaque(src) => {}
            Some(_) => remove_any(dst)?,
            None => {}
        }
    }
    let merged_dir = how == How::Merge && ft.is_dir() && dst.is_dir();
    if ft.is_dir() {
        if !merged_dir {
            fs::create_dir(dst).map_err(Error::io("cannot create", dst))?;
            // Owner-writable while filling it; the real mode is set at the end.
            fs::set_permissions(dst, fs::Permissions::from_mode(0o700))
                .map_err(Error::io("cannot chmod", dst))?;
        }
        let rd = fs::read_dir(src).map_err(Error::io("cannot list", src))?;
        for e in rd {
            let e = e.map_err(Error::io("cannot list", src))?;
            let md = e.metadata().map_err(Error::io("cannot stat", e.path()))?;
            copy_entry(&e.path(), &dst.join(e.file_name()), &md, how, stats)?;
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(Error::io("cannot read link", src))?;
        std::os::unix::fs::symlink(&target, dst).map_err(Error::io("cannot create link", dst))?;
    } else if ft.is_file() {
        copy_file(src, dst, stats)?;
    } else {
        let kind = if ft.is_char_device() {
            FileType::CharacterDevice
        } else if ft.is_block_device() {
            FileType::BlockDevice
        } else if ft.is_fifo() {
            FileType::Fifo
        } else {
            FileType::Socket
        };
        rustix::fs::mknodat(rustix::fs::CWD, dst, kind, Mode::from_raw_mode(0o600), md.rdev())
            .map_err(|e| Error::io("cannot create node", dst)(e.into()))?;
    }
    copy_meta(src, dst, md, how, ft.is_symlink())
}

fn copy_file(src: &Path, dst: &Path, stats: &mut Stats) -> Result<(), Error> {
    let mut from = File::open(src).map_err(Error::io("cannot open", src))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(Error::io("cannot create", dst))?;
    if rustix::fs::ioctl_ficlone(&to, &from).is_ok() {
        stats.cloned += 1;
        return Ok(());
    }
    io::copy(&mut from, &mut to).map_err(Error::io("cannot copy to", dst))?;
    stats.copied += 1;
    Ok(())
}

fn copy_meta(src: &Path, dst: &Path, md: &fs::Metadata, how: How, link: bool) -> Result<(), Error> {
    let me = rustix::process::geteuid().as_raw();
    let (uid, gid) = (md.uid(), md.gid());
    let here = fs::symlink_metadata(dst).map_err(Error::io("cannot stat", dst))?;
    if here.uid() != uid || here.gid() != gid {
        if let Err(e) = std::os::unix::fs::lchown(dst, Some(uid), Some(gid)) {
            let why =
                if me == 0 { describe_errno(&e) } else { "only root can give files to another owner".into() };
            return Err(Error::Failed(format!(
                "cannot keep the owner {uid}:{gid} of {} in the copy: {why}",
                src.display()
            )));
        }
    }
    // xattrs (before the mode: a read-only mode is set last).
    let mut names = vec![0u8; 4096];
    if let Ok(n) = rustix::fs::llistxattr(src, &mut names) {
        for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if how == How::Merge && is_overlay_xattr(name) {
                continue;
            }
            let mut val = vec![0u8; 65536];
            if let Ok(len) = rustix::fs::lgetxattr(src, name, &mut val) {
                rustix::fs::lsetxattr(dst, name, &val[..len], rustix::fs::XattrFlags::empty()).map_err(
                    |e| {
                        Error::io("cannot set an xattr on", dst)(io::Error::other(format!(
                            "{}: {}",
                            String::from_utf8_lossy(name),
                            describe_errno(&e.into())
                        )))
                    },
                )?;
            }
        }
    }
    if !link {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(Error::io("cannot chmod", dst))?;
    }
    let ts = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dst, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io("cannot set the time of", dst)(e.into()))?;
    Ok(())
}

fn describe_errno(e: &io::Error) -> String {
    crate::error::describe(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_applies_whiteouts_and_opaque_dirs() {
        let base = std::env::temp_dir().join(format!("ljail-copy-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (l1, l2, out) = (base.join("l1"), base.join("l2"), base.join("out"));
        fs::create_dir_all(l1.join("d/sub")).unwrap();
        fs::write(l1.join("d/sub/f"), "1").unwrap();
        fs::write(l1.join("gone"), "x").unwrap();
        fs::create_dir_all(l1.join("o")).unwrap();
        fs::write(l1.join("o/old"), "x").unwrap();
        std::os::unix::fs::symlink("d/sub/f", l1.join("ln")).unwrap();
        fs::create_dir_all(l2.join("o")).unwrap();
        fs::write(l2.join("o/new"), "2").unwrap();
        fs::write(l2.join("d/sub/f"), "2").unwrap_or_else(|_| {
            fs::create_dir_all(l2.join("d/sub")).unwrap();
            fs::write(l2.join("d/sub/f"), "2").unwrap();
        });
        let opaque_set =
            rustix::fs::lsetxattr(l2.join("o"), "user.overlay.opaque", b"y", rustix::fs::XattrFlags::empty())
                .is_ok();
        let whiteout = rustix::fs::mknodat(
            rustix::fs::CWD,
            l2.join("gone"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            0,
        )
        .is_ok();
        let mut st = Stats::default();
        fs::create_dir(&out).unwrap();
        copy_tree(&l1, &out, How::Merge, &mut st).unwrap();
        copy_tree(&l2, &out, How::Merge, &mut st).unwrap();
        assert_eq!(fs::read_to_string(out.join("d/sub/f")).unwrap(), "2");
        assert_eq!(fs::read_link(out.join("ln")).unwrap(), Path::new("d/sub/f"));
        assert!(out.join("o/new").exists());
        if opaque_set {
            assert!(!out.join("o/old").exists());
            assert!(!opaque(&out.join("o")), "overlay xattrs are dropped by a merge");
        }
        if whiteout {
            assert!(!out.join("gone").exists());
            // Verbatim keeps the whiteout.
            copy_tree(&l2, &base.join("v"), How::Verbatim, &mut st).unwrap();
            assert!(is_whiteout(&fs::symlink_metadata(base.join("v/gone")).unwrap()));
        }
        fs::remove_dir_all(&base).unwrap();
    }
}
