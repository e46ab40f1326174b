//! OCI images: import as worlds (image layouts, OCI and docker archives, registries), export of
//! overlays as images, push and pull.
//!
//! Modules: [`compress`] (parallel gzip, zstd), [`digest`] (sha256 of streams), [`layer`] (applying and writing layer tars, with
//! whiteouts), [`source`] (reading layouts and archives, picking and checking manifests),
//! [`import`] (`ljbuild world import` of an image), [`export`] (`ljbuild export`, `push`),
//! [`registry`] (the distribution protocol), [`pull`] (`ljbuild pull`).
//!
//! An imported world keeps what its image config says about running it next to it, in
//! `worlds/.NAME.image.json` ([`WorldImage`]); its identity (the cache input) is then the chain
//! of its layers' digests, so the same image imported on two machines, or twice, keys builds
//! the same way.

pub mod compress;
pub mod digest;
pub mod export;
pub mod import;
pub mod layer;
pub mod pull;
pub mod registry;
pub mod source;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The largest JSON document (index, manifest, config) read whole.
pub const LIMIT_JSON: u64 = 8 << 20;

/// Errors of image import, export and transfer.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
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
    /// A digest did not match: the blob is corrupt (nothing was published).
    #[error(
        "digest mismatch for {what}: expected {want}, got {got} (corrupt or tampered blob; nothing imported)"
    )]
    Digest {
        /// Which blob.
        what: String,
        /// The digest the manifest names.
        want: String,
        /// The digest of what was read.
        got: String,
    },
    /// An index, manifest, config or layer that does not follow the specification.
    #[error("malformed image: {0}")]
    Malformed(String),
    /// A layer tar that cannot be applied.
    #[error("bad layer: {0}")]
    Layer(String),
    /// Something valid that ljbuild does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The source cannot give what was asked for.
    #[error("{0}")]
    Source(String),
    /// A bad image reference.
    #[error("{0}")]
    Reference(String),
    /// The registry refused, failed or could not be reached.
    #[error("{0}")]
    Registry(String),
}

impl OciError {
    /// The exit status: 2 for a bad reference, 6 for file system errors, 8 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            OciError::Reference(_) => crate::error::EXIT_USAGE,
            OciError::Io { .. } => crate::error::EXIT_IO,
            _ => crate::error::EXIT_IMAGE,
        }
    }
}

/// Where an image is: what `SOURCE`/`DEST` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:TAG]`, or a directory holding `oci-layout`.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// `docker://HOST/REPO[:TAG]`: a registry.
    Registry(registry::RegistryRef),
    /// `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:TAG]`, or a tar file holding a layout or a
    /// `manifest.json`.
    Archive {
        /// The archive.
        file: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
}

impl ImageRef {
    /// Parses a transport-prefixed reference; `None` when `s` names no transport.
    pub fn parse_prefixed(s: &str) -> Result<Option<ImageRef>, OciError> {
        fn path_tag(rest: &str) -> (PathBuf, Option<String>) {
            match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') && !p.is_empty() => (p.into(), Some(t.to_string())),
                _ => (rest.into(), None),
            }
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = path_tag(rest);
            return Ok(Some(ImageRef::Layout { dir, tag }));
        }
        for p in ["oci-archive:", "docker-archive:"] {
            if let Some(rest) = s.strip_prefix(p) {
                let (file, tag) = path_tag(rest);
                return Ok(Some(ImageRef::Archive { file, tag }));
            }
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Some(ImageRef::Registry(registry::RegistryRef::parse(rest)?)));
        }
        Ok(None)
    }

    /// What a world import SOURCE is: an explicit reference, a directory holding an image
    /// layout, or an archive holding one (or a docker `manifest.json`). `None`: a plain directory
    /// or tarball.
    pub fn detect(source: &Path) -> Result<Option<ImageRef>, OciError> {
        if let Some(s) = source.to_str() {
            if let Some(r) = ImageRef::parse_prefixed(s)? {
                return Ok(Some(r));
            }
        }
        if source.is_dir() {
            if source.join("oci-layout").is_file()
                || (source.join("index.json").is_file() && source.join("blobs").is_dir())
            {
                return Ok(Some(ImageRef::Layout { dir: source.to_path_buf(), tag: None }));
            }
            return Ok(None);
        }
        if source.is_file() {
            if let Some(a) = source::Archive::open(source)? {
                if a.contains("index.json") || a.contains("manifest.json") {
                    return Ok(Some(ImageRef::Archive { file: source.to_path_buf(), tag: None }));
                }
            }
        }
        Ok(None)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |t: &Option<String>| t.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        match self {
            ImageRef::Layout { dir, tag } => write!(f, "oci:{}{}", dir.display(), t(tag)),
            ImageRef::Archive { file, tag } => write!(f, "{}{}", file.display(), t(tag)),
            ImageRef::Registry(r) => write!(f, "{r}"),
        }
    }
}

/// What a world imported from an image keeps of it (`worlds/.NAME.image.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorldImage {
    /// Format of this file (1).
    pub format: u32,
    /// Where it came from.
    pub source: String,
    /// The manifest's digest, if the source had one.
    pub manifest: Option<String>,
    /// The config's digest.
    pub config: String,
    /// The uncompressed digests of its layers, bottom first.
    pub diff_ids: Vec<String>,
    /// The image's defaults for running it.
    pub defaults: Defaults,
    /// The world's identity where it was built, for a world pulled from an image ljbuild
    /// exported (so builds on it key as they did there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The world's further layers, bottom first: each an overlay upper in the store
    /// (`sha256:HEX`), stacked on `worlds/NAME` (the bottom layer). Empty for a world of one
    /// layer (and for worlds imported before images became chains: flattened).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// How many of an image's layers a world keeps as layers of its own: the bottom ones of a
/// deeper image are flattened into its first layer, so a world and the builds on it stay far
/// below overlayfs's limit of 500 lower layers.
pub const MAX_WORLD_LAYERS: usize = 64;

/// The further layers (store directories, bottom first) of the world `world_dir` of `root`,
/// above `worlds/NAME` itself.
pub fn world_layers(root: &crate::store::Root, world_dir: &Path) -> Vec<PathBuf> {
    world_image(world_dir).map(|w| w.layers.iter().map(|d| root.layer_dir(d)).collect()).unwrap_or_default()
}

/// The run defaults of an image config (`Env`, `WorkingDir`, `User`, `Entrypoint`, `Cmd`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// `VAR=VALUE` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `USER[:GROUP]`, by name or number.
    #[serde(default)]
    pub user: Option<String>,
    /// The entrypoint.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The default command (the arguments of the entrypoint, if any).
    #[serde(default)]
    pub cmd: Vec<String>,
}

impl Defaults {
    /// From an image config.
    pub fn from_config(c: &oci_spec::image::ImageConfiguration) -> Defaults {
        let Some(cfg) = c.config() else { return Defaults::default() };
        Defaults {
            env: cfg.env().clone().unwrap_or_default(),
            working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
            user: cfg.user().clone().filter(|u| !u.is_empty()),
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
        }
    }

    /// The command to run: the entrypoint followed by `args`, or by `cmd` when `args` is empty
    /// (Docker's rule); `/bin/sh` when the image names nothing.
    pub fn command(&self, args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = self.entrypoint.iter().map(Into::into).collect();
        if args.is_empty() {
            out.extend(self.cmd.iter().map(Into::into));
        } else {
            out.extend(args);
        }
        if out.is_empty() {
            out.push("/bin/sh".into());
        }
        out
    }

    /// `--setenv` pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The user as `UID[:GID]` for `ljspawn --user`, names looked up in the layers' `etc/passwd`
    /// and `etc/group` (`layers` top first).
    pub fn numeric_user(&self, layers: &[PathBuf]) -> Result<Option<String>, OciError> {
        let Some(u) = &self.user else { return Ok(None) };
        let (user, group) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let lookup = |file: &str, name: &str| -> Result<(u32, Option<u32>), OciError> {
            if let Ok(n) = name.parse::<u32>() {
                return Ok((n, None));
            }
            let text = layers.iter().find_map(|l| fs::read_to_string(l.join(file)).ok()).unwrap_or_default();
            for line in text.lines() {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() >= 3 && f[0] == name {
                    let id = f[2]
                        .parse()
                        .map_err(|_| OciError::Malformed(format!("bad /{file} line for {name}")))?;
                    let gid = f.get(3).and_then(|g| g.parse().ok());
                    return Ok((id, gid));
                }
            }
            Err(OciError::Source(format!("the image's user '{name}' is not in its /{file}")))
        };
        let (uid, primary) = lookup("etc/passwd", user)?;
        let gid = match group {
            Some(g) => Some(lookup("etc/group", g)?.0),
            None => primary,
        };
        Ok(Some(match gid {
            Some(g) => format!("{uid}:{g}"),
            None => uid.to_string(),
        }))
    }
}

/// `worlds/.NAME.image.json` for the world directory `worlds/NAME`.
pub fn sidecar(world_dir: &Path) -> Option<PathBuf> {
    let name = world_dir.file_name()?.to_str()?;
    Some(world_dir.parent()?.join(format!(".{name}.image.json")))
}

/// The image a world was imported from, if it was.
pub fn world_image(world_dir: &Path) -> Option<WorldImage> {
    let p = sidecar(world_dir)?;
    let data = fs::read(p).ok()?;
    serde_json::from_slice(&data).ok()
}

/// The identity of a world imported from an image: its layers' digests (the same image gives
/// the same identity on every machine and every import).
pub fn world_identity(world_dir: &Path) -> Option<String> {
    let w = world_image(world_dir)?;
    if let Some(id) = w.identity {
        return Some(id);
    }
    let mut s = String::from("lj-world-id oci v1\0");
    for d in &w.diff_ids {
        s.push_str(d);
        s.push('\0');
    }
    Some(digest::of_bytes(s.as_bytes()).trim_start_matches("sha256:").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        assert_eq!(
            ImageRef::parse_prefixed("oci:/a/b:v1").unwrap(),
            Some(ImageRef::Layout { dir: "/a/b".into(), tag: Some("v1".into()) })
        );
        assert_eq!(
            ImageRef::parse_prefixed("oci:/a/b").unwrap(),
            Some(ImageRef::Layout { dir: "/a/b".into(), tag: None })
        );
        assert_eq!(
            ImageRef::parse_prefixed("docker-archive:x.tar").unwrap(),
            Some(ImageRef::Archive { file: "x.tar".into(), tag: None })
        );
        assert_eq!(ImageRef::parse_prefixed("/plain/dir").unwrap(), None);
    }

    #[test]
    fn commands() {
        let d = Defaults { entrypoint: vec!["/e".into()], cmd: vec!["c".into()], ..Default::default() };
        assert_eq!(d.command(vec![]), ["/e", "c"]);
        assert_eq!(d.command(vec!["x".into()]), ["/e", "x"]);
        assert_eq!(Defaults::default().command(vec![]), ["/bin/sh"]);
    }
}
