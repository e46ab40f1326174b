//! `ljbuild pull REF [NAME@VERSION]`: an image `ljbuild export`/`push` wrote, back into a root
//! as its world and overlays (from the layers' `org.lightjail.*` annotations), so builds on this
//! machine find them and key on them as on the machine that built them. A world or overlay that
//! is present (same identity, same inputs hash) is not transferred.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use super::export::{ANN_META, ANN_WORLD, ANN_WORLD_ID};
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
    for (i, l) in layers.iter().enumerate().skip(1) {
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
    Ok(Plan { world, world_identity, overlays })
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
    // The config (diff_ids, defaults) only when something is to be fetched.
    let mut missing = fs::symlink_metadata(root.world_dir(&plan.world)).is_err();
    for m in &plan.overlays {
        missing |= root.read_meta(&m.name, &m.version)?.is_none();
    }
    let img = if missing { Some(source::load_image(&mut c, &d, &manifest)?) } else { None };
    let img = img.as_ref();

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
            let mut ap = Applier::new(&staging, as_root)?;
            let img = img.expect("loaded when something is missing");
            source::with_layer(&mut c, &img.layers[0], &mut |rd| ap.apply(rd))?;
            ap.finish()?;
            ui.step(
                "layer",
                &format!("world {} {}", plan.world, super::import::short(&img.layers[0].diff_id)),
                Some(lt.elapsed()),
            );
            let meta = WorldImage {
                format: 1,
                source: r.to_string(),
                manifest: Some(d.clone()),
                config: img.config_digest.clone(),
                diff_ids: vec![img.layers[0].diff_id.clone()],
                defaults: Defaults::from_config(&img.config),
                identity: Some(plan.world_identity.clone()),
            };
            let side = super::sidecar(&wdir).expect("a world directory has a name");
            Root::write_atomic(&side, &serde_json::to_vec_pretty(&meta).expect("serializes"))?;
            let _ = fs::create_dir(staging.join("dev"));
            fs::rename(&staging, &wdir).map_err(StoreError::io("cannot move into place", &wdir))?;
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
        let layer = &img.expect("loaded when something is missing").layers[i + 1];
        publish_overlay(root, meta, &mut c, layer, world_mode, as_root, &r, &d, ui)?;
    }
    let top = plan.overlays.last().expect("at least one overlay");
    ui.step("pull", &format!("{}@{} from {r}", top.name, top.version), Some(t.elapsed()));
    println!(
        "pulled {}@{} from {r}: {} blob(s) fetched ({} bytes), {present} layer(s) already here",
        top.name, top.version, c.stats.fetched, c.stats.fetched_bytes
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn publish_overlay(
    root: &Root,
    meta: &Meta,
    c: &mut Client,
    layer: &source::LayerDesc,
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
        fs::create_dir(&upper).map_err(StoreError::io("cannot create", &upper))?;
        fs::set_permissions(&upper, fs::Permissions::from_mode(world_mode))
            .map_err(StoreError::io("cannot chmod", &upper))?;
        let lt = Instant::now();
        let mut ap = Applier::new_upper(&upper, as_root)?;
        source::with_layer(c, layer, &mut |rd| ap.apply(rd))?;
        ap.finish()?;
        ui.step(
            "layer",
            &format!("{name}@{} {}", meta.version, super::import::short(&layer.diff_id)),
            Some(lt.elapsed()),
        );
        let mut m = meta.clone();
        m.log = dest.join("build.log");
        let log = format!("pulled from {r} (manifest {manifest}, layer {})\n", layer.diff_id);
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
