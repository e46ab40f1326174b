#!/bin/sh
# ljail: `ljail exec NAME -- /bin/true` into a running jail against `nsenter` into the same
# namespaces (target <= 1.5x), the supervisor's resident memory per running jail (target
# <= 2 MiB), and starting a busybox jail until its service answers (absolute; against
# systemd-nspawn with the same world when systemd-container is installed: target <= 0.25x).
#
#   sh bench/ljail.sh     (as root; LJAIL=path overrides target/release/ljail, which finds
#                          target/release/ljspawn and ljail-supervisor next to it)
set -eu
cd "$(dirname "$0")/.."
LJAIL=$(realpath "${LJAIL:-target/release/ljail}")
LJBUILD=$(realpath "${LJBUILD:-target/release/ljbuild}")
RUNS=${RUNS:-100}
JAILS=${JAILS:-5}
for t in hyperfine nsenter python3; do
    command -v $t >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root"; exit 1; }

dir=$(mktemp -d /tmp/lj-bench-ljail.XXXXXX)
export LIGHTJAIL_ROOT=$dir/root
# The supervisor measured here is ljail's own, also where systemd is PID 1.
export LJAIL_SUPERVISOR=ljail
trap '"$LJAIL" stop --all --timeout 2s >/dev/null 2>&1; rm -rf --one-file-system "$dir"' EXIT
worlds/busybox/make-world.sh "$dir/w" >/dev/null
"$LJBUILD" -q world import busybox "$dir/w"
svc='mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www'
for i in $(seq 1 "$JAILS"); do
    "$LJAIL" -q create "j$i" --world busybox -- /bin/sh -c "$svc"
    "$LJAIL" -q start "j$i"
done

# exec against nsenter into the jail's program (the same namespaces; nsenter -a also takes its
# root and working directory).
pid1=$("$LJAIL" status j1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
prog=$(cut -d' ' -f1 "/proc/$pid1/task/$pid1/children")
hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$dir/exec.json" \
    -n exec "$LJAIL exec j1 -- /bin/true" \
    -n nsenter "nsenter -t $prog -a /bin/true" \
    >/dev/null 2>"$dir/hyperfine.log" || { cat "$dir/hyperfine.log"; exit 1; }

# Memory of each jail's supervisor (`ljail-supervisor`, the pid `status --json` gives): its
# resident set (Rss of smaps_rollup, the same as VmRSS: shared pages of the binary and libc
# included), its proportional share (Pss) and what is its own alone (Private_Clean +
# Private_Dirty), in kB, means over the jails.
sups=
for i in $(seq 1 "$JAILS"); do
    p=$("$LJAIL" status "j$i" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["supervisor_pid"])')
    grep -q ljail-supervisor "/proc/$p/cmdline" || { echo "bench: pid $p is not j$i's supervisor"; exit 1; }
    sups="$sups $p"
done
rss=$(for p in $sups; do
    awk '/^Rss:/ { r = $2 } /^Pss:/ { s = $2 } /^Private_(Clean|Dirty):/ { v += $2 } END { print r, s, v }' "/proc/$p/smaps_rollup"
done | python3 -c 'import sys
rows = [list(map(int, l.split())) for l in sys.stdin if l.strip()]
print(",".join(str(sum(c) / len(rows)) for c in zip(*rows)) if rows else "0,0,0")')

# Start until the service answers, ljail against systemd-nspawn on the same world (both on the
# host's network, polled from here; each run also stops what it started), alternating.
have_nspawn=$(command -v systemd-nspawn || true)
if [ -n "$have_nspawn" ]; then
    cp -a "$dir/w" "$dir/wn"
    echo ID=busybox > "$dir/wn/etc/os-release"   # nspawn wants an OS tree
fi
"$LJAIL" -q create web --world busybox --net host -- /bin/sh -c \
    'mkdir -p /tmp/www; echo ok > /tmp/www/index.html; exec httpd -f -p 18080 -h /tmp/www'
python3 - "$dir/exec.json" "$rss" "$LJAIL" "$dir/wn" "$have_nspawn" <<'PY'
import json, socket, statistics, subprocess, sys, time
exec_json, rss, ljail, wn, nspawn = sys.argv[1:6]
def answers():
    try:
        with socket.create_connection(("127.0.0.1", 18080), timeout=1) as s:
            s.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            return b"ok" in s.recv(4096)
    except OSError:
        return False
def until_answer(t0):
    while not answers():
        if time.monotonic() - t0 > 20:
            sys.exit("bench: the service never answered")
    return (time.monotonic() - t0) * 1000
def lj():
    t0 = time.monotonic()
    subprocess.run([ljail, "-q", "start", "web"], check=True)
    t = until_answer(t0)
    subprocess.run([ljail, "-q", "stop", "web", "--timeout", "2s"], check=True)
    return t
def ns():
    t0 = time.monotonic()
    p = subprocess.Popen([nspawn, "-q", "-D", wn, "--register=no", "--keep-unit", "/bin/sh", "-c",
        "mkdir -p /tmp/www; echo ok > /tmp/www/index.html; exec httpd -f -p 18080 -h /tmp/www"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = until_answer(t0)
    p.terminate(); p.wait()
    while answers():
        time.sleep(0.01)
    return t
runs = {"ljail": [], "nspawn": []}
for i in range(12):
    runs["ljail"].append(lj())
    if nspawn:
        runs["nspawn"].append(ns())
e = {x["command"]: statistics.median(x["times"]) * 1000 for x in json.load(open(exec_json))["results"]}
print(f"median ms: exec {e['exec']:.2f}, nsenter {e['nsenter']:.2f}")
ratio = e["exec"] / e["nsenter"]
print(f"  {'ljail exec / nsenter':38s} {ratio:5.2f}  (target <= 1.5)  {'PASS' if ratio <= 1.5 else 'MISS'}")
r, pss, own = (float(x) / 1024 for x in rss.split(","))
print(f"  {'supervisor RSS per jail (MiB)':38s} {r:5.2f}  (target <= 2)    {'PASS' if r <= 2 else 'MISS'}"
      f"  (PSS {pss:.2f}, private {own:.2f})")
l = statistics.median(runs["ljail"][2:])
if nspawn:
    n = statistics.median(runs["nspawn"][2:])
    print(f"median ms until the service answers: ljail start {l:.1f}, systemd-nspawn {n:.1f}")
    print(f"  {'ljail start / systemd-nspawn':38s} {l / n:5.2f}  (target <= 0.25) {'PASS' if l / n <= 0.25 else 'MISS'}")
else:
    print(f"median ms until the service answers: ljail start {l:.1f}; systemd-nspawn: SKIP (Debian's systemd-container is not installed)")
PY
