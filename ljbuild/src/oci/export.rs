//! `ljbuild export NAME@VERSION DEST`: an overlay and its chain as an OCI image whose layers are
//! the world and each overlay, bottom first.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

pub use super::compress::Compression;
use super::compress::ParGz;
use super::digest::{self, HashWriter};
use super::layer::{IdMap, LayerWriter};
use super::source::REF_NAME;
use super::{Defaults, ImageRef, OciError};
use crate::resolve::Chain;
use crate::store::{Meta, Root};
use crate::ui::Ui;
use crate::Error;

/// Annotation of the world layer: the world's name.
pub const ANN_WORLD: &str = "org.lightjail.world";
/// Annotation of the world layer: the world's identity (the cache input builds on it used).
pub const ANN_WORLD_ID: &str = "org.lightjail.world.identity";
/// Annotation of the world layer: the world's content digest in the store (`layer` in an
/// overlay's `meta.json` is the same for an overlay), so a pull skips a layer it has.
pub const ANN_WORLD_LAYER: &str = "org.lightjail.world.layer";
/// Annotation of a further layer of the world (an image's second layer and up, imported as a
/// chain): its content digest in the store.
pub const ANN_WORLD_PART: &str = "org.lightjail.world.part";
/// Annotation of an overlay layer: its `meta.json`.
pub const ANN_META: &str = "org.lightjail.meta";

/// The media types ljbuild writes.
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config's.
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed layers.
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzip layers.
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Zstd layers.
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OciError {
    let path = path.to_path_buf();
    move |source| OciError::Io { what, path, source }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A blob being written into `DIR/blobs/sha256/` (under a temporary name until it is complete).
#[derive(Debug)]
pub struct BlobFile {
    dir: PathBuf,
    tmp: PathBuf,
}

impl BlobFile {
    /// Starts a blob in the layout `dir`.
    pub fn create(dir: &Path) -> Result<(BlobFile, File), OciError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err("cannot create", &blobs))?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = blobs.join(format!(".tmp-{}-{n}", std::process::id()));
        let f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        Ok((BlobFile { dir: blobs, tmp }, f))
    }

    /// Names the finished blob by its digest.
    pub fn commit(self, digest: &str) -> Result<PathBuf, OciError> {
        let dest = self.dir.join(digest::sha256_hex(digest)?);
        fs::rename(&self.tmp, &dest).map_err(io_err("cannot rename", &dest))?;
        Ok(dest)
    }
}

impl Drop for BlobFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Writes `data` as a blob of the layout `dir`; returns its digest.
pub fn put_bytes(dir: &Path, data: &[u8]) -> Result<String, OciError> {
    let (b, mut f) = BlobFile::create(dir)?;
    f.write_all(data).map_err(io_err("cannot write", &b.tmp))?;
    let d = digest::of_bytes(data);
    b.commit(&d)?;
    Ok(d)
}

/// A layer written: its descriptor's parts and the uncompressed digest.
#[derive(Debug, Clone)]
pub struct Written {
    /// The blob's digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// Its media type.
    pub media_type: &'static str,
}

/// Writes the tree `src` as a layer blob of layout `dir`, compressed as `how` says. A rootless
/// caller that cannot read a file of the tree (a subordinate id's 0600 file) has the tar written
/// in a jail with its subordinate ids mapped (`ljbuild __layer tar`), where the owners are the
/// jail's ids, as here.
pub fn write_layer(
    dir: &Path,
    src: &Path,
    upper: bool,
    how: Compression,
    ids: &IdMap,
) -> Result<Written, OciError> {
    let local = |w: &mut dyn Write| LayerWriter::new(w, ids, upper).write_tree(src).map(drop);
    match write_blob(dir, how, local) {
        Err(OciError::Io { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied && !rustix::process::geteuid().is_root() =>
        {
            write_blob(dir, how, |w| crate::cas::tar_in_jail(src, upper, w))
        }
        r => r,
    }
}

/// A layer blob of layout `dir` from the tar `produce` writes.
fn write_blob(
    dir: &Path,
    how: Compression,
    produce: impl FnOnce(&mut dyn Write) -> Result<(), OciError>,
) -> Result<Written, OciError> {
    let (b, f) = BlobFile::create(dir)?;
    let tmp = b.tmp.clone();
    let mut blob = HashWriter::new(BufWriter::with_capacity(1 << 20, f));
    let (blob, diff_id) = match how {
        Compression::Gzip => {
            let mut diff = HashWriter::new(ParGz::new(blob));
            produce(&mut diff)?;
            let (gz, diff_id, _) = diff.finish();
            (gz.finish().map_err(io_err("cannot write", &tmp))?, Some(diff_id))
        }
        Compression::Zstd => {
            let z = super::compress::zstd(blob).map_err(io_err("cannot write", &tmp))?;
            let mut diff = HashWriter::new(z);
            produce(&mut diff)?;
            let (z, diff_id, _) = diff.finish();
            (z.finish().map_err(io_err("cannot write", &tmp))?, Some(diff_id))
        }
        Compression::None => {
            produce(&mut blob)?;
            (blob, None)
        }
    };
    let (mut w, digest, size) = blob.finish();
    w.flush().map_err(io_err("cannot write", &tmp))?;
    let diff_id = diff_id.unwrap_or_else(|| digest.clone());
    b.commit(&digest)?;
    let media_type = match how {
        Compression::None => MT_LAYER,
        Compression::Gzip => MT_LAYER_GZIP,
        Compression::Zstd => MT_LAYER_ZSTD,
    };
    Ok(Written { digest, size, diff_id, media_type })
}

/// A tag made of a version (`+` is not allowed in tags).
pub fn tag_of(version: &str) -> String {
    version.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect()
}

/// The ljspawn default `PATH`, for images whose world names none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image written into a layout: the manifest's descriptor parts.
#[derive(Debug, Clone)]
pub struct ManifestDesc {
    /// Digest.
    pub digest: String,
    /// Size.
    pub size: u64,
    /// The manifest itself.
    pub raw: Vec<u8>,
    /// The config's digest.
    pub config: String,
    /// The layers (bottom first).
    pub layers: Vec<Written>,
}

/// Writes the blobs (layers, config, manifest) of `meta`'s image into the layout `dir`.
pub fn write_image(
    root: &Root,
    meta: &Meta,
    chain: &Chain,
    dir: &Path,
    how: Compression,
    ui: &Ui,
) -> Result<ManifestDesc, Error> {
    let ids = IdMap::current();
    let mut layers = Vec::new();
    let mut annotations = Vec::new();
    let dirs = chain.layers(root);
    let world = super::world_image(&chain.world_dir);
    let parts = world.as_ref().map_or(0, |w| w.layers.len());
    for (i, src) in dirs.iter().enumerate() {
        let t = std::time::Instant::now();
        let w = write_layer(dir, src, i > 0, how, &ids)?;
        if src.parent() == Some(root.store_dir().as_path()) {
            if let Some(hex) = src.file_name().and_then(|n| n.to_str()) {
                // A later pull of this image knows the layer from this record.
                crate::cas::record(root, i > 0, &[&w.digest, &w.diff_id], &format!("sha256:{hex}"));
            }
        }
        let (label, ann) = if i == 0 {
            (
                format!("world {}", chain.world.name),
                match crate::store::store_link(&chain.world_dir) {
                    Some(d) => {
                        json!({ ANN_WORLD: chain.world.name, ANN_WORLD_ID: chain.world.identity, ANN_WORLD_LAYER: d })
                    }
                    None => json!({ ANN_WORLD: chain.world.name, ANN_WORLD_ID: chain.world.identity }),
                },
            )
        } else if i <= parts {
            let d = &world.as_ref().expect("a world with parts").layers[i - 1];
            (format!("world {} layer {}", chain.world.name, i + 1), json!({ ANN_WORLD_PART: d }))
        } else {
            let p = &chain.parents[i - 1 - parts];
            let m = root
                .read_meta(&p.name, &p.version)?
                .ok_or_else(|| OciError::Source(format!("{}@{} has no meta.json", p.name, p.version)))?;
            let compact = serde_json::to_string(&m).expect("metadata serializes");
            (format!("{}@{}", p.name, p.version), json!({ ANN_META: compact }))
        };
        ui.step(
            "layer",
            &format!("{}/{} {label} {}", i + 1, dirs.len(), super::import::short(&w.digest)),
            Some(t.elapsed()),
        );
        layers.push(w);
        annotations.push(ann);
    }
    let d = world.map(|w| w.defaults).unwrap_or_else(|| Defaults {
        env: vec![DEFAULT_PATH.into()],
        cmd: vec!["/bin/sh".into()],
        ..Defaults::default()
    });
    let mut cfg = serde_json::Map::new();
    if !d.env.is_empty() {
        cfg.insert("Env".into(), json!(d.env));
    }
    if let Some(w) = &d.working_dir {
        cfg.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &d.user {
        cfg.insert("User".into(), json!(u));
    }
    if !d.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(d.entrypoint));
    }
    if !d.cmd.is_empty() {
        cfg.insert("Cmd".into(), json!(d.cmd));
    }
    let history: Vec<_> = (0..layers.len())
        .map(|i| {
            let by = if i <= parts {
                format!("ljbuild world {}", chain.world.name)
            } else {
                let p = &chain.parents[i - 1 - parts];
                format!("ljbuild {}@{}", p.name, p.version)
            };
            json!({ "created": meta.built_at, "created_by": by })
        })
        .collect();
    let config = json!({
        "created": meta.built_at,
        "architecture": super::source::host_arch(),
        "os": "linux",
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
        "history": history,
    });
    let config_raw = serde_json::to_vec(&config).expect("serializes");
    let config_digest = put_bytes(dir, &config_raw)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": { "mediaType": MT_CONFIG, "digest": config_digest, "size": config_raw.len() },
        "layers": layers.iter().zip(&annotations).map(|(l, a)| json!({
            "mediaType": l.media_type, "digest": l.digest, "size": l.size, "annotations": a,
        })).collect::<Vec<_>>(),
        "annotations": {
            "org.opencontainers.image.created": meta.built_at,
            "org.opencontainers.image.title": format!("{}@{}", meta.name, meta.version),
        },
    });
    let raw = serde_json::to_vec(&manifest).expect("serializes");
    let md = put_bytes(dir, &raw)?;
    Ok(ManifestDesc { digest: md, size: raw.len() as u64, raw, config: config_digest, layers })
}

/// Adds (or replaces) `tag` in the layout's `index.json`, written atomically, and writes
/// `oci-layout`.
pub fn tag_layout(dir: &Path, m: &ManifestDesc, tag: &str) -> Result<(), OciError> {
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match fs::read(&index_path) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b)
                .map_err(|e| OciError::Malformed(format!("{}: {e}", index_path.display())))?;
            v["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err("cannot read", &index_path)(e)),
    };
    manifests.retain(|d| d["annotations"][REF_NAME].as_str() != Some(tag));
    manifests.push(json!({
        "mediaType": MT_MANIFEST, "digest": m.digest, "size": m.size,
        "annotations": { REF_NAME: tag },
    }));
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err("cannot write", &layout))?;
    }
    let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests });
    let tmp = dir.join(format!(".index.json.tmp-{}", std::process::id()));
    fs::write(&tmp, serde_json::to_vec(&index).expect("serializes")).map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, &index_path).map_err(io_err("cannot rename", &index_path))
}

/// Tars the layout `dir` into `file` (written under a temporary name, then renamed).
fn archive_layout(dir: &Path, file: &Path) -> Result<(), OciError> {
    let tmp = file.with_extension(format!("ljtmp-{}", std::process::id()));
    let f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    tar.follow_symlinks(false);
    let res = (|| -> io::Result<()> {
        tar.append_path_with_name(dir.join("oci-layout"), "oci-layout")?;
        tar.append_path_with_name(dir.join("index.json"), "index.json")?;
        tar.append_dir_all("blobs", dir.join("blobs"))?;
        tar.into_inner()?.flush()
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("cannot write", file)(e));
    }
    fs::rename(&tmp, file).map_err(io_err("cannot rename", file))
}

/// `ljbuild export NAME[@VERSION] DEST`.
pub fn export(
    root: &Root,
    spec: &str,
    dest: &str,
    how: Compression,
    tls_verify: bool,
    ui: &Ui,
) -> Result<(), Error> {
    let (meta, _, chain) = crate::commands::chain_for(root, spec, ui)?;
    let r = match ImageRef::parse_prefixed(dest)? {
        Some(r) => r,
        None if dest.ends_with(".tar") => ImageRef::Archive { file: dest.into(), tag: None },
        None => ImageRef::Layout { dir: dest.into(), tag: None },
    };
    let t = std::time::Instant::now();
    match &r {
        ImageRef::Registry(rr) => {
            let tag = rr.reference.clone().unwrap_or_else(|| tag_of(&meta.version));
            if tag.starts_with("sha256:") {
                return Err(Error::Usage(format!("push to a tag, not a digest ({dest})")));
            }
            // Staged under a world key: gc skips it while the lock is held, removes it after a crash.
            let key = Root::world_key(&format!(".push-{}", std::process::id()));
            let _lock = root.lock(&key, || {})?;
            let work = root.staging(&key);
            let _ = crate::store::remove_tree(&work);
            crate::store::mkdir_private(&work)?;
            let res = (|| -> Result<(String, super::registry::Stats), Error> {
                let m = write_image(root, &meta, &chain, &work, how, ui)?;
                let mut c = super::registry::Client::connect(rr, tls_verify, true)?;
                let pt = std::time::Instant::now();
                for d in m.layers.iter().map(|l| l.digest.clone()).chain([m.config.clone()]) {
                    let p = work.join(super::source::blob_path(&d)?);
                    c.push_blob(&d, &p)?;
                }
                c.put_manifest(&tag, MT_MANIFEST, &m.raw)?;
                ui.step("push", &format!("{}:{tag}", rr.repo), Some(pt.elapsed()));
                Ok((m.digest, c.stats))
            })();
            let _ = crate::store::remove_tree(&work);
            let (d, st) = res?;
            let mut shown = rr.clone();
            shown.reference = Some(tag);
            outln!(
                "pushed {}@{} to {shown} ({d}): {} blob(s) uploaded ({} bytes), {} already there",
                meta.name,
                meta.version,
                st.uploaded,
                st.uploaded_bytes,
                st.skipped
            );
        }
        ImageRef::Layout { dir, tag } => {
            let tag = tag.clone().unwrap_or_else(|| tag_of(&meta.version));
            fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
            let m = write_image(root, &meta, &chain, dir, how, ui)?;
            tag_layout(dir, &m, &tag)?;
            ui.step(
                "export",
                &format!("{}@{} -> oci:{}:{tag}", meta.name, meta.version, dir.display()),
                Some(t.elapsed()),
            );
            outln!("exported {}@{} to oci:{}:{tag} ({})", meta.name, meta.version, dir.display(), m.digest);
        }
        ImageRef::Archive { file, tag } => {
            let tag = tag.clone().unwrap_or_else(|| tag_of(&meta.version));
            let work = file.with_extension(format!("ljtmp-{}.d", std::process::id()));
            let _ = fs::remove_dir_all(&work);
            let res = (|| -> Result<String, Error> {
                fs::create_dir_all(&work).map_err(io_err("cannot create", &work))?;
                let m = write_image(root, &meta, &chain, &work, how, ui)?;
                tag_layout(&work, &m, &tag)?;
                archive_layout(&work, file)?;
                Ok(m.digest)
            })();
            let _ = fs::remove_dir_all(&work);
            let d = res?;
            ui.step(
                "export",
                &format!("{}@{} -> {}:{tag}", meta.name, meta.version, file.display()),
                Some(t.elapsed()),
            );
            outln!("exported {}@{} to oci-archive:{}:{tag} ({d})", meta.name, meta.version, file.display());
        }
    }
    Ok(())
}
