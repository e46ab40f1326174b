#!/bin/sh
# Two ljspawn binaries against each other (e.g. before and after a change), spawning `true` in
# the full jail of spawn.sh, as root, rootless and setuid: ROUNDS rounds (default 5) of one
# hyperfine run per mode with both binaries, RUNS runs each (default 60); the medians over all
# rounds and the ratio NEW / OLD per mode are printed (issue 10's rule: at most 1.05).
#
#   sh bench/versus.sh OLD NEW     as root; BENCH_USER (ljtest), ROUNDS, RUNS
# e.g. OLD from a commit: git worktree add /tmp/old COMMIT && (cd /tmp/old && make build)
set -eu
cd "$(dirname "$0")/.."
[ $# = 2 ] || { echo "usage: sh bench/versus.sh OLD-LJSPAWN NEW-LJSPAWN"; exit 2; }
OLD=$(realpath "$1")
NEW=$(realpath "$2")
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-60}
USER_NAME=${BENCH_USER:-ljtest}
. bench/common.sh
bench_as_root "rootless and setuid"
bench_need hyperfine python3 setpriv
bench_setup
install -m 0755 "$OLD" "$dir/old"
install -m 0755 "$NEW" "$dir/new"
install -o root -g root -m 4755 "$OLD" "$dir/setuid/old"
install -o root -g root -m 4755 "$NEW" "$dir/setuid/new"
cd "$dir"
hf() { # hf AS JSON OLD-CMD NEW-CMD
    bench_hf "$1" "$2" -n old "$3" -n new "$4"
}
echo "bench: $ROUNDS rounds x $RUNS runs of each binary, root, rootless and setuid in turn"
i=1
while [ "$i" -le "$ROUNDS" ]; do
    hf "" "$dir/json/root-$i.json" "$dir/old --root $dir/w -- /bin/true" "$dir/new --root $dir/w -- /bin/true"
    hf "$AS_USER" "$dir/json/rootless-$i.json" "$dir/old --root $dir/w -- /bin/true" "$dir/new --root $dir/w -- /bin/true"
    hf "$AS_USER" "$dir/json/setuid-$i.json" "$dir/setuid/old --root $dir/w -- /bin/true" \
        "$dir/setuid/new --root $dir/w -- /bin/true"
    i=$((i + 1))
done
python3 - "$dir/json" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
for mode in ("root", "rootless", "setuid"):
    t = {}
    for i in range(1, rounds + 1):
        for r in json.load(open(f"{d}/{mode}-{i}.json"))["results"]:
            t.setdefault(r["command"], []).extend(r["times"])
    old, new = (statistics.median(t[k]) * 1000 for k in ("old", "new"))
    verdict = "PASS" if new / old <= 1.05 else "MISS"
    print(f"  {mode:9s} old {old:5.2f} ms  new {new:5.2f} ms  new / old {new / old:5.3f}  (target <= 1.05)  {verdict}")
PY
