//! Resolving worlds, parents and their chains.

use std::cmp::Ordering;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::{Meta, OverlayName, ParentRef, Root, StoreError, WorldRef};
use crate::version;
use crate::Error;

/// Errors of resolution.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A named world does not exist.
    #[error("world '{name}' not found in {} (available: {}; add one with `ljbuild world import NAME DIR`)", .dir.display(), list(.available))]
    NoWorld {
        /// The world asked for.
        name: String,
        /// `ROOT/worlds`.
        dir: PathBuf,
        /// The worlds that exist.
        available: Vec<String>,
    },
    /// No world asked for and no default.
    #[error("no world: the Jailfile has no 'world', LIGHTJAIL_WORLD is unset and {} does not exist (available: {}; pick one with `ljbuild world use NAME`)", .dir.join("default").display(), list(.available))]
    NoDefaultWorld {
        /// `ROOT/worlds`.
        dir: PathBuf,
        /// The worlds that exist.
        available: Vec<String>,
    },
    /// No published overlay matches.
    #[error("{}", no_overlay(.name, .prefix.as_deref(), .versions, .names, .root))]
    NoOverlay {
        /// The overlay asked for.
        name: OverlayName,
        /// The version prefix asked for.
        prefix: Option<String>,
        /// The versions of `name` that exist.
        versions: Vec<String>,
        /// The overlay names that exist (when `name` has no version at all).
        names: Vec<String>,
        /// The root.
        root: PathBuf,
    },
    /// A prefix of a derived version's hash that matches several.
    #[error("'{prefix}' matches more than one version of {name} ({}): give more of the hash", .matches.join(", "))]
    Ambiguous {
        /// The overlay.
        name: OverlayName,
        /// The prefix asked for.
        prefix: String,
        /// What it matches.
        matches: Vec<String>,
    },
    /// The Jailfile's world is not the parent's.
    #[error("world '{world}' conflicts with the parent {parent}, built on world '{parent_world}' (drop the 'world' line; a child is built on its parent's world)")]
    WorldMismatch {
        /// The Jailfile's world.
        world: String,
        /// The parent, `ns/name@version`.
        parent: String,
        /// The parent's world.
        parent_world: String,
    },
    /// Not found, and some roots of `LIGHTJAIL_PATH` cannot be read by the caller.
    #[error("{what} not found in your root, and {} cannot be read by you (the administrator shares a root with `chmod 755 ROOT` and grants it with 'store ROOT allow USER' in /etc/lightjail.conf)", .roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "))]
    Hidden {
        /// What was looked for.
        what: String,
        /// The roots that could not be read.
        roots: Vec<PathBuf>,
    },
    /// An ancestor is gone or was replaced.
    #[error("{overlay} depends on {ancestor}, which {what} (rebuild {overlay})")]
    BrokenChain {
        /// The overlay whose chain is broken.
        overlay: String,
        /// The missing ancestor.
        ancestor: String,
        /// "is missing" / "was rebuilt with other inputs".
        what: &'static str,
    },
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn no_overlay(
    name: &OverlayName,
    prefix: Option<&str>,
    versions: &[String],
    names: &[String],
    root: &Path,
) -> String {
    if versions.is_empty() {
        let mut shown: Vec<String> = names.iter().take(20).cloned().collect();
        if names.len() > 20 {
            shown.push(format!("... {} more", names.len() - 20));
        }
        return format!("no overlay {name} in {} (available: {})", root.display(), list(&shown));
    }
    let p = prefix.unwrap_or("");
    format!("no version of {name} matches '{p}' (available: {})", versions.join(", "))
}

/// The layers a build or a run stands on.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The world.
    pub world: WorldRef,
    /// Its directory.
    pub world_dir: PathBuf,
    /// The overlays above it, oldest ancestor first (`root`: the root of one that is not in
    /// the caller's own).
    pub parents: Vec<ParentRef>,
}

impl Chain {
    /// The `--layer` directories, bottom first.
    /// A layer in the store is named by its store path (`store/sha256/HEX`), not by the
    /// symlink that references it.
    pub fn layers(&self, root: &Root) -> Vec<PathBuf> {
        let world_root = self.world.root.as_ref().map_or_else(|| root.clone(), |r| Root::other(r));
        let mut v = vec![world_root.layer_path(&self.world_dir)];
        v.extend(crate::oci::world_layers(&world_root, &self.world_dir));
        v.extend(self.parents.iter().map(|p| {
            let r = p.root.as_ref().map_or_else(|| root.clone(), |r| Root::other(r));
            r.layer_path(&r.overlay_dir(&p.name, &p.version).join("root"))
        }));
        v
    }

    /// For each of [`Chain::layers`]: whether it comes from another root than the caller's
    /// own (a non-root caller has ljspawn idmap those: `--idmap-layer`).
    pub fn foreign(&self) -> Vec<bool> {
        let mut v = vec![self.world.root.is_some()];
        let parts = crate::oci::world_image(&self.world_dir).map_or(0, |w| w.layers.len());
        v.extend(std::iter::repeat_n(self.world.root.is_some(), parts));
        v.extend(self.parents.iter().map(|p| p.root.is_some()));
        v
    }

    /// `world > ns/a@1 > ns/b@2`.
    pub fn describe(&self) -> String {
        let mut s = format!("world {}", self.world.name);
        for p in &self.parents {
            s.push_str(&format!(" > {}@{}", p.name, p.version));
        }
        s
    }
}

/// The identity of a world: a world imported from an image is identified by its layers' digests
/// ([`crate::oci::world_identity`]); one in the store (`worlds/NAME` a link to
/// `store/sha256/HEX`) by its content digest, so importing the same files again gives the same
/// identity; any other directory (a world made before the store, or a symlink to a directory
/// elsewhere) by sha256 over its `etc/lj-world` (if any) and the device, inode and modification
/// time of its directory: re-creating it changes it.
pub fn world_identity(dir: &Path) -> Result<String, StoreError> {
    if let Some(id) = crate::oci::world_identity(dir) {
        return Ok(id);
    }
    if let Some(d) = crate::store::store_link(dir) {
        let mut h = Sha256::new();
        h.update(b"lj-world-id store v1\0");
        h.update(d.as_bytes());
        return Ok(hex(&h.finalize()));
    }
    let md = fs::metadata(dir).map_err(StoreError::io("cannot stat world", dir))?;
    // A shared root's world is 0700: its tag is read from the copy root keeps beside it.
    let tag = fs::read(dir.join("etc/lj-world"))
        .or_else(|_| match (dir.parent(), dir.file_name()) {
            (Some(p), Some(n)) => fs::read(p.join(format!(".{}.lj-world", n.to_string_lossy()))),
            _ => Ok(Vec::new()),
        })
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(b"lj-world-id v1\0");
    h.update(&tag);
    h.update(format!("\0{}:{}:{}.{}", md.dev(), md.ino(), md.mtime(), md.mtime_nsec()).as_bytes());
    Ok(hex(&h.finalize()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Resolves a world name in the caller's root, then in the roots of `LIGHTJAIL_PATH`: its
/// name, directory, and the other root it was found in (None: the caller's own).
pub fn world_anywhere(root: &Root, name: &str) -> Result<(String, PathBuf, Option<PathBuf>), Error> {
    let own = world(root, name);
    if own.is_ok() || root.others.is_empty() {
        return own.map(|(n, d)| (n, d, None));
    }
    for o in &root.others {
        if let Ok((n, d)) = world(&Root::other(o), name) {
            return Ok((n, d, Some(o.clone())));
        }
    }
    own.map(|(n, d)| (n, d, None))
}

/// Resolves a world name (`default` follows the `worlds/default` symlink) to its name and
/// directory.
pub fn world(root: &Root, name: &str) -> Result<(String, PathBuf), Error> {
    let name =
        if name == "default" { root.default_world().unwrap_or_else(|| name.into()) } else { name.into() };
    let dir = root.world_dir(&name);
    if name.contains('/') || name.starts_with('.') || !dir.is_dir() {
        return Err(ResolveError::NoWorld { name, dir: root.worlds_dir(), available: root.worlds()? }.into());
    }
    Ok((name, dir))
}

/// The world of a build without a parent: the Jailfile's, else `LIGHTJAIL_WORLD`, else
/// `worlds/default`.
pub fn build_world(root: &Root, jailfile: Option<&str>, env: Option<&str>) -> Result<Chain, Error> {
    let name = match jailfile.or(env.filter(|e| !e.is_empty())) {
        Some(n) => n.to_string(),
        None => {
            if !root.world_dir("default").is_dir() {
                return Err(ResolveError::NoDefaultWorld {
                    dir: root.worlds_dir(),
                    available: root.worlds()?,
                }
                .into());
            }
            "default".into()
        }
    };
    let (name, dir, from) = world_anywhere(root, &name)?;
    let identity = world_identity(&dir)?;
    Ok(Chain { world: WorldRef { name, identity, root: from }, world_dir: dir, parents: Vec::new() })
}

/// How [`overlay`] picked a version (`run` says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    /// No version given: the most recently built one.
    Newest,
    /// A version prefix: the highest matching version.
    Highest(String),
    /// A prefix of a derived version's hash: the one version it matches.
    Derived(String),
}

impl std::fmt::Display for Picked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Picked::Newest => f.write_str("the most recently built version"),
            Picked::Highest(p) if p.is_empty() => f.write_str("the highest version"),
            Picked::Highest(p) => write!(f, "the highest version matching '{p}'"),
            Picked::Derived(p) => write!(f, "the only derived version starting with '{p}'"),
        }
    }
}

/// Picks a published version of `name` (the rule `run` and `from` share):
/// * no version: the most recently built version, whatever its number;
/// * `0.0.0-h` and up to 12 hex digits: the derived version whose hash starts with them (an
///   error when more than one does);
/// * any other prefix: the highest version matching it on whole segments (version order;
///   derived versions sort below all others, the most recently built first).
pub fn overlay(root: &Root, name: &OverlayName, prefix: Option<&str>) -> Result<Meta, Error> {
    overlay_picked(root, name, prefix).map(|(m, _)| m)
}

/// [`overlay`], also saying how it picked.
pub fn overlay_picked(
    root: &Root,
    name: &OverlayName,
    prefix: Option<&str>,
) -> Result<(Meta, Picked), Error> {
    let own = overlay_picked_in(root, name, prefix);
    if own.is_ok() || root.others.is_empty() {
        return own;
    }
    // Not in the caller's own root: the roots of `LIGHTJAIL_PATH`, in order.
    let mut hidden = Vec::new();
    for o in &root.others {
        let other = Root::other(o);
        match overlay_picked_in(&other, name, prefix) {
            Ok((mut m, p)) => {
                m.found_in = Some(o.clone());
                return Ok((m, p));
            }
            Err(Error::Store(e)) if matches!(&*e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied) => {
                hidden.push(o.clone())
            }
            Err(_) => {}
        }
    }
    match own {
        Err(Error::Resolve(e)) if !hidden.is_empty() && matches!(&*e, ResolveError::NoOverlay { .. }) => {
            Err(ResolveError::Hidden { what: name.to_string(), roots: hidden }.into())
        }
        own => own,
    }
}

fn overlay_picked_in(root: &Root, name: &OverlayName, prefix: Option<&str>) -> Result<(Meta, Picked), Error> {
    let versions = root.versions(name)?;
    let built =
        |v: &str| -> Result<u64, Error> { Ok(root.read_meta(name, v)?.map(|m| m.built_at_ns).unwrap_or(0)) };
    let derived_prefix = prefix.filter(|p| {
        p.strip_prefix(version::DERIVED_PREFIX)
            .is_some_and(|h| h.len() <= 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    let mut best: Option<(&String, u64)> = None;
    let picked = match (prefix, derived_prefix) {
        (None, _) => {
            for v in &versions {
                let t = built(v)?;
                if best.is_none_or(|(b, bt)| (t, v.as_str()) > (bt, b.as_str())) {
                    best = Some((v, t));
                }
            }
            Picked::Newest
        }
        (Some(_), Some(p)) => {
            let hits: Vec<&String> =
                versions.iter().filter(|v| version::is_derived(v) && v.starts_with(p)).collect();
            if hits.len() > 1 {
                let mut hits: Vec<String> = hits.into_iter().cloned().collect();
                hits.sort();
                return Err(ResolveError::Ambiguous {
                    name: name.clone(),
                    prefix: p.to_string(),
                    matches: hits,
                }
                .into());
            }
            best = hits.first().map(|v| (*v, 0));
            Picked::Derived(p.to_string())
        }
        (Some(p), None) => {
            for v in versions.iter().filter(|v| version::matches_prefix(v, p)) {
                let t = if version::is_derived(v) { built(v)? } else { 0 };
                let better = match best {
                    None => true,
                    Some((b, bt)) => match (version::is_derived(v), version::is_derived(b)) {
                        (true, true) => (t, v.as_str()) > (bt, b.as_str()),
                        _ => version::compare(v, b) == Ordering::Greater,
                    },
                };
                if better {
                    best = Some((v, t));
                }
            }
            Picked::Highest(p.to_string())
        }
    };
    let no_match = |versions: Vec<String>| -> Result<Error, Error> {
        let mut versions = versions;
        versions.sort_by(|a, b| version::compare(a, b));
        let names = if versions.is_empty() {
            root.names()?.iter().map(ToString::to_string).collect()
        } else {
            Vec::new()
        };
        Ok(ResolveError::NoOverlay {
            name: name.clone(),
            prefix: prefix.map(Into::into),
            versions,
            names,
            root: root.path.clone(),
        }
        .into())
    };
    let Some((v, _)) = best else {
        return Err(no_match(versions)?);
    };
    match root.read_meta(name, v)? {
        Some(m) => Ok((m, picked)),
        None => Err(no_match(Vec::new())?),
    }
}

/// The chain under and including the published overlay `meta`: its world and its parents,
/// checked to still be published with the same inputs. Returns it and a warning when the world
/// changed since `meta` was built.
pub fn chain_of(root: &Root, meta: &Meta) -> Result<(Chain, Option<String>), Error> {
    let this = format!("{}@{}", meta.name, meta.version);
    // Roots as the caller sees them: None is its own; a root recorded in `meta` (or the one
    // `meta` was found in) is kept unless it is the caller's own.
    let home = meta.found_in.clone();
    let seen = |r: &Option<PathBuf>| -> Option<PathBuf> {
        r.clone().or_else(|| home.clone()).filter(|p| *p != root.path)
    };
    let mut parents = Vec::with_capacity(meta.parents.len() + 1);
    for p in &meta.parents {
        let ancestor = format!("{}@{}", p.name, p.version);
        let in_root = seen(&p.root);
        let r = in_root.as_deref().map_or_else(|| root.clone(), Root::other);
        let found = r.read_meta(&p.name, &p.version)?;
        // With a layer digest, the bytes are what counts: rebuilt into the same layer, it is the
        // same parent.
        let same_layer = |m: &Meta| p.layer.is_some() && m.layer == p.layer;
        if let (Some(m), Some(b)) = (&found, p.built_at_ns) {
            if m.built_at_ns != b && !same_layer(m) {
                return Err(ResolveError::BrokenChain { overlay: this, ancestor, what: "was rebuilt" }.into());
            }
        }
        let built_at_ns = in_root.as_ref().and(found.as_ref().map(|m| m.built_at_ns));
        parents.push(ParentRef { root: in_root, built_at_ns, ..p.clone() });
        match found {
            None => {
                return Err(ResolveError::BrokenChain { overlay: this, ancestor, what: "is missing" }.into())
            }
            Some(m) if m.inputs_hash != p.inputs_hash && !same_layer(&m) => {
                return Err(ResolveError::BrokenChain {
                    overlay: this,
                    ancestor,
                    what: "was rebuilt with other inputs",
                }
                .into())
            }
            Some(_) => {}
        }
    }
    let world_root = seen(&meta.world.root);
    let (name, dir) =
        world(&world_root.as_deref().map_or_else(|| root.clone(), Root::other), &meta.world.name)?;
    let identity = world_identity(&dir)?;
    let warning = (identity != meta.world.identity).then(|| {
        format!("world '{name}' changed since {this} was built (its layers may not fit it any more)")
    });
    parents.push(ParentRef {
        name: meta.name.clone(),
        version: meta.version.clone(),
        inputs_hash: meta.inputs_hash.clone(),
        root: home.clone().filter(|p| *p != root.path),
        built_at_ns: home.as_ref().filter(|p| **p != root.path).map(|_| meta.built_at_ns),
        layer: meta.layer.clone(),
    });
    // The chain keeps the identity the overlays were built on, so hashes stay stable.
    let world = WorldRef { root: world_root, ..meta.world.clone() };
    Ok((Chain { world, world_dir: dir, parents }, warning))
}
