#!/bin/sh
# Parallel spawning throughput: LOOPS loops (default 4, on however many cores there are) each
# spawning `/bin/true` in a full jail N times (default 200), ljspawn (its own form and its bwrap
# form) against bwrap, as root and as the unprivileged user, ROUNDS rounds in turn. Prints the
# spawns per second and the ratio the project targets: ljspawn / bwrap throughput >= 1.5.
# The machine's load disturbs every command alike only within one run: compare within it.
#
#   sh bench/parallel.sh   as root; LJSPAWN (default target/release/ljspawn), LOOPS, N, ROUNDS,
#                          BENCH_USER (ljtest)
set -eu
cd "$(dirname "$0")/.."
LJSPAWN=$(realpath "${LJSPAWN:-target/release/ljspawn}")
LOOPS=${LOOPS:-4}
N=${N:-200}
ROUNDS=${ROUNDS:-3}
USER_NAME=${BENCH_USER:-ljtest}
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it also measures rootless, as $USER_NAME)"; exit 1; }
[ -x "$LJSPAWN" ] || { echo "bench: $LJSPAWN not found (make build, or set LJSPAWN)"; exit 1; }
command -v bwrap >/dev/null || { echo "bench: bwrap is missing (make deps)"; exit 1; }
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"
dir=$(mktemp -d /tmp/lj-bench.XXXXXX)
trap 'rm -rf --one-file-system "$dir"' EXIT
chmod 755 "$dir"
worlds/busybox/make-world.sh "$dir/w" >/dev/null
install -m 0755 "$LJSPAWN" "$dir/ljspawn"
W=$dir/w
AS_USER="setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups --"
# name|command
cat >"$dir/cmds" <<CMDS
lj|$dir/ljspawn --root $W -- /bin/true
lj-bwrap-form|$dir/ljspawn --bwrap --unshare-all --ro-bind $W / --proc /proc --dev /dev --tmpfs /tmp /bin/true
bwrap|bwrap --unshare-all --ro-bind $W / --proc /proc --dev /dev --tmpfs /tmp /bin/true
CMDS
# loops.sh CMD: LOOPS background loops of N runs; prints the wall time in seconds.
cat >"$dir/loops.sh" <<'SH'
cmd=$1 loops=$2 n=$3
fail=$(mktemp)
start=$(date +%s.%N)
j=0
while [ "$j" -lt "$loops" ]; do
    ( i=0; while [ "$i" -lt "$n" ]; do $cmd >/dev/null 2>&1 || { echo x >"$fail"; exit 1; }; i=$((i + 1)); done ) &
    j=$((j + 1))
done
wait
end=$(date +%s.%N)
if [ -s "$fail" ]; then rm -f "$fail"; echo "failed: $cmd" >&2; exit 1; fi
rm -f "$fail"
echo "$start $end" | awk '{printf "%.3f\n", $2 - $1}'
SH
cd "$dir"
: >"$dir/results"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    while IFS='|' read -r name cmd; do
        t=$(sh "$dir/loops.sh" "$cmd" "$LOOPS" "$N") || exit 1
        echo "root $name $t" >>"$dir/results"
        t=$($AS_USER sh "$dir/loops.sh" "$cmd" "$LOOPS" "$N") || exit 1
        echo "rootless $name $t" >>"$dir/results"
    done <"$dir/cmds"
    r=$((r + 1))
done
python3 - "$dir/results" "$LOOPS" "$N" <<'PY'
import statistics, sys
path, loops, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = {}
for line in open(path):
    mode, name, secs = line.split()
    t.setdefault((mode, name), []).append(float(secs))
rate = {k: loops * n / statistics.median(v) for k, v in t.items()}
print(f"{loops} loops x {n} spawns of /bin/true, median over rounds, spawns per second:")
for mode in ("root", "rootless"):
    print(f"  {mode:9s} " + ", ".join(f"{name} {rate[(mode, name)]:.0f}" for (m, name) in rate if m == mode))
print("ratios (throughput, higher is better):")
for mode in ("root", "rootless"):
    for name in ("lj", "lj-bwrap-form"):
        v = rate[(mode, name)] / rate[(mode, "bwrap")]
        print(f"  {name + ' / bwrap (' + mode + ')':36s} {v:5.2f}  (target >= 1.5)  {'PASS' if v >= 1.5 else 'MISS'}")
PY
