#!/bin/sh
# Deep layer chains: builds a 64-deep chain of overlays with ljbuild (each `from` the one
# below, each adding a file), then compares spawning `true` on the top of it with spawning on
# a 1-deep one, in one hyperfine run. Target: 64-deep <= 2x 1-deep. Also reports the time of
# the 64 builds.
#
#   sh bench/chain.sh      (as root; LJBUILD=path overrides target/release/ljbuild)
set -eu
cd "$(dirname "$0")/.."
LJBUILD=$(realpath "${LJBUILD:-target/release/ljbuild}")
RUNS=${RUNS:-100}
DEPTH=${DEPTH:-64}
command -v hyperfine >/dev/null || { echo "bench: hyperfine is missing (make deps)"; exit 1; }
[ -x "$LJBUILD" ] || { echo "bench: $LJBUILD not found (make build)"; exit 1; }

dir=$(mktemp -d /tmp/lj-bench-chain.XXXXXX)
trap 'rm -rf --one-file-system "$dir"' EXIT
worlds/busybox/make-world.sh "$dir/w" >/dev/null
LJ="$LJBUILD --root $dir/root -q"
$LJ world import busybox "$dir/w" >/dev/null

start=$(date +%s%N)
i=1
while [ "$i" -le "$DEPTH" ]; do
    mkdir -p "$dir/jf/$i"
    {
        echo "name chain/l$i"
        echo "version 1.0"
        [ "$i" -gt 1 ] && echo "from chain/l$((i - 1))"
        echo "---"
        echo "echo $i > /layer-$i"
    } > "$dir/jf/$i/Jailfile"
    $LJ "$dir/jf/$i/Jailfile" >/dev/null
    i=$((i + 1))
done
end=$(date +%s%N)
echo "bench: built a $DEPTH-deep chain in $(( (end - start) / 1000000 )) ms"
# The top sees every layer.
test "$($LJ run chain/l$DEPTH -- /bin/cat /layer-1 /layer-$DEPTH | tr '\n' ' ')" = "1 $DEPTH "

hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$dir/chain.json" \
    -n depth-1 "$LJ run chain/l1 -- /bin/true" -n "depth-$DEPTH" "$LJ run chain/l$DEPTH -- /bin/true" \
    >/dev/null 2>"$dir/hyperfine.log" || { cat "$dir/hyperfine.log"; exit 1; }
python3 - "$dir/chain.json" "$DEPTH" <<'PY'
import json, statistics, sys
r = {x["command"]: statistics.median(x["times"]) * 1000 for x in json.load(open(sys.argv[1]))["results"]}
deep = r[f"depth-{sys.argv[2]}"]
ratio = deep / r["depth-1"]
print(f"spawn on depth 1: {r['depth-1']:.2f} ms, on depth {sys.argv[2]}: {deep:.2f} ms")
print(f"  {'deep / 1-deep':38s} {ratio:5.2f}  (target <= 2.0)  {'PASS' if ratio <= 2.0 else 'MISS'}")
PY
