//! Test images, made offline by the rig from Debian's `busybox-static`:
//! - `busybox.tar`: a rootfs tarball (binary, applet links, /etc/passwd and /etc/group)
//! - `oci/`: an OCI image layout with `busybox` (one layer) and `multilayer` (three layers:
//!   gzip base, a layer with a whiteout, an opaque directory, a hardlink, a symlink, a setuid
//!   file and files owned by non-root ids, and a zstd-compressed top layer)
//!
//! Hostile tarballs are made per test with [`tar_with`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const BUSYBOX: &str = "/bin/busybox";

/// True when /bin/busybox exists and is statically linked (no PT_INTERP program header), so
/// it runs in an image without a libc.
pub fn busybox_is_static() -> bool {
    let Ok(b) = fs::read(BUSYBOX) else { return false };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16at(0x36), u16at(0x38));
    !(0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= b.len() && u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3
    })
}

/// One tar entry for [`tar_with`].
pub enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    /// path, mode, uid, gid
    Owned(&'a str, &'a [u8], u32, u64, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// Builds a tar with names written raw, so hostile paths (`../x`, `/x`) stay as given.
pub fn tar_with(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let (path, link, data): (&str, Option<&str>, &[u8]) = match e {
            Entry::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                (p, None, &[])
            }
            Entry::File(p, d, m) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                (p, None, d)
            }
            Entry::Owned(p, d, m, u, g) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_uid(*u);
                h.set_gid(*g);
                (p, None, d)
            }
            Entry::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                (p, Some(t), &[])
            }
            Entry::Hardlink(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                (p, Some(t), &[])
            }
        };
        assert!(path.len() < 100 && link.is_none_or(|l| l.len() < 100), "fixture names must be short");
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\nuser:x:1000:\nwheel:x:10:user\nnogroup:x:65534:\n";

/// The busybox rootfs as a tar: /bin/busybox, one symlink per applet, /etc/passwd, /etc/group.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let bin = fs::read(BUSYBOX).expect("reading /bin/busybox (install busybox-static)");
    let list = std::process::Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    let applets: Vec<String> =
        String::from_utf8_lossy(&list.stdout).lines().map(str::to_string).filter(|a| a != "busybox").collect();
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    let mut e = vec![
        Entry::Dir("bin/", 0o755),
        Entry::Dir("etc/", 0o755),
        Entry::Dir("dev/", 0o755),
        Entry::Dir("proc/", 0o755),
        Entry::Dir("sys/", 0o755),
        Entry::Dir("root/", 0o700),
        Entry::Dir("tmp/", 0o1777),
        Entry::Dir("home/", 0o755),
        Entry::Dir("var/", 0o755),
        Entry::File("bin/busybox", &bin, 0o755),
        Entry::File("etc/passwd", PASSWD.as_bytes(), 0o644),
        Entry::File("etc/group", GROUP.as_bytes(), 0o644),
    ];
    for l in &links {
        e.push(Entry::Symlink(l, "busybox"));
    }
    tar_with(&e)
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// Writes a blob into an OCI layout; returns (digest, size).
pub fn blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let d = sha(data);
    fs::write(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:")), data).unwrap();
    (d, data.len())
}

/// (compressed layer, media type, uncompressed tar) → an image in `layout`; returns the
/// manifest descriptor.
fn oci_image(layout: &Path, layers: &[(Vec<u8>, &str, Vec<u8>)], cmd: &[&str]) -> serde_json::Value {
    oci_image_arch(layout, layers, cmd, "amd64")
}

/// As `oci_image`, for an architecture.
pub fn oci_image_arch(
    layout: &Path,
    layers: &[(Vec<u8>, &str, Vec<u8>)],
    cmd: &[&str],
    arch: &str,
) -> serde_json::Value {
    let diff_ids: Vec<String> = layers.iter().map(|(_, _, raw)| sha(raw)).collect();
    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": { "Env": ["PATH=/bin"], "Cmd": cmd },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": layers.iter().map(|_| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": "nook test rig"})).collect::<Vec<_>>(),
    });
    let (cd, cs) = blob(layout, &serde_json::to_vec(&config).unwrap());
    let ldesc: Vec<_> = layers
        .iter()
        .map(|(data, mt, _)| {
            let (d, s) = blob(layout, data);
            serde_json::json!({ "mediaType": mt, "digest": d, "size": s })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs },
        "layers": ldesc,
    });
    let (md, ms) = blob(layout, &serde_json::to_vec(&manifest).unwrap());
    serde_json::json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms })
}

/// The layers of the `multilayer` image, uncompressed, bottom first.
pub fn multilayer_tars(base: &[u8]) -> Vec<Vec<u8>> {
    let l2 = tar_with(&[
        Entry::Dir("etc/", 0o755),
        Entry::File("etc/motd", b"layer two\n", 0o644),
        Entry::Dir("bin/", 0o755),
        Entry::File("bin/.wh.vi", b"", 0o644),
        Entry::Dir("opt/", 0o755),
        Entry::File("opt/.wh..wh..opq", b"", 0o644),
        Entry::File("opt/new", b"new\n", 0o644),
        Entry::File("data/orig", b"linked\n", 0o644),
        Entry::Hardlink("data/hard", "data/orig"),
        Entry::Symlink("data/soft", "orig"),
        Entry::File("data/setuid", b"#!/bin/sh\n", 0o4755),
        Entry::Owned("data/owned", b"owned by 1000\n", 0o640, 1000, 1000),
        Entry::Owned("data/owned2", b"owned by 2000\n", 0o600, 2000, 3000),
    ]);
    let l3 = tar_with(&[Entry::File("layer3.txt", b"zstd layer\n", 0o644)]);
    // The base gets an /opt with content, hidden by the opaque directory above.
    let mut b = base.to_vec();
    let extra = tar_with(&[Entry::Dir("opt/", 0o755), Entry::File("opt/old", b"old\n", 0o644)]);
    // Concatenated tars need the first end-of-archive blocks removed.
    while b.len() >= 512 && b[b.len() - 512..].iter().all(|x| *x == 0) {
        b.truncate(b.len() - 512);
    }
    b.extend_from_slice(&extra);
    vec![b, l2, l3]
}

/// Builds every fixture into `dir` (once; safe when several test processes race).
pub fn build_all(dir: &Path) {
    if dir.join("done").exists() {
        return;
    }
    assert!(busybox_is_static(), "the rig needs a static /bin/busybox (Debian package busybox-static)");
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join("oci/blobs/sha256")).unwrap();
    let bb = busybox_rootfs_tar();
    fs::write(tmp.join("busybox.tar"), &bb).unwrap();
    fs::write(tmp.join("busybox.tar.gz"), gzip(&bb)).unwrap();
    fs::write(tmp.join("busybox.tar.zst"), zstd::encode_all(&bb[..], 3).unwrap()).unwrap();
    let layout = tmp.join("oci");
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let zs = "application/vnd.oci.image.layer.v1.tar+zstd";
    let mut m1 = oci_image(&layout, &[(gzip(&bb), gz, bb.clone())], &["/bin/sh"]);
    m1["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "busybox"});
    let t = multilayer_tars(&bb);
    let mut m2 = oci_image(
        &layout,
        &[
            (gzip(&t[0]), gz, t[0].clone()),
            (gzip(&t[1]), gz, t[1].clone()),
            (zstd::encode_all(&t[2][..], 3).unwrap(), zs, t[2].clone()),
        ],
        &["/bin/sh"],
    );
    m2["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "multilayer"});
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [m1, m2] });
    fs::write(layout.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    multiarch_layout(&tmp.join("oci-more"), &bb);
    // Short names are not resolved unless a test configures search registries (no test may
    // reach out to docker.io).
    fs::write(tmp.join("registries-none.conf"), "unqualified-search-registries = []\n").unwrap();
    make_readable(&tmp);
    fs::write(tmp.join("done"), b"").unwrap();
    match fs::rename(&tmp, dir) {
        Ok(()) => {}
        Err(_) if dir.join("done").exists() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => panic!("installing fixtures: {e}"),
    }
}

/// `oci-more/`: `multiarch` (an OCI index: linux/amd64 and linux/arm64, each the busybox layer
/// plus a layer with `/arch` naming its platform), and each platform's image alone as
/// `ma-amd64` and `ma-arm64`.
fn multiarch_layout(layout: &Path, bb: &[u8]) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let mut entries = Vec::new();
    let mut index_entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let marker = tar_with(&[Entry::File("arch", format!("{arch}\n").as_bytes(), 0o644)]);
        let mut m =
            oci_image_arch(layout, &[(gzip(bb), gz, bb.to_vec()), (gzip(&marker), gz, marker)], &["/bin/sh"], arch);
        let mut plain = m.clone();
        plain["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": format!("ma-{arch}")});
        entries.push(plain);
        m["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        index_entries.push(m);
    }
    let nested = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index_entries });
    let (d, s) = blob(layout, &serde_json::to_vec(&nested).unwrap());
    entries.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s,
        "annotations": {"org.opencontainers.image.ref.name": "multiarch"},
    }));
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries });
    fs::write(layout.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
}

/// An OCI layout at `dir` with one image `img` made of the given uncompressed layer tars
/// (gzip-compressed), for hostile-layer tests.
pub fn layout_with_layers(dir: &Path, layers: &[Vec<u8>]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let l: Vec<(Vec<u8>, &str, Vec<u8>)> = layers.iter().map(|t| (gzip(t), gz, t.clone())).collect();
    let mut m = oci_image(dir, &l, &["/bin/sh"]);
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "img"});
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [m] });
    fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    make_readable(dir);
}

fn make_readable(p: &Path) {
    let md = fs::metadata(p).unwrap();
    let mode = if md.is_dir() { 0o755 } else { 0o644 };
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    if md.is_dir() {
        for e in fs::read_dir(p).unwrap().flatten() {
            make_readable(&e.path());
        }
    }
}

/// A hash of this file: fixtures are rebuilt whenever the code that makes them changes.
pub fn version() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    include_str!("fixtures.rs").hash(&mut h);
    h.finish()
}

/// Path of a fixture.
pub fn path(name: &str) -> PathBuf {
    super::rig().fixtures.join(name)
}
