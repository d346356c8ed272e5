#!/bin/sh
# Builds nook, makes a busybox image from Debian's busybox-static (no registry, no network
# beyond the crate registry for the build) and runs a container from it.
#   sh contrib/quickstart.sh
set -eu
cd "$(dirname "$0")/.."

need=""
# A static busybox runs in an image without a libc (ldd fails on static binaries).
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need="$need busybox-static"; fi
command -v newuidmap >/dev/null 2>&1 || need="$need uidmap"
if [ -n "$need" ]; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y --no-install-recommends $need
  elif command -v sudo >/dev/null 2>&1; then sudo apt-get install -y --no-install-recommends $need
  else echo "please install:$need (apt-get install$need)" >&2; exit 1
  fi
fi

cargo build --release
nook=./target/release/nook

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/root"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
chmod 1777 "$work/rootfs/tmp"
tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -cf "$work/busybox.tar" .

$nook import --change 'CMD=/bin/sh' "$work/busybox.tar" bb
$nook run --rm bb sh -c 'echo "hello from a nook container: uid $(id -u), pid $$, $(cat /proc/self/uid_map | wc -l) uid map line(s)"'
echo "try: $nook run --rm -it bb"
