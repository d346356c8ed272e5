# Shared setup for the benchmark scripts in bench/. Source it, do not run it:
#   set -euo pipefail
#   . "$(dirname "$0")/lib.sh"        # cds to the repository root
#   bench_init NAME [IMG_SIZE [WORK_DIR]]
# It provides:
#   bench_init NAME [SIZE [DIR]]  build nook, set W (work dir, default /tmp/NAME), BIN (nook and
#                                 bench.py), U, H, R and `as`, and register the cleanup
#   as CMD...                     run CMD as the measured user U with only PATH, HOME=$H and
#                                 XDG_RUNTIME_DIR=$R in its environment
#   bench_on_exit CMD             more cleanup, run at exit (last registered first), before the
#                                 podman pause process is stopped and the stores are unmounted
#   bench_busybox_image           $H/rootfs and $H/bb.tar (busybox, as the tests make it), imported
#                                 as `bb`
#   bench_floor                   $BIN/floor (bench/floor.c) and FLOOR, its command line
#   bench_podman PROBE [WHY]      podman, where it can run containers here (sets PODMAN_RT)
#   bench_podman_conf             the user's podman storage.conf (overlay)
#   bench_versions                prints nook's version and driver, the kernel and the cpus
#
# As root, a script measures as the rig's unprivileged user (tests/rig/setup-root.sh makes it)
# with its store ($H) on a fresh journaled ext4 loop filesystem (/var/tmp/NAME.img) and its run
# root ($R) on a tmpfs it owns, as a logged-in user has (/run/user/<uid> is tmpfs). Some VMs'
# root filesystem (this one's) is ext4 *without* a journal, where every file creation scans the
# inodes freed in the last 30 s (ext4's recently_deleted()), so any tool that creates and
# deletes files slows down the more it runs; a journaled filesystem has no such scan.
# As a normal user, a script measures on $HOME/.cache/NAME and $XDG_RUNTIME_DIR/NAME.

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_EXIT=()
BENCH_IMG=

as() {
  if [ "$EUID" = 0 ]; then
    runuser -u "$U" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"
  else
    env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"
  fi
}

bench_on_exit() { BENCH_EXIT+=("$1"); }

_bench_exit() {
  local i
  for ((i = ${#BENCH_EXIT[@]} - 1; i >= 0; i--)); do eval "${BENCH_EXIT[i]}" || true; done
  # rootless podman's pause process (catatonit) for this user environment outlives its commands.
  if [ -f "$R/libpod/tmp/pause.pid" ]; then kill "$(cat "$R/libpod/tmp/pause.pid")" 2>/dev/null || true; fi
  if [ -n "$BENCH_IMG" ]; then
    umount -l "$R" 2>/dev/null || true
    umount -l "$H" 2>/dev/null || true
    rm -f "$BENCH_IMG"
  fi
}

bench_init() {
  local name=$1 size=${2:-4G} m
  W=${3:-/tmp/$name}
  BIN=$W/bin
  cargo build --release --quiet
  mkdir -p "$BIN"
  chmod 755 "$W" "$BIN"
  cp target/release/nook "$BIN/nook"
  cp bench/bench.py "$BIN/bench.py"
  if [ "$EUID" = 0 ]; then
    bash tests/rig/setup-root.sh
    U=nook-test
    H=$W/home; R=$W/run
    for m in "$R" "$H"; do if mountpoint -q "$m"; then umount -l "$m"; fi; done
    rm -rf "$H" "$R"
    mkdir -p "$H" "$R"
    BENCH_IMG=/var/tmp/$name.img
    trap _bench_exit EXIT
    truncate -s "$size" "$BENCH_IMG"
    mkfs.ext4 -q -F "$BENCH_IMG"
    mount -o loop "$BENCH_IMG" "$H"
    mount -t tmpfs -o "mode=700,uid=$(id -u "$U"),gid=$(id -g "$U")" tmpfs "$R"
    chown "$U:" "$H"
    chmod 700 "$H"
  else
    U=$(id -un)
    H=$HOME/.cache/$name
    R=${XDG_RUNTIME_DIR:?set XDG_RUNTIME_DIR}/$name
    mkdir -p "$H" "$R"
    trap _bench_exit EXIT
  fi
}

# The image: busybox, as the tests make it, with its files owned by root as real images' are.
bench_busybox_image() {
  as sh -c "rm -rf $H/rootfs && mkdir -p $H/rootfs/bin $H/rootfs/etc $H/rootfs/proc $H/rootfs/tmp &&
    cp /bin/busybox $H/rootfs/bin/ &&
    for a in \$(/bin/busybox --list); do [ \$a = busybox ] || ln -s busybox $H/rootfs/bin/\$a; done &&
    echo 'root:x:0:0:root:/root:/bin/sh' > $H/rootfs/etc/passwd &&
    tar -C $H/rootfs --owner=0 --group=0 --numeric-owner -cf $H/bb.tar ."
  as "$BIN/nook" import "$H/bb.tar" bb >/dev/null
}

# The floor of a rootless container start (bench/floor.c: user, mount and pid namespaces, the
# user's full newuidmap range, pivot_root into $H/rootfs, exec /bin/true). Needs
# bench_busybox_image first.
bench_floor() {
  local uid gid sub subg
  gcc -O2 -o "$BIN/floor" bench/floor.c
  uid=$(id -u "$U"); gid=$(id -g "$U")
  sub=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subuid)
  subg=$(awk -F: -v u="$U" -v i="$uid" '$1==u||$1==i {print $2" "$3; exit}' /etc/subgid)
  [ -n "$sub" ] && [ -n "$subg" ] || { echo "$U needs /etc/subuid and /etc/subgid ranges" >&2; exit 1; }
  FLOOR="$BIN/floor $H/rootfs 0 $uid 1 1 $sub -- 0 $gid 1 1 $subg -- /bin/true"
}

bench_podman_conf() {
  mkdir -p "$H/.config/containers"
  printf '[storage]\ndriver = "overlay"\n' > "$H/.config/containers/storage.conf"
  if [ "$EUID" = 0 ]; then chown -R "$U:" "$H/.config"; fi
}

# bench_podman PROBE [WHY]: when podman is installed, imports $H/bb.tar as localhost/pbb and
# calls `PROBE RT` with RT "" (the default runtime), then "--runtime runc" (crun fails on hybrid
# cgroup hosts; runc works), until one succeeds. Then sets PODMAN_RT=RT, prints podman's version
# and runtime, and returns 0; otherwise prints why podman is skipped (WHY: what it cannot do
# here) and returns 1.
bench_podman() {
  local probe=$1 why=${2:-cannot run containers here} rt
  PODMAN_RT=
  if ! command -v podman >/dev/null 2>&1; then
    echo "podman: not installed; skipped"
    return 1
  fi
  bench_podman_conf
  if as podman import --change CMD=/bin/sh "$H/bb.tar" localhost/pbb >/dev/null 2>&1; then
    for rt in "" "--runtime runc"; do
      if "$probe" "$rt"; then
        PODMAN_RT=$rt
        echo "podman: $(podman --version), ${rt:-default runtime}, overlay, --network none"
        return 0
      fi
    done
  fi
  echo "podman: installed but $why; skipped"
  return 1
}

bench_versions() {
  echo "nook $(as "$BIN/nook" --version | cut -d' ' -f2), driver $(as "$BIN/nook" info --format json | sed -n 's/.*"graphDriverName": "\(.*\)".*/\1/p'), kernel $(uname -r), $(nproc) cpus"
}
