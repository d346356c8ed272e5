//! Storage drivers in their surroundings: disk use of many containers, nothing left behind
//! (mounts, fuse-overlayfs daemons), the automatic fallback when kernel overlay cannot be used,
//! and how the driver is chosen.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::fixtures::{self, Entry, tar_with};
use crate::common::{Env, mounts_of, rig, run_bounded, skip, wait_for};

/// busybox plus a 24 MiB file of non-repeating data.
fn big_tar() -> Vec<u8> {
    let mut b = fixtures::busybox_rootfs_tar();
    while b.len() >= 512 && b[b.len() - 512..].iter().all(|x| *x == 0) {
        b.truncate(b.len() - 512);
    }
    let mut data = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    b.extend_from_slice(&tar_with(&[Entry::Dir("big/", 0o755), Entry::File("big/blob", &data, 0o644)]));
    b
}

fn import_big(e: &Env) {
    let p = e.dir.join("big.tar");
    fs::write(&p, big_tar()).unwrap();
    e.ok(["import", p.to_str().unwrap(), "big"]);
}

/// Bytes of disk the store uses (counted in the user namespace, where every file is readable).
fn disk_use(e: &Env) -> u64 {
    let store = e.store();
    let out = e.ok(["unshare", "du", "-s", "-B1", store.to_str().unwrap()]);
    out.split_whitespace().next().unwrap().parse().unwrap()
}

/// Live fuse-overlayfs daemons serving this store.
fn fuse_daemons(store: &Path) -> Vec<i32> {
    let needle = store.to_string_lossy().into_owned();
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let live = stat.rfind(')').is_some_and(|i| !stat[i + 1..].trim_start().starts_with('Z'));
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if live && stat.contains("(fuse-overlayfs)") && cmd.contains(&needle) {
            v.push(pid);
        }
    }
    v
}

fn nothing_left(e: &Env) {
    let store = e.store();
    wait_for("fuse-overlayfs daemons of the store to exit", Duration::from_secs(20), || {
        fuse_daemons(&store).is_empty()
    });
    wait_for("mounts of the store to disappear", Duration::from_secs(20), || mounts_of(&store).is_empty());
}

fn twenty_containers_share_the_image(driver: &str) {
    let mut e = Env::new();
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), driver.into()));
    import_big(&e);
    e.ok(["run", "--name", "warm", "big", "true"]);
    let before = disk_use(&e);
    for i in 0..20 {
        e.ok(["run", "--name", &format!("c{i}"), "big", "sh", "-c", "test -s /big/blob"]);
    }
    let growth = disk_use(&e).saturating_sub(before);
    assert!(growth < 20 * (1 << 20), "{driver}: 20 containers grew the store by {growth} bytes");
    eprintln!("{driver}: 20 containers: {} KiB each", growth / 20 / 1024);
    nothing_left(&e);
    // Removing them gives the space back and leaves nothing running or mounted.
    let mut args = vec!["rm".to_string(), "warm".to_string()];
    args.extend((0..20).map(|i| format!("c{i}")));
    e.ok(&args);
    nothing_left(&e);
}

#[test]
fn twenty_containers_on_kernel_overlay_copy_nothing() {
    twenty_containers_share_the_image("overlay");
}

#[test]
fn twenty_containers_on_fuse_overlayfs_copy_nothing() {
    twenty_containers_share_the_image("fuse-overlayfs");
}

#[test]
fn vfs_copies_the_image_per_container() {
    // The measurement itself: a driver that copies shows up (so the tests above can fail).
    let mut e = Env::new();
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), "vfs".into()));
    import_big(&e);
    let before = disk_use(&e);
    e.ok(["run", "--name", "v1", "big", "true"]);
    e.ok(["run", "--name", "v2", "big", "true"]);
    let growth = disk_use(&e).saturating_sub(before);
    assert!(growth > 2 * (24 << 20), "vfs grew the store by only {growth} bytes");
}

#[test]
fn fuse_overlayfs_daemons_end_with_their_containers() {
    let mut e = Env::new();
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), "fuse-overlayfs".into()));
    e.import_busybox();
    let store = e.store();
    // While a container runs, its daemon serves it; --rm containers take theirs along.
    let o = e.ok([
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "awk '$5 == \"/\" {for (i = 7; i <= NF; i++) if ($i == \"-\") {print $(i+1); exit}}' /proc/self/mountinfo",
    ]);
    assert_eq!(o, "fuse.fuse-overlayfs\n");
    e.ok(["run", "--name", "kept", "bb", "true"]);
    assert_eq!(e.run(["run", "--rm", "bb", "nosuchcommand"]).code, 127);
    nothing_left(&e);

    // The owner killed: the container dies with it, its daemon stays until cleanup or rm.
    for (name, how) in [("orphan1", "cleanup"), ("orphan2", "rm")] {
        let mut c = e.nook(["run", "--name", name, "bb", "sleep", "1000"]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut owner = c.spawn().unwrap();
        // Running (not just being set up): from then on its death is the owner's.
        wait_for("the container to run", Duration::from_secs(20), || {
            e.ok(["ps", "--no-trunc"]).lines().any(|l| l.contains(name) && l.contains(" Up "))
        });
        assert_eq!(fuse_daemons(&store).len(), 1);
        let daemon = fuse_daemons(&store)[0];
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(owner.id() as i32), nix::sys::signal::Signal::SIGKILL)
            .unwrap();
        owner.wait().unwrap();
        wait_for("the container to stop", Duration::from_secs(20), || {
            e.ok(["ps", "-a", "--no-trunc"]).lines().any(|l| l.contains(name) && l.contains("Exited"))
        });
        assert_eq!(fuse_daemons(&store), vec![daemon], "the daemon outlives its killed owner");
        match how {
            "cleanup" => {
                let out = e.ok(["container", "cleanup", name]);
                assert_eq!(out.trim().len(), 64, "{out}");
                nothing_left(&e);
                e.ok(["rm", name]);
            }
            _ => {
                e.ok(["rm", name]);
                nothing_left(&e);
            }
        }
    }
    e.ok(["rm", "kept"]);
    nothing_left(&e);
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
}

/// An overlayfs mounted (by root) for the test user: kernel overlay refuses it as an upper
/// layer, as on a storage root inside a container.
struct OverlayMount {
    merged: PathBuf,
}

impl OverlayMount {
    fn new(e: &Env) -> OverlayMount {
        let base = e.dir.join("ovl");
        for d in ["l", "u", "w", "m"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        let merged = base.join("m");
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.join("l").display(),
            base.join("u").display(),
            base.join("w").display()
        );
        let mut c = std::process::Command::new("mount");
        c.args(["-t", "overlay", "overlay", "-o", &opts]).arg(&merged);
        let o = run_bounded(&mut c, Duration::from_secs(30));
        assert_eq!(o.code, 0, "mount -t overlay (an overlayfs for the store) failed: {o}");
        std::os::unix::fs::chown(&merged, Some(e.user.uid), Some(e.user.gid)).unwrap();
        OverlayMount { merged }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        // Bounded, without panicking in a drop.
        let mut c = std::process::Command::new("umount");
        c.arg("-l").arg(&self.merged).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        c.process_group(0);
        if let Ok(mut child) = c.spawn() {
            let start = std::time::Instant::now();
            while matches!(child.try_wait(), Ok(None)) {
                if start.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    eprintln!("umount -l {} did not end within 30s", self.merged.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }
}

#[test]
fn falls_back_to_fuse_overlayfs_with_one_notice() {
    if !rig().as_root {
        skip("needs root to mount an overlayfs to put the store on");
        return;
    }
    let mut e = Env::new();
    let ovl = OverlayMount::new(&e);
    let root = ovl.merged.join("store");
    e.vars.push(("NOOK_ROOT".into(), root.display().to_string()));
    e.import_busybox();
    let mut stderr = String::new();
    for name in ["f1", "f2"] {
        let o = e.run([
            "run",
            "--name",
            name,
            "bb",
            "sh",
            "-c",
            "awk '$5 == \"/\" {for (i = 7; i <= NF; i++) if ($i == \"-\") {print $(i+1); exit}}' /proc/self/mountinfo",
        ]);
        assert_eq!(o.code, 0, "{o}");
        assert_eq!(o.stdout, "fuse.fuse-overlayfs\n", "{o}");
        stderr.push_str(&o.stderr);
    }
    assert_eq!(stderr.matches("storage driver fuse-overlayfs").count(), 1, "one notice: {stderr}");
    assert!(stderr.contains("kernel overlay cannot be used") && stderr.contains("overlayfs"), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap();
    assert_eq!(v["store"]["graphDriverName"], "fuse-overlayfs");
    assert_eq!(v["store"]["graphFilesystem"], "overlayfs");
    assert!(v["store"]["graphDriverReason"].as_str().unwrap().contains("kernel overlay cannot be used"));
    // The containers' changes work there too, and nothing is left once they are gone.
    e.ok(["run", "--name", "w", "bb", "sh", "-c", "rm /bin/vi && echo hi > /hi"]);
    assert_eq!(e.ok(["diff", "w"]), "C /bin\nD /bin/vi\nA /hi\n");
    e.ok(["rm", "f1", "f2", "w"]);
    let store = root.clone();
    wait_for("fuse-overlayfs daemons of the store to exit", Duration::from_secs(20), || {
        fuse_daemons(&store).is_empty()
    });
}

fn info(e: &Env) -> serde_json::Value {
    serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap()
}

#[test]
fn the_driver_is_chosen_by_flag_environment_config_or_probe() {
    let mut e = Env::new();
    let v = info(&e);
    assert_eq!(v["store"]["graphDriverName"], "overlay");
    assert!(v["store"]["graphDriverReason"].as_str().unwrap().contains("kernel overlay"), "{v}");
    // storage.conf, with podman's keys.
    let conf = e.home.join(".config/nook");
    fs::create_dir_all(&conf).unwrap();
    fs::write(
        conf.join("storage.conf"),
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"/ignored\"\n\n[storage.options.overlay]\nmount_program = \"/usr/bin/fuse-overlayfs\"\nmountopt = \"nodev\"\n",
    )
    .unwrap();
    if rig().as_root {
        for p in [e.home.join(".config"), conf.clone(), conf.join("storage.conf")] {
            std::os::unix::fs::chown(p, Some(e.user.uid), Some(e.user.gid)).unwrap();
        }
    }
    let v = info(&e);
    assert_eq!(v["store"]["graphDriverName"], "fuse-overlayfs");
    assert!(v["store"]["graphDriverReason"].as_str().unwrap().contains("storage.conf"), "{v}");
    e.import_busybox();
    assert_eq!(
        e.ok([
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "awk '$5 == \"/\" {for (i = 7; i <= NF; i++) if ($i == \"-\") {print $(i+1); exit}}' /proc/self/mountinfo"
        ]),
        "fuse.fuse-overlayfs\n"
    );
    // The environment beats the file, the flag beats the environment.
    e.vars.push(("NOOK_STORAGE_DRIVER".into(), "vfs".into()));
    let v = info(&e);
    assert_eq!(v["store"]["graphDriverName"], "vfs");
    assert!(v["store"]["graphDriverReason"].as_str().unwrap().contains("NOOK_STORAGE_DRIVER"), "{v}");
    let v: serde_json::Value =
        serde_json::from_str(&e.ok(["--storage-driver", "overlay", "info", "--format", "json"])).unwrap();
    assert_eq!(v["store"]["graphDriverName"], "overlay");
    assert!(v["store"]["graphDriverReason"].as_str().unwrap().contains("--storage-driver"), "{v}");
    // A wrong name is one clear error.
    let o = e.run(["--storage-driver", "zfs", "run", "--rm", "bb", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o}");
    assert!(o.stderr.contains("unknown storage driver \"zfs\""), "{o}");
    fs::write(conf.join("storage.conf"), "[storage\n").unwrap();
    e.vars.retain(|(k, _)| k != "NOOK_STORAGE_DRIVER");
    assert!(e.vars.iter().any(|(k, _)| k == "CONTAINERS_REGISTRIES_CONF"), "the rig's registries.conf stays");
    let o = e.run(["run", "--rm", "bb", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("storage.conf"), "{o}");
}
