#!/usr/bin/python3
"""Escape-suite probe: can this process get at another one's memory or environment?

    ptrace.py [--control] PID...

For each PID prints `PID WHAT RESULT`, WHAT one of attach (PTRACE_ATTACH), vm_readv
(process_vm_readv of one byte), environ and mem (opening /proc/PID/environ, /proc/PID/mem
for reading), RESULT `ok` or an errno name. A successful attach is detached at once.
--control first forks a child of this process (same user, dumpable) and probes it too, as
`control WHAT RESULT`: the probe itself works when those say ok (or EFAULT for vm_readv:
the permission check passed, the address was simply not mapped there).
"""
import ctypes
import errno
import os
import signal
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.syscall.restype = ctypes.c_long
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
SYS_process_vm_readv = 310


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def name(e):
    return errno.errorcode.get(e, "E%d" % e)


def attach(pid):
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        return name(ctypes.get_errno())
    os.waitpid(pid, 0)
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return "ok"


def vm_readv(pid):
    buf = ctypes.create_string_buffer(1)
    local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 1)
    remote = IoVec(0x400000, 1)
    r = libc.syscall(SYS_process_vm_readv, ctypes.c_long(pid), ctypes.byref(local), ctypes.c_long(1),
                     ctypes.byref(remote), ctypes.c_long(1), ctypes.c_long(0))
    return "ok" if r >= 0 else name(ctypes.get_errno())


def proc_open(pid, what):
    """Opening is the access check (reading mem at some offset may fail for other reasons)."""
    try:
        with open("/proc/%d/%s" % (pid, what), "rb") as f:
            if what == "environ":
                f.read(1)
        return "ok"
    except OSError as e:
        return name(e.errno)


def probe(label, pid):
    for what, fn in [("attach", attach), ("vm_readv", vm_readv),
                     ("environ", lambda p: proc_open(p, "environ")), ("mem", lambda p: proc_open(p, "mem"))]:
        print("%s %s %s" % (label, what, fn(pid)), flush=True)


args = sys.argv[1:]
if args and args[0] == "--control":
    args = args[1:]
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    time.sleep(0.05)
    probe("control", child)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
for a in args:
    probe(a, int(a))
print("done")
