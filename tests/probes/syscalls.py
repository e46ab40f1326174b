#!/usr/bin/python3
"""Escape-suite probe: makes raw system calls on every x86 ABI and prints one line per call,
`ABI NAME RESULT`, RESULT being `ok` (the call succeeded), an errno name (EPERM, ENOSYS, ...)
or `SIG<n>` (the process making it was killed).

Run inside a jail whose root is the host's / read-only (python3 with ctypes). Every call runs
in a forked child, so a call that succeeds (unshare, a new session's terminal, ...) changes
nothing for the next one. Arguments are chosen so that each call, if it got through, fails
harmlessly in the kernel (bad magic, bad flags, NULL pointers) or does nothing lasting.

ABIs: x86_64 (syscall), i386 (int 0x80 from this 64-bit process, machine code in a page
mapped below 4 GiB) and x32 (the x86_64 syscall with bit 30 set in the number).

Usage: syscalls.py [GROUP...]  GROUP: denied tty userns clone3 getpid getppid (default: all)
"""
import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]

X32 = 0x40000000
PROT_RWX = 7
MAP_PRIVATE, MAP_ANONYMOUS, MAP_32BIT = 0x02, 0x20, 0x40

# One page below 4 GiB: the i386 stub at offset 0, data (a byte for TIOCSTI) at 2048.
LOW = libc.mmap(None, 4096, PROT_RWX, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0)
if LOW is None or LOW == ctypes.c_void_p(-1).value or LOW >= 1 << 32:
    print("setup mmap32 failed")
    sys.exit(3)
LOW_DATA = LOW + 2048
ctypes.memmove(LOW_DATA, b"x", 1)


def sys64(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return r if r >= 0 else -ctypes.get_errno()


def int80(nr, *args):
    """i386 system call through int 0x80; up to 5 arguments (ebx ecx edx esi edi)."""
    regs = list(args) + [0] * (5 - len(args))
    code = bytes([0x53, 0xB8]) + (nr & 0xFFFFFFFF).to_bytes(4, "little")
    for op, v in zip([0xBB, 0xB9, 0xBA, 0xBE, 0xBF], regs):
        code += bytes([op]) + (v & 0xFFFFFFFF).to_bytes(4, "little")
    code += bytes([0xCD, 0x80, 0x5B, 0xC3])  # int 0x80; pop rbx; ret
    ctypes.memmove(LOW, code, len(code))
    r = ctypes.CFUNCTYPE(ctypes.c_int)(LOW)()
    return r


def in_child(fn):
    """Runs fn() in a forked child; its result: 'ok', an errno name, or SIG<n>."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            r = fn()
        except BaseException:
            os._exit(254)
        os._exit(0 if r >= 0 else min(-r, 253))
    _, st = os.waitpid(pid, 0)
    if os.WIFSIGNALED(st):
        return "SIG%d" % os.WTERMSIG(st)
    c = os.WEXITSTATUS(st)
    if c == 0:
        return "ok"
    if c == 254:
        return "EXCEPTION"
    return errno.errorcode.get(c, "E%d" % c)


def report(abi, name, fn):
    print("%s %s %s" % (abi, name, in_child(fn)), flush=True)


# name: (x86_64 nr, i386 nr or None, arguments that fail harmlessly if the call gets through).
# x32 uses the x86_64 numbers except where X32_NR says otherwise (its own 512+ entries).
X32_NR = {"kexec_load": 528, "ioctl": 514}
DENIED = {
    "init_module": (175, 128, [0, 0, 0]),  # NULL image, length 0
    "finit_module": (313, 350, [-1, 0, 0]),  # bad fd
    "delete_module": (176, 129, [0, 0]),  # NULL name
    "kexec_load": (246, 283, [0, 1000, 0, 0]),  # too many segments
    "kexec_file_load": (320, None, [-1, -1, 0, 0, 0xFFFF0000]),  # bad fds, bad flags
    "reboot": (169, 88, [0, 0, 0, 0]),  # bad magic
    "swapon": (167, 87, [0, 0]),  # NULL path
    "swapoff": (168, 115, [0]),  # NULL path
    "add_key": (248, 286, [0, 0, 0, 0, 0]),  # NULL type
    "request_key": (249, 287, [0, 0, 0, 0]),  # NULL type
    "keyctl": (250, 288, [0x7FFF, 0, 0, 0, 0]),  # unknown operation
    "bpf": (321, 357, [0x7FFF, 0, 0]),  # unknown command
    "perf_event_open": (298, 336, [0, 0, -1, -1, 0]),  # NULL attr
    "userfaultfd": (323, 374, [0xFFFF]),  # bad flags
    "acct": (163, 51, [1]),  # bad pointer (not NULL: that would switch accounting off)
    "lookup_dcookie": (212, 253, [0, 0, 0]),
    "syslog": (103, 103, [0x7FFF, 0, 0]),  # unknown action
}


def group_denied():
    for name, (nr64, nr32, args) in DENIED.items():
        report("x86_64", name, lambda: sys64(nr64, *args))
        if nr32 is not None:
            report("i386", name, lambda: int80(nr32, *args))
        report("x32", name, lambda: sys64(X32_NR.get(name, nr64) | X32, *args))


TIOCSTI, TIOCLINUX, TIOCSCTTY, TIOCGPTN, TIOCSPTLCK = 0x5412, 0x541C, 0x540E, 0x80045430, 0x40045431


def pty_slave():
    """A new pty whose slave becomes this process's controlling terminal (so that TIOCSTI is
    judged by the filter alone, not refused as a foreign terminal)."""
    os.setsid()
    m = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
    import fcntl
    import struct
    fcntl.ioctl(m, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(m, TIOCGPTN, b"\0\0\0\0"))[0]
    s = os.open("/dev/pts/%d" % n, os.O_RDWR)
    fcntl.ioctl(s, TIOCSCTTY, 0)
    return s


def group_tty():
    junk = 0xDEADBEEF << 32
    for label, req in [("TIOCSTI", TIOCSTI), ("TIOCSTI_junk", TIOCSTI | junk)]:
        report("x86_64", "ioctl_" + label, lambda: sys64(16, pty_slave(), req, LOW_DATA))
    report("i386", "ioctl_TIOCSTI", lambda: int80(54, pty_slave(), TIOCSTI, LOW_DATA))
    report("x32", "ioctl_TIOCSTI", lambda: sys64(X32_NR["ioctl"] | X32, pty_slave(), TIOCSTI, LOW_DATA))
    report("x86_64", "ioctl_TIOCLINUX", lambda: sys64(16, pty_slave(), TIOCLINUX | junk, LOW_DATA))
    report("i386", "ioctl_TIOCLINUX", lambda: int80(54, pty_slave(), TIOCLINUX, LOW_DATA))


CLONE_NEWUSER, SIGCHLD = 0x10000000, 17


def raw_clone(call):
    r = call()
    if r == 0:  # the child of a successful clone
        os._exit(0)
    if r > 0:
        os.waitpid(r, 0)
        return 0
    return r


def group_userns():
    report("x86_64", "unshare_NEWUSER", lambda: sys64(272, CLONE_NEWUSER))
    report("i386", "unshare_NEWUSER", lambda: int80(310, CLONE_NEWUSER))
    report("x32", "unshare_NEWUSER", lambda: sys64(272 | X32, CLONE_NEWUSER))
    # Junk in the upper half: the kernel's unshare takes an unsigned long, so this is still
    # CLONE_NEWUSER (with bits it rejects) on x86_64.
    report("x86_64", "clone_NEWUSER", lambda: raw_clone(lambda: sys64(56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)))
    report("i386", "clone_NEWUSER", lambda: raw_clone(lambda: int80(120, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)))
    report("x86_64", "unshare_plain", lambda: sys64(272, 0))


def group_clone3():
    # clone3(NULL, 0): EINVAL from the kernel (size too small), ENOSYS from the filter.
    report("x86_64", "clone3", lambda: sys64(435, 0, 0))
    report("i386", "clone3", lambda: int80(435, 0, 0))
    report("x32", "clone3", lambda: sys64(435 | X32, 0, 0))


def group_getpid():
    report("x86_64", "getpid", lambda: sys64(39))


def group_getppid():
    report("x86_64", "getppid", lambda: sys64(110))


GROUPS = {"denied": group_denied, "tty": group_tty, "userns": group_userns, "clone3": group_clone3,
          "getpid": group_getpid, "getppid": group_getppid}

for g in sys.argv[1:] or list(GROUPS):
    GROUPS[g]()
print("done")
