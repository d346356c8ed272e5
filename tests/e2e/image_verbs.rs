//! `tag`, `untag`, `images` flags and filters, `image inspect`, `history`, `image prune`, `rmi -a`.

use crate::common::registry::Registry;
use crate::common::{Env, rig};
use crate::pull::count;

#[test]
fn tag_untag_and_images_filters() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["tag", "bb", "other:1", "quay.io/team/app:2"]);
    let images = e.ok(["images"]);
    for n in ["localhost/bb", "localhost/other", "quay.io/team/app"] {
        assert!(images.lines().any(|l| l.starts_with(n)), "{n}: {images}");
    }
    // One image, three names.
    assert_eq!(e.ok(["images", "-q"]).lines().count(), 1);
    assert_eq!(e.ok(["run", "--rm", "quay.io/team/app:2", "echo", "tagged"]), "tagged\n");
    // reference filters.
    let f = |p: &str| e.ok(["images", "--filter", &format!("reference={p}"), "--format", "json"]);
    let names = |s: String| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["Names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(names(f("app")).len(), 3);
    assert!(names(f("nothing")).is_empty());
    assert_eq!(e.ok(["images", "-q", "--filter", "reference=*/team/*"]).lines().count(), 1);
    assert_eq!(e.ok(["images", "-q", "--filter", "reference=other:2"]), "");
    // untag one name, then all.
    e.ok(["untag", "bb", "other:1"]);
    assert!(!e.ok(["images"]).contains("localhost/other"));
    e.ok(["untag", "bb"]);
    let images = e.ok(["images"]);
    assert!(images.lines().nth(1).unwrap().starts_with("<none>"), "{images}");
    // dangling filters.
    assert_eq!(e.ok(["images", "-q", "--filter", "dangling=true"]).lines().count(), 1);
    assert_eq!(e.ok(["images", "-q", "--filter", "dangling=false"]), "");
    let o = e.run(["images", "--filter", "bogus=1"]);
    assert_eq!(o.code, 125, "{o}");
    // prune removes the unnamed image, its layer and blobs.
    let id = e.ok(["images", "-q", "--no-trunc"]);
    assert_eq!(e.ok(["image", "prune"]), id.trim_start_matches("sha256:"));
    assert_eq!(e.ok(["images", "-q"]), "");
    assert_eq!(count(&e.store().join("layers")), 0);
    assert_eq!(count(&e.store().join("blobs/sha256")), 0);
}

#[test]
fn prune_all_keeps_images_in_use_and_rmi_all() {
    let e = Env::new();
    e.import_busybox();
    let tar = rig().fixtures.join("busybox.tar.gz");
    e.ok(["import", tar.to_str().unwrap(), "second"]);
    e.ok(["run", "--name", "keeper", "bb", "true"]);
    let removed = e.ok(["image", "prune", "-a"]);
    assert_eq!(removed.lines().count(), 1, "{removed}");
    let left = e.ok(["images"]);
    assert!(left.contains("localhost/bb") && !left.contains("localhost/second"), "{left}");
    e.ok(["rm", "keeper"]);
    e.ok(["rmi", "-a"]);
    assert_eq!(e.ok(["images", "-q"]), "");
    assert_eq!(count(&e.store().join("layers")), 0);
}

#[test]
fn inspect_history_and_json_of_a_pulled_image() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:latest", &[]);
    let (_, digest) = reg.manifest("test/ml", "latest");
    let e = Env::new();
    let name = format!("{}/test/ml:latest", reg.addr);
    let id = e.ok(["pull", "-q", &name]).trim().to_string();
    let v: serde_json::Value = serde_json::from_str(&e.ok(["image", "inspect", &name])).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], id.as_str());
    assert_eq!(i["Digest"], digest.as_str());
    assert_eq!(i["RepoTags"][0], name.as_str());
    assert_eq!(i["RepoDigests"][0], format!("{}/test/ml@{digest}", reg.addr).as_str());
    assert_eq!(i["Architecture"], "amd64");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(i["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(i["ManifestType"], "application/vnd.oci.image.manifest.v1+json");
    assert!(i["Size"].as_u64().unwrap() > 1_000_000);
    // Unknown image: the JSON of the known ones, then an error.
    let o = e.run(["image", "inspect", "nosuchimage"]);
    assert_eq!(o.code, 125, "{o}");
    let o = e.run(["image", "inspect", &name, "nosuchimage"]);
    assert_eq!(o.code, 125, "{o}");
    let known: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|err| panic!("{err}: {o}"));
    assert_eq!(known.as_array().map(Vec::len), Some(1), "{o}");
    assert_eq!(known[0]["Id"], id.as_str(), "{o}");
    assert!(o.stderr.starts_with("Error: ") && o.stderr.contains("nosuchimage"), "{o}");
    // images --format json and --digests.
    let j: serde_json::Value = serde_json::from_str(&e.ok(["images", "--format", "json"])).unwrap();
    assert_eq!(j[0]["Id"], id.as_str());
    assert_eq!(j[0]["Digest"], digest.as_str());
    assert!(e.ok(["images", "--digests"]).lines().next().unwrap().contains("DIGEST"));
    // history: one row per history entry, newest first, the top one carries the image ID.
    let h = e.ok(["history", &name]);
    let lines: Vec<&str> = h.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("CREATED BY"), "{h}");
    assert_eq!(lines.len(), 4, "{h}");
    assert!(lines[1].starts_with(&id[..12]) && lines[2].starts_with("<missing>"), "{h}");
    let hj: serde_json::Value = serde_json::from_str(&e.ok(["history", "--format", "json", &name])).unwrap();
    assert_eq!(hj.as_array().unwrap().len(), 3);
    assert_eq!(hj[0]["createdBy"], "nook test rig");
}
