//! `nook import`, `nook images`, `nook rmi`, and hostile tarballs.

use std::fs;

use crate::common::fixtures::{Entry, tar_with};
use crate::common::{Env, rig, tree};

#[test]
fn import_plain_gzip_zstd_and_stdin() {
    let e = Env::new();
    for (f, name) in [("busybox.tar", "plain"), ("busybox.tar.gz", "gz"), ("busybox.tar.zst", "zst")] {
        let path = rig().fixtures.join(f);
        let id = e.ok(["import", path.to_str().unwrap(), name]);
        assert_eq!(id.trim().len(), 64, "{id}");
        assert_eq!(e.ok(["run", "--rm", name, "echo", "ok"]), "ok\n");
    }
    // Same content, same layer: the three imports share one unpacked layer.
    assert_eq!(fs::read_dir(e.store().join("layers")).unwrap().count(), 1);
    // From stdin.
    let mut c = e.nook(["import", "-", "fromstdin"]);
    c.stdin(fs::File::open(rig().fixtures.join("busybox.tar.gz")).unwrap());
    let o = crate::common::run_bounded(&mut c, std::time::Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    let images = e.ok(["images"]);
    let header = images.lines().next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{images}");
    }
    for n in ["localhost/plain", "localhost/gz", "localhost/zst", "localhost/fromstdin"] {
        assert!(images.lines().any(|l| l.starts_with(n) && l.contains("latest")), "{n} missing: {images}");
    }
}

#[test]
fn import_with_changes_sets_the_config() {
    let e = Env::new();
    let tar = rig().fixtures.join("busybox.tar");
    e.ok([
        "import",
        "--change",
        "CMD=echo from-cmd",
        "--change",
        "ENV=GREETING=hi",
        "--change",
        "WORKDIR=/tmp",
        tar.to_str().unwrap(),
        "bbc",
    ]);
    assert_eq!(e.ok(["run", "--rm", "bbc"]), "from-cmd\n");
    assert_eq!(e.ok(["run", "--rm", "bbc", "sh", "-c", "echo $GREETING; pwd"]), "hi\n/tmp\n");
}

#[test]
fn owners_in_the_tar_map_into_the_subordinate_range() {
    let e = Env::new();
    let tar = e.dir.join("owned.tar");
    let base = fs::read(rig().fixtures.join("busybox.tar")).unwrap();
    let layers = crate::common::fixtures::multilayer_tars(&base);
    // The multilayer's second layer has files owned by 1000:1000 and 2000:3000 and a setuid file.
    let mut both = layers[0].clone();
    while both.len() >= 512 && both[both.len() - 512..].iter().all(|b| *b == 0) {
        both.truncate(both.len() - 512);
    }
    both.extend_from_slice(&layers[1]);
    fs::write(&tar, &both).unwrap();
    e.ok(["import", tar.to_str().unwrap(), "owned"]);
    let out = e.ok([
        "run",
        "--rm",
        "owned",
        "sh",
        "-c",
        "stat -c '%u:%g %a %n' /data/owned /data/owned2 /data/setuid /bin/busybox",
    ]);
    assert_eq!(
        out,
        "1000:1000 640 /data/owned\n2000:3000 600 /data/owned2\n0:0 4755 /data/setuid\n0:0 755 /bin/busybox\n"
    );
    // On the host the owner is the subordinate id.
    let layer = fs::read_dir(e.store().join("layers")).unwrap().next().unwrap().unwrap().path();
    let md = fs::metadata(layer.join("diff/data/owned")).unwrap();
    let sub: u32 = fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == e.user.name).then(|| f[1].parse().unwrap())
        })
        .unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(md.uid(), sub + 999);
    let md = fs::metadata(layer.join("diff/bin/busybox")).unwrap();
    assert_eq!(md.uid(), e.user.uid);
}

/// Everything under `dir` but the store's temporary lock files.
fn snapshot(dir: &std::path::Path) -> Vec<String> {
    tree(dir).into_iter().filter(|p| !(p.contains("/nook/tmp/") && p.ends_with(".lock"))).collect()
}

/// A hostile tarball is refused with one line, exit 125, and writes nothing anywhere.
fn refused(e: &Env, name: &str, tar: Vec<u8>, outside: &std::path::Path, want: &str) {
    let path = e.dir.join(format!("{name}.tar"));
    fs::write(&path, tar).unwrap();
    e.ok(["images"]); // the store exists before the snapshot
    let before = snapshot(outside);
    let o = e.run(["import", path.to_str().unwrap(), name]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o}");
    assert!(o.stderr.contains(want), "expected {want:?}: {o}");
    assert_eq!(snapshot(outside), before, "something was written outside the store");
    assert!(!e.ok(["images"]).contains(name));
    // Nothing half-done stays in the store.
    assert!(fs::read_dir(e.store().join("layers")).unwrap().next().is_none());
    let leftovers: Vec<_> = fs::read_dir(e.store().join("tmp"))
        .unwrap()
        .flatten()
        .filter(|f| !f.file_name().to_string_lossy().ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn hostile_tarballs_are_refused() {
    let e = Env::new();
    let outside = e.mkdir("outside");
    let target = outside.to_str().unwrap();
    refused(&e, "dotdot", tar_with(&[Entry::File("../../evil", b"x", 0o644)]), &e.dir, "'..'");
    refused(
        &e,
        "dotdot2",
        tar_with(&[Entry::Dir("a/", 0o755), Entry::File("a/../../evil", b"x", 0o644)]),
        &e.dir,
        "'..'",
    );
    refused(&e, "absolute", tar_with(&[Entry::File(&format!("{target}/evil"), b"x", 0o644)]), &e.dir, "absolute");
    refused(
        &e,
        "symlink",
        tar_with(&[Entry::Symlink("esc", target), Entry::File("esc/evil", b"x", 0o644)]),
        &e.dir,
        "symlink",
    );
    refused(
        &e,
        "symlinkrel",
        tar_with(&[
            Entry::Dir("d/", 0o755),
            Entry::Symlink("d/up", "../../../../../../.."),
            Entry::File("d/up/tmp/evil", b"x", 0o644),
        ]),
        &e.dir,
        "symlink",
    );
    refused(&e, "hardlink", tar_with(&[Entry::Hardlink("h", "../../../../etc/passwd")]), &e.dir, "hardlink");
    refused(
        &e,
        "hardlinksym",
        tar_with(&[Entry::Symlink("up", target), Entry::Hardlink("h", "up/x")]),
        &e.dir,
        "symlink",
    );
    // Not a tarball at all.
    let junk = e.dir.join("junk.tar");
    fs::write(&junk, vec![0x42u8; 3000]).unwrap();
    let o = e.run(["import", junk.to_str().unwrap(), "junk"]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o}");
    assert!(tree(&outside).is_empty());
}

#[test]
fn rmi_refuses_images_in_use_unless_forced() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "--name", "user1", "bb", "true"]);
    let o = e.run(["rmi", "bb"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("in use"), "{o}");
    let o = e.ok(["rmi", "-f", "bb"]);
    assert!(o.contains("Untagged: localhost/bb:latest") && o.contains("Deleted:"), "{o}");
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
    assert!(e.ok(["images", "-q"]).is_empty());
    // Layers and blobs went with the image.
    assert!(fs::read_dir(e.store().join("layers")).unwrap().next().is_none());
    assert!(fs::read_dir(e.store().join("blobs/sha256")).unwrap().next().is_none());
    assert_eq!(e.run(["rmi", "bb"]).code, 1);
}

#[test]
fn rmi_keeps_layers_another_image_shares() {
    let e = Env::new();
    let tar = rig().fixtures.join("busybox.tar");
    e.ok(["import", tar.to_str().unwrap(), "one"]);
    e.ok(["import", tar.to_str().unwrap(), "two"]);
    // Two images (their configs differ in creation time) sharing one unpacked layer.
    assert_eq!(e.ok(["images", "-q"]).lines().count(), 2);
    assert_eq!(fs::read_dir(e.store().join("layers")).unwrap().count(), 1);
    e.ok(["rmi", "one"]);
    assert_eq!(fs::read_dir(e.store().join("layers")).unwrap().count(), 1);
    assert_eq!(e.ok(["run", "--rm", "two", "echo", "ok"]), "ok\n");
    e.ok(["rmi", "two"]);
    assert_eq!(fs::read_dir(e.store().join("layers")).unwrap().count(), 0);
}
