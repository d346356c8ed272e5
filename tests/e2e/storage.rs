//! The storage drivers' behaviour suite, run against kernel overlay, fuse-overlayfs and vfs
//! alike with real mounts: whiteouts and opaque directories from image layers, copy-up, rename
//! and re-creation of lower directories, hardlinks, setuid bits and owners, and the container
//! layer verbs (`commit` round trip, `diff`, `export`, `mount`).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use crate::common::fixtures::{self, Entry, tar_with};
use crate::common::{Env, rig};

/// The base image: busybox plus files the suite changes in later layers.
fn base_tar() -> Vec<u8> {
    let mut b = fixtures::busybox_rootfs_tar();
    // Concatenated tars need the first end-of-archive blocks removed.
    while b.len() >= 512 && b[b.len() - 512..].iter().all(|x| *x == 0) {
        b.truncate(b.len() - 512);
    }
    b.extend_from_slice(&tar_with(&[
        Entry::Dir("opt/", 0o755),
        Entry::File("opt/old", b"old\n", 0o644),
        Entry::File("etc/motd", b"layer one\n", 0o644),
        Entry::Dir("data/", 0o755),
        Entry::File("data/orig", b"linked\n", 0o644),
        Entry::Hardlink("data/hard", "data/orig"),
        Entry::Symlink("data/soft", "orig"),
        Entry::File("data/setuid", b"#!/bin/sh\n", 0o4755),
        Entry::Owned("data/owned", b"owned by 1000\n", 0o640, 1000, 1000),
        Entry::Owned("data/owned2", b"owned by 2000\n", 0o600, 2000, 3000),
        Entry::Dir("lower/", 0o755),
        Entry::Dir("lower/dir/", 0o755),
        Entry::Dir("lower/dir/sub/", 0o755),
        Entry::File("lower/dir/sub/file", b"deep\n", 0o644),
        Entry::File("lower/dir/top", b"top\n", 0o644),
    ]));
    b
}

/// An environment whose every command uses `driver`, with the suite's three-layer image `ml`:
/// the base, a committed layer with a whiteout (/bin/vi), an opaque directory (/opt), a
/// changed file and a new hardlink, and a committed layer with one new file.
fn layered(driver: &str) -> Env {
    let mut e = Env::new();
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), driver.into()));
    let base = e.dir.join("base.tar");
    fs::write(&base, base_tar()).unwrap();
    e.ok(["import", base.to_str().unwrap(), "base"]);
    e.ok([
        "run",
        "--name",
        "l2",
        "base",
        "sh",
        "-c",
        "rm /bin/vi && rm -rf /opt && mkdir /opt && echo new > /opt/new && echo two > /etc/motd && ln /data/orig /data/hard2",
    ]);
    let diff = e.ok(["diff", "l2"]);
    assert!(diff.contains("D /bin/vi\n") && diff.contains("C /opt\n") && diff.contains("D /opt/old\n"), "{diff}");
    e.ok(["commit", "-m", "layer two", "l2", "ml2"]);
    e.ok(["run", "--name", "l3", "ml2", "sh", "-c", "echo three > /layer3.txt"]);
    e.ok(["commit", "l3", "ml"]);
    e.ok(["rm", "l2", "l3"]);
    e
}

fn sh(e: &Env, image: &str, script: &str) -> String {
    e.ok(["run", "--rm", image, "sh", "-c", script])
}

fn behaviour(driver: &str) {
    let e = layered(driver);
    // The root filesystem is what the driver says.
    let root = sh(&e, "ml", "awk '$5 == \"/\"' /proc/self/mountinfo");
    let want = match driver {
        "overlay" => "overlay".to_string(),
        "fuse-overlayfs" => "fuse.fuse-overlayfs".to_string(),
        // vfs: a plain directory of the store, so the filesystem the store is on.
        _ => {
            let host = crate::common::fs_type_of(&e.store());
            assert!(host != "fuse.fuse-overlayfs", "the store is on {host}");
            host
        }
    };
    assert!(!root.trim().is_empty(), "{driver}: no mount at / in the container");
    assert!(root.contains(&format!(" - {want} ")), "{driver}: the root is not {want}: {root}");

    // Image layers: a whiteout hides a file, an opaque directory hides the lower content.
    assert_eq!(
        sh(&e, "ml", "test ! -e /bin/vi && test -x /bin/ls && ls /opt && cat /etc/motd /layer3.txt"),
        "new\ntwo\nthree\n"
    );
    // Hardlinks, a symlink, setuid bits and owners from the image.
    assert_eq!(
        sh(
            &e,
            "ml",
            "[ $(stat -c %i /data/orig) = $(stat -c %i /data/hard2) ] && echo same; [ $(stat -c %h /data/hard2) -ge 2 ] && echo linked; cat /data/hard /data/soft; stat -c '%a %u:%g' /data/setuid /data/owned /data/owned2"
        ),
        "same\nlinked\nlinked\nlinked\n4755 0:0\n640 1000:1000\n600 2000:3000\n"
    );
    // Inside a container: copy-up of a lower file, deleting and recreating lower files and
    // directories, renaming a lower directory, a new hardlink.
    assert_eq!(
        sh(
            &e,
            "ml",
            "echo more >> /etc/passwd && tail -1 /etc/passwd && \
             rm /data/setuid && echo re > /data/setuid && cat /data/setuid && \
             rm -rf /lower/dir/sub && mkdir /lower/dir/sub && ls -A /lower/dir/sub | wc -l && \
             mv /lower/dir /lower/moved && cat /lower/moved/top && test ! -e /lower/dir && \
             rm -rf /lower/moved && mkdir /lower/dir && ls -A /lower/dir | wc -l && \
             ln /etc/motd /etc/motd2 && cmp /etc/motd /etc/motd2 && \
             echo a > /f1 && ln /f1 /f2 && echo b >> /f2 && cat /f1 && [ $(stat -c %i /f1) = $(stat -c %i /f2) ] && echo linked"
        ),
        "more\nre\n0\ntop\n0\na\nb\nlinked\n"
    );
    // Each container started from the image alone: nothing of the last one is left.
    assert_eq!(sh(&e, "ml", "test -e /lower/dir/sub/file && grep -c more /etc/passwd; true"), "0\n");

    // diff: exactly what changed, as podman prints it (mount points are not changes).
    e.ok([
        "run",
        "--name",
        "c",
        "ml",
        "sh",
        "-c",
        "rm /bin/ls && echo x > /etc/motd && mkdir /newdir && echo f > /newdir/f && rm -rf /lower/dir && chown 1000:1000 /data/owned2",
    ]);
    assert_eq!(
        e.ok(["diff", "c"]),
        "C /bin\nD /bin/ls\nC /data\nC /data/owned2\nC /etc\nC /etc/motd\nC /lower\nD /lower/dir\nA /newdir\nA /newdir/f\n",
        "{driver}"
    );
    let j: serde_json::Value = serde_json::from_str(&e.ok(["diff", "--format", "json", "c"])).unwrap();
    assert_eq!(j["deleted"], serde_json::json!(["/bin/ls", "/lower/dir"]));

    // export: the merged tree as it is in the container.
    let out = e.mkdir("out").join("c.tar");
    e.ok(["export", "-o", out.to_str().unwrap(), "c"]);
    let entries = tar_entries(&fs::read(&out).unwrap());
    for gone in ["bin/ls", "bin/vi", "opt/old", "lower/dir", "lower/dir/top"] {
        assert!(!entries.contains_key(gone), "{driver}: {gone} in the export");
    }
    assert_eq!(entries["etc/motd"].content, "x\n");
    assert_eq!(entries["newdir/f"].content, "f\n");
    assert_eq!(entries["opt/new"].content, "new\n");
    assert_eq!(entries["layer3.txt"].content, "three\n");
    assert_eq!((entries["data/owned2"].uid, entries["data/owned2"].gid), (1000, 1000));
    assert_eq!(entries["data/setuid"].mode, 0o4755);
    assert_eq!(entries["bin/sh"].link.as_deref(), Some("busybox"));
    assert!(entries["bin/busybox"].size > 100_000);
    // The two names of a hardlinked file are one file in the tar (a link to the first name).
    let head = |p: &str| entries[p].hardlink.clone().unwrap_or_else(|| p.to_string());
    assert_eq!(head("data/orig"), head("data/hard2"), "{driver}");

    // commit round trip: the change becomes a layer; a new container sees it.
    e.ok(["commit", "-c", "CMD=/bin/cat /etc/motd", "c", "committed"]);
    assert_eq!(e.ok(["run", "--rm", "committed"]), "x\n");
    assert_eq!(sh(&e, "committed", "test ! -e /bin/ls && test ! -e /lower/dir && cat /newdir/f"), "f\n");
    let v: serde_json::Value = serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap();
    assert!(v["store"]["imageCount"].as_u64().unwrap() >= 4);

    // mount inside `nook unshare`: the container's files at the printed path.
    let script = format!(
        "p=$({n} mount c) && cat $p/etc/motd && test ! -e $p/bin/ls && {n} umount c >/dev/null && test ! -e $p/etc/motd; echo $?",
        n = rig().nook.display()
    );
    let m = e.ok(["unshare", "sh", "-c", &script]);
    // vfs keeps a plain directory: nothing to unmount, the files stay.
    assert_eq!(m, if driver == "vfs" { "x\n1\n" } else { "x\n0\n" }, "{driver}");
    let o = e.run(["mount", "c"]);
    assert_eq!(o.code, 125, "outside nook unshare: {o}");
    assert!(o.stderr.contains("nook unshare"), "{o}");
    e.ok(["rm", "c"]);
}

#[derive(Debug)]
struct TarEntry {
    content: String,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    link: Option<String>,
    hardlink: Option<String>,
}

fn tar_entries(data: &[u8]) -> BTreeMap<String, TarEntry> {
    let mut a = tar::Archive::new(data);
    let mut m = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string().trim_end_matches('/').to_string();
        let h = e.header().clone();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        let mut content = String::new();
        if h.entry_type() == tar::EntryType::Regular && h.size().unwrap() < 4096 {
            e.read_to_string(&mut content).unwrap();
        }
        let kind = h.entry_type();
        m.insert(
            path,
            TarEntry {
                content,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: h.size().unwrap(),
                link: (kind == tar::EntryType::Symlink).then(|| link.clone()).flatten(),
                hardlink: (kind == tar::EntryType::Link).then_some(link).flatten(),
            },
        );
    }
    m
}

#[test]
fn kernel_overlay_behaviour() {
    behaviour("overlay");
}

#[test]
fn fuse_overlayfs_behaviour() {
    if !std::path::Path::new("/usr/bin/fuse-overlayfs").exists() && !rig().as_root {
        crate::common::skip("fuse-overlayfs is not installed");
        return;
    }
    behaviour("fuse-overlayfs");
}

#[test]
fn vfs_behaviour() {
    behaviour("vfs");
}
