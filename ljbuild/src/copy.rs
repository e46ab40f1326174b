//! `copy DEST`: the Jailfile's directory, minus what `.ljignore` files exclude (gitignore
//! syntax), hashed for the cache and copied into the build's upper directory.
//!
//! Regular files, directories and symbolic links are copied with their permission bits
//! (`mode & 07777`); symlinks are copied as links, never followed. Ownership is the builder's
//! (jail root). Other file types (sockets, FIFOs, devices) are skipped with a warning.
//!
//! A cache hit walks the source and compares metadata, nothing more, so the walk is built for
//! speed: directories are read by fd (`getdents64` into a reused buffer) and entries are
//! stat'ed relative to their directory's fd (`fstatat`: no full-path lookup per file), by a
//! few threads sharing a stack of directories; paths live in one buffer per thread; the content
//! hashes of the last scan come from a binary file read in one go and matched by a merge over
//! the sorted entries (no map); the inputs hash is fed from the entries directly
//! ([`Scan::for_each_key`]), without building the `path → entry` map a cache miss explains.
//! Most paths are their own key, so sorting, merging and hashing compare and copy bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{CStr, OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};
use sha2::{Digest, Sha256};

use crate::resolve::hex;

/// Errors of `copy`.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
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
    /// A regular file with its sha256.
    File([u8; 32]),
    /// A symbolic link and its target.
    Symlink(PathBuf),
}

/// One scanned entry; its path is kept by the [`Scan`] ([`Scan::rel`]).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The path's place in the scan's path buffer.
    off: usize,
    len: usize,
    /// The path is UTF-8 without backslashes: its key is the path itself ([`path_key`]).
    plain: bool,
    /// What it is.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// The metadata a file's hash was taken at.
    stamp: Stamp,
}

/// The scanned source.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Every entry's relative path, one after the other.
    paths: Vec<u8>,
    /// Entries, sorted by key ([`path_key`] of the path, `.` for the source itself), so a
    /// parent comes before its children (the source itself aside: [`copy_into`] takes it first).
    entries: Vec<Entry>,
    /// Skipped special files.
    pub skipped: Vec<PathBuf>,
    /// Problems that did not stop the scan (an unreadable `.ljignore`, a bad pattern in one).
    pub warnings: Vec<String>,
    /// Files whose content was read (not taken from the cache).
    pub hashed: usize,
}

impl Scan {
    /// The entries, in key order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// An entry's path relative to the source directory (empty for the directory itself).
    pub fn rel(&self, e: &Entry) -> &Path {
        Path::new(OsStr::from_bytes(self.rel_bytes(e)))
    }

    fn rel_bytes(&self, e: &Entry) -> &[u8] {
        &self.paths[e.off..e.off + e.len]
    }

    /// An entry's key: `.` for the source itself, else [`path_key`] of its path (UTF-8).
    fn key(&self, e: &Entry) -> Cow<'_, [u8]> {
        key_of(self.rel_bytes(e), e.plain)
    }

    /// Calls `f(key, value)` for every entry in key order, as [`Scan::keys`] would list them
    /// (both UTF-8), without building the map.
    pub fn for_each_key(&self, mut f: impl FnMut(&[u8], &[u8])) {
        let mut value = Vec::with_capacity(80);
        for e in &self.entries {
            value.clear();
            push_value(&mut value, e);
            f(&self.key(e), &value);
        }
    }

    /// The entries as `path → "MODE HASH"` (`"MODE dir"`, `"MODE link TARGET"`) for the inputs
    /// hash.
    pub fn keys(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.for_each_key(|k, v| {
            out.insert(text(k), text(v));
        });
        out
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was scanned (no `copy`).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of regular files.
    pub fn files(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.kind, Kind::File(_))).count()
    }
}

/// `MODE dir`, `MODE HASH` or `MODE link TARGET`, the mode in four octal digits.
fn push_value(out: &mut Vec<u8>, e: &Entry) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Permission bits only (`mode & 0o7777`): four digits, as `{:04o}` writes them.
    out.extend((0..4).rev().map(|i| b'0' + ((e.mode >> (3 * i)) & 7) as u8));
    out.push(b' ');
    match &e.kind {
        Kind::Dir => out.extend_from_slice(b"dir"),
        Kind::File(h) => {
            for b in h {
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        Kind::Symlink(t) => {
            out.extend_from_slice(b"link ");
            out.extend_from_slice(path_key(t).as_bytes());
        }
    }
}

/// The key of a path: itself when `plain` (UTF-8 without backslashes), else escaped.
fn key_of(rel: &[u8], plain: bool) -> Cow<'_, [u8]> {
    if rel.is_empty() {
        Cow::Borrowed(b".")
    } else if plain {
        Cow::Borrowed(rel)
    } else {
        Cow::Owned(escape(rel).into_bytes())
    }
}

fn is_plain(rel: &[u8]) -> bool {
    !rel.contains(&b'\\') && std::str::from_utf8(rel).is_ok()
}

/// A path as a unique string: UTF-8 without backslashes as is; otherwise every non-printable
/// ASCII, non-ASCII and backslash byte as `\xNN`.
pub fn path_key(p: &Path) -> String {
    let b = p.as_os_str().as_encoded_bytes();
    match std::str::from_utf8(b) {
        Ok(s) if !s.contains('\\') => s.to_string(),
        _ => escape(b),
    }
}

fn escape(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() && c != b'\\' || c == b' ' {
                (c as char).to_string()
            } else {
                format!("\\x{c:02x}")
            }
        })
        .collect()
}

/// Sorts entries by key: by their first 16 key bytes as a number (no key holds a NUL, so the
/// zero padding of a short one sorts it first, as bytewise order does), then by the whole key.
fn sort_by_key(paths: &[u8], entries: &mut [Entry]) {
    entries.sort_by_cached_key(|e| {
        let k = key_of(&paths[e.off..e.off + e.len], e.plain);
        let mut head = [0u8; 16];
        let n = k.len().min(16);
        head[..n].copy_from_slice(&k[..n]);
        (u128::from_be_bytes(head), k)
    });
}

fn sha256_fd(fd: OwnedFd, buf: &mut [u8]) -> io::Result<[u8; 32]> {
    let mut f = File::from(fd);
    let mut h = Sha256::new();
    loop {
        match f.read(buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finalize().into())
}

/// What a file's content hash is trusted by: the metadata git and BuildKit compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
}

fn ns((s, n): (i64, u32)) -> i128 {
    s as i128 * 1_000_000_000 + n as i128
}

impl Stamp {
    fn of(st: &rustix::fs::Stat) -> Stamp {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        }
    }
}

/// A file's timestamps closer than this to the scan that hashed it make its hash untrusted
/// (git's "racily clean" entries): the file may have changed again within the file system's
/// timestamp granularity (the kernel's coarse clock lags by up to a tick) after being read.
const RACY_NS: i128 = 2_000_000_000;

/// The first bytes of a hash cache file.
const CACHE_MAGIC: &[u8] = b"lj-copy-hashes v2\n";
/// A record's size without its key: key length, dev, ino, size, mtime, ctime, sha256.
const RECORD_FIXED: usize = 4 + 8 + 8 + 8 + 12 + 12 + 32;

/// The content hashes of a source directory's files from the last scan, with the [`Stamp`]
/// each was hashed at (`ROOT/.cache/copy/<sha256 of the source path>`). A file whose stamp
/// differs, or whose mtime or ctime was within [`RACY_NS`] of that scan's start, is hashed
/// again.
///
/// Binary, little-endian: [`CACHE_MAGIC`], the scan's start (i128 ns since the epoch), then
/// one record per regular file in key order: key length (u32), key, dev, ino, size (u64 each),
/// mtime and ctime (i64 seconds and u32 ns each), sha256 (32 bytes). A file that does not parse is an empty
/// cache; records are matched to the scan by a merge over both sorted lists.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    /// When the scan that wrote it started (ns since the epoch).
    scanned_at: i128,
    /// The file as read; its records start at [`HashCache::HEADER`].
    data: Vec<u8>,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// One record of a [`HashCache`].
struct Record<'a> {
    key: &'a [u8],
    stamp: Stamp,
    hash: [u8; 32],
}

/// Reads the records of a [`HashCache`] in order; stops at the first malformed one.
struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        fn take<const N: usize>(b: &mut &[u8]) -> Option<[u8; N]> {
            let (head, tail) = b.split_first_chunk::<N>()?;
            *b = tail;
            Some(*head)
        }
        let mut b = self.rest;
        let len = u32::from_le_bytes(take::<4>(&mut b)?) as usize;
        if b.len() < len + RECORD_FIXED - 4 {
            self.rest = &[];
            return None;
        }
        let (key, mut b) = b.split_at(len);
        let stamp = Stamp {
            dev: u64::from_le_bytes(take(&mut b)?),
            ino: u64::from_le_bytes(take(&mut b)?),
            size: u64::from_le_bytes(take(&mut b)?),
            mtime: (i64::from_le_bytes(take(&mut b)?), u32::from_le_bytes(take(&mut b)?)),
            ctime: (i64::from_le_bytes(take(&mut b)?), u32::from_le_bytes(take(&mut b)?)),
        };
        let hash = take::<32>(&mut b)?;
        self.rest = b;
        Some(Record { key, stamp, hash })
    }
}

impl HashCache {
    /// The cache of `src` under `dir` (missing, unreadable or of another format: empty).
    pub fn load(dir: &Path, src: &Path) -> HashCache {
        let path = dir.join(hex(&Sha256::digest(src.as_os_str().as_encoded_bytes())));
        let mut c = HashCache { path: Some(path), ..HashCache::default() };
        let Ok(data) = fs::read(c.path.as_ref().expect("set above")) else { return c };
        let Some(rest) = data.strip_prefix(CACHE_MAGIC) else { return c };
        let Some((at, _)) = rest.split_first_chunk::<16>() else { return c };
        c.scanned_at = i128::from_le_bytes(*at);
        c.data = data;
        c
    }

    /// The size of the magic and the scan's start.
    const HEADER: usize = CACHE_MAGIC.len() + 16;

    fn records(&self) -> Records<'_> {
        Records { rest: self.data.get(Self::HEADER..).unwrap_or_default() }
    }

    /// Whether a hash taken at `cached` may stand for a file now at `now`.
    fn trusted(&self, cached: &Stamp, now: &Stamp) -> bool {
        let settled = ns(now.mtime).max(ns(now.ctime)) + RACY_NS < self.scanned_at;
        cached == now && settled
    }

    /// Writes the hashes of `scan` (started at `scanned_at`), atomically.
    fn save(&self, scanned_at: i128, scan: &Scan) {
        let Some(path) = &self.path else { return };
        let mut out = Vec::with_capacity(CACHE_MAGIC.len() + 16 + scan.entries.len() * (RECORD_FIXED + 24));
        out.extend_from_slice(CACHE_MAGIC);
        out.extend_from_slice(&scanned_at.to_le_bytes());
        for e in &scan.entries {
            let Kind::File(h) = &e.kind else { continue };
            let key = scan.key(e);
            let Ok(len) = u32::try_from(key.len()) else { continue };
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&key);
            let st = &e.stamp;
            out.extend_from_slice(&st.dev.to_le_bytes());
            out.extend_from_slice(&st.ino.to_le_bytes());
            out.extend_from_slice(&st.size.to_le_bytes());
            for (secs, nsec) in [st.mtime, st.ctime] {
                out.extend_from_slice(&secs.to_le_bytes());
                out.extend_from_slice(&nsec.to_le_bytes());
            }
            out.extend_from_slice(h);
        }
        if let Some(dir) = path.parent() {
            let _ = crate::store::mkdir_private(dir);
        }
        // A cache that cannot be written only costs the next scan time.
        let _ = crate::store::Root::write_atomic(path, &out);
    }
}

/// The `.ljignore` rules in force in a directory: its own file's, then its parents'.
struct Rules {
    matcher: Gitignore,
    /// The length of the directory's relative path with its `/` (0 for the source itself).
    base: usize,
    parent: Option<Arc<Rules>>,
}

/// Whether `rel` is ignored: the deepest `.ljignore` with a matching pattern decides (a `!`
/// pattern keeps it), as the `ignore` crate's walker decides for custom ignore files.
fn ignored(rules: Option<&Arc<Rules>>, rel: &[u8], is_dir: bool) -> bool {
    let mut r = rules;
    while let Some(ig) = r {
        match ig.matcher.matched(Path::new(OsStr::from_bytes(&rel[ig.base..])), is_dir) {
            Match::None => r = ig.parent.as_ref(),
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
        }
    }
    false
}

/// A directory waiting to be read.
struct Job {
    /// Relative path (empty for the source itself).
    rel: Vec<u8>,
    /// The rules of its parent directory.
    rules: Option<Arc<Rules>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Jobs being worked on.
    busy: usize,
    failed: Option<CopyError>,
}

/// What one walking thread found.
#[derive(Default)]
struct Part {
    paths: Vec<u8>,
    entries: Vec<Entry>,
    skipped: Vec<PathBuf>,
    warnings: Vec<String>,
}

/// Reads the directory `rel` (of `src`, open as `root`).
struct Walker<'a> {
    src: &'a Path,
    root: BorrowedFd<'a>,
    /// Relative paths not to enter or copy.
    exclude: Vec<Vec<u8>>,
    queue: Mutex<Queue>,
    cv: Condvar,
}

/// Per-thread buffers, reused from directory to directory.
struct Bufs {
    dirents: Vec<u8>,
    names: Vec<u8>,
    list: Vec<(usize, usize, FileType)>,
}

impl Walker<'_> {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes directories off the shared stack until none is left and none is being read, then
    /// sorts what it found (each thread its own part, merged at the end).
    fn work(&self) -> Part {
        let mut part = self.walk();
        sort_by_key(&part.paths, &mut part.entries);
        part
    }

    fn walk(&self) -> Part {
        let mut part = Part::default();
        let mut bufs = Bufs { dirents: Vec::with_capacity(32 * 1024), names: Vec::new(), list: Vec::new() };
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if q.failed.is_some() {
                        return part;
                    }
                    if let Some(j) = q.jobs.pop() {
                        q.busy += 1;
                        break j;
                    }
                    if q.busy == 0 {
                        return part;
                    }
                    q = self.cv.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let mut found = Vec::new();
            let res = self.dir(job, &mut part, &mut bufs, &mut found);
            let mut q = self.lock();
            q.busy -= 1;
            // Waiters wait for work, for the end, or for a failure: wake them only then.
            let wake = !found.is_empty() || q.busy == 0 || res.is_err();
            match res {
                Ok(()) => q.jobs.append(&mut found),
                Err(e) => {
                    q.failed.get_or_insert(e);
                }
            }
            drop(q);
            if wake {
                self.cv.notify_all();
            }
        }
    }

    fn full(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.src.to_path_buf()
        } else {
            self.src.join(OsStr::from_bytes(rel))
        }
    }

    /// Reads one directory: its entries go to `part`, its subdirectories to `found`.
    fn dir(&self, job: Job, part: &mut Part, bufs: &mut Bufs, found: &mut Vec<Job>) -> Result<(), CopyError> {
        let own;
        let fd = if job.rel.is_empty() {
            self.root
        } else {
            own = rustix::fs::openat(
                self.root,
                OsStr::from_bytes(&job.rel),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("cannot open", &self.full(&job.rel))(e.into()))?;
            own.as_fd()
        };
        bufs.names.clear();
        bufs.list.clear();
        let mut has_rules = false;
        {
            let mut rd = RawDir::new(fd, bufs.dirents.spare_capacity_mut());
            while let Some(e) = rd.next() {
                let e = e.map_err(|e| io_err("cannot read", &self.full(&job.rel))(e.into()))?;
                let name = e.file_name().to_bytes_with_nul();
                if name == b".\0" || name == b"..\0" {
                    continue;
                }
                has_rules |= name == b".ljignore\0";
                bufs.list.push((bufs.names.len(), name.len(), e.file_type()));
                bufs.names.extend_from_slice(name);
            }
        }
        let base = if job.rel.is_empty() { 0 } else { job.rel.len() + 1 };
        let rules = if has_rules { self.rules(fd, &job, base, part)? } else { job.rules.clone() };
        for &(at, len, dtype) in &bufs.list {
            let cname = CStr::from_bytes_with_nul(&bufs.names[at..at + len]).expect("one NUL, at the end");
            let off = part.paths.len();
            if !job.rel.is_empty() {
                part.paths.extend_from_slice(&job.rel);
                part.paths.push(b'/');
            }
            part.paths.extend_from_slice(cname.to_bytes());
            let rel = &part.paths[off..];
            let mut st = None;
            let is_dir = match dtype {
                FileType::Unknown => {
                    let s = self.stat(fd, cname, rel)?;
                    let d = FileType::from_raw_mode(s.st_mode) == FileType::Directory;
                    st = Some(s);
                    d
                }
                t => t == FileType::Directory,
            };
            if self.exclude.iter().any(|x| x.as_slice() == rel) || ignored(rules.as_ref(), rel, is_dir) {
                part.paths.truncate(off);
                continue;
            }
            let st = match st {
                Some(s) => s,
                None => self.stat(fd, cname, rel)?,
            };
            let plain = is_plain(rel);
            let mode = st.st_mode & 0o7777;
            let kind = match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    found.push(Job { rel: rel.to_vec(), rules: rules.clone() });
                    Kind::Dir
                }
                FileType::RegularFile => Kind::File([0; 32]),
                FileType::Symlink => {
                    let t = rustix::fs::readlinkat(fd, cname, Vec::new())
                        .map_err(|e| io_err("cannot read link", &self.full(rel))(e.into()))?;
                    Kind::Symlink(PathBuf::from(OsString::from_vec(t.into_bytes())))
                }
                _ => {
                    part.skipped.push(PathBuf::from(OsStr::from_bytes(rel)));
                    part.paths.truncate(off);
                    continue;
                }
            };
            let len = part.paths.len() - off;
            part.entries.push(Entry { off, len, plain, kind, mode, stamp: Stamp::of(&st) });
        }
        Ok(())
    }

    fn stat(&self, fd: BorrowedFd<'_>, name: &CStr, rel: &[u8]) -> Result<rustix::fs::Stat, CopyError> {
        rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("cannot stat", &self.full(rel))(e.into()))
    }

    /// The rules of a directory that has a `.ljignore`: its patterns over its parent's. As with
    /// the `ignore` crate, an unreadable file or a bad pattern is left out; here with a warning.
    fn rules(
        &self,
        fd: BorrowedFd<'_>,
        job: &Job,
        base: usize,
        part: &mut Part,
    ) -> Result<Option<Arc<Rules>>, CopyError> {
        let mut rel = job.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(b".ljignore");
        let path = self.full(&rel);
        // Non-blocking: a FIFO named .ljignore reads as empty instead of waiting for a writer.
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let text = rustix::fs::openat(fd, c".ljignore", flags, Mode::empty())
            .map_err(io::Error::from)
            .and_then(|fd| {
                let mut v = Vec::new();
                File::from(fd).read_to_end(&mut v).map(|_| v)
            });
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                part.warnings.push(format!(
                    "copy: cannot read {}: {e} (its patterns are not applied)",
                    path.display()
                ));
                return Ok(job.rules.clone());
            }
        };
        let mut b = GitignoreBuilder::new(".");
        // As BufRead::lines splits, and `ignore` reads gitignore files: LF or CRLF ends, no
        // empty last line, a UTF-8 byte order mark dropped, lines that are not UTF-8 left out.
        let mut lines: Vec<&[u8]> = text.split(|&c| c == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        for (i, line) in lines.into_iter().enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Ok(mut line) = std::str::from_utf8(line) else {
                part.warnings.push(format!("copy: {} line {}: not UTF-8, left out", path.display(), i + 1));
                continue;
            };
            if i == 0 {
                line = line.trim_start_matches('\u{feff}');
            }
            if let Err(e) = b.add_line(Some(path.clone()), line) {
                part.warnings.push(format!("copy: {} line {}: {e}, left out", path.display(), i + 1));
            }
        }
        match b.build() {
            Ok(m) if m.is_empty() => Ok(job.rules.clone()),
            Ok(matcher) => Ok(Some(Arc::new(Rules { matcher, base, parent: job.rules.clone() }))),
            Err(e) => {
                part.warnings.push(format!("copy: {}: {e} (its patterns are not applied)", path.display()));
                Ok(job.rules.clone())
            }
        }
    }
}

/// Threads for a walk or for hashing: the CPUs this process may use, at most 4.
fn threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(4))
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
    let root = rustix::fs::open(src, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err("cannot open", src)(e.into()))?;
    let root_st = rustix::fs::fstat(&root).map_err(|e| io_err("cannot stat", src)(e.into()))?;
    let walker = Walker {
        src,
        root: root.as_fd(),
        exclude: exclude
            .iter()
            .filter_map(|x| x.strip_prefix(src).ok())
            .filter(|r| !r.as_os_str().is_empty())
            .map(|r| r.as_os_str().as_bytes().to_vec())
            .collect(),
        queue: Mutex::new(Queue { jobs: vec![Job { rel: Vec::new(), rules: None }], ..Queue::default() }),
        cv: Condvar::new(),
    };
    let parts: Vec<Part> = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads()).map(|_| s.spawn(|| walker.work())).collect();
        let mut parts = vec![walker.work()];
        parts.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))));
        parts
    });
    if let Some(e) = walker.queue.into_inner().unwrap_or_else(|e| e.into_inner()).failed {
        return Err(e);
    }
    let mut out = Scan::default();
    let top = Entry {
        off: 0,
        len: 0,
        plain: true,
        kind: Kind::Dir,
        mode: root_st.st_mode & 0o7777,
        stamp: Stamp::default(),
    };
    // Each part is sorted: merge them (and the source itself) into one list in key order.
    let mut runs = vec![vec![top].into_iter().peekable()];
    for mut p in parts {
        let shift = out.paths.len();
        out.paths.append(&mut p.paths);
        p.entries.iter_mut().for_each(|e| e.off += shift);
        runs.push(p.entries.into_iter().peekable());
        out.skipped.append(&mut p.skipped);
        out.warnings.append(&mut p.warnings);
    }
    out.skipped.sort_unstable();
    out.entries.reserve(runs.iter().map(|r| r.len()).sum());
    loop {
        let mut best: Option<(usize, Cow<'_, [u8]>)> = None;
        for (i, r) in runs.iter_mut().enumerate() {
            let Some(e) = r.peek() else { continue };
            let k = key_of(&out.paths[e.off..e.off + e.len], e.plain);
            if best.as_ref().is_none_or(|(_, b)| k < *b) {
                best = Some((i, k));
            }
        }
        let Some((i, _)) = best else { break };
        out.entries.extend(runs[i].next());
    }
    // Hashes from the cache, by a merge of its records (in key order) with the entries.
    let mut todo = Vec::new();
    // Records of files that are gone: the cache is written again without them.
    let mut unmatched_records = false;
    {
        let mut records = cache.records().peekable();
        for (i, e) in out.entries.iter_mut().enumerate() {
            let Kind::File(hash) = &mut e.kind else { continue };
            let key = key_of(&out.paths[e.off..e.off + e.len], e.plain);
            while records.next_if(|r| r.key < &key[..]).is_some() {
                unmatched_records = true;
            }
            match records.next_if(|r| r.key == &key[..]) {
                Some(r) if cache.trusted(&r.stamp, &e.stamp) => *hash = r.hash,
                _ => todo.push(i),
            }
        }
        unmatched_records |= records.next().is_some();
    }
    hash_files(root.as_fd(), src, &mut out, &todo)?;
    out.hashed = todo.len();
    if !todo.is_empty() || unmatched_records {
        cache.save(started, &out);
    }
    Ok(out)
}

/// What a hashing thread did: (index into the entries, sha256) pairs.
type Hashed = Result<Vec<(usize, [u8; 32])>, CopyError>;

/// Hashes the files at `todo` (indices into `scan.entries`), on a few threads when there are
/// many.
fn hash_files(root: BorrowedFd<'_>, src: &Path, scan: &mut Scan, todo: &[usize]) -> Result<(), CopyError> {
    if todo.is_empty() {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let scan_ref = &*scan;
    let work = || -> Hashed {
        let mut buf = vec![0u8; 256 * 1024];
        let mut done = Vec::new();
        loop {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = todo.get(n) else { return Ok(done) };
            let rel = scan_ref.rel(&scan_ref.entries[i]);
            let path = || src.join(rel);
            let fd = rustix::fs::openat(
                root,
                rel,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err("cannot open", &path())(e.into()))?;
            let h = sha256_fd(fd, &mut buf).map_err(|e| io_err("cannot read", &path())(e))?;
            done.push((i, h));
        }
    };
    let n = if todo.len() < 16 { 1 } else { threads() };
    let results: Vec<Hashed> = std::thread::scope(|s| {
        let others: Vec<_> = (1..n).map(|_| s.spawn(work)).collect();
        let mut all = vec![work()];
        all.extend(others.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))));
        all
    });
    for r in results {
        for (i, h) in r? {
            scan.entries[i].kind = Kind::File(h);
        }
    }
    Ok(())
}

/// Copies the scanned entries from `src` into `dest` (which may exist). Directory modes are set
/// last, so read-only directories can be filled.
pub fn copy_into(scan: &Scan, src: &Path, dest: &Path) -> Result<(), CopyError> {
    let mut dirs = Vec::new();
    // In path order: parents before children, the source itself first. (Key order is not that:
    // `.` need not sort first, and an escaped key can sort before its parent's.)
    let mut order: Vec<&Entry> = scan.entries.iter().collect();
    order.sort_unstable_by(|a, b| scan.rel_bytes(a).cmp(scan.rel_bytes(b)));
    for e in order {
        let rel = scan.rel(e);
        let from = src.join(rel);
        let to = if rel.as_os_str().is_empty() { dest.to_path_buf() } else { dest.join(rel) };
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
    use std::os::unix::fs::symlink;
    use std::time::{Duration, UNIX_EPOCH};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ljbuild-copy-{name}-{}", std::process::id()));
        let _ = crate::store::remove_tree(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(p: &Path, text: &str) {
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(p, text).unwrap();
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Sets a file's mtime to a fixed time, `secs` after the epoch.
    fn set_mtime(p: &Path, secs: u64) {
        let f = File::options().write(true).open(p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
    }

    /// The inputs hash of a scan (as a build computes it).
    fn digest(s: &Scan) -> String {
        crate::inputs::digest_scan(&crate::store::Inputs::default(), s)
    }

    #[test]
    fn scan_ignores_and_copies() {
        let src = tmp("src");
        fs::create_dir_all(src.join("sub/deep")).unwrap();
        fs::create_dir_all(src.join("target")).unwrap();
        fs::write(src.join("a.txt"), "a").unwrap();
        fs::write(src.join("sub/deep/b.sh"), "#!/bin/sh").unwrap();
        chmod(&src.join("sub/deep/b.sh"), 0o751);
        fs::write(src.join("target/big"), "x").unwrap();
        fs::write(src.join("junk.log"), "x").unwrap();
        fs::write(src.join(".hidden"), "h").unwrap();
        fs::write(src.join(".ljignore"), "target/\n*.log\n").unwrap();
        symlink("a.txt", src.join("link")).unwrap();
        let s = scan(&src, &[]).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let keys = s.keys();
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert_eq!(names, [".", ".hidden", ".ljignore", "a.txt", "link", "sub", "sub/deep", "sub/deep/b.sh"]);
        assert!(keys["link"].ends_with("link a.txt"));
        assert!(keys["sub/deep/b.sh"].starts_with("0751 "));
        assert_eq!(
            keys["a.txt"],
            format!("0644 {}", hex(&Sha256::digest(b"a"))),
            "a file's entry is its mode and sha256"
        );

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
        assert!(s.keys().contains_key("a.txt"));
        crate::store::remove_tree(&src).unwrap();
        crate::store::remove_tree(&dest).unwrap();
    }

    use std::os::unix::fs::MetadataExt;

    /// The walk keeps what the `ignore` crate's walker (which ljbuild used before) keeps with
    /// the same settings: nested `.ljignore` files, the deepest deciding, `!` patterns, anchored
    /// and directory-only patterns, CRLF and a byte order mark; many directories, so that
    /// several threads share them.
    #[test]
    fn walk_matches_the_ignore_crate() {
        let src = tmp("ig");
        write(
            &src.join(".ljignore"),
            "\u{feff}*.log\n/build/\n!keep.log\ndocs/*.md\n!docs/README.md\nsub/deep/\n# comment\n\\#lit\ntrail   \n",
        );
        for f in [
            "a.log",
            "keep.log",
            "build/x",
            "src/build/y",
            "docs/a.md",
            "docs/README.md",
            "docs/b.txt",
            "sub/deep/z",
            "sub/flat",
            "x/sub/deep/w",
            "#lit",
            "trail",
            "src/y.log",
            "src/gen/g",
            "src/inner/a.rs",
            "src/inner/b.txt",
            "src/inner/more/c.rs",
            "c/t.tmp",
            "c/u.txt",
        ] {
            write(&src.join(f), f);
        }
        write(&src.join("src/.ljignore"), "!*.log\ngen/\n");
        write(&src.join("src/inner/.ljignore"), "*\n!*.rs\n!.ljignore\n");
        write(&src.join("c/.ljignore"), "*.tmp\r\n");
        for i in 0..40 {
            write(&src.join(format!("many/d{i}/e{}/f.txt", i % 3)), "x");
            write(&src.join(format!("many/d{i}/g.log")), "x");
        }
        let mut ours: Vec<String> =
            scan(&src, &[]).unwrap().keys().into_keys().filter(|k| k != ".").collect();
        ours.sort();
        let mut theirs: Vec<String> = ignore::WalkBuilder::new(&src)
            .standard_filters(false)
            .hidden(false)
            .parents(false)
            .follow_links(false)
            .add_custom_ignore_filename(".ljignore")
            .build()
            .map(|e| e.unwrap().path().strip_prefix(&src).unwrap().to_str().unwrap().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        theirs.sort();
        assert_eq!(ours, theirs);
        for kept in [
            "keep.log",
            "src/build/y",
            "docs/README.md",
            "sub/flat",
            "x/sub/deep/w",
            "src/y.log",
            "src/inner/a.rs",
        ] {
            assert!(ours.iter().any(|p| p == kept), "{kept} left out: {ours:?}");
        }
        for left in [
            "a.log",
            "build",
            "docs/a.md",
            "sub/deep",
            "#lit",
            "trail",
            "src/gen",
            "src/inner/b.txt",
            "src/inner/more",
            "c/t.tmp",
        ] {
            assert!(!ours.iter().any(|p| p == left), "{left} kept: {ours:?}");
        }
        crate::store::remove_tree(&src).unwrap();
    }

    /// A bad pattern or an unreadable `.ljignore` is reported, and the rest still applies.
    #[test]
    fn bad_ljignore_is_a_warning() {
        let src = tmp("badig");
        write(&src.join(".ljignore"), "a{b\n*.log\n");
        write(&src.join("x.log"), "x");
        write(&src.join("sub/y"), "y");
        symlink("nowhere", src.join("sub/.ljignore")).unwrap();
        let s = scan(&src, &[]).unwrap();
        let keys = s.keys();
        assert!(!keys.contains_key("x.log") && keys.contains_key("sub/y"), "{keys:?}");
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(
            s.warnings.iter().any(|w| w.contains(".ljignore line 1: ") && w.ends_with("left out")),
            "{:?}",
            s.warnings
        );
        assert!(s.warnings.iter().any(|w| w.contains("sub/.ljignore: No such file")), "{:?}", s.warnings);
        crate::store::remove_tree(&src).unwrap();
    }

    /// Entry keys stream in the map's order, so the inputs hash is the one of the map, for names
    /// that sort before `.`, names that are not UTF-8 or hold a backslash, and `a`, `a-b`, `a/b`
    /// (a parent and a sibling that sorts between it and its children).
    #[test]
    fn streamed_keys_are_the_map() {
        use std::os::unix::ffi::OsStrExt;
        let src = tmp("odd");
        for f in ["-x", "a/b", "a-b", "a.c", "sp ace", "back\\slash", "z/y/x"] {
            write(&src.join(f), f);
        }
        // A key escaped as a whole (`\xc3\xa9/\xff`) sorts before its parent's (`é`).
        fs::create_dir(src.join("é")).unwrap();
        fs::write(src.join("é").join(OsStr::from_bytes(b"\xff")), "deep").unwrap();
        let raw = OsStr::from_bytes(b"n\xff");
        fs::write(src.join(raw), "raw").unwrap();
        symlink(OsStr::from_bytes(b"t\xfe"), src.join("l")).unwrap();
        let s = scan(&src, &[]).unwrap();
        let map = s.keys();
        let mut streamed = Vec::new();
        s.for_each_key(|k, v| {
            streamed.push((String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
        });
        assert_eq!(streamed, map.clone().into_iter().collect::<Vec<_>>());
        assert!(map.contains_key("n\\xff") && map.contains_key("back\\x5cslash"), "{map:?}");
        assert!(map.contains_key("\\xc3\\xa9/\\xff"), "{map:?}");
        assert!(map["l"].ends_with("link t\\xfe"));
        let i = crate::store::Inputs { copy: map, ..Default::default() };
        assert_eq!(digest(&s), crate::inputs::digest(&i));
        // Copying creates parents before children.
        let dest = tmp("odd-dest");
        copy_into(&s, &src, &dest.join("d")).unwrap();
        assert_eq!(fs::read_to_string(dest.join("d/z/y/x")).unwrap(), "z/y/x");
        assert_eq!(fs::read_to_string(dest.join("d").join(raw)).unwrap(), "raw");
        assert_eq!(fs::read_to_string(dest.join("d/é").join(OsStr::from_bytes(b"\xff"))).unwrap(), "deep");
        crate::store::remove_tree(&src).unwrap();
        crate::store::remove_tree(&dest).unwrap();
    }

    /// A cache that trusts every settled record (its scan pretended to be far in the future).
    fn settled(dir: &Path, src: &Path) -> HashCache {
        let mut c = HashCache::load(dir, src);
        c.scanned_at += 1000 * RACY_NS;
        c
    }

    /// The source every case of `every_change_changes_the_key` starts from, with fixed mtimes.
    fn base_tree(src: &Path) {
        let _ = crate::store::remove_tree(src);
        for (f, text) in [("a", "one"), ("b", "two"), ("d/c", "three"), ("d/e/f", "four"), ("g", "one")] {
            write(&src.join(f), text);
            set_mtime(&src.join(f), 1_000_000);
        }
        symlink("a", src.join("l")).unwrap();
    }

    /// With the metadata cache trusting everything it may, each kind of change still changes
    /// the inputs hash: content (same size), a file's or a directory's mode, a file added,
    /// removed, renamed, moved, renamed over another, a symlink's target, an empty directory,
    /// a file turned into a link, an `.ljignore` that now keeps a file.
    #[test]
    fn every_change_changes_the_key() {
        let src = tmp("chg");
        let dir = tmp("chg-cache");
        type Change = fn(&Path);
        let cases: &[(&str, Change)] = &[
            ("content", |s| {
                fs::write(s.join("a"), "uno").unwrap();
                set_mtime(&s.join("a"), 1_000_001);
            }),
            ("content, mtime kept", |s| {
                // The inode changes (a new file renamed over): the stamp tells.
                fs::write(s.join("a.new"), "uno").unwrap();
                set_mtime(&s.join("a.new"), 1_000_000);
                fs::rename(s.join("a.new"), s.join("a")).unwrap();
            }),
            ("file mode", |s| chmod(&s.join("d/c"), 0o755)),
            ("dir mode", |s| chmod(&s.join("d/e"), 0o700)),
            ("added", |s| write(&s.join("d/new"), "")),
            ("removed", |s| fs::remove_file(s.join("d/e/f")).unwrap()),
            ("renamed", |s| fs::rename(s.join("b"), s.join("b2")).unwrap()),
            ("moved", |s| fs::rename(s.join("b"), s.join("d/b")).unwrap()),
            ("swapped", |s| {
                fs::rename(s.join("a"), s.join("tmp")).unwrap();
                fs::rename(s.join("b"), s.join("a")).unwrap();
                fs::rename(s.join("tmp"), s.join("b")).unwrap();
            }),
            ("link target", |s| {
                fs::remove_file(s.join("l")).unwrap();
                symlink("b", s.join("l")).unwrap();
            }),
            ("empty dir", |s| fs::create_dir(s.join("d/empty")).unwrap()),
            ("file to link", |s| {
                fs::remove_file(s.join("g")).unwrap();
                symlink("a", s.join("g")).unwrap();
            }),
        ];
        base_tree(&src);
        let base = digest(&scan(&src, &[]).unwrap());
        for (what, change) in cases {
            base_tree(&src);
            let first = scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap();
            assert_eq!(digest(&first), base, "{what}: the base tree");
            let again = scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap();
            assert_eq!((again.hashed, digest(&again)), (0, base.clone()), "{what}: a settled cache is used");
            change(&src);
            let changed = scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap();
            assert_ne!(digest(&changed), base, "{what}: the key did not change");
            assert_eq!(digest(&changed), digest(&scan(&src, &[]).unwrap()), "{what}: cached != fresh");
        }
        // An .ljignore that keeps more.
        base_tree(&src);
        write(&src.join(".ljignore"), "b\n");
        let before = digest(&scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap());
        fs::write(src.join(".ljignore"), "c\n").unwrap();
        assert_ne!(digest(&scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap()), before);
        crate::store::remove_tree(&src).unwrap();
        crate::store::remove_tree(&dir).unwrap();
    }

    #[test]
    fn hash_cache_trusts_only_settled_unchanged_files() {
        let src = tmp("cache-src");
        let dir = tmp("cache-dir");
        fs::write(src.join("a"), "one").unwrap();
        // Fresh files are racy: hashed on every scan until they are older than RACY_NS.
        let first = scan_cached(&src, &[], &mut HashCache::load(&dir, &src)).unwrap();
        assert_eq!(first.hashed, 1);
        let c = HashCache::load(&dir, &src);
        assert_eq!(c.records().count(), 1);
        let r = c.records().next().unwrap();
        assert_eq!(r.key, b"a");
        let st = rustix::fs::stat(src.join("a")).unwrap();
        assert_eq!(r.stamp, Stamp::of(&st));
        assert!(!c.trusted(&r.stamp, &Stamp::of(&st)), "a file changed just now is trusted");
        let again = scan_cached(&src, &[], &mut HashCache::load(&dir, &src)).unwrap();
        assert_eq!(again.hashed, 1, "a racy file was not hashed again");
        // A settled entry is trusted: pretend the scan was long after the file's change.
        let c3 = settled(&dir, &src);
        assert!(c3.trusted(&r.stamp, &Stamp::of(&st)));
        let mut other = Stamp::of(&st);
        other.ctime.1 += 1;
        assert!(!c3.trusted(&r.stamp, &other), "a new ctime is trusted");
        // Same size, new content (a rewrite changes mtime and ctime): hashed again.
        fs::write(src.join("a"), "two").unwrap();
        set_mtime(&src.join("a"), 1_000_000);
        let changed = scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap();
        assert_eq!(changed.hashed, 1);
        assert_ne!(changed.keys()["a"], first.keys()["a"], "a changed file kept its old hash");
        crate::store::remove_tree(&src).unwrap();
        crate::store::remove_tree(&dir).unwrap();
    }

    /// A cache file cut short or of another format costs time, never a wrong hash; a record
    /// for a file that is gone makes the cache be written again.
    #[test]
    fn damaged_cache_costs_only_time() {
        let src = tmp("dmg");
        let dir = tmp("dmg-cache");
        base_tree(&src);
        let base = digest(&scan(&src, &[]).unwrap());
        scan_cached(&src, &[], &mut HashCache::load(&dir, &src)).unwrap();
        let file = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        let whole = fs::read(&file).unwrap();
        assert!(whole.starts_with(CACHE_MAGIC));
        for cut in [0, 5, CACHE_MAGIC.len() + 3, CACHE_MAGIC.len() + 16, whole.len() / 2, whole.len() - 1] {
            fs::write(&file, &whole[..cut]).unwrap();
            let s = scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap();
            assert_eq!(digest(&s), base, "cache cut at {cut}");
            assert!(s.hashed > 0, "cache cut at {cut}: nothing hashed");
            fs::write(&file, &whole).unwrap();
        }
        fs::write(&file, "lj-copy-hashes v1 0\n1 2 3 4 5 x a\n").unwrap();
        assert_eq!(digest(&scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap()), base);
        // Rewritten whole by the last scan; a removed file's record is dropped by the next one.
        assert_eq!(settled(&dir, &src).records().count(), 5);
        fs::remove_file(src.join("g")).unwrap();
        let s = scan_cached(&src, &[], &mut settled(&dir, &src)).unwrap();
        assert_eq!(s.hashed, 0);
        assert_eq!(settled(&dir, &src).records().count(), 4);
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
