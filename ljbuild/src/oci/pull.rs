//! `ljbuild pull REF [NAME@VERSION]`: an image `ljbuild export`/`push` wrote, back into a root
//! as its world and overlays (from the layers' `org.lightjail.*` annotations), so builds on this
//! machine find them and key on them as on the machine that built them. A world or overlay that
//! is present (same identity, same inputs hash) is not transferred.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use super::export::{ANN_META, ANN_WORLD, ANN_WORLD_ID, ANN_WORLD_LAYER, ANN_WORLD_PART};
use super::layer::Applier;
use super::registry::{Client, RegistryRef};
use super::source;
use super::{Defaults, ImageRef, OciError, WorldImage};
use crate::store::{self, Meta, OverlayName, Root, StoreError};
use crate::ui::Ui;
use crate::Error;

/// What the image says it holds.
struct Plan {
    world: String,
    world_identity: String,
    world_layer: Option<String>,
    /// The world's further layers (their annotated store digests).
    world_parts: Vec<Option<String>>,
    overlays: Vec<Meta>,
}

fn plan_of(layers: &[HashMap<String, String>], r: &RegistryRef) -> Result<Plan, OciError> {
    let not_ours = || {
        OciError::Source(format!(
            "{r} is not an image ljbuild exported (its layers have no org.lightjail annotations); \
             make it a world instead: ljbuild world import NAME {r}"
        ))
    };
    let first = layers.first().ok_or_else(not_ours)?;
    let world = first.get(ANN_WORLD).ok_or_else(not_ours)?.clone();
    let mut overlays = Vec::new();
    let mut world_parts = Vec::new();
    for l in layers.iter().skip(1) {
        match l.get(ANN_WORLD_PART) {
            Some(d) => world_parts.push(Some(d.clone()).filter(|d| valid_digest(d))),
            None => break,
        }
    }
    for (i, l) in layers.iter().enumerate().skip(1 + world_parts.len()) {
        let raw = l.get(ANN_META).ok_or_else(not_ours)?;
        let m: Meta = serde_json::from_str(raw)
            .map_err(|e| OciError::Malformed(format!("{ANN_META} annotation of layer {}: {e}", i + 1)))?;
        overlays.push(m);
    }
    if overlays.is_empty() {
        return Err(not_ours());
    }
    let world_identity =
        first.get(ANN_WORLD_ID).cloned().unwrap_or_else(|| overlays[0].world.identity.clone());
    let world_layer = first.get(ANN_WORLD_LAYER).filter(|d| valid_digest(d)).cloned();
    for m in &mut overlays {
        m.layer = m.layer.take().filter(|d| valid_digest(d));
    }
    Ok(Plan { world, world_identity, world_layer, world_parts, overlays })
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(store::is_hex_digest)
}

/// `ljbuild pull REF [NAME@VERSION]`.
pub fn pull(
    root: &Root,
    reference: &str,
    rename: Option<&str>,
    tls_verify: bool,
    ui: &Ui,
) -> Result<(), Error> {
    let r = match ImageRef::parse_prefixed(reference)? {
        Some(ImageRef::Registry(r)) => r,
        _ => {
            return Err(Error::Usage(format!(
                "'{reference}' is not a registry reference (docker://HOST/REPOSITORY[:TAG])"
            )))
        }
    };
    let t = Instant::now();
    let mut c = Client::connect(&r, tls_verify, false)?;
    let d = c.fetch_manifest(r.reference.as_deref().unwrap_or("latest"))?;
    let (d, manifest) = source::resolve_manifest(&mut c, &d, None, 0)?;
    let anns: Vec<HashMap<String, String>> =
        manifest.layers().iter().map(|l| l.annotations().clone().unwrap_or_default()).collect();
    let mut plan = plan_of(&anns, &r)?;
    if let Some(spec) = rename {
        let (name, version) = crate::commands::parse_ref(spec, true)?;
        let top = plan.overlays.last_mut().expect("at least one overlay");
        top.name = name;
        top.version = version.unwrap_or_default();
    }
    let as_root = rustix::process::geteuid().is_root();
    let mut present = 0;
    // What the store's own records say each layer (by its blob digest) is here; what an
    // image's annotations say of itself is a hint, never a reason to skip a layer.
    let blobs: Vec<String> = manifest.layers().iter().map(|l| l.digest().to_string()).collect();
    let mut known: Vec<Option<String>> =
        blobs.iter().enumerate().map(|(i, b)| crate::cas::recorded(root, i > 0, b)).collect();
    let world_missing = fs::symlink_metadata(root.world_dir(&plan.world)).is_err();
    // Layers 0..=P are the world's (its first and P further ones), then one per overlay.
    let p = plan.world_parts.len();
    let mut needed = vec![world_missing; 1 + p];
    for m in &plan.overlays {
        needed.push(root.read_meta(&m.name, &m.version)?.is_none());
    }
    // The config (diff_ids, defaults) only when something is to be fetched, or a world made.
    let missing = needed.iter().zip(&known).any(|(n, k)| *n && k.is_none());
    let img = if missing { Some(source::load_image(&mut c, &d, &manifest)?) } else { None };
    let img = img.as_ref();
    if let Some(img) = img {
        // A layer the annotations name and the store has, but no record ties to this blob:
        // it stands for the image's layer only if ljbuild's export of it is that layer (the
        // diff id the config, checked against the manifest, names).
        let claims = std::iter::once(&plan.world_layer)
            .chain(&plan.world_parts)
            .chain(plan.overlays.iter().map(|m| &m.layer));
        for (i, claim) in claims.enumerate() {
            let Some(claim) = claim.as_ref().filter(|c| root.layer_dir(c).is_dir()) else { continue };
            if !needed[i] || known[i].is_some() {
                continue;
            }
            let want = &img.layers[i].diff_id;
            let got = crate::cas::export_diff_id(&root.layer_dir(claim), i > 0)?;
            if got == *want {
                crate::cas::record(root, i > 0, &[&blobs[i], want], claim);
                known[i] = Some(claim.clone());
            }
        }
    }

    // The world.
    let wdir = root.world_dir(&plan.world);
    if fs::symlink_metadata(&wdir).is_ok() {
        let id = crate::resolve::world_identity(&wdir)?;
        if id != plan.world_identity {
            return Err(StoreError::Exists(format!(
                "world '{}' exists here with other contents than {r}'s (remove it with `ljbuild world rm`, or pull into another root)",
                plan.world
            ))
            .into());
        }
        present += 1;
    } else {
        let key = Root::world_key(&plan.world);
        let _lock = root.lock(&key, || {
            ui.step("lock", &format!("waiting for an import of world {}", plan.world), None)
        })?;
        let staging = root.staging(&key);
        store::remove_tree(&staging).map_err(StoreError::io("cannot remove", &staging))?;
        store::mkdir_private(&staging)?;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))
            .map_err(StoreError::io("cannot chmod", &staging))?;
        let res = (|| -> Result<(), Error> {
            let lt = Instant::now();
            let img = img.expect("loaded when something is missing");
            let _store = root.store_lock(true)?;
            let layer = match &known[0] {
                Some(d) => {
                    // The same bytes are here already (another world, or another image's).
                    store::remove_tree(&staging).map_err(StoreError::io("cannot remove", &staging))?;
                    present += 1;
                    d.clone()
                }
                _ if crate::cas::shifted_imports() => {
                    let mut ja = crate::cas::JailApplier::start(&staging, false)?;
                    source::with_layer(&mut c, &img.layers[0], &mut |rd| ja.apply(rd))?;
                    ja.finish()?;
                    super::import::make_dev(&staging);
                    let l = crate::cas::store(root, &staging, false)?;
                    crate::cas::record(root, false, &[&blobs[0], &img.layers[0].diff_id], &l);
                    l
                }
                _ => {
                    let mut ap = Applier::new(&staging, as_root)?;
                    source::with_layer(&mut c, &img.layers[0], &mut |rd| ap.apply(rd))?;
                    ap.finish()?;
                    super::import::make_dev(&staging);
                    let l = crate::cas::store(root, &staging, false)?;
                    crate::cas::record(root, false, &[&blobs[0], &img.layers[0].diff_id], &l);
                    l
                }
            };
            ui.step(
                "layer",
                &format!("world {} {}", plan.world, super::import::short(&layer)),
                Some(lt.elapsed()),
            );
            // Its further layers.
            let mut parts = Vec::new();
            let mut lowers = vec![root.layer_dir(&layer)];
            let mut skipped = super::layer::Skipped::default();
            for (k, have) in known.iter().enumerate().take(p + 1).skip(1) {
                if let Some(have) = have {
                    present += 1;
                    lowers.push(root.layer_dir(have));
                    parts.push(have.clone());
                    continue;
                }
                let l = &img.layers[k];
                let mut step = |l: &source::LayerDesc, t: Instant| {
                    ui.step(
                        "layer",
                        &format!("world {} layer {} {}", plan.world, k + 1, super::import::short(&l.diff_id)),
                        Some(t.elapsed()),
                    )
                };
                let part = super::import::store_part(
                    root,
                    &plan.world,
                    k,
                    &mut c,
                    l,
                    &lowers,
                    &mut skipped,
                    &mut step,
                )?;
                lowers.push(root.layer_dir(&part));
                parts.push(part);
            }
            super::import::warn_skipped(&skipped, ui);
            let meta = WorldImage {
                format: 1,
                source: r.to_string(),
                manifest: Some(d.clone()),
                config: img.config_digest.clone(),
                diff_ids: img.layers[..=p].iter().map(|l| l.diff_id.clone()).collect(),
                defaults: Defaults::from_config(&img.config),
                identity: Some(plan.world_identity.clone()),
                layers: parts,
            };
            let side = super::sidecar(&wdir).expect("a world directory has a name");
            Root::write_atomic(&side, &serde_json::to_vec_pretty(&meta).expect("serializes"))?;
            Root::link_layer(&wdir, &layer, 1)?;
            Ok(())
        })();
        if let Err(e) = res {
            let _ = store::remove_tree(&staging);
            return Err(e);
        }
        if root.default_world().is_none() {
            let _ = crate::commands::set_default_world(root, &plan.world);
        }
    }

    // The overlays, oldest first.
    let world_mode = fs::metadata(&wdir).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o755);
    for (i, meta) in plan.overlays.iter().enumerate() {
        if let Some(have) = root.read_meta(&meta.name, &meta.version)? {
            if have.inputs_hash != meta.inputs_hash {
                return Err(
                    StoreError::Immutable { name: meta.name.clone(), version: meta.version.clone() }.into()
                );
            }
            present += 1;
            continue;
        }
        if let Some(have) = &known[p + 1 + i] {
            // Its bytes are here (under another name or version): only the reference is made.
            let mut m = meta.clone();
            m.layer = Some(have.clone());
            publish_overlay(root, &m, None, world_mode, as_root, &r, &d, ui)?;
            present += 1;
            continue;
        }
        let layer = &img.expect("loaded when something is missing").layers[p + 1 + i];
        publish_overlay(root, meta, Some((&mut c, layer)), world_mode, as_root, &r, &d, ui)?;
    }
    let top = plan.overlays.last().expect("at least one overlay");
    ui.step("pull", &format!("{}@{} from {r}", top.name, top.version), Some(t.elapsed()));
    outln!(
        "pulled {}@{} from {r}: {} blob(s) fetched ({} bytes), {present} layer(s) already here",
        top.name,
        top.version,
        c.stats.fetched,
        c.stats.fetched_bytes
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn publish_overlay(
    root: &Root,
    meta: &Meta,
    fetch: Option<(&mut Client, &source::LayerDesc)>,
    world_mode: u32,
    as_root: bool,
    r: &RegistryRef,
    manifest: &str,
    ui: &Ui,
) -> Result<(), Error> {
    let name: &OverlayName = &meta.name;
    let key = Root::overlay_key(name, &meta.version);
    let _lock = root
        .lock(&key, || ui.step("lock", &format!("waiting for a build of {name}@{}", meta.version), None))?;
    let dest = root.overlay_dir(name, &meta.version);
    if dest.exists() {
        return Err(StoreError::Exists(format!("{name}@{} appeared while pulling", meta.version)).into());
    }
    let staging = root.staging(&key);
    store::remove_tree(&staging).map_err(StoreError::io("cannot remove", &staging))?;
    store::mkdir_private(&staging)?;
    let res = (|| -> Result<(), Error> {
        let upper = staging.join("root");
        let _store = root.store_lock(true)?;
        let lt = Instant::now();
        let mut m = meta.clone();
        let what = match fetch {
            Some((c, layer)) => {
                fs::create_dir(&upper).map_err(StoreError::io("cannot create", &upper))?;
                fs::set_permissions(&upper, fs::Permissions::from_mode(world_mode))
                    .map_err(StoreError::io("cannot chmod", &upper))?;
                if crate::cas::shifted_imports() {
                    let mut ja = crate::cas::JailApplier::start(&upper, true)?;
                    source::with_layer(c, layer, &mut |rd| ja.apply(rd))?;
                    ja.finish()?;
                } else {
                    let mut ap = Applier::new_upper(&upper, as_root)?;
                    source::with_layer(c, layer, &mut |rd| ap.apply(rd))?;
                    ap.finish()?;
                }
                // Stored under the digest of what is on disk here (a rootless pull keeps only
                // user.* attributes: not always the digest the image names).
                let l = crate::cas::store(root, &upper, true)?;
                let blob = layer.digest.as_ref().map(|(b, _)| b.as_str()).unwrap_or(&layer.diff_id);
                crate::cas::record(root, true, &[blob, &layer.diff_id], &l);
                m.layer = Some(l);
                format!("layer {}", layer.diff_id)
            }
            None => "its layer was here".to_string(),
        };
        let digest = m.layer.clone().expect("a stored layer");
        Root::link_layer(&upper, &digest, 3)?;
        ui.step(
            "layer",
            &format!("{name}@{} {}", meta.version, super::import::short(&digest)),
            Some(lt.elapsed()),
        );
        m.log = dest.join("build.log");
        let log = format!("pulled from {r} (manifest {manifest}, {what})\n");
        fs::write(staging.join("build.log"), log)
            .map_err(StoreError::io("cannot write", staging.join("build.log")))?;
        Root::write_atomic(&staging.join("meta.json"), &serde_json::to_vec_pretty(&m).expect("serializes"))?;
        let parent = dest.parent().expect("overlay dir has a parent");
        store::mkdir_private(parent)?;
        fs::rename(&staging, &dest).map_err(StoreError::io("cannot publish to", &dest))?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = store::remove_tree(&staging);
        return Err(e);
    }
    Ok(())
}
