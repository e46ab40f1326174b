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

/// What a file's content hash is trusted by: the metadata git and BuildKit compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(md: &fs::Metadata) -> Stamp {
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: ns(md.mtime(), md.mtime_nsec()),
            ctime_ns: ns(md.ctime(), md.ctime_nsec()),
        }
    }
}

/// A file's timestamps closer than this to the scan that hashed it make its hash untrusted
/// (git's "racily clean" entries): the file may have changed again within the file system's
/// timestamp granularity (the kernel's coarse clock lags by up to a tick) after being read.
const RACY_NS: i128 = 2_000_000_000;

/// The content hashes of a source directory's files from the last scan, keyed by relative path
/// with the [`Stamp`] each was hashed at (`ROOT/.cache/copy/<sha256 of the source path>`).
/// A file whose stamp differs, or whose mtime or ctime was within [`RACY_NS`] of that scan's
/// start, is hashed again. One line per file: `dev ino size mtime ctime sha256 path-key`.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    /// When the scan that wrote it started (ns since the epoch).
    scanned_at: i128,
    entries: std::collections::HashMap<String, (Stamp, String)>,
    /// Whether this scan hashed anything (the cache is then rewritten).
    dirty: bool,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl HashCache {
    /// The cache of `src` under `dir` (missing or unreadable: empty).
    pub fn load(dir: &Path, src: &Path) -> HashCache {
        let path = dir.join(hex(&Sha256::digest(src.as_os_str().as_encoded_bytes())));
        let mut c = HashCache { path: Some(path.clone()), ..HashCache::default() };
        let Ok(text) = fs::read_to_string(&path) else { return c };
        let mut lines = text.lines();
        match lines.next().and_then(|l| l.strip_prefix("lj-copy-hashes v1 ")).and_then(|t| t.parse().ok()) {
            Some(t) => c.scanned_at = t,
            None => return c,
        }
        for l in lines {
            let mut f = l.splitn(7, ' ');
            let mut num = || f.next().and_then(|v| v.parse::<i128>().ok());
            let (Some(dev), Some(ino), Some(size), Some(m), Some(ct)) = (num(), num(), num(), num(), num())
            else {
                continue;
            };
            let (Some(hash), Some(key)) = (f.next(), f.next()) else { continue };
            let stamp =
                Stamp { dev: dev as u64, ino: ino as u64, size: size as u64, mtime_ns: m, ctime_ns: ct };
            c.entries.insert(key.to_string(), (stamp, hash.to_string()));
        }
        c
    }

    /// The trusted hash of `key` at `stamp`, if any.
    fn get(&self, key: &str, stamp: &Stamp) -> Option<&str> {
        let (st, h) = self.entries.get(key)?;
        let settled = stamp.mtime_ns.max(stamp.ctime_ns) + RACY_NS < self.scanned_at;
        (st == stamp && settled).then_some(h.as_str())
    }

    /// Writes the hashes of this scan (when anything was hashed or removed), atomically.
    fn save(&self, scanned_at: i128, files: &[(String, Stamp, String)]) {
        let Some(path) = &self.path else { return };
        if !self.dirty && files.len() == self.entries.len() {
            return;
        }
        let mut out = format!("lj-copy-hashes v1 {scanned_at}\n");
        for (key, st, h) in files {
            if key.contains('\n') {
                continue;
            }
            out.push_str(&format!(
                "{} {} {} {} {} {h} {key}\n",
                st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns
            ));
        }
        if let Some(dir) = path.parent() {
            let _ = crate::store::mkdir_private(dir);
        }
        // A cache that cannot be written only costs the next scan time.
        let _ = crate::store::Root::write_atomic(path, out.as_bytes());
    }
}

/// Scans `src`, honouring `.ljignore` files, skipping anything at or under `exclude` (the
/// store itself, if it lies inside the source).
pub fn scan(src: &Path, exclude: &[&Path]) -> Result<Scan, CopyError> {
    scan_cached(src, exclude, &mut HashCache::default())
}

/// [`scan`], taking content hashes from `cache` where the files' metadata says they are
/// unchanged, and updating it.
pub fn scan_cached(src: &Path, exclude: &[&Path], cache: &mut HashCache) -> Result<Scan, CopyError> {
    let started = now_ns();
    let mut files: Vec<(String, Stamp, String)> = Vec::new();
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
            let key = path_key(&rel);
            let stamp = Stamp::of(&md);
            let hash = match cache.get(&key, &stamp) {
                Some(h) => h.to_string(),
                None => {
                    cache.dirty = true;
                    sha256_file(path)?
                }
            };
            files.push((key, stamp, hash.clone()));
            Kind::File(hash)
        } else if ft.is_symlink() {
            Kind::Symlink(fs::read_link(path).map_err(io_err("cannot read link", path))?)
        } else {
            out.skipped.push(rel);
            continue;
        };
        out.entries.push(Entry { rel, kind, mode });
    }
    // Byte order keeps parents before children (all copy_into needs) and is cheaper than
    // comparing paths component by component; the inputs hash orders its own keys.
    out.entries.sort_unstable_by(|a, b| {
        a.rel.as_os_str().as_encoded_bytes().cmp(b.rel.as_os_str().as_encoded_bytes())
    });
    cache.save(started, &files);
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
    fn hash_cache_trusts_only_settled_unchanged_files() {
        let src = tmp("cache-src");
        let dir = tmp("cache-dir");
        fs::write(src.join("a"), "one").unwrap();
        // Fresh files are racy: hashed on every scan until they are older than RACY_NS.
        let mut c = HashCache::load(&dir, &src);
        let first = scan_cached(&src, &[], &mut c).unwrap().keys();
        let c2 = HashCache::load(&dir, &src);
        assert_eq!(c2.entries.len(), 1);
        let md = fs::metadata(src.join("a")).unwrap();
        assert!(c2.get("a", &Stamp::of(&md)).is_none(), "a file changed just now is trusted");
        // A settled entry is trusted: pretend the scan was long after the file's change.
        let mut c3 = HashCache::load(&dir, &src);
        c3.scanned_at += 10 * RACY_NS;
        assert!(c3.get("a", &Stamp::of(&md)).is_some());
        // Same size, new content (a rewrite changes mtime and ctime): hashed again.
        fs::write(src.join("a"), "two").unwrap();
        let again = scan_cached(&src, &[], &mut c3).unwrap().keys();
        assert_ne!(again["a"], first["a"], "a changed file kept its old hash");
        crate::store::remove_tree(&src).unwrap();
        crate::store::remove_tree(&dir).unwrap();
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
