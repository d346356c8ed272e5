#!/bin/bash
# Builds the pull benchmark's image once and caches it as an OCI layout:
#   $CACHE/oci:debian  — layer 1: Debian bookworm minbase (debootstrap), layer 2: python3 and
#                        curl installed on top (chroot apt-get); about 70 MB compressed.
# Run as root (debootstrap, chroot). Needs umoci and debootstrap (installed if missing) and
# Debian's mirror. Prints the layout path.
#   bench/pull-image.sh [CACHE]   (default /tmp/nook-bench-pull)
set -euo pipefail
CACHE=${1:-/tmp/nook-bench-pull}
O=$CACHE/oci
MIRROR=${MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "pull-image.sh: run as root (debootstrap, chroot)" >&2; exit 1; }
if [ -f "$CACHE/done" ]; then echo "$O"; exit 0; fi
need=()
for p in umoci debootstrap; do command -v "$p" >/dev/null || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mkdir -p "$CACHE"
R=$CACHE/rootfs
B=$CACHE/bundle
if [ ! -x "$R/bin/bash" ]; then
  rm -rf "$R"
  echo "pull-image.sh: debootstrap --variant=minbase bookworm (about a minute)" >&2
  debootstrap --variant=minbase bookworm "$R" "$MIRROR" >/dev/null
fi
rm -rf "$O" "$B"
umoci init --layout "$O"
umoci new --image "$O:debian"
umoci unpack --image "$O:debian" "$B"
cp -a "$R/." "$B/rootfs/"
rm -rf "$B"/rootfs/var/cache/apt/archives/*.deb "$B"/rootfs/var/lib/apt/lists/* "$B"/rootfs/var/cache/apt/*.bin
umoci repack --image "$O:debian" "$B"
rm -rf "$B"
umoci config --image "$O:debian" --config.cmd /bin/bash \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --os linux --architecture amd64
# Layer 2: packages installed in a chroot of the unpacked image.
umoci unpack --image "$O:debian" "$B"
C=$B/rootfs
printf '#!/bin/sh\nexit 101\n' > "$C/usr/sbin/policy-rc.d"; chmod +x "$C/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$C/etc/resolv.conf"
echo "pull-image.sh: apt-get install python3 curl in the image (about a minute)" >&2
chroot "$C" apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive chroot "$C" apt-get install -y -qq --no-install-recommends python3 curl >/dev/null
chroot "$C" apt-get clean
rm -rf "$C"/var/lib/apt/lists/* "$C/usr/sbin/policy-rc.d" "$C"/var/cache/apt/*.bin
: > "$C/etc/resolv.conf"
umoci repack --image "$O:debian" "$B"
rm -rf "$B"
umoci gc --layout "$O"
chmod -R a+rX "$CACHE/oci"
touch "$CACHE/done"
echo "$O"
