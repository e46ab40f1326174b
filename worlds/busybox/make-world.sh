#!/bin/sh
# Make a busybox world: a static busybox with its applets linked in /bin, and the
# empty directories a jail mounts over (proc dev tmp sys) plus a minimal etc.
# Usage: worlds/busybox/make-world.sh DIR      (DIR must not exist or be empty)
# Needs Debian's busybox-static (apt-get install busybox-static).
set -eu
dir=${1:?usage: make-world.sh DIR}
bb=${BUSYBOX:-/bin/busybox}
if ! "$bb" --list >/dev/null 2>&1 || ldd "$bb" >/dev/null 2>&1; then
    echo "make-world.sh: $bb is not a static busybox (apt-get install busybox-static)" >&2
    exit 1
fi
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "make-world.sh: $dir exists and is not empty" >&2
    exit 1
fi
mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin proc dev sys tmp etc root home
chmod 1777 tmp
chmod 0700 root
cp "$bb" bin/busybox
for applet in $(bin/busybox --list); do
    [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/:/bin/false
P
cat > etc/group <<'G'
root:x:0:
nogroup:x:65534:
G
echo lj > etc/hostname
printf 'world: busybox %s\n' "$(bin/busybox | head -n 1 | cut -d' ' -f2)" > etc/lj-world
