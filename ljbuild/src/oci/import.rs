//! `ljbuild world import NAME IMAGE`: an image's layers, applied in order, become a world.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::layer::Applier;
use super::source::{self, Blobs, Image};
use super::{Defaults, ImageRef, OciError, WorldImage};
use crate::store::Root;
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

/// Applies every layer of `img` (from `blobs`) to the empty directory `dest`, checking digests.
///
/// Rootless with subordinate ids, the layers are unpacked in a jail that keeps their owners
/// ([`crate::cas::JailApplier`]); without, every file is the caller's.
pub fn unpack(blobs: &mut dyn Blobs, img: &Image, dest: &Path, ui: &Ui) -> Result<(), Error> {
    let as_root = rustix::process::geteuid().is_root();
    let step = |i: usize, l: &source::LayerDesc, t: std::time::Instant| {
        ui.step("layer", &format!("{}/{} {}", i + 1, img.layers.len(), short(&l.diff_id)), Some(t.elapsed()))
    };
    let skipped = if crate::cas::shifted_imports() {
        let mut ja = crate::cas::JailApplier::start(dest, false)?;
        for (i, l) in img.layers.iter().enumerate() {
            let t = std::time::Instant::now();
            source::with_layer(blobs, l, &mut |r: &mut dyn Read| ja.apply(r))?;
            step(i, l, t);
        }
        ja.finish()?
    } else {
        let mut ap = Applier::new(dest, as_root)?;
        for (i, l) in img.layers.iter().enumerate() {
            let t = std::time::Instant::now();
            source::with_layer(blobs, l, &mut |r: &mut dyn Read| ap.apply(r))?;
            step(i, l, t);
        }
        ap.finish()?
    };
    if skipped.xattrs > 0 {
        ui.warn(&format!(
            "{} extended attribute(s) not kept (rootless: only user.* can be set)",
            skipped.xattrs
        ));
    }
    if skipped.devices > 0 && !as_root {
        ui.warn(&format!(
            "{} device node(s) outside /dev skipped (rootless cannot create them)",
            skipped.devices
        ));
    }
    Ok(())
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

/// Imports the image `r` as world `name` (the lock is held and the name checked by the caller;
/// `staging` exists and is empty). Writes the sidecar; the caller renames the staging area.
pub fn world_from_image(
    root: &Root,
    name: &str,
    r: &ImageRef,
    tls_verify: bool,
    staging: &Path,
    ui: &Ui,
) -> Result<(), Error> {
    let (mut blobs, img) = open(r, tls_verify)?;
    unpack(blobs.as_mut(), &img, staging, ui)?;
    make_dev(staging);
    let meta = WorldImage {
        format: 1,
        source: r.to_string(),
        manifest: img.manifest_digest.clone(),
        config: img.config_digest.clone(),
        diff_ids: img.layers.iter().map(|l| l.diff_id.clone()).collect(),
        defaults: Defaults::from_config(&img.config),
        identity: None,
    };
    let dest = root.world_dir(name);
    let side = super::sidecar(&dest).expect("a world directory has a name");
    let json = serde_json::to_vec_pretty(&meta).expect("serializes");
    Root::write_atomic(&side, &json)?;
    Ok(())
}
