#!/bin/bash
# Start latency of `nook run --rm bb true` against the floor (bench/floor.c: user, mount and
# pid namespaces, the full newuidmap range, pivot_root, exec) and `podman run --rm` when
# podman is installed, in one interleaved run. Prints medians and ratios.
#   bench/run-latency.sh [ROUNDS]
# As root it measures as the rig's unprivileged user (tests/rig/setup-root.sh makes it), with
# the store on a journaled ext4 loop filesystem and the run root on tmpfs, as a logged-in
# user has (/run/user/<uid> is tmpfs). Some VMs' root filesystem is ext4 *without* a journal,
# where ext4 scans past every inode freed in the last 30 s on each file creation, so any tool
# that creates files slows down the more it runs; a journaled filesystem has no such scan.
# As a normal user it measures on your own HOME and XDG_RUNTIME_DIR.
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
if [ "$(id -u)" = 0 ]; then
  for m in "$R" "$H"; do mountpoint -q "$m" && umount -l "$m"; done
  rm -rf "$H" "$R"
  mkdir -p "$H" "$R"
  truncate -s 4G /var/tmp/nook-bench.img
  mkfs.ext4 -q -F /var/tmp/nook-bench.img
  mount -o loop /var/tmp/nook-bench.img "$H"
  mount -t tmpfs -o "mode=700,uid=$(id -u "$U"),gid=$(id -g "$U")" tmpfs "$R"
  chown "$U:" "$H"
  chmod 700 "$H"
  trap 'umount -l "$R" "$H" 2>/dev/null || true; rm -f /var/tmp/nook-bench.img' EXIT
else
  H=$HOME/.cache/nook-bench
  R=${XDG_RUNTIME_DIR:?set XDG_RUNTIME_DIR}/nook-bench
  mkdir -p "$H" "$R"
fi

# The image: busybox, as the tests make it.
as sh -c "mkdir -p $H/rootfs/bin $H/rootfs/etc $H/rootfs/proc $H/rootfs/tmp && cp /bin/busybox $H/rootfs/bin/ &&
  for a in \$(/bin/busybox --list); do [ \$a = busybox ] || ln -s busybox $H/rootfs/bin/\$a; done &&
  echo 'root:x:0:0:root:/root:/bin/sh' > $H/rootfs/etc/passwd && tar -C $H/rootfs --owner=0 --group=0 --numeric-owner -cf $H/bb.tar ."
as "$BIN/nook" import "$H/bb.tar" bb >/dev/null

uid=$(id -u "$U"); gid=$(id -g "$U")
sub=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subuid)
subg=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subgid)
[ -n "$sub" ] && [ -n "$subg" ] || { echo "$U needs /etc/subuid and /etc/subgid ranges" >&2; exit 1; }
FLOOR="$BIN/floor $H/rootfs 0 $uid 1 1 $sub -- 0 $gid 1 1 $subg -- /bin/true"

cases=("floor=$FLOOR" "nook=$BIN/nook run --rm bb true" "nook-netnone=$BIN/nook run --rm --network none bb true" "spawn-true=/bin/true")

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
# The driver runs as the measured user, so it spawns each case with vfork (no uid switch).
cp bench/bench.py "$BIN/bench.py"
as python3 "$BIN/bench.py" --rounds "$ROUNDS" "${cases[@]}"
echo "(spawn-true: the harness's own cost to start and reap a process, included in every row)"
as "$BIN/nook" rmi -f bb >/dev/null || true
