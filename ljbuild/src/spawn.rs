//! Running jails: ljbuild executes `ljspawn` (found through `LJSPAWN`, next to ljbuild's own
//! executable, or on `PATH`), and nothing else crosses the privilege boundary.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Network mode of a jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Net {
    /// An own network namespace with outbound access through pasta (the default for builds
    /// where pasta can run: root, or a caller who may use /dev/net/tun, with a non-setuid
    /// ljspawn); the host's loopback services stay out of reach.
    Pasta,
    /// Share the host's network (only when asked, or where pasta cannot run).
    Host,
    /// An own network namespace with only loopback.
    None,
}

impl Net {
    /// The `--net` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Net::Pasta => "pasta",
            Net::Host => "host",
            Net::None => "none",
        }
    }
}

/// The network of a build when `--net` is not given: pasta where it can run, else the host's
/// network with the reason (printed as a warning).
pub fn default_build_net(ljspawn: Option<&Path>) -> (Net, Option<String>) {
    use std::os::unix::fs::MetadataExt;
    if !["/usr/bin/pasta", "/usr/local/bin/pasta"].iter().any(|p| Path::new(p).is_file()) {
        return (Net::Host, Some("pasta (Debian package passt) is not installed".into()));
    }
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX);
    if me == 0 {
        return (Net::Pasta, None);
    }
    let setuid = ljspawn
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0);
    if setuid {
        return (Net::Host, Some("ljspawn is setuid, and setuid ljspawn does not run pasta".into()));
    }
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").is_err() {
        return (Net::Host, Some("pasta needs /dev/net/tun, which you may not open".into()));
    }
    (Net::Pasta, None)
}

/// Finds ljspawn: `LJSPAWN` if set and non-empty, else `ljspawn` next to the running executable,
/// else the first `ljspawn` on `PATH`.
pub fn find_ljspawn() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LJSPAWN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        let p = dir.join("ljspawn");
        if p.is_file() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("ljspawn")).find(|p| p.is_file())
}

/// Which layers a caller has ljspawn idmap: for a non-root caller, those of another root (the
/// administrator's); root needs none.
pub fn idmap_for(foreign: Vec<bool>) -> Vec<bool> {
    if rustix::process::geteuid().is_root() {
        Vec::new()
    } else {
        foreign
    }
}

/// Before a jail on layers of another root: the ljspawn that will run must be setuid root, or
/// one line says what the administrator does. (The grant itself ljspawn checks, and names.)
pub fn check_idmap(idmap: &[bool], roots: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !idmap.contains(&true) {
        return Ok(());
    }
    let mut shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    shown.dedup();
    let store = shown.first().cloned().unwrap_or_else(|| "ROOT".into());
    let how = format!(
        "the administrator installs ljspawn setuid (make install-setuid) and grants the store in /etc/lightjail.conf: 'store {store} allow USER'"
    );
    match find_ljspawn() {
        Some(p) => match std::fs::metadata(&p) {
            Ok(m) if m.uid() == 0 && m.mode() & 0o4000 != 0 => Ok(()),
            _ => Err(format!(
                "layers from {} need a setuid ljspawn, and {} is not setuid root ({how})",
                shown.join(", "),
                p.display()
            )),
        },
        None => {
            Err(format!("layers from {} need a setuid ljspawn, and there is none ({how})", shown.join(", ")))
        }
    }
}

/// The parts of an ljspawn command line ljbuild uses.
#[derive(Debug, Clone, Default)]
pub struct JailArgs {
    /// Lower layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// For each layer (missing: false): ljspawn idmaps it (`--idmap-layer`: a layer of
    /// another root, e.g. the administrator's, for a non-root caller).
    pub idmap: Vec<bool>,
    /// A kept upper and its work directory.
    pub upper: Option<(PathBuf, PathBuf)>,
    /// Network mode.
    pub net: Option<Net>,
    /// Read-only binds (host source, jail destination).
    pub ro_binds: Vec<(PathBuf, String)>,
    /// Working directory in the jail.
    pub chdir: Option<String>,
    /// `--timeout`.
    pub timeout: Option<String>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// `--die-with-parent`: the jail dies with ljbuild (a SIGKILLed build leaves nothing running).
    pub die_with_parent: bool,
    /// `--allow-setuid-files`: the jail may make setuid and setgid files. Only for a build, whose
    /// kept upper becomes a layer in the 0700 store (a package such as openssh-server installs
    /// ssh-keysign setuid, and the published layer must keep that mode); never for a jail whose
    /// writes reach the host (`ljbuild run`, binds).
    pub allow_setuid_files: bool,
    /// `--subids`: jail ids 0-65535 (see [`BuildIds`]).
    pub subids: bool,
    /// `--cap-add` (e.g. `container`), kept in the jail's own user namespace.
    pub caps: Vec<String>,
}

/// The ids a build jail maps, as a buildah `RUN` gets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildIds {
    /// Jail ids 0-65535 (`ljspawn --subids`): root: the same ids on the host; others: the caller
    /// as 0 and its `/etc/subuid`/`/etc/subgid` ranges above.
    Full,
    /// The caller has no subordinate ids: one id (the caller as jail root); packages that add
    /// users or chown to them fail. Carries the warning ljbuild prints.
    OneId(String),
}

impl BuildIds {
    /// What this caller gets: `Full` for root and for users with a range in both `/etc/subuid`
    /// and `/etc/subgid`, else `OneId`.
    pub fn detect() -> BuildIds {
        let uid = rustix::process::getuid().as_raw();
        if uid == 0 {
            return BuildIds::Full;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let name = passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        });
        let has = |file: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            has_range(&text, uid, name.as_deref())
        };
        let missing: Vec<&str> = ["/etc/subuid", "/etc/subgid"].into_iter().filter(|f| !has(f)).collect();
        if missing.is_empty() {
            return BuildIds::Full;
        }
        BuildIds::OneId(format!(
            "no range for uid {uid} in {}: the build maps one id (you, as root), so packages that add users or chown files fail (an administrator adds ranges: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {})",
            missing.join(" or "),
            name.as_deref().unwrap_or("USER")
        ))
    }
}

/// True when `text` (`/etc/subuid` syntax) has a non-empty range for `uid` or `name`.
pub fn has_range(text: &str, uid: u32, name: Option<&str>) -> bool {
    text.lines().any(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        f.len() == 3
            && (Some(f[0]) == name || f[0] == uid.to_string())
            && f[1].parse::<u32>().is_ok()
            && f[2].parse::<u32>().is_ok_and(|c| c > 0)
    })
}

impl JailArgs {
    /// The arguments after `ljspawn`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            a.push(if self.idmap.get(i) == Some(&true) { "--idmap-layer" } else { "--layer" }.into());
            a.push(l.into());
        }
        if let Some((u, w)) = &self.upper {
            a.extend(["--upper".into(), u.into(), "--work".into(), w.into()]);
        }
        if let Some(n) = self.net {
            a.extend(["--net".into(), n.as_str().into()]);
        }
        for (src, dest) in &self.ro_binds {
            a.extend(["--ro-bind".into(), src.into(), dest.into()]);
        }
        if let Some(d) = &self.chdir {
            a.extend(["--chdir".into(), d.into()]);
        }
        if let Some(t) = &self.timeout {
            a.extend(["--timeout".into(), t.into()]);
        }
        if self.die_with_parent {
            a.push("--die-with-parent".into());
        }
        if self.allow_setuid_files {
            a.push("--allow-setuid-files".into());
        }
        if self.subids {
            a.push("--subids".into());
        }
        for c in &self.caps {
            a.extend(["--cap-add".into(), c.into()]);
        }
        a.push("--".into());
        a.extend(self.command.iter().cloned());
        a
    }
}

/// Quotes a word for a POSIX shell (for `--dry-run` output).
pub fn shell_quote(w: &OsStr) -> String {
    let s = w.to_string_lossy();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A command line as one shell-quoted string.
pub fn command_line(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_in_order() {
        let j = JailArgs {
            layers: vec!["/w".into(), "/p".into()],
            idmap: vec![true, false],
            upper: Some(("/u".into(), "/k".into())),
            net: Some(Net::Host),
            ro_binds: vec![("/etc/resolv.conf".into(), "/etc/resolv.conf".into())],
            chdir: Some("/src".into()),
            timeout: None,
            command: vec!["/bin/sh".into(), "-c".into(), "echo 'hi'".into()],
            die_with_parent: true,
            allow_setuid_files: true,
            subids: true,
            caps: vec!["container".into()],
        };
        let line = command_line(Path::new("ljspawn"), &j.to_args());
        assert_eq!(
            line,
            "ljspawn --idmap-layer /w --layer /p --upper /u --work /k --net host --ro-bind /etc/resolv.conf \
             /etc/resolv.conf --chdir /src --die-with-parent --allow-setuid-files --subids --cap-add container -- /bin/sh -c 'echo '\\''hi'\\'''"
        );
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn ranges() {
        let t = "alice:100000:65536\n1002:300000:10\nbob:1:0\n";
        assert!(has_range(t, 1000, Some("alice")));
        assert!(has_range(t, 1002, None));
        assert!(!has_range(t, 1001, Some("bob")));
        assert!(!has_range("", 1000, Some("alice")));
    }
}
