#!/bin/sh
# Spawning `true` in a full jail, ljspawn against bwrap, in one hyperfine run per mode
# (the commands alternate round by round, so drift hits both alike). Prints the ratios
# the project targets: ljspawn / bwrap <= 0.6 (root and rootless), overlay / plain <= 1.2,
# and, for scale, ljspawn / floor <= 1.5 (floor: bench/floor.c, namespaces + exec only, root).
#
#   sh bench/spawn.sh            (as root; LJSPAWN=path overrides target/release/ljspawn)
set -eu
cd "$(dirname "$0")/.."
LJSPAWN=${LJSPAWN:-target/release/ljspawn}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-60}
USER_NAME=${BENCH_USER:-ljtest}

for t in hyperfine bwrap python3 setpriv gcc; do
    command -v $t >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it also measures rootless, as $USER_NAME)"; exit 1; }
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"

dir=$(mktemp -d /tmp/lj-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
worlds/busybox/make-world.sh "$dir/w" >/dev/null
install -m 0755 "$LJSPAWN" "$dir/ljspawn"
gcc -O2 -static -o "$dir/floor" bench/floor.c
W=$dir/w
LJ="$dir/ljspawn --root $W -- /bin/true"
LJO="$dir/ljspawn --layer $W -- /bin/true"
BW="bwrap --unshare-all --ro-bind $W / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
AS_USER="setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups --"

echo "bench: $ROUNDS rounds x $RUNS runs of each command, interleaved by round"
i=1
while [ $i -le "$ROUNDS" ]; do
    hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$dir/root-$i.json" \
        -n lj "$LJ" -n bwrap "$BW" -n lj-overlay "$LJO" -n floor "$dir/floor $W/bin/true" >/dev/null
    hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$dir/user-$i.json" \
        -n lj "$AS_USER $LJ" -n bwrap "$AS_USER $BW" -n lj-overlay "$AS_USER $LJO" \
        -n setpriv "$AS_USER /bin/true" >/dev/null
    i=$((i + 1))
done

python3 - "$dir" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def times(mode):
    t = {}
    for i in range(1, rounds + 1):
        for r in json.load(open(f"{d}/{mode}-{i}.json"))["results"]:
            t.setdefault(r["command"], []).extend(r["times"])
    return {k: statistics.median(v) * 1000 for k, v in t.items()}
def line(name, value, target):
    verdict = "PASS" if value <= target else "MISS"
    print(f"  {name:38s} {value:5.2f}  (target <= {target})  {verdict}")
for mode in ("root", "user"):
    t = times(mode)
    base = t.pop("setpriv", 0.0)  # the cost of switching user, taken off every rootless command
    t = {k: v - base for k, v in t.items()}
    label = "root" if mode == "root" else "rootless"
    print(f"{label}: median ms: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    line(f"ljspawn / bwrap ({label})", t["lj"] / t["bwrap"], 0.6)
    line(f"overlay / plain root ({label})", t["lj-overlay"] / t["lj"], 1.2)
    if "floor" in t:
        line("ljspawn / floor (root)", t["lj"] / t["floor"], 1.5)
        print(f"  {'floor / bwrap (root), for scale':38s} {t['floor'] / t['bwrap']:5.2f}")
PY
