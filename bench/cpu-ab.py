#!/usr/bin/python3
"""CPU time of spawns, binary A against binary B, for a loaded machine (where wall time is
noise): N rounds, each running A and B once in turn (the order alternates), each run's CPU
(user + system) taken from wait4's rusage. The script is a child subreaper, so the jail's pid
1, which outlives ljspawn's parent (ljspawn does not wait for the namespaces' teardown), is
reaped here and counted with the run that made it (every process of a run is reaped before the
next starts). Kernel work done in other threads (kworkers, RCU callbacks) is not counted.

    bench/cpu-ab.py N BIN_A BIN_B... -- ARGS...     e.g.
    bench/cpu-ab.py 2000 /tmp/ljspawn-base target/release/ljspawn -- --root W -- /bin/true

Prints each binary's mean and median CPU per spawn, and B's (C's...) ratios to A. Rootless:
run it as the user (setpriv --reuid=U --regid=U --init-groups -- /usr/bin/python3 ...), with
the binaries and W where the user can reach them.
"""
import ctypes
import os
import statistics
import sys

PR_SET_CHILD_SUBREAPER = 36


def main():
    if len(sys.argv) < 5 or "--" not in sys.argv:
        sys.exit(__doc__.split("\n\n")[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("cpu-ab: cannot become a child subreaper")
    n = int(sys.argv[1])
    sep = sys.argv.index("--")
    bins, args = sys.argv[2:sep], sys.argv[sep + 1:]
    null = os.open("/dev/null", os.O_RDWR)
    io = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
    cpu = {b: [] for b in bins}
    for i in range(n):
        for b in bins if i % 2 == 0 else bins[::-1]:
            pid = os.posix_spawn(b, [b] + args, os.environ, file_actions=io)
            used = 0.0
            while True:  # this run's processes, the orphaned jail pid 1 included
                try:
                    p, status, ru = os.wait4(-1, 0)
                except ChildProcessError:
                    break
                if p == pid and status != 0:
                    sys.exit(f"cpu-ab: {b} {' '.join(args)}: wait status {status}")
                used += ru.ru_utime + ru.ru_stime
            cpu[b].append(used * 1e6)
    base = None
    for b in bins:
        mean, median = statistics.mean(cpu[b]), statistics.median(cpu[b])
        line = f"{b}: CPU per spawn mean {mean:.0f} us, median {median:.0f} us (n={n})"
        if base:
            line += f"; / {bins[0]}: mean {mean / base[0]:.3f}, median {median / base[1]:.3f}"
        else:
            base = (mean, median)
        print(line)


main()
