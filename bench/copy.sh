#!/bin/sh
# A cache hit for a Jailfile whose `copy` directory holds 20,000 files (about 230 MB): ljbuild
# (its metadata cache: no file is read again) against buildah's `COPY` + cached `RUN` of the
# same directory, as root, in one run. Prints the medians, the figure against the target
# (ljbuild hit <= 50 ms), the ratio to buildah, and ljbuild's peak resident memory on a hit
# (target < 32 MiB). Also the floor of any hit, measured in the same run: GNU find stat'ing
# every entry once (fstatat relative to each directory, as ljbuild does, on one thread where
# ljbuild uses up to 4), and `uptime` before and after, since other work on the machine
# shows in every figure.
#
#   sh bench/copy.sh       as root; LJBUILD=path (default target/release/ljbuild, with its
#                          ljspawn next to it), RUNS (20), BUILDAH_RUNS (5), FILES (20000),
#                          BENCH_OUT (target/bench: hyperfine's JSON is kept there)
set -eu
cd "$(dirname "$0")/.."
LJBUILD=$(realpath "${LJBUILD:-target/release/ljbuild}")
RUNS=${RUNS:-20}
BUILDAH_RUNS=${BUILDAH_RUNS:-5}
FILES=${FILES:-20000}
OUT=$(realpath -m "${BENCH_OUT:-target/bench}")

for t in hyperfine buildah python3 tar find /usr/bin/time; do
    command -v $t >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench: run as root"; exit 1; }
[ -x "$LJBUILD" ] || { echo "bench: $LJBUILD not found (make build, or set LJBUILD)"; exit 1; }

dir=$(mktemp -d /tmp/lj-bench-copy.XXXXXX)
trap 'rm -rf --one-file-system "$dir"' EXIT
mkdir "$dir/src" "$dir/base" "$dir/lj"
export LIGHTJAIL_ROOT="$dir/lj"
L="$LJBUILD -q"
B="buildah --root $dir/storage --runroot $dir/run"

# The source: FILES files in 200 directories, sizes 1-22 KiB (mean ~11.5 KiB), random bytes.
python3 - "$dir/src" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
total = 0
for i in range(n):
    d = os.path.join(root, f"d{i % 200:03d}")
    os.makedirs(d, exist_ok=True)
    size = rng.randint(1024, 22 * 1024)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(size))
    total += size
print(f"bench: {n} files, {total / 1e6:.0f} MB")
PY
printf '%s\n' 'name bench/copy' 'copy /src' '---' 'true' > "$dir/src/Jailfile"
printf '%s\n' 'Jailfile' 'Containerfile' > "$dir/src/.ljignore"
printf '%s\n' 'FROM localhost/lj-bench-busybox' 'COPY . /src' 'RUN true' > "$dir/src/Containerfile"
printf '%s\n' 'Jailfile' 'Containerfile' > "$dir/src/.containerignore"

worlds/busybox/make-world.sh "$dir/world" >/dev/null
$L world import busybox "$dir/world" >/dev/null
printf '%s\n' 'FROM scratch' 'ADD world.tar /' > "$dir/base/Containerfile"
tar -C "$dir/world" -cf "$dir/base/world.tar" .
$B bud -q --isolation chroot -t lj-bench-busybox "$dir/base" >/dev/null

t0=$(date +%s.%N)
$L "$dir/src/Jailfile" >/dev/null
t1=$(date +%s.%N)
# Files changed within 2 s of a scan are hashed again (git's racy case): let them settle, and
# let one more hit record that.
sleep 3
$L "$dir/src/Jailfile" >/dev/null
t2=$(date +%s.%N)
$B bud -q --isolation chroot --layers -t lj-bench-copy "$dir/src" >/dev/null
t3=$(date +%s.%N)
echo "bench: cold builds: ljbuild $(echo "$t1 - $t0" | bc 2>/dev/null || echo "?") s, buildah $(echo "$t3 - $t2" | bc 2>/dev/null || echo "?") s"

rss=$(/usr/bin/time -f %M $L "$dir/src/Jailfile" 2>&1 >/dev/null | tail -n 1)
mkdir -p "$OUT"
echo "bench: load before: $(uptime | sed 's/.*load/load/')"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$OUT/copy-lj.json" \
    -n ljbuild-hit "$L $dir/src/Jailfile" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$OUT/copy-floor.json" \
    -n find-stat "find $dir/src -printf %s" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
hyperfine -N --warmup 1 --runs "$BUILDAH_RUNS" --export-json "$OUT/copy-buildah.json" \
    -n buildah-hit "$B bud -q --isolation chroot --layers -t lj-bench-copy $dir/src" >"$dir/log" 2>&1 \
    || { cat "$dir/log"; exit 1; }
echo "bench: load after: $(uptime | sed 's/.*load/load/')"

python3 - "$OUT" "$rss" <<'PY'
import json, statistics, sys
d, rss_kib = sys.argv[1], int(sys.argv[2])
def median(f):
    return statistics.median(json.load(open(f"{d}/{f}"))["results"][0]["times"]) * 1000
lj, bh, floor = median("copy-lj.json"), median("copy-buildah.json"), median("copy-floor.json")
def line(name, value, target, unit):
    verdict = "PASS" if value <= target else "MISS"
    print(f"  {name:44s} {value:8.2f} {unit:3s} (target <= {target})  {verdict}")
print(f"median ms: ljbuild hit {lj:.1f}, buildah COPY + cached RUN {bh:.1f}, "
      f"floor (find stat'ing every entry, one thread) {floor:.1f}")
line("ljbuild cache hit", lj, 50, "ms")
line("ljbuild / buildah, cache hit", lj / bh, 0.1, "")
line("ljbuild peak RSS on a hit", rss_kib / 1024, 32, "MiB")
print(f"hyperfine JSON: {d}/copy-*.json")
PY
