//! Help, version and info.

use crate::common::Env;

const VERBS: [&str; 9] = ["run", "import", "images", "rmi", "ps", "rm", "info", "unshare", "version"];

#[test]
fn help_and_version() {
    let e = Env::new();
    let h = e.ok(["--help"]);
    for v in VERBS {
        assert!(h.contains(v), "--help lacks {v}: {h}");
    }
    assert!(e.ok(["help"]).contains("Usage"));
    for v in VERBS {
        let o = e.ok([v, "--help"]);
        assert!(o.contains("Usage"), "{v} --help: {o}");
        assert!(e.ok(["help", v]).contains("Usage"));
    }
    assert!(e.ok(["--version"]).starts_with("nook "));
    assert!(e.ok(["version"]).contains(env!("CARGO_PKG_VERSION")));
    assert_eq!(e.run(["no-such-verb"]).code, 125);
}

/// Kernel overlay works in a user namespace from Linux 5.11 on local filesystems that support
/// user xattrs; where it does, nook must pick it (and containers must be mounted with it).
#[test]
fn kernel_overlay_is_chosen_where_it_works() {
    let e = Env::new();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.trim().split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap(), v.next().unwrap());
    let fs = nix::sys::statfs::statfs(&e.dir).unwrap().filesystem_type().0;
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    if (major, minor) < (5, 11) || ![EXT4, XFS, BTRFS, TMPFS].contains(&fs) {
        crate::common::skip("kernel overlay in a user namespace needs Linux 5.11+ on ext4, xfs, btrfs or tmpfs");
        return;
    }
    let info: serde_json::Value = serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap();
    assert_eq!(info["store"]["graphDriverName"], "overlay", "{}", info["store"]["graphDriverReason"]);
    e.import_busybox();
    let m = e.ok(["run", "--rm", "bb", "sh", "-c", "grep ' / / ' /proc/self/mountinfo"]);
    assert!(m.contains(" - overlay overlay ") && m.contains("userxattr"), "{m}");
}

#[test]
fn info_reports_maps_storage_and_cgroups() {
    let e = Env::new();
    let v: serde_json::Value = serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap();
    let m = &v["host"]["idMappings"];
    assert_eq!(m["uidmap"][0]["host_id"], e.user.uid);
    assert_eq!(m["uidmap"][1]["size"], 65536);
    assert!(m["source"].as_str().unwrap().contains("newuidmap"));
    assert_eq!(v["host"]["rootless"], true);
    assert_eq!(v["store"]["graphRoot"].as_str().unwrap(), e.store().to_str().unwrap());
    assert!(["overlay", "vfs"].contains(&v["store"]["graphDriverName"].as_str().unwrap()));
    assert!(!v["store"]["graphDriverReason"].as_str().unwrap().is_empty());
    assert!(["v1", "v2", "hybrid", "unknown"].contains(&v["host"]["cgroupVersion"].as_str().unwrap()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(v["host"]["kernel"].as_str().unwrap(), kernel.trim());
    let human = e.ok(["info"]);
    for k in [
        "idMappings:",
        "uidmap:",
        "graphRoot:",
        "graphDriverName:",
        "runRoot:",
        "cgroupVersion:",
        "kernel:",
        "missing:",
    ] {
        assert!(human.contains(k), "{k} missing from: {human}");
    }
}
