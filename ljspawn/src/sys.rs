//! Every system call ljspawn makes that Rust's standard library does not wrap.
//!
//! This is the only module with `unsafe` code. Each wrapper is a thin, safe function: it
//! converts its arguments into what the kernel expects, makes one call, and turns the result
//! into `io::Result`. The SAFETY comment on each block names the invariant that makes the call
//! sound; the recurring ones are:
//! - *C strings*: a pointer comes from a live `CStr`/`CString`, so it is NUL-terminated and
//!   valid for the duration of the call.
//! - *borrowed fds*: an fd comes from a `BorrowedFd`/`OwnedFd`, so it is open for the call.
//! - *plain values*: the call takes only integers (or nothing); the kernel validates them and
//!   no Rust memory is involved.
//! - *out-parameters*: a pointer is to a live, correctly sized, writable local.
//! - *in-parameters*: a pointer is to a live, initialized, correctly sized local that the
//!   kernel only reads.

use std::cell::UnsafeCell;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, c_long, c_uint, c_void};

// The new mount API (linux/mount.h); libc does not define these yet.
pub const OPEN_TREE_CLONE: c_uint = 1;
pub const AT_RECURSIVE: c_uint = 0x8000;
pub const AT_SYMLINK_NOFOLLOW: c_uint = libc::AT_SYMLINK_NOFOLLOW as c_uint;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;
const FSOPEN_CLOEXEC: c_uint = 1;
const FSMOUNT_CLOEXEC: c_uint = 1;
const FSCONFIG_SET_FLAG: c_uint = 0;
const FSCONFIG_SET_STRING: c_uint = 1;
const FSCONFIG_SET_FD: c_uint = 5;
const FSCONFIG_CMD_CREATE: c_uint = 6;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn cvt(ret: c_long) -> io::Result<c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_fd(ret: c_long) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns, so
    // `OwnedFd` becomes its single owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cvt_unit(ret: c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

// ---- identity and process state -------------------------------------------------------

pub fn getuid() -> u32 {
    // SAFETY: plain values: getuid takes nothing and cannot fail.
    unsafe { libc::getuid() }
}
pub fn geteuid() -> u32 {
    // SAFETY: plain values: geteuid takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}
pub fn getgid() -> u32 {
    // SAFETY: plain values: getgid takes nothing and cannot fail.
    unsafe { libc::getgid() }
}
pub fn getegid() -> u32 {
    // SAFETY: plain values: getegid takes nothing and cannot fail.
    unsafe { libc::getegid() }
}
pub fn getpid() -> i32 {
    // SAFETY: plain values: getpid takes nothing and cannot fail.
    unsafe { libc::getpid() }
}

/// The CPUs this process may run on (`sched_getaffinity(2)`).
pub fn cpu_affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: a cpu_set_t is plain bits: all zeros is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes at most the given size into `set`, which lives for the call.
    cvt_unit(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    Ok(set)
}

/// Lets process `pid` (0: this one) run only on the CPUs of `set` (`sched_setaffinity(2)`);
/// one on a CPU not among them is moved before this returns.
pub fn set_cpu_affinity(pid: i32, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: the kernel reads the given size from `set`, which lives for the call.
    cvt_unit(unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), set) })
}

/// The CPU this process runs on now (a hint: it may have moved by the time this returns).
/// (The system call, not musl's `sched_getcpu`: its first call looks the vDSO's up, which
/// costs more than the call itself in a process that asks once.)
pub fn current_cpu() -> Option<usize> {
    let mut cpu: libc::c_uint = 0;
    let none = std::ptr::null_mut::<libc::c_uint>();
    // SAFETY: out-parameters: `cpu` is a live c_uint; the node and cache pointers may be NULL.
    let r = unsafe { libc::syscall(libc::SYS_getcpu, &mut cpu as *mut libc::c_uint, none, none) };
    (r == 0).then_some(cpu as usize)
}

/// `set` without `cpu`, or None if that leaves it empty.
pub fn cpus_but(set: &libc::cpu_set_t, cpu: usize) -> Option<libc::cpu_set_t> {
    let n = 8 * std::mem::size_of::<libc::cpu_set_t>();
    let mut rest = *set;
    if cpu < n {
        // SAFETY: CPU_CLR clears one bit of the set; `cpu` is below its size, n.
        unsafe { libc::CPU_CLR(cpu, &mut rest) };
    }
    (cpu_count(&rest) > 0).then_some(rest)
}

/// How many CPUs `set` holds.
pub fn cpu_count(set: &libc::cpu_set_t) -> usize {
    // SAFETY: CPU_COUNT only reads the set, a whole initialised cpu_set_t.
    usize::try_from(unsafe { libc::CPU_COUNT(set) }).unwrap_or(0)
}

/// The number of runnable tasks on all CPUs now, this one included (`/proc/loadavg`'s fourth
/// field, before the slash), or None if it cannot be read.
pub fn runnable_tasks() -> Option<usize> {
    let f = openat2(None, "/proc/loadavg", libc::O_RDONLY, 0, RESOLVE_NO_SYMLINKS).ok()?;
    let mut buf = [0u8; 128];
    let n = read(f.as_fd(), &mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_whitespace().nth(3)?.split_once('/')?.0.parse().ok()
}

pub fn getppid() -> i32 {
    // SAFETY: plain values: getppid takes nothing and cannot fail.
    unsafe { libc::getppid() }
}

pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: plain values: isatty only inspects the descriptor number; a closed or foreign
    // descriptor yields 0 and EBADF/ENOTTY, never touches our memory.
    unsafe { libc::isatty(fd) == 1 }
}

/// Closes every descriptor from 3 up, except those in `keep` (sorted, deduplicated here).
pub fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter(|&&fd| fd > 2).map(|&fd| fd as u32).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: u32 = 3;
    for fd in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if fd > first {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            // SAFETY: plain values: close_range takes a numeric range; no descriptor in it is
            // owned by a Rust object at this point (ljspawn opens nothing before sanitizing),
            // so no `OwnedFd` is left dangling.
            cvt(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) })?;
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// What descriptor number `fd` refers to, and its open flags (`F_GETFL`); an error if it is
/// not open.
pub fn fd_stat(fd: RawFd) -> io::Result<(libc::stat, c_int)> {
    // SAFETY: plain values: F_GETFL reads the flags of a descriptor number (EBADF if unused).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    cvt_unit(flags)?;
    // SAFETY: out-parameters: stat is plain data; zeroed is valid and is overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: plain values and out-parameters: a descriptor number and a live stat buffer.
    cvt_unit(unsafe { libc::fstat(fd, &mut st) })?;
    Ok((st, flags))
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: plain values: F_GETFD reads the flags of a descriptor number.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    cvt_unit(flags)?;
    let new = if on { flags | libc::FD_CLOEXEC } else { flags & !libc::FD_CLOEXEC };
    // SAFETY: plain values: F_SETFD sets the flags of a descriptor number.
    cvt_unit(unsafe { libc::fcntl(fd, libc::F_SETFD, new) })
}

pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: plain values: F_GETFD on any number only reports EBADF when it is not open.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: out-parameters: `fds` is a live array of two c_ints, as pipe2 requires.
    cvt_unit(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so fds[0] is a new descriptor owned by nobody else.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: pipe2 succeeded, so fds[1] is a new descriptor owned by nobody else.
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((r, w))
}

pub fn dup2(from: BorrowedFd<'_>, to: RawFd) -> io::Result<()> {
    // SAFETY: borrowed fds: `from` is open; `to` is a descriptor number (0-2) that is replaced
    // atomically and is not owned by any Rust object.
    cvt_unit(unsafe { libc::dup2(from.as_raw_fd(), to) })
}

pub fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: borrowed fds; `data` is a live slice and its length is passed with it.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// One `write(2)`: how much of `data` was written.
pub fn write_some(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    // SAFETY: borrowed fds; `data` is a live slice and its length is passed with it.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    cvt(n as c_long).map(|n| n as usize)
}

pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: borrowed fds; `buf` is a live, writable slice and its length is passed with it.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    cvt(n as c_long).map(|n| n as usize)
}

/// True when the write end `fd` of a pipe has lost its reader (the parent died).
pub fn pipe_reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    // SAFETY: out-parameters: `p` is one live pollfd and the count passed is 1.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && (p.revents & (libc::POLLERR | libc::POLLHUP)) != 0
}

// ---- processes ---------------------------------------------------------------------

/// `clone(2)` used like `fork(2)` with namespace flags. Returns 0 in the child.
///
/// The caller must be single-threaded (ljspawn never starts a thread): the child is a copy of
/// this one thread, so no lock can be held by a thread that does not exist in the child.
pub fn clone_fork(flags: u64) -> io::Result<i32> {
    // SAFETY: plain values: with a NULL stack, clone behaves like fork and the child runs on a
    // copy of this stack; the documented precondition (single-threaded caller) makes the
    // child's copy of the allocator and stdio state consistent.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD as u64) as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        )
    };
    cvt(ret).map(|p| p as i32)
}

/// `clone3(2)`'s `CLONE_INTO_CGROUP` (linux/sched.h, Linux 5.7); libc does not define it.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// As [`clone_fork`], with the child born in the cgroup v2 whose directory `cgroup` is open
/// (`clone3` with `CLONE_INTO_CGROUP`): it never runs anywhere else, and no task is moved
/// (moving one waits for an RCU grace period). Returns 0 in the child. The kernel checks the
/// caller may write the cgroup's `cgroup.procs`, as for moving a process there. An older kernel
/// answers ENOSYS (no clone3) or E2BIG/EINVAL (no `cgroup` field or flag).
///
/// Same precondition as `clone_fork`: a single-threaded caller.
pub fn clone_into_cgroup(flags: u64, cgroup: BorrowedFd<'_>) -> io::Result<i32> {
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: in-parameters: `args` is a live, initialized `clone_args` whose size is passed
    // with it; its pointer fields are 0 (no pidfd, tid or set_tid out-parameters) and `stack`
    // is 0, so the child runs, as with fork, on a copy of this stack; `cgroup` is a borrowed
    // fd, open for the call. Single-threaded caller (see `clone_fork`).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs as c_long,
            std::mem::size_of::<CloneArgs>() as c_long,
        )
    };
    cvt(ret).map(|p| p as i32)
}

/// Runs `child` in a new process that shares this one's memory until it execs or exits
/// (`CLONE_VM | CLONE_VFORK`, as posix_spawn does): no page tables are copied, and this
/// process is suspended until then. Returns the child's pid. `child` returns only when it
/// failed, with the exit code; the child then exits.
///
/// Rules for `child`, which runs on its own stack in the caller's memory: make system calls,
/// allocate if it must (the suspended caller holds no lock, ljspawn has one thread, and the
/// allocations simply stay), but never free or modify anything the caller uses afterwards,
/// nor call `vfork_run` (there is one child stack, `VFORK_STACK`).
pub fn vfork_run(child: &mut dyn FnMut() -> i32) -> io::Result<i32> {
    extern "C" fn trampoline(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` points to `f` in `vfork_run`, whose frame outlives the child: that
        // frame's thread is suspended (CLONE_VFORK) until the child execs or exits.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut() -> i32) };
        exit_now(f())
    }
    let top = (VFORK_STACK.0.get() as usize + VFORK_STACK_SIZE) & !15;
    let mut f: &mut dyn FnMut() -> i32 = child;
    let arg = &mut f as *mut &mut dyn FnMut() -> i32;
    // SAFETY: out-parameters: `top` is the 16-byte aligned end of `VFORK_STACK`, a static
    // buffer that no one else uses while the child runs (see `VforkStack`); `arg` points to
    // the live `f`; the trampoline never returns into clone's caller (it exits).
    // Single-threaded caller, so no lock is held by anyone.
    let pid = unsafe {
        libc::clone(
            trampoline,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg.cast(),
        )
    };
    cvt(pid as c_long).map(|p| p as i32)
}

const VFORK_STACK_SIZE: usize = 256 << 10;

/// The stack of `vfork_run`'s child: in `.bss`, so a spawn neither maps nor unmaps one (an
/// `munmap` is a TLB flush) and touches only the pages the child uses. Its use is bounded by
/// ljspawn's own code (no recursion, no buffer sized by the input).
#[repr(C, align(4096))]
struct VforkStack(UnsafeCell<[u8; VFORK_STACK_SIZE]>);

// SAFETY: the buffer is only ever the stack of a `vfork_run` child, and only its address is
// taken (no Rust reference to its bytes): `vfork_run`'s caller is single-threaded and is
// suspended until its child execs or exits, so no two children ever run on it at once.
unsafe impl Sync for VforkStack {}

static VFORK_STACK: VforkStack = VforkStack(UnsafeCell::new([0; VFORK_STACK_SIZE]));

pub fn fork() -> io::Result<i32> {
    clone_fork(0)
}

pub fn exit_now(code: i32) -> ! {
    // SAFETY: plain values: _exit ends the process without running Rust or libc destructors,
    // which is what a forked child must do to avoid flushing the parent's buffers twice.
    unsafe { libc::_exit(code) }
}

pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: plain values.
    cvt_unit(unsafe { libc::kill(pid, sig) })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// `waitpid` with WNOHANG; `None` when no child of that pid (or any, for -1) changed state.
pub fn wait_nohang(pid: i32) -> io::Result<Option<(i32, WaitStatus)>> {
    let mut status: c_int = 0;
    // SAFETY: out-parameters: `status` is a live c_int.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    let ws = if libc::WIFEXITED(status) {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    } else {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    };
    Ok(Some((r, ws)))
}

/// Blocking `waitpid(pid)`; `Err(ECHILD)` when there is no such child left.
pub fn wait_blocking(pid: i32) -> io::Result<(i32, WaitStatus)> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: out-parameters: `status` is a live c_int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let ws = if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        };
        return Ok((r, ws));
    }
}

/// `unshare(2)`: moves this process into new namespaces (`CLONE_NEW*` flags).
pub fn unshare(flags: c_int) -> io::Result<()> {
    // SAFETY: plain values.
    cvt_unit(unsafe { libc::unshare(flags) })
}

/// `setns(2)`: joins the namespaces `nstype` of the process or namespace `fd` refers to.
pub fn setns(fd: BorrowedFd<'_>, nstype: c_int) -> io::Result<()> {
    // SAFETY: borrowed fds; the rest are plain values.
    cvt_unit(unsafe { libc::setns(fd.as_raw_fd(), nstype) })
}

/// `ioctl(NS_GET_PARENT)` on a user (or PID) namespace descriptor: a new descriptor of its
/// parent namespace (EPERM when the parent is outside the caller's own namespace, e.g. for the
/// initial one).
pub fn ns_get_parent(ns: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // _IO(0xb7, 0x2), linux/nsfs.h.
    const NS_GET_PARENT: libc::Ioctl = 0xb702;
    // SAFETY: borrowed fd: `ns` is an open descriptor; NS_GET_PARENT takes no argument and
    // returns a new descriptor, which `cvt_fd` takes ownership of.
    cvt_fd(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_PARENT) } as c_long)
}

/// `NS_GET_OWNER_UID`: the uid (in this process's user namespace) of the user namespace `ns`'s
/// creator, its owner.
pub fn ns_get_owner_uid(ns: BorrowedFd<'_>) -> io::Result<u32> {
    // _IO(0xb7, 0x4), linux/nsfs.h.
    const NS_GET_OWNER_UID: libc::Ioctl = 0xb704;
    let mut uid: libc::uid_t = 0;
    // SAFETY: borrowed fd: `ns` is an open descriptor; NS_GET_OWNER_UID writes one uid_t
    // through the pointer, which points at `uid`, live and writable for the whole call.
    cvt(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID, &mut uid as *mut libc::uid_t) } as c_long)?;
    Ok(uid)
}

/// `pidfd_open(2)`: a descriptor for process `pid` (e.g. to join its namespaces later).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain values.
    cvt_fd(unsafe { libc::syscall(libc::SYS_pidfd_open, pid as c_long, 0 as c_long) })
}

/// `struct pidfd_info` as Linux 6.13 defines it (`PIDFD_INFO_SIZE_VER0`, 64 bytes); later
/// kernels take this first version too (the size is part of the request number).
#[repr(C)]
#[derive(Default)]
struct PidfdInfo {
    mask: u64,
    cgroupid: u64,
    pid: u32,
    tgid: u32,
    ppid: u32,
    /// ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid.
    ids: [u32; 8],
    spare: u32,
}

/// `ioctl(PIDFD_GET_INFO)` (Linux 6.13): the pid of the process `pidfd` refers to in the
/// caller's own PID namespace. Older kernels: ENOTTY (or EINVAL).
pub fn pidfd_get_pid(pidfd: BorrowedFd<'_>) -> io::Result<i32> {
    const PIDFD_GET_INFO: libc::Ioctl = libc::_IOWR::<PidfdInfo>(0xFF, 11);
    const PIDFD_INFO_PID: u64 = 1;
    let mut info = PidfdInfo { mask: PIDFD_INFO_PID, ..PidfdInfo::default() };
    // SAFETY: borrowed fds; out-parameters: `info` is a live, writable `PidfdInfo`, whose size
    // the request number carries, so the kernel writes no more than it holds.
    cvt_unit(unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, &mut info as *mut PidfdInfo) })?;
    match i32::try_from(info.pid) {
        Ok(pid) if info.mask & PIDFD_INFO_PID != 0 && pid > 0 => Ok(pid),
        _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// `pidfd_send_signal(2)`: sends `sig` (0: only checks that the process still exists) to the
/// process `pidfd` refers to, which is never a reused pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: c_int) -> io::Result<()> {
    let none: *const libc::siginfo_t = std::ptr::null();
    // SAFETY: borrowed fds; a NULL siginfo asks the kernel for the default (as kill(2)), and
    // flags must be 0.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd() as c_long,
            sig as c_long,
            none,
            0 as c_long,
        )
    })
    .map(drop)
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: a new anonymous session keyring.
pub fn join_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: c_long = 1;
    // SAFETY: plain values: a NULL name asks for an anonymous keyring; no memory is passed.
    cvt(unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>())
    })
    .map(|_| ())
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: plain values.
    cvt_unit(unsafe { libc::setsid() })
}

pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: C strings: `path` and every element of `a` and `e` point into live CStrings
    // owned by the caller, and both arrays end with NULL as execve requires.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

// ---- signals -----------------------------------------------------------------------

pub const FORWARDED: [c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn sigset(sigs: &[c_int]) -> libc::sigset_t {
    // SAFETY: out-parameters: sigemptyset fully initialises the zeroed set it is given.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: out-parameters: `set` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in sigs {
        // SAFETY: out-parameters: `set` is a live sigset_t; `s` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// SIGCHLD and the signals ljspawn forwards to the jail: SIGINT, SIGTERM, SIGHUP, SIGQUIT, and
/// an init's halt and poweroff requests (SIGRTMIN+3, SIGRTMIN+4: systemd's, which `ljail stop`
/// sends to an `--init` jail).
fn relayed() -> [c_int; 7] {
    let rt = libc::SIGRTMIN();
    [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, rt + 3, rt + 4]
}

/// Blocks SIGCHLD and the forwarded signals so they are taken with `wait_signal`.
pub fn block_signals() -> io::Result<()> {
    let set = sigset(&relayed());
    // SAFETY: out-parameters: `set` is a live, initialised sigset_t; the old mask is not kept.
    cvt_unit(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })
}

/// Unblocks every signal and restores every disposition to default (before exec).
pub fn reset_signals() -> io::Result<()> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: plain values: setting SIG_DFL installs no Rust handler; invalid numbers
        // (reserved by libc) fail with EINVAL and are ignored on purpose.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let set = sigset(&[]);
    // SAFETY: out-parameters: `set` is a live, initialised (empty) sigset_t.
    cvt_unit(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) })
}

/// Waits for a blocked signal, at most `timeout` (None: forever). Returns (signo, sender pid),
/// or None on timeout.
pub fn wait_signal(timeout: Option<std::time::Duration>) -> io::Result<Option<(c_int, i32)>> {
    let set = sigset(&relayed());
    // SAFETY: out-parameters: siginfo_t is plain data; zeroed is a valid value for it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let ts;
    let tsp = match timeout {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as _,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: out-parameters: `set` and `info` are live locals, `tsp` is NULL or points to
    // the live `ts`.
    let r = unsafe { libc::sigtimedwait(&set, &mut info, tsp) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            Some(libc::EINTR) => Ok(Some((0, 0))),
            _ => Err(e),
        };
    }
    // SAFETY: out-parameters: sigtimedwait filled `info` for signal `r`; si_pid is valid to
    // read for every signal in the set (kill-like and SIGCHLD both carry a pid).
    let pid = unsafe { info.si_pid() };
    Ok(Some((r, pid)))
}

/// A signalfd for the signals `block_signals` blocks, so they can be polled with other fds.
pub fn signalfd() -> io::Result<OwnedFd> {
    let set = sigset(&relayed());
    // SAFETY: out-parameters: `set` is a live, initialised sigset_t; -1 asks for a new fd.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    cvt_fd(fd as c_long)
}

/// Reads one pending signal from a signalfd: (signo, sender pid), or None if none is pending.
pub fn read_signalfd(fd: BorrowedFd<'_>) -> io::Result<Option<(c_int, i32)>> {
    // SAFETY: out-parameters: signalfd_siginfo is plain data; zeroed is valid.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: borrowed fds and out-parameters: `info` is live, writable and `size` bytes long.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
    }
    Ok((n as usize == size).then_some((info.ssi_signo as c_int, info.ssi_pid as i32)))
}

/// `poll(2)` for readability on `fds`; returns which are readable (or hung up). `None`
/// timeout waits forever. EINTR counts as "nothing ready".
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as c_int);
    // SAFETY: out-parameters: `p` is a live Vec of `p.len()` pollfds, each naming a borrowed fd.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(vec![false; fds.len()]) } else { Err(e) };
    }
    Ok(p.iter().map(|x| x.revents != 0).collect())
}

// ---- prctl and credentials ----------------------------------------------------------

fn prctl(op: c_int, a: u64, b: u64) -> io::Result<c_int> {
    // SAFETY: plain values: every prctl option used by ljspawn takes integer arguments only.
    let r = unsafe { libc::prctl(op, a, b, 0u64, 0u64) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn set_pdeathsig(sig: c_int) -> io::Result<()> {
    prctl(libc::PR_SET_PDEATHSIG, sig as u64, 0).map(drop)
}
pub fn set_no_new_privs() -> io::Result<()> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map(drop)
}
/// The orphans of this process's descendants are reparented to it (`PR_SET_CHILD_SUBREAPER`).
pub fn set_child_subreaper() -> io::Result<()> {
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).map(drop)
}
pub fn no_new_privs() -> io::Result<bool> {
    prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0).map(|r| r == 1)
}
pub fn set_dumpable(on: bool) -> io::Result<()> {
    prctl(libc::PR_SET_DUMPABLE, on as u64, 0).map(drop)
}
pub fn dumpable() -> io::Result<bool> {
    prctl(libc::PR_GET_DUMPABLE, 0, 0).map(|r| r != 0)
}
pub fn set_keepcaps(on: bool) -> io::Result<()> {
    prctl(libc::PR_SET_KEEPCAPS, on as u64, 0).map(drop)
}
pub fn set_securebits(bits: u64) -> io::Result<()> {
    prctl(libc::PR_SET_SECUREBITS, bits, 0).map(drop)
}
/// `Err(EINVAL)` past the kernel's last capability.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAPBSET_DROP, cap as u64, 0).map(drop)
}
pub fn ambient_clear() -> io::Result<()> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as u64, 0).map(drop)
}
pub fn ambient_raise(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as u64, cap as u64).map(drop)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective, permitted and inheritable sets of this thread to `caps` (a bit mask).
pub fn capset(caps: u64) -> io::Result<()> {
    let mut h = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let lo = caps as u32;
    let hi = (caps >> 32) as u32;
    let d = [
        CapData { effective: lo, permitted: lo, inheritable: lo },
        CapData { effective: hi, permitted: hi, inheritable: hi },
    ];
    // SAFETY: out-parameters: `h` and the two-element `d` are live and laid out as the
    // kernel's version-3 structures (repr(C), two data words for 64 capabilities).
    cvt(unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) }).map(drop)
}

/// Returns (effective, permitted, inheritable) of this thread as 64-bit masks.
pub fn capget() -> io::Result<(u64, u64, u64)> {
    let mut h = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut d = [CapData::default(); 2];
    // SAFETY: out-parameters: `h` and the two-element `d` are live, writable and laid out as
    // the kernel's version-3 structures.
    cvt(unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut CapHeader, d.as_mut_ptr()) })?;
    let join = |lo: u32, hi: u32| (lo as u64) | ((hi as u64) << 32);
    Ok((
        join(d[0].effective, d[1].effective),
        join(d[0].permitted, d[1].permitted),
        join(d[0].inheritable, d[1].inheritable),
    ))
}

/// The supplementary groups of this process.
pub fn getgroups() -> io::Result<Vec<u32>> {
    let mut v = vec![0 as libc::gid_t; 1024];
    // SAFETY: out-parameters: `v` is a live buffer of `v.len()` gid_t, and that length is
    // passed with it.
    let n = unsafe { libc::getgroups(v.len() as c_int, v.as_mut_ptr()) };
    cvt_unit(n)?;
    v.truncate(n as usize);
    Ok(v)
}

pub fn setgroups_empty() -> io::Result<()> {
    // SAFETY: plain values: a zero-length list with a NULL pointer is never dereferenced.
    cvt_unit(unsafe { libc::setgroups(0, std::ptr::null()) })
}
pub fn setresgid(g: u32) -> io::Result<()> {
    // SAFETY: plain values.
    cvt_unit(unsafe { libc::setresgid(g, g, g) })
}
pub fn setresuid(u: u32) -> io::Result<()> {
    // SAFETY: plain values.
    cvt_unit(unsafe { libc::setresuid(u, u, u) })
}
/// Reads back (ruid, euid, suid, rgid, egid, sgid).
pub fn getresids() -> (u32, u32, u32, u32, u32, u32) {
    let (mut r, mut e, mut s, mut rg, mut eg, mut sg) = (0, 0, 0, 0, 0, 0);
    // SAFETY: out-parameters: three live u32 locals; getresuid cannot fail with valid pointers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    // SAFETY: out-parameters: three live u32 locals; getresgid cannot fail with valid pointers.
    unsafe { libc::getresgid(&mut rg, &mut eg, &mut sg) };
    (r, e, s, rg, eg, sg)
}

/// Sets the filesystem uid and gid (file access checks) without touching the others.
/// Returns nothing useful by design of the syscall; callers check with `fsids`.
pub fn setfsids(uid: u32, gid: u32) {
    // SAFETY: plain values: setfsgid/setfsuid take an id and cannot fail observably.
    unsafe { libc::setfsgid(gid) };
    // SAFETY: plain values, as above.
    unsafe { libc::setfsuid(uid) };
}

/// The current filesystem uid and gid (setfs*id(-1) changes nothing and returns the current).
pub fn fsids() -> (u32, u32) {
    // SAFETY: plain values: an invalid id (-1) only queries.
    let u = unsafe { libc::setfsuid(u32::MAX) } as u32;
    // SAFETY: plain values, as above.
    let g = unsafe { libc::setfsgid(u32::MAX) } as u32;
    (u, g)
}

/// `faccessat2(fd, "", mode, AT_EMPTY_PATH | AT_EACCESS)`: may this process (its effective,
/// i.e. filesystem, ids) access the object `fd` refers to?
pub fn faccess_fd(fd: BorrowedFd<'_>, mode: c_int) -> io::Result<()> {
    // SAFETY: borrowed fds and C strings: "" is a static literal, the rest are plain values.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            fd.as_raw_fd(),
            c"".as_ptr(),
            mode,
            libc::AT_EMPTY_PATH | libc::AT_EACCESS,
        )
    })
    .map(drop)
}

/// The host name of this process's UTS namespace (uname's nodename): one system call, where
/// reading /proc/sys/kernel/hostname takes six.
pub fn hostname() -> Option<String> {
    let mut u = std::mem::MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: `u` is valid for writes of a whole `utsname`, which uname fills on success.
    if unsafe { libc::uname(u.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: uname succeeded, so every field of `u` is initialized.
    let u = unsafe { u.assume_init() };
    // The kernel NUL-terminates nodename within its array (at most 64 bytes of name).
    let bytes: Vec<u8> = u.nodename.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8(bytes).ok()
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: `name` is a live slice and its exact length is passed; no NUL is needed.
    cvt_unit(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

/// A resource number of `setrlimit` (glibc takes an unsigned, musl a signed int).
#[cfg(target_env = "musl")]
pub type Resource = libc::c_int;
#[cfg(not(target_env = "musl"))]
pub type Resource = libc::__rlimit_resource_t;

pub fn setrlimit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let r = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: out-parameters: `r` is a live rlimit read by the kernel.
    cvt_unit(unsafe { libc::setrlimit(resource, &r) })
}

/// Installs a classic BPF seccomp program (raw `struct sock_filter` array bytes).
/// `PR_SET_NO_NEW_PRIVS` must be set first (or the caller must hold CAP_SYS_ADMIN).
pub fn seccomp_install(bpf: &[u8]) -> io::Result<()> {
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) || bpf.len() / 8 > u16::MAX as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Copy into properly aligned sock_filter structures (the bytes may be unaligned).
    let insns: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_ptr() as *mut _ };
    // prctl, not seccomp(2) (the same filter, without flags): a caller's filter that allows
    // prctl but not seccomp (systemd's @default set, say) still lets the next one be stacked,
    // as under bwrap.
    // SAFETY: out-parameters: `prog` points to `insns`, a live Vec of `len` instructions; the
    // kernel copies the program before returning.
    cvt(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as c_long,
            &prog as *const libc::sock_fprog,
            0 as c_long,
            0 as c_long,
        ) as c_long
    })
    .map(drop)
}

// ---- file system, fd-relative -------------------------------------------------------

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(2)`: opens `path` relative to `dir` (None: the cwd) with `flags` and `resolve`.
pub fn openat2(
    dir: Option<BorrowedFd<'_>>,
    path: &str,
    flags: c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: out-parameters: open_how is plain data; zeroed is valid and fields are set next.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & libc::O_CREAT != 0 { mode as u64 } else { 0 };
    how.resolve = resolve;
    let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: C strings and borrowed fds: `p` is live, `dfd` is open or AT_FDCWD, and `how`
    // is a live open_how whose size is passed with it.
    cvt_fd(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dfd,
            p.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: C strings and borrowed fds.
    cvt_unit(unsafe { libc::mkdirat(dir.as_raw_fd(), p.as_ptr(), mode) })
}

pub fn symlinkat(target: &str, dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let t = cstr(target)?;
    let p = cstr(name)?;
    // SAFETY: C strings and borrowed fds.
    cvt_unit(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), p.as_ptr()) })
}

/// `fcntl(F_SETLK)` with a read lock on the whole file (bwrap's `--lock-file`).
pub fn read_lock(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: out-parameters: flock is plain data; zeroed is valid (whole file from 0).
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = libc::F_RDLCK as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: borrowed fds: `l` is a live flock for the duration of the call.
    cvt_unit(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &l as *const libc::flock) })
}

/// `fchmodat(dir, name, mode, 0)`.
pub fn fchmodat(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: C strings and borrowed fds.
    cvt_unit(unsafe { libc::fchmodat(dir.as_raw_fd(), p.as_ptr(), mode, 0) })
}

/// `readlinkat(2)`: the target of the symlink `name` in `dir` (at most 4095 bytes).
pub fn readlinkat(dir: BorrowedFd<'_>, name: &str) -> io::Result<String> {
    let p = cstr(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: C strings, borrowed fds and out-parameters: `buf` is live and its length is
    // passed with it; the kernel writes at most that many bytes.
    let n =
        cvt(unsafe { libc::readlinkat(dir.as_raw_fd(), p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
            as c_long)?;
    buf.truncate(n as usize);
    String::from_utf8(buf).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `fsetxattr(2)` on an open file or directory (not an `O_PATH` descriptor).
pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: C strings and borrowed fds: `n` is live; `value` is a live slice whose length
    // is passed with it.
    cvt_unit(unsafe { libc::fsetxattr(fd.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// `flock(2)` with `LOCK_EX | LOCK_NB`: false if another open file description holds a lock.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: borrowed fds.
    match cvt_unit(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `fstatat(dir, "", AT_EMPTY_PATH)`: what `dir` itself is.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: out-parameters: stat is plain data; zeroed is valid and is overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: borrowed fds and out-parameters: `st` is a live stat buffer.
    cvt_unit(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: borrowed fds.
    cvt_unit(unsafe { libc::fchdir(fd.as_raw_fd()) })
}

pub fn chdir(path: &str) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: C strings.
    cvt_unit(unsafe { libc::chdir(p.as_ptr()) })
}

// ---- mounts -------------------------------------------------------------------------

/// Makes every mount in this (new) mount namespace private, recursively.
pub fn make_rprivate_root() -> io::Result<()> {
    // SAFETY: C strings: "/" is a static NUL-terminated literal; other pointers are NULL,
    // which mount(2) accepts for a propagation change.
    cvt_unit(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })
}

/// `open_tree(2)`: a detached copy (with OPEN_TREE_CLONE) of the mount at `path`.
pub fn open_tree(dir: Option<BorrowedFd<'_>>, path: &str, flags: c_uint) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let mut f = flags | libc::O_CLOEXEC as c_uint;
    if path.is_empty() {
        f |= libc::AT_EMPTY_PATH as c_uint;
    }
    // SAFETY: C strings and borrowed fds.
    cvt_fd(unsafe { libc::syscall(libc::SYS_open_tree, dfd, p.as_ptr(), f) })
}

/// `open_tree_attr(2)` (Linux 6.15): the system call number of the unified table (x86_64,
/// aarch64, riscv, ...; alpha and mips number it otherwise), which libc does not define yet.
const SYS_OPEN_TREE_ATTR: c_long = 467;

/// Set once `open_tree_attr(2)` returned ENOSYS: this kernel has no such call, so every later
/// bind goes straight to `open_tree` + `mount_setattr`.
static OPEN_TREE_ATTR_MISSING: AtomicBool = AtomicBool::new(false);

/// What a failed `open_tree_attr(2)` means for the old path (`open_tree` + `mount_setattr`):
/// `None` when the error stands; `Some(remember)` when the old path is to be taken instead,
/// `remember` saying that this kernel lacks the call (ENOSYS), so it is not tried again.
/// EPERM also falls back (not remembered): a seccomp filter of an outer sandbox may refuse a
/// call it does not know while it allows the old two; if the refusal is the kernel's, the old
/// path fails too and says which step it was.
fn open_tree_attr_fallback(e: &io::Error) -> Option<bool> {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => Some(true),
        Some(libc::EPERM) => Some(false),
        _ => None,
    }
}

/// A detached copy (`OPEN_TREE_CLONE` must be in `flags`) of the mount at `path` whose mount
/// flags are changed as `mount_setattr` would (`set`, `clr`: MOUNT_ATTR_*; the whole copied
/// tree with AT_RECURSIVE in `flags`), in one call where the kernel has `open_tree_attr(2)`,
/// else (ENOSYS, or EPERM: see `open_tree_attr_fallback`) with `open_tree` + `mount_setattr`.
/// The lookup of `path` is the same either way (the same `dir`, `path` and `flags`).
pub fn open_tree_attr(
    dir: Option<BorrowedFd<'_>>,
    path: &str,
    flags: c_uint,
    set: u64,
    clr: u64,
) -> io::Result<OwnedFd> {
    debug_assert!(flags & OPEN_TREE_CLONE != 0, "open_tree_attr takes attributes only for a clone");
    if !OPEN_TREE_ATTR_MISSING.load(Ordering::Relaxed) {
        let p = cstr(path)?;
        let dfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        let mut f = flags | libc::O_CLOEXEC as c_uint;
        if path.is_empty() {
            f |= libc::AT_EMPTY_PATH as c_uint;
        }
        let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
        // SAFETY: C strings, borrowed fds and in-parameters: `p` is a live NUL-terminated
        // string and `dir` (borrowed) is open for the call; `attr` is a live mount_attr that
        // the kernel only reads, its size passed with it.
        let ret = unsafe {
            libc::syscall(
                SYS_OPEN_TREE_ATTR,
                dfd,
                p.as_ptr(),
                f,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        match cvt_fd(ret) {
            Ok(fd) => return Ok(fd),
            Err(e) => match open_tree_attr_fallback(&e) {
                None => return Err(e),
                Some(remember) => {
                    if remember {
                        OPEN_TREE_ATTR_MISSING.store(true, Ordering::Relaxed);
                    }
                }
            },
        }
    }
    let fd = open_tree(dir, path, flags)?;
    mount_setattr(fd.as_fd(), flags & AT_RECURSIVE != 0, set, clr)?;
    Ok(fd)
}

/// `mount_setattr(2)` on the mount tree referred to by `fd` (AT_EMPTY_PATH).
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, set: u64, clr: u64) -> io::Result<()> {
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    let mut flags = libc::AT_EMPTY_PATH as c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: borrowed fds and out-parameters: "" is a static C string, `attr` is a live
    // mount_attr whose size is passed with it.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `mount_setattr(2)` on the detached mount `fd`: sets `set` (MOUNT_ATTR_*) and idmaps it
/// onto the user namespace `userns` (an fd of `/proc/PID/ns/user`), not recursively.
pub fn mount_setattr_idmap(fd: BorrowedFd<'_>, userns: BorrowedFd<'_>, set: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set | MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: borrowed fds and out-parameters: both fds are open for the call (borrowed), ""
    // is a static C string, `attr` is a live mount_attr whose size is passed with it.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Lazily detaches the mount at `path` and everything under it (`umount2(MNT_DETACH)`).
pub fn umount_detach(path: &str) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: C strings: `p` is a live NUL-terminated string for the call.
    cvt_unit(unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) })
}

/// Attaches the detached mount `from` onto the object `to` (an fd, AT_EMPTY_PATH both sides).
pub fn move_mount(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: borrowed fds: both are open; the paths are static empty C strings.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// A file system context (`fsopen(2)`), configured with `set_*` and turned into a detached
/// mount with `mount`.
#[derive(Debug)]
pub struct FsContext(OwnedFd);

impl FsContext {
    pub fn open(fstype: &str) -> io::Result<FsContext> {
        let t = cstr(fstype)?;
        // SAFETY: C strings.
        cvt_fd(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) }).map(FsContext)
    }

    fn config(&self, cmd: c_uint, key: Option<&CStr>, value: *const c_void, aux: c_int) -> io::Result<()> {
        let k = key.map_or(std::ptr::null(), |k| k.as_ptr());
        // SAFETY: borrowed fds and C strings: the context fd is owned by `self`; `k` is NULL
        // or a live C string; `value` is NULL or points to a live C string (see callers).
        cvt(unsafe { libc::syscall(libc::SYS_fsconfig, self.0.as_raw_fd(), cmd, k, value, aux) }).map(drop)
    }

    pub fn set_flag(&self, key: &str) -> io::Result<()> {
        self.config(FSCONFIG_SET_FLAG, Some(&cstr(key)?), std::ptr::null(), 0)
    }

    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        let v = cstr(value)?;
        self.config(FSCONFIG_SET_STRING, Some(&cstr(key)?), v.as_ptr().cast(), 0)
    }

    pub fn set_fd(&self, key: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.config(FSCONFIG_SET_FD, Some(&cstr(key)?), std::ptr::null(), fd.as_raw_fd())
    }

    /// Creates the superblock and returns a detached mount with `attrs` (MOUNT_ATTR_*).
    pub fn mount(&self, attrs: u64) -> io::Result<OwnedFd> {
        self.config(FSCONFIG_CMD_CREATE, None, std::ptr::null(), 0)?;
        // SAFETY: borrowed fds: the context fd is owned by `self`; the rest are plain values.
        cvt_fd(unsafe {
            libc::syscall(libc::SYS_fsmount, self.0.as_raw_fd(), FSMOUNT_CLOEXEC, attrs as c_uint)
        })
    }

    /// The kernel's own explanation of the last failure, if it logged one.
    pub fn last_message(&self) -> Option<String> {
        let mut buf = [0u8; 512];
        let n = read(self.0.as_fd_borrow(), &mut buf).ok()?;
        let s = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        (!s.is_empty()).then_some(s)
    }
}

trait AsFdBorrow {
    fn as_fd_borrow(&self) -> BorrowedFd<'_>;
}
impl AsFdBorrow for OwnedFd {
    fn as_fd_borrow(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Swaps the root: the cwd (a mount) becomes `/`, the old root is stacked on it and
/// detached. The caller's cwd must be the root of the new root mount.
pub fn pivot_root_cwd() -> io::Result<()> {
    // SAFETY: C strings: "." is a static literal for both arguments.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })?;
    // SAFETY: C strings: "." is a static literal.
    cvt_unit(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    chdir("/")
}

/// Makes `dir` this process's root directory and its cwd (`chroot(2)`).
pub fn chroot_into(dir: BorrowedFd<'_>) -> io::Result<()> {
    fchdir(dir)?;
    // SAFETY: C strings: "." is a static literal.
    cvt_unit(unsafe { libc::chroot(c".".as_ptr()) })
}

// ---- network ------------------------------------------------------------------------

/// A socket for rtnetlink requests (see `net`).
pub fn netlink_route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain values.
    cvt_fd(
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) }
            as c_long,
    )
}

/// The index of interface `name` in this process's network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: plain values.
    let s =
        cvt_fd(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) } as c_long)?;
    // SAFETY: out-parameters: ifreq is plain data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    // SAFETY: borrowed fds and out-parameters: `ifr` is a live ifreq with a NUL-terminated name
    // (the name is shorter than IFNAMSIZ and the rest is zero).
    cvt_unit(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut ifr) })?;
    // SAFETY: reading the union member that SIOCGIFINDEX just filled.
    Ok(unsafe { ifr.ifr_ifru.ifru_ifindex })
}

/// Sets IFF_UP on the loopback interface of the current network namespace.
pub fn loopback_up() -> io::Result<()> {
    loopback_up_socket().map(drop)
}

/// Brings `lo` up, as `loopback_up`; returns the socket it used, which belongs to this
/// process's network namespace (see `socket_netns`).
pub fn loopback_up_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain values.
    let s =
        cvt_fd(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) } as c_long)?;
    // SAFETY: out-parameters: ifreq is plain data; zeroed is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: borrowed fds and out-parameters: `ifr` is a live ifreq naming "lo".
    cvt_unit(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) })?;
    // SAFETY: reading the union member that SIOCGIFFLAGS just filled.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: borrowed fds and out-parameters: `ifr` is a live ifreq naming "lo".
    cvt_unit(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &ifr) })?;
    Ok(s)
}

/// The network namespace socket `sock` was made in, as a new descriptor (`SIOCGSKNS`,
/// close-on-exec; CAP_NET_ADMIN there, as for bringing `lo` up): no path is looked up, where
/// `/proc/self/ns/net` costs a walk through proc.
pub fn socket_netns(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: borrowed fd: `sock` is an open socket; SIOCGSKNS takes no argument and returns
    // a new descriptor, which `cvt_fd` takes ownership of.
    cvt_fd(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) } as c_long)
}

// ---- descriptors handed over by the caller ---------------------------------------------

/// Takes ownership of descriptor `fd`, which the caller left open for ljspawn (e.g. the
/// `--json-status` fd). Fails with EBADF when it is not open.
///
/// Ownership is sound because ljspawn closes every inherited descriptor it was not asked to
/// keep before anything else (`close_fds_except`), and takes each kept one exactly once.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 3 || !fd_is_open(fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    set_cloexec(fd, true)?;
    // SAFETY: `fd` is open (checked above), above 2, and no Rust object owns it: main takes
    // each kept descriptor once, right after closing all others (see the function docs).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the file mode creation mask, returning the previous one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: plain values: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

// ---- terminals (the jail's pty, see `pty`) ------------------------------------------------

/// `TIOCGPTPEER` (linux/tty.h; libc does not define it for every target).
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// A terminal's modes, saved to be restored.
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

impl std::fmt::Debug for Termios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Termios")
    }
}

pub fn tcgetattr(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    // SAFETY: out-parameters: termios is plain data; zeroed is valid and is overwritten.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: borrowed fds and out-parameters: `t` is a live, writable termios.
    cvt_unit(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    Ok(Termios(t))
}

/// Sets `t` once the output written so far has been sent (`TCSADRAIN`), retrying on EINTR.
pub fn tcsetattr(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    loop {
        // SAFETY: borrowed fds: `t.0` is a live, initialised termios read by the call.
        match cvt_unit(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSADRAIN, &t.0) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `t` in raw mode (`cfmakeraw`): no echo, no line editing, no signals from keys, no output
/// processing; every byte is passed as it is.
pub fn raw_mode(t: &Termios) -> Termios {
    let mut raw = t.0;
    // SAFETY: out-parameters: `raw` is a live, initialised termios that cfmakeraw edits.
    unsafe { libc::cfmakeraw(&mut raw) };
    Termios(raw)
}

/// True when `t` has canonical input (line editing) on.
pub fn is_canonical(t: &Termios) -> bool {
    t.0.c_lflag & libc::ICANON != 0
}

/// The window size of terminal `fd`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> io::Result<libc::winsize> {
    let mut w = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: borrowed fds and out-parameters: TIOCGWINSZ writes one winsize into the live `w`.
    cvt_unit(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w) })?;
    Ok(w)
}

/// Sets the window size of terminal `fd` (on a pty master: the kernel sends SIGWINCH to the
/// foreground process group of the slave when it changed).
pub fn set_winsize(fd: BorrowedFd<'_>, w: &libc::winsize) -> io::Result<()> {
    // SAFETY: borrowed fds: TIOCSWINSZ reads one winsize from the live `w`.
    cvt_unit(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, w as *const libc::winsize) })
}

/// Unlocks the slave of pty master `fd` (`unlockpt`).
pub fn unlock_pty(fd: BorrowedFd<'_>) -> io::Result<()> {
    let unlock: c_int = 0;
    // SAFETY: borrowed fds: TIOCSPTLCK reads one c_int from the live `unlock`.
    cvt_unit(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSPTLCK, &unlock as *const c_int) })
}

/// Opens the slave of pty master `fd` through the master itself (`TIOCGPTPEER`): the slave
/// of the same devpts instance, never looked up by name.
pub fn pty_peer(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as libc::c_ulong;
    // SAFETY: borrowed fds and plain values: TIOCGPTPEER takes open flags as an integer and
    // returns a new descriptor.
    let fd = unsafe { libc::ioctl(fd.as_raw_fd(), TIOCGPTPEER as _, flags) };
    cvt_fd(fd as c_long)
}

/// The file system type (`f_type`) of what `fd` is open on.
pub fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: out-parameters: statfs is plain data; zeroed is valid and is overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: borrowed fds and out-parameters: `st` is a live, writable statfs.
    cvt_unit(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// Makes terminal `fd` the controlling terminal of this session (whose leader we are).
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: borrowed fds and plain values: TIOCSCTTY takes an integer (0: do not steal).
    cvt_unit(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as c_int) })
}

/// The foreground process group of terminal `fd`.
pub fn tcgetpgrp(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: borrowed fds: tcgetpgrp only reads the terminal's state.
    let r = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
    cvt(r as c_long).map(|p| p as i32)
}

pub fn getpgrp() -> i32 {
    // SAFETY: plain values: getpgrp takes nothing and cannot fail.
    unsafe { libc::getpgrp() }
}

pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: Option<u32>) -> io::Result<()> {
    let g = gid.unwrap_or(u32::MAX);
    // SAFETY: borrowed fds and plain values (-1, i.e. u32::MAX, leaves the group).
    cvt_unit(unsafe { libc::fchown(fd.as_raw_fd(), uid, g) })
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: borrowed fds: F_GETFL reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    cvt_unit(flags)?;
    // SAFETY: borrowed fds and plain values: F_SETFL sets the flags just read plus O_NONBLOCK.
    cvt_unit(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })
}

/// `poll(2)` for `events` on each fd; returns each one's `revents`. `None` timeout waits
/// forever; EINTR counts as "nothing ready".
pub fn poll_events(
    fds: &[(BorrowedFd<'_>, i16)],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|(f, ev)| libc::pollfd { fd: f.as_raw_fd(), events: *ev, revents: 0 }).collect();
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as c_int);
    // SAFETY: out-parameters: `p` is a live Vec of `p.len()` pollfds, each naming a borrowed fd.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(vec![0; fds.len()]) } else { Err(e) };
    }
    Ok(p.iter().map(|x| x.revents).collect())
}

/// A connected pair of unix stream sockets (close-on-exec), for passing a descriptor.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: out-parameters: `fds` is a live array of two c_ints, as socketpair requires.
    cvt_unit(unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    })?;
    // SAFETY: socketpair succeeded, so fds[0] is a new descriptor owned by nobody else.
    let a = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: socketpair succeeded, so fds[1] is a new descriptor owned by nobody else.
    let b = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((a, b))
}

/// A control message carrying one descriptor, laid out as the kernel writes it: the header,
/// then the descriptor at `CMSG_DATA` (the header's size is a multiple of its alignment on
/// every Linux ABI, so `fd` follows it directly), padded to `CMSG_SPACE(sizeof(int))`.
#[repr(C)]
struct FdCmsg {
    hdr: libc::cmsghdr,
    fd: c_int,
    _pad: c_int,
}

impl FdCmsg {
    fn new(fd: c_int) -> FdCmsg {
        // SAFETY: plain data: cmsghdr is integers only; zeroed is a valid value.
        let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
        hdr.cmsg_level = libc::SOL_SOCKET;
        hdr.cmsg_type = libc::SCM_RIGHTS;
        hdr.cmsg_len = (std::mem::size_of::<libc::cmsghdr>() + std::mem::size_of::<c_int>()) as _;
        FdCmsg { hdr, fd, _pad: 0 }
    }
}

/// Sends descriptor `fd` (with one data byte) over the unix socket `sock` (`SCM_RIGHTS`).
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [b'p'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cmsg = FdCmsg::new(fd.as_raw_fd());
    // SAFETY: plain data: msghdr is integers and pointers; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut cmsg as *mut FdCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>() as _;
    loop {
        // SAFETY: borrowed fds: `msg` points to the live `iov` (one byte of `byte`) and the
        // live `cmsg`, whose sizes it carries.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one descriptor sent with `send_fd` (close-on-exec); None at end of file (the
/// sender closed the socket without sending).
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut cmsg = FdCmsg::new(-1);
    cmsg.hdr.cmsg_len = 0;
    // SAFETY: plain data: msghdr is integers and pointers; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut cmsg as *mut FdCmsg).cast();
    msg.msg_controllen = std::mem::size_of::<FdCmsg>() as _;
    let n = loop {
        // SAFETY: borrowed fds and out-parameters: `msg` points to the live, writable `iov`
        // (one byte) and `cmsg`, whose sizes it carries; the kernel writes within them.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let want = FdCmsg::new(0).hdr.cmsg_len;
    if msg.msg_flags & libc::MSG_CTRUNC != 0
        || msg.msg_controllen < want as _
        || cmsg.hdr.cmsg_level != libc::SOL_SOCKET
        || cmsg.hdr.cmsg_type != libc::SCM_RIGHTS
        || cmsg.hdr.cmsg_len != want
        || cmsg.fd < 0
    {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    // SAFETY: SCM_RIGHTS just installed `cmsg.fd` as a new descriptor of this process that
    // nothing else owns (the message held exactly one: its length was checked).
    Ok(Some(unsafe { OwnedFd::from_raw_fd(cmsg.fd) }))
}

/// The signals a relaying ljspawn also takes through its signalfd: window size changes, and
/// being continued after a stop (the caller's shell may have reset the terminal meanwhile).
pub const TTY_SIGNALS: [c_int; 2] = [libc::SIGWINCH, libc::SIGCONT];

/// Blocks `TTY_SIGNALS` too, and returns a signalfd for those and `block_signals`' set.
pub fn signalfd_tty() -> io::Result<OwnedFd> {
    let all = [
        libc::SIGCHLD,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGWINCH,
        libc::SIGCONT,
    ];
    let set = sigset(&all);
    // SAFETY: out-parameters: `set` is a live, initialised sigset_t; the old mask is not kept.
    cvt_unit(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: out-parameters: `set` is a live, initialised sigset_t; -1 asks for a new fd.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    cvt_fd(fd as c_long)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_tree_attr_falls_back_on_enosys_and_eperm_only() {
        let err = io::Error::from_raw_os_error;
        // No such call on this kernel: the old path, and never the new call again.
        assert_eq!(open_tree_attr_fallback(&err(libc::ENOSYS)), Some(true));
        // Maybe an outer seccomp filter: the old path, this time only.
        assert_eq!(open_tree_attr_fallback(&err(libc::EPERM)), Some(false));
        // The lookup's or the kernel's own answer: it stands (the old path would say the same,
        // or worse, do what the new call refused).
        for e in [libc::ENOENT, libc::EACCES, libc::ELOOP, libc::EXDEV, libc::EINVAL, libc::EBADF] {
            assert_eq!(open_tree_attr_fallback(&err(e)), None, "errno {e}");
        }
    }

    #[test]
    fn open_tree_attr_lookup_errors_are_the_lookups() {
        // Whichever path this kernel takes, a missing path is ENOENT from the lookup, before
        // anything is cloned (so no privilege is needed to see it).
        let e = open_tree_attr(None, "/nonexistent/lightjail-test", OPEN_TREE_CLONE, MOUNT_ATTR_RDONLY, 0)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    }
}
