#!/bin/bash
# Pull time of a large two-layer image (Debian bookworm minbase + python3/curl, about 70 MB
# compressed; bench/pull-image.sh builds it once) from a loopback registry, interleaved:
#   skopeo  — `skopeo copy` of the image to an OCI directory: the transfer floor (no unpack)
#   nook    — `nook pull` into an empty store (download, verify, decompress, unpack)
#   podman  — `podman pull` into an empty store (overlay), when podman is installed
# Every run starts from the same state: an untimed --prep step points the destination at a
# fresh, empty directory. The stores live on a journaled ext4 loop filesystem, as on a normal
# machine: this VM's root ext4 has no journal, and there every file creation scans the inodes
# deleted in the last 30 s (ext4's recently_deleted()), so repeated pulls get two to five
# times slower, nook's and podman's alike. Prints medians and ratios.
#   bench/pull.sh [ROUNDS]      (run as root: it measures as the rig's unprivileged user)
#   SKIP_PODMAN=1 leaves podman out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
[ "$(id -u)" = 0 ] || { echo "pull.sh: run as root (it builds the image and measures as nook-test)" >&2; exit 1; }
for p in docker-registry skopeo; do
  command -v "$p" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
LAYOUT=$(bash bench/pull-image.sh)
cargo build --release --quiet
bash tests/rig/setup-root.sh
U=nook-test
W=/tmp/nook-bench-pull/run
mountpoint -q "$W/home" && umount -l "$W/home"
rm -rf "$W"
mkdir -p "$W/bin" "$W/registry"
chmod 755 "$W" "$W/bin"
cp target/release/nook "$W/bin/nook"

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
cleanup() {
  kill "$RPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true
  # rootless podman's pause process for this benchmark's user environment
  [ -f "$W/run/libpod/tmp/pause.pid" ] && kill "$(cat "$W/run/libpod/tmp/pause.pid")" 2>/dev/null || true
  mountpoint -q "$W/home" && umount -l "$W/home"
  rm -f /var/tmp/nook-bench-pull.img
}
trap cleanup EXIT
for _ in $(seq 200); do curl -fs "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:debian" "docker://$REG/bench/debian:latest"
IMG=$REG/bench/debian:latest
SIZE=$(skopeo inspect --tls-verify=false --raw "docker://$IMG" | python3 -c 'import json,sys; m=json.load(sys.stdin); print(round(sum(l["size"] for l in m["layers"])/1e6,1), "MB compressed in", len(m["layers"]), "layers")')

H=$W/home; R=$W/run
mkdir -p "$H" "$R"
truncate -s 8G /var/tmp/nook-bench-pull.img
mkfs.ext4 -q -F /var/tmp/nook-bench-pull.img
mount -o loop /var/tmp/nook-bench-pull.img "$H"
mkdir -p "$H/.config/containers"
chmod 700 "$H" "$R"
printf '[storage]\ndriver = "overlay"\n' > "$H/.config/containers/storage.conf"
printf 'unqualified-search-registries = []\n' > "$H/.config/containers/registries.conf"
chown -R "$U:" "$H" "$R" "$W/bin"
as() { runuser -u "$U" -- env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$H" XDG_RUNTIME_DIR="$R" "$@"; }

# "fresh NAME": a new empty directory, linked as $H/NAME (the command under test uses the link).
printf '#!/bin/sh\nd=%s/stores/$1-$(date +%%s%%N)\nmkdir -p "$d" && ln -sfn "$d" "%s/$1"\n' "$H" "$H" > "$W/bin/fresh"
chmod 755 "$W/bin/fresh"
mkdir -p "$H/stores"
chown "$U:" "$H/stores"
cases=(
  "skopeo=skopeo copy -q --src-tls-verify=false docker://$IMG oci:$H/skopeo/out:latest"
  "nook=$W/bin/nook --root $H/nook pull -q $IMG"
)
preps=(
  "skopeo=$W/bin/fresh skopeo"
  "nook=$W/bin/fresh nook"
)
# NOOK_ALT=/path/to/another/nook adds it as a case (to compare two builds).
if [ -n "${NOOK_ALT:-}" ]; then
  cp "$NOOK_ALT" "$W/bin/nook-alt"
  chmod 755 "$W/bin/nook-alt"
  cases+=("nook-alt=$W/bin/nook-alt --root $H/nookalt pull -q $IMG")
  preps+=("nook-alt=$W/bin/fresh nookalt")
fi
if [ -z "${SKIP_PODMAN:-}" ] && command -v podman >/dev/null 2>&1 && as podman pull -q --tls-verify=false "$IMG" >/dev/null 2>&1; then
  as podman rmi -a -f >/dev/null 2>&1 || true
  cases+=("podman=podman --root $H/podman/root --runroot $H/podman/run pull -q --tls-verify=false $IMG")
  preps+=("podman=$W/bin/fresh podman")
  echo "podman: $(podman --version), $(as podman info --format '{{.Store.GraphDriverName}}') storage"
else
  echo "podman: not installed or cannot pull here; skipped"
fi
echo "image: $SIZE; nook $(as "$W/bin/nook" --version | cut -d' ' -f2), kernel $(uname -r), $(nproc) cpus"
args=()
for p in "${preps[@]}"; do args+=(--prep "$p"); done
python3 bench/bench.py --rounds "$ROUNDS" --warmup 1 --user "$U" --env "HOME=$H" --env "XDG_RUNTIME_DIR=$R" \
  "${args[@]}" "${cases[@]}"
rm -rf "$H/stores"
