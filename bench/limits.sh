#!/bin/sh
# The cost of limits and of a jail's own address: spawning `true` plain, with cgroup limits
# (--memory and --pids), and on a bridge (veth, address, default route), in one hyperfine run
# inside a network namespace made for the purpose (so the bridge touches nothing of the host;
# entered with nsenter, which unlike `ip netns exec` keeps the host's cgroup mounts visible).
# Targets: limits <= 1.3x plain, bridged <= 2x plain.
#
#   sh bench/limits.sh     (as root; LJSPAWN=path overrides target/release/ljspawn)
set -eu
cd "$(dirname "$0")/.."
LJSPAWN=$(realpath "${LJSPAWN:-target/release/ljspawn}")
RUNS=${RUNS:-100}
for t in hyperfine ip python3; do
    command -v $t >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root"; exit 1; }

dir=$(mktemp -d /tmp/lj-bench-limits.XXXXXX)
ns=lj-bench-$$
trap 'ip netns del "$ns" 2>/dev/null; rm -rf --one-file-system "$dir"' EXIT
worlds/busybox/make-world.sh "$dir/w" >/dev/null
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add br0 type bridge
ip -n "$ns" addr add 10.213.0.1/24 dev br0
ip -n "$ns" link set br0 up

W=$dir/w
nsenter --net=/run/netns/"$ns" hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$dir/limits.json" \
    -n plain "$LJSPAWN --root $W -- /bin/true" \
    -n limits "$LJSPAWN --root $W --memory 256M --pids 512 -- /bin/true" \
    -n bridged "$LJSPAWN --root $W --net bridge:br0 --ip 10.213.0.2/24 --gateway 10.213.0.1 -- /bin/true" \
    >/dev/null 2>"$dir/hyperfine.log" || { cat "$dir/hyperfine.log"; exit 1; }
python3 - "$dir/limits.json" <<'PY'
import json, statistics, sys
r = {x["command"]: statistics.median(x["times"]) * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print("median ms: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
for name, target in (("limits", 1.3), ("bridged", 2.0)):
    ratio = r[name] / r["plain"]
    print(f"  {name + ' / plain':38s} {ratio:5.2f}  (target <= {target})  {'PASS' if ratio <= target else 'MISS'}")
PY
