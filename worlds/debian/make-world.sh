#!/bin/sh
# Make a Debian world: bookworm, minbase variant, with debootstrap, as root.
# Usage: worlds/debian/make-world.sh [--include=PKG,...] DIR [MIRROR]   (DIR must not exist or be empty)
#   --include=systemd,dbus   a world that boots its own init (`ljail create --init`)
# Then: ljbuild world import debian DIR   (as root; rootless users import it themselves:
# ljbuild keeps owners when root imports, and skips /dev contents for everyone).
set -eu
include=
case ${1:-} in
    --include=*) include=${1#--include=}; shift ;;
esac
dir=${1:?usage: make-world.sh [--include=PKG,...] DIR [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { echo "make-world.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "make-world.sh: debootstrap needs root" >&2; exit 1; }
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "make-world.sh: $dir exists and is not empty" >&2
    exit 1
fi
debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$dir" "$mirror"
# No daemons may start inside a build jail (apt-get install of a service would try).
printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
chmod 755 "$dir/usr/sbin/policy-rc.d"
echo lj > "$dir/etc/hostname"
# A world is shared by many jails: no machine id of its own (each jail gets one; systemd
# makes a transient one where none is given).
if [ -e "$dir/etc/machine-id" ]; then
    : > "$dir/etc/machine-id"
fi
rm -f "$dir/var/lib/dbus/machine-id"
rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"* 2>/dev/null || true
printf 'world: debian bookworm minbase%s %s\n' "${include:+ +$include}" "$(date -u +%Y-%m-%d)" > "$dir/etc/lj-world"
