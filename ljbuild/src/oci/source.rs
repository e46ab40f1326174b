//! Where images are read from: an OCI image layout (a directory), an OCI archive (a tar of a
//! layout), a `docker save` archive, or a registry (see `registry`). Each gives blobs by
//! location (`blobs/sha256/HEX` in a layout, a path in a docker archive, a digest in a registry);
//! [`load`] picks the manifest and checks every digest it reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::digest::{self, HashReader};
use super::{OciError, LIMIT_JSON};

/// A reader of image blobs.
pub trait Blobs {
    /// Opens the blob at `loc` (a digest's `blobs/sha256/HEX` path, or a path in the source).
    fn open(&mut self, loc: &str) -> Result<Box<dyn Read + Send + '_>, OciError>;
    /// Where the blob of digest `d` is.
    fn blob_loc(&self, d: &str) -> Result<String, OciError> {
        blob_path(d)
    }
    /// Where the manifest of digest `d` is.
    fn manifest_loc(&self, d: &str) -> Result<String, OciError> {
        blob_path(d)
    }
    /// For messages.
    fn describe(&self) -> String;
}

/// Reads a small JSON blob whole (at most [`LIMIT_JSON`] bytes).
pub fn read_small(b: &mut dyn Blobs, loc: &str) -> Result<Vec<u8>, OciError> {
    let mut out = Vec::new();
    let describe = b.describe();
    b.open(loc)?
        .take(LIMIT_JSON + 1)
        .read_to_end(&mut out)
        .map_err(|e| OciError::Source(format!("cannot read {loc} of {describe}: {e}")))?;
    if out.len() as u64 > LIMIT_JSON {
        return Err(OciError::Malformed(format!("{loc} of {describe} is larger than {LIMIT_JSON} bytes")));
    }
    Ok(out)
}

/// The location of a digest's blob in a layout.
pub fn blob_path(d: &str) -> Result<String, OciError> {
    Ok(format!("blobs/sha256/{}", digest::sha256_hex(d)?))
}

/// An OCI image layout directory.
#[derive(Debug)]
pub struct Layout {
    /// Its directory.
    pub dir: PathBuf,
}

impl Blobs for Layout {
    fn open(&mut self, loc: &str) -> Result<Box<dyn Read + Send + '_>, OciError> {
        let p = self.dir.join(loc);
        let f = File::open(&p).map_err(|e| OciError::Io { what: "cannot open", path: p, source: e })?;
        Ok(Box::new(f))
    }
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }
}

/// An uncompressed tar archive whose members are read in place.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    members: HashMap<String, (u64, u64)>,
}

impl Archive {
    /// Indexes the members of the tar file at `path` (headers only). `None` if it is not a tar
    /// archive.
    pub fn open(path: &Path) -> Result<Option<Archive>, OciError> {
        let io = |e: io::Error| OciError::Io { what: "cannot read", path: path.to_path_buf(), source: e };
        let file = File::open(path).map_err(io)?;
        let mut magic = [0u8; 263];
        let n = (&file).read(&mut magic).map_err(io)?;
        if n < 263 || &magic[257..262] != b"ustar" {
            return Ok(None);
        }
        (&file).seek(SeekFrom::Start(0)).map_err(io)?;
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(&file);
        for e in ar.entries_with_seek().map_err(io)? {
            let e = e.map_err(io)?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let Ok(Some(name)) = super::layer::normalize(&e.path_bytes()) else { continue };
            members.insert(name.to_string_lossy().into_owned(), (e.raw_file_position(), e.size()));
        }
        Ok(Some(Archive { path: path.to_path_buf(), file, members }))
    }

    /// Whether the archive holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }
}

impl Blobs for Archive {
    fn open(&mut self, loc: &str) -> Result<Box<dyn Read + Send + '_>, OciError> {
        let &(off, len) = self
            .members
            .get(loc)
            .ok_or_else(|| OciError::Source(format!("{} has no {loc}", self.describe())))?;
        (&self.file).seek(SeekFrom::Start(off)).map_err(|e| OciError::Io {
            what: "cannot read",
            path: self.path.clone(),
            source: e,
        })?;
        Ok(Box::new((&self.file).take(len)))
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// One layer of an image, bottom first.
#[derive(Debug, Clone)]
pub struct LayerDesc {
    /// Where its blob is in the source.
    pub loc: String,
    /// The blob's digest and size when the manifest gives them (docker archives do not).
    pub digest: Option<(String, u64)>,
    /// The digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// Annotations of its descriptor.
    pub annotations: HashMap<String, String>,
}

/// A manifest and its config, read and checked.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's digest (none for docker archives).
    pub manifest_digest: Option<String>,
    /// The config as it was stored (its digest is what identifies the image).
    pub config_raw: Vec<u8>,
    /// The config's digest.
    pub config_digest: String,
    /// The config.
    pub config: ImageConfiguration,
    /// The layers, bottom first.
    pub layers: Vec<LayerDesc>,
    /// The manifest's annotations.
    pub annotations: HashMap<String, String>,
}

/// Reads the small blob `d` at `loc` and checks its size and digest.
pub fn read_verified(
    b: &mut dyn Blobs,
    loc: String,
    d: &str,
    size: Option<u64>,
) -> Result<Vec<u8>, OciError> {
    let data = read_small(b, &loc)?;
    let got = digest::of_bytes(&data);
    if got != d || size.is_some_and(|s| s != data.len() as u64) {
        return Err(OciError::Digest { what: loc, want: d.to_string(), got });
    }
    Ok(data)
}

/// The platform an image must be for here (`linux/amd64` on x86_64).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The tag annotation of index entries.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Picks the manifest of `tag` (or the only one) from an index and loads it.
pub fn load_from_index(b: &mut dyn Blobs, index: &[u8], tag: Option<&str>) -> Result<Image, OciError> {
    let index: ImageIndex = serde_json::from_slice(index)
        .map_err(|e| OciError::Malformed(format!("index.json of {}: {e}", b.describe())))?;
    let ms = index.manifests();
    let picked: Vec<_> = match tag {
        Some(t) => ms
            .iter()
            .filter(|m| m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).is_some_and(|r| r == t))
            .collect(),
        None => ms.iter().collect(),
    };
    let tags: Vec<String> =
        ms.iter().filter_map(|m| m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned()).collect();
    let d = match picked.as_slice() {
        [one] => *one,
        [] if tag.is_some() => {
            return Err(OciError::Source(format!(
                "{} has no tag '{}' (tags: {})",
                b.describe(),
                tag.unwrap_or_default(),
                if tags.is_empty() { "none".into() } else { tags.join(", ") }
            )))
        }
        [] => return Err(OciError::Source(format!("{} holds no image", b.describe()))),
        _ => {
            return Err(OciError::Source(format!(
                "{} holds {} images; name one with :TAG (tags: {})",
                b.describe(),
                picked.len(),
                tags.join(", ")
            )))
        }
    };
    load_manifest(b, d.digest().as_ref(), Some(d.size()), 0)
}

/// Loads the manifest `d`; an index there picks this host's platform.
pub fn load_manifest(b: &mut dyn Blobs, d: &str, size: Option<u64>, depth: u32) -> Result<Image, OciError> {
    let (d, m) = resolve_manifest(b, d, size, depth)?;
    load_image(b, &d, &m)
}

/// Reads and checks the manifest `d`, following an index to this host's platform; returns the
/// image manifest and its digest.
pub fn resolve_manifest(
    b: &mut dyn Blobs,
    d: &str,
    size: Option<u64>,
    depth: u32,
) -> Result<(String, ImageManifest), OciError> {
    let loc = b.manifest_loc(d)?;
    let raw = read_verified(b, loc, d, size)?;
    let v: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|e| OciError::Malformed(format!("manifest {d}: {e}")))?;
    if v.get("manifests").is_some() {
        if depth > 2 {
            return Err(OciError::Malformed(format!("index {d} nests too deep")));
        }
        let index: ImageIndex =
            serde_json::from_slice(&raw).map_err(|e| OciError::Malformed(format!("index {d}: {e}")))?;
        let arch = host_arch();
        let m = index
            .manifests()
            .iter()
            .find(|m| {
                m.platform()
                    .as_ref()
                    .is_none_or(|p| p.os().to_string() == "linux" && p.architecture().to_string() == arch)
            })
            .ok_or_else(|| OciError::Source(format!("index {d} has no image for linux/{arch}")))?;
        return resolve_manifest(b, m.digest().as_ref(), Some(m.size()), depth + 1);
    }
    let m: ImageManifest =
        serde_json::from_slice(&raw).map_err(|e| OciError::Malformed(format!("manifest {d}: {e}")))?;
    Ok((d.to_string(), m))
}

/// Loads the config of manifest `m` (digest `d`) and describes its layers.
pub fn load_image(b: &mut dyn Blobs, d: &str, m: &ImageManifest) -> Result<Image, OciError> {
    let cd = m.config().digest().to_string();
    let loc = b.blob_loc(&cd)?;
    let config_raw = read_verified(b, loc, &cd, Some(m.config().size()))?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_raw).map_err(|e| OciError::Malformed(format!("config {cd}: {e}")))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != m.layers().len() {
        return Err(OciError::Malformed(format!(
            "manifest {d} has {} layers, its config {} diff_ids",
            m.layers().len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::new();
    for (l, diff) in m.layers().iter().zip(diff_ids) {
        let ld = l.digest().to_string();
        let mt = l.media_type().to_string();
        if mt.contains("nondistributable") || mt.contains("foreign") {
            return Err(OciError::Unsupported(format!("layer {ld} is a foreign layer ({mt})")));
        }
        let loc = b.blob_loc(&ld)?;
        layers.push(LayerDesc {
            loc,
            digest: Some((ld, l.size())),
            diff_id: diff.clone(),
            annotations: l.annotations().clone().unwrap_or_default(),
        });
    }
    Ok(Image {
        manifest_digest: Some(d.to_string()),
        config_raw,
        config_digest: cd,
        config,
        layers,
        annotations: m.annotations().clone().unwrap_or_default(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Loads the image of a `docker save` archive (`manifest.json`), `tag` picking one of several.
pub fn load_docker(b: &mut dyn Blobs, tag: Option<&str>) -> Result<Image, OciError> {
    let raw = read_small(b, "manifest.json")?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&raw)
        .map_err(|e| OciError::Malformed(format!("manifest.json of {}: {e}", b.describe())))?;
    let all_tags: Vec<String> =
        entries.iter().flat_map(|e| e.repo_tags.clone().unwrap_or_default()).collect();
    let picked: Vec<&DockerEntry> = match tag {
        Some(t) => entries
            .iter()
            .filter(|e| {
                e.repo_tags.as_ref().is_some_and(|ts| {
                    ts.iter().any(|x| x == t || x.rsplit_once(':').is_some_and(|(_, tt)| tt == t))
                })
            })
            .collect(),
        None => entries.iter().collect(),
    };
    let e = match picked.as_slice() {
        [one] => *one,
        [] => {
            return Err(OciError::Source(format!(
                "{} has no image {} (tags: {})",
                b.describe(),
                tag.unwrap_or(""),
                all_tags.join(", ")
            )))
        }
        _ => {
            return Err(OciError::Source(format!(
                "{} holds several images; name one with :TAG (tags: {})",
                b.describe(),
                all_tags.join(", ")
            )))
        }
    };
    let config_raw = read_small(b, &e.config)?;
    let config_digest = digest::of_bytes(&config_raw);
    // The config's name is its digest (`HEX.json` or `blobs/sha256/HEX`): check it.
    let stem = e.config.rsplit('/').next().unwrap_or("").trim_end_matches(".json");
    if stem.len() == 64 && format!("sha256:{stem}") != config_digest {
        return Err(OciError::Digest {
            what: e.config.clone(),
            want: format!("sha256:{stem}"),
            got: config_digest,
        });
    }
    let config: ImageConfiguration = serde_json::from_slice(&config_raw)
        .map_err(|err| OciError::Malformed(format!("config {}: {err}", e.config)))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != e.layers.len() {
        return Err(OciError::Malformed(format!(
            "{} lists {} layers, its config {} diff_ids",
            b.describe(),
            e.layers.len(),
            diff_ids.len()
        )));
    }
    let layers = e
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| LayerDesc {
            loc: l.clone(),
            digest: None,
            diff_id: d.clone(),
            annotations: HashMap::new(),
        })
        .collect();
    Ok(Image {
        manifest_digest: None,
        config_raw,
        config_digest,
        config,
        layers,
        annotations: HashMap::new(),
    })
}

/// Streams one layer's blob: checks the blob digest and size (when known) and the diff_id
/// over the whole stream, and hands the uncompressed tar to `apply`.
pub fn with_layer(
    b: &mut dyn Blobs,
    layer: &LayerDesc,
    apply: &mut dyn FnMut(&mut dyn Read) -> Result<(), OciError>,
) -> Result<(), OciError> {
    let describe = b.describe();
    let raw = b.open(&layer.loc)?;
    let mut blob = HashReader::new(io::BufReader::with_capacity(1 << 20, raw));
    let mut head = [0u8; 4];
    let n = peek(&mut blob, &mut head)
        .map_err(|e| OciError::Source(format!("cannot read {} of {describe}: {e}", layer.loc)))?;
    let head = &head[..n];
    let rd_err = |e: io::Error| OciError::Source(format!("cannot read {} of {describe}: {e}", layer.loc));
    let (blob_digest, blob_len, diff_digest) = if head.starts_with(&[0x1f, 0x8b]) {
        let mut diff = HashReader::new(flate2::read::MultiGzDecoder::new(Prefixed::new(head.to_vec(), blob)));
        apply(&mut diff)?;
        let (gz, diff_digest, _) = diff.finish().map_err(rd_err)?;
        let (blob, blob_digest, blob_len) = gz.into_inner().inner.finish().map_err(rd_err)?;
        drop(blob);
        (blob_digest, blob_len, diff_digest)
    } else if head == [0x28, 0xb5, 0x2f, 0xfd] {
        let z = zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(
            1 << 20,
            Prefixed::new(head.to_vec(), blob),
        ))
        .map_err(rd_err)?;
        let mut diff = HashReader::new(z);
        apply(&mut diff)?;
        let (z, diff_digest, _) = diff.finish().map_err(rd_err)?;
        let (blob, blob_digest, blob_len) = z.finish().into_inner().inner.finish().map_err(rd_err)?;
        drop(blob);
        (blob_digest, blob_len, diff_digest)
    } else {
        let mut diff = HashReader::new(Prefixed::new(head.to_vec(), blob));
        apply(&mut diff)?;
        let (p, diff_digest, _) = diff.finish().map_err(rd_err)?;
        let (_, blob_digest, blob_len) = p.inner.finish().map_err(rd_err)?;
        (blob_digest, blob_len, diff_digest)
    };
    if let Some((want, size)) = &layer.digest {
        if *want != blob_digest || *size != blob_len {
            return Err(OciError::Digest { what: layer.loc.clone(), want: want.clone(), got: blob_digest });
        }
    }
    if layer.diff_id != diff_digest {
        return Err(OciError::Digest {
            what: format!("{} (uncompressed)", layer.loc),
            want: layer.diff_id.clone(),
            got: diff_digest,
        });
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes (fewer only at the end of the stream).
fn peek(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A reader that yields `head` first, then `inner`.
#[derive(Debug)]
pub struct Prefixed<R> {
    head: Vec<u8>,
    pos: usize,
    /// The rest of the stream.
    pub inner: R,
}

impl<R> Prefixed<R> {
    fn new(head: Vec<u8>, inner: R) -> Self {
        Prefixed { head, pos: 0, inner }
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = (self.head.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}
