//! `--net pasta`: outbound network for a jail through pasta (Debian's `passt` package),
//! started by ljspawn (root or rootless, never setuid) once the jail is cloned, before the go
//! byte, and stopped when the jail is gone.
//!
//! pasta joins the jail's network namespace (and, rootless, its user namespace) through
//! descriptors ljspawn opened, makes `eth0` there with the host's addresses and routes, and
//! carries the jail's connections out as its own sockets in the host's namespace. Nothing
//! comes in, and the host's loopback stays out of reach: no port forwarding either way
//! (`-t none -u none -T none -U none`), and the gateway address is not mapped to the host
//! (`--no-map-gw`). Abstract unix sockets belong to a network namespace: the host's are not
//! the jail's.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::plan::{Mode, Plan};
use crate::spawn::{err, SpawnError};
use crate::sys;
use crate::EXIT_SETUP;

/// Where pasta is looked for (never through PATH: root mode runs it as root).
const PASTA: [&str; 2] = ["/usr/bin/pasta", "/usr/local/bin/pasta"];

/// How long pasta may take to set up the jail's eth0.
const READY: Duration = Duration::from_secs(10);

/// A running pasta, stopped (SIGTERM, then reaped) when dropped.
#[derive(Debug)]
pub struct Pasta {
    pid: i32,
}

impl Drop for Pasta {
    fn drop(&mut self) {
        let _ = sys::kill(self.pid, libc::SIGTERM);
        let _ = sys::wait_blocking(self.pid);
    }
}

/// Starts pasta for the jail whose PID 1 is `jail` (waiting for the go byte, still dumpable)
/// and waits until the jail's eth0 is configured.
pub fn start(plan: &Plan, jail: i32) -> Result<Pasta, SpawnError> {
    let bin = PASTA.iter().find(|p| Path::new(p).is_file()).ok_or_else(|| SpawnError {
        code: EXIT_SETUP,
        msg: "--net pasta: pasta is not installed (Debian: apt-get install passt)".into(),
    })?;
    let open = |kind: &str| {
        std::fs::File::open(format!("/proc/{jail}/ns/{kind}"))
            .map(OwnedFd::from)
            .map_err(|e| err(format!("--net pasta: cannot open the jail's {kind} namespace"), e))
    };
    let netns = open("net")?;
    let userns = if plan.userns.is_some() { Some(open("user")?) } else { None };
    let (ready_r, ready_w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    let (log_r, log_w) = sys::pipe().map_err(|e| err("cannot make a pipe", e))?;
    let mut argv: Vec<&str> = vec![bin, "-f", "-q", "--config-net", "--ns-ifname", "eth0", "--no-map-gw"];
    argv.extend(["-t", "none", "-u", "none", "-T", "none", "-U", "none"]);
    argv.extend(["--netns", "/proc/self/fd/3", "-P", "/proc/self/fd/5"]);
    if userns.is_some() {
        argv.extend(["--userns", "/proc/self/fd/4"]);
    }
    if plan.mode == Mode::Root {
        // pasta would switch to nobody, who cannot enter the jail's namespace.
        argv.extend(["--runas", "0:0"]);
    }
    let argv: Vec<CString> =
        argv.iter().map(|a| CString::new(*a).expect("no NUL in pasta's arguments")).collect();
    let pid = sys::fork().map_err(|e| err("--net pasta: cannot start pasta", e))?;
    if pid == 0 {
        // The child: pasta dies with ljspawn, gets its descriptors at fixed numbers, nothing else.
        let placed = (|| -> io::Result<()> {
            sys::set_pdeathsig(libc::SIGKILL)?;
            let null = std::fs::File::open("/dev/null")?;
            sys::dup2(null.as_fd(), 0)?;
            // Closed with the rest below: never dropped here (exec or exit_now follows).
            std::mem::forget(null);
            sys::dup2(log_w.as_fd(), 1)?;
            sys::dup2(log_w.as_fd(), 2)?;
            sys::dup2(netns.as_fd(), 3)?;
            if let Some(u) = &userns {
                sys::dup2(u.as_fd(), 4)?;
            }
            sys::dup2(ready_w.as_fd(), 5)?;
            for fd in 0..6 {
                let _ = sys::set_cloexec(fd, false);
            }
            sys::close_fds_except(&[3, 4, 5])?;
            sys::reset_signals()
        })();
        if placed.is_ok() {
            let _ = sys::execve(&argv[0], &argv, &[]);
        }
        sys::exit_now(127)
    }
    let pasta = Pasta { pid };
    drop((ready_w, log_w, netns, userns));
    // pasta writes its pid to the "pid file" once eth0 is set up; end-of-file: it failed.
    let mut buf = [0u8; 32];
    let ready = matches!(sys::poll_readable(&[ready_r.as_fd()], Some(READY)), Ok(r) if r[0])
        && matches!(sys::read(ready_r.as_fd(), &mut buf), Ok(n) if n > 0);
    if !ready {
        let _ = sys::kill(pid, libc::SIGKILL);
        let mut text = Vec::new();
        while let Ok(n @ 1..) = sys::read(log_r.as_fd(), &mut buf) {
            text.extend_from_slice(&buf[..n]);
            if text.len() > 4096 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&text);
        // Its last line says why it gave up (warnings come first).
        let why =
            text.lines().rfind(|l| !l.contains("syslog") && !l.trim().is_empty()).unwrap_or("it exited");
        let why = why.trim().to_lowercase();
        let hint = if why.contains("tun") {
            " (pasta needs /dev/net/tun readable and writable by you: Debian's udev makes it 0666)"
        } else {
            ""
        };
        return Err(SpawnError {
            code: EXIT_SETUP,
            msg: format!("--net pasta: pasta could not give the jail its network: {why}{hint}"),
        });
    }
    Ok(pasta)
}
