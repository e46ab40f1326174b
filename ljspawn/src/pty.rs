//! The jail's terminal. When fd 0 is a terminal (and not `--no-pty`), the jail does not get
//! the caller's terminal: it gets a pty of its own and ljspawn relays between the two, as
//! `systemd-nspawn` does.
//!
//! - Jail side ([`open_in_jail`], run by the jail's PID 1 once its mounts are in place): the
//!   master is opened from the `ptmx` of the jail's own devpts mount (never the host's
//!   `/dev/ptmx`), the slave through the master (`TIOCGPTPEER`), given the caller's window
//!   size and the program's ids. The master goes to ljspawn over a socket; the program gets
//!   the slave as each of its fds 0-2 that was a terminal, and as its controlling terminal
//!   (it leads a new session), so a shell has job control and Ctrl-C, Ctrl-Z reach the
//!   jail's foreground process group through the slave's line discipline.
//! - ljspawn's side ([`Relay`]): the caller's terminal in raw mode (unless ljspawn runs in the
//!   background of it), bytes copied both ways, the window size copied on SIGWINCH, raw mode
//!   set again on SIGCONT, and the caller's modes restored when the relay is dropped: on exit,
//!   on every error path, and after SIGTERM, SIGINT, SIGHUP or SIGQUIT (blocked and taken
//!   through the signalfd, they end the jail and so the relay). Only SIGKILL leaves the
//!   terminal raw (`stty sane` mends it).
//!
//! None of this runs when fd 0 is not a terminal: no socket, no pty, the same supervise loop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// Jail side: the master and slave of a new pty of the devpts mounted at `pts` (the mount's
/// root), sized like the caller's terminal on fd 0, the slave owned by the program's `uid` and
/// `gid`. Errors name what failed.
pub(crate) fn open_in_jail(pts: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(OwnedFd, OwnedFd), String> {
    let fail = |what: &str, e: io::Error| format!("{what}: {}", crate::describe(&e));
    // `ptmx` of this very mount: no symlink, no other mount (RESOLVE_NO_XDEV).
    let resolve = sys::RESOLVE_BENEATH | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_XDEV;
    let master = sys::openat2(Some(pts), "ptmx", libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC, 0, resolve)
        .map_err(|e| fail("cannot open the jail's /dev/pts/ptmx", e))?;
    sys::unlock_pty(master.as_fd()).map_err(|e| fail("cannot unlock the jail's pty", e))?;
    if let Ok(size) = sys::get_winsize(std::io::stdin().as_fd()) {
        sys::set_winsize(master.as_fd(), &size).map_err(|e| fail("cannot size the jail's pty", e))?;
    }
    let slave = sys::pty_peer(master.as_fd()).map_err(|e| fail("cannot open the jail's pty", e))?;
    if (sys::geteuid(), sys::getegid()) != (uid, gid) {
        sys::fchown(slave.as_fd(), uid, Some(gid))
            .map_err(|e| fail(&format!("cannot give the jail's pty to uid {uid}"), e))?;
    }
    Ok((master, slave))
}

/// `--join`: the master and slave of a new pty of the running jail's devpts at `dev/pts`
/// (`dev` is the jail's `/dev`), once this process is in the jail's mount namespace. The
/// directory must be a devpts mount (whatever the jail mounted there meanwhile) and `ptmx` in
/// it, so the pty is the jail's own whatever its root holds.
pub(crate) fn open_joined(dev: &str, uid: u32, gid: u32) -> Result<(OwnedFd, OwnedFd), String> {
    let at = format!("{}/pts", dev.trim_end_matches('/'));
    let resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_SYMLINKS | sys::RESOLVE_NO_MAGICLINKS;
    let pts = sys::openat2(None, &at, libc::O_PATH | libc::O_DIRECTORY, 0, resolve)
        .map_err(|e| format!("cannot open the jail's {at}: {}", crate::describe(&e)))?;
    match sys::fstatfs_type(pts.as_fd()) {
        Ok(DEVPTS_SUPER_MAGIC) => {}
        Ok(_) => return Err(format!("the jail's {at} is not a devpts mount")),
        Err(e) => return Err(format!("cannot stat the jail's {at}: {}", crate::describe(&e))),
    }
    open_in_jail(pts.as_fd(), uid, gid)
}

/// `f_type` of a devpts file system (linux/magic.h).
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// The program's side, after `setsid`: the slave in place of each of fds 0-2 that is a
/// terminal (the caller's; `-O`/`-E` files were put in place before), and as the controlling
/// terminal of the new session.
pub(crate) fn attach_program(slave: BorrowedFd<'_>) -> io::Result<()> {
    for fd in 0..3 {
        if sys::isatty(fd) {
            sys::dup2(slave, fd)?;
        }
    }
    sys::set_controlling_tty(slave)
}

/// Where the relay writes what the jail's pty prints: the caller's terminal on stdout, else
/// on stderr, else stdin itself (terminals are usually opened read-write).
#[derive(Debug, Clone, Copy)]
enum Out {
    Stdout,
    Stderr,
    Stdin,
}

impl Out {
    fn write(self, data: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout => sys::write_all(std::io::stdout().as_fd(), data),
            Out::Stderr => sys::write_all(std::io::stderr().as_fd(), data),
            Out::Stdin => sys::write_all(std::io::stdin().as_fd(), data),
        }
    }
}

/// ljspawn's side: the jail's pty master, relayed to and from the caller's terminal.
#[derive(Debug)]
pub struct Relay {
    master: OwnedFd,
    out: Out,
    /// The caller's modes, to restore; None when they were left alone (ljspawn runs in the
    /// background of the terminal).
    saved: Option<sys::Termios>,
    /// Input read from the caller and not yet taken by the pty.
    pending: Vec<u8>,
    input_open: bool,
    master_open: bool,
}

/// Bytes moved per read.
const CHUNK: usize = 4096;

impl Relay {
    /// Takes the master the jail's PID 1 sends on `sock` (None: the jail failed before
    /// sending it, and says why on its status pipe), and puts the caller's terminal in raw
    /// mode.
    pub fn start(sock: OwnedFd, stdout_file: bool, stderr_file: bool) -> io::Result<Option<Relay>> {
        let Some(master) = sys::recv_fd(sock.as_fd())? else { return Ok(None) };
        drop(sock);
        Relay::new(master, stdout_file, stderr_file).map(Some)
    }

    /// Relays `master` (a pty of the jail's own), the caller's terminal in raw mode.
    pub fn new(master: OwnedFd, stdout_file: bool, stderr_file: bool) -> io::Result<Relay> {
        sys::set_nonblocking(master.as_fd())?;
        let out = if !stdout_file && sys::isatty(1) {
            Out::Stdout
        } else if !stderr_file && sys::isatty(2) {
            Out::Stderr
        } else {
            Out::Stdin
        };
        let mut relay =
            Relay { master, out, saved: None, pending: Vec::new(), input_open: true, master_open: true };
        relay.resize();
        relay.raw()?;
        Ok(relay)
    }

    /// Raw mode on the caller's terminal, unless ljspawn is a background job of it (then the
    /// foreground job's modes are not ljspawn's to change). Called again after SIGCONT.
    fn raw(&mut self) -> io::Result<()> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        match sys::tcgetpgrp(fd) {
            Ok(fg) if fg != sys::getpgrp() => return Ok(()),
            _ => {}
        }
        let now = sys::tcgetattr(fd)?;
        // After a stop, the shell restored its own modes: those are what is saved.
        if self.saved.is_none() || sys::is_canonical(&now) {
            self.saved = Some(now);
        }
        sys::tcsetattr(fd, &sys::raw_mode(&now))
    }

    /// The caller's window size onto the jail's pty (the kernel signals the jail's foreground
    /// process group when it changed).
    fn resize(&self) {
        if let Ok(size) = sys::get_winsize(std::io::stdin().as_fd()) {
            let _ = sys::set_winsize(self.master.as_fd(), &size);
        }
    }

    /// Handles a signal ljspawn received; false when it is not the relay's (to be forwarded).
    pub fn signal(&mut self, sig: i32) -> bool {
        match sig {
            libc::SIGWINCH => self.resize(),
            libc::SIGCONT => {
                let _ = self.raw();
            }
            _ => return false,
        }
        true
    }

    /// The descriptors to poll, with their events, appended after the caller's own.
    pub fn poll_set<'a>(&'a self, stdin: BorrowedFd<'a>, fds: &mut Vec<(BorrowedFd<'a>, i16)>) {
        if self.input_open && self.pending.is_empty() {
            fds.push((stdin, libc::POLLIN));
        }
        if self.master_open {
            let out = if self.pending.is_empty() { 0 } else { libc::POLLOUT };
            fds.push((self.master.as_fd(), libc::POLLIN | out));
        }
    }

    /// Acts on the `revents` of the descriptors `poll_set` added (in that order).
    pub fn ready(&mut self, revents: &[i16]) {
        let mut it = revents.iter();
        if self.input_open && self.pending.is_empty() && it.next().is_some_and(|&r| r != 0) {
            self.read_input();
        }
        if self.master_open {
            if let Some(&r) = it.next() {
                if r & libc::POLLOUT != 0 {
                    self.write_input();
                }
                if r & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.copy_output();
                }
            }
        }
    }

    fn read_input(&mut self) {
        let mut buf = [0u8; CHUNK];
        match sys::read(std::io::stdin().as_fd(), &mut buf) {
            Ok(0) => self.input_open = false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.write_input();
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            // EIO: the caller's terminal hung up.
            Err(_) => self.input_open = false,
        }
    }

    fn write_input(&mut self) {
        while !self.pending.is_empty() {
            match sys::write_some(self.master.as_fd(), &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.pending.clear();
                    self.master_open = false;
                }
            }
        }
    }

    /// Copies what the jail's pty has printed to the caller; at end of file (every slave
    /// closed: EIO) the master is not polled again.
    fn copy_output(&mut self) {
        let mut buf = [0u8; CHUNK];
        loop {
            match sys::read(self.master.as_fd(), &mut buf) {
                Ok(0) => {
                    self.master_open = false;
                    return;
                }
                Ok(n) => {
                    if self.out.write(&buf[..n]).is_err() {
                        // The caller's terminal is gone: what the jail prints is dropped.
                    }
                    if n < buf.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.master_open = false;
                    return;
                }
            }
        }
    }

    /// The jail is gone: what its pty still holds goes to the caller.
    pub fn drain(&mut self) {
        if self.master_open {
            self.copy_output();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = sys::tcsetattr(std::io::stdin().as_fd(), t);
        }
    }
}
