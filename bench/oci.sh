#!/bin/sh
# OCI images: import and export of a 200 MB, 3-layer image against skopeo + umoci on the same
# machine in the same run, peak memory of ljbuild, and a pull of an image whose layers are all
# present (no blob transferred, target < 100 ms on loopback). Prints ratios; asserts nothing.
#
#   sh bench/oci.sh      (as root; LJBUILD=path overrides target/release/ljbuild; MB=200)
#
# import: `ljbuild world import W oci:IMG:bench`  vs  `skopeo copy oci:IMG:bench oci:COPY:bench`
#         + `umoci unpack --image COPY:bench BUNDLE`                   target: ratio <= 1
# export: `ljbuild export t/app oci:OUT` (the world's 3 layers + one overlay; also --gzip)  vs
#         `umoci repack` of a bundle holding the same tree (one gzip layer)  target: ratio <= 1
# memory: peak RSS of each ljbuild command (/usr/bin/time %M)              target: < 64 MiB
set -eu
cd "$(dirname "$0")/.."
LJBUILD=$(realpath "${LJBUILD:-target/release/ljbuild}")
MB=${MB:-200}
for t in skopeo umoci docker-registry hyperfine python3 /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "bench: $t is missing (make deps)"; exit 1; }
done
[ -x "$LJBUILD" ] || { echo "bench: $LJBUILD not found (make build)"; exit 1; }

dir=$(mktemp -d /tmp/lj-bench-oci.XXXXXX)
regpid=
cleanup() {
    [ -n "$regpid" ] && kill "$regpid" 2>/dev/null
    rm -rf --one-file-system "$dir"
}
trap cleanup EXIT
worlds/busybox/make-world.sh "$dir/w" >/dev/null

# The image: busybox + a quarter of MB, then two layers adding the other three quarters (random: nothing
# compresses, so every byte is moved), gzip layers as registries serve them.
third=$((MB / 4))
for i in 1 2 3; do head -c "${third}M" /dev/urandom > "$dir/p$i"; done
python3 - "$dir" <<'PY' > "$dir/spec.json"
import json, os, sys
d = sys.argv[1]
l1 = [{"path": "bin", "type": "dir"}, {"path": "bin/busybox", "src": f"{d}/w/bin/busybox", "mode": 0o755},
      {"path": "bin/sh", "type": "symlink", "target": "busybox"}, {"path": "data", "type": "dir"}]
layers = [l1 + [{"path": "data/p1", "src": f"{d}/p1"}],
          [{"path": "data/p2", "src": f"{d}/p2"}, {"path": "data/.wh.p1"}],
          [{"path": "data/p3", "src": f"{d}/p3"}, {"path": "data/p1", "src": f"{d}/p1"}]]
print(json.dumps({"tag": "bench", "gzip": True, "config": {"Cmd": ["/bin/sh"]}, "layers": layers}))
PY
python3 tests/probes/mkimage.py "$dir/spec.json" "$dir/img"
echo "bench: image of $(du -sm "$dir/img" | cut -f1) MB in 3 layers"

rss() { # rss NAME CMD...: runs CMD, prints its peak RSS, returns its wall time in ms via $ms
    name=$1; shift
    /usr/bin/time -f '%e %M' -o "$dir/time" "$@" >/dev/null 2>"$dir/err" || { cat "$dir/err"; exit 1; }
    read -r secs kib < "$dir/time"
    echo "  $name: peak RSS $((kib / 1024)) MiB"
    [ "$kib" -lt 65536 ] || echo "  $name: MISS (peak RSS >= 64 MiB)"
}
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
LJ="$LJBUILD -q --root $dir/root"

# Import, three rounds each, alternating; medians.
imp_lj="" imp_peer=""
for r in 1 2 3; do
    rm -rf "$dir/root" "$dir/copy" "$dir/bundle"
    sync
    a=$(now); $LJ world import w "oci:$dir/img:bench" >/dev/null; b=$(now)
    imp_lj="$imp_lj $(ms "$a" "$b")"
    sync
    a=$(now)
    skopeo copy -q "oci:$dir/img:bench" "oci:$dir/copy:bench"
    umoci unpack --image "$dir/copy:bench" "$dir/bundle" >/dev/null 2>&1
    b=$(now)
    imp_peer="$imp_peer $(ms "$a" "$b")"
done
# The world is a chain: data/p3 is in its top layer (the last of the image's layers).
top=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["layers"][-1].split(":")[1])' \
    "$dir/root/worlds/.w.image.json")
cmp "$dir/root/store/sha256/$top/data/p3" "$dir/bundle/rootfs/data/p3"
rm -rf "$dir/root"
rss "world import" $LJ world import w "oci:$dir/img:bench"

# Export: the world and one overlay; umoci repacks the same tree into one layer.
mkdir -p "$dir/jf"
printf 'name t/app\nworld w\n---\necho hi > /hi\n' > "$dir/jf/Jailfile"
$LJ "$dir/jf/Jailfile" >/dev/null
umoci init --layout "$dir/re" >/dev/null 2>&1
umoci new --image "$dir/re:empty" >/dev/null 2>&1
exp_lj="" exp_gz="" exp_peer=""
for r in 1 2 3; do
    rm -rf "$dir/out" "$dir/outgz" "$dir/rb"
    umoci unpack --image "$dir/re:empty" "$dir/rb" >/dev/null 2>&1
    cp -a "$dir/bundle/rootfs/." "$dir/rb/rootfs/"
    echo hi > "$dir/rb/rootfs/hi"
    sync
    a=$(now); $LJ export t/app "oci:$dir/out:x" >/dev/null; b=$(now)
    exp_lj="$exp_lj $(ms "$a" "$b")"
    a=$(now); $LJ export --gzip t/app "oci:$dir/outgz:x" >/dev/null; b=$(now)
    exp_gz="$exp_gz $(ms "$a" "$b")"
    a=$(now); umoci repack --image "$dir/re:r$r" "$dir/rb" >/dev/null 2>&1; b=$(now)
    exp_peer="$exp_peer $(ms "$a" "$b")"
done
skopeo inspect "oci:$dir/out:x" >/dev/null
rm -rf "$dir/out"
rss "export" $LJ export t/app "oci:$dir/out:x"

# A registry on loopback: push, pull into a second root, then pull again (all present).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n  secret: bench\n' \
    "$dir/reg" "$port" > "$dir/reg.yml"
docker-registry serve "$dir/reg.yml" > "$dir/reg.log" 2>&1 &
regpid=$!
i=0; until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { cat "$dir/reg.log"; exit 1; }; sleep 0.1
done
ref=docker://127.0.0.1:$port/bench/app:v1
rss "push" $LJ push t/app "$ref" --tls-verify=false
rss "pull" $LJBUILD -q --root "$dir/root2" pull "$ref" --tls-verify=false
gets=$(grep -c '"GET /v2/.*/blobs/sha256' "$dir/reg.log" || true)
hyperfine -N --warmup 3 --runs 20 --export-json "$dir/pull.json" \
    -n pull-present "$LJBUILD -q --root $dir/root2 pull $ref --tls-verify=false" >/dev/null 2>"$dir/hf.log" \
    || { cat "$dir/hf.log"; exit 1; }
gets2=$(grep -c '"GET /v2/.*/blobs/sha256' "$dir/reg.log" || true)

python3 - "$dir/pull.json" "$imp_lj" "$imp_peer" "$exp_lj" "$exp_gz" "$exp_peer" "$((gets2 - gets))" <<'PY'
import json, statistics, sys
med = lambda s: statistics.median(int(x) for x in s.split())
pull = statistics.median(json.load(open(sys.argv[1]))["results"][0]["times"]) * 1000
il, ip, el, eg, ep = (med(a) for a in sys.argv[2:7])
row = lambda name, r, t: print(f"  {name:44s} {r:5.2f}  (target <= {t})  {'PASS' if r <= t else 'MISS'}")
print(f"import: ljbuild {il:.0f} ms, skopeo copy + umoci unpack {ip:.0f} ms")
row("ljbuild import / (skopeo copy + umoci unpack)", il / ip, 1.0)
print(f"export: ljbuild {el:.0f} ms (--gzip {eg:.0f} ms), umoci repack {ep:.0f} ms")
row("ljbuild export / umoci repack", el / ep, 1.0)
row("ljbuild export --gzip / umoci repack", eg / ep, 1.0)
print(f"pull of an all-present image: {pull:.1f} ms, {sys.argv[7]} blob(s) served in 23 pulls")
row("pull all-present / 100 ms", pull / 100, 1.0)
PY
