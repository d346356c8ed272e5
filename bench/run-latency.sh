#!/bin/bash
# Start latency of `nook run --rm bb true` against the floor (bench/floor.c: user, mount and
# pid namespaces, the full newuidmap range, pivot_root, exec) and `podman run --rm` when
# podman is installed, in one interleaved run. Prints medians and ratios.
#   bench/run-latency.sh [ROUNDS]
# As root it measures as the rig's unprivileged user (tests/rig/setup-root.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-40}
cargo build --release --quiet
W=/tmp/nook-bench
BIN=$W/bin
mkdir -p "$BIN"
chmod 755 "$W" "$BIN"
cp target/release/nook "$BIN/nook"
gcc -O2 -o "$BIN/floor" bench/floor.c

if [ "$(id -u)" = 0 ]; then
  bash tests/rig/setup-root.sh
  U=nook-test
  as() { runuser -u "$U" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"; }
else
  U=$(id -un)
  as() { env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"; }
fi
H=$W/home; R=$W/run
rm -rf "$H" "$R" 2>/dev/null || true
mkdir -p "$H" "$R"
chmod 700 "$H" "$R"
[ "$(id -u)" = 0 ] && chown "$U:" "$H" "$R"

# The image: busybox, as the tests make it.
as sh -c "mkdir -p $H/rootfs/bin $H/rootfs/etc $H/rootfs/proc $H/rootfs/tmp && cp /bin/busybox $H/rootfs/bin/ &&
  for a in \$(/bin/busybox --list); do [ \$a = busybox ] || ln -s busybox $H/rootfs/bin/\$a; done &&
  echo 'root:x:0:0:root:/root:/bin/sh' > $H/rootfs/etc/passwd && tar -C $H/rootfs -cf $H/bb.tar ."
as "$BIN/nook" import "$H/bb.tar" bb >/dev/null

uid=$(id -u "$U"); gid=$(id -g "$U")
sub=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subuid)
subg=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subgid)
[ -n "$sub" ] && [ -n "$subg" ] || { echo "$U needs /etc/subuid and /etc/subgid ranges" >&2; exit 1; }
FLOOR="$BIN/floor $H/rootfs 0 $uid 1 1 $sub -- 0 $gid 1 1 $subg -- /bin/true"

cases=("floor=$FLOOR" "nook=$BIN/nook run --rm bb true" "nook-netnone=$BIN/nook run --rm --network none bb true")

# podman, if installed and able to run here (crun fails on hybrid cgroup hosts; runc works).
if command -v podman >/dev/null 2>&1; then
  mkdir -p "$H/.config/containers"
  printf '[storage]\ndriver = "overlay"\n' > "$H/.config/containers/storage.conf"
  [ "$(id -u)" = 0 ] && chown -R "$U:" "$H/.config"
  if as podman import --change CMD=/bin/sh "$H/bb.tar" localhost/pbb >/dev/null 2>&1; then
    for rt in "" "--runtime runc"; do
      if as podman run --rm $rt --network none localhost/pbb true >/dev/null 2>&1; then
        cases+=("podman=podman run --rm $rt --network none localhost/pbb true")
        echo "podman: $(podman --version), ${rt:-default runtime}, overlay, --network none"
        break
      fi
    done
  fi
  [[ "${cases[*]}" == *podman=* ]] || echo "podman: installed but cannot run containers here; skipped"
else
  echo "podman: not installed; skipped"
fi

echo "nook $(as "$BIN/nook" --version | cut -d' ' -f2), driver $(as "$BIN/nook" info --format json | sed -n 's/.*"graphDriverName": "\(.*\)".*/\1/p'), kernel $(uname -r), $(nproc) cpus"
extra=()
[ "$(id -u)" = 0 ] && extra=(--user "$U")
python3 bench/bench.py --rounds "$ROUNDS" "${extra[@]}" --env "HOME=$H" --env "XDG_RUNTIME_DIR=$R" "${cases[@]}"
as "$BIN/nook" rmi -f bb >/dev/null || true
