//! `ljspawn [OPTIONS] [--] COMMAND [ARGS...]`: see `ljspawn --help` and the crate docs.

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use ljspawn::plan::{self, Caller, Mode};
use ljspawn::{bwrap, cli, conf, privileged, spawn, subids, sys, EXIT_SETUP, EXIT_USAGE};

/// Invoked in bubblewrap's form: messages say `bwrap: ` and ljspawn's own failures exit 1.
static BWRAP_FORM: AtomicBool = AtomicBool::new(false);
/// bwrap's `--level-prefix`: ljspawn's failure line starts with `<3>` (an error, in syslog's
/// levels), its warnings with `<4>`.
static LEVEL_PREFIX: AtomicBool = AtomicBool::new(false);

/// A bump arena in front of the C library's allocator (see `arena`): no mmap/munmap per
/// allocation during setup.
#[global_allocator]
static ALLOC: ljspawn::arena::Arena = ljspawn::arena::Arena::new();

fn main() -> ExitCode {
    // Setuid mode (see `spawn` for the privilege phase): never dumpable, no environment read,
    // no panic message that consults RUST_BACKTRACE. Setgid or setuid-to-non-root installs
    // are refused before anything else.
    let (ruid, euid, rgid, egid) = (sys::getuid(), sys::geteuid(), sys::getgid(), sys::getegid());
    let mode = Mode::detect(ruid, euid);
    if rgid != egid || (ruid != euid && euid != 0) {
        return fail(EXIT_SETUP, &plan::PlanError::BadInstall.to_string());
    }
    if mode == Mode::Setuid {
        if let Err(e) = sys::set_dumpable(false) {
            return fail(EXIT_SETUP, &format!("cannot make ljspawn undumpable: {e}"));
        }
        std::panic::set_hook(Box::new(|info| ljspawn::errln!("ljspawn: internal error: {info}")));
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let req = match bwrap::detect(&argv) {
        Some(args) => {
            BWRAP_FORM.store(true, Ordering::Relaxed);
            match bwrap_request(&argv[0], &args) {
                Ok(r) => r,
                Err(code) => return code,
            }
        }
        None => match own_request(args) {
            Ok(r) => r,
            Err(code) => return code,
        },
    };
    let parent = sys::getppid();
    if req.die_with_parent {
        if let Err(e) = die_with(parent) {
            return fail(EXIT_SETUP, &e);
        }
    }

    // Only 0-2 and the descriptors asked for survive, before anything else is opened.
    let mut keep = req.pass_fds.clone();
    keep.extend(req.json_status);
    keep.extend(&req.seccomp_fds);
    keep.extend(req.block_fd);
    keep.extend(req.userns_block_fd);
    keep.extend(req.join_userns);
    keep.extend(req.join_userns2);
    keep.extend(req.join_pidns);
    keep.extend(req.info_fd);
    keep.extend(req.mounts.iter().filter_map(|m| match m {
        plan::MountReq::File { fd, .. }
        | plan::MountReq::Data { fd, .. }
        | plan::MountReq::BindFd { fd, .. } => Some(*fd),
        _ => None,
    }));
    if let Err(e) = sys::close_fds_except(&keep) {
        return fail(EXIT_SETUP, &format!("cannot close inherited descriptors: {e}"));
    }

    let setuid = mode == Mode::Setuid;
    let stdin_tty = sys::isatty(0);
    // The caller's login name, read once from /etc/passwd for the subid files and the grants.
    let login = if setuid || req.subids { subids::login_name(ruid) } else { None };
    let caller = Caller {
        mode,
        uid: ruid,
        gid: rgid,
        tty: stdin_tty || sys::isatty(1) || sys::isatty(2),
        stdin_tty,
        // Setuid mode never reads the environment.
        term: if setuid { None } else { std::env::var("TERM").ok() },
        subuids: if setuid || req.subids {
            subids::ranges("/etc/subuid", ruid, login.as_deref())
        } else {
            Vec::new()
        },
        subgids: if setuid || req.subids {
            subids::ranges("/etc/subgid", ruid, login.as_deref())
        } else {
            Vec::new()
        },
        grants: if setuid {
            match read_grants(login.clone(), rgid) {
                Ok(g) => g,
                Err(e) => return fail(EXIT_SETUP, &e),
            }
        } else {
            conf::Grants::default()
        },
        // getcwd(2), not $PWD: the environment is not read in setuid mode.
        cwd: std::env::current_dir().ok().and_then(|d| d.to_str().map(String::from)),
        host_links: if req.host_usr { host_links() } else { Vec::new() },
    };
    let plan = match plan::build(&req, &caller, &sys::fd_is_open) {
        Ok(p) => p,
        Err(e) => return fail(e.exit_code(), &e.to_string()),
    };
    if req.dry_run {
        if setuid {
            if let Err(e) = privileged::drop_privileges(ruid, rgid) {
                return fail(e.code, &e.msg);
            }
        }
        return out(&plan.to_string());
    }
    if let Some(pid) = req.join {
        return match ljspawn::join::run(&plan, pid) {
            Ok(code) => ExitCode::from(code),
            Err(e) => fail(e.code, &e.msg),
        };
    }
    let json = match plan
        .json_status
        .map(|fd| match fd {
            // -j: a copy of stderr, so the status lines interleave with ljspawn's messages.
            2 => std::io::stderr().as_fd().try_clone_to_owned(),
            fd => sys::take_inherited_fd(fd),
        })
        .transpose()
    {
        Ok(j) => j,
        Err(e) => return fail(EXIT_USAGE, &format!("--json-status: {e}")),
    };
    let seccomp_extra = match read_seccomp_programs(&plan.seccomp_fds) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    let files = match read_files(&plan) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_USAGE, &e),
    };
    // --bind-fd descriptors stay open for the jail to take, never for the program.
    for m in &plan.mounts {
        if let plan::Mount::BindFd { fd, .. } = m {
            if let Err(e) = sys::set_cloexec(*fd, true) {
                return fail(EXIT_USAGE, &format!("--bind-fd {fd}: {e}"));
            }
        }
    }
    let info = match plan.info_fd.map(sys::take_inherited_fd).transpose() {
        Ok(i) => i,
        Err(e) => return fail(EXIT_USAGE, &format!("--info-fd: {e}")),
    };
    let take = |fd: Option<i32>, what: &str| {
        fd.map(sys::take_inherited_fd).transpose().map_err(|e| fail(EXIT_USAGE, &format!("{what}: {e}")))
    };
    let block = match take(plan.block_fd, "--block-fd") {
        Ok(b) => b,
        Err(code) => return code,
    };
    let userns_block = match take(plan.userns_block_fd, "--userns-block-fd") {
        Ok(b) => b,
        Err(code) => return code,
    };
    let userns = match take(plan.join_userns, "--userns") {
        Ok(u) => u,
        Err(code) => return code,
    };
    let userns2 = match take(plan.join_userns2, "--userns2") {
        Ok(u) => u,
        Err(code) => return code,
    };
    let pidns = match take(plan.join_pidns, "--pidns") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let inputs =
        ljspawn::jail::Inputs { seccomp_extra, files, info, block, userns_block, userns, userns2, pidns };
    // Dropping privileges (setuid mode) clears the parent-death signal: spawn sets it again.
    let die_with_parent = req.die_with_parent.then_some(parent);
    match spawn::run(&plan, json, inputs, die_with_parent) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(e.code, &e.msg),
    }
}

/// ljspawn's own command line (`args` with argv\[0\]): its common form without clap (see
/// `cli::fast_request`), any other through clap.
fn own_request(args: Vec<std::ffi::OsString>) -> Result<plan::Request, ExitCode> {
    // (An empty argv, which execve allows, has no argv[0] to skip.)
    if let Some(r) = cli::fast_request(args.get(1..).unwrap_or_default()) {
        return Ok(r);
    }
    let matches = match cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        // --help and --version print as clap renders them; usage errors are one line.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            return Err(fail(EXIT_USAGE, &format!("{first} (see ljspawn --help)")));
        }
    };
    Ok(cli::request(&matches))
}

/// bubblewrap's command line (see `bwrap`). The environment is read here only to be handed to
/// the program as it is (bwrap keeps it); ljspawn consults none of it, in any mode, but the
/// program's `HOME` as the directory it starts in when the sandbox has not the caller's (as
/// bwrap does), entered after every privilege is dropped.
fn bwrap_request(argv0: &str, args: &[String]) -> Result<plan::Request, ExitCode> {
    use std::os::unix::ffi::OsStringExt;
    let (mut env, mut env_raw) = (Vec::new(), Vec::new());
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => env.push((k, v)),
            (k, v) => {
                let mut e = k.map_or_else(|k| k.into_vec(), String::into_bytes);
                e.push(b'=');
                e.extend(v.map_or_else(|v| v.into_vec(), String::into_bytes));
                env_raw.push(e);
            }
        }
    }
    let host = sys::hostname().map(|h| h.trim().to_string());
    let mut read_fd = |fd: i32| -> Result<Vec<u8>, String> {
        use std::io::Read;
        // bwrap's words: `Can't read --args data: Bad file descriptor`.
        let failed = |e: std::io::Error| format!("Can't read --args data: {}", ljspawn::strerror(&e));
        let f = sys::take_inherited_fd(fd).map_err(failed)?;
        let mut data = Vec::new();
        std::fs::File::from(f).take(1 << 20).read_to_end(&mut data).map_err(failed)?;
        Ok(data)
    };
    match bwrap::request(args, env, env_raw, host.filter(|h| !h.is_empty()), &mut read_fd) {
        Ok((r, warnings)) => {
            LEVEL_PREFIX.store(r.level_prefix, Ordering::Relaxed);
            let level = if r.level_prefix { "<4>" } else { "" };
            for w in warnings {
                ljspawn::errln!("{level}bwrap: {w}");
            }
            Ok(r)
        }
        Err(bwrap::BwrapError::Usage) => {
            ljspawn::errln!("{}", bwrap::usage(argv0));
            Err(ExitCode::from(1))
        }
        Err(bwrap::BwrapError::Help) => Err(out(&format!("{}\n\n{}\n", bwrap::usage(argv0), bwrap::HELP))),
        Err(bwrap::BwrapError::Version) => {
            Err(out(&format!("bubblewrap 0.11.1 (ljspawn {})\n", env!("CARGO_PKG_VERSION"))))
        }
        Err(bwrap::BwrapError::Msg(m)) => Err(fail(1, &m)),
    }
}

/// Writes `text` to stdout: 0, or 141 (128 + SIGPIPE, as the shell reports a C program that
/// signal kills), quietly, when stdout is a pipe whose reader has gone (`ljspawn --dry-run |
/// head -1`; `print!` would panic: Rust ignores SIGPIPE); another error is one line and 1.
fn out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(e) => fail(1, &format!("cannot write to stdout: {e}")),
    }
}

/// One line `ljspawn: MSG` (bwrap form: `bwrap: MSG`, and exit status 1 as bwrap's own).
fn fail(code: u8, msg: &str) -> ExitCode {
    if BWRAP_FORM.load(Ordering::Relaxed) {
        let level = if LEVEL_PREFIX.load(Ordering::Relaxed) { "<3>" } else { "" };
        ljspawn::errln!("{level}bwrap: {}", bwrap::message(msg));
        return ExitCode::from(1);
    }
    ljspawn::errln!("ljspawn: {msg}");
    ExitCode::from(code)
}

/// Reads each caller's BPF program from `--seccomp-fd` (to end of file; the descriptor is then
/// closed) and checks its shape. A descriptor given twice is closed the second time, as in
/// bwrap: it is never taken twice (another file may have its number by then).
fn read_seccomp_programs(fds: &[i32]) -> Result<Vec<Vec<u8>>, String> {
    use std::io::Read;
    let bwrap = BWRAP_FORM.load(Ordering::Relaxed);
    let read_err = |fd: i32, e: std::io::Error| {
        if bwrap {
            format!("Can't read seccomp data: {e}")
        } else {
            format!("cannot read --seccomp-fd {fd}: {e}")
        }
    };
    if let Some((_, &fd)) = fds.iter().enumerate().find(|(i, fd)| fds[..*i].contains(fd)) {
        return Err(read_err(fd, std::io::Error::from_raw_os_error(libc::EBADF)));
    }
    let mut out = Vec::with_capacity(fds.len());
    for &fd in fds {
        let f = sys::take_inherited_fd(fd).map_err(|e| read_err(fd, e))?;
        let mut bpf = Vec::new();
        std::fs::File::from(f)
            .take((ljspawn::seccomp::MAX_INSNS * 8 + 8) as u64)
            .read_to_end(&mut bpf)
            .map_err(|e| read_err(fd, e))?;
        // bwrap reads every program before it looks at one (its message for a partial one).
        if bwrap && !bpf.len().is_multiple_of(8) {
            return Err("Invalid seccomp data, must be multiple of 8".into());
        }
        out.push(bpf);
    }
    for bpf in &out {
        ljspawn::seccomp::check_program(bpf)?;
    }
    Ok(out)
}

/// The content of every `--file FD DEST`, in plan order; each descriptor is read to its end
/// and closed (one given twice is an error the second time).
fn read_files(plan: &plan::Plan) -> Result<Vec<Vec<u8>>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    for m in &plan.mounts {
        if let plan::Mount::File { fd, dest, .. } | plan::Mount::Data { fd, dest, .. } = m {
            // (0-2, bwrap form only: read through a copy; the descriptor stays the program's.)
            let f = match fd {
                0 => std::io::stdin().as_fd().try_clone_to_owned(),
                1 => std::io::stdout().as_fd().try_clone_to_owned(),
                2 => std::io::stderr().as_fd().try_clone_to_owned(),
                _ => sys::take_inherited_fd(*fd),
            }
            .map_err(|e| format!("--file {fd} {dest}: {e}"))?;
            let mut f = std::fs::File::from(f);
            let mut data = Vec::new();
            f.read_to_end(&mut data).map_err(|e| format!("cannot read --file {fd}: {e}"))?;
            out.push(data);
        }
    }
    Ok(out)
}

/// `--host-usr`: which of the host's top-level directories beside /usr are usr-merge links.
fn host_links() -> Vec<(String, Option<String>)> {
    plan::HOST_USR_DIRS
        .iter()
        .filter_map(|d| match std::fs::symlink_metadata(d) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::read_link(d).ok().and_then(|t| t.to_str().map(|t| (d.to_string(), Some(t.into()))))
            }
            Ok(m) if m.is_dir() => Some((d.to_string(), None)),
            _ => None,
        })
        .collect()
}

/// What `/etc/lightjail.conf` grants the caller (setuid mode). A missing file grants
/// nothing; a file that is not root's alone, or is malformed, is an error.
fn read_grants(login: Option<String>, gid: u32) -> Result<conf::Grants, String> {
    let Some(text) = subids::read_trusted_file(conf::PATH)? else {
        return Ok(conf::Grants::default());
    };
    let mut gids = sys::getgroups().map_err(|e| format!("cannot read your groups: {e}"))?;
    gids.push(gid);
    let who = conf::Who { user: login, groups: subids::group_names(&gids) };
    conf::grants(&text, &who).map_err(|e| e.to_string())
}

/// `--die-with-parent`: SIGKILL when the parent dies, and make sure it has not already.
fn die_with(parent: i32) -> Result<(), String> {
    sys::set_pdeathsig(libc::SIGKILL).map_err(|e| format!("cannot tie ljspawn to its parent: {e}"))?;
    if sys::getppid() != parent {
        return Err("the parent process is already gone".into());
    }
    Ok(())
}
