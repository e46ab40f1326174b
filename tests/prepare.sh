#!/bin/sh
# Prepare the end-to-end tests: run as root from the repository root, after
# `cargo build --release --workspace`, before `cargo nextest run -p lj-tests`.
#
#   LJ_TEST_DIR  where the tests find everything (default /tmp/lj-test); recreated
#   LJ_BIN_SRC   where the built binaries are (default target/release, or
#                $CARGO_TARGET_DIR/release when that is set)
#
# It makes, under LJ_TEST_DIR (0755, so the unprivileged test user can reach it):
#   bin/ljspawn, bin/ljbuild,  copies of the built binaries (tests never run binaries from the
#   bin/ljail, bin/ljail-supervisor   repository, which may live under /root)
#   setuid/ljspawn             a copy owned by root, mode 4755 (setuid-mode tests)
#   worlds/busybox             the busybox world (worlds/busybox/make-world.sh)
#   tmp/                       1777: the tests' temporary directories
# and, once, a Debian world at LJ_DEBIAN_WORLD (default /var/tmp/lj-debian-world), copied to
#   worlds/debian-ljtest       owned by ljtest (the rootless Debian build imports it)
# and, once, a Debian world with systemd and dbus at LJ_DEBIAN_SYSTEMD_WORLD (default
# /var/tmp/lj-debian-systemd-world; ljail's --init test boots it), copied to
#   worlds/debian-systemd-ljtest   owned by ljtest (the rootless boot)
# and, once, a Debian world with podman at LJ_DEBIAN_PODMAN_WORLD (default
# /var/tmp/lj-debian-podman-world; ljail's --docker test runs podman in it), copied to
#   worlds/debian-podman-ljtest    owned by ljtest (the rootless run)
# and, once, that systemd world with systemd-container added (apt-get in a build jail) at
# LJ_DEBIAN_MACHINED_WORLD (default /var/tmp/lj-debian-machined-world; ljail's systemd-unit
# test boots it and runs jails as units lightjail-NAME in it)
# and the unprivileged user `ljtest` (with /etc/subuid and /etc/subgid ranges) if missing.
# Idempotent: running it again starts from scratch.
set -eu

say() { printf 'prepare: %s\n' "$*"; }
die() { printf 'prepare: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it creates a user and a setuid binary)"
[ -f worlds/busybox/make-world.sh ] || die "run me from the repository root"

dir=${LJ_TEST_DIR:-/tmp/lj-test}
case $dir in
    /*) ;;
    *) die "LJ_TEST_DIR must be an absolute path, not '$dir'" ;;
esac
case $dir in
    / | /tmp | /tmp/ | /root | /home | /usr | /etc | /var) die "LJ_TEST_DIR=$dir: refusing to recreate that" ;;
esac
if [ -n "${LJ_BIN_SRC:-}" ]; then
    src=$LJ_BIN_SRC
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
    src=$CARGO_TARGET_DIR/release
else
    src=target/release
fi
[ -x "$src/ljspawn" ] || die "$src/ljspawn not found: build first (cargo build --release --workspace)"

# A fresh test directory. --one-file-system: never descend into something mounted there.
if [ -e "$dir" ]; then
    rm -rf --one-file-system "$dir" || die "cannot remove $dir (is something still mounted under it?)"
fi
mkdir -p "$dir"
chmod 0755 "$dir"
mkdir -m 0755 "$dir/bin" "$dir/setuid" "$dir/worlds"
mkdir -m 1777 "$dir/tmp"

install -m 0755 "$src/ljspawn" "$dir/bin/ljspawn"
installed=ljspawn
for b in ljbuild ljail ljail-supervisor; do
    if [ -x "$src/$b" ]; then
        install -m 0755 "$src/$b" "$dir/bin/$b"
        installed="$installed $b"
    fi
done
say "binaries from $src: $installed -> $dir/bin/"

install -o root -g root -m 4755 "$src/ljspawn" "$dir/setuid/ljspawn"
say "setuid copy: $dir/setuid/ljspawn (root, 4755)"

worlds/busybox/make-world.sh "$dir/worlds/busybox"
say "world: $dir/worlds/busybox ($(cat "$dir/worlds/busybox/etc/lj-world"))"

# The Debian world of ljbuild's real-distribution test: made once with debootstrap
# (a minute or two, from the Debian mirror) and kept across runs at LJ_DEBIAN_WORLD.
deb=${LJ_DEBIAN_WORLD:-/var/tmp/lj-debian-world}
if [ -x "$deb/usr/bin/apt-get" ]; then
    say "Debian world: $deb (kept from an earlier run)"
elif command -v debootstrap >/dev/null 2>&1; then
    say "Debian world: making $deb with debootstrap (log: $dir/debootstrap.log)"
    rm -rf --one-file-system "$deb"
    if ! worlds/debian/make-world.sh "$deb" >"$dir/debootstrap.log" 2>&1; then
        tail -n 5 "$dir/debootstrap.log" >&2
        rm -rf --one-file-system "$deb"
        say "Debian world: debootstrap failed; the Debian test will skip (or fail with LJ_MUST_WORK=1)"
    fi
else
    say "Debian world: debootstrap missing; the Debian test will skip (or fail with LJ_MUST_WORK=1)"
fi

# The world of ljail's --docker test, where podman runs: the same, with podman.
pdw=${LJ_DEBIAN_PODMAN_WORLD:-/var/tmp/lj-debian-podman-world}
if [ -x "$pdw/usr/bin/podman" ] && [ -e "$pdw/etc/lj-world" ]; then
    say "Debian world with podman: $pdw (kept from an earlier run)"
elif command -v debootstrap >/dev/null 2>&1; then
    say "Debian world with podman: making $pdw with debootstrap (log: $dir/debootstrap-podman.log)"
    rm -rf --one-file-system "$pdw"
    if ! worlds/debian/make-world.sh --include=podman,crun,fuse-overlayfs,uidmap,containernetworking-plugins \
        "$pdw" >"$dir/debootstrap-podman.log" 2>&1; then
        tail -n 5 "$dir/debootstrap-podman.log" >&2
        rm -rf --one-file-system "$pdw"
        say "Debian world with podman: debootstrap failed; the --docker test will skip (or fail with LJ_MUST_WORK=1)"
    fi
fi

# The world ljail's --init test boots: the same, with systemd and dbus.
sdw=${LJ_DEBIAN_SYSTEMD_WORLD:-/var/tmp/lj-debian-systemd-world}
if [ -x "$sdw/usr/lib/systemd/systemd" ]; then
    say "Debian world with systemd: $sdw (kept from an earlier run)"
elif command -v debootstrap >/dev/null 2>&1; then
    say "Debian world with systemd: making $sdw with debootstrap (log: $dir/debootstrap-systemd.log)"
    rm -rf --one-file-system "$sdw"
    if ! worlds/debian/make-world.sh --include=systemd,dbus "$sdw" >"$dir/debootstrap-systemd.log" 2>&1; then
        tail -n 5 "$dir/debootstrap-systemd.log" >&2
        rm -rf --one-file-system "$sdw"
        say "Debian world with systemd: debootstrap failed; the --init test will skip (or fail with LJ_MUST_WORK=1)"
    fi
fi

# The world of ljail's systemd-unit test (ljail boots it and runs jails as units in it): the
# systemd world with systemd-container (systemd-machined, machinectl), installed with apt-get in
# a build jail (ljspawn as root) over a copy of it. Kept at LJ_DEBIAN_MACHINED_WORLD.
mdw=${LJ_DEBIAN_MACHINED_WORLD:-/var/tmp/lj-debian-machined-world}
if [ -x "$mdw/usr/lib/systemd/systemd-machined" ] && [ -e "$mdw/etc/lj-world" ]; then
    say "Debian world with systemd-machined: $mdw (kept from an earlier run)"
elif [ -x "$sdw/usr/lib/systemd/systemd" ] && [ -e /etc/resolv.conf ]; then
    say "Debian world with systemd-machined: making $mdw (log: $dir/apt-machined.log)"
    rm -rf --one-file-system "$mdw" "$mdw.new"
    cp -a "$sdw" "$mdw.new"
    if "$dir/bin/ljspawn" --root "$mdw.new" --rw --net host --cap-add container --allow-setuid-files \
        --ro-bind /etc/resolv.conf /etc/resolv.conf -- /bin/sh -c \
        'export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends systemd-container && apt-get clean && rm -rf /var/lib/apt/lists/*' \
        >"$dir/apt-machined.log" 2>&1; then
        printf 'world: debian bookworm minbase +systemd,dbus,systemd-container %s\n' "$(date -u +%Y-%m-%d)" > "$mdw.new/etc/lj-world"
        mv "$mdw.new" "$mdw"
    else
        tail -n 5 "$dir/apt-machined.log" >&2
        rm -rf --one-file-system "$mdw.new"
        say "Debian world with systemd-machined: apt-get failed; the systemd-unit test will skip (or fail with LJ_MUST_WORK=1)"
    fi
fi

user=ljtest
if id -u "$user" >/dev/null 2>&1; then
    say "user $user exists (uid $(id -u "$user"))"
else
    useradd --create-home --shell /bin/sh "$user"
    say "created user $user (uid $(id -u "$user"))"
fi
# Subordinate id ranges for the setuid-mode tests: pick a free 65536 block above the
# highest one in use (or 100000).
for f in /etc/subuid /etc/subgid; do
    [ -e "$f" ] || : > "$f"
    if grep -q "^$user:" "$f"; then
        say "$f already has a range for $user"
    else
        start=$(awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$f")
        echo "$user:$start:65536" >> "$f"
        say "$f: $user:$start:65536"
    fi
done

# The rootless Debian build needs a world its user owns (its files are then jail root's):
# one copy per test run, given to the test user, which imports it into its own root.
if [ -x "$deb/usr/bin/apt-get" ]; then
    rm -rf --one-file-system "$dir/worlds/debian-$user"
    cp -a "$deb" "$dir/worlds/debian-$user"
    chown -R "$user:$user" "$dir/worlds/debian-$user"
    say "Debian world for $user: $dir/worlds/debian-$user"
fi

if [ -x "$sdw/usr/lib/systemd/systemd" ]; then
    rm -rf --one-file-system "$dir/worlds/debian-systemd-$user"
    cp -a "$sdw" "$dir/worlds/debian-systemd-$user"
    chown -R "$user:$user" "$dir/worlds/debian-systemd-$user"
    say "Debian world with systemd for $user: $dir/worlds/debian-systemd-$user"
fi

if [ -x "$pdw/usr/bin/podman" ] && [ -e "$pdw/etc/lj-world" ]; then
    rm -rf --one-file-system "$dir/worlds/debian-podman-$user"
    cp -a "$pdw" "$dir/worlds/debian-podman-$user"
    chown -R "$user:$user" "$dir/worlds/debian-podman-$user"
    say "Debian world with podman for $user: $dir/worlds/debian-podman-$user"
fi

# The setuid tests need the setuid bit to take effect where LJ_TEST_DIR lives.
if command -v findmnt >/dev/null 2>&1 && findmnt -n -o OPTIONS -T "$dir" | grep -qw nosuid; then
    say "warning: $dir is on a nosuid mount: setuid-mode tests will skip"
fi
say "ready: LJ_TEST_DIR=$dir"
