//! btrfs subvolumes for a jail's data: on btrfs, a jail's `upper` (or `rootfs`) is a subvolume
//! of its own (`create`), and `snapshot`, `rollback` and `clone` take subvolume snapshots of it
//! (O(1), sharing every extent) instead of copying the tree.
//!
//! The two ioctls are called directly (`BTRFS_IOC_SUBVOL_CREATE`, `BTRFS_IOC_SNAP_CREATE_V2`,
//! from `linux/btrfs.h`), the only unsafe code of ljail. As a non-root user the kernel allows
//! both on directories the caller may write (and a snapshot of a subvolume it can read); a
//! subvolume is removed as a directory once empty (`rmdir` of a subvolume, kernel 4.18 and
//! later), so ljail's usual tree removal works for them too.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{ioctl, opcode, Opcode, Setter};

/// `BTRFS_IOCTL_MAGIC`.
const MAGIC: u8 = 0x94;
/// `BTRFS_SUPER_MAGIC`, statfs's `f_type` of a btrfs file system.
const SUPER_MAGIC: i64 = 0x9123_683e;
/// The inode number of every subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
const SUBVOL_ROOT_INO: u64 = 256;
/// `BTRFS_PATH_NAME_MAX`.
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_SUBVOL_NAME_MAX`.
const SUBVOL_NAME_MAX: usize = 4039;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2` (the unions as their largest members: `unused[4]`, `name`).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; SUBVOL_NAME_MAX + 1],
}

const _: () = assert!(std::mem::size_of::<VolArgs>() == 4096 && std::mem::size_of::<VolArgsV2>() == 4096);

/// `BTRFS_IOC_SUBVOL_CREATE`: `_IOW(BTRFS_IOCTL_MAGIC, 14, struct btrfs_ioctl_vol_args)`.
const SUBVOL_CREATE: Opcode = opcode::write::<VolArgs>(MAGIC, 14);
/// `BTRFS_IOC_SNAP_CREATE_V2`: `_IOW(BTRFS_IOCTL_MAGIC, 23, struct btrfs_ioctl_vol_args_v2)`.
const SNAP_CREATE_V2: Opcode = opcode::write::<VolArgsV2>(MAGIC, 23);

/// Whether `p` is on a btrfs file system.
#[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, narrower on other architectures
pub fn is_btrfs(p: &Path) -> bool {
    rustix::fs::statfs(p).is_ok_and(|s| s.f_type as i64 == SUPER_MAGIC)
}

/// Whether `p` is the root directory of a btrfs subvolume (not following a symlink).
pub fn is_subvolume(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOL_ROOT_INO) && is_btrfs(p)
}

/// The directory `p` is made in (opened, no symlink followed in its last component) and the
/// last component's bytes (a NUL-terminated name of at most `max` bytes).
fn parent_and_name(p: &Path, max: usize) -> io::Result<(File, Vec<u8>)> {
    let (parent, name) = match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => (if d.as_os_str().is_empty() { Path::new(".") } else { d }, n),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "no directory and name")),
    };
    let name: &OsStr = name;
    if name.len() > max || name.as_bytes().contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long for a subvolume"));
    }
    let dir = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    Ok((File::from(dir), name.as_bytes().to_vec()))
}

/// Makes `dst` (which must not exist) a new, empty subvolume.
pub fn create(dst: &Path) -> io::Result<()> {
    let (dir, name) = parent_and_name(dst, PATH_NAME_MAX)?;
    let mut args = VolArgs { fd: 0, name: [0; PATH_NAME_MAX + 1] };
    args.name[..name.len()].copy_from_slice(&name);
    // SAFETY: SUBVOL_CREATE is _IOW with the size of VolArgs, which has the layout of the
    // kernel's struct btrfs_ioctl_vol_args (checked to be 4096 bytes above); the kernel only
    // reads it, and `name` is NUL-terminated (at most PATH_NAME_MAX bytes, zero-filled after).
    let setter = unsafe { Setter::<SUBVOL_CREATE, VolArgs>::new(args) };
    // SAFETY: `dir` is an open directory fd, and `setter` passes a pointer to the VolArgs it
    // holds, valid for the call (see above).
    unsafe { ioctl(&dir, setter) }.map_err(io::Error::from)
}

/// Makes `dst` (which must not exist, on the same btrfs file system) a writable snapshot of
/// the subvolume `src`.
pub fn snapshot(src: &Path, dst: &Path) -> io::Result<()> {
    let (dir, name) = parent_and_name(dst, SUBVOL_NAME_MAX)?;
    let source = File::from(rustix::fs::open(
        src,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    let mut args = VolArgsV2 {
        fd: i64::from(std::os::fd::AsRawFd::as_raw_fd(&source)),
        transid: 0,
        flags: 0,
        unused: [0; 4],
        name: [0; SUBVOL_NAME_MAX + 1],
    };
    args.name[..name.len()].copy_from_slice(&name);
    // SAFETY: SNAP_CREATE_V2 is _IOW with the size of VolArgsV2, which has the layout of the
    // kernel's struct btrfs_ioctl_vol_args_v2 (4096 bytes, checked above); `flags` 0 asks for
    // nothing that reads `unused` (no qgroup inheritance) or writes back; `fd` is `source`,
    // open until after the call; `name` is NUL-terminated.
    let setter = unsafe { Setter::<SNAP_CREATE_V2, VolArgsV2>::new(args) };
    // SAFETY: `dir` is an open directory fd, and `setter` passes a pointer to the VolArgsV2
    // it holds, valid for the call (see above).
    let r = unsafe { ioctl(&dir, setter) }.map_err(io::Error::from);
    drop(source);
    r
}
