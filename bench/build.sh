#!/bin/sh
# Building a one-step image, ljbuild against buildah (chroot isolation), as root and rootless:
# a busybox base, one step `echo hi > /hello`; a cold build and a cache hit. One hyperfine run
# per mode; the rootless one is a hyperfine started as the user. Prints the medians and the
# ratios the project targets: ljbuild / buildah <= 0.2 cold and <= 0.1 on a cache hit. Both
# builds use the host's network (buildah's chroot isolation does; ljbuild's default, pasta,
# adds pasta's start, ~70 ms here, to every cold build).
#
#   sh bench/build.sh      as root; LJBUILD=path (default target/release/ljbuild, with its
#                          ljspawn next to it), RUNS (20), BENCH_USER (ljtest),
#                          BENCH_OUT (target/bench: hyperfine's JSON is kept there)
set -eu
cd "$(dirname "$0")/.."
LJBUILD=$(realpath "${LJBUILD:-target/release/ljbuild}")
RUNS=${RUNS:-20}
USER_NAME=${BENCH_USER:-ljtest}
OUT=$(realpath -m "${BENCH_OUT:-target/bench}")

for t in hyperfine buildah python3 setpriv tar; do
    command -v $t >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root (it also measures rootless, as $USER_NAME)"; exit 1; }
[ -x "$LJBUILD" ] || { echo "bench: $LJBUILD not found (make build, or set LJBUILD)"; exit 1; }
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$USER_NAME"
home=$(getent passwd "$USER_NAME" | cut -d: -f6)

# Shared inputs (readable by the user): the Jailfile, the Containerfiles, a binary copy.
dir=$(mktemp -d /tmp/lj-bench-build.XXXXXX)
trap 'rm -rf --one-file-system "$dir"' EXIT
chmod 755 "$dir"
mkdir -m 755 "$dir/bin" "$dir/jailfile" "$dir/base" "$dir/hello" "$dir/root" "$dir/user"
chown "$USER_NAME" "$dir/user"
install -m 0755 "$LJBUILD" "$dir/bin/ljbuild"
install -m 0755 "$(dirname "$LJBUILD")/ljspawn" "$dir/bin/ljspawn"
printf '%s\n' 'name bench/hello' 'version 1.0' '---' 'echo hi > /hello' > "$dir/jailfile/Jailfile"
printf '%s\n' 'FROM scratch' 'ADD world.tar /' > "$dir/base/Containerfile"
printf '%s\n' 'FROM localhost/lj-bench-busybox' 'RUN echo hi > /hello' > "$dir/hello/Containerfile"
cp worlds/busybox/make-world.sh "$dir/bin/"
cd "$dir"

# Per mode, as that user: a busybox world of its own (imported into a private lightjail root
# and tarred into a private buildah store as the base image), one build of each to start
# warm, then one hyperfine run. Runs with `sh -c` so the same steps serve root and the user.
mode() { # mode NAME PREFIX: PREFIX is "" (root) or the setpriv prefix
    name=$1 as=$2 w=$dir/$1
    # shellcheck disable=SC2016
    $as env HOME="$3" LIGHTJAIL_ROOT="$w/lj" sh -eu -c '
        d=$1 w=$2 runs=$3 json=$4
        L=$d/bin/ljbuild
        B="buildah --root $w/storage --runroot $w/run"
        $d/bin/make-world.sh "$w/world" >/dev/null
        $L -q world import busybox "$w/world" >/dev/null
        mkdir "$w/base" && cp "$d/base/Containerfile" "$w/base/"
        tar -C "$w/world" -cf "$w/base/world.tar" .
        $B bud -q --isolation chroot -t lj-bench-busybox "$w/base" >/dev/null
        $B bud -q --isolation chroot --layers -t lj-bench-hello "$d/hello" >/dev/null
        $L -q "$d/jailfile/Jailfile" >/dev/null
        hyperfine -N --warmup 2 --runs "$runs" --export-json "$json" \
            -n ljbuild-cold --prepare "$L -q rm bench/hello@1.0" "$L -q --net host $d/jailfile/Jailfile" \
            -n ljbuild-hit --prepare true "$L -q $d/jailfile/Jailfile" \
            -n buildah-cold --prepare true "$B bud -q --isolation chroot --no-cache -t lj-bench-hello $d/hello" \
            -n buildah-hit --prepare true "$B bud -q --isolation chroot --layers -t lj-bench-hello $d/hello"
    ' sh "$dir" "$w" "$RUNS" "$w/$name.json" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
}
echo "bench: $RUNS runs of each build, as root and as $USER_NAME"
mode root "" /root
mode user "setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups --" "$home"
mkdir -p "$OUT"
cp "$dir/root/root.json" "$OUT/build-root.json"
cp "$dir/user/user.json" "$OUT/build-user.json"

python3 - "$OUT" <<'PY'
import json, statistics, sys
d = sys.argv[1]
def medians(mode):
    res = json.load(open(f"{d}/build-{mode}.json"))["results"]
    return {r["command"]: statistics.median(r["times"]) * 1000 for r in res}
def line(name, value, target):
    verdict = "PASS" if value <= target else "MISS"
    print(f"  {name:40s} {value:5.3f}  (target <= {target})  {verdict}")
t = {"root": medians("root"), "rootless": medians("user")}
for label, m in t.items():
    print(f"{label:9s} median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in m.items()))
print("ratios:")
for label, m in t.items():
    line(f"ljbuild / buildah, cold ({label})", m["ljbuild-cold"] / m["buildah-cold"], 0.2)
    line(f"ljbuild / buildah, cache hit ({label})", m["ljbuild-hit"] / m["buildah-hit"], 0.1)
print(f"hyperfine JSON: {d}/build-*.json")
PY
