#!/bin/sh
# The kernel VM tier: boot Debian bookworm's stock kernel (linux-image-amd64, 6.1) under
# qemu-system-x86_64 and run the end-to-end checks the host cannot (pure cgroup v2, a kernel
# that forbids unprivileged user namespaces, the pre-6.8 overlay mount path, tmpfs without user
# xattrs). Run as root from the repository root, after tests/prepare.sh; the checks' results
# become nextest tests (tests/tests/vm.rs, `cargo nextest run -p lj-tests -E 'test(/^vm::/)'`).
#
#   LJ_TEST_DIR   the tests' directory (default /tmp/lj-test); results go to $LJ_TEST_DIR/vm
#   LJ_BIN_SRC    where the built binaries are (default target/release; ljspawn should be the
#                 static one `make build` puts there, a dynamic one gets its libraries copied)
#   LJ_VM_CACHE   where the kernel package is kept across runs (default /var/tmp/lj-vm-cache)
#   LJ_VM_ACCEL   kvm, tcg or auto (default: auto = KVM if a short probe boot proves it works)
#   LJ_VM_TIMEOUT hard limit for the whole boot in seconds (default 900)
#   LJ_VM_CHECKS  the checks to run, comma-separated (default all; see tests/vm/guest/checks.sh)
#
# It never fails itself (so that `make test` goes on to report): what went wrong is written to
# $LJ_TEST_DIR/vm/status, and every vm:: test fails with it (a skip when a prerequisite is
# missing, which LJ_MUST_WORK=1 turns into a failure).
set -eu

say() { printf 'vm: %s\n' "$*"; }
dir=${LJ_TEST_DIR:-/tmp/lj-test}
out=$dir/vm
cache=${LJ_VM_CACHE:-/var/tmp/lj-vm-cache}
src=${LJ_BIN_SRC:-target/release}
accel=${LJ_VM_ACCEL:-auto}
limit=${LJ_VM_TIMEOUT:-900}
start=$(date +%s)

[ -f tests/vm/guest/checks.sh ] || { echo "vm: run me from the repository root" >&2; exit 2; }
case $dir in /*) ;; *) echo "vm: LJ_TEST_DIR must be absolute" >&2; exit 2 ;; esac
rm -rf --one-file-system "$out"
mkdir -p "$out/checks"

# status: "ok", "skip: why" (a prerequisite is missing) or "fail: why" (the tier is broken).
finish() {
    echo "$1" > "$out/status"
    say "$1 ($(($(date +%s) - start)) s; results in $out)"
    exit 0
}
[ "$(id -u)" = 0 ] || finish "skip: needs root (to extract the kernel package and make the guest's files)"
for p in qemu-system-x86_64 cpio mkfs.ext4 dpkg-deb apt-get timeout; do
    command -v "$p" >/dev/null 2>&1 || finish "skip: $p not installed (make deps installs qemu-system-x86 cpio e2fsprogs)"
done
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1 || ldd "$bb" >/dev/null 2>&1; then
    finish "skip: $bb is not a static busybox (apt-get install busybox-static)"
fi
[ -x "$src/ljspawn" ] || finish "skip: $src/ljspawn not built"
[ -x "$src/ljbuild" ] || finish "skip: $src/ljbuild not built"

# ---------------------------------------------------------------- the kernel package
# Debian bookworm's stock kernel, the one linux-image-amd64 depends on, fetched once into the
# cache (apt-get download: no installation on the host).
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
    say "apt does not know linux-image-amd64: apt-get update"
    apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null 2>&1 || true
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1)
fi
[ -n "$kpkg" ] || finish "fail: cannot find the package linux-image-amd64 depends on (apt-cache depends linux-image-amd64)"
mkdir -p "$cache"
kdir=$cache/$kpkg
if [ ! -f "$kdir/.done" ]; then
    say "fetching $kpkg into $cache"
    rm -rf "$kdir" "$cache"/"$kpkg"_*.deb
    (cd "$cache" && apt-get download -q "$kpkg" >"$out/apt.log" 2>&1) ||
        finish "fail: apt-get download $kpkg failed: $(tail -n 1 "$out/apt.log")"
    mkdir -p "$kdir"
    dpkg-deb -x "$cache"/"$kpkg"_*.deb "$kdir" || finish "fail: dpkg-deb -x $kpkg failed"
    touch "$kdir/.done"
fi
kver=$(ls "$kdir/lib/modules" | head -n 1)
vmlinuz=$kdir/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || finish "fail: no kernel image in $kpkg ($vmlinuz)"
moddir=$kdir/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || "$bb" depmod -b "$kdir" "$kver" || finish "fail: depmod for $kver failed"
say "kernel: $kpkg ($kver)"

# ---------------------------------------------------------------- the guest's root
g=$out/guest
mkdir -p "$g"
(
    cd "$g"
    mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp mnt root home/ljtest lj/bin lj/setuid "lib/modules/$kver"
    cp "$bb" bin/busybox
    for a in $(bin/busybox --list); do [ -e "bin/$a" ] || ln -s busybox "bin/$a"; done
    chmod 0700 root
    chown 1000:1000 home/ljtest
    cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
ljtest:x:1000:1000:test user:/home/ljtest:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
P
    cat > etc/group <<'G'
root:x:0:
ljtest:x:1000:
nogroup:x:65534:
G
    echo 'ljtest:100000:65536' > etc/subuid
    echo 'ljtest:100000:65536' > etc/subgid
    echo ljvm > etc/hostname
)
# The modules the checks need, with their dependencies, in load order.
: > "$g/lj/modules"
want="fs/overlayfs/overlay drivers/net/veth net/bridge/bridge drivers/net/macvlan fs/ext4/ext4
      drivers/virtio/virtio_pci drivers/block/virtio_blk crypto/crc32c_generic"
for m in $want; do
    line=$(grep "^kernel/$m\.ko[^:]*:" "$moddir/modules.dep") || finish "fail: $m is not a module of $kver"
    deps=${line#*:}
    # modules.dep lists the dependencies nearest first: load them last-first.
    for d in $(echo "$deps" | tr ' ' '\n' | sed '/^$/d' | sed -n '1!G;h;$p') "${line%%:*}"; do
        grep -qx "$d" "$g/lj/modules" && continue
        mkdir -p "$g/lib/modules/$kver/$(dirname "$d")"
        cp "$moddir/$d" "$g/lib/modules/$kver/$d"
        echo "$d" >> "$g/lj/modules"
    done
done
echo "$kver" > "$g/lj/kver"
# The binaries: ljspawn (static, as `make build` makes it), ljbuild, ljail, and the shared
# libraries of whichever is dynamic.
install -m 0755 "$src/ljspawn" "$src/ljbuild" "$g/lj/bin/"
# ljail and its supervisor (the ljail_v2_cgroups checks), found next to ljspawn.
[ -x "$src/ljail" ] || finish "skip: $src/ljail not built"
[ -x "$src/ljail-supervisor" ] || finish "skip: $src/ljail-supervisor not built"
install -m 0755 "$src/ljail" "$src/ljail-supervisor" "$g/lj/bin/"
install -o root -g root -m 4755 "$src/ljspawn" "$g/lj/setuid/ljspawn"
# The setuid copy needs ljbuild beside it for the setuid ljbuild checks (ljbuild finds ljspawn
# next to itself).
install -m 0755 "$src/ljbuild" "$g/lj/setuid/ljbuild"
# ljbuild imports and exports layers with GNU tar (busybox tar lacks --xattrs).
rm -f "$g/bin/tar"
cp "$(command -v tar)" "$g/bin/tar"
# iproute2's ip for veth pairs (busybox ip cannot name a veth's peer).
command -v ip >/dev/null 2>&1 || finish "skip: ip (iproute2) not installed"
cp "$(command -v ip)" "$g/lj/ip"
for b in "$src/ljspawn" "$src/ljbuild" "$src/ljail" "$src/ljail-supervisor" "$g/bin/tar" "$g/lj/ip"; do
    ldd "$b" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' |
        while read -r lib; do
            mkdir -p "$g$(dirname "$lib")"
            cp -L "$lib" "$g$lib"
        done
done
# flatpak (issue 14: `flatpak run` through setuid ljspawn where user namespaces are forbidden),
# with its libraries; its installation goes on the disk below.
fp=$(command -v flatpak || true)
if [ -n "$fp" ]; then
    mkdir -p "$g/usr/bin"
    cp "$fp" "$g/usr/bin/flatpak"
    ldd "$fp" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' |
        while read -r lib; do
            mkdir -p "$g$(dirname "$lib")"
            [ -e "$g$lib" ] || cp -L "$lib" "$g$lib"
        done
fi
if ldd "$src/ljspawn" 2>/dev/null | grep -q '=>'; then
    say "note: $src/ljspawn is dynamically linked (make build makes it static): its libraries are copied in"
fi
install -m 0755 tests/vm/guest/init tests/vm/guest/init2 "$g/"
install -m 0755 tests/vm/guest/checks.sh "$g/lj/checks.sh"
(cd "$g" && find . -mindepth 1 | cpio -o -H newc --quiet) > "$out/initrd.cpio"

# ---------------------------------------------------------------- the disk: a store on ext4
d=$out/disk
mkdir -p "$d/lj" "$d/user"
worlds/busybox/make-world.sh "$d/worlds/busybox" >/dev/null
if [ -n "$fp" ]; then
    # A busybox runtime and a one-script app, built offline with flatpak's own tools into a
    # private system installation (as tests/tests/flatpak.rs does on the host).
    f=$d/flatpak
    mkdir -p "$f/home" "$f/rt/files/bin"
    (
        set -e
        cd "$f"
        export HOME=$f/home FLATPAK_SYSTEM_DIR=$f/sys
        arch=$(flatpak --default-arch)
        cp "$bb" rt/files/bin/busybox
        for c in sh echo cat id head; do ln -s busybox "rt/files/bin/$c"; done
        printf '[Runtime]\nname=org.lj.Platform\nruntime=org.lj.Platform/%s/1\nsdk=org.lj.Platform/%s/1\n' "$arch" "$arch" > rt/metadata
        flatpak build-export --runtime --files=files repo rt 1
        flatpak --system remote-add --no-gpg-verify lj "$f/repo"
        flatpak --system install -y --noninteractive lj org.lj.Platform//1
        flatpak build-init app org.lj.Hello org.lj.Platform org.lj.Platform 1
        mkdir -p app/files/bin
        printf '#!/bin/sh\necho hello from flatpak\nhead -2 /.flatpak-info\nid -u\n' > app/files/bin/hello
        chmod +x app/files/bin/hello
        flatpak build-finish app --command=hello
        flatpak build-export repo app
        flatpak --system install -y --noninteractive lj org.lj.Hello
        rm -rf repo rt app home
        chmod -R a+rX "$f"
    ) >"$out/flatpak.log" 2>&1 || finish "fail: cannot build the flatpak app for the guest: $(tail -n 1 "$out/flatpak.log")"
fi
chmod 0755 "$d/worlds"
chown 1000:1000 "$d/user"
chmod 0700 "$d/lj"
rm -f "$out/disk.img"
mkfs.ext4 -q -F -L ljvm -d "$d" "$out/disk.img" 128M >"$out/mkfs.log" 2>&1 ||
    finish "fail: mkfs.ext4 -d failed: $(tail -n 1 "$out/mkfs.log")"
rm -rf "$d"

# ---------------------------------------------------------------- boot
# "$1": accelerator, "$2": seconds allowed, "$3": kernel command line extra.
boot() {
    rm -f "$out/console.log" "$out/results.txt"
    : > "$out/results.txt"
    timeout -k 5 "$2" qemu-system-x86_64 -accel "$1" -cpu max -m 1024 -smp 2 \
        -kernel "$vmlinuz" -initrd "$out/initrd.cpio" \
        -append "console=ttyS0 panic=-1 oops=panic loglevel=4 ljvm.checks=${LJ_VM_CHECKS:-all} $3" \
        -drive "file=$out/disk.img,format=raw,if=virtio" \
        -nographic -monitor none -no-reboot -nic none \
        -serial "file:$out/console.log" -serial "file:$out/results.txt" \
        </dev/null >"$out/qemu.log" 2>&1
}
if [ "$accel" = auto ]; then
    accel=tcg
    if [ -w /dev/kvm ]; then
        # KVM boots this kernel in about a second when it works; on some machines (nested
        # virtualization) the guest hangs instead. A probe boot that only reports and powers off.
        t0=$(date +%s)
        if boot kvm 10 "ljvm.probe=1" && grep -q '^LJVM-PROBE' "$out/results.txt"; then
            accel=kvm
        fi
        say "KVM probe: $([ "$accel" = kvm ] && echo works || echo 'no guest within 10 s: TCG') ($(($(date +%s) - t0)) s)"
    fi
fi
say "booting under qemu ($accel) for the checks, at most $limit s"
t0=$(date +%s)
rc=0
boot "$accel" "$limit" "" || rc=$?
t1=$(date +%s)
tr -d '\r' < "$out/results.txt" > "$out/results" && rm -f "$out/results.txt"
echo "accel=$accel boot_and_checks_s=$((t1 - t0)) kernel=$kver" > "$out/timing"

# ---------------------------------------------------------------- results: one file per check
awk -v o="$out/checks" '
    /^LJVM-BEGIN / { name = $2; f = o "/" name ".log"; printf "" > f; next }
    /^LJVM-END /   { print $3 > (o "/" $2 ".rc"); close(o "/" $2 ".rc"); close(f); name = ""; next }
    name != ""     { print >> f }
' "$out/results"
n=$(ls "$out/checks" | grep -c '\.rc$' || true)
if ! grep -q '^LJVM-READY' "$out/results"; then
    finish "fail: the VM did not boot to its checks (qemu status $rc; see $out/console.log and $out/qemu.log)"
fi
if ! grep -q '^LJVM-DONE' "$out/results"; then
    finish "fail: the VM stopped before the end of its checks (qemu status $rc, $n checks reported; see $out/console.log)"
fi
say "$n checks reported in $((t1 - t0)) s under $accel"
finish ok
