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
