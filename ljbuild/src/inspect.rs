//! What a published layer adds, changes and deletes, read from its upper directory against the
//! layers below it (overlayfs whiteouts read as deletions, opaque directories as replacements).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::store::StoreError;

/// One entry of a layer's diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `/etc/passwd`.
    pub path: String,
    /// `file`, `dir`, `symlink`, `other`.
    pub kind: &'static str,
    /// Permission bits and type bits' low part (`0o4755` for a setuid file).
    pub mode: u32,
    /// Size in bytes (files).
    pub size: u64,
}

/// A layer's diff against the layers below it, every list sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// New entries.
    pub adds: Vec<Entry>,
    /// Entries that replace one below (files, links; directories whose mode or owner changed, or
    /// made opaque: their contents below are hidden).
    pub changes: Vec<Entry>,
    /// Paths deleted (whiteouts).
    pub deletes: Vec<String>,
    /// Files in the layer, and their bytes.
    pub files: u64,
    /// Bytes of the regular files in the layer.
    pub bytes: u64,
    /// Directories of the layer ljbuild cannot read (rootless: owned by a subordinate id and
    /// closed to others); listed, not descended into.
    pub unreadable: Vec<String>,
}

/// A whiteout: a character device 0:0 (or a zero-size file with the `overlay.whiteout` xattr,
/// as rootless overlay may write).
fn is_whiteout(p: &Path, md: &fs::Metadata) -> bool {
    (md.file_type().is_char_device() && md.rdev() == 0)
        || (md.is_file() && md.len() == 0 && has_xattr(p, b"overlay.whiteout"))
}

fn has_xattr(p: &Path, suffix: &[u8]) -> bool {
    let mut names = vec![0u8; 4096];
    match rustix::fs::llistxattr(p, &mut names) {
        Ok(n) => names[..n].split(|&b| b == 0).any(|name| {
            (name.starts_with(b"user.") || name.starts_with(b"trusted.")) && name.ends_with(suffix)
        }),
        Err(_) => false,
    }
}

/// The metadata of `rel` in the merged view of `layers` (bottom first): `None` when it does not
/// exist there (never created, whited out, or under an opaque or whited-out directory).
fn lower(layers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    for l in layers.iter().rev() {
        let p = l.join(rel);
        if let Ok(md) = fs::symlink_metadata(&p) {
            return (!is_whiteout(&p, &md)).then_some(md);
        }
        // An ancestor whited out or opaque in this layer hides everything below it.
        let mut a = rel.parent();
        while let Some(anc) = a.filter(|a| !a.as_os_str().is_empty()) {
            let q = l.join(anc);
            if let Ok(md) = fs::symlink_metadata(&q) {
                if is_whiteout(&q, &md) || (md.is_dir() && has_xattr(&q, b"overlay.opaque")) {
                    return None;
                }
            }
            a = anc.parent();
        }
    }
    None
}

fn kind(md: &fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

/// The diff of the upper directory `upper` over `layers` (bottom first).
pub fn diff(upper: &Path, layers: &[PathBuf]) -> Result<Diff, StoreError> {
    let mut d = Diff::default();
    walk(upper, Path::new(""), layers, &mut d)?;
    d.adds.sort_by(|a, b| a.path.cmp(&b.path));
    d.changes.sort_by(|a, b| a.path.cmp(&b.path));
    d.deletes.sort();
    d.unreadable.sort();
    Ok(d)
}

fn walk(upper: &Path, rel: &Path, layers: &[PathBuf], d: &mut Diff) -> Result<(), StoreError> {
    let dir = upper.join(rel);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !rel.as_os_str().is_empty() => {
            d.unreadable.push(format!("/{}", rel.display()));
            return Ok(());
        }
        Err(e) => return Err(StoreError::io("cannot list", &dir)(e)),
    };
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let p = upper.join(&r);
        let md = fs::symlink_metadata(&p).map_err(StoreError::io("cannot stat", &p))?;
        let shown = format!("/{}", r.display());
        if is_whiteout(&p, &md) {
            d.deletes.push(shown);
            continue;
        }
        let entry = Entry { path: shown, kind: kind(&md), mode: md.mode() & 0o7777, size: md.len() };
        if md.is_file() {
            d.files += 1;
            d.bytes += md.len();
        }
        match lower(layers, &r) {
            None => d.adds.push(entry),
            Some(below) if md.is_dir() && below.is_dir() => {
                let opaque = has_xattr(&p, b"overlay.opaque");
                if opaque || below.mode() != md.mode() || below.uid() != md.uid() || below.gid() != md.gid() {
                    d.changes.push(entry);
                }
            }
            Some(_) => d.changes.push(entry),
        }
        if md.is_dir() {
            walk(upper, &r, layers, d)?;
        }
    }
    Ok(())
}
