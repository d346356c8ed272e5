#!/bin/bash
# Detached containers: `run -d` until the command runs, `ps` with 100 containers, and the
# memory of the monitor each detached container has (PSS and RSS from /proc/PID/smaps_rollup),
# against podman where podman can run containers here. Interleaved rounds, medians, ratios.
#   bench/monitor.sh [ROUNDS]
# As root it measures as the rig's unprivileged user with the store on a journaled ext4 loop
# filesystem and the run root on tmpfs (see bench/run-latency.sh for why).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-30}
N=100
cargo build --release --quiet
W=/tmp/nook-bench-mon
BIN=$W/bin
mkdir -p "$BIN"
chmod 755 "$W" "$BIN"
cp target/release/nook "$BIN/nook"

H=$W/home; R=$W/run
if [ "$(id -u)" = 0 ]; then
  bash tests/rig/setup-root.sh
  U=nook-test
  as() { runuser -u "$U" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"; }
  for m in "$R" "$H"; do mountpoint -q "$m" && umount -l "$m"; done
  rm -rf "$H" "$R"
  mkdir -p "$H" "$R"
  truncate -s 4G /var/tmp/nook-bench-mon.img
  mkfs.ext4 -q -F /var/tmp/nook-bench-mon.img
  mount -o loop /var/tmp/nook-bench-mon.img "$H"
  mount -t tmpfs -o "mode=700,uid=$(id -u "$U"),gid=$(id -g "$U")" tmpfs "$R"
  chown "$U:" "$H"
  chmod 700 "$H"
else
  U=$(id -un)
  as() { env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"; }
  H=$HOME/.cache/nook-bench-mon
  R=${XDG_RUNTIME_DIR:?set XDG_RUNTIME_DIR}/nook-bench-mon
  mkdir -p "$H" "$R"
fi
cleanup() {
  as "$BIN/nook" rm -af >/dev/null 2>&1 || true
  as podman rm -af -t 0 >/dev/null 2>&1 || true
  # podman's pause process (catatonit) outlives its commands.
  [ -f "$R/libpod/tmp/pause.pid" ] && kill "$(cat "$R/libpod/tmp/pause.pid")" 2>/dev/null || true
  if [ "$(id -u)" = 0 ]; then
    umount -l "$R" "$H" 2>/dev/null || true
    rm -f /var/tmp/nook-bench-mon.img
  fi
}
trap cleanup EXIT

as sh -c "mkdir -p $H/rootfs/bin $H/rootfs/etc $H/rootfs/proc $H/rootfs/tmp && cp /bin/busybox $H/rootfs/bin/ &&
  for a in \$(/bin/busybox --list); do [ \$a = busybox ] || ln -s busybox $H/rootfs/bin/\$a; done &&
  echo 'root:x:0:0:root:/root:/bin/sh' > $H/rootfs/etc/passwd && tar -C $H/rootfs -cf $H/bb.tar ."
as "$BIN/nook" import "$H/bb.tar" bb >/dev/null
echo "nook $(as "$BIN/nook" --version | cut -d' ' -f2), driver $(as "$BIN/nook" info --format json | sed -n 's/.*"graphDriverName": "\(.*\)".*/\1/p'), kernel $(uname -r), $(nproc) cpus"

# podman, if it can run a detached container here (crun fails on hybrid cgroup hosts).
PODMAN=""
if command -v podman >/dev/null 2>&1; then
  mkdir -p "$H/.config/containers"
  printf '[storage]\ndriver = "overlay"\n' > "$H/.config/containers/storage.conf"
  [ "$(id -u)" = 0 ] && chown -R "$U:" "$H/.config"
  if as podman import --change CMD=/bin/sh "$H/bb.tar" localhost/pbb >/dev/null 2>&1; then
    for rt in "" "--runtime runc"; do
      if as podman run -d $rt --network none localhost/pbb sleep 1 >/dev/null 2>&1; then
        PODMAN="podman run -d $rt --network none localhost/pbb sleep 1000"
        echo "podman: $(podman --version), ${rt:-default runtime}, overlay, --network none"
        break
      fi
    done
    as podman rm -af -t 0 >/dev/null 2>&1 || true
  fi
  [ -n "$PODMAN" ] || echo "podman: installed but cannot run containers here (crun: hybrid cgroups); podman rows skipped"
else
  echo "podman: not installed; podman rows skipped"
fi
cp bench/bench.py "$BIN/bench.py"

echo
echo "== run -d until the command runs (each run starts from no containers) =="
cases=("nook-run-d=$BIN/nook run -d bb sleep 1000" "nook-run-fg=$BIN/nook run --rm bb true")
preps=(--prep "nook-run-d=$BIN/nook rm -af")
if [ -n "$PODMAN" ]; then
  cases+=("podman-run-d=$PODMAN")
  preps+=(--prep "podman-run-d=podman rm -af -t 0")
fi
as python3 "$BIN/bench.py" --rounds "$ROUNDS" "${preps[@]}" "${cases[@]}"
as "$BIN/nook" rm -af >/dev/null

echo
echo "== ps with $N detached containers =="
for i in $(seq $N); do as "$BIN/nook" run -d bb sleep 100000 >/dev/null; done
running=$(as "$BIN/nook" ps -q | wc -l)
echo "running: $running"
cases=("nook-ps=$BIN/nook ps" "nook-ps-a=$BIN/nook ps -a" "nook-ps-json=$BIN/nook ps -a --format json")
as python3 "$BIN/bench.py" --rounds "$ROUNDS" "${cases[@]}"

echo
echo "== monitor memory, $N idle detached containers (kB) =="
pids=$(pgrep -u "$U" -f "^nook __monitor .*$H" || true)
python3 - $pids <<'EOF'
import statistics, sys
rows = []
for pid in sys.argv[1:]:
    d = {}
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                d[k] = int(v.split()[0])
    except OSError:
        continue
    rows.append(d)
print(f"monitors: {len(rows)}")
for k in ["Pss", "Rss", "Pss_Anon", "Pss_File", "Private_Dirty"]:
    v = [r.get(k, 0) for r in rows]
    if v:
        print(f"{k:<14} median {statistics.median(v):7.0f}  min {min(v):6d}  max {max(v):6d}")
EOF
if [ -n "$PODMAN" ]; then
  as "$BIN/nook" rm -af >/dev/null
  for i in $(seq 20); do as $PODMAN >/dev/null; done
  echo "conmon (20 containers):"
  for p in $(pgrep -u "$U" conmon); do grep -E '^(Pss|Rss):' /proc/$p/smaps_rollup | tr -s ' ' | tr '\n' ' '; echo; done | sort | uniq -c | head -3
fi
