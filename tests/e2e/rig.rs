//! The rig's own fixtures are what later tests rely on.

use std::fs;

use sha2::{Digest, Sha256};

use crate::common::{fixtures, rig};

#[test]
fn oci_layout_fixture_is_consistent() {
    let layout = rig().fixtures.join("oci");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    let blob = |d: &str| fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
    let mut layer_counts = Vec::new();
    for m in manifests {
        let data = blob(m["digest"].as_str().unwrap());
        assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&data))), m["digest"].as_str().unwrap());
        let man: serde_json::Value = serde_json::from_slice(&data).unwrap();
        let cfg: serde_json::Value = serde_json::from_slice(&blob(man["config"]["digest"].as_str().unwrap())).unwrap();
        let layers = man["layers"].as_array().unwrap();
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), layers.len());
        for l in layers {
            let d = blob(l["digest"].as_str().unwrap());
            assert_eq!(d.len() as u64, l["size"].as_u64().unwrap());
            assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&d))), l["digest"].as_str().unwrap());
        }
        layer_counts.push(layers.len());
    }
    assert_eq!(layer_counts, vec![1, 3]);
}

#[test]
fn busybox_fixture_is_static_and_complete() {
    assert!(fixtures::busybox_is_static());
    let t = fs::read(rig().fixtures.join("busybox.tar")).unwrap();
    let mut a = tar::Archive::new(&t[..]);
    let names: Vec<String> = a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    for want in ["bin/busybox", "bin/sh", "etc/passwd", "tmp"] {
        assert!(names.iter().any(|n| n.trim_end_matches('/') == want), "{want} missing from busybox.tar");
    }
}
