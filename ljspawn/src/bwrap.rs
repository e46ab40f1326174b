//! bubblewrap's command line: `ljspawn` invoked as `bwrap` (a link so named) or with a first
//! argument `--bwrap` takes bwrap's options and turns them into the same typed [`Request`]
//! ljspawn's own command line makes, so every check of the plan, of the privileged window and
//! of the jail applies to this form too. Nothing here touches the system: the caller's
//! environment, host name and the content of `--args FD` are passed in.
//!
//! bwrap's semantics kept: options act in command-line order on an empty tmpfs root; no
//! `/proc`, `/dev` or `/tmp` unless asked; the network is shared unless `--unshare-net`; the
//! caller's environment and directory are kept; exit status 1 for bwrap's own failures. The
//! deliberate differences are listed in the README.

use std::fmt;

use crate::plan::{MountReq, Request};

/// What bwrap's command line asks for, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BwrapError {
    /// No command: print the usage line (exit 1).
    Usage,
    Help,
    Version,
    /// One line after `bwrap: `.
    Msg(String),
}

impl fmt::Display for BwrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BwrapError::Usage => f.write_str("usage"),
            BwrapError::Help => f.write_str("help"),
            BwrapError::Version => f.write_str("version"),
            BwrapError::Msg(m) => f.write_str(m),
        }
    }
}

/// Whether this invocation is the bwrap form: argv\[0\]'s file name is `bwrap`, or the first
/// argument is `--bwrap`. Returns the arguments after those.
pub fn detect(argv: &[String]) -> Option<Vec<String>> {
    let name = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a));
    if name == Some("bwrap") {
        return Some(argv[1..].to_vec());
    }
    if argv.get(1).map(String::as_str) == Some("--bwrap") {
        return Some(argv[2..].to_vec());
    }
    None
}

/// The usage line, naming argv\[0\] as bwrap does.
pub fn usage(argv0: &str) -> String {
    format!("usage: {argv0} [OPTIONS...] [--] COMMAND [ARGS...]")
}

pub const HELP: &str = "\
ljspawn's bwrap form: bubblewrap's options, in command-line order, on an empty tmpfs root.
    --help, --version, --args FD, --unshare-all, --share-net, --unshare-user[-try],
    --unshare-ipc, --unshare-pid, --unshare-net, --unshare-uts, --unshare-cgroup[-try],
    --disable-userns, --assert-userns-disabled, --uid UID, --gid GID, --hostname NAME,
    --chdir DIR, --clearenv, --setenv VAR VALUE, --unsetenv VAR, --sync-fd FD,
    --bind[-try] SRC DEST, --ro-bind[-try] SRC DEST, --dev-bind[-try] SRC DEST,
    --remount-ro DEST, --proc DEST, --dev DEST, --tmpfs DEST, --dir DEST, --file FD DEST,
    --symlink SRC DEST, --perms OCTAL, --size BYTES, --seccomp FD, --add-seccomp-fd FD,
    --bind-fd FD DEST, --ro-bind-fd FD DEST, --bind-data FD DEST, --ro-bind-data FD DEST,
    --lock-file DEST, --info-fd FD, --json-status-fd FD, --cap-add CAP, --cap-drop CAP,
    --new-session, --die-with-parent, --level-prefix, --chmod OCTAL PATH, --block-fd FD,
    --userns-block-fd FD, --argv0 VALUE, --as-pid-1, --mqueue DEST, --overlay-src SRC,
    --overlay RWSRC WORKDIR DEST, --tmp-overlay DEST, --ro-overlay DEST, --userns FD,
    --userns2 FD, --pidns FD
Other bwrap options are refused by name. See ljspawn's README for the differences.";

/// Options bwrap has that this form refuses by name (rather than as unknown).
const NOT_SUPPORTED: [&str; 2] = ["--exec-label", "--file-label"];

/// Translates bwrap's arguments (after argv\[0\]) into a request. `env` is the caller's
/// environment (`env_raw` its variables that are not UTF-8, `NAME=VALUE`), `host_name` the
/// host's name (kept in the jail unless `--hostname`), and `read_fd` reads `--args FD` to its
/// end.
pub fn request(
    args: &[String],
    env: Vec<(String, String)>,
    env_raw: Vec<Vec<u8>>,
    host_name: Option<String>,
    read_fd: &mut dyn FnMut(i32) -> Result<Vec<u8>, String>,
) -> Result<(Request, Vec<String>), BwrapError> {
    let mut r = Request {
        bwrap: true,
        env_base: Some(env),
        env_raw,
        net: Some("host".into()),
        hostname: host_name,
        ..Default::default()
    };
    let mut warnings = Vec::new();
    let (mut uid, mut gid) = (None, None);
    let (mut perms, mut size): (Option<u32>, Option<u64>) = (None, None);
    let (mut seccomp, mut add_seccomp) = (None, Vec::new());
    let mut share_net = false;
    let mut unshare_net = false;
    // (--unshare-user is `r.userns`: the one record of it.)
    let (mut unshare_pid, mut disable_userns) = (false, false);
    let mut overlay_srcs: Vec<std::path::PathBuf> = Vec::new();
    let mut args: Vec<String> = args.to_vec();
    let mut i = 0;
    let bad = |m: String| BwrapError::Msg(m);
    while i < args.len() {
        let opt = args[i].clone();
        let fd = |s: &str| {
            s.parse::<i32>().ok().filter(|&f| f >= 0).ok_or_else(|| bad(format!("Invalid fd: {s}")))
        };
        if !opt.starts_with("--") {
            break;
        }
        if perms.is_some()
            && !matches!(
                opt.as_str(),
                "--tmpfs" | "--dir" | "--file" | "--size" | "--bind-data" | "--ro-bind-data"
            )
        {
            return Err(bad(format!(
                "--perms must be followed by an option that creates a file (not {opt})"
            )));
        }
        if size.is_some() && !matches!(opt.as_str(), "--tmpfs" | "--perms") {
            return Err(bad("--size must be followed by --tmpfs".into()));
        }
        if !overlay_srcs.is_empty()
            && !matches!(opt.as_str(), "--overlay-src" | "--overlay" | "--tmp-overlay" | "--ro-overlay")
        {
            return Err(bad(OVERLAY_SRC_ALONE.into()));
        }
        match opt.as_str() {
            "--" => {
                i += 1;
                break;
            }
            "--help" => return Err(BwrapError::Help),
            "--version" => return Err(BwrapError::Version),
            "--args" => {
                let v = take(&args, &opt, 1, &mut i)?;
                let data = read_fd(fd(&v[0])?).map_err(bad)?;
                let text = String::from_utf8(data).map_err(|_| bad("--args: not UTF-8".into()))?;
                // Each argument ends with a NUL; empty arguments are arguments too.
                let mut extra: Vec<String> = text.split('\0').map(String::from).collect();
                if extra.last().is_some_and(|s| s.is_empty()) {
                    extra.pop();
                }
                // Spliced in where --args stood, as bwrap does.
                args.splice(i + 1..i + 1, extra);
            }
            "--unshare-all" => {
                r.userns = true;
                unshare_pid = true;
                unshare_net = true;
            }
            "--share-net" => share_net = true,
            "--unshare-user" | "--unshare-user-try" => r.userns = true,
            "--unshare-net" => unshare_net = true,
            "--unshare-pid" => unshare_pid = true,
            // Always new in ljspawn (a deliberate difference).
            "--unshare-ipc" | "--unshare-uts" | "--unshare-cgroup" | "--unshare-cgroup-try" => {}
            // ljspawn's seccomp filter denies new user namespaces then.
            "--disable-userns" => disable_userns = true,
            "--assert-userns-disabled" => r.assert_no_userns = true,
            "--as-pid-1" => r.as_pid_1 = true,
            "--argv0" => r.argv0 = Some(take(&args, &opt, 1, &mut i)?.remove(0)),
            "--block-fd" => r.block_fd = Some(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            "--userns-block-fd" => r.userns_block_fd = Some(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            "--userns" => r.join_userns = Some(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            "--userns2" => r.join_userns2 = Some(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            "--pidns" => {
                let f = fd(&take(&args, &opt, 1, &mut i)?[0])?;
                if r.join_pidns.is_some() {
                    warnings.push("Only the last --pidns option will take effect".to_string());
                }
                r.join_pidns = Some(f);
            }
            "--chmod" => {
                let v = take(&args, &opt, 2, &mut i)?;
                let mode = u32::from_str_radix(&v[0], 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| bad("--chmod takes an octal argument <= 07777".into()))?;
                r.mounts.push(MountReq::Chmod { dest: v[1].clone(), mode });
            }
            "--mqueue" => r.mounts.push(MountReq::Mqueue { dest: take(&args, &opt, 1, &mut i)?.remove(0) }),
            "--overlay-src" => overlay_srcs.push(take(&args, &opt, 1, &mut i)?.remove(0).into()),
            "--overlay" | "--tmp-overlay" | "--ro-overlay" => {
                let n = if opt == "--overlay" { 3 } else { 1 };
                let mut v = take(&args, &opt, n, &mut i)?;
                let need = if opt == "--ro-overlay" { 2 } else { 1 };
                if overlay_srcs.len() < need {
                    let what = if need == 1 { "one --overlay-src" } else { "two --overlay-src" };
                    return Err(bad(format!("{opt} requires at least {what}")));
                }
                let dest = v.pop().expect("taken");
                let upper = (opt == "--overlay").then(|| (v[0].clone().into(), v[1].clone().into()));
                r.mounts.push(MountReq::Overlay {
                    srcs: std::mem::take(&mut overlay_srcs),
                    dest,
                    upper,
                    tmp: opt == "--tmp-overlay",
                });
            }
            "--new-session" => {}
            "--level-prefix" => r.level_prefix = true,
            "--die-with-parent" => r.die_with_parent = true,
            "--uid" => uid = Some(num(&take(&args, &opt, 1, &mut i)?[0], "uid")?),
            "--gid" => gid = Some(num(&take(&args, &opt, 1, &mut i)?[0], "gid")?),
            "--hostname" => r.hostname = Some(take(&args, &opt, 1, &mut i)?.remove(0)),
            "--chdir" => {
                let v = take(&args, &opt, 1, &mut i)?.remove(0);
                if r.chdir.is_some() {
                    warnings.push("Only the last --chdir option will take effect".to_string());
                }
                r.chdir = Some(v);
            }
            "--clearenv" => {
                // bwrap keeps PWD; the rest goes.
                let pwd = r.env_base.as_ref().and_then(|e| e.iter().find(|(k, _)| k == "PWD").cloned());
                r.env_base = Some(pwd.into_iter().collect());
                r.env_raw.clear();
                r.setenv.clear();
            }
            "--setenv" => {
                let v = take(&args, &opt, 2, &mut i)?;
                r.unsetenv.retain(|k| *k != v[0]);
                r.setenv.push((v[0].clone(), v[1].clone()));
            }
            "--unsetenv" => {
                let v = take(&args, &opt, 1, &mut i)?.remove(0);
                r.setenv.retain(|(k, _)| *k != v);
                r.unsetenv.push(v);
            }
            "--sync-fd" => r.pass_fds.push(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            "--bind" | "--ro-bind" | "--dev-bind" | "--bind-try" | "--ro-bind-try" | "--dev-bind-try" => {
                let v = take(&args, &opt, 2, &mut i)?;
                let (ro, dev) = (opt.starts_with("--ro-"), opt.starts_with("--dev-"));
                let (src, dest) = (v[0].clone().into(), v[1].clone());
                r.mounts.push(if opt.ends_with("-try") {
                    MountReq::BindTry { src, dest, ro, dev }
                } else {
                    MountReq::Bind { src, dest, ro, dev }
                });
            }
            "--bind-fd" | "--ro-bind-fd" => {
                let v = take(&args, &opt, 2, &mut i)?;
                r.mounts.push(MountReq::BindFd {
                    fd: fd(&v[0])?,
                    dest: v[1].clone(),
                    ro: opt == "--ro-bind-fd",
                });
            }
            "--bind-data" | "--ro-bind-data" => {
                let v = take(&args, &opt, 2, &mut i)?;
                let ro = opt == "--ro-bind-data";
                r.mounts.push(MountReq::Data { fd: fd(&v[0])?, dest: v[1].clone(), ro, mode: perms.take() });
            }
            "--lock-file" => {
                r.mounts.push(MountReq::LockFile { dest: take(&args, &opt, 1, &mut i)?.remove(0) })
            }
            "--info-fd" => r.info_fd = Some(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            "--remount-ro" => {
                r.mounts.push(MountReq::RemountRo { dest: take(&args, &opt, 1, &mut i)?.remove(0) })
            }
            "--proc" => r.mounts.push(MountReq::Proc { dest: take(&args, &opt, 1, &mut i)?.remove(0) }),
            "--dev" => r.mounts.push(MountReq::Dev { dest: take(&args, &opt, 1, &mut i)?.remove(0) }),
            "--tmpfs" => {
                let dest = take(&args, &opt, 1, &mut i)?.remove(0);
                r.mounts.push(MountReq::TmpfsWith { dest, mode: perms.take(), size: size.take() });
            }
            "--dir" => r
                .mounts
                .push(MountReq::Dir { dest: take(&args, &opt, 1, &mut i)?.remove(0), mode: perms.take() }),
            "--file" => {
                let v = take(&args, &opt, 2, &mut i)?;
                r.mounts.push(MountReq::File { fd: fd(&v[0])?, dest: v[1].clone(), mode: perms.take() });
            }
            "--symlink" => {
                let v = take(&args, &opt, 2, &mut i)?;
                r.mounts.push(MountReq::Symlink { target: v[0].clone(), dest: v[1].clone() });
            }
            "--perms" => {
                let v = take(&args, &opt, 1, &mut i)?.remove(0);
                perms = Some(
                    u32::from_str_radix(&v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| bad("--perms takes an octal argument <= 07777".into()))?,
                );
            }
            "--size" => {
                let v = take(&args, &opt, 1, &mut i)?.remove(0);
                // bwrap's `strtoull(v, _, 0)` (decimal, 0x hex, 0 octal) of a positive number
                // of bytes that fits an off_t, with its messages.
                let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                    Some(h) => (h, 16),
                    None if v.len() > 1 && v.starts_with('0') => (&v[1..], 8),
                    None => (v.as_str(), 10),
                };
                let n = Some(digits)
                    .filter(|d| d.bytes().next().is_some_and(|b| b.is_ascii_hexdigit()))
                    .and_then(|d| u64::from_str_radix(d, radix).ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad("--size takes a non-zero number of bytes".into()))?;
                if n > i64::MAX as u64 {
                    return Err(bad(format!("--size (for tmpfs) is limited to {}", i64::MAX)));
                }
                size = Some(n);
            }
            "--seccomp" => {
                let f = fd(&take(&args, &opt, 1, &mut i)?[0])?;
                if !add_seccomp.is_empty() {
                    return Err(bad("--seccomp cannot be combined with --add-seccomp-fd".into()));
                }
                if seccomp.is_some() {
                    warnings.push("Only the last --seccomp option will take effect".to_string());
                }
                seccomp = Some(f);
            }
            "--add-seccomp-fd" => {
                let f = fd(&take(&args, &opt, 1, &mut i)?[0])?;
                if seccomp.is_some() {
                    return Err(bad("--add-seccomp-fd cannot be combined with --seccomp".into()));
                }
                add_seccomp.push(f);
            }
            "--json-status-fd" => r.json_status = Some(fd(&take(&args, &opt, 1, &mut i)?[0])?),
            // In order, as bwrap: the last word on a capability wins (kept: added and not
            // dropped after).
            "--cap-add" => {
                let c = take(&args, &opt, 1, &mut i)?.remove(0);
                if c.eq_ignore_ascii_case("all") {
                    r.cap_drop.clear();
                } else {
                    let n = crate::plan::cap_number(&c);
                    r.cap_drop.retain(|k| crate::plan::cap_number(k) != n || n.is_none());
                }
                r.cap_add.push(c);
            }
            "--cap-drop" => {
                let c = take(&args, &opt, 1, &mut i)?.remove(0);
                if c.eq_ignore_ascii_case("all") {
                    r.cap_add.clear();
                    r.cap_drop.clear();
                } else {
                    let n = crate::plan::cap_number(&c);
                    r.cap_add.retain(|k| crate::plan::cap_number(k) != n || n.is_none());
                    r.cap_drop.push(c);
                }
            }
            o if NOT_SUPPORTED.contains(&o) => {
                return Err(bad(format!(
                    "{o} is not supported by ljspawn's bwrap form (see ljspawn's README)"
                )))
            }
            o => return Err(bad(format!("Unknown option {o}"))),
        }
        i += 1;
    }
    if perms.is_some() {
        return Err(bad("--perms must be followed by an option that creates a file".into()));
    }
    if size.is_some() {
        return Err(bad("--size must be followed by --tmpfs".into()));
    }
    if !overlay_srcs.is_empty() {
        return Err(bad(OVERLAY_SRC_ALONE.into()));
    }
    // bwrap's own rules, with its messages.
    if r.userns_block_fd.is_some() && !r.userns {
        return Err(bad("--userns-block-fd requires --unshare-user".into()));
    }
    if r.userns_block_fd.is_some() && r.info_fd.is_none() {
        return Err(bad("--userns-block-fd requires --info-fd".into()));
    }
    if r.join_userns.is_some() && r.userns {
        return Err(bad("--userns not compatible --unshare-user".into()));
    }
    if disable_userns && !r.userns {
        return Err(bad("--disable-userns requires --unshare-user".into()));
    }
    if disable_userns && r.userns_block_fd.is_some() {
        return Err(bad("--disable-userns is not compatible with  --userns-block-fd".into()));
    }
    if r.as_pid_1 && !unshare_pid {
        return Err(bad("Specifying --as-pid-1 requires --unshare-pid".into()));
    }
    if r.as_pid_1 && r.mounts.iter().any(|m| matches!(m, MountReq::LockFile { .. })) {
        return Err(bad("Specifying --as-pid-1 and --lock-file is not permitted".into()));
    }
    // A bind onto / is mounted over everything made before it (bwrap's `--bind / / ...
    // --ro-bind / /`): the last one is the root, and what came before it, hidden under it, is
    // not made. Operations whose effect outlives the mount (a lock held, a mode changed, a
    // file or link written through an earlier bind) would be lost: refused.
    if let Some(last) =
        r.mounts.iter().rposition(|m| matches!(m, MountReq::Bind { dest, .. } if is_root(dest)))
    {
        if let Some(m) = r.mounts[..last].iter().find(|m| {
            matches!(
                m,
                MountReq::LockFile { .. }
                    | MountReq::Chmod { .. }
                    | MountReq::Dir { .. }
                    | MountReq::File { .. }
                    | MountReq::Symlink { .. }
            )
        }) {
            let what = match m {
                MountReq::LockFile { .. } => "--lock-file",
                MountReq::Chmod { .. } => "--chmod",
                MountReq::Dir { .. } => "--dir",
                MountReq::File { .. } => "--file",
                _ => "--symlink",
            };
            return Err(bad(format!(
                "{what} before a later bind onto / is not supported by ljspawn's bwrap form (see ljspawn's README)"
            )));
        }
        r.mounts.drain(..last);
    }
    // bwrap lets a sandbox make user namespaces unless --disable-userns.
    r.allow_userns = !disable_userns;
    r.seccomp_fds = seccomp.into_iter().chain(add_seccomp).collect();
    // (ljspawn always makes a PID namespace; --unshare-pid matters only under --pidns.)
    r.unshare_pid = unshare_pid;
    r.command = args[i.min(args.len())..].to_vec();
    if r.command.is_empty() {
        return Err(BwrapError::Usage);
    }
    if unshare_net && !share_net {
        r.net = None;
    }
    // Unset ids stay the caller's (the plan knows them).
    r.user = uid.map(|u| (u, gid));
    r.group = gid;
    Ok((r, warnings))
}

/// Whether a destination names the root (`/`, `//`, `/.`).
fn is_root(dest: &str) -> bool {
    dest.starts_with('/') && dest.split('/').all(|c| c.is_empty() || c == ".")
}

/// ljspawn's one-line failure in bwrap's words where callers (and bwrap's own tests) look for
/// them; other lines as they are.
pub fn message(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("cannot bind ") {
        if let Some(src) = rest.strip_suffix(": no such file or directory") {
            return format!("Can't find source path {src}: No such file or directory");
        }
    }
    if let Some(rest) = msg.strip_prefix("cannot create symlink ") {
        if rest.contains(": existing destination is ") {
            return format!("Can't make symlink at {rest}");
        }
    }
    // "WHAT: error" with the error as glibc's strerror words it.
    let glibc = |rest: &str| {
        let (what, e) = rest.rsplit_once(": ")?;
        Some((what.to_string(), crate::errno::from_lower(e)?))
    };
    if let Some((dest, e)) = msg.strip_prefix("cannot open --lock-file ").and_then(glibc) {
        return format!("Unable to open lock file {dest}: {e}");
    }
    // ljspawn's `755 DEST`, bwrap's `%#o`: `0755` (`0` for no bits).
    if let Some((what, e)) = msg.strip_prefix("cannot chmod ").and_then(glibc) {
        if let Some((mode, dest)) = what.split_once(' ') {
            let mode = if mode == "0" { mode.to_string() } else { format!("0{mode}") };
            return format!("Can't chmod {mode} {dest}: {e}");
        }
    }
    // A descriptor that is not open: bwrap's words where it has them, else the bwrap form's
    // name of the option (ljspawn's own `--pass-fd` is bwrap's `--sync-fd`).
    if let Some((what, fd)) =
        msg.strip_suffix(" is not an open file descriptor").and_then(|m| m.split_once(' '))
    {
        match what {
            "--seccomp-fd" => return "Can't read seccomp data: Bad file descriptor".into(),
            "--userns" => return "Joining specified user namespace failed: Bad file descriptor".into(),
            "--pass-fd" => return format!("--sync-fd {fd} is not an open file descriptor"),
            "--json-status" => return format!("--json-status-fd {fd} is not an open file descriptor"),
            _ => {}
        }
    }
    if let Some(cap) = msg.strip_prefix("unknown capability '").and_then(|r| r.split_once("' (e.g.")) {
        return format!("unknown cap: {}", cap.0);
    }
    msg.to_string()
}

const OVERLAY_SRC_ALONE: &str =
    "--overlay-src must be followed by another --overlay-src or one of --overlay, --tmp-overlay, or --ro-overlay";

/// The `n` arguments of option `opt` at `i` (which moves past them), or bwrap's message.
fn take(args: &[String], opt: &str, n: usize, i: &mut usize) -> Result<Vec<String>, BwrapError> {
    if *i + n >= args.len() {
        // bwrap's words (its every version): "takes an argument", "takes two arguments".
        let what = ["an argument", "two arguments", "three arguments"][n - 1];
        return Err(BwrapError::Msg(format!("{opt} takes {what}")));
    }
    let v = args[*i + 1..=*i + n].to_vec();
    *i += n;
    Ok(v)
}

fn num(s: &str, what: &str) -> Result<u32, BwrapError> {
    s.parse::<u32>().map_err(|_| BwrapError::Msg(format!("Invalid {what}: {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Request, BwrapError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = vec![("HOME".into(), "/home/u".into()), ("PWD".into(), "/w".into())];
        request(&args, env, vec![], Some("host".into()), &mut |_| {
            Ok(b"--setenv\0E\0\0--dir\0/fromargs\0".to_vec())
        })
        .map(|(r, _)| r)
    }

    #[test]
    fn detection() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(detect(&v(&["/usr/bin/bwrap", "--dev", "/dev"])), Some(v(&["--dev", "/dev"])));
        assert_eq!(detect(&v(&["ljspawn", "--bwrap", "true"])), Some(v(&["true"])));
        assert_eq!(detect(&v(&["ljspawn", "--root", "/"])), None);
        assert_eq!(usage("/x/bwrap"), "usage: /x/bwrap [OPTIONS...] [--] COMMAND [ARGS...]");
    }

    #[test]
    fn defaults_are_bwraps() {
        let r = parse(&["--ro-bind", "/usr", "/usr", "true"]).unwrap();
        assert!(r.bwrap && !r.userns);
        assert_eq!(r.net.as_deref(), Some("host"));
        assert_eq!(r.hostname.as_deref(), Some("host"));
        assert_eq!(r.env_base.as_ref().unwrap().len(), 2);
        assert_eq!(r.command, ["true"]);
        let r = parse(&["--unshare-all", "true"]).unwrap();
        assert_eq!(r.net, None);
        assert!(r.userns);
        let r = parse(&["--unshare-all", "--share-net", "true"]).unwrap();
        assert_eq!(r.net.as_deref(), Some("host"));
    }

    #[test]
    fn operations_in_order_with_perms_and_size() {
        let r = parse(&[
            "--perms",
            "0700",
            "--dir",
            "/a",
            "--size",
            "4096",
            "--tmpfs",
            "/t",
            "--args",
            "3",
            "--symlink",
            "x",
            "/s",
            "--ro-bind-try",
            "/no",
            "/n",
            "--proc",
            "/proc",
            "--",
            "sh",
        ])
        .unwrap();
        assert_eq!(
            r.mounts,
            [
                MountReq::Dir { dest: "/a".into(), mode: Some(0o700) },
                MountReq::TmpfsWith { dest: "/t".into(), mode: None, size: Some(4096) },
                MountReq::Dir { dest: "/fromargs".into(), mode: None },
                MountReq::Symlink { target: "x".into(), dest: "/s".into() },
                MountReq::BindTry { src: "/no".into(), dest: "/n".into(), ro: true, dev: false },
                MountReq::Proc { dest: "/proc".into() },
            ]
        );
        assert_eq!(r.command, ["sh"]);
        assert_eq!(r.setenv, [("E".to_string(), String::new())], "an empty argument from --args is kept");
        assert!(parse(&["--perms", "0700", "--bind", "/a", "/b", "true"]).is_err());
        assert!(parse(&["--size", "10", "--dir", "/a", "true"]).is_err());
    }

    #[test]
    fn environment_and_ids() {
        let r = parse(&["--clearenv", "--setenv", "A", "1", "--unsetenv", "A", "--setenv", "B", "2", "true"])
            .unwrap();
        assert_eq!(r.env_base, Some(vec![("PWD".into(), "/w".into())]));
        assert_eq!(r.setenv, [("B".to_string(), "2".to_string())]);
        assert_eq!(r.unsetenv, ["A"]);
        // Unset ids stay the caller's: --gid alone is not uid 0 (the plan fills them in).
        assert_eq!(parse(&["--uid", "5", "true"]).unwrap().user, Some((5, None)));
        let r = parse(&["--gid", "7", "true"]).unwrap();
        assert_eq!((r.user, r.group), (None, Some(7)));
        assert_eq!(parse(&["--uid", "5", "--gid", "6", "true"]).unwrap().user, Some((5, Some(6))));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(&["--dir", "/a"]), Err(BwrapError::Usage));
        assert_eq!(parse(&[]), Err(BwrapError::Usage));
        assert_eq!(parse(&["--bind", "/a"]), Err(BwrapError::Msg("--bind takes two arguments".into())));
        assert_eq!(parse(&["--dir"]), Err(BwrapError::Msg("--dir takes an argument".into())));
        assert_eq!(parse(&["--frob", "true"]), Err(BwrapError::Msg("Unknown option --frob".into())));
        assert!(
            matches!(parse(&["--exec-label", "x", "true"]), Err(BwrapError::Msg(m)) if m.contains("not supported"))
        );
        let msg = |a: &[&str]| match parse(a) {
            Err(BwrapError::Msg(m)) => m,
            other => panic!("{a:?}: {other:?}"),
        };
        assert_eq!(
            msg(&["--seccomp", "3", "--add-seccomp-fd", "4", "true"]),
            "--add-seccomp-fd cannot be combined with --seccomp"
        );
        assert_eq!(
            msg(&["--add-seccomp-fd", "3", "--seccomp", "4", "true"]),
            "--seccomp cannot be combined with --add-seccomp-fd"
        );
        assert_eq!(msg(&["--as-pid-1", "true"]), "Specifying --as-pid-1 requires --unshare-pid");
        assert_eq!(
            msg(&["--unshare-pid", "--as-pid-1", "--lock-file", "/l", "true"]),
            "Specifying --as-pid-1 and --lock-file is not permitted"
        );
        assert_eq!(msg(&["--userns-block-fd", "3", "true"]), "--userns-block-fd requires --unshare-user");
        assert_eq!(
            msg(&["--unshare-user", "--userns-block-fd", "3", "true"]),
            "--userns-block-fd requires --info-fd"
        );
        assert_eq!(msg(&["--disable-userns", "true"]), "--disable-userns requires --unshare-user");
        assert_eq!(msg(&["--chmod", "8", "/x", "true"]), "--chmod takes an octal argument <= 07777");
        assert_eq!(msg(&["--perms", "8", "--dir", "/d", "true"]), "--perms takes an octal argument <= 07777");
        for s in ["abc", "0", "-1", "0x", "08", " 1", "18446744073709551616"] {
            assert_eq!(
                msg(&["--size", s, "--tmpfs", "/t", "true"]),
                "--size takes a non-zero number of bytes"
            );
        }
        assert_eq!(
            msg(&["--size", "9223372036854775808", "--tmpfs", "/t", "true"]),
            "--size (for tmpfs) is limited to 9223372036854775807"
        );
        assert_eq!(
            msg(&["--overlay", "u", "w", "/d", "true"]),
            "--overlay requires at least one --overlay-src"
        );
        assert_eq!(
            msg(&["--tmp-overlay", "/d", "true"]),
            "--tmp-overlay requires at least one --overlay-src"
        );
        assert_eq!(
            msg(&["--overlay-src", "/a", "--ro-overlay", "/d", "true"]),
            "--ro-overlay requires at least two --overlay-src"
        );
        assert_eq!(msg(&["--overlay-src", "/a", "--dir", "/d", "true"]), OVERLAY_SRC_ALONE);
        assert_eq!(msg(&["--overlay-src", "/a", "true"]), OVERLAY_SRC_ALONE);
        assert_eq!(parse(&["--help"]), Err(BwrapError::Help));
    }

    #[test]
    fn new_options() {
        let r = parse(&[
            "--unshare-all",
            "--as-pid-1",
            "--argv0",
            "zero",
            "--block-fd",
            "5",
            "--add-seccomp-fd",
            "6",
            "--add-seccomp-fd",
            "7",
            "--dir",
            "/d",
            "--chmod",
            "1755",
            "/d",
            "--mqueue",
            "/dev/mqueue",
            "--overlay-src",
            "/l1",
            "--overlay-src",
            "/l2",
            "--ro-overlay",
            "/ro",
            "--overlay-src",
            "/l1",
            "--tmp-overlay",
            "/tmp-o",
            "--overlay-src",
            "/l1",
            "--overlay",
            "/up",
            "/wk",
            "/rw",
            "sh",
        ])
        .unwrap();
        assert!(r.as_pid_1 && r.allow_userns);
        assert_eq!(r.argv0.as_deref(), Some("zero"));
        assert_eq!((r.block_fd, r.seccomp_fds.as_slice()), (Some(5), &[6, 7][..]));
        assert_eq!(
            r.mounts[1..],
            [
                MountReq::Chmod { dest: "/d".into(), mode: 0o1755 },
                MountReq::Mqueue { dest: "/dev/mqueue".into() },
                MountReq::Overlay {
                    srcs: vec!["/l1".into(), "/l2".into()],
                    dest: "/ro".into(),
                    upper: None,
                    tmp: false
                },
                MountReq::Overlay { srcs: vec!["/l1".into()], dest: "/tmp-o".into(), upper: None, tmp: true },
                MountReq::Overlay {
                    srcs: vec!["/l1".into()],
                    dest: "/rw".into(),
                    upper: Some(("/up".into(), "/wk".into())),
                    tmp: false
                },
            ]
        );
        assert!(!parse(&["--unshare-user", "--disable-userns", "true"]).unwrap().allow_userns);
        let r = parse(&["--pidns", "6", "true"]).unwrap();
        assert_eq!((r.join_pidns, r.unshare_pid), (Some(6), false));
        let r = parse(&["--unshare-pid", "--pidns", "6", "true"]).unwrap();
        assert_eq!((r.join_pidns, r.unshare_pid), (Some(6), true));
        assert_eq!(parse(&["--pidns", "x", "true"]), Err(BwrapError::Msg("Invalid fd: x".into())));
        let r = parse(&["--unshare-user", "--userns-block-fd", "4", "--info-fd", "5", "true"]).unwrap();
        assert_eq!((r.userns_block_fd, r.info_fd), (Some(4), Some(5)));
    }

    #[test]
    fn a_later_bind_onto_root_covers_what_came_before() {
        let r = parse(&[
            "--bind",
            "/",
            "/",
            "--tmpfs",
            "/tmp",
            "--proc",
            "/proc",
            "--ro-bind",
            "/",
            "//",
            "true",
        ])
        .unwrap();
        assert_eq!(r.mounts, [MountReq::Bind { src: "/".into(), dest: "//".into(), ro: true, dev: false }]);
        let r = parse(&["--tmpfs", "/t", "--ro-bind", "/usr", "/usr", "true"]).unwrap();
        assert_eq!(r.mounts.len(), 2, "no bind onto /: nothing dropped");
        for op in [
            &["--dir", "/d"][..],
            &["--symlink", "a", "/l"],
            &["--lock-file", "/x"],
            &["--chmod", "755", "/x"],
        ] {
            let mut a: Vec<&str> = vec!["--bind", "/", "/"];
            a.extend(op);
            a.extend(["--ro-bind", "/", "/", "true"]);
            assert!(
                matches!(parse(&a), Err(BwrapError::Msg(m)) if m.contains("before a later bind onto /")),
                "{a:?}"
            );
        }
        assert!(is_root("/") && is_root("/./") && !is_root("/x") && !is_root("."));
    }

    #[test]
    fn capabilities_in_order() {
        let r = parse(&["--cap-add", "ALL", "--cap-drop", "CAP_KILL", "true"]).unwrap();
        assert_eq!(
            (r.cap_add.as_slice(), r.cap_drop.as_slice()),
            (&["ALL".to_string()][..], &["CAP_KILL".to_string()][..])
        );
        let r = parse(&["--cap-add", "ALL", "--cap-drop", "CAP_KILL", "--cap-add", "kill", "true"]).unwrap();
        assert!(r.cap_drop.is_empty(), "{:?}", r.cap_drop);
        let r = parse(&["--cap-add", "CAP_KILL", "--cap-drop", "ALL", "true"]).unwrap();
        assert!(r.cap_add.is_empty() && r.cap_drop.is_empty());
        assert_eq!(
            message("cannot bind /x: no such file or directory"),
            "Can't find source path /x: No such file or directory"
        );
        assert_eq!(message("cannot bind /x: permission denied"), "cannot bind /x: permission denied");
        assert_eq!(
            message("cannot open --lock-file /a: b: no such file or directory"),
            "Unable to open lock file /a: b: No such file or directory"
        );
        assert_eq!(message("cannot chmod 755 /x: not a directory"), "Can't chmod 0755 /x: Not a directory");
        assert_eq!(
            message("cannot chmod 0 /x y: permission denied"),
            "Can't chmod 0 /x y: Permission denied"
        );
        assert_eq!(message("cannot chmod 755 /x: a thing of ours"), "cannot chmod 755 /x: a thing of ours");
        assert_eq!(
            message("--pass-fd 7 is not an open file descriptor"),
            "--sync-fd 7 is not an open file descriptor"
        );
        assert_eq!(
            message("--seccomp-fd 9 is not an open file descriptor"),
            "Can't read seccomp data: Bad file descriptor"
        );
        assert_eq!(
            message("--file 9 is not an open file descriptor"),
            "--file 9 is not an open file descriptor"
        );
        assert_eq!(
            message("unknown capability 'CAP_FOO' (e.g. CAP_NET_ADMIN or net_admin)"),
            "unknown cap: CAP_FOO"
        );
    }

    #[test]
    fn last_chdir_wins_with_a_warning() {
        let args: Vec<String> =
            ["--chdir", "/a", "--chdir", "/b", "true"].iter().map(|s| s.to_string()).collect();
        let (r, w) = request(&args, vec![], vec![], None, &mut |_| Ok(vec![])).unwrap();
        assert_eq!(r.chdir.as_deref(), Some("/b"));
        assert_eq!(w, ["Only the last --chdir option will take effect"]);
    }
}
