#!/bin/bash
# Pull time of a large two-layer image (Debian bookworm minbase + python3/curl, about 70 MB
# compressed; bench/pull-image.sh builds it once) from a loopback registry, interleaved:
#   skopeo  — `skopeo copy` of the image to an OCI directory: the transfer floor (no unpack)
#   nook    — `nook pull` into an empty store (download, verify, decompress, unpack)
#   podman  — `podman pull` into an empty store (overlay), when podman is installed
# Every run starts from the same state: an untimed --prep step points the destination at a
# fresh, empty directory. The stores live on a journaled ext4 loop filesystem, as on a normal
# machine (bench/lib.sh says why): on this VM's root ext4, which has no journal, repeated pulls
# get two to five times slower, nook's and podman's alike. Prints medians and ratios.
#   bench/pull.sh [ROUNDS]      (run as root: it measures as the rig's unprivileged user)
#   SKIP_PODMAN=1 leaves podman out.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROUNDS=${1:-10}
[ "$(id -u)" = 0 ] || { echo "pull.sh: run as root (it builds the image and measures as nook-test)" >&2; exit 1; }
# docker-registry and skopeo come with the rig (which keeps their services from starting).
bash tests/rig/setup-root.sh
LAYOUT=$(bash bench/pull-image.sh)
bench_init nook-bench-pull 24G /tmp/nook-bench-pull/run
rm -rf "$W/registry"
mkdir -p "$W/registry"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat > "$W/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry/data
http:
  addr: $REG
EOF
docker-registry serve "$W/registry/config.yml" > "$W/registry/log" 2>&1 &
RPID=$!
bench_on_exit 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null'
python3 - "$REG" <<'PY' || { echo "pull.sh: the registry did not answer on $REG within 10 s" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen("http://%s/v2/" % sys.argv[1], timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.05)
sys.exit(1)
PY
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:debian" "docker://$REG/bench/debian:latest"
IMG=$REG/bench/debian:latest
SIZE=$(skopeo inspect --tls-verify=false --raw "docker://$IMG" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(round(sum(l["size"] for l in m["layers"])/1e6,1), "MB compressed in", len(m["layers"]), "layers")')

bench_podman_conf
printf 'unqualified-search-registries = []\n' > "$H/.config/containers/registries.conf"
chown "$U:" "$H/.config/containers/registries.conf"

# "fresh NAME": a new empty directory, linked as $H/NAME (the command under test uses the link).
printf '#!/bin/sh\nd=%s/stores/$1-$(date +%%s%%N)\nmkdir -p "$d" && ln -sfn "$d" "%s/$1"\n' "$H" "$H" > "$BIN/fresh"
chmod 755 "$BIN/fresh"
mkdir -p "$H/stores"
chown "$U:" "$H/stores"
cases=(
  "skopeo=skopeo copy -q --src-tls-verify=false docker://$IMG oci:$H/skopeo/out:latest"
  "nook=$BIN/nook --root $H/nook pull -q $IMG"
)
preps=(
  "skopeo=$BIN/fresh skopeo"
  "nook=$BIN/fresh nook"
)
# NOOK_ALT=/path/to/another/nook adds it as a case (to compare two builds).
if [ -n "${NOOK_ALT:-}" ]; then
  cp "$NOOK_ALT" "$BIN/nook-alt"
  chmod 755 "$BIN/nook-alt"
  cases+=("nook-alt=$BIN/nook-alt --root $H/nookalt pull -q $IMG")
  preps+=("nook-alt=$BIN/fresh nookalt")
fi
if [ -z "${SKIP_PODMAN:-}" ] && command -v podman >/dev/null 2>&1 && as podman pull -q --tls-verify=false "$IMG" >/dev/null 2>&1; then
  as podman rmi -a -f >/dev/null 2>&1 || true
  cases+=("podman=podman --root $H/podman/root --runroot $H/podman/run pull -q --tls-verify=false $IMG")
  preps+=("podman=$BIN/fresh podman")
  echo "podman: $(podman --version), $(as podman info --format '{{.Store.GraphDriverName}}') storage"
else
  echo "podman: not installed or cannot pull here; skipped"
fi
echo "image: $SIZE; nook $(as "$BIN/nook" --version | cut -d' ' -f2), kernel $(uname -r), $(nproc) cpus"
args=()
for p in "${preps[@]}"; do args+=(--prep "$p"); done
python3 bench/bench.py --rounds "$ROUNDS" --warmup 1 --user "$U" --env "HOME=$H" --env "XDG_RUNTIME_DIR=$R" \
  "${args[@]}" "${cases[@]}"
rm -rf "$H/stores"
