#!/bin/bash
# Latency of `nook exec C true` into a running container, against the exec floor (nsenter
# from util-linux: setns into the same user, mount, pid, uts and ipc namespaces, the
# container's root, fork for the pid namespace, exec — nothing else), a whole container start
# for scale (bench/floor.c, the `run` floor), and `podman exec` when podman can run a
# container here. One interleaved run (bench/bench.py); prints medians and ratios.
#   bench/exec.sh [ROUNDS]
# As root it measures as the rig's unprivileged user (tests/rig/setup-root.sh makes it), with
# the store on a journaled ext4 loop filesystem and the run root on tmpfs, as
# bench/run-latency.sh does (see there why). As a normal user it measures on your own HOME
# and XDG_RUNTIME_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-40}
cargo build --release --quiet
W=/tmp/nook-bench-exec
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
CPID=; INIT=; PCID=
cleanup() {
  # The container dies with its init; its owner (`nook run`) then exits.
  [ -n "$INIT" ] && kill -KILL "$INIT" 2>/dev/null || true
  [ -n "$CPID" ] && wait "$CPID" 2>/dev/null || true
  [ -n "$PCID" ] && as podman rm -f -t 0 "$PCID" >/dev/null 2>&1 || true
  if [ "$(id -u)" = 0 ]; then
    umount -l "$R" "$H" 2>/dev/null || true
    rm -f /var/tmp/nook-bench-exec.img
  fi
}
if [ "$(id -u)" = 0 ]; then
  for m in "$R" "$H"; do mountpoint -q "$m" && umount -l "$m"; done
  rm -rf "$H" "$R"
  mkdir -p "$H" "$R"
  truncate -s 4G /var/tmp/nook-bench-exec.img
  mkfs.ext4 -q -F /var/tmp/nook-bench-exec.img
  mount -o loop /var/tmp/nook-bench-exec.img "$H"
  mount -t tmpfs -o "mode=700,uid=$(id -u "$U"),gid=$(id -g "$U")" tmpfs "$R"
  chown "$U:" "$H"
  chmod 700 "$H"
else
  H=$HOME/.cache/nook-bench-exec
  R=${XDG_RUNTIME_DIR:?set XDG_RUNTIME_DIR}/nook-bench-exec
  mkdir -p "$H" "$R"
fi
trap cleanup EXIT

# The image: busybox, as the tests make it.
as sh -c "mkdir -p $H/rootfs/bin $H/rootfs/etc $H/rootfs/proc $H/rootfs/tmp && cp /bin/busybox $H/rootfs/bin/ &&
  for a in \$(/bin/busybox --list); do [ \$a = busybox ] || ln -s busybox $H/rootfs/bin/\$a; done &&
  echo 'root:x:0:0:root:/root:/bin/sh' > $H/rootfs/etc/passwd && tar -C $H/rootfs -cf $H/bb.tar ."
as "$BIN/nook" rm -f bench-c >/dev/null 2>&1 || true
as "$BIN/nook" import "$H/bb.tar" bb >/dev/null

# The running container: a foreground `nook run` in the background.
as "$BIN/nook" run --name bench-c bb sleep 1000000 >/dev/null 2>&1 &
CPID=$!
for _ in $(seq 300); do
  INIT=$(as python3 -c 'import glob, json, sys
for f in glob.glob(sys.argv[1] + "/.local/share/nook/containers/*/state.json"):
    s = json.load(open(f))
    if s.get("status") == "running" and s.get("pid"):
        print(s["pid"])' "$H" 2>/dev/null || true)
  [ -n "$INIT" ] && break
  sleep 0.1
done
[ -n "$INIT" ] || { echo "timed out after 30s waiting for container bench-c to be running" >&2; exit 1; }

uid=$(id -u "$U"); gid=$(id -g "$U")
sub=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subuid)
subg=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subgid)
[ -n "$sub" ] && [ -n "$subg" ] || { echo "$U needs /etc/subuid and /etc/subgid ranges" >&2; exit 1; }
FLOOR="$BIN/floor $H/rootfs 0 $uid 1 1 $sub -- 0 $gid 1 1 $subg -- /bin/true"

cases=("nsenter=nsenter -t $INIT -U -m -p -u -i -r -w /bin/true" "nook-exec=$BIN/nook exec bench-c true"
  "floor-run=$FLOOR" "spawn-true=/bin/true")

# podman exec, if podman is installed and can keep a container running here (crun refuses
# hybrid cgroup hosts; runc is tried too).
if command -v podman >/dev/null 2>&1; then
  mkdir -p "$H/.config/containers"
  printf '[storage]\ndriver = "overlay"\n' > "$H/.config/containers/storage.conf"
  [ "$(id -u)" = 0 ] && chown -R "$U:" "$H/.config"
  if as podman import --change CMD=/bin/sh "$H/bb.tar" localhost/pbb >/dev/null 2>&1; then
    for rt in "" "--runtime runc"; do
      if PCID=$(as podman run -d $rt --network none localhost/pbb sleep 1000000 2>/dev/null) &&
        as podman exec "$PCID" true >/dev/null 2>&1; then
        cases+=("podman-exec=podman exec $PCID true")
        echo "podman: $(podman --version), ${rt:-default runtime}, overlay, --network none"
        break
      fi
      [ -n "$PCID" ] && as podman rm -f -t 0 "$PCID" >/dev/null 2>&1 || true
      PCID=
    done
  fi
  [[ "${cases[*]}" == *podman-exec=* ]] || echo "podman: installed but cannot keep a container running here (run -d + exec failed); skipped"
else
  echo "podman: not installed; skipped"
fi

echo "nook $(as "$BIN/nook" --version | cut -d' ' -f2), driver $(as "$BIN/nook" info --format json | sed -n 's/.*"graphDriverName": "\(.*\)".*/\1/p'), kernel $(uname -r), $(nproc) cpus"
cp bench/bench.py "$BIN/bench.py"
as python3 "$BIN/bench.py" --rounds "$ROUNDS" "${cases[@]}"
echo "(nsenter: the exec floor; floor-run: a whole rootless container start, for scale;"
echo " spawn-true: the harness's own cost to start and reap a process, included in every row)"
