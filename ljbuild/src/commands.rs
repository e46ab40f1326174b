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
    if json {
        println!("{}", serde_json::to_string_pretty(&metas).expect("metadata serializes"));
        return Ok(());
    }
    if metas.is_empty() {
        eprintln!("ljbuild: no overlays in {}", root.path.display());
        return Ok(());
    }
    let rows: Vec<[String; 4]> = metas
        .iter()
        .map(|m| {
            [
                format!("{}@{}", m.name, m.version),
                m.world.name.clone(),
                m.parents.last().map_or("-".into(), |p| format!("{}@{}", p.name, p.version)),
                m.built_at.clone(),
            ]
        })
        .collect();
    let head = ["OVERLAY", "WORLD", "PARENT", "BUILT"];
    let w: Vec<usize> =
        (0..4).map(|i| rows.iter().map(|r| r[i].len()).chain([head[i].len()]).max().unwrap_or(0)).collect();
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2]);
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
    let dir = root.overlay_dir(&name, &v);
    let trash = root.staging(&format!("{key}%rm"));
    store::remove_tree(&trash).map_err(StoreError::io("cannot remove", &trash))?;
    fs::rename(&dir, &trash).map_err(StoreError::io("cannot move away", &dir))?;
    store::remove_tree(&trash).map_err(StoreError::io("cannot remove", &trash))?;
    // Drop empty NAME and NAMESPACE directories.
    if let Some(p) = dir.parent() {
        if fs::remove_dir(p).is_ok() {
            let _ = p.parent().map(fs::remove_dir);
        }
    }
    if !kids.is_empty() {
        ui.warn(&format!("{} now depend on a removed overlay", kids.join(", ")));
    }
    println!("removed {name}@{v}");
    Ok(())
}

/// `ljbuild gc`.
pub fn gc(root: &Root) -> Result<(), Error> {
    let staged = root.clean_stale(&[])?;
    let mut logs = 0;
    let dir = root.logs_dir();
    for f in store::read_dir_names(&dir)? {
        let p = dir.join(&f);
        if f.ends_with(".log") && fs::remove_file(&p).is_ok() {
            logs += 1;
        }
    }
    println!("removed {} stale staging area(s), {logs} failed build log(s)", staged.len());
    Ok(())
}

/// Resolves `NAME[@PREFIX]` and its chain.
fn chain_for(root: &Root, spec: &str, ui: &Ui) -> Result<(Meta, resolve::Picked, resolve::Chain), Error> {
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
    if j.net == "host" && Path::new("/etc/resolv.conf").exists() {
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
    for l in chain.layers(root) {
        args.extend(["--layer".into(), l.into()]);
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
    args.push("--".into());
    args.extend(defaults.command(command));
    let ljspawn = spawn::find_ljspawn().ok_or(BuildError::NoLjspawn)?;
    if dry_run {
        println!("overlay  {}@{} ({picked})", meta.name, meta.version);
        println!("chain    {}", chain.describe());
        println!("ljspawn  {}", spawn::command_line(&ljspawn, &args));
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

/// `ljbuild world list`.
pub fn world_list(root: &Root) -> Result<(), Error> {
    let default = root.default_world();
    let worlds = root.worlds()?;
    if worlds.is_empty() {
        eprintln!(
            "ljbuild: no worlds in {} (add one with `ljbuild world import NAME DIR`)",
            root.worlds_dir().display()
        );
    }
    for w in worlds {
        let mark = if default.as_deref() == Some(w.as_str()) { "*" } else { " " };
        let tag = fs::read_to_string(root.world_dir(&w).join("etc/lj-world")).unwrap_or_default();
        let tag = tag.lines().next().unwrap_or("").trim().to_string();
        println!("{mark} {w}{}", if tag.is_empty() { String::new() } else { format!("  ({tag})") });
    }
    Ok(())
}

/// `ljbuild world use NAME`.
pub fn world_use(root: &Root, name: &str) -> Result<(), Error> {
    check_world_name(name)?;
    resolve::world(root, name)?;
    set_default_world(root, name)?;
    println!("default world: {name}");
    Ok(())
}

fn set_default_world(root: &Root, name: &str) -> Result<(), Error> {
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
pub fn world_import(root: &Root, name: &str, source: &Path, ui: &Ui) -> Result<(), Error> {
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
        if let Err(e) = crate::oci::import::world_from_image(root, name, &image, &staging, ui) {
            let _ = store::remove_tree(&staging);
            return Err(e);
        }
        return publish_world(root, name, source, &staging, t, ui);
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
    publish_world(root, name, source, &staging, t, ui)
}

/// Moves an imported world's staging area into place (the first world becomes the default).
fn publish_world(
    root: &Root,
    name: &str,
    source: &Path,
    staging: &Path,
    t: std::time::Instant,
    ui: &Ui,
) -> Result<(), Error> {
    let dest = root.world_dir(name);
    if fs::symlink_metadata(staging.join("bin/sh")).is_err() {
        ui.warn(&format!("world '{name}' has no /bin/sh; builds on it will fail"));
    }
    fs::rename(staging, &dest).map_err(StoreError::io("cannot move into place", &dest))?;
    ui.step("import", &format!("world {name} from {}", source.display()), Some(t.elapsed()));
    if !root.world_dir("default").exists() {
        set_default_world(root, name)?;
        println!("imported world {name} (now the default)");
    } else {
        println!("imported world {name}");
    }
    Ok(())
}
