#!/usr/bin/python3
"""Hardening probe: can this process make a setuid or setgid file in DIR, or chmod an fd?

    suid.py DIR [FD...]

Prints `WAY BIT RESULT` for every way of giving a file in DIR (created by the probe, mode
0644) the setuid (u) or setgid (g) bit: chmod, fchmod, fchmodat, fchmodat2 (raw syscall 452),
open/openat/creat with O_CREAT and the mode, open with O_TMPFILE and the mode, mknod/mknodat
of a regular file; then `fdN BIT RESULT` for fchmod on each FD; `openat2 - RESULT`;
`io_uring_setup - RESULT`. RESULT is `ok` or an errno name. Then `done`.
"""
import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS = {"fchmodat2": 452, "openat2": 437, "io_uring_setup": 425, "mknodat": 259, "openat": 257,
       "open": 2, "creat": 85, "mknod": 133, "chmod": 90, "fchmod": 91, "fchmodat": 268}
AT_FDCWD = -100
O_TMPFILE = 0o20200000


def name(e):
    return errno.errorcode.get(e, "E%d" % e)


def raw(sysname, *args):
    r = libc.syscall(ctypes.c_long(SYS[sysname]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return ("ok", r) if r >= 0 else (name(ctypes.get_errno()), r)


def has_bit(path, bit):
    try:
        return os.lstat(path).st_mode & bit != 0
    except OSError:
        return False


def main():
    d = sys.argv[1]
    fds = [int(a) for a in sys.argv[2:]]
    n = 0
    for label, bit in (("u", 0o4000), ("g", 0o2000)):
        mode = 0o755 | bit
        for way in ("chmod", "fchmod", "fchmodat", "fchmodat2", "open", "openat", "creat", "tmpfile",
                    "mknod", "mknodat"):
            n += 1
            p = os.path.join(d, "f%d" % n).encode()
            if way in ("chmod", "fchmod", "fchmodat", "fchmodat2"):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                if way == "chmod":
                    res, _ = raw("chmod", p, mode)
                elif way == "fchmod":
                    res, _ = raw("fchmod", fd, mode)
                elif way == "fchmodat":
                    res, _ = raw("fchmodat", AT_FDCWD, p, mode)
                else:
                    res, _ = raw("fchmodat2", AT_FDCWD, p, mode, 0)
                os.close(fd)
            elif way == "open":
                res, fd = raw("open", p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            elif way == "openat":
                res, fd = raw("openat", AT_FDCWD, p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            elif way == "creat":
                res, fd = raw("creat", p, mode)
            elif way == "tmpfile":
                res, fd = raw("open", d.encode(), O_TMPFILE | os.O_WRONLY, mode)
                if res == "ok" and os.fstat(fd).st_mode & bit == 0:
                    res = "ok-but-cleared"
            elif way == "mknod":
                res, _ = raw("mknod", p, 0o100000 | mode, 0)
            else:
                res, _ = raw("mknodat", AT_FDCWD, p, 0o100000 | mode, 0)
            if res == "ok" and way != "tmpfile" and not has_bit(p, bit):
                res = "ok-but-cleared"
            print(way, label, res)
            try:
                if way in ("open", "openat", "creat", "tmpfile") and res.startswith("ok"):
                    os.close(fd)
            except OSError:
                pass
        for fd in fds:
            res, _ = raw("fchmod", fd, 0o644 | bit)
            print("fd%d" % fd, label, res)
    how = ctypes.create_string_buffer(24)
    res, _ = raw("openat2", AT_FDCWD, d.encode(), ctypes.byref(how), ctypes.c_long(24))
    print("openat2 - %s" % res)
    params = ctypes.create_string_buffer(120)
    res, fd = raw("io_uring_setup", 1, ctypes.byref(params))
    print("io_uring_setup - %s" % res)
    print("done")


main()
