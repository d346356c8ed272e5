#!/bin/bash
# Detached containers: `run -d` until the command runs, `ps` with 100 containers, and the
# memory of the monitor each detached container has (PSS and RSS from /proc/PID/smaps_rollup),
# against podman where podman can run containers here. Interleaved rounds, medians, ratios.
#   bench/monitor.sh [ROUNDS]
# As root it measures as the rig's unprivileged user with the store on a journaled ext4 loop
# filesystem and the run root on tmpfs (bench/lib.sh says why).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROUNDS=${1:-30}
N=100
bench_init nook-bench-mon
remove_containers() {
  as "$BIN/nook" rm -af >/dev/null 2>&1 || true
  as podman rm -af -t 0 >/dev/null 2>&1 || true
}
bench_on_exit remove_containers

bench_busybox_image
bench_versions

# podman, if it can run a detached container here.
PODMAN=""
podman_probe() { as podman run -d $1 --network none localhost/pbb sleep 1 >/dev/null 2>&1; }
if bench_podman podman_probe "cannot run containers here (crun: hybrid cgroups)"; then
  PODMAN="podman run -d $PODMAN_RT --network none localhost/pbb sleep 1000"
fi
as podman rm -af -t 0 >/dev/null 2>&1 || true

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
