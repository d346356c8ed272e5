//! `--userns=keep-id`: the caller is the same uid and gid inside the container as outside,
//! image files keep their owners, and nothing is chowned per container.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::common::Env;

const PROBE: &str = "id -u; id -g; id -un; echo $HOME; cat /proc/self/uid_map | awk '$1 == '$(id -u)' {print $2, $3}'; \
                     stat -c '%u:%g %a' /bin/busybox /tmp /; touch /vol/from-container; \
                     awk '$5 == \"/\" {for (i = 7; i <= NF; i++) if ($i == \"-\") {print $(i+1); exit}}' /proc/self/mountinfo";

fn check(e: &Env, out: &str, fs_type: &str) {
    let l: Vec<&str> = out.lines().collect();
    let (uid, gid) = (e.user.uid.to_string(), e.user.gid.to_string());
    assert_eq!(l[0], uid, "{out}");
    assert_eq!(l[1], gid, "{out}");
    assert_eq!(l[2], e.user.name, "a passwd entry for the caller: {out}");
    assert!(l[3].starts_with('/'), "{out}");
    assert_eq!(l[4], format!("{uid} 1"), "the caller's uid maps to itself: {out}");
    // Image files keep their owners: root's files are root's, not the caller's.
    assert_eq!(l[5], "0:0 755", "{out}");
    assert_eq!(l[6], "0:0 1777", "{out}");
    assert_eq!(l[7].split(' ').next(), Some("0:0"), "the root directory is root's: {out}");
    assert_eq!(l.get(8).copied(), Some(fs_type), "the root's filesystem type: {out}");
}

fn vol(e: &Env) -> String {
    format!("{}:/vol", e.mkdir("vol").display())
}

#[test]
fn keep_id_on_fuse_overlayfs_maps_ids_without_copying() {
    let e = Env::new();
    e.import_busybox();
    let v = vol(&e);
    // Chosen automatically where kernel overlay is the store's driver: fuse-overlayfs maps ids.
    let out = e.ok(["run", "--rm", "--userns=keep-id", "-v", &v, "bb", "sh", "-c", PROBE]);
    check(&e, &out, "fuse.fuse-overlayfs");
    let md = fs::metadata(e.dir.join("vol/from-container")).unwrap();
    assert_eq!((md.uid(), md.gid()), (e.user.uid, e.user.gid), "a file the caller made is the caller's on the host");
    // No copy of the image was made for the mapping.
    let copies: Vec<_> = fs::read_dir(e.store().join("layers"))
        .unwrap()
        .flatten()
        .flat_map(|l| fs::read_dir(l.path()).unwrap().flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("idmap-"))
        .collect();
    assert!(copies.is_empty(), "{copies:?}");
    // What the container writes lands under the caller's id inside, so a commit carries it.
    e.ok(["run", "--name", "k", "--userns=keep-id", "bb", "sh", "-c", "echo mine > /tmp/mine"]);
    assert_eq!(e.ok(["diff", "k"]), "C /tmp\nA /tmp/mine\n");
    e.ok(["commit", "k", "kimg"]);
    assert_eq!(
        e.ok(["run", "--rm", "kimg", "stat", "-c", "%u:%g", "/tmp/mine", "/bin/busybox"]),
        format!("{}:{}\n0:0\n", e.user.uid, e.user.gid)
    );
    e.ok(["rm", "k"]);
}

#[test]
fn keep_id_on_kernel_overlay_reuses_one_shifted_copy() {
    let mut e = Env::new();
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), "overlay".into()));
    e.import_busybox();
    let v = vol(&e);
    let o = e.run(["run", "--rm", "--userns=keep-id", "-v", &v, "bb", "sh", "-c", PROBE]);
    assert_eq!(o.code, 0, "{o}");
    check(&e, &o.stdout, "overlay");
    assert!(o.stderr.contains("id-shifted copy"), "the one-time copy is announced: {o}");
    // The second container reuses it.
    let o = e.run([
        "run",
        "--name",
        "k",
        "--userns=keep-id",
        "-v",
        &v,
        "bb",
        "sh",
        "-c",
        "echo mine > /tmp/mine; rm /bin/vi 2>/dev/null; id -u",
    ]);
    assert_eq!(o.code, 0, "{o}");
    assert!(!o.stderr.contains("id-shifted copy"), "{o}");
    assert_eq!(o.stdout, format!("{}\n", e.user.uid));
    // The layer it writes carries the image's ids, not the shifted ones.
    assert_eq!(e.ok(["diff", "k"]), "C /tmp\nA /tmp/mine\n");
    e.ok(["commit", "k", "kimg"]);
    assert_eq!(
        e.ok(["--storage-driver", "vfs", "run", "--rm", "kimg", "stat", "-c", "%u:%g", "/tmp/mine", "/bin/busybox"]),
        format!("{}:{}\n0:0\n", e.user.uid, e.user.gid)
    );
    e.ok(["rm", "k"]);
    // Removing the image removes the copies with its layers.
    e.ok(["rmi", "kimg", "bb"]);
    assert_eq!(fs::read_dir(e.store().join("layers")).unwrap().count(), 0);
}

#[test]
fn keep_id_on_vfs_and_bad_modes() {
    let mut e = Env::new();
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), "vfs".into()));
    e.import_busybox();
    let v = vol(&e);
    let out = e.ok(["run", "--rm", "--userns=keep-id", "-v", &v, "bb", "sh", "-c", PROBE]);
    // vfs: the container's copy is the root, a plain directory of the store: its filesystem
    // is the one the store is on (ext4, …), not an overlay or fuse mount of nook's.
    let host = crate::common::fs_type_of(&e.store());
    assert!(!host.starts_with("fuse"), "the store is on {host}");
    check(&e, &out, &host);
    // An explicit uid and gid.
    assert_eq!(
        e.ok(["run", "--rm", "--userns=keep-id:uid=1000,gid=1000", "bb", "sh", "-c", "id -u; id -g"]),
        "1000\n1000\n"
    );
    let o = e.run(["run", "--rm", "--userns=auto", "bb", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("not supported"), "{o}");
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
}
