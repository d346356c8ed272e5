//! `nook push`, checked by pulling back with the real `skopeo` and with nook.

use std::process::Command;
use std::time::Duration;

use crate::common::registry::Registry;
use crate::common::{Env, run_bounded};
use crate::pull::assert_one_line_error;

#[test]
fn push_an_imported_image_and_pull_it_back() {
    let Some(reg) = Registry::start() else { return };
    let e = Env::new();
    e.import_busybox();
    let dest = format!("{}/pushed/bb:v1", reg.addr);
    let o = e.run(["push", "bb", &dest]);
    assert_eq!(o.code, 0, "{o}");
    // skopeo sees what nook pushed, with the same config (image ID).
    let o = run_bounded(
        Command::new("skopeo").args(["inspect", "--tls-verify=false", "--raw", &format!("docker://{dest}")]),
        Duration::from_secs(120),
    );
    assert_eq!(o.code, 0, "skopeo inspect {dest} failed: {o}");
    let m: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|err| panic!("{err}: {o}"));
    let id = e.ok(["images", "-q", "--no-trunc", "bb"]);
    assert_eq!(format!("{}\n", m["config"]["digest"].as_str().unwrap()), id);
    // Another user-environment pulls and runs it.
    let e2 = Env::new();
    e2.ok(["pull", "-q", &dest]);
    assert_eq!(e2.ok(["run", "--rm", &dest, "echo", "round trip"]), "round trip\n");
    // Pushing again: the registry already has every blob.
    let o = e.run(["push", "bb", &dest]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stderr.contains("already exists"), "{o}");
}

#[test]
fn push_a_pulled_multilayer_image_keeps_its_digests_and_needs_login_where_required() {
    let Some(src) = Registry::start() else { return };
    let Some(dst) = Registry::start_with_auth("carol", "pw") else { return };
    src.push_fixture("multilayer", "test/ml:latest", &[]);
    let (_, digest) = src.manifest("test/ml", "latest");
    let e = Env::new();
    let from = format!("{}/test/ml", src.addr);
    e.ok(["pull", "-q", &from]);
    let to = format!("{}/copy/ml:latest", dst.addr);
    let o = e.run(["push", "-q", &from, &format!("docker://{to}")]);
    assert_one_line_error(&o, "authentication required");
    e.ok(["login", "-u", "carol", "-p", "pw", &dst.addr]);
    let digestfile = e.mkdir("out").join("digest");
    let df = digestfile.to_str().unwrap();
    e.ok(["push", "--digestfile", df, &from, &to]);
    // The manifest went up byte for byte: same digest as the source registry's.
    assert_eq!(std::fs::read_to_string(&digestfile).unwrap_or_default(), digest);
    let (_, pushed) = dst.manifest("copy/ml", "latest");
    assert_eq!(pushed, digest);
    // And it is a working image.
    let e2 = Env::new();
    e2.ok(["pull", "-q", "--creds", "carol:pw", &to]);
    assert_eq!(e2.ok(["run", "--rm", &to, "cat", "/layer3.txt"]), "zstd layer\n");
}

#[test]
fn push_errors() {
    let Some(reg) = Registry::start() else { return };
    let e = Env::new();
    e.import_busybox();
    let o = e.run(["push", "nosuchimage", &format!("{}/x/y", reg.addr)]);
    assert_one_line_error(&o, "image not known");
    let o = e.run(["push", "bb", &format!("{}/x/y@sha256:{}", reg.addr, "a".repeat(64))]);
    assert_one_line_error(&o, "cannot push to a digest");
    let o = e.run(["push", "bb", "127.0.0.1:1/x/y"]);
    assert_one_line_error(&o, "cannot connect");
}
