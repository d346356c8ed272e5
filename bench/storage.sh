#!/bin/bash
# Storage drivers: start latency of `nook run --rm IMG true` for a ~200 MB image on kernel
# overlay, fuse-overlayfs and vfs (and with --userns=keep-id), and a metadata-heavy workload in
# the container (`find / -xdev | wc -l`; unpacking a tar of 10,000 small files) on kernel
# overlay vs fuse-overlayfs vs a host directory (--rootfs), all in one interleaved run
# (bench/bench.py). Prints medians, and ratios within each group.
#   bench/storage.sh [ROUNDS]
# As root it measures as the rig's unprivileged user with the store on a journaled ext4 loop
# filesystem and the run root on tmpfs (bench/lib.sh says why).
# The image is generated offline (deterministic content) and cached in /tmp/nook-bench-cache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROUNDS=${1:-15}
CACHE=/tmp/nook-bench-cache
mkdir -p "$CACHE"
chmod 755 "$CACHE"

# The images, cached: busybox, and busybox + ~190 MB in ~8,000 files + a tar of 10,000
# small files (for the unpack workload).
if [ ! -f "$CACHE/big.tar" ] || [ ! -f "$CACHE/bb.tar" ]; then
  python3 - "$CACHE" <<'EOF'
import io, os, random, subprocess, sys, tarfile
cache = sys.argv[1]
rnd = random.Random(4)
def rootfs(t):
    def add(name, kind, data=b"", mode=0o755, link=None):
        ti = tarfile.TarInfo(name); ti.type = kind; ti.mode = mode; ti.mtime = 1700000000
        ti.size = len(data) if kind == tarfile.REGTYPE else 0
        if link: ti.linkname = link
        t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    for d in ["bin", "etc", "dev", "proc", "sys", "tmp", "root", "var"]:
        add(d + "/", tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
    add("bin/busybox", tarfile.REGTYPE, open("/bin/busybox", "rb").read())
    for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if a != "busybox":
            add("bin/" + a, tarfile.SYMTYPE, mode=0o777, link="busybox")
    add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    add("etc/group", tarfile.REGTYPE, b"root:x:0:\n", 0o644)
    return add
with tarfile.open(os.path.join(cache, "bb.tar.tmp"), "w", format=tarfile.GNU_FORMAT) as t:
    rootfs(t)
os.rename(os.path.join(cache, "bb.tar.tmp"), os.path.join(cache, "bb.tar"))
small = io.BytesIO()
with tarfile.open(fileobj=small, mode="w", format=tarfile.GNU_FORMAT) as s:
    for i in range(10000):
        data = b"%d\n" % i * 10
        ti = tarfile.TarInfo("small/d%02d/f%05d" % (i % 100, i)); ti.size = len(data); ti.mtime = 1700000000; ti.mode = 0o644
        s.addfile(ti, io.BytesIO(data))
with tarfile.open(os.path.join(cache, "big.tar.tmp"), "w", format=tarfile.GNU_FORMAT) as t:
    add = rootfs(t)
    add("data/", tarfile.DIRTYPE)
    total = 0
    for d in range(400):
        add("data/d%03d/" % d, tarfile.DIRTYPE)
        for f in range(20):
            n = rnd.randint(1024, 40 * 1024)
            total += n
            add("data/d%03d/f%02d" % (d, f), tarfile.REGTYPE, rnd.randbytes(n), 0o644)
    for b in range(4):
        add("data/blob%d" % b, tarfile.REGTYPE, rnd.randbytes(10 << 20), 0o644)
    add("small.tar", tarfile.REGTYPE, small.getvalue(), 0o644)
os.rename(os.path.join(cache, "big.tar.tmp"), os.path.join(cache, "big.tar"))
EOF
  chmod 644 "$CACHE"/*.tar
fi

bench_init nook-bench-storage 8G

N=$BIN/nook
as "$N" import "$CACHE/bb.tar" bb >/dev/null
t0=$(date +%s.%N)
as "$N" import "$CACHE/big.tar" big >/dev/null
t1=$(date +%s.%N)
# The host directory: the same files, exploded on the same filesystem, owned by the user.
as mkdir -p "$H/big-rootfs"
as tar -C "$H/big-rootfs" --no-same-owner -xf "$CACHE/big.tar"
# keep-id on kernel overlay without fuse-overlayfs makes an id-shifted copy once: its cost.
t2=$(date +%s.%N)
as "$N" --storage-driver overlay run --rm --userns=keep-id big true
t3=$(date +%s.%N)

echo "nook $(as "$N" --version | cut -d' ' -f2), $(fuse-overlayfs --version 2>/dev/null | sed -n 's/^fuse-overlayfs: //p'), kernel $(uname -r), $(nproc) cpus; image: $(du -sh "$CACHE/big.tar" | cut -f1) tar, $(find "$H/big-rootfs" -xdev | wc -l) files"
python3 -c "print('import of the 200 MB image: %.2f s; first keep-id start on kernel overlay (one id-shifted copy): %.2f s' % ($t1 - $t0, $t3 - $t2))"

D="$N --storage-driver"
UNTAR="sh -c 'mkdir /x && tar -xf /small.tar -C /x && rm -rf /x'"
FIND="sh -c 'find / -xdev | wc -l'"
FIND2="sh -c 'find / -xdev | wc -l; find / -xdev | wc -l'"
cases=(
  "start-vfs-busybox=$D vfs run --rm bb true"
  "start-overlay-busybox=$D overlay run --rm bb true"
  "start-overlay=$D overlay run --rm big true"
  "start-fuse=$D fuse-overlayfs run --rm big true"
  "start-vfs=$D vfs run --rm big true"
  "start-keepid-fuse=$N run --rm --userns=keep-id big true"
  "start-keepid-overlay-copy=$D overlay run --rm --userns=keep-id big true"
  "find-host=$N run --rm --rootfs $H/big-rootfs $FIND"
  "find-overlay=$D overlay run --rm big $FIND"
  "find-fuse=$D fuse-overlayfs run --rm big $FIND"
  "find2-host=$N run --rm --rootfs $H/big-rootfs $FIND2"
  "find2-overlay=$D overlay run --rm big $FIND2"
  "find2-fuse=$D fuse-overlayfs run --rm big $FIND2"
  "untar-host=$N run --rm --rootfs $H/big-rootfs $UNTAR"
  "untar-overlay=$D overlay run --rm big $UNTAR"
  "untar-fuse=$D fuse-overlayfs run --rm big $UNTAR"
)
as python3 "$BIN/bench.py" --rounds "$ROUNDS" --json "$R/samples.json" "${cases[@]}"
# Ratios within each group: start vs vfs busybox, workloads vs the host directory.
as python3 - "$R/samples.json" <<'EOF'
import json, statistics, sys
s = {k: statistics.median(v) for k, v in json.load(open(sys.argv[1])).items()}
print("\nratios within groups (median / baseline median):")
for name, base in [("start-overlay-busybox", "start-vfs-busybox"), ("start-overlay", "start-vfs-busybox"),
                   ("start-fuse", "start-overlay"), ("start-vfs", "start-overlay"),
                   ("start-keepid-fuse", "start-overlay"), ("start-keepid-overlay-copy", "start-overlay"),
                   ("find-overlay", "find-host"), ("find-fuse", "find-host"),
                   ("find2-overlay", "find2-host"), ("find2-fuse", "find2-host"),
                   ("untar-overlay", "untar-host"), ("untar-fuse", "untar-host")]:
    print(f"  {name:<27} / {base:<22} {s[name] / s[base]:6.2f}")
# The second find of a container runs with its caches warm: the first one's extra cost is the
# new mount's cold cache.
for d in ["host", "overlay", "fuse"]:
    print(f"  a second (warm) find on {d:<8} {s['find2-' + d] - s['find-' + d]:7.1f} ms")
EOF
as "$N" rmi -f bb big >/dev/null || true
