#!/usr/bin/python3
"""Runs a program with some x86_64 system calls failing: `deny_syscalls.py NR=ERRNO... -- PROG
ARG...` installs a seccomp filter (after no_new_privs, so any user may) under which each system
call NR fails with ERRNO (a name: ENOSYS, EPERM, ...) and every other call is allowed, then
execs PROG. For the tests of ljspawn's fallbacks (a kernel without a call: ENOSYS; an outer
sandbox refusing it: EPERM) on a kernel that has the call.
"""
import ctypes
import errno
import os
import struct
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06


def insn(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)


def main():
    sep = sys.argv.index("--")
    rules = [(int(nr), getattr(errno, name)) for nr, name in (a.split("=") for a in sys.argv[1:sep])]
    argv = sys.argv[sep + 1:]
    prog = [insn(BPF_LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    # Another ABI (i386, or x32: nr has bit 30): allowed, as the rules name x86_64 numbers.
    prog.append(insn(BPF_JEQ_K, 0, 2 * len(rules) + 1, AUDIT_ARCH_X86_64))
    prog.append(insn(BPF_LD_W_ABS, 0, 0, 0))  # seccomp_data.nr
    for nr, err in rules:
        prog.append(insn(BPF_JEQ_K, 0, 1, nr))
        prog.append(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | err))
    prog.append(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    code = b"".join(prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        sys.exit(f"deny_syscalls: no_new_privs: {os.strerror(ctypes.get_errno())}")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fbuf), 0, 0) != 0:
        sys.exit(f"deny_syscalls: seccomp: {os.strerror(ctypes.get_errno())}")
    os.execv(argv[0], argv)


main()
