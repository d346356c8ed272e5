//! `nook run`: the command, its environment, exit codes and mounts, as podman does them.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::common::{Env, rig};

#[test]
fn full_map_root_and_pid_one() {
    let e = Env::new();
    e.import_busybox();
    let out = e.ok(["run", "--rm", "bb", "sh", "-c", "cat /proc/self/uid_map; id -u; echo $$"]);
    let lines: Vec<Vec<String>> = out.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect();
    let subuid = fs::read_to_string("/etc/subuid").unwrap();
    let first = subuid
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == e.user.name || f[0] == e.user.uid.to_string()).then(|| (f[1].to_string(), f[2].to_string()))
        })
        .expect("the test user has a subuid range");
    assert_eq!(lines[0], vec!["0".to_string(), e.user.uid.to_string(), "1".to_string()], "{out}");
    assert_eq!(lines[1], vec!["1".to_string(), first.0, first.1.clone()], "{out}");
    assert_eq!(first.1, "65536");
    assert_eq!(lines[2], vec!["0"]);
    assert_eq!(lines[3], vec!["1"]);
}

#[test]
fn exit_codes_are_podmans() {
    let e = Env::new();
    e.import_busybox();
    assert_eq!(e.run(["run", "--rm", "bb", "sh", "-c", "exit 7"]).code, 7);
    let o = e.run(["run", "--rm", "bb", "nosuchcmd"]);
    assert_eq!(o.code, 127, "{o}");
    assert!(o.stderr.contains("nosuchcmd") && o.stderr.contains("not found"), "{o}");
    let o = e.run(["run", "--rm", "bb", "/etc/passwd"]);
    assert_eq!(o.code, 126, "{o}");
    let o = e.run(["run", "--rm", "nosuchimage", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "one line: {o}");
    assert!(o.stderr.starts_with("Error: ") && o.stderr.contains("nosuchimage"), "{o}");
    // A usage error is nook's own error.
    assert_eq!(e.run(["run", "--no-such-flag", "bb"]).code, 125);
    // --rm removed every container.
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
}

#[test]
fn env_workdir_hostname_entrypoint() {
    let e = Env::new();
    e.import_busybox();
    let envf = e.dir.join("envfile");
    fs::write(&envf, "# comment\nFROMFILE=yes\nOVER=file\n").unwrap();
    let out = e.ok([
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "OVER=flag",
        "--env-file",
        envf.to_str().unwrap(),
        "bb",
        "sh",
        "-c",
        "echo $A $FROMFILE $OVER $HOME; echo $PATH",
    ]);
    let mut l = out.lines();
    assert_eq!(l.next(), Some("1 yes flag /root"));
    assert!(l.next().unwrap().contains("/bin"));
    assert_eq!(e.ok(["run", "--rm", "-w", "/etc", "bb", "pwd"]), "/etc\n");
    // A missing working directory is created, as podman does.
    assert_eq!(e.ok(["run", "--rm", "-w", "/new/dir", "bb", "pwd"]), "/new/dir\n");
    assert_eq!(
        e.ok(["run", "--rm", "--hostname", "box1", "bb", "sh", "-c", "hostname; cat /etc/hostname"]),
        "box1\nbox1\n"
    );
    assert_eq!(e.ok(["run", "--rm", "--entrypoint", "echo", "bb", "hello", "world"]), "hello world\n");
    assert_eq!(e.ok(["run", "--rm", "--entrypoint", r#"["/bin/echo","-n","x"]"#, "bb"]), "x");
    // The image's default command (none for an imported tar without --change).
    let o = e.run(["run", "--rm", "bb"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("no command or entrypoint"), "{o}");
}

#[test]
fn user_flag() {
    let e = Env::new();
    e.import_busybox();
    assert_eq!(
        e.ok(["run", "--rm", "-u", "1000:1000", "bb", "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"]),
        "1000\n1000\nCapEff:\t0000000000000000\n"
    );
    assert_eq!(
        e.ok(["run", "--rm", "-u", "user", "bb", "sh", "-c", "id -un; id -G; echo $HOME"]),
        "user\n1000 10\n/home/user\n"
    );
    let o = e.run(["run", "--rm", "-u", "nosuchuser", "bb", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("unable to find user nosuchuser"), "{o}");
}

#[test]
fn read_only_root() {
    let e = Env::new();
    e.import_busybox();
    let o = e.run(["run", "--rm", "--read-only", "bb", "touch", "/x"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    // podman's --read-only keeps /tmp, /var/tmp and /run writable.
    e.ok(["run", "--rm", "--read-only", "bb", "sh", "-c", "touch /tmp/a /var/tmp/b /run/c"]);
    e.ok(["run", "--rm", "bb", "touch", "/x"]);
}

#[test]
fn volumes_rw_ro_and_ownership() {
    let e = Env::new();
    e.import_busybox();
    let data = e.mkdir("data");
    fs::write(data.join("in"), "from host\n").unwrap();
    let spec = format!("{}:/data", data.display());
    assert_eq!(
        e.ok(["run", "--rm", "-v", &spec, "bb", "sh", "-c", "cat /data/in; echo hi > /data/out"]),
        "from host\n"
    );
    // Created as root in the container: owned by the caller on the host.
    let md = fs::metadata(data.join("out")).unwrap();
    assert_eq!((md.uid(), md.gid()), (e.user.uid, e.user.gid));
    assert_eq!(fs::read_to_string(data.join("out")).unwrap(), "hi\n");
    let ro = format!("{}:/data:ro", data.display());
    let o = e.run(["run", "--rm", "-v", &ro, "bb", "sh", "-c", "cat /data/in && touch /data/nope"]);
    assert_ne!(o.code, 0);
    assert!(o.stdout.contains("from host") && o.stderr.contains("Read-only"), "{o}");
    assert!(!data.join("nope").exists());
    // Nor can the container remount it read-write.
    let o = e.run(["run", "--rm", "-v", &ro, "bb", "sh", "-c", "mount -o remount,rw /data && touch /data/nope"]);
    assert_ne!(o.code, 0, "{o}");
    assert!(!data.join("nope").exists());
    // A file bind mount, and a missing source.
    e.ok(["run", "--rm", "-v", &format!("{}:/etc/in.txt:ro", data.join("in").display()), "bb", "cat", "/etc/in.txt"]);
    let o = e.run(["run", "--rm", "-v", "/no/such/dir:/x", "bb", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("/no/such/dir"), "{o}");
}

#[test]
fn rootfs_directory() {
    let e = Env::new();
    let dir = e.mkdir("rootfs");
    // Unpack the busybox tarball as the test user (all files owned by them: root inside).
    let tar = rig().fixtures.join("busybox.tar");
    let mut c = e.command("tar");
    c.arg("-C").arg(&dir).arg("--no-same-owner").arg("-xf").arg(&tar);
    let o = crate::common::run_bounded(&mut c, std::time::Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        e.ok(["run", "--rm", "--rootfs", dir.to_str().unwrap(), "sh", "-c", "echo rootfs; id -u"]),
        "rootfs\n0\n"
    );
    // Writes go to the directory itself, as podman's --rootfs.
    e.ok(["run", "--rm", "--rootfs", dir.to_str().unwrap(), "sh", "-c", "echo kept > /kept"]);
    assert_eq!(fs::read_to_string(dir.join("kept")).unwrap(), "kept\n");
}

#[test]
fn containers_without_rm_persist_and_can_be_removed() {
    let e = Env::new();
    e.import_busybox();
    assert_eq!(e.run(["run", "--name", "keep", "bb", "sh", "-c", "exit 3"]).code, 3);
    let ps = e.ok(["ps", "-a"]);
    assert!(ps.contains("keep") && ps.contains("Exited (3)"), "{ps}");
    let o = e.run(["run", "--name", "keep", "bb", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("already in use"), "{o}");
    e.ok(["rm", "keep"]);
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
    assert_eq!(e.run(["rm", "keep"]).code, 1);
    // Nothing left of it in the store.
    assert!(fs::read_dir(e.store().join("containers")).unwrap().next().is_none());
}

#[test]
fn vfs_driver_runs_and_applies_changes_privately() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["--storage-driver", "vfs", "run", "--name", "v", "bb", "sh", "-c", "rm /bin/vi; echo x > /etc/new"]);
    assert_eq!(
        e.ok([
            "--storage-driver",
            "vfs",
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "test -e /bin/vi && test ! -e /etc/new && echo clean"
        ]),
        "clean\n"
    );
    // The --rm container's files may still be being deleted in the background: look for "v".
    let c = fs::read_dir(e.store().join("containers"))
        .unwrap()
        .filter_map(|d| fs::read(d.ok()?.path().join("container.json")).ok())
        .map(|d| serde_json::from_slice::<serde_json::Value>(&d).unwrap())
        .find(|c| c["name"] == "v")
        .expect("container v");
    assert_eq!(c["driver"], "vfs");
    e.ok(["rm", "v"]);
}
