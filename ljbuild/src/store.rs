//! The layout of `LIGHTJAIL_ROOT`, overlay metadata and locks.
//!
//! ```text
//! ROOT/                         0700 (a shared root: 0755, see `Root::share`)
//!   worlds/NAME/                a world: a plain directory (or a symlink to one)
//!   worlds/default -> NAME      the default world (`ljbuild world use NAME`)
//!   NAMESPACE/NAME/VERSION/     a published overlay (immutable):
//!     root/                       the upper directory of its build (a layer for ljspawn)
//!     meta.json                   world, parents, inputs hash, build time, log
//!     build.log                   the build script's output
//!   store/sha256/HEX/           a layer, stored once by its content digest
//!                               (`oci::layer::content_digest`); `worlds/NAME` and
//!                               `NAMESPACE/NAME/VERSION/root` are then symlinks to it
//!   .tmp/KEY[%SUFFIX]           staging areas, one per lock key
//!   .locks/KEY.lock             flock(2) locks; a staging area whose lock is free is stale
//!   .logs/                      logs of failed builds
//! ```
//!
//! Lock keys: `o%NAMESPACE%NAME%VERSION` for overlays, `w%NAME` for worlds (`%` cannot appear in
//! names or versions); `store`, taken shared while a layer is put into the store and referenced,
//! exclusively by `gc` while it removes unreferenced layers.
//!
//! Both layouts are read: a layer directory (`root/`, a world) that is a plain directory is an
//! overlay or world made before the store existed, and keeps working as it is (nothing is
//! migrated); every build, import and pull since puts its layer in the store.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

/// The default root when neither `--root` nor `LIGHTJAIL_ROOT` says otherwise.
pub const DEFAULT_ROOT: &str = "/usr/local/lj";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A `meta.json` cannot be read.
    #[error("bad metadata {}: {reason}", .path.display())]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A version exists already with other inputs.
    #[error("{name}@{version} exists with other inputs (published overlays are immutable; use another version, or --force to replace it)")]
    Immutable {
        /// The overlay.
        name: OverlayName,
        /// Its version.
        version: String,
    },
    /// An overlay that others depend on.
    #[error("{name}@{version} is the parent of {} (remove those first, or use --force)", .children.join(", "))]
    HasChildren {
        /// The overlay.
        name: OverlayName,
        /// Its version.
        version: String,
        /// `ns/name@version` of each child.
        children: Vec<String>,
    },
    /// Something exists already.
    #[error("{0}")]
    Exists(String),
    /// Something others depend on.
    #[error("{0}")]
    InUse(String),
    /// No root given and no home directory to put the default in.
    #[error("no lightjail root: set --root or LIGHTJAIL_ROOT (HOME and XDG_DATA_HOME are unset, so there is no default ~/.local/share/lightjail)")]
    NoRoot,
    /// The root cannot be created or used.
    #[error("cannot use the lightjail root {} ({source_of}): {reason}", .path.display())]
    Unusable {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        source_of: RootSource,
        /// What failed.
        reason: Box<StoreError>,
    },
}

impl StoreError {
    /// An [`StoreError::Io`] constructor for `map_err`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { what, path, source }
    }
}

/// `NAMESPACE/NAME` of an overlay.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OverlayName {
    /// The namespace (first directory level).
    pub namespace: String,
    /// The name (second directory level).
    pub name: String,
}

impl fmt::Display for OverlayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl OverlayName {
    /// Parses and checks `NAMESPACE/NAME` given outside a Jailfile (the Jailfile rules, plus the
    /// names the store reserves).
    pub fn parse(s: &str) -> Result<OverlayName, String> {
        let n = jailfile_grammar::parse_name(s).map_err(|e| e.to_string())?;
        let n = OverlayName { namespace: n.namespace, name: n.name };
        n.check_reserved()?;
        Ok(n)
    }

    /// Rejects names that would collide with the store's own directories (`worlds/...`, a
    /// namespace starting with `.`).
    pub fn check_reserved(&self) -> Result<(), String> {
        if self.namespace.contains('/') {
            return Err(format!(
                "name '{self}' has more than one '/' (ljbuild stores overlays as NAMESPACE/NAME/VERSION)"
            ));
        }
        if self.namespace == "worlds" || self.namespace.starts_with('.') {
            return Err(format!(
                "name '{self}' is reserved (the namespace may not be 'worlds' or start with '.')"
            ));
        }
        Ok(())
    }
}

/// A world a build stands on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldRef {
    /// Its name under `worlds/`.
    pub name: String,
    /// Its identity (see `resolve::world_identity`).
    pub identity: String,
    /// The root it lives in, when not the overlay's own (a root of `LIGHTJAIL_PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// A parent overlay in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// `NAMESPACE/NAME`.
    pub name: OverlayName,
    /// Its version.
    pub version: String,
    /// Its inputs hash.
    pub inputs_hash: String,
    /// The root it lives in, when not the overlay's own (a root of `LIGHTJAIL_PATH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Its `built_at_ns`, kept for a parent from another root: a rebuild there (same inputs,
    /// new layer) changes the key of what is built on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at_ns: Option<u64>,
    /// Its layer's content digest, when it has one: what a child keys on (a parent rebuilt
    /// into the same bytes does not invalidate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// What went into the inputs hash, kept to explain a cache miss.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// World identity.
    pub world: String,
    /// `ns/name@version` of the parent, if any.
    pub parent: Option<String>,
    /// The parent's inputs hash.
    pub parent_hash: Option<String>,
    /// The canonical Jailfile header (without name, version, world and from).
    pub header: String,
    /// The script, line by line hashed (sha256 hex of each line).
    pub script_lines: Vec<String>,
    /// Copied entries: relative path → `MODE HASH` (files), `MODE link TARGET`, `MODE dir`.
    pub copy: std::collections::BTreeMap<String, String>,
    /// The content digests of every parent's layer, oldest first, when all of them have one:
    /// then these, not the parent's name, version and inputs hash, are the input (early cutoff).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_layers: Vec<String>,
}

/// `meta.json` of a published overlay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Format of this file (1).
    pub format: u32,
    /// `NAMESPACE/NAME`.
    pub name: OverlayName,
    /// The version.
    pub version: String,
    /// sha256 (hex) of the build's inputs.
    pub inputs_hash: String,
    /// The world at the bottom of the chain.
    pub world: WorldRef,
    /// The parent chain, oldest ancestor first, the direct parent last.
    pub parents: Vec<ParentRef>,
    /// When the build finished (RFC 3339, UTC).
    pub built_at: String,
    /// The same, in seconds since the epoch.
    pub built_at_unix: u64,
    /// The same, in nanoseconds since the epoch (orders builds made within one second).
    #[serde(default)]
    pub built_at_ns: u64,
    /// How long the build took, in seconds.
    pub build_seconds: f64,
    /// The build log.
    pub log: PathBuf,
    /// The network mode of the build (`host` or `none`).
    pub net: String,
    /// The `copy` destination, if any.
    pub copy: Option<String>,
    /// The uid that ran the build.
    pub builder_uid: u32,
    /// The inputs, for explaining cache misses.
    pub inputs: Inputs,
    /// The content digest of its layer (`sha256:HEX`, stored at `store/sha256/HEX`); none for
    /// an overlay of the layout before the store (its layer is the directory `root/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Where resolution found it, when not in the caller's own root (not stored).
    #[serde(skip)]
    pub found_in: Option<PathBuf>,
}

/// An opened `LIGHTJAIL_ROOT`.
#[derive(Debug, Clone)]
pub struct Root {
    /// Its path.
    pub path: PathBuf,
    /// The roots searched after it for worlds and parents (`LIGHTJAIL_PATH`), in order.
    pub others: Vec<PathBuf>,
}

/// The roots searched after the caller's own (`LIGHTJAIL_PATH`: colon-separated absolute
/// paths; unset: [`DEFAULT_ROOT`] for a non-root caller, none for root), without `own`.
pub fn search_path(var: Option<&std::ffi::OsStr>, is_root: bool, own: &Path) -> Vec<PathBuf> {
    let listed: Vec<PathBuf> = match var {
        Some(v) => std::env::split_paths(v).filter(|p| p.is_absolute()).collect(),
        None if is_root => Vec::new(),
        None => vec![PathBuf::from(DEFAULT_ROOT)],
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for p in listed {
        if p != own && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Where the root came from (named in errors about it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// `--root DIR`.
    Flag,
    /// `LIGHTJAIL_ROOT`.
    Env,
    /// [`DEFAULT_ROOT`], the default for root.
    SystemDefault,
    /// `$XDG_DATA_HOME/lightjail`, else `~/.local/share/lightjail`: the default for other users.
    UserDefault,
}

impl fmt::Display for RootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootSource::Flag => "--root",
            RootSource::Env => "LIGHTJAIL_ROOT",
            RootSource::SystemDefault => "the default for root; set --root or LIGHTJAIL_ROOT",
            RootSource::UserDefault => {
                "the default for non-root users: $XDG_DATA_HOME/lightjail, else ~/.local/share/lightjail; set --root or LIGHTJAIL_ROOT"
            }
        })
    }
}

/// The environment [`locate`] reads.
#[derive(Debug, Clone, Default)]
pub struct RootEnv {
    /// `LIGHTJAIL_ROOT`.
    pub lightjail_root: Option<std::ffi::OsString>,
    /// `XDG_DATA_HOME`.
    pub xdg_data_home: Option<std::ffi::OsString>,
    /// `HOME`.
    pub home: Option<std::ffi::OsString>,
    /// Whether the caller is root (effective uid 0).
    pub is_root: bool,
}

impl RootEnv {
    /// The process's own environment and effective uid.
    pub fn current() -> RootEnv {
        RootEnv {
            lightjail_root: std::env::var_os("LIGHTJAIL_ROOT"),
            xdg_data_home: std::env::var_os("XDG_DATA_HOME"),
            home: std::env::var_os("HOME"),
            is_root: rustix::process::geteuid().is_root(),
        }
    }
}

/// Picks the root: `--root`, else `LIGHTJAIL_ROOT` unless empty, else [`DEFAULT_ROOT`] for root,
/// and for everyone else `$XDG_DATA_HOME/lightjail` (an absolute `XDG_DATA_HOME`, as the XDG
/// base directory specification says), else `$HOME/.local/share/lightjail`.
pub fn locate(cli: Option<&Path>, env: &RootEnv) -> Result<(PathBuf, RootSource), StoreError> {
    if let Some(p) = cli {
        return Ok((p.to_path_buf(), RootSource::Flag));
    }
    let set = |v: &Option<std::ffi::OsString>| v.as_ref().filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = set(&env.lightjail_root) {
        return Ok((p, RootSource::Env));
    }
    if env.is_root {
        return Ok((PathBuf::from(DEFAULT_ROOT), RootSource::SystemDefault));
    }
    if let Some(x) = set(&env.xdg_data_home).filter(|p| p.is_absolute()) {
        return Ok((x.join("lightjail"), RootSource::UserDefault));
    }
    match set(&env.home).filter(|p| p.is_absolute()) {
        Some(h) => Ok((h.join(".local/share/lightjail"), RootSource::UserDefault)),
        None => Err(StoreError::NoRoot),
    }
}

/// Creates `dir` (and missing parents) with mode 0700.
pub fn mkdir_private(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(StoreError::io("cannot create", dir))
}

/// An exclusive flock(2) on a file, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Root {
    /// Opens (creating it 0700 when missing) the root at `path`; an error names the root and
    /// where it came from.
    pub fn open(path: PathBuf, source_of: RootSource) -> Result<Root, StoreError> {
        let path = if path.is_relative() {
            std::env::current_dir()
                .map_err(StoreError::io("cannot get the current directory", "."))?
                .join(path)
        } else {
            path
        };
        let root = Root { path, others: Vec::new() };
        let check = || -> Result<(), StoreError> {
            match fs::metadata(&root.path) {
                Err(_) => mkdir_private(&root.path)?,
                Ok(m) => {
                    // Another user's root (a user's is 0700): say whose, not "cannot create".
                    if let Err(e) = fs::read_dir(&root.path) {
                        use std::os::unix::fs::MetadataExt;
                        let why = match e.kind() {
                            io::ErrorKind::PermissionDenied => io::Error::new(
                                e.kind(),
                                format!(
                                    "permission denied: it is uid {}'s (mode {:04o}), and a user's jails and images are its own",
                                    m.uid(),
                                    m.mode() & 0o7777
                                ),
                            ),
                            _ => e,
                        };
                        return Err(StoreError::io("cannot open", &root.path)(why));
                    }
                }
            }
            for d in [".tmp", ".locks", ".logs", "worlds", "store", "store/sha256"] {
                let p = root.path.join(d);
                if !p.is_dir() {
                    mkdir_private(&p)?;
                }
            }
            Ok(())
        };
        check().map_err(|e| StoreError::Unusable {
            path: root.path.clone(),
            source_of,
            reason: Box::new(e),
        })?;
        if root.is_shared() && rustix::process::geteuid().is_root() {
            root.share().map_err(|e| StoreError::Unusable {
                path: root.path.clone(),
                source_of,
                reason: Box::new(e),
            })?;
        }
        Ok(root)
    }

    /// Another root of the search path, as it is (nothing created).
    pub fn other(path: &Path) -> Root {
        Root { path: path.to_path_buf(), others: Vec::new() }
    }

    /// A shared root: root's, and its directory readable by others (the administrator made it
    /// so: `chmod 755 ROOT`). ljbuild then keeps what resolution reads readable (`worlds/`,
    /// namespaces, names, versions, `meta.json`) and every layer directory 0700, so its
    /// contents (0600 files, setuid programs) stay out of reach from the host.
    pub fn is_shared(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.path).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o005 == 0o005)
    }

    /// Makes a shared root's names readable and its layers private (see [`Root::is_shared`]):
    /// run by root on every open, so a root shared after the fact is fixed before use. A
    /// world that is a symlink is left alone (its target is not the store's).
    pub fn share(&self) -> Result<(), StoreError> {
        let set = |p: &Path, mode: u32| -> Result<(), StoreError> {
            let m = fs::symlink_metadata(p).map_err(StoreError::io("cannot stat", p))?;
            if m.is_dir() && m.permissions().mode() & 0o7777 != mode {
                fs::set_permissions(p, fs::Permissions::from_mode(mode))
                    .map_err(StoreError::io("cannot chmod", p))?;
            }
            Ok(())
        };
        // Layers first: nothing is readable before it is sealed.
        for d in read_dir_names(&self.store_dir())? {
            if is_hex_digest(&d) {
                set(&self.store_dir().join(&d), 0o700)?;
            }
        }
        set(&self.path.join("store"), 0o755)?;
        set(&self.store_dir(), 0o755)?;
        for w in read_dir_names(&self.worlds_dir())? {
            if !w.starts_with('.') && w != "default" {
                set(&self.world_dir(&w), 0o700)?;
            }
        }
        for (n, v) in self.overlays()? {
            let dir = self.overlay_dir(&n, &v);
            set(&dir.join("root"), 0o700)?;
            set(&dir, 0o755)?;
            set(dir.parent().unwrap_or(&dir), 0o755)?;
            set(&self.path.join(&n.namespace), 0o755)?;
            // The build log may hold what a script printed: root's only.
            let log = dir.join("build.log");
            if log.is_file() {
                fs::set_permissions(&log, fs::Permissions::from_mode(0o600))
                    .map_err(StoreError::io("cannot chmod", &log))?;
            }
            let meta = dir.join("meta.json");
            fs::set_permissions(&meta, fs::Permissions::from_mode(0o644))
                .map_err(StoreError::io("cannot chmod", &meta))?;
        }
        // A world's tag (`etc/lj-world`, part of its identity) is read through a copy.
        for w in read_dir_names(&self.worlds_dir())? {
            let dir = self.world_dir(&w);
            if w.starts_with('.') || w == "default" || !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let tag = fs::read(dir.join("etc/lj-world")).unwrap_or_default();
            let copy = self.worlds_dir().join(format!(".{w}.lj-world"));
            if fs::read(&copy).ok().as_ref() != Some(&tag) {
                Root::write_atomic(&copy, &tag)?;
            }
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o644))
                .map_err(StoreError::io("cannot chmod", &copy))?;
        }
        set(&self.worlds_dir(), 0o755)?;
        for sidecar in read_dir_names(&self.worlds_dir())?
            .into_iter()
            .filter(|n| n.starts_with('.') && n.ends_with(".json"))
        {
            let p = self.worlds_dir().join(sidecar);
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .map_err(StoreError::io("cannot chmod", &p))?;
        }
        Ok(())
    }

    /// `store/sha256/`: layers by content digest.
    pub fn store_dir(&self) -> PathBuf {
        self.path.join("store").join("sha256")
    }

    /// `store/sha256/HEX` for the digest `sha256:HEX`.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.store_dir().join(digest.trim_start_matches("sha256:"))
    }

    /// The directory a layer reference (`worlds/NAME`, `NAMESPACE/NAME/VERSION/root`) names: the
    /// store's own path for a link into this root's store (what ljspawn is given, so a shared
    /// store's layers are opened without following a symlink), else `p` itself.
    pub fn layer_path(&self, p: &Path) -> PathBuf {
        match store_link(p) {
            Some(d) => self.layer_dir(&d),
            None => p.to_path_buf(),
        }
    }

    /// Puts the layer directory `staged` into the store as `digest` and returns where it is: a
    /// layer with that digest already there is kept and `staged` removed (the bytes are stored
    /// once). The caller holds [`Root::store_lock`] (shared) until the layer is referenced.
    pub fn put_layer(&self, staged: &Path, digest: &str) -> Result<PathBuf, StoreError> {
        let dest = self.layer_dir(digest);
        if !is_hex_digest(digest.trim_start_matches("sha256:")) {
            return Err(StoreError::io("cannot store", &dest)(io::Error::other("not a sha256 digest")));
        }
        if !self.store_dir().is_dir() {
            mkdir_private(&self.store_dir())?;
        }
        if fs::symlink_metadata(&dest).is_ok() {
            remove_tree(staged).map_err(StoreError::io("cannot remove", staged))?;
            return Ok(dest);
        }
        match fs::rename(staged, &dest) {
            Ok(()) => Ok(dest),
            // Another process stored the same digest meanwhile.
            Err(_) if fs::symlink_metadata(&dest).is_ok() => {
                remove_tree(staged).map_err(StoreError::io("cannot remove", staged))?;
                Ok(dest)
            }
            Err(e) => Err(StoreError::io("cannot store layer", &dest)(e)),
        }
    }

    /// Makes `link` a relative symlink to the stored layer `digest` (`link` is
    /// `NAMESPACE/NAME/VERSION/root` or `worlds/NAME`, or the same under `.tmp/KEY/`, which has
    /// the depth of `NAMESPACE/NAME/VERSION`).
    pub fn link_layer(link: &Path, digest: &str, depth: usize) -> Result<(), StoreError> {
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("store/sha256");
        target.push(digest.trim_start_matches("sha256:"));
        std::os::unix::fs::symlink(&target, link).map_err(StoreError::io("cannot create symlink", link))
    }

    /// The store's lock: shared while a layer is stored and referenced, exclusive for `gc`.
    pub fn store_lock(&self, shared: bool) -> Result<Lock, StoreError> {
        let file = self.open_lock("store")?;
        let op = if shared { FlockOperation::LockShared } else { FlockOperation::LockExclusive };
        loop {
            match rustix::fs::flock(&file, op) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(StoreError::io("cannot lock", self.lock_path("store"))(e.into())),
            }
        }
    }

    /// Every digest a world or a published overlay of this root (but those in `skip`)
    /// references.
    pub fn referenced_layers(
        &self,
        skip: &[(OverlayName, String)],
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut used = std::collections::BTreeSet::new();
        for w in read_dir_names(&self.worlds_dir())? {
            if let Some(d) = store_link(&self.world_dir(&w)) {
                used.insert(d);
            }
            if let Some(img) = crate::oci::world_image(&self.world_dir(&w)) {
                used.extend(img.layers);
            }
        }
        for (n, v) in self.overlays()? {
            if skip.iter().any(|(sn, sv)| *sn == n && *sv == v) {
                continue;
            }
            let dir = self.overlay_dir(&n, &v);
            if let Some(d) = store_link(&dir.join("root")) {
                used.insert(d);
            }
            if let Some(d) = self.read_meta(&n, &v)?.and_then(|m| m.layer) {
                used.insert(d);
            }
        }
        Ok(used)
    }

    /// Removes the stored layers nothing references (all of them, or those of `only`), holding
    /// the store's lock exclusively; returns the digests removed (or, `dry_run`, that would be,
    /// were the overlays of `skip` gone too).
    pub fn remove_unreferenced(
        &self,
        only: Option<&[String]>,
        dry_run: bool,
        skip: &[(OverlayName, String)],
    ) -> Result<Vec<String>, StoreError> {
        let _lock = self.store_lock(false)?;
        let used = self.referenced_layers(skip)?;
        let mut out = Vec::new();
        let mut names = read_dir_names(&self.store_dir())?;
        names.sort();
        for hex in names {
            let d = format!("sha256:{hex}");
            if !is_hex_digest(&hex) || used.contains(&d) || only.is_some_and(|o| !o.contains(&d)) {
                continue;
            }
            if !dry_run {
                let p = self.store_dir().join(&hex);
                remove_tree(&p).map_err(StoreError::io("cannot remove layer", &p))?;
            }
            out.push(d);
        }
        if !dry_run && !out.is_empty() {
            crate::cas::prune_records(self);
        }
        Ok(out)
    }

    /// `worlds/`.
    pub fn worlds_dir(&self) -> PathBuf {
        self.path.join("worlds")
    }

    /// `worlds/NAME`.
    pub fn world_dir(&self, name: &str) -> PathBuf {
        self.worlds_dir().join(name)
    }

    /// `NAMESPACE/NAME/VERSION`.
    pub fn overlay_dir(&self, name: &OverlayName, version: &str) -> PathBuf {
        self.path.join(&name.namespace).join(&name.name).join(version)
    }

    /// The lock key of an overlay.
    pub fn overlay_key(name: &OverlayName, version: &str) -> String {
        format!("o%{}%{}%{}", name.namespace, name.name, version)
    }

    /// The lock key of a world.
    pub fn world_key(name: &str) -> String {
        format!("w%{name}")
    }

    /// `.tmp/KEY`.
    pub fn staging(&self, key: &str) -> PathBuf {
        self.path.join(".tmp").join(key)
    }

    /// `.logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join(".logs")
    }

    /// The file of the lock `key`.
    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.path.join(".locks").join(format!("{key}.lock"))
    }

    fn open_lock(&self, key: &str) -> Result<File, StoreError> {
        let p = self.lock_path(key);
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&p)
            .map_err(StoreError::io("cannot open lock", p))
    }

    /// Takes the lock `key`, waiting for it. `on_wait` is called once if it has to wait.
    pub fn lock(&self, key: &str, on_wait: impl FnOnce()) -> Result<Lock, StoreError> {
        let file = self.open_lock(key)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => on_wait(),
            Err(e) => return Err(StoreError::io("cannot lock", self.lock_path(key))(e.into())),
        }
        loop {
            match rustix::fs::flock(&file, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(StoreError::io("cannot lock", self.lock_path(key))(e.into())),
            }
        }
    }

    /// Takes the lock `key` if it is free.
    pub fn try_lock(&self, key: &str) -> Result<Option<Lock>, StoreError> {
        let file = self.open_lock(key)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::io("cannot lock", self.lock_path(key))(e.into())),
        }
    }

    /// Reads `meta.json` of `name@version`; `None` when that version is not published.
    pub fn read_meta(&self, name: &OverlayName, version: &str) -> Result<Option<Meta>, StoreError> {
        let p = self.overlay_dir(name, version).join("meta.json");
        let text = match fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("cannot read", p)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| StoreError::BadMeta { path: p, reason: e.to_string() })
    }

    /// The inputs hash of a published `name@version`, read from the start of its `meta.json`:
    /// a cache hit needs no more, and the rest holds every copied file's entry (megabytes for a
    /// large `copy`).
    pub fn read_inputs_hash(&self, name: &OverlayName, version: &str) -> Result<Option<String>, StoreError> {
        use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
        /// Reads the top-level object's keys until `inputs_hash`, then stops with an error
        /// (serde's only way to stop early): the value is kept in `.0`.
        struct HashOnly<'a>(&'a mut Option<String>);
        impl<'de> Visitor<'de> for HashOnly<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with inputs_hash")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(key) = map.next_key::<String>()? {
                    if key == "inputs_hash" {
                        *self.0 = Some(map.next_value()?);
                        return Err(A::Error::custom("found"));
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Err(A::Error::missing_field("inputs_hash"))
            }
        }
        let p = self.overlay_dir(name, version).join("meta.json");
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("cannot read", p)(e)),
        };
        let mut de = serde_json::Deserializer::from_reader(io::BufReader::with_capacity(4096, f));
        let mut hash = None;
        let read = serde::Deserializer::deserialize_map(&mut de, HashOnly(&mut hash));
        match (hash, read) {
            (Some(h), _) => Ok(Some(h)),
            (None, Err(e)) => Err(StoreError::BadMeta { path: p, reason: e.to_string() }),
            (None, Ok(())) => Err(StoreError::BadMeta { path: p, reason: "no inputs_hash".into() }),
        }
    }

    /// The published versions of `name` (unsorted).
    pub fn versions(&self, name: &OverlayName) -> Result<Vec<String>, StoreError> {
        let dir = self.path.join(&name.namespace).join(&name.name);
        let mut out = Vec::new();
        for v in read_dir_names(&dir)? {
            if !v.starts_with('.') && dir.join(&v).join("meta.json").is_file() {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Every published overlay, sorted by name then version.
    pub fn overlays(&self) -> Result<Vec<(OverlayName, String)>, StoreError> {
        let mut out = Vec::new();
        for ns in read_dir_names(&self.path)? {
            if ns.starts_with('.') || ns == "worlds" || !self.path.join(&ns).is_dir() {
                continue;
            }
            for name in read_dir_names(&self.path.join(&ns))? {
                let n = OverlayName { namespace: ns.clone(), name };
                for v in self.versions(&n)? {
                    out.push((n.clone(), v));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| crate::version::compare(&a.1, &b.1)));
        Ok(out)
    }

    /// Every overlay name with at least one published version.
    pub fn names(&self) -> Result<Vec<OverlayName>, StoreError> {
        let mut v: Vec<OverlayName> = self.overlays()?.into_iter().map(|(n, _)| n).collect();
        v.dedup();
        Ok(v)
    }

    /// The worlds (directories under `worlds/`, `default` excluded), sorted.
    pub fn worlds(&self) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<String> = read_dir_names(&self.worlds_dir())?
            .into_iter()
            .filter(|n| n != "default" && !n.starts_with('.') && self.world_dir(n).is_dir())
            .collect();
        v.sort();
        Ok(v)
    }

    /// The name `worlds/default` points to, if it is a symlink to a world.
    pub fn default_world(&self) -> Option<String> {
        let target = fs::read_link(self.world_dir("default")).ok()?;
        let name = target.file_name()?.to_str()?.to_string();
        if target.parent().is_some_and(|p| !p.as_os_str().is_empty()) {
            // An absolute or nested target: the world is `default` itself.
            return Some("default".into());
        }
        Some(name)
    }

    /// Writes `data` to `path` atomically (temporary file, fsync, rename).
    pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp~");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(StoreError::io("cannot create", &tmp))?;
        f.write_all(data).and_then(|()| f.sync_all()).map_err(StoreError::io("cannot write", &tmp))?;
        fs::rename(&tmp, path).map_err(StoreError::io("cannot rename into place", path))
    }

    /// Removes stale staging areas: those whose lock is free (their builder died). An orphaned
    /// `ljspawn` still running a dead builder's script is killed first. Returns what was removed.
    /// Keys in `skip` (held by this process) are left alone.
    pub fn clean_stale(&self, skip: &[&str]) -> Result<Vec<PathBuf>, StoreError> {
        let tmp = self.path.join(".tmp");
        let mut removed = Vec::new();
        for entry in read_dir_names(&tmp)? {
            let Some(key) = staging_key(&entry) else { continue };
            if skip.contains(&key) {
                continue;
            }
            let Some(_lock) = self.try_lock(key)? else { continue };
            let p = tmp.join(&entry);
            kill_orphan(&p);
            remove_tree(&p).map_err(StoreError::io("cannot remove stale staging", &p))?;
            removed.push(p);
        }
        Ok(removed)
    }
}

/// The lock key of a `.tmp` entry (`KEY` or `KEY%SUFFIX`), `None` for foreign entries.
pub fn staging_key(entry: &str) -> Option<&str> {
    let parts = match entry.as_bytes().first() {
        Some(b'o') => 4,
        Some(b'w') => 2,
        _ => return None,
    };
    let mut seps = 0;
    let mut key = entry;
    for (i, c) in entry.char_indices() {
        if c == '%' {
            seps += 1;
            if seps == parts {
                key = &entry[..i];
                break;
            }
        }
    }
    let ok = key.split('%').count() == parts && key.split('%').all(|p| !p.is_empty());
    (ok && (key.starts_with("o%") || key.starts_with("w%"))).then_some(key)
}

/// The file in a staging area holding the pid of the `ljspawn` running in it.
pub const PID_FILE: &str = "ljspawn.pid";

/// Kills the `ljspawn` recorded in `staging/ljspawn.pid` if it is still running for this staging
/// area (its command line names the staging path), and waits for it to go away.
pub fn kill_orphan(staging: &Path) {
    let Ok(text) = fs::read_to_string(staging.join(PID_FILE)) else { return };
    let Ok(pid) = text.trim().parse::<i32>() else { return };
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let needle = staging.as_os_str().as_encoded_bytes();
    let ours =
        |d: &Path| fs::read(d.join("cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle));
    if !ours(&proc_dir) {
        return;
    }
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    for _ in 0..500 {
        // Gone, or a zombie waiting for its new parent (its cmdline is then empty).
        if !ours(&proc_dir) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// 64 lower-case hex digits.
pub fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The digest (`sha256:HEX`) a layer reference links to: `p` is a symlink to
/// `../[../../]store/sha256/HEX` (into its own root's store). `None` for anything else.
pub fn store_link(p: &Path) -> Option<String> {
    let t = fs::read_link(p).ok()?;
    let comps: Vec<_> = t.components().collect();
    let n = comps.len();
    if n < 4 {
        return None;
    }
    let name = |c: &std::path::Component<'_>| c.as_os_str().to_str().map(str::to_string);
    let hex = name(&comps[n - 1])?;
    let ups = comps[..n - 3].iter().all(|c| matches!(c, std::path::Component::ParentDir));
    (ups && name(&comps[n - 2])? == "sha256" && name(&comps[n - 3])? == "store" && is_hex_digest(&hex))
        .then(|| format!("sha256:{hex}"))
}

/// Names of the entries of `dir` (empty if it does not exist).
pub fn read_dir_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("cannot list", dir)(e)),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(StoreError::io("cannot list", dir))?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    Ok(out)
}

/// Removes a tree, also one with unreadable or unwritable directories (an overlay work
/// directory holds a `work/` with mode 000 after a mount). A missing path is not an error.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) if !m.is_dir() => return fs::remove_file(path),
        Ok(_) => {}
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_dirs_writable(path);
            match fs::remove_dir_all(path) {
                Err(e)
                    if e.kind() == io::ErrorKind::PermissionDenied
                        && !rustix::process::geteuid().is_root() =>
                {
                    remove_as_jail_root(path).map_err(|why| io::Error::new(e.kind(), format!("{e} ({why})")))
                }
                r => r,
            }
        }
    }
}

/// Rootless builds leave files owned by the caller's subordinate ids (a package's users), which
/// the caller cannot remove on the host: removes `path` from a jail whose root is the caller,
/// with those ids mapped and the capabilities to override their modes (`ljspawn --subids
/// --cap-add container`, the host's `/` read-only as its root, `path`'s directory bound).
fn remove_as_jail_root(path: &Path) -> Result<(), String> {
    let ljspawn =
        crate::spawn::find_ljspawn().ok_or("ljspawn not found to remove files of subordinate ids")?;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err("no parent directory".into());
    };
    const AT: &str = "/tmp/.ljbuild-rm";
    let out = std::process::Command::new(&ljspawn)
        .args(["--subids", "--cap-add", "container", "--root", "/", "--bind"])
        .arg(parent)
        .args([AT, "--", "rm", "-rf", "--"])
        .arg(Path::new(AT).join(name))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ljspawn.display()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "removing it in a jail with your subordinate ids failed: {}",
            text.lines().last().unwrap_or("").trim()
        ));
    }
    Ok(())
}

fn make_dirs_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_dirs_writable(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit reads `inputs_hash` from the start of `meta.json`, wherever the field is, and a
    /// file that ends before it is bad metadata.
    #[test]
    fn inputs_hash_from_the_start_of_meta() {
        let dir = std::env::temp_dir().join(format!("ljbuild-store-meta-{}", std::process::id()));
        let root = Root { path: dir.clone(), others: Vec::new() };
        let n = OverlayName { namespace: "a".into(), name: "b".into() };
        fs::create_dir_all(root.overlay_dir(&n, "1")).unwrap();
        let meta = root.overlay_dir(&n, "1").join("meta.json");
        assert!(root.read_inputs_hash(&n, "2").unwrap().is_none());
        let big = "x".repeat(100_000);
        fs::write(
            &meta,
            format!(r#"{{"format":1,"name":{{"n":[1,2]}},"inputs_hash":"abc","inputs":"{big}"}}"#),
        )
        .unwrap();
        assert_eq!(root.read_inputs_hash(&n, "1").unwrap().as_deref(), Some("abc"));
        fs::write(&meta, format!(r#"{{"inputs":{{"copy":"{big}"}},"inputs_hash":"def"}}"#)).unwrap();
        assert_eq!(root.read_inputs_hash(&n, "1").unwrap().as_deref(), Some("def"));
        for bad in [r#"{"format":1,"inputs"#, r#"{"format":1}"#, "[]", ""] {
            fs::write(&meta, bad).unwrap();
            let e = root.read_inputs_hash(&n, "1").unwrap_err().to_string();
            assert!(e.starts_with("bad metadata "), "{bad}: {e}");
        }
        remove_tree(&dir).unwrap();
    }

    #[test]
    fn keys() {
        let n = OverlayName { namespace: "lang".into(), name: "ruby".into() };
        let k = Root::overlay_key(&n, "1.0-rc.1");
        assert_eq!(k, "o%lang%ruby%1.0-rc.1");
        assert_eq!(staging_key(&k), Some(k.as_str()));
        assert_eq!(staging_key(&format!("{k}%old")), Some(k.as_str()));
        assert_eq!(staging_key("w%busybox"), Some("w%busybox"));
        assert_eq!(staging_key("w%busybox%trash"), Some("w%busybox"));
        assert_eq!(staging_key("o%a%b"), None);
        assert_eq!(staging_key("random"), None);
    }

    #[test]
    fn root_location() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        let user = RootEnv { home: os("/home/u"), ..RootEnv::default() };
        let root = RootEnv { is_root: true, home: os("/root"), ..RootEnv::default() };
        let got = |cli: Option<&str>, env: &RootEnv| locate(cli.map(Path::new), env).unwrap();
        assert_eq!(
            got(Some("/x"), &RootEnv { lightjail_root: os("/y"), ..root.clone() }).0,
            PathBuf::from("/x")
        );
        assert_eq!(
            got(None, &RootEnv { lightjail_root: os("/y"), ..user.clone() }),
            (PathBuf::from("/y"), RootSource::Env)
        );
        assert_eq!(
            got(None, &RootEnv { lightjail_root: os(""), ..root.clone() }).0,
            PathBuf::from(DEFAULT_ROOT)
        );
        assert_eq!(got(None, &root), (PathBuf::from(DEFAULT_ROOT), RootSource::SystemDefault));
        assert_eq!(
            got(None, &user),
            (PathBuf::from("/home/u/.local/share/lightjail"), RootSource::UserDefault)
        );
        let xdg = RootEnv { xdg_data_home: os("/data"), ..user.clone() };
        assert_eq!(got(None, &xdg).0, PathBuf::from("/data/lightjail"));
        // A relative XDG_DATA_HOME is ignored (the specification says so).
        let rel = RootEnv { xdg_data_home: os("data"), ..user.clone() };
        assert_eq!(got(None, &rel).0, PathBuf::from("/home/u/.local/share/lightjail"));
        assert!(matches!(locate(None, &RootEnv::default()), Err(StoreError::NoRoot)));
    }

    #[test]
    fn remove_unwritable_tree() {
        let base = std::env::temp_dir().join(format!("ljbuild-rm-{}", std::process::id()));
        fs::create_dir_all(base.join("a/b/c")).unwrap();
        fs::write(base.join("a/b/c/f"), "x").unwrap();
        fs::set_permissions(base.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
        remove_tree(&base).unwrap();
        assert!(!base.exists());
        remove_tree(&base).unwrap();
    }
}
