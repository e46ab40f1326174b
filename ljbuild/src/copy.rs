//! `copy DEST`: the Jailfile's directory, minus what `.ljignore` files exclude (gitignore
//! syntax), hashed for the cache and copied into the build's upper directory.
//!
//! Regular files, directories and symbolic links are copied with their permission bits
//! (`mode & 07777`); symlinks are copied as links, never followed. Ownership is the builder's
//! (jail root). Other file types (sockets, FIFOs, devices) are skipped with a warning.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::resolve::hex;

/// Errors of `copy`.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Walking the source failed.
    #[error("copy: cannot walk {}: {source}", .dir.display())]
    Walk {
        /// The source directory.
        dir: PathBuf,
        /// Why.
        source: ignore::Error,
    },
    /// A file system operation failed.
    #[error("copy: {what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Io { what, path, source }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its sha256 (hex).
    File(String),
    /// A symbolic link and its target.
    Symlink(PathBuf),
}

/// One entry to copy.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the source directory (empty for the directory itself).
    pub rel: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
}

/// The scanned source.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Entries, sorted by path (parents before children).
    pub entries: Vec<Entry>,
    /// Skipped special files.
    pub skipped: Vec<PathBuf>,
}

impl Scan {
    /// The entries as `path → "MODE HASH"` for the inputs hash.
    pub fn keys(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|e| {
                let k = if e.rel.as_os_str().is_empty() { ".".to_string() } else { path_key(&e.rel) };
                let v = match &e.kind {
                    Kind::Dir => format!("{:04o} dir", e.mode),
                    Kind::File(h) => format!("{:04o} {h}", e.mode),
                    Kind::Symlink(t) => format!("{:04o} link {}", e.mode, path_key(t)),
                };
                (k, v)
            })
            .collect()
    }

    /// Number of regular files.
    pub fn files(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.kind, Kind::File(_))).count()
    }
}

/// A path as a unique string: UTF-8 without backslashes as is; otherwise every non-printable
/// ASCII, non-ASCII and backslash byte as `\xNN`.
pub fn path_key(p: &Path) -> String {
    let b = p.as_os_str().as_encoded_bytes();
    match std::str::from_utf8(b) {
        Ok(s) if !s.contains('\\') => s.to_string(),
        _ => b
            .iter()
            .map(|&c| {
                if c.is_ascii_graphic() && c != b'\\' || c == b' ' {
                    (c as char).to_string()
                } else {
                    format!("\\x{c:02x}")
                }
            })
            .collect(),
    }
}

fn sha256_file(path: &Path) -> Result<String, CopyError> {
    let mut f = File::open(path).map_err(io_err("cannot open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io_err("cannot read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Scans `src`, honouring `.ljignore` files, skipping anything at or under `exclude` (the
/// store itself, if it lies inside the source).
pub fn scan(src: &Path, exclude: &[&Path]) -> Result<Scan, CopyError> {
    let walk = ignore::WalkBuilder::new(src)
        .standard_filters(false)
        .hidden(false)
        .parents(false)
        .follow_links(false)
        .add_custom_ignore_filename(".ljignore")
        .filter_entry({
            let exclude: Vec<PathBuf> = exclude.iter().map(|p| p.to_path_buf()).collect();
            move |e| !exclude.iter().any(|x| e.path() == x)
        })
        .build();
    let mut out = Scan::default();
    for item in walk {
        let item = item.map_err(|source| CopyError::Walk { dir: src.to_path_buf(), source })?;
        let path = item.path();
        let rel = path.strip_prefix(src).unwrap_or(path).to_path_buf();
        let md = fs::symlink_metadata(path).map_err(io_err("cannot stat", path))?;
        let mode = md.mode() & 0o7777;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File(sha256_file(path)?)
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(path).map_err(io_err("cannot read link", path))?)
        } else {
            out.skipped.push(rel);
            continue;
        };
        out.entries.push(Entry { rel, kind, mode });
    }
    out.entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Copies the scanned entries from `src` into `dest` (which may exist). Directory modes are set
/// last, so read-only directories can be filled.
pub fn copy_into(scan: &Scan, src: &Path, dest: &Path) -> Result<(), CopyError> {
    let mut dirs = Vec::new();
    for e in &scan.entries {
        let from = src.join(&e.rel);
        let to = if e.rel.as_os_str().is_empty() { dest.to_path_buf() } else { dest.join(&e.rel) };
        match &e.kind {
            Kind::Dir => {
                match fs::create_dir(&to) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists && to.is_dir() => {}
                    Err(err) => return Err(io_err("cannot create", &to)(err)),
                }
                fs::set_permissions(&to, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("cannot chmod", &to))?;
                dirs.push((to, e.mode));
            }
            Kind::File(_) => {
                fs::copy(&from, &to).map_err(io_err("cannot copy to", &to))?;
                fs::set_permissions(&to, fs::Permissions::from_mode(e.mode))
                    .map_err(io_err("cannot chmod", &to))?;
            }
            Kind::Symlink(target) => {
                std::os::unix::fs::symlink(target, &to).map_err(io_err("cannot create symlink", &to))?;
            }
        }
    }
    for (d, mode) in dirs.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(*mode)).map_err(io_err("cannot chmod", d))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ljbuild-copy-{name}-{}", std::process::id()));
        let _ = crate::store::remove_tree(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn scan_ignores_and_copies() {
        let src = tmp("src");
        fs::create_dir_all(src.join("sub/deep")).unwrap();
        fs::create_dir_all(src.join("target")).unwrap();
        fs::write(src.join("a.txt"), "a").unwrap();
        fs::write(src.join("sub/deep/b.sh"), "#!/bin/sh").unwrap();
        fs::set_permissions(src.join("sub/deep/b.sh"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::write(src.join("target/big"), "x").unwrap();
        fs::write(src.join("junk.log"), "x").unwrap();
        fs::write(src.join(".hidden"), "h").unwrap();
        fs::write(src.join(".ljignore"), "target/\n*.log\n").unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        let s = scan(&src, &[]).unwrap();
        let keys = s.keys();
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert_eq!(names, [".", ".hidden", ".ljignore", "a.txt", "link", "sub", "sub/deep", "sub/deep/b.sh"]);
        assert!(keys["link"].ends_with("link a.txt"));
        assert!(keys["sub/deep/b.sh"].starts_with("0751 "));

        let dest = tmp("dest");
        let d = dest.join("src");
        copy_into(&s, &src, &d).unwrap();
        assert_eq!(fs::read_to_string(d.join("sub/deep/b.sh")).unwrap(), "#!/bin/sh");
        assert_eq!(fs::metadata(d.join("sub/deep/b.sh")).unwrap().mode() & 0o7777, 0o751);
        assert_eq!(fs::read_link(d.join("link")).unwrap(), PathBuf::from("a.txt"));
        assert!(!d.join("target").exists());
        assert!(!d.join("junk.log").exists());

        // Same content → same keys; changed content → different key.
        assert_eq!(scan(&src, &[]).unwrap().keys(), keys);
        fs::write(src.join("a.txt"), "b").unwrap();
        assert_ne!(scan(&src, &[]).unwrap().keys()["a.txt"], keys["a.txt"]);
        // Excluded paths are skipped.
        let s = scan(&src, &[&src.join("sub")]).unwrap();
        assert!(!s.keys().contains_key("sub"));
        crate::store::remove_tree(&src).unwrap();
        crate::store::remove_tree(&dest).unwrap();
    }

    #[test]
    fn path_keys_are_unique() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(path_key(Path::new("a b/c")), "a b/c");
        let raw = Path::new(std::ffi::OsStr::from_bytes(b"x\xff"));
        assert_eq!(path_key(raw), "x\\xff");
        assert_eq!(path_key(Path::new("x\\xff")), "x\\x5cxff");
    }
}
