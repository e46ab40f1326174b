#!/bin/sh
# Idmapped system layers: spawning `true` over a 3-layer stack of root-owned layers of a
# granted store (`--idmap-layer`, setuid ljspawn run by the user) against the same 3 layers
# owned by the caller (`--layer`), in one hyperfine run as the user. Target: idmapped <= 1.15x
# caller-owned. /etc/lightjail.conf is a private overlay of /etc (the host's is not touched).
#
#   sh bench/idmap.sh      (as root; LJSPAWN=path overrides target/release/ljspawn)
set -eu
cd "$(dirname "$0")/.."
LJSPAWN=$(realpath "${LJSPAWN:-target/release/ljspawn}")
RUNS=${RUNS:-100}
USER_NAME=${BENCH_USER:-ljtest}
command -v hyperfine >/dev/null || { echo "bench: hyperfine is missing (make deps)"; exit 1; }
[ -x "$LJSPAWN" ] || { echo "bench: $LJSPAWN not found (make build)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: run as root"; exit 1; }
id "$USER_NAME" >/dev/null 2>&1 || { echo "bench: no user $USER_NAME"; exit 1; }
grep -q "^$USER_NAME:" /etc/subuid || { echo "bench: $USER_NAME has no /etc/subuid range"; exit 1; }

# The store: root-owned, on a path whose every directory is root's and 0755 (not /tmp).
store=$(mktemp -d /var/lib/lj-bench-idmap.XXXXXX)
own=$(mktemp -d /tmp/lj-bench-idmap-own.XXXXXX)
bin=$(mktemp -d /var/lib/lj-bench-idmap-bin.XXXXXX)
etc=$(mktemp -d /tmp/lj-bench-idmap-etc.XXXXXX)
trap 'rm -rf --one-file-system "$store" "$own" "$bin" "$etc"' EXIT
chmod 0755 "$store" "$bin"
worlds/busybox/make-world.sh "$store/l1" >/dev/null
mkdir -p "$store/l2/etc" "$store/l3/usr/share"
echo two > "$store/l2/etc/two"
echo three > "$store/l3/usr/share/three"
chmod 0700 "$store/l1" "$store/l2" "$store/l3"
cp -a "$store/l1" "$store/l2" "$store/l3" "$own/"
chown -R "$USER_NAME:" "$own"
chmod 0755 "$own"
install -o root -g root -m 4755 "$LJSPAWN" "$bin/ljspawn"
echo "store $store allow $USER_NAME" > "$etc/lightjail.conf"

L="$bin/ljspawn --subids"
idm="$L --idmap-layer $store/l1 --idmap-layer $store/l2 --idmap-layer $store/l3 -- /bin/true"
owned="$L --layer $own/l1 --layer $own/l2 --layer $own/l3 -- /bin/true"
out=$(mktemp /tmp/lj-bench-idmap.XXXXXX.json)
chmod 0666 "$out"
# shellcheck disable=SC2016
unshare -m --propagation private /bin/sh -c '
set -e
t=$1 u=$2; shift 2
mkdir "$t/u" "$t/w"
mount -t tmpfs -o mode=0755 lj-etc "$t/u"
mkdir "$t/u/u" "$t/u/w"
mount -t overlay -o "lowerdir=/etc,upperdir=$t/u/u,workdir=$t/u/w" lj-etc /etc
cat "$t/lightjail.conf" > /etc/lightjail.conf
exec setpriv --reuid="$u" --regid="$u" --init-groups -- "$@"
' sh "$etc" "$USER_NAME" hyperfine -N -w 10 -r "$RUNS" --export-json "$out" -n idmapped "$idm" -n caller-owned "$owned" >/dev/null
python3 - "$out" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
i, o = r["idmapped"]["median"], r["caller-owned"]["median"]
ratio = i / o
print(f"bench: 3 idmapped system layers {i*1000:.2f} ms, 3 caller-owned layers {o*1000:.2f} ms (medians)")
print(f"bench: idmapped / caller-owned = {ratio:.3f} (target <= 1.15: {'ok' if ratio <= 1.15 else 'MISS'})")
PY
rm -f "$out"
