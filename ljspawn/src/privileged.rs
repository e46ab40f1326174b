//! The privileged window: everything ljspawn does with privileges it will not keep.
//!
//! A setuid ljspawn is host root from `exec` until [`Privileged::drop`]. Between the two it
//! does exactly this, in this order, and nothing else as root:
//! 1. the second look at the plan ([`Privileged::enter`]): what the caller's mode does not
//!    allow is refused here, in the code that acts, whatever the parser said (user namespace,
//!    seccomp, network grants, `--idmap-layer`, id maps, cgroup limits against the grant, one
//!    descriptor given to two fd options);
//! 2. `-O`/`-E` opened as the caller, by a child that gave up root ([`Privileged::open_outputs`]);
//! 3. the jail's cgroup made under the granted limits, inside the caller's own cgroup of each
//!    hierarchy (so it only tightens what the caller is under; see `limits`)
//!    ([`Privileged::make_cgroup`]);
//!    the `--idmap-layer` layers opened by ljspawn itself, fd-relative from `/` through a
//!    store granted in `/etc/lightjail.conf` (no symlink, every directory root-owned and not
//!    writable by group or others), cloned detached and idmapped onto a user namespace with
//!    the jail's maps ([`Privileged::idmap_layers`]); the jail inherits the detached mounts;
//! 4. the jail cloned into its cgroup (`spawn::clone_born`: cgroup v2 `CLONE_INTO_CGROUP`
//!    with the directory ljspawn made in step 3; v1, ljspawn in the jail's directories for the
//!    clone and back in its own cgroup before anything else, a failure to return ending the
//!    spawn), still privileged, so no cgroup but those of step 3 and the ones ljspawn is in is
//!    ever entered;
//! 5. once the jail is cloned ([`Privileged::setup_jail`]): its user namespace maps written
//!    (the caller's id and its `/etc/subuid`/`/etc/subgid` ranges; rootless `--subids`: by
//!    `newuidmap`/`newgidmap`, run unprivileged), its network device
//!    plumbed (a granted bridge or macvlan), its PID 1 moved into the directories of its
//!    cgroup it was not born in (setuid: the reaper, a root process that removes the cgroup
//!    once ljspawn is gone, started already with the cgroup in step 3);
//! 6. [`Privileged::drop`]: every id set to the caller's, capabilities read back as empty,
//!    and `setresuid(0)` seen to fail; or, when ljspawn makes the jail's network namespace
//!    itself (network `none`, no cgroup), [`Privileged::drop_into_jail`]: ljspawn enters the
//!    jail's user namespace as the caller's ids there (nothing of root's holds outside it),
//!    makes the network namespace with what that namespace gives, and drops that too.
//!
//! Root and rootless callers go through the same calls (root uses the same cgroup and
//! network code; rootless has nothing to drop), so the order is one for every mode.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::jail;
use crate::limits::{self, Cgroup, Tree, Who};
use crate::net;
use crate::plan::{self, IdMap, IdRange, Mode, Net, Plan, RootFs, Seccomp};
use crate::spawn::{err, SpawnError};
use crate::sys;
use crate::EXIT_SETUP;

/// The privileges ljspawn holds until [`Privileged::drop`] consumes this token.
#[derive(Debug)]
#[must_use = "privileges are held until Privileged::drop"]
pub struct Privileged {
    setuid: bool,
    uid: u32,
    gid: u32,
}

/// `-O` and `-E`, opened as the caller.
#[derive(Debug)]
pub struct Outputs {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Privileged {
    /// The second look: refuses what the caller's mode does not allow (see `check_policy`).
    pub fn enter(plan: &Plan) -> Result<Privileged, SpawnError> {
        check_policy(plan)?;
        Ok(Privileged { setuid: plan.mode == Mode::Setuid, uid: sys::getuid(), gid: sys::getgid() })
    }

    /// Opens `-O`/`-E` files as the caller, before any namespace exists. Setuid: in a child
    /// that shares ljspawn's descriptor table and has become the caller entirely (all ids, no
    /// capability: filesystem ids alone would leave CAP_SYS_PTRACE and the rest in force, e.g.
    /// for `/proc/PID/root/...`); it puts each file in place of a placeholder ljspawn made.
    pub fn open_outputs(&self, plan: &Plan) -> Result<Outputs, SpawnError> {
        let files: Vec<(&Path, &str)> = [(&plan.stdout_file, "-O"), (&plan.stderr_file, "-E")]
            .into_iter()
            .filter_map(|(p, flag)| p.as_deref().map(|p| (p, flag)))
            .collect();
        let mut opened = if !self.setuid {
            files.iter().map(|(p, flag)| open_output(p, flag)).collect::<Result<Vec<_>, _>>()?
        } else if files.is_empty() {
            Vec::new()
        } else {
            self.open_as_caller(&files)?
        };
        let mut take = |want: bool| if want { Some(opened.remove(0)) } else { None };
        let stdout = take(plan.stdout_file.is_some());
        let stderr = take(plan.stderr_file.is_some());
        Ok(Outputs { stdout, stderr })
    }

    fn open_as_caller(&self, files: &[(&Path, &str)]) -> Result<Vec<OwnedFd>, SpawnError> {
        let placeholder = || {
            OpenOptions::new()
                .read(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| err("cannot open /dev/null", e))
        };
        let slots = files.iter().map(|_| placeholder()).collect::<Result<Vec<_>, _>>()?;
        let (r, w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
        let pid =
            sys::clone_fork(libc::CLONE_FILES as u64).map_err(|e| err("cannot start a process as you", e))?;
        if pid == 0 {
            let (uid, gid) = (self.uid, self.gid);
            let opened = (|| {
                let fail = |what: &str, e: io::Error| err(format!("cannot become you to open {what}"), e);
                sys::setresgid(gid).map_err(|e| fail("-O/-E", e))?;
                sys::setresuid(uid).map_err(|e| fail("-O/-E", e))?;
                sys::set_dumpable(false).map_err(|e| fail("-O/-E", e))?;
                let caps = sys::capget().map_err(|e| fail("-O/-E", e))?;
                if sys::getresids() != (uid, uid, uid, gid, gid, gid) || caps != (0, 0, 0) {
                    return Err(SpawnError {
                        code: EXIT_SETUP,
                        msg: "cannot become you to open -O/-E".into(),
                    });
                }
                for ((p, flag), slot) in files.iter().zip(&slots) {
                    let f = open_output(p, flag)?;
                    sys::dup2(f.as_fd(), slot.as_raw_fd())
                        .map_err(|e| err(format!("cannot open {flag}"), e))?;
                }
                Ok(())
            })();
            let code = match opened {
                Ok(()) => 0,
                Err(e) => {
                    let _ = sys::write_all(w.as_fd(), e.msg.as_bytes());
                    1
                }
            };
            sys::exit_now(code)
        }
        let status =
            sys::wait_blocking(pid).map_err(|e| err("cannot wait for the process opening -O/-E", e))?.1;
        drop(w);
        let mut msg = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n @ 1..) = sys::read(r.as_fd(), &mut buf) {
            msg.extend_from_slice(&buf[..n]);
        }
        match status {
            sys::WaitStatus::Exited(0) => Ok(slots),
            _ if !msg.is_empty() => {
                Err(SpawnError { code: EXIT_SETUP, msg: String::from_utf8_lossy(&msg).into_owned() })
            }
            _ => Err(SpawnError {
                code: EXIT_SETUP,
                msg: "cannot open -O/-E: the process opening them failed".into(),
            }),
        }
    }

    /// Finds the cgroup hierarchies, removes cgroups of ljspawns that died without cleaning
    /// up (root and setuid), and makes this jail's. None without limits.
    pub fn make_cgroup(&self, plan: &Plan) -> Result<Option<Cgroup>, SpawnError> {
        if plan.limits.is_empty() && !plan.delegate_cgroup {
            return Ok(None);
        }
        let fail = |e: limits::LimitError| SpawnError { code: EXIT_SETUP, msg: e.to_string() };
        let read = |p: &str| std::fs::read_to_string(p).map_err(|e| err(format!("cannot read {p}"), e));
        let tree = Tree::real();
        let (mountinfo, self_cgroup) = (read("/proc/self/mountinfo")?, read("/proc/self/cgroup")?);
        let who = match plan.mode {
            Mode::Root => Who::Root,
            Mode::Setuid => Who::Setuid(sys::getuid()),
            Mode::Rootless => Who::Rootless(sys::getuid()),
        };
        let name = format!("lightjail-{}", sys::getpid());
        // --delegate-cgroup: the v2 hierarchy, whatever the limits use. (The jails of a killed
        // ljspawn also left their delegated v2 cgroups there; rootless: in the caller's own
        // cgroup, where it may remove what it left itself.) Without it, the limits' own
        // hierarchies are all there is to clean.
        let v2 = if plan.delegate_cgroup { limits::detect_v2(&mountinfo, &self_cgroup) } else { None };
        if let Some(v2) = &v2 {
            limits::reap_stale(v2, &tree, Path::new("/proc"));
        }
        let mut cg = if plan.limits.is_empty() {
            Cgroup::empty(&tree)
        } else {
            let layout = limits::detect(&mountinfo, &self_cgroup, &tree, &plan.limits).map_err(fail)?;
            // (Pure v2: the same cgroup, cleaned just above.)
            if v2.as_ref() != Some(&layout) {
                limits::reap_stale(&layout, &tree, Path::new("/proc"));
            }
            // Inside the caller's own cgroup (see `limits`): nothing outside it is written.
            Cgroup::create(&layout, &tree, &name, &plan.limits, who).map_err(fail)?
        };
        if plan.delegate_cgroup {
            // Re-checked here, where it is acted on: setuid mode delegates only with a grant.
            if self.setuid && plan.grants.limits.is_none() {
                let _ = cg.remove();
                return Err(SpawnError {
                    code: EXIT_SETUP,
                    msg: "--delegate-cgroup is not granted to you in /etc/lightjail.conf".into(),
                });
            }
            let Some(v2) = v2 else {
                let _ = cg.remove();
                return Err(SpawnError {
                    code: EXIT_SETUP,
                    msg: "--delegate-cgroup needs the cgroup v2 hierarchy, and this host mounts none".into(),
                });
            };
            // The jail's root on the host, else its user (None without a user namespace: this
            // process's ids). Setuid: never root's, so the jail can use what it is given.
            let owner = plan.cgroup_owner();
            if self.setuid && owner.is_none_or(|(u, g)| u == 0 || g == 0) {
                let _ = cg.remove();
                return Err(SpawnError {
                    code: EXIT_SETUP,
                    msg: "--delegate-cgroup: the jail has no ids of yours to give its cgroup to".into(),
                });
            }
            if let Err(e) = cg.delegate(&v2, &name, who, owner) {
                let _ = cg.remove();
                return Err(fail(e));
            }
        }
        // Setuid: only root may remove the cgroup, and ljspawn stops being root before the jail
        // ends: the reaper starts now, so that no failure from here on leaves the cgroup behind
        // (before it starts, ljspawn removes it itself; a SIGKILL in between leaves it to the
        // next ljspawn's reap_stale).
        if self.setuid {
            if let Err(e) = spawn_reaper(&cg) {
                let _ = cg.remove();
                return Err(e);
            }
        }
        Ok(Some(cg))
    }

    /// The `--idmap-layer` layers as detached, idmapped, read-only mounts, one entry per layer
    /// of an overlay root (None for a plain `--layer`); empty when there is none. Made before
    /// the clone, so the jail inherits them, and dropped here once it has.
    pub fn idmap_layers(&self, plan: &Plan) -> Result<Vec<Option<OwnedFd>>, SpawnError> {
        let RootFs::Overlay { layers, idmap, .. } = &plan.root else { return Ok(Vec::new()) };
        if !idmap.contains(&true) {
            return Ok(Vec::new());
        }
        let refuse = |msg: String| SpawnError { code: EXIT_SETUP, msg };
        let map = plan
            .userns
            .as_ref()
            .ok_or_else(|| refuse("--idmap-layer needs a user namespace to map onto".into()))?;
        if plan.mode == Mode::Rootless {
            return Err(refuse("--idmap-layer is not allowed in rootless mode".into()));
        }
        // Every layer is opened before the helper namespace exists: a refusal costs nothing.
        let mut dirs = Vec::with_capacity(layers.len());
        for (l, &i) in layers.iter().zip(idmap) {
            dirs.push(if i { Some(self.open_layer(plan, l)?) } else { None });
        }
        let userns = mapped_userns(map)?;
        let mut out = Vec::with_capacity(dirs.len());
        for (dir, l) in dirs.into_iter().zip(layers) {
            let Some(dir) = dir else {
                out.push(None);
                continue;
            };
            let shown = l.display();
            // Not recursive: a mount under the layer is not part of it.
            let tree = sys::open_tree(Some(dir.as_fd()), "", sys::OPEN_TREE_CLONE)
                .map_err(|e| err(format!("cannot clone --idmap-layer {shown}"), e))?;
            let attrs = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
            sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd(), attrs)
                .map_err(|e| err(format!("cannot idmap --idmap-layer {shown}"), e))?;
            out.push(Some(tree));
        }
        Ok(out)
    }

    /// Opens an `--idmap-layer` directory (O_PATH). Root: as given. Setuid: only beneath a
    /// store granted to the caller (the rule is looked up again here, from the policy ljspawn
    /// parsed itself), one component at a time from `/`, following no symlink, each
    /// directory owned by root and writable by no group or other user; the caller's string
    /// is never handed to a call that resolves it in one go.
    fn open_layer(&self, plan: &Plan, layer: &Path) -> Result<OwnedFd, SpawnError> {
        let shown = layer.display().to_string();
        let refuse = |why: String| SpawnError {
            code: EXIT_SETUP,
            msg: format!("refused: --idmap-layer {shown}: {why}"),
        };
        if !self.setuid {
            return sys::openat2(
                None,
                &shown,
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                sys::RESOLVE_NO_MAGICLINKS,
            )
            .map_err(|e| err(format!("cannot open --idmap-layer {shown}"), e));
        }
        let path = layer.to_str().filter(|p| crate::conf::is_plain_absolute(p)).ok_or_else(|| {
            refuse("not an absolute path of plain names (no '.', '..', '//' or trailing '/')".into())
        })?;
        if plan::idmap_layer_store(path, &plan.grants).is_none() {
            return Err(refuse(format!(
                "not in a store granted to you in {} (a line like 'store DIR allow USER' is missing)",
                crate::conf::PATH
            )));
        }
        let check = |fd: &OwnedFd, at: &str| -> Result<(), SpawnError> {
            let st = sys::fstat(fd.as_fd()).map_err(|e| err(format!("cannot stat {at}"), e))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                return Err(refuse(format!("{at} is a symlink (a store's path follows none)")));
            }
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(refuse(format!("{at} is not a directory")));
            }
            if st.st_uid != 0 {
                return Err(refuse(format!("{at} is not owned by root (a store is root's, from / down)")));
            }
            if st.st_mode & 0o022 != 0 {
                return Err(refuse(format!("{at} is writable by group or others")));
            }
            Ok(())
        };
        let mut dir = sys::openat2(None, "/", libc::O_PATH | libc::O_DIRECTORY, 0, 0)
            .map_err(|e| err("cannot open /", e))?;
        check(&dir, "/")?;
        // Beneath the store, no hidden directory: a lightjail root keeps its staging areas,
        // locks and failed builds' logs there (`.tmp`, `.locks`, `.logs`), none of them a layer.
        let store = plan::idmap_layer_store(path, &plan.grants).unwrap_or("/");
        if path[store.len()..].split('/').any(|c| c.starts_with('.')) {
            return Err(refuse(format!(
                "a hidden directory ('.NAME') beneath the store {store} is not a layer"
            )));
        }
        let mut at = String::new();
        for name in path.split('/').skip(1) {
            at.push('/');
            at.push_str(name);
            let resolve = sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS | sys::RESOLVE_BENEATH;
            // O_PATH | O_NOFOLLOW: a symlink is opened itself, and refused by `check`.
            let next = sys::openat2(Some(dir.as_fd()), name, libc::O_PATH | libc::O_NOFOLLOW, 0, resolve)
                .map_err(|e| err(format!("cannot open --idmap-layer {shown} at {at}"), e))?;
            check(&next, &at)?;
            dir = next;
        }
        Ok(dir)
    }

    /// The jail `pid` is cloned and waits for the go byte: writes its maps (setuid), plumbs
    /// its network device and moves it into its cgroup (setuid: the reaper started with the
    /// cgroup, in [`Privileged::make_cgroup`]).
    pub fn setup_jail(
        &self,
        plan: &Plan,
        pid: i32,
        cgroup: Option<&Cgroup>,
        born: &limits::Born,
    ) -> Result<(), SpawnError> {
        match &plan.userns {
            Some(m) if m.by_parent && m.helper => run_idmap_helpers(pid, m)?,
            Some(m) if m.by_parent => jail::write_maps(&format!("/proc/{pid}"), m)
                .map_err(|(file, e)| err(format!("cannot write the jail's {file}"), e))?,
            _ => {}
        }
        plumb(plan, pid)?;
        if let Some(cg) = cgroup {
            cg.add(pid, born).map_err(|e| SpawnError { code: EXIT_SETUP, msg: e.to_string() })?;
        }
        Ok(())
    }

    /// Ends the window: a setuid ljspawn drops every privilege for good and checks that they
    /// are gone (dropping clears the parent-death signal: `die_with_parent` sets it again).
    pub fn drop(self, die_with_parent: Option<i32>) -> Result<(), SpawnError> {
        if !self.setuid {
            return Ok(());
        }
        drop_privileges(self.uid, self.gid)?;
        if let Some(parent) = die_with_parent {
            let again = sys::set_pdeathsig(libc::SIGKILL);
            if again.is_err() || sys::getppid() != parent {
                return Err(SpawnError { code: EXIT_SETUP, msg: "the parent process is gone".into() });
            }
        }
        Ok(())
    }

    /// Setuid `--join`: the user namespace of the jail whose PID 1 is `pid` (checked by `join`
    /// to be a PID 1 of this executable's, the caller's), opened and checked as root, before
    /// anything is entered. Refused unless it is a child of ljspawn's own user namespace (the
    /// initial one: not a namespace nested in a jail) and its `uid_map`, `gid_map` and
    /// `setgroups` are exactly those this plan's jail gets (`plan::userns_map`: the caller's
    /// ids and its `/etc/subuid`/`/etc/subgid` ranges as setuid ljspawn writes them), so every
    /// host id it maps is the caller's own or granted to it. (A map, once written, never
    /// changes; the namespace is read again afterwards, so the maps read were its own.)
    pub fn open_jail_userns(&self, plan: &Plan, pid: i32) -> Result<OwnedFd, SpawnError> {
        let refuse =
            |why: String| SpawnError { code: EXIT_SETUP, msg: format!("refused: jail {pid}: {why}") };
        let map = match &plan.userns {
            Some(m) if self.setuid && m.by_parent && !m.helper => m,
            _ => return Err(refuse("not a setuid jail's plan (no user namespace ljspawn maps)".into())),
        };
        let link = format!("/proc/{pid}/ns/user");
        let stat_link = || {
            std::fs::metadata(&link)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    (m.dev(), m.ino())
                })
                .map_err(|e| err(format!("cannot stat {link}"), e))
        };
        let ns = std::fs::File::open(&link)
            .map(OwnedFd::from)
            .map_err(|e| err(format!("cannot open {link}"), e))?;
        let st = sys::fstat(ns.as_fd()).map_err(|e| err(format!("cannot stat {link}"), e))?;
        let ours =
            std::fs::metadata("/proc/self/ns/user").map_err(|e| err("cannot stat /proc/self/ns/user", e))?;
        let ours = {
            use std::os::unix::fs::MetadataExt;
            (ours.dev(), ours.ino())
        };
        if (st.st_dev, st.st_ino) == ours {
            return Err(refuse("it has no user namespace of its own".into()));
        }
        let parent = match sys::ns_get_parent(ns.as_fd()) {
            Ok(p) => sys::fstat(p.as_fd()).map(|p| (p.st_dev, p.st_ino)).ok(),
            Err(_) => None,
        };
        if parent != Some(ours) {
            return Err(refuse(
                "its user namespace is nested in another one, not made by setuid ljspawn".into(),
            ));
        }
        // Made by root (setuid ljspawn makes it with euid 0): a namespace the caller made could
        // hold maps copied from setuid ljspawn's and a jail of this executable run as its root
        // (setuid is ignored there, so that one runs in root mode). The owner also keeps the
        // setns below from resetting this process's dumpable flag (the kernel keeps it only
        // when the old euid owns the new namespace).
        match sys::ns_get_owner_uid(ns.as_fd()) {
            Ok(0) => {}
            Ok(_) => {
                return Err(refuse("its user namespace was not made by setuid ljspawn (not root's)".into()))
            }
            Err(e) => return Err(err(format!("cannot read the owner of {link}"), e)),
        }
        // The drop to the caller's ids makes a process dumpable when fs.suid_dumpable is not 0,
        // and then the jail's root could ptrace the joiner (which holds the caller's terminal):
        // refused there, as setuid ljspawn cannot keep it undumpable through that moment.
        match std::fs::read_to_string("/proc/sys/fs/suid_dumpable") {
            Ok(v) if v.trim() == "0" => {}
            Ok(v) => {
                return Err(SpawnError {
                    code: EXIT_SETUP,
                    msg: format!(
                        "refused: setuid --join needs fs.suid_dumpable = 0 (it is {}): the joiner would be \
                         ptraceable from the jail as it drops to your ids",
                        v.trim()
                    ),
                })
            }
            Err(e) => return Err(err("cannot read /proc/sys/fs/suid_dumpable", e)),
        }
        let read = |file: &str| {
            let p = format!("/proc/{pid}/{file}");
            std::fs::read_to_string(&p).map_err(|e| err(format!("cannot read {p}"), e))
        };
        let (uids, gids, setgroups) = (read("uid_map")?, read("gid_map")?, read("setgroups")?);
        let want_setgroups = if map.setgroups { "allow" } else { "deny" };
        if !same_map(&uids, &map.uids) || !same_map(&gids, &map.gids) || setgroups.trim() != want_setgroups {
            return Err(refuse(
                "its user namespace maps other ids than setuid ljspawn maps for you with these options \
                 (not your jail, or not its own options)"
                    .into(),
            ));
        }
        if stat_link()? != (st.st_dev, st.st_ino) {
            return Err(refuse("it changed its user namespace meanwhile".into()));
        }
        Ok(ns)
    }

    /// Setuid `--join`: ends the window by entering `userns` (from [`Privileged::open_jail_userns`],
    /// alone, as root: the kernel asks `CAP_SYS_ADMIN` over it, which only root holds, the
    /// namespace being root's) and becoming there, at once, the caller's ids in the jail (the
    /// first line of each map, as the jail's PID 1 does); supplementary groups are cleared where
    /// the namespace allows `setgroups`, as for the jail's program (elsewhere they are the
    /// caller's, as its program's are). From then on nothing of host root's is held: a process
    /// in a child user namespace has no capability outside it, and its ids are the caller's on
    /// the host. The capabilities setns gave in the jail's namespace stay (the kernel's
    /// `cap_emulate_setxuid` clears them only when a uid that was the namespace's root, its uid
    /// 0, is given up, and host uid 0 is not mapped there: the jail's uid 0 is a subordinate id
    /// or, with `--subids`, the caller, whom this process becomes), so it can enter the jail's
    /// other namespaces, which that user namespace owns; `jail::confine_and_exec` then drops them
    /// as for the jail's program.
    pub fn join_jail(self, userns: OwnedFd, map: &IdMap) -> Result<(), SpawnError> {
        if !self.setuid {
            return Err(SpawnError {
                code: EXIT_SETUP,
                msg: "not setuid: no user namespace to enter".into(),
            });
        }
        let fail =
            |what: &str, e: io::Error| err(format!("cannot enter the jail's user namespace ({what})"), e);
        sys::setns(userns.as_fd(), libc::CLONE_NEWUSER).map_err(|e| fail("setns", e))?;
        let (u, g) = (map.uids[0].inside, map.gids[0].inside);
        sys::setresgid(g).map_err(|e| fail("gid", e))?;
        sys::setresuid(u).map_err(|e| fail("uid", e))?;
        if map.setgroups {
            sys::setgroups_empty().map_err(|e| fail("supplementary groups", e))?;
        }
        let st = sys::fstat(userns.as_fd()).map_err(|e| fail("stat", e))?;
        let now = std::fs::metadata("/proc/self/ns/user").map_err(|e| fail("stat", e))?;
        let in_jail = {
            use std::os::unix::fs::MetadataExt;
            (now.dev(), now.ino()) == (st.st_dev, st.st_ino)
        };
        // Undumpable again (the change of ids set it to fs.suid_dumpable, checked 0 above), so
        // no process of the jail's may ptrace this one, which holds the caller's descriptors.
        sys::set_dumpable(false).map_err(|e| fail("dumpable", e))?;
        if sys::getresids() != (u, u, u, g, g, g) || !in_jail || sys::dumpable().unwrap_or(true) {
            return Err(SpawnError {
                code: EXIT_SETUP,
                msg: "privileges are still held after entering the jail's user namespace".into(),
            });
        }
        Ok(())
    }

    /// Setuid, network `none` made in parallel: ends the window by entering the jail's user
    /// namespace (`pid`'s, whose `map` is written) with the caller's ids there. That leaves
    /// nothing of root's: a process in a child user namespace holds no capability outside it,
    /// and its ids are the caller's on the host. With the capabilities that namespace gives
    /// (what a rootless ljspawn holds) it makes the jail's network namespace (`make_net`),
    /// then drops those too and checks that no capability is held and no other id can be taken.
    pub fn drop_into_jail(
        self,
        pid: i32,
        map: &IdMap,
        die_with_parent: Option<i32>,
        make_net: impl FnOnce() -> Result<(), SpawnError>,
    ) -> Result<(), SpawnError> {
        if !self.setuid {
            return Err(SpawnError {
                code: EXIT_SETUP,
                msg: "not setuid: no user namespace to enter".into(),
            });
        }
        let fail = |what: &str, e: io::Error| err(format!("cannot drop privileges ({what})"), e);
        let jail = sys::pidfd_open(pid).map_err(|e| fail("the jail's pidfd", e))?;
        sys::setns(jail.as_fd(), libc::CLONE_NEWUSER).map_err(|e| fail("the jail's user namespace", e))?;
        drop(jail);
        let (u, g) = (map.uids[0].inside, map.gids[0].inside);
        sys::setresgid(g).map_err(|e| fail("gid", e))?;
        sys::setresuid(u).map_err(|e| fail("uid", e))?;
        make_net()?;
        sys::capset(0).map_err(|e| fail("capabilities", e))?;
        sys::ambient_clear().map_err(|e| fail("ambient capabilities", e))?;
        let caps = sys::capget().map_err(|e| fail("capabilities", e))?;
        if sys::getresids() != (u, u, u, g, g, g) || caps != (0, 0, 0) || sys::setresuid(u ^ 1).is_ok() {
            return Err(SpawnError {
                code: EXIT_SETUP,
                msg: "privileges are still held after dropping them".into(),
            });
        }
        if let Some(parent) = die_with_parent {
            let again = sys::set_pdeathsig(libc::SIGKILL);
            if again.is_err() || sys::getppid() != parent {
                return Err(SpawnError { code: EXIT_SETUP, msg: "the parent process is gone".into() });
            }
        }
        Ok(())
    }
}

/// Whether a `uid_map`/`gid_map` as the kernel shows it (`inside outside count` a line, read
/// from the initial user namespace: outside ids are host ids) holds exactly the lines `want`,
/// in any order (the kernel sorts maps of more than five lines).
fn same_map(text: &str, want: &[IdRange]) -> bool {
    let mut have = Vec::new();
    for line in text.lines() {
        let f: Vec<u32> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        match f[..] {
            [inside, outside, count] if line.split_whitespace().count() == 3 => {
                have.push((inside, outside, count))
            }
            _ => return false,
        }
    }
    let mut want: Vec<(u32, u32, u32)> = want.iter().map(|r| (r.inside, r.outside, r.count)).collect();
    have.sort_unstable();
    want.sort_unstable();
    !have.is_empty() && have == want
}

/// A user namespace with the jail's maps, for idmapping its layers: a child made with
/// CLONE_NEWUSER that only waits, its maps written from here, its namespace opened, and the
/// child gone before this returns (the fd keeps the namespace).
fn mapped_userns(map: &IdMap) -> Result<OwnedFd, SpawnError> {
    let (r, w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    let pid = match sys::clone_fork(libc::CLONE_NEWUSER as u64) {
        Ok(0) => {
            drop(w);
            let mut b = [0u8; 1];
            let _ = sys::read(r.as_fd(), &mut b);
            sys::exit_now(0)
        }
        Ok(pid) => pid,
        Err(e) => return Err(err("cannot create a user namespace for --idmap-layer", e)),
    };
    drop(r);
    let proc = format!("/proc/{pid}");
    let opened = jail::write_maps(&proc, map)
        .map_err(|(file, e)| err(format!("cannot write the idmap namespace's {file}"), e))
        .and_then(|()| {
            std::fs::File::open(format!("{proc}/ns/user"))
                .map(OwnedFd::from)
                .map_err(|e| err("cannot open the idmap namespace", e))
        });
    drop(w);
    let _ = sys::wait_blocking(pid);
    opened
}

/// Opens one `-O`/`-E` file.
fn open_output(p: &Path, flag: &str) -> Result<OwnedFd, SpawnError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOCTTY)
        .open(p)
        .map(OwnedFd::from)
        .map_err(|e| err(format!("cannot open {flag} {}", p.display()), e))
}

/// Refuses, here in the code that acts, what the caller's mode does not allow, whatever the
/// plan says (the plan checks the same rules; this is the second look).
fn check_policy(plan: &Plan) -> Result<(), SpawnError> {
    // One descriptor, one use, in every mode: a number given to two options would be passed on
    // after ljspawn closed or reused it (see `plan::build`).
    let uses: Vec<(&str, i32)> = plan
        .pass_fds
        .iter()
        .map(|&fd| ("--pass-fd", fd))
        .chain(plan.json_status.map(|fd| ("--json-status", fd)))
        .chain(plan.seccomp_fds.iter().map(|&fd| ("--seccomp-fd", fd)))
        .chain(plan.block_fd.map(|fd| ("--block-fd", fd)))
        .chain(plan.userns_block_fd.map(|fd| ("--userns-block-fd", fd)))
        .chain(plan.info_fd.map(|fd| ("--info-fd", fd)))
        .chain(plan.join_userns.map(|fd| ("--userns", fd)))
        .chain(plan.join_userns2.map(|fd| ("--userns2", fd)))
        .chain(plan.join_pidns.map(|fd| ("--pidns", fd)))
        .collect();
    for (i, &(a, fd)) in uses.iter().enumerate() {
        if let Some(&(b, _)) = uses[..i].iter().find(|&&(b, other)| other == fd && b != a) {
            return Err(SpawnError {
                code: EXIT_SETUP,
                msg: format!("refused: fd {fd} is given to both {b} and {a}"),
            });
        }
    }
    if plan.mode == Mode::Root {
        return Ok(());
    }
    let refuse = |what: &str| {
        Err(SpawnError { code: EXIT_SETUP, msg: format!("{what} is not allowed in {} mode", plan.mode) })
    };
    // A private range of root's choosing (--subids-base) is root's only: the caller's ids are
    // its own and its /etc/subuid ranges, never host ids it names.
    if plan.subids_base.is_some() {
        return refuse("--subids-base");
    }
    // Cgroup limits: rootless callers only where the kernel delegates (checked where the
    // cgroup is made); setuid callers only within what /etc/lightjail.conf grants them.
    if plan.mode == Mode::Setuid && !plan.limits.is_empty() {
        let Some(max) = plan.grants.limits else { return refuse("cgroup limits (no grant)") };
        let above = |v: Option<f64>, m: Option<f64>| matches!((v, m), (Some(v), Some(m)) if v > m);
        let f = |v: Option<u64>| v.map(|v| v as f64);
        let l = &plan.limits;
        if above(f(l.memory), f(max.memory)) || above(f(l.pids), f(max.pids)) || above(l.cpus, max.cpus) {
            return refuse("a cgroup limit above the grant");
        }
    }
    // Joining a user namespace (bwrap's --userns, --userns2) is rootless only.
    if plan.mode == Mode::Setuid && (plan.join_userns.is_some() || plan.join_userns2.is_some()) {
        return refuse("joining a user namespace");
    }
    // So is joining a PID namespace (bwrap's --pidns): it needs CAP_SYS_ADMIN in the user
    // namespace that owns it, which rootless ljspawn has only after --userns (refused above);
    // as root, ljspawn could enter namespaces the caller cannot.
    if plan.mode == Mode::Setuid && (plan.join_pidns.is_some() || !plan.own_pidns) {
        return refuse("joining a PID namespace");
    }
    if plan.userns.is_none() && plan.join_userns.is_none() {
        return refuse("a jail without a user namespace");
    }
    // (Capabilities are kept only inside the jail's own user namespace, checked above.)
    if plan.seccomp == Seccomp::None {
        return refuse("--seccomp none");
    }
    // The maps of a namespace made here are ljspawn's to write, never the caller's.
    if plan.mode == Mode::Setuid && plan.userns_block_fd.is_some() {
        return refuse("--userns-block-fd");
    }
    let granted = match &plan.net {
        Net::Bridge { bridge, .. } => Some(plan.grants.bridges.contains(bridge)),
        Net::Macvlan { parent, .. } => Some(plan.grants.macvlans.contains(parent)),
        Net::None | Net::Host => None,
        Net::Pasta if plan.mode == Mode::Setuid => return refuse("--net pasta"),
        Net::Pasta => None,
    };
    if granted == Some(false) || (granted.is_some() && plan.mode != Mode::Setuid) {
        return refuse("this network mode");
    }
    if plan.mode == Mode::Rootless
        && matches!(&plan.root, RootFs::Overlay { idmap, .. } if idmap.contains(&true))
    {
        return refuse("--idmap-layer");
    }
    if plan.mode == Mode::Rootless && plan.userns.as_ref().is_some_and(|m| m.by_parent && !m.helper) {
        return refuse("privileged id maps");
    }
    if plan.mode != Mode::Rootless && plan.userns.as_ref().is_some_and(|m| m.helper) {
        return refuse("newuidmap");
    }
    Ok(())
}

/// Where Debian's `uidmap` package installs the helpers (setuid root; never looked up in PATH).
const NEWUIDMAP: &str = "/usr/bin/newuidmap";
const NEWGIDMAP: &str = "/usr/bin/newgidmap";

/// Rootless `--subids`: runs `newgidmap PID INSIDE OUTSIDE COUNT...` and the same with
/// `newuidmap` on the jail, from this unprivileged process. They check every range against
/// `/etc/subuid`/`/etc/subgid` and allow `setgroups` when a subgid range is mapped.
fn run_idmap_helpers(pid: i32, m: &crate::plan::IdMap) -> Result<(), SpawnError> {
    for (helper, ranges) in [(NEWGIDMAP, &m.gids), (NEWUIDMAP, &m.uids)] {
        let mut cmd = std::process::Command::new(helper);
        cmd.arg(pid.to_string());
        for r in ranges.iter() {
            cmd.args([r.inside.to_string(), r.outside.to_string(), r.count.to_string()]);
        }
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let out = cmd.output().map_err(|e| {
            let hint =
                if e.kind() == io::ErrorKind::NotFound { " (install Debian's uidmap package)" } else { "" };
            SpawnError {
                code: EXIT_SETUP,
                msg: format!("--subids: cannot run {helper}: {}{hint}", crate::describe(&e)),
            }
        })?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().last().unwrap_or("").trim();
            return Err(SpawnError {
                code: EXIT_SETUP,
                msg: format!("--subids: {helper} failed ({}): {why}", out.status),
            });
        }
    }
    Ok(())
}

/// Setuid mode: a process that stays root, takes nothing from anyone, and removes the jail's
/// cgroup once ljspawn (about to drop its privileges) has exited. Its real uid is root, so the
/// caller cannot signal it.
fn spawn_reaper(cg: &Cgroup) -> Result<(), SpawnError> {
    let (r, w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    match sys::fork().map_err(|e| err("cannot start the cgroup reaper", e))? {
        0 => {
            // Nothing of the caller's: all ids root's, a session of its own (no terminal to
            // stop it with ^Z), fds 0-2 on /dev/null, no resource limit of the caller's.
            let _ = sys::setresgid(0);
            let _ = sys::setresuid(0);
            let _ = sys::setsid();
            if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                for fd in 0..3 {
                    let _ = sys::dup2(null.as_fd(), fd);
                }
            }
            for resource in [libc::RLIMIT_CPU, libc::RLIMIT_AS, libc::RLIMIT_DATA, libc::RLIMIT_STACK] {
                let _ = sys::setrlimit(resource, libc::RLIM_INFINITY, libc::RLIM_INFINITY);
            }
            let _ = sys::setrlimit(libc::RLIMIT_NOFILE, 1024, 1024);
            let _ = sys::close_fds_except(&[r.as_raw_fd()]);
            // End of file: every copy of the write end is closed, so ljspawn has exited.
            let mut b = [0u8; 1];
            while matches!(sys::read(r.as_fd(), &mut b), Ok(n) if n > 0) {}
            let _ = cg.remove();
            sys::exit_now(0)
        }
        _ => {
            // Kept open, never written, until ljspawn exits.
            std::mem::forget(w);
            Ok(())
        }
    }
}

/// Creates the jail's eth0 from the host side (bridge: veth pair; macvlan), root only.
fn plumb(plan: &Plan, pid: i32) -> Result<(), SpawnError> {
    match &plan.net {
        Net::Bridge { bridge, .. } => {
            let no_bridge =
                || SpawnError { code: EXIT_SETUP, msg: format!("--net bridge:{bridge}: no such bridge") };
            let idx = net::host_ifindex(bridge).map_err(|_| no_bridge())?;
            net::request(&net::veth_msg(&format!("lj{pid}"), idx, pid)).map_err(|e| match e.raw_os_error() {
                // Enslaving to something that is not a bridge (or another master kind).
                Some(libc::EOPNOTSUPP | libc::EINVAL) => SpawnError {
                    code: EXIT_SETUP,
                    msg: format!("--net bridge:{bridge}: {bridge} is not a bridge"),
                },
                _ => err(format!("cannot plug the jail into bridge {bridge}"), e),
            })
        }
        Net::Macvlan { parent, .. } => {
            let idx = net::host_ifindex(parent).map_err(|e| err(format!("--net macvlan:{parent}"), e))?;
            net::request(&net::macvlan_msg(idx, pid))
                .map_err(|e| err(format!("cannot make a macvlan on {parent}"), e))
        }
        Net::None | Net::Host | Net::Pasta => Ok(()),
    }
}

/// Drops every privilege of a setuid ljspawn for good, and checks that they are gone.
pub fn drop_privileges(uid: u32, gid: u32) -> Result<(), SpawnError> {
    let fail = |what: &str, e: io::Error| err(format!("cannot drop privileges ({what})"), e);
    sys::setresgid(gid).map_err(|e| fail("gid", e))?;
    sys::setresuid(uid).map_err(|e| fail("uid", e))?;
    let caps = sys::capget().map_err(|e| fail("capabilities", e))?;
    if sys::getresids() != (uid, uid, uid, gid, gid, gid) || caps != (0, 0, 0) || sys::setresuid(0).is_ok() {
        return Err(SpawnError {
            code: EXIT_SETUP,
            msg: "privileges are still held after dropping them".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{Grants, MaxLimits};
    use crate::plan::{build, Caller, Request};

    fn plan(mode: Mode, limits: Option<MaxLimits>) -> Plan {
        let caller = Caller {
            mode,
            uid: 1000,
            gid: 1000,
            tty: false,
            stdin_tty: false,
            term: None,
            subuids: vec![],
            subgids: vec![],
            grants: Grants { limits, ..Grants::default() },
            cwd: None,
            host_links: vec![],
        };
        let req = Request { root: Some("/w".into()), command: vec!["true".into()], ..Request::default() };
        build(&req, &caller, &|_| true).unwrap()
    }

    /// The second look refuses what the plan would have, if the plan was wrong (or changed).
    #[test]
    fn second_look_rechecks_cgroup_grants_and_fd_options() {
        let grant = MaxLimits { memory: Some(64 << 20), pids: Some(16), cpus: None };
        let mut p = plan(Mode::Setuid, Some(grant));
        p.limits.memory = Some(64 << 20);
        assert!(check_policy(&p).is_ok());
        p.limits.memory = Some(65 << 20);
        assert!(check_policy(&p).unwrap_err().msg.contains("above the grant"));
        p.limits.memory = None;
        p.limits.pids = Some(17);
        assert!(check_policy(&p).unwrap_err().msg.contains("above the grant"));
        p.limits.pids = Some(8);
        p.grants.limits = None;
        assert!(check_policy(&p).unwrap_err().msg.contains("no grant"));
        // Root too: one fd, one use.
        for mode in [Mode::Root, Mode::Rootless, Mode::Setuid] {
            let mut p = plan(mode, None);
            assert!(check_policy(&p).is_ok(), "{mode}");
            p.pass_fds = vec![7];
            p.seccomp_fds = vec![7];
            let e = check_policy(&p).unwrap_err();
            assert!(e.msg.contains("fd 7 is given to both --pass-fd and --seccomp-fd"), "{mode}: {}", e.msg);
            p.seccomp_fds.clear();
            p.json_status = Some(7);
            assert!(check_policy(&p).is_err(), "{mode}");
        }
    }

    /// Setuid `--join`: a namespace's maps, as the kernel prints them, against the plan's.
    #[test]
    fn join_compares_maps_exactly() {
        let r = |inside, outside, count| IdRange { inside, outside, count };
        let want = [r(0, 1000, 1), r(1, 100000, 65536)];
        let shown = "         1     100000      65536\n         0       1000          1\n";
        assert!(same_map(shown, &want));
        assert!(!same_map("         0       1000          1\n", &want));
        assert!(!same_map("0 1000 1\n1 100000 65537\n", &want));
        assert!(!same_map("0 1000 1\n1 100000 65536\n2 0 1\n", &want));
        assert!(!same_map("0 1000 1 1\n1 100000 65536\n", &want));
        assert!(!same_map("", &[]));
    }

    /// `--subids-base` is root's: the privileged side refuses a plan that has it otherwise.
    #[test]
    fn second_look_refuses_subids_base_outside_root_mode() {
        let mut p = plan(Mode::Root, None);
        p.subids_base = Some(0x80000);
        assert!(check_policy(&p).is_ok());
        for mode in [Mode::Setuid, Mode::Rootless] {
            let mut p = plan(mode, None);
            p.subids_base = Some(0x80000);
            let e = check_policy(&p).unwrap_err();
            assert_eq!(
                (e.code, e.msg.as_str()),
                (EXIT_SETUP, &*format!("--subids-base is not allowed in {mode} mode"))
            );
        }
    }
}
