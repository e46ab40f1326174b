#!/usr/bin/python3
"""Escape-suite helper, run as root on the host: simulate a host that forbids user namespaces.

    userns_limit.py CMD [ARGS...]

Makes a child user namespace in which uids and gids 0-65535 map to themselves (so root is
still root there and a setuid-root binary still gets euid 0), sets user.max_user_namespaces
to 0 in it (no new user namespace below, for anyone, privileged or not), then execs CMD.
(unshare(1) would need newuidmap and /etc/subuid entries for root to map a range.)
"""
import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000
libc = ctypes.CDLL(None, use_errno=True)

go_r, go_w = os.pipe()
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(go_w)
    os.close(ready_r)
    if libc.unshare(CLONE_NEWUSER) != 0:
        print("userns_limit: unshare: errno %d" % ctypes.get_errno(), file=sys.stderr)
        os._exit(3)
    os.write(ready_w, b"u")
    if os.read(go_r, 1) != b"g":
        os._exit(3)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0\n")
    os.execvp(sys.argv[1], sys.argv[1:])
os.close(go_r)
os.close(ready_w)
if os.read(ready_r, 1) != b"u":
    os.waitpid(pid, 0)
    sys.exit(3)
for f in ("uid_map", "gid_map"):
    with open("/proc/%d/%s" % (pid, f), "w") as m:
        m.write("0 0 65536\n")
os.write(go_w, b"g")
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st) & 0xFF if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
