#!/bin/sh
# Spawning `true` in a full jail, ljspawn against bwrap: one hyperfine run as root and one as
# the unprivileged user per round, ROUNDS rounds in turn (so drift hits every command alike).
# Prints the medians and the ratios the project targets (../shared/ANCHORS.md):
#   ljspawn / bwrap <= 0.6 (root and rootless), overlay / plain root <= 1.2,
#   ljspawn rootless / root and setuid / root <= 1.1, ljspawn / floor <= 1.5 (root;
#   floor: bench/floor.c, namespaces + exec only).
# The rootless commands are timed by a hyperfine that itself runs as the user, so no
# user-switching cost is added to them (or guessed and subtracted).
#
#   sh bench/spawn.sh      as root; LJSPAWN=path (default target/release/ljspawn),
#                          ROUNDS (5), RUNS (60 per command per round), BENCH_USER (ljtest),
#                          BENCH_OUT (target/bench: hyperfine's JSON and logs are kept there)
set -eu
cd "$(dirname "$0")/.."
LJSPAWN=$(realpath "${LJSPAWN:-target/release/ljspawn}")
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-60}
USER_NAME=${BENCH_USER:-ljtest}
OUT=$(realpath -m "${BENCH_OUT:-target/bench}")

. bench/common.sh
bench_need hyperfine bwrap python3 setpriv gcc
bench_as_root rootless
[ -x "$LJSPAWN" ] || { echo "bench: $LJSPAWN not found (make build, or set LJSPAWN)"; exit 1; }
# Everything the user runs lives in a directory it can traverse; the JSON goes to one it owns.
bench_setup
install -m 0755 "$LJSPAWN" "$dir/ljspawn"
install -o root -g root -m 4755 "$LJSPAWN" "$dir/setuid/ljspawn"
gcc -O2 -static -o "$dir/floor" bench/floor.c
LJ="$dir/ljspawn --root $W -- /bin/true"
LJO="$dir/ljspawn --layer $W -- /bin/true"
LJS="$dir/setuid/ljspawn --root $W -- /bin/true"
BW="bwrap --unshare-all --ro-bind $W / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
# The same sandbox through ljspawn's bwrap form (bubblewrap's command line, word for word).
LJB="$dir/ljspawn --bwrap --unshare-all --ro-bind $W / --proc /proc --dev /dev --tmpfs /tmp /bin/true"
FLOOR="$dir/floor $W/bin/true"
cd "$dir"

# One try of each command first, so a failure shows its own message, not hyperfine's.
check() { # check AS CMD: AS is "" (root) or the setpriv prefix
    if ! err=$($1 $2 2>&1 >/dev/null); then
        echo "bench: ${1:+as $USER_NAME: }$2: failed: $err"
        return 1
    fi
}
for c in "$LJ" "$LJO" "$LJB" "$BW" "$FLOOR"; do check "" "$c" || exit 1; done
for c in "$LJ" "$LJO" "$LJB" "$BW"; do check "$AS_USER" "$c" || exit 1; done
setuid="-n lj-setuid"
check "$AS_USER" "$LJS" || { echo "bench: (setuid mode not measured)"; setuid=""; LJS=""; }

echo "bench: $ROUNDS rounds x $RUNS runs of each command, root and rootless in turn"
i=1
while [ "$i" -le "$ROUNDS" ]; do
    bench_hf "" "$dir/json/root-$i.json" -n lj "$LJ" -n bwrap "$BW" -n lj-bwrap-form "$LJB" -n lj-overlay "$LJO" -n floor "$FLOOR"
    bench_hf "$AS_USER" "$dir/json/user-$i.json" -n lj "$LJ" -n bwrap "$BW" -n lj-bwrap-form "$LJB" -n lj-overlay "$LJO" $setuid ${LJS:+"$LJS"}
    i=$((i + 1))
done
mkdir -p "$OUT"
rm -f "$OUT"/spawn-*.json
for f in "$dir"/json/*.json; do cp "$f" "$OUT/spawn-$(basename "$f")"; done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def medians(mode):
    t = {}
    for i in range(1, rounds + 1):
        for r in json.load(open(f"{d}/spawn-{mode}-{i}.json"))["results"]:
            t.setdefault(r["command"], []).extend(r["times"])
    return {k: statistics.median(v) * 1000 for k, v in t.items()}
def line(name, value, target):
    verdict = "PASS" if value <= target else "MISS"
    print(f"  {name:36s} {value:5.2f}  (target <= {target})  {verdict}")
root, user = medians("root"), medians("user")
for label, t in (("root", root), ("rootless", user)):
    print(f"{label:9s} median ms: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
print("ratios:")
line("ljspawn / bwrap (root)", root["lj"] / root["bwrap"], 0.6)
line("ljspawn / bwrap (rootless)", user["lj"] / user["bwrap"], 0.6)
line("ljspawn bwrap form / bwrap (root)", root["lj-bwrap-form"] / root["bwrap"], 0.6)
line("ljspawn bwrap form / bwrap (rootless)", user["lj-bwrap-form"] / user["bwrap"], 0.6)
line("overlay / plain root (root)", root["lj-overlay"] / root["lj"], 1.2)
line("overlay / plain root (rootless)", user["lj-overlay"] / user["lj"], 1.2)
line("ljspawn rootless / root", user["lj"] / root["lj"], 1.1)
if "lj-setuid" in user:
    line("ljspawn setuid / root", user["lj-setuid"] / root["lj"], 1.1)
line("ljspawn / floor (root)", root["lj"] / root["floor"], 1.5)
print(f"  {'floor / bwrap (root), for scale':36s} {root['floor'] / root['bwrap']:5.2f}")
print(f"hyperfine JSON: {d}/spawn-*.json")
PY
