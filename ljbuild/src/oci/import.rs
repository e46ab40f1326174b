//! `ljbuild world import NAME IMAGE`: an image's layers, applied in order, become a world.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::layer::{Applier, Skipped};
use super::source::{self, Blobs, Image};
use super::{Defaults, ImageRef, OciError, WorldImage};
use crate::store::{Root, StoreError};
use crate::ui::Ui;
use crate::Error;

/// Opens the blobs of a reference and loads its image.
pub fn open(r: &ImageRef, tls_verify: bool) -> Result<(Box<dyn Blobs>, Image), OciError> {
    match r {
        ImageRef::Registry(rr) => {
            let mut c = super::registry::Client::connect(rr, tls_verify, false)?;
            let d = c.fetch_manifest(rr.reference.as_deref().unwrap_or("latest"))?;
            let img = source::load_manifest(&mut c, &d, None, 0)?;
            Ok((Box::new(c), img))
        }
        ImageRef::Layout { dir, tag } => {
            if !dir.join("index.json").is_file() {
                return Err(OciError::Source(format!(
                    "{} is not an OCI image layout (no index.json)",
                    dir.display()
                )));
            }
            let mut b = source::Layout { dir: dir.clone() };
            let index = source::read_small(&mut b, "index.json")?;
            let img = source::load_from_index(&mut b, &index, tag.as_deref())?;
            Ok((Box::new(b), img))
        }
        ImageRef::Archive { file, tag } => {
            let mut a = source::Archive::open(file)?.ok_or_else(|| {
                OciError::Source(format!("{} is not an (uncompressed) tar archive", file.display()))
            })?;
            let img = if a.contains("index.json") {
                let index = source::read_small(&mut a, "index.json")?;
                source::load_from_index(&mut a, &index, tag.as_deref())?
            } else if a.contains("manifest.json") {
                source::load_docker(&mut a, tag.as_deref())?
            } else {
                return Err(OciError::Source(format!(
                    "{} holds neither an OCI layout (index.json) nor a docker image (manifest.json)",
                    file.display()
                )));
            };
            Ok((Box::new(a), img))
        }
    }
}

/// How layers are unpacked: into a world's first layer (whiteouts remove what is below), or
/// into a further layer of a world (one layer, an overlay upper: whiteouts in overlay form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The world's first layer (several image layers flattened, when an image is deep).
    World,
    /// A further layer.
    Part,
}

/// Applies `layers` (in order) to the empty directory `dest`, checking digests; `step` is
/// called after each. Rootless with subordinate ids, the layers are unpacked in a jail that
/// keeps their owners ([`crate::cas::JailApplier`]); without, every file is the caller's.
pub fn apply_layers(
    blobs: &mut dyn Blobs,
    layers: &[source::LayerDesc],
    dest: &Path,
    form: Form,
    lowers: &[std::path::PathBuf],
    step: &mut dyn FnMut(&source::LayerDesc, std::time::Instant),
) -> Result<Skipped, Error> {
    let as_root = rustix::process::geteuid().is_root();
    if crate::cas::shifted_imports() {
        let mut ja = match form {
            Form::World => crate::cas::JailApplier::start(dest, false)?,
            Form::Part => crate::cas::JailApplier::start_world_part(dest, lowers)?,
        };
        for l in layers {
            let t = std::time::Instant::now();
            source::with_layer(blobs, l, &mut |r: &mut dyn Read| ja.apply(r))?;
            step(l, t);
        }
        ja.finish()
    } else {
        let mut ap = match form {
            Form::World => Applier::new(dest, as_root)?,
            Form::Part => Applier::new_world_part(dest, as_root, lowers)?,
        };
        for l in layers {
            let t = std::time::Instant::now();
            source::with_layer(blobs, l, &mut |r: &mut dyn Read| ap.apply(r))?;
            step(l, t);
        }
        Ok(ap.finish()?)
    }
}

/// Says once what an import could not keep.
pub fn warn_skipped(skipped: &Skipped, ui: &Ui) {
    if skipped.xattrs > 0 {
        let names: Vec<&str> = skipped.xattr_names.iter().map(String::as_str).collect();
        let more = if skipped.xattrs > names.len() as u64 { ", ..." } else { "" };
        let why = if rustix::process::geteuid().is_root() {
            "the file system refused them"
        } else if crate::cas::shifted_imports() {
            "rootless: a user namespace cannot set trusted.* attributes; file capabilities are kept"
        } else {
            "rootless without subordinate ids: only user.* can be set"
        };
        ui.warn(&format!(
            "{} extended attribute(s) not kept ({}{more}): {why}",
            skipped.xattrs,
            names.join(", ")
        ));
    }
    if skipped.ids > 0 {
        ui.warn(&format!(
            "{} owner(s) above 65535 became 65534 (nobody): rootless jails map ids 0-65535",
            skipped.ids
        ));
    }
    if skipped.devices > 0 && !rustix::process::geteuid().is_root() {
        ui.warn(&format!(
            "{} device node(s) outside /dev skipped (rootless cannot create them)",
            skipped.devices
        ));
    }
}

/// Gives a world unpacked into `dir` an empty `/dev` (every jail mounts its own there) when
/// the image has none, with modification time 0, so its export is the same tar on every
/// machine.
pub fn make_dev(dir: &Path) {
    let dev = dir.join("dev");
    if fs::symlink_metadata(&dev).is_err() && fs::create_dir(&dev).is_ok() {
        let t = rustix::fs::Timespec { tv_sec: 0, tv_nsec: 0 };
        let ts = rustix::fs::Timestamps { last_access: t, last_modification: t };
        let _ = rustix::fs::utimensat(rustix::fs::CWD, &dev, &ts, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
    }
}

/// `sha256:` and 12 hex digits.
pub fn short(d: &str) -> &str {
    &d[..d.len().min(19)]
}

/// Stores one further layer of world `name` (the image's layer `l`, number `i`): unpacked in
/// a staging area of its own, then put into the store (or dropped for the same stored bytes),
/// and recorded. The caller holds the store's lock (shared) until the layer is referenced.
#[allow(clippy::too_many_arguments)]
pub fn store_part(
    root: &Root,
    name: &str,
    i: usize,
    blobs: &mut dyn Blobs,
    l: &source::LayerDesc,
    lowers: &[std::path::PathBuf],
    skipped: &mut Skipped,
    step: &mut dyn FnMut(&source::LayerDesc, std::time::Instant),
) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let key = format!("{}%{i}", Root::world_key(name));
    let _lock = root.lock(&key, || {})?;
    let dir = root.staging(&key);
    crate::store::remove_tree(&dir).map_err(StoreError::io("cannot remove", &dir))?;
    crate::store::mkdir_private(&dir)?;
    let res = (|| -> Result<String, Error> {
        // The root directory of an upper is the merged root's: as the world's.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(StoreError::io("cannot chmod", &dir))?;
        let sk = apply_layers(blobs, std::slice::from_ref(l), &dir, Form::Part, lowers, step)?;
        skipped.add(sk);
        let d = crate::cas::store(root, &dir, true)?;
        let blob = l.digest.as_ref().map(|(b, _)| b.as_str()).unwrap_or(&l.diff_id);
        crate::cas::record(root, true, &[blob, &l.diff_id], &d);
        Ok(d)
    })();
    if res.is_err() {
        let _ = crate::store::remove_tree(&dir);
    }
    res
}

/// Imports the image `r` as world `name` (the lock is held and the name checked by the caller;
/// `staging` exists and is empty) and returns the digest of its first layer, stored; writes the
/// sidecar. The image's first layer becomes the world's layer (the bottom ones flattened into
/// it when the image has more than [`super::MAX_WORLD_LAYERS`]), each further one an overlay
/// layer in the store, listed in the sidecar. A layer this root has (recorded in `store/oci`
/// by the diff id the image's config names) is not read again.
pub fn world_from_image(
    root: &Root,
    name: &str,
    r: &ImageRef,
    tls_verify: bool,
    staging: &Path,
    ui: &Ui,
) -> Result<String, Error> {
    let (mut blobs, img) = open(r, tls_verify)?;
    let n = img.layers.len();
    if n == 0 {
        return Err(OciError::Malformed("the image has no layers".into()).into());
    }
    let flat = n.saturating_sub(super::MAX_WORLD_LAYERS - 1).max(1);
    if flat > 1 {
        ui.step(
            "flatten",
            &format!(
                "{n} layers: the bottom {flat} become the world's first layer (a world keeps at most {} layers)",
                super::MAX_WORLD_LAYERS
            ),
            None,
        );
    }
    let mut k = 0;
    let mut step = |l: &source::LayerDesc, t: Option<std::time::Instant>| {
        k = k % n + 1;
        match t {
            Some(t) => ui.step("layer", &format!("{k}/{n} {}", short(&l.diff_id)), Some(t.elapsed())),
            None => ui.step("layer", &format!("{k}/{n} {} (here)", short(&l.diff_id)), None),
        }
    };
    let mut skipped = Skipped::default();
    let _store = root.store_lock(true)?;
    let known = if flat == 1 { crate::cas::recorded(root, false, &img.layers[0].diff_id) } else { None };
    let bottom = match known {
        Some(d) => {
            step(&img.layers[0], None);
            d
        }
        None => {
            let sk =
                apply_layers(blobs.as_mut(), &img.layers[..flat], staging, Form::World, &[], &mut |l, t| {
                    step(l, Some(t))
                })?;
            skipped = sk;
            make_dev(staging);
            let d = crate::cas::store(root, staging, false)?;
            if flat == 1 {
                let l = &img.layers[0];
                let blob = l.digest.as_ref().map(|(b, _)| b.as_str()).unwrap_or(&l.diff_id);
                crate::cas::record(root, false, &[blob, &l.diff_id], &d);
            }
            d
        }
    };
    let mut parts = Vec::new();
    let mut lowers = vec![root.layer_dir(&bottom)];
    let mut bottom = bottom;
    for (i, l) in img.layers.iter().enumerate().skip(flat) {
        if let Some(d) = crate::cas::recorded(root, true, &l.diff_id) {
            step(l, None);
            lowers.push(root.layer_dir(&d));
            parts.push(d);
            continue;
        }
        match store_part(root, name, i, blobs.as_mut(), l, &lowers, &mut skipped, &mut |l, t| {
            step(l, Some(t))
        }) {
            Ok(d) => {
                lowers.push(root.layer_dir(&d));
                parts.push(d);
            }
            Err(Error::Oci(e)) if matches!(*e, OciError::Unsupported(_)) => {
                let why = e.to_string();
                // A layer that only means something applied onto the ones below: the whole
                // image becomes one layer (what is stored already is gc's).
                ui.warn(&format!("layer {} cannot be kept as a layer of its own ({why}): the image is flattened into one layer", i + 1));
                parts.clear();
                crate::store::remove_tree(staging).map_err(StoreError::io("cannot remove", staging))?;
                crate::store::mkdir_private(staging)?;
                {
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(staging, fs::Permissions::from_mode(0o755))
                        .map_err(StoreError::io("cannot chmod", staging))?;
                }
                skipped =
                    apply_layers(blobs.as_mut(), &img.layers, staging, Form::World, &[], &mut |l, t| {
                        step(l, Some(t))
                    })?;
                make_dev(staging);
                bottom = crate::cas::store(root, staging, false)?;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    warn_skipped(&skipped, ui);
    let meta = WorldImage {
        format: 1,
        source: r.to_string(),
        manifest: img.manifest_digest.clone(),
        config: img.config_digest.clone(),
        diff_ids: img.layers.iter().map(|l| l.diff_id.clone()).collect(),
        defaults: Defaults::from_config(&img.config),
        identity: None,
        layers: parts,
    };
    let dest = root.world_dir(name);
    let side = super::sidecar(&dest).expect("a world directory has a name");
    let json = serde_json::to_vec_pretty(&meta).expect("serializes");
    Root::write_atomic(&side, &json)?;
    Ok(bottom)
}
