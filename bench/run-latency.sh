#!/bin/bash
# Start latency of `nook run --rm bb true` against the floor (bench/floor.c: user, mount and
# pid namespaces, the full newuidmap range, pivot_root, exec) and `podman run --rm` when
# podman is installed, in one interleaved run. Prints medians and ratios.
#   bench/run-latency.sh [ROUNDS]
# As root it measures as the rig's unprivileged user, with the store on a journaled ext4 loop
# filesystem and the run root on tmpfs (bench/lib.sh says why); as a normal user it measures on
# your own HOME and XDG_RUNTIME_DIR.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROUNDS=${1:-40}
bench_init nook-bench
bench_busybox_image
bench_floor

cases=("floor=$FLOOR" "nook=$BIN/nook run --rm bb true" "nook-netnone=$BIN/nook run --rm --network none bb true" "spawn-true=/bin/true")

podman_probe() { as podman run --rm $1 --network none localhost/pbb true >/dev/null 2>&1; }
if bench_podman podman_probe; then
  cases+=("podman=podman run --rm $PODMAN_RT --network none localhost/pbb true")
fi

bench_versions
# The driver runs as the measured user, so it spawns each case with vfork (no uid switch).
as python3 "$BIN/bench.py" --rounds "$ROUNDS" "${cases[@]}"
echo "(spawn-true: the harness's own cost to start and reap a process, included in every row)"
as "$BIN/nook" rmi -f bb >/dev/null || true
