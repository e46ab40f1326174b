//! `list`, `rm`, `gc`, `run` and `world`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::build::BuildError;
use crate::cli::RunJailArgs;
use crate::resolve;
use crate::spawn;
use crate::store::{self, Meta, OverlayName, Root, StoreError};
use crate::ui::Ui;
use crate::version;
use crate::Error;

/// Splits `NS/NAME@VERSION` (the version optional unless `need_version`).
pub fn parse_ref(s: &str, need_version: bool) -> Result<(OverlayName, Option<String>), Error> {
    let (name, ver) = match s.split_once('@') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    let name = OverlayName::parse(name).map_err(Error::Usage)?;
    match &ver {
        Some(v) => version::validate(v).map_err(Error::Usage)?,
        None if need_version => {
            return Err(Error::Usage(format!("'{s}' has no version (expected NAMESPACE/NAME@VERSION)")))
        }
        None => {}
    }
    Ok((name, ver))
}

/// `ljbuild list [--json]`.
pub fn list(root: &Root, json: bool) -> Result<(), Error> {
    let mut metas = Vec::new();
    for (name, v) in root.overlays()? {
        if let Some(m) = root.read_meta(&name, &v)? {
            metas.push(m);
        }
    }
    // Then what the roots of LIGHTJAIL_PATH offer (those the caller can read), marked.
    for o in &root.others {
        let other = Root::other(o);
        for (name, v) in other.overlays().unwrap_or_default() {
            if let Ok(Some(mut m)) = other.read_meta(&name, &v) {
                m.found_in = Some(o.clone());
                metas.push(m);
            }
        }
    }
    if json {
        let v: Vec<serde_json::Value> = metas
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).expect("metadata serializes");
                let from = m.found_in.as_ref().unwrap_or(&root.path);
                v["root"] = serde_json::json!(from);
                v["own"] = serde_json::json!(m.found_in.is_none());
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).expect("metadata serializes"));
        return Ok(());
    }
    if metas.is_empty() {
        errln!("ljbuild: no overlays in {}", root.path.display());
        return Ok(());
    }
    let rows: Vec<[String; 4]> = metas
        .iter()
        .map(|m| {
            [
                format!("{}@{}", m.name, m.version),
                m.world.name.clone(),
                m.parents.last().map_or("-".into(), |p| format!("{}@{}", p.name, p.version)),
                match &m.found_in {
                    Some(r) => format!("{}  (from {})", m.built_at, r.display()),
                    None => m.built_at.clone(),
                },
            ]
        })
        .collect();
    let head = ["OVERLAY", "WORLD", "PARENT", "BUILT"];
    let w: Vec<usize> =
        (0..4).map(|i| rows.iter().map(|r| r[i].len()).chain([head[i].len()]).max().unwrap_or(0)).collect();
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        outln!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2]);
    }
    Ok(())
}

/// The overlays built directly on `name@version`.
fn children(root: &Root, name: &OverlayName, version: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for (n, v) in root.overlays()? {
        if let Some(m) = root.read_meta(&n, &v)? {
            if m.parents.last().is_some_and(|p| &p.name == name && p.version == version) {
                out.push(format!("{n}@{v}"));
            }
        }
    }
    Ok(out)
}

/// `ljbuild rm NAME@VERSION [--force]`.
pub fn rm(root: &Root, spec: &str, force: bool, ui: &Ui) -> Result<(), Error> {
    let (name, v) = parse_ref(spec, true)?;
    let v = v.unwrap_or_default();
    let key = Root::overlay_key(&name, &v);
    let _lock = root.lock(&key, || ui.step("lock", &format!("waiting for a build of {name}@{v}"), None))?;
    if root.read_meta(&name, &v)?.is_none() {
        let mut versions = root.versions(&name)?;
        versions.sort_by(|a, b| version::compare(a, b));
        return Err(resolve::ResolveError::NoOverlay {
            name,
            prefix: Some(v),
            versions: if versions.is_empty() { Vec::new() } else { versions },
            names: root.names()?.iter().map(ToString::to_string).collect(),
            root: root.path.clone(),
        }
        .into());
    }
    let kids = children(root, &name, &v)?;
    if !kids.is_empty() && !force {
        return Err(StoreError::HasChildren { name, version: v, children: kids }.into());
    }
    let layer = root.read_meta(&name, &v)?.and_then(|m| m.layer);
    remove_overlay(root, &name, &v, &key)?;
    // Its layer goes too, unless another overlay has the same bytes.
    if let Some(d) = layer {
        root.remove_unreferenced(Some(&[d]), false, &[])?;
    }
    if !kids.is_empty() {
        ui.warn(&format!("{} now depend on a removed overlay", kids.join(", ")));
    }
    outln!("removed {name}@{v}");
    Ok(())
}

/// Removes a published overlay (the caller holds its lock): moved away, then deleted; empty NAME
/// and NAMESPACE directories go too.
fn remove_overlay(root: &Root, name: &OverlayName, v: &str, key: &str) -> Result<(), Error> {
    let dir = root.overlay_dir(name, v);
    let trash = root.staging(&format!("{key}%rm"));
    store::remove_tree(&trash).map_err(StoreError::io("cannot remove", &trash))?;
    fs::rename(&dir, &trash).map_err(StoreError::io("cannot move away", &dir))?;
    store::remove_tree(&trash).map_err(StoreError::io("cannot remove", &trash))?;
    if let Some(p) = dir.parent() {
        if fs::remove_dir(p).is_ok() {
            let _ = p.parent().map(fs::remove_dir);
        }
    }
    Ok(())
}

/// `ljbuild gc [--dry-run]`.
pub fn gc(root: &Root, dry_run: bool) -> Result<(), Error> {
    // Derived versions nothing is built on, other than the newest of their name.
    let mut metas = Vec::new();
    for (n, v) in root.overlays()? {
        if let Some(m) = root.read_meta(&n, &v)? {
            metas.push(m);
        }
    }
    let used: std::collections::BTreeSet<(OverlayName, String)> =
        metas.iter().flat_map(|m| m.parents.iter().map(|p| (p.name.clone(), p.version.clone()))).collect();
    let mut newest: std::collections::BTreeMap<OverlayName, (u64, String)> = Default::default();
    for m in &metas {
        let e = newest.entry(m.name.clone()).or_insert((0, String::new()));
        if (m.built_at_ns, m.version.as_str()) > (e.0, e.1.as_str()) {
            *e = (m.built_at_ns, m.version.clone());
        }
    }
    let doomed: Vec<&Meta> = metas
        .iter()
        .filter(|m| version::is_derived(&m.version))
        .filter(|m| !used.contains(&(m.name.clone(), m.version.clone())))
        .filter(|m| newest.get(&m.name).is_some_and(|(_, v)| *v != m.version))
        .collect();
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut removed = 0;
    for m in &doomed {
        let key = Root::overlay_key(&m.name, &m.version);
        if dry_run {
            outln!("{verb} {}@{}", m.name, m.version);
            continue;
        }
        // A build or rm holding it: leave it for the next gc.
        let Some(_lock) = root.try_lock(&key)? else { continue };
        if root.read_meta(&m.name, &m.version)?.is_none() {
            continue;
        }
        remove_overlay(root, &m.name, &m.version, &key)?;
        outln!("{verb} {}@{}", m.name, m.version);
        removed += 1;
    }
    let staged = if dry_run { Vec::new() } else { root.clean_stale(&[])? };
    // Layers nothing references any more (once the versions above are gone).
    let gone: Vec<(OverlayName, String)> =
        doomed.iter().map(|m| (m.name.clone(), m.version.clone())).collect();
    let layers = root.remove_unreferenced(None, dry_run, if dry_run { &gone } else { &[] })?;
    for d in &layers {
        outln!("{verb} layer {d}");
    }
    let mut logs = 0;
    let dir = root.logs_dir();
    for f in store::read_dir_names(&dir)? {
        let p = dir.join(&f);
        if f.ends_with(".log") && (dry_run || fs::remove_file(&p).is_ok()) {
            logs += 1;
        }
    }
    if dry_run {
        outln!(
            "{verb} {} unused derived version(s), {logs} failed build log(s), {} unreferenced layer(s)",
            doomed.len(),
            layers.len()
        );
    } else {
        outln!(
            "{verb} {} stale staging area(s), {logs} failed build log(s), {removed} unused derived version(s), {} unreferenced layer(s)",
            staged.len(),
            layers.len()
        );
    }
    Ok(())
}

/// `ljbuild inspect NAME[@VERSION] [--json]`.
pub fn inspect(root: &Root, spec: &str, json: bool, ui: &Ui) -> Result<(), Error> {
    let (meta, _picked, chain) = chain_for(root, spec, ui)?;
    let layers = chain.layers(root);
    let (below, top) = layers.split_at(layers.len() - 1);
    let diff = crate::inspect::diff(&top[0], below)?;
    let dir = root.overlay_dir(&meta.name, &meta.version);
    if json {
        let v = serde_json::json!({
            "name": meta.name.to_string(),
            "version": meta.version,
            "path": dir,
            "layer": top[0],
            "world": meta.world,
            "parents": meta.parents,
            "inputs_hash": meta.inputs_hash,
            "inputs": meta.inputs,
            "built_at": meta.built_at,
            "build_seconds": meta.build_seconds,
            "builder_uid": meta.builder_uid,
            "net": meta.net,
            "copy": meta.copy,
            "log": meta.log,
            "size": { "files": diff.files, "bytes": diff.bytes },
            "adds": diff.adds,
            "changes": diff.changes,
            "deletes": diff.deletes,
            "unreadable": diff.unreadable,
        });
        outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    let mut o = String::new();
    o.push_str(&format!("overlay  {}@{}\n", meta.name, meta.version));
    o.push_str(&format!("chain    {}\n", chain.describe()));
    o.push_str(&format!(
        "world    {} (identity {})\n",
        meta.world.name,
        &meta.world.identity[..12.min(meta.world.identity.len())]
    ));
    for p in &meta.parents {
        o.push_str(&format!(
            "parent   {}@{} (inputs {})\n",
            p.name,
            p.version,
            &p.inputs_hash[..12.min(p.inputs_hash.len())]
        ));
    }
    o.push_str(&format!("inputs   sha256:{}\n", meta.inputs_hash));
    // The script's lines are hashed one by one; a final newline leaves an empty last line.
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let lines = &meta.inputs.script_lines;
    let n = lines.len() - usize::from(lines.last().is_some_and(|l| l == EMPTY_SHA256));
    o.push_str(&format!("script   {n} line(s)\n"));
    if let Some(c) = &meta.copy {
        o.push_str(&format!(
            "copy     {} entr{} to {c}\n",
            meta.inputs.copy.len(),
            if meta.inputs.copy.len() == 1 { "y" } else { "ies" }
        ));
    }
    o.push_str(&format!(
        "built    {} in {:.2} s by uid {} (net {})\n",
        meta.built_at, meta.build_seconds, meta.builder_uid, meta.net
    ));
    o.push_str(&format!("size     {} file(s), {} byte(s)\n", diff.files, diff.bytes));
    o.push_str(&format!("layer    {}\n", top[0].display()));
    o.push_str(&format!("log      {}\n", meta.log.display()));
    let show = |o: &mut String, what: &str, items: Vec<String>| {
        o.push_str(&format!("{what:<8} {}\n", items.len()));
        for i in items.iter().take(50) {
            o.push_str(&format!("  {i}\n"));
        }
        if items.len() > 50 {
            o.push_str(&format!("  ... {} more (--json lists all)\n", items.len() - 50));
        }
    };
    let fmt = |e: &crate::inspect::Entry| {
        let suffix = if e.kind == "dir" {
            "/"
        } else if e.kind == "symlink" {
            " (symlink)"
        } else {
            ""
        };
        format!("{:04o} {}{suffix}", e.mode, e.path)
    };
    show(&mut o, "adds", diff.adds.iter().map(fmt).collect());
    show(&mut o, "changes", diff.changes.iter().map(fmt).collect());
    show(&mut o, "deletes", diff.deletes.clone());
    if !diff.unreadable.is_empty() {
        o.push_str("(not read: directories of your subordinate ids, closed to you on the host)\n");
        show(&mut o, "unread", diff.unreadable.clone());
    }
    out!("{o}");
    Ok(())
}

/// Resolves `NAME[@PREFIX]` and its chain.
pub(crate) fn chain_for(
    root: &Root,
    spec: &str,
    ui: &Ui,
) -> Result<(Meta, resolve::Picked, resolve::Chain), Error> {
    let (name, prefix) = parse_ref(spec, false)?;
    let (meta, picked) = resolve::overlay_picked(root, &name, prefix.as_deref())?;
    let (chain, warning) = resolve::chain_of(root, &meta)?;
    if let Some(w) = warning {
        ui.warn(&w);
    }
    Ok((meta, picked, chain))
}

/// A host path given on the command line, made absolute against the current directory.
fn host_path(p: &str) -> Result<OsString, Error> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Ok(path.into());
    }
    let cwd = std::env::current_dir().map_err(StoreError::io("cannot get the current directory", "."))?;
    let joined = cwd.join(path);
    // `.` and `./x` read better without the `/.` in the middle.
    Ok(fs::canonicalize(&joined).unwrap_or(joined).into())
}

/// The ljspawn arguments for `run`'s jail options. Mounts go parents first (by the depth of
/// the destination), in command-line order among equals.
fn run_jail_args(j: &RunJailArgs) -> Result<Vec<OsString>, Error> {
    let mut mounts: Vec<(usize, Vec<OsString>)> = Vec::new();
    let depth = |d: &str| d.split('/').filter(|c| !c.is_empty()).count();
    for (flag, pairs) in [("--bind", &j.bind), ("--ro-bind", &j.ro_bind)] {
        for p in pairs.chunks(2) {
            mounts.push((depth(&p[1]), vec![flag.into(), host_path(&p[0])?, p[1].clone().into()]));
        }
    }
    for d in &j.tmpfs {
        mounts.push((depth(d), vec!["--tmpfs".into(), d.into()]));
    }
    if (j.net == "host" || j.net == "pasta") && Path::new("/etc/resolv.conf").exists() {
        mounts.push((2, ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"].map(OsString::from).to_vec()));
    }
    mounts.sort_by_key(|(d, _)| *d);
    let mut a: Vec<OsString> = mounts.into_iter().flat_map(|(_, m)| m).collect();
    for kv in j.setenv.chunks(2) {
        a.extend(["--setenv".into(), kv[0].clone().into(), kv[1].clone().into()]);
    }
    let opts = [
        ("--chdir", &j.chdir),
        ("--user", &j.user),
        ("--memory", &j.memory),
        ("--pids", &j.pids),
        ("--cpus", &j.cpus),
        ("--timeout", &j.timeout),
    ];
    for (flag, v) in opts {
        if let Some(v) = v {
            a.extend([flag.into(), v.into()]);
        }
    }
    a.extend(["--net".into(), j.net.clone().into()]);
    Ok(a)
}

/// `ljbuild run NAME[@PREFIX] [OPTIONS] [-- CMD...]`: says what it picked, then replaces ljbuild
/// with ljspawn (so the exit status is the command's, or ljspawn's own).
pub fn run(
    root: &Root,
    spec: &str,
    jail: &RunJailArgs,
    command: Vec<OsString>,
    dry_run: bool,
    ui: &Ui,
) -> Result<u8, Error> {
    let (meta, picked, chain) = chain_for(root, spec, ui)?;
    let mut args: Vec<OsString> = Vec::new();
    let idmap = crate::spawn::idmap_for(chain.foreign());
    let others: Vec<std::path::PathBuf> = chain
        .world
        .root
        .iter()
        .chain(chain.parents.iter().filter_map(|p| p.root.as_ref()))
        .cloned()
        .collect();
    crate::spawn::check_idmap(&idmap, &others).map_err(crate::build::BuildError::Host)?;
    for (i, l) in chain.layers(root).into_iter().enumerate() {
        let flag = if idmap.get(i) == Some(&true) { "--idmap-layer" } else { "--layer" };
        args.extend([flag.into(), l.into()]);
    }
    // A world imported from an image brings its config's defaults (Env, WorkingDir, User,
    // Entrypoint/Cmd); the caller's options win.
    let defaults = crate::oci::world_image(&chain.world_dir).map(|w| w.defaults).unwrap_or_default();
    let top_first: Vec<std::path::PathBuf> = chain.layers(root).into_iter().rev().collect();
    let user_vars: Vec<&String> = jail.setenv.iter().step_by(2).collect();
    for (k, v) in defaults.env_pairs() {
        if !user_vars.contains(&&k) {
            args.extend(["--setenv".into(), k.into(), v.into()]);
        }
    }
    if let (None, Some(d)) = (&jail.chdir, &defaults.working_dir) {
        args.extend(["--chdir".into(), d.into()]);
    }
    if jail.user.is_none() {
        if let Some(u) = defaults.numeric_user(&top_first)? {
            args.extend(["--user".into(), u.into()]);
        }
    }
    args.extend(run_jail_args(jail)?);
    // The ids the image was built with, so its files show their owners (no capabilities).
    if spawn::BuildIds::detect() == spawn::BuildIds::Full {
        args.push("--subids".into());
    }
    args.push("--".into());
    args.extend(defaults.command(command));
    let ljspawn = spawn::find_ljspawn().ok_or(BuildError::NoLjspawn)?;
    if dry_run {
        outln!("overlay  {}@{} ({picked})", meta.name, meta.version);
        outln!("chain    {}", chain.describe());
        outln!("ljspawn  {}", spawn::command_line(&ljspawn, &args));
        return Ok(0);
    }
    ui.step("run", &format!("{}@{} ({picked})", meta.name, meta.version), None);
    let err = Command::new(&ljspawn).args(&args).exec();
    Err(BuildError::Exec { path: ljspawn, source: err }.into())
}

fn check_world_name(name: &str) -> Result<(), Error> {
    jailfile_grammar::validate_world(name).map_err(|e| Error::Usage(e.to_string()))?;
    if name == "default" || name.starts_with('.') {
        return Err(Error::Usage(format!(
            "world name '{name}' is reserved (not 'default', not starting with '.')"
        )));
    }
    Ok(())
}

/// `ljbuild world list [--json]`.
pub fn world_list(root: &Root, json: bool) -> Result<(), Error> {
    let default = root.default_world();
    let worlds = root.worlds()?;
    let mut users: std::collections::BTreeMap<String, usize> = Default::default();
    for (n, v) in root.overlays()? {
        if let Some(m) = root.read_meta(&n, &v)? {
            *users.entry(m.world.name).or_default() += 1;
        }
    }
    let tag_of = |w: &str| {
        let tag = fs::read_to_string(root.world_dir(w).join("etc/lj-world")).unwrap_or_default();
        tag.lines().next().unwrap_or("").trim().to_string()
    };
    if json {
        let v: Vec<serde_json::Value> = worlds
            .iter()
            .map(|w| {
                serde_json::json!({
                    "name": w,
                    "path": root.world_dir(w),
                    "default": default.as_deref() == Some(w.as_str()),
                    "tag": tag_of(w),
                    "overlays": users.get(w).copied().unwrap_or(0),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    if worlds.is_empty() {
        errln!(
            "ljbuild: no worlds in {} (add one with `ljbuild world import NAME DIR`)",
            root.worlds_dir().display()
        );
    }
    for w in worlds {
        let mark = if default.as_deref() == Some(w.as_str()) { "*" } else { " " };
        let tag = tag_of(&w);
        outln!("{mark} {w}{}", if tag.is_empty() { String::new() } else { format!("  ({tag})") });
    }
    // The worlds of the roots of LIGHTJAIL_PATH that the caller can read, marked.
    for o in &root.others {
        for w in Root::other(o).worlds().unwrap_or_default() {
            outln!("  {w}  (from {})", o.display());
        }
    }
    Ok(())
}

/// `ljbuild world rm NAME [--force]`: a world that is a symlink loses only the link.
pub fn world_rm(root: &Root, name: &str, force: bool, ui: &Ui) -> Result<(), Error> {
    check_world_name(name)?;
    let key = Root::world_key(name);
    let _lock =
        root.lock(&key, || ui.step("lock", &format!("waiting for an import of world {name}"), None))?;
    let dir = root.world_dir(name);
    resolve::world(root, name)?;
    let mut users = Vec::new();
    for (n, v) in root.overlays()? {
        if root.read_meta(&n, &v)?.is_some_and(|m| m.world.name == name) {
            users.push(format!("{n}@{v}"));
        }
    }
    if !users.is_empty() && !force {
        let mut shown: Vec<String> = users.iter().take(10).cloned().collect();
        if users.len() > 10 {
            shown.push(format!("... {} more", users.len() - 10));
        }
        return Err(StoreError::InUse(format!(
            "world '{name}' has overlays built on it: {} (remove those first, or use --force)",
            shown.join(", ")
        ))
        .into());
    }
    let mut layers: Vec<String> = store::store_link(&dir).into_iter().collect();
    layers.extend(crate::oci::world_image(&dir).map(|w| w.layers).unwrap_or_default());
    if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(&dir).map_err(StoreError::io("cannot remove", &dir))?;
        if let Some(side) = crate::oci::sidecar(&dir) {
            // It references the world's further layers.
            let _ = fs::remove_file(side);
        }
        if !layers.is_empty() {
            root.remove_unreferenced(Some(&layers), false, &[])?;
        }
    } else {
        let trash = root.staging(&format!("{key}%rm"));
        store::remove_tree(&trash).map_err(StoreError::io("cannot remove", &trash))?;
        fs::rename(&dir, &trash).map_err(StoreError::io("cannot move away", &dir))?;
        store::remove_tree(&trash).map_err(StoreError::io("cannot remove", &trash))?;
    }
    if let Some(side) = crate::oci::sidecar(&dir) {
        // What an image import kept of the image (its run defaults).
        let _ = fs::remove_file(side);
    }
    let mut note = String::new();
    if root.default_world().as_deref() == Some(name) {
        let link = root.world_dir("default");
        fs::remove_file(&link).map_err(StoreError::io("cannot remove", &link))?;
        note = " (it was the default; pick another with `ljbuild world use NAME`)".into();
    }
    if !users.is_empty() {
        ui.warn(&format!("{} overlay(s) were built on world '{name}' and cannot run now", users.len()));
    }
    outln!("removed world {name}{note}");
    Ok(())
}

/// `ljbuild world use NAME`.
pub fn world_use(root: &Root, name: &str) -> Result<(), Error> {
    check_world_name(name)?;
    resolve::world(root, name)?;
    set_default_world(root, name)?;
    outln!("default world: {name}");
    Ok(())
}

pub(crate) fn set_default_world(root: &Root, name: &str) -> Result<(), Error> {
    let link = root.world_dir("default");
    if fs::symlink_metadata(&link).is_ok_and(|m| !m.file_type().is_symlink()) {
        return Err(StoreError::Exists(format!(
            "{} exists and is not a symlink; remove it first",
            link.display()
        ))
        .into());
    }
    let tmp = root.worlds_dir().join(".default.tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).map_err(StoreError::io("cannot create symlink", &tmp))?;
    fs::rename(&tmp, &link).map_err(StoreError::io("cannot replace", &link))?;
    Ok(())
}

/// tar options for an import: as root keep owners and extended attributes (file capabilities);
/// everyone skips the contents of `/dev` (device nodes cannot be made rootless, and every jail
/// gets its own minimal `/dev` anyway).
fn tar_extract_args(dest: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-x".into(), "-p".into(), "-C".into(), dest.into()];
    if rustix::process::geteuid().is_root() {
        a.extend(["--same-owner".into(), "--xattrs".into(), "--xattrs-include=*".into()]);
    } else {
        a.push("--no-same-owner".into());
    }
    a.extend(["--exclude=./dev/*".into(), "--exclude=dev/*".into()]);
    a
}

/// Copies directory `src` into `dest` with `tar -c | tar -x`.
fn import_dir(src: &Path, dest: &Path) -> std::io::Result<bool> {
    let mut create = Command::new("tar");
    create.arg("-c").arg("-f").arg("-").arg("-C").arg(src);
    if rustix::process::geteuid().is_root() {
        create.args(["--xattrs", "--xattrs-include=*"]);
    }
    create.args(["--exclude=./dev/*", "."]).stdout(std::process::Stdio::piped());
    let mut producer = create.spawn()?;
    let pipe = producer.stdout.take().expect("piped stdout");
    let consumed = Command::new("tar").args(tar_extract_args(dest)).arg("-f").arg("-").stdin(pipe).status();
    let produced = producer.wait()?;
    Ok(consumed?.success() && produced.success())
}

/// Extracts a tarball (any compression GNU tar recognizes) into `dest`.
fn import_tarball(src: &Path, dest: &Path) -> std::io::Result<bool> {
    Ok(Command::new("tar").args(tar_extract_args(dest)).arg("-f").arg(src).status()?.success())
}

/// `ljbuild world import NAME DIR-or-TARBALL`.
pub fn world_import(root: &Root, name: &str, source: &Path, tls_verify: bool, ui: &Ui) -> Result<(), Error> {
    check_world_name(name)?;
    let dest = root.world_dir(name);
    let key = Root::world_key(name);
    let _lock =
        root.lock(&key, || ui.step("lock", &format!("waiting for another import of world {name}"), None))?;
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(StoreError::Exists(format!("world '{name}' exists ({})", dest.display())).into());
    }
    let image = crate::oci::ImageRef::detect(source)?;
    let md = if image.is_none() {
        Some(fs::metadata(source).map_err(StoreError::io("cannot read", source))?)
    } else {
        None
    };
    let staging = root.staging(&key);
    store::remove_tree(&staging).map_err(StoreError::io("cannot remove", &staging))?;
    store::mkdir_private(&staging)?;
    // The world's `/`: 0755 unless the source says otherwise (a directory's `.`, a tarball's `./`
    // entry; layer tarballs from buildah and OCI images have none).
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o755))
        .map_err(StoreError::io("cannot chmod", &staging))?;
    let t = std::time::Instant::now();
    if let Some(image) = image {
        return match crate::oci::import::world_from_image(root, name, &image, tls_verify, &staging, ui) {
            Ok(layer) => publish_world(root, name, source, &staging, Some(layer), t, ui),
            Err(e) => {
                let _ = store::remove_tree(&staging);
                Err(e)
            }
        };
    }
    if let Some(side) = crate::oci::sidecar(&dest) {
        // A stale image record of an earlier world of this name.
        let _ = fs::remove_file(side);
    }
    let ok = if md.is_some_and(|m| m.is_dir()) {
        import_dir(source, &staging)
    } else {
        import_tarball(source, &staging)
    };
    let ok = ok.map_err(StoreError::io("cannot run tar for", source));
    if !matches!(ok, Ok(true)) {
        let _ = store::remove_tree(&staging);
        ok?;
        return Err(StoreError::Io {
            what: "cannot import",
            path: source.to_path_buf(),
            source: std::io::Error::other("tar failed (see its message above)"),
        }
        .into());
    }
    // The jail always gets a fresh /dev; only the mount point is kept.
    let dev = staging.join("dev");
    if !dev.exists() {
        let _ = fs::create_dir(&dev);
    }
    publish_world(root, name, source, &staging, None, t, ui)
}

/// Moves an imported world's staging area into place (the first world becomes the default).
fn publish_world(
    root: &Root,
    name: &str,
    source: &Path,
    staging: &Path,
    stored: Option<String>,
    t: std::time::Instant,
    ui: &Ui,
) -> Result<(), Error> {
    let dest = root.world_dir(name);
    // Into the store under its content digest (an identical world there is kept and this copy
    // dropped); `worlds/NAME` becomes a link to it. An image's first layer is stored already.
    let _store = root.store_lock(true)?;
    let layer = match stored {
        Some(d) => {
            let _ = store::remove_tree(staging);
            d
        }
        None => crate::cas::store(root, staging, false)?,
    };
    let mut layers = vec![root.layer_dir(&layer)];
    layers.extend(crate::oci::world_layers(root, &dest));
    if !layers.iter().any(|l| fs::symlink_metadata(l.join("bin/sh")).is_ok()) {
        ui.warn(&format!("world '{name}' has no /bin/sh; builds on it will fail"));
    }
    Root::link_layer(&dest, &layer, 1)?;
    drop(_store);
    ui.step(
        "import",
        &format!("world {name} from {} as {}", source.display(), crate::oci::import::short(&layer)),
        Some(t.elapsed()),
    );
    if !root.world_dir("default").exists() {
        set_default_world(root, name)?;
        outln!("imported world {name} (now the default)");
    } else {
        outln!("imported world {name}");
    }
    Ok(())
}
