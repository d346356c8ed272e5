#!/bin/bash
# Latency of `nook exec C true` into a running container, against the exec floor (nsenter
# from util-linux: setns into the same user, mount, pid, uts and ipc namespaces, the
# container's root, fork for the pid namespace, exec — nothing else), a whole container start
# for scale (bench/floor.c, the `run` floor), and `podman exec` when podman can run a
# container here. One interleaved run (bench/bench.py); prints medians and ratios.
#   bench/exec.sh [ROUNDS]
# As root it measures as the rig's unprivileged user, with the store on a journaled ext4 loop
# filesystem and the run root on tmpfs (bench/lib.sh says why); as a normal user it measures on
# your own HOME and XDG_RUNTIME_DIR.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROUNDS=${1:-40}
bench_init nook-bench-exec
CPID=; INIT=; PCID=
stop_containers() {
  # The container dies with its init; its owner (`nook run`) then exits.
  [ -n "$INIT" ] && kill -KILL "$INIT" 2>/dev/null || true
  [ -n "$CPID" ] && wait "$CPID" 2>/dev/null || true
  [ -n "$PCID" ] && as podman rm -f -t 0 "$PCID" >/dev/null 2>&1 || true
}
bench_on_exit stop_containers

as "$BIN/nook" rm -f bench-c >/dev/null 2>&1 || true
bench_busybox_image
bench_floor

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

cases=("nsenter=nsenter -t $INIT -U -m -p -u -i -r -w /bin/true" "nook-exec=$BIN/nook exec bench-c true"
  "floor-run=$FLOOR" "spawn-true=/bin/true")

# podman exec, if podman can keep a container running here.
podman_probe() {
  PCID=$(as podman run -d $1 --network none localhost/pbb sleep 1000000 2>/dev/null) &&
    as podman exec "$PCID" true >/dev/null 2>&1 && return 0
  [ -n "$PCID" ] && as podman rm -f -t 0 "$PCID" >/dev/null 2>&1 || true
  PCID=
  return 1
}
if bench_podman podman_probe "cannot keep a container running here (run -d + exec failed)"; then
  cases+=("podman-exec=podman exec $PCID true")
fi

bench_versions
as python3 "$BIN/bench.py" --rounds "$ROUNDS" "${cases[@]}"
echo "(nsenter: the exec floor; floor-run: a whole rootless container start, for scale;"
echo " spawn-true: the harness's own cost to start and reap a process, included in every row)"
