#!/bin/bash
# Prepares a Debian machine for nook's integration tests. Run as root; idempotent and safe to
# run concurrently (flock). The tests call it themselves when they start as root.
#
# - installs the Debian packages the tests use (only those missing)
# - creates `nook-test` (with a 65536-id /etc/subuid and /etc/subgid range) and `nook-nosub`
#   (no subordinate ids) for the single-id fallback
# - makes /dev/fuse and /dev/net/tun usable by normal users (0666, as udev does on usual distros)
set -euo pipefail

PACKAGES=(uidmap busybox-static fuse-overlayfs fuse3 slirp4netns util-linux procps ca-certificates
  docker-registry skopeo apache2-utils openssl podman docker.io)
TEST_USER=${NOOK_TEST_USER:-nook-test}
NOSUB_USER=${NOOK_NOSUB_USER:-nook-nosub}

[ "$(id -u)" = 0 ] || { echo "setup-root.sh: must run as root" >&2; exit 1; }

exec 9>/var/lock/nook-test-rig.lock
flock -w 600 9 || { echo "setup-root.sh: timed out after 600s waiting for another rig setup" >&2; exit 1; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-root.sh: installing ${missing[*]}" >&2
  apt-get update -qq
  # docker-registry's package would start a registry on :5000 (all interfaces) through its
  # init script; the tests start their own on 127.0.0.1, so no service may start here.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    # Removed even when the install fails: left behind, it would keep every service from starting.
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# The first free 65536-aligned range above everything already in the files.
next_free() {
  awk -F: 'BEGIN{m=100000} NF>=3 && $2+$3>m {m=$2+$3} END{print int((m+65535)/65536)*65536}' /etc/subuid /etc/subgid
}

touch /etc/subuid /etc/subgid
if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$TEST_USER"
fi
# Exactly one range of 65536 ids (useradd may have added its own already).
for f in /etc/subuid /etc/subgid; do
  n=$(grep -c "^$TEST_USER:" "$f" || true)
  if [ "$n" != 1 ] || ! grep -q "^$TEST_USER:[0-9]*:65536$" "$f"; then
    sed -i "/^$TEST_USER:/d" "$f"
  fi
done
if ! grep -q "^$TEST_USER:" /etc/subuid || ! grep -q "^$TEST_USER:" /etc/subgid; then
  sed -i "/^$TEST_USER:/d" /etc/subuid /etc/subgid
  start=$(next_free)
  echo "$TEST_USER:$start:65536" >> /etc/subuid
  echo "$TEST_USER:$start:65536" >> /etc/subgid
fi

if ! id "$NOSUB_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$NOSUB_USER"
fi
sed -i "/^$NOSUB_USER:/d" /etc/subuid /etc/subgid

# Usual distros make these 0666 through udev; some machines (this CI's) leave them 0600.
for d in /dev/fuse /dev/net/tun; do
  [ -e "$d" ] && chmod 0666 "$d"
done
exit 0
