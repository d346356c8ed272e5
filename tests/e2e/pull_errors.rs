//! Bad input for `nook pull`, each its own test: a one-line error, exit 125, nothing stored.

use std::fs;
use std::path::Path;

use crate::common::fixtures::{Entry, layout_with_layers, tar_with};
use crate::common::hostile::{Hostile, reply};
use crate::common::registry::{Registry, free_port};
use crate::common::{Env, rig, tree};
use crate::pull::{assert_nothing_stored, assert_one_line_error};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `nook pull -q REF` in a fresh environment: one line, 125, `want` in it, nothing stored.
fn refused(reference: &str, want: &str) -> Env {
    let e = Env::new();
    e.ok(["images"]); // the store exists
    let o = e.run(["pull", "-q", "--", reference]);
    assert_one_line_error(&o, want);
    assert_nothing_stored(&e);
    e
}

/// The digest of the (only) layer of `repo:tag` in `reg`.
fn layer_digest(reg: &Registry, repo: &str, tag: &str) -> String {
    let (m, _) = reg.manifest(repo, tag);
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[test]
fn blob_digest_mismatch() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    // Corrupt the blob in the registry's own storage: same size, different bytes.
    let f = reg.blob_file(&layer_digest(&reg, "test/bb", "latest"));
    let mut data = fs::read(&f).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&f, data).unwrap();
    refused(&format!("{}/test/bb", reg.addr), "digest mismatch");
}

#[test]
fn truncated_blob() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let digest = layer_digest(&reg, "test/bb", "latest");
    let f = reg.blob_file(&digest);
    let data = fs::read(&f).unwrap();
    fs::write(&f, &data[..data.len() / 2]).unwrap();
    refused(&format!("{}/test/bb", reg.addr), &digest);
}

#[test]
fn manifest_that_is_not_json() {
    let h = Hostile::start(|_, path| {
        if path == "/v2/" {
            reply(200, "application/json", b"{}".to_vec())
        } else {
            reply(200, OCI_MANIFEST, b"<html>not a manifest</html>".to_vec())
        }
    });
    refused(&format!("{}/test/bb", h.addr), "not valid JSON");
}

#[test]
fn manifest_larger_than_4_mib() {
    let h = Hostile::start(|_, path| {
        if path == "/v2/" {
            return reply(200, "application/json", b"{}".to_vec());
        }
        let mut body =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":""#
                .to_vec();
        body.extend(std::iter::repeat_n(b'a', 5 << 20));
        body.extend_from_slice(br#""}}"#);
        reply(200, OCI_MANIFEST, body)
    });
    refused(&format!("{}/test/bb", h.addr), "larger than 4 MiB");
}

#[test]
fn unknown_manifest_media_type() {
    let h = Hostile::start(|_, path| {
        if path == "/v2/" {
            return reply(200, "application/json", b"{}".to_vec());
        }
        reply(200, "application/vnd.example.thing.v1+json", br#"{"schemaVersion":2,"layers":[]}"#.to_vec())
    });
    refused(&format!("{}/test/bb", h.addr), "unsupported manifest media type");
}

#[test]
fn unknown_layer_media_type() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let (m, _) = reg.manifest("test/bb", "latest");
    let mut m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    m["layers"][0]["mediaType"] = "application/vnd.example.layer.v1".into();
    reg.put_manifest("test/bb", "weird", OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
    refused(&format!("{}/test/bb:weird", reg.addr), "unsupported layer media type");
}

#[test]
fn schema1_manifests_are_refused() {
    let h = Hostile::start(|_, path| {
        if path == "/v2/" {
            return reply(200, "application/json", b"{}".to_vec());
        }
        reply(
            200,
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion":1,"name":"test/bb","tag":"latest","fsLayers":[]}"#.to_vec(),
        )
    });
    refused(&format!("{}/test/bb", h.addr), "schema 1");
}

/// Pushes an image whose only layer is `layer(outside)` and pulls it: refused, nothing written
/// anywhere. `outside` is a directory of the test user's, so a layer aimed at it could really
/// write there.
fn hostile_layer(layer: impl FnOnce(&Path) -> Vec<u8>, want: &str, outside_name: &str) {
    let Some(reg) = Registry::start() else { return };
    let e = Env::new();
    e.ok(["images"]); // the store exists
    let outside = e.mkdir("outside");
    let layout = reg.dir.join("layout");
    layout_with_layers(&layout, &[layer(&outside)]);
    reg.push(&layout, "img", "test/evil:latest", &[]);
    let o = e.run(["pull", "-q", "--", &format!("{}/test/evil", reg.addr)]);
    assert_one_line_error(&o, want);
    assert_nothing_stored(&e);
    assert_eq!(tree(&outside), Vec::<String>::new(), "written in the directory the layer aimed at");
    // Nothing escaped: no file of that name anywhere in the test's world or the rig's base.
    for base in [&e.dir, &rig().base] {
        let hits: Vec<String> = tree(base).into_iter().filter(|p| p.ends_with(outside_name)).collect();
        assert!(hits.is_empty(), "written outside the layer: {hits:?}");
    }
}

#[test]
fn layer_with_dotdot_entry() {
    hostile_layer(|_| tar_with(&[Entry::File("../../../../evil-dotdot", b"x", 0o644)]), "'..'", "evil-dotdot");
}

#[test]
fn layer_with_absolute_path() {
    hostile_layer(
        |outside| tar_with(&[Entry::File(&format!("{}/evil-absolute", outside.display()), b"x", 0o644)]),
        "absolute",
        "evil-absolute",
    );
}

#[test]
fn layer_with_symlink_escape() {
    hostile_layer(
        |outside| {
            tar_with(&[Entry::Symlink("esc", outside.to_str().unwrap()), Entry::File("esc/evil-symlink", b"x", 0o644)])
        },
        "symlink",
        "evil-symlink",
    );
}

#[test]
fn layer_with_hardlink_escape() {
    hostile_layer(
        |_| tar_with(&[Entry::Hardlink("evil-hardlink", "../../../../../etc/passwd")]),
        "hardlink",
        "evil-hardlink",
    );
}

#[test]
fn registry_answers_401() {
    let Some(reg) = Registry::start_with_auth("user", "secret") else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    refused(&format!("{}/test/bb", reg.addr), "authentication required");
}

#[test]
fn registry_answers_404() {
    let Some(reg) = Registry::start() else { return };
    let e = refused(&format!("{}/test/nothing-here", reg.addr), "not found (404)");
    // Without -q the progress line comes first, and the error is still one line, the last.
    let o = e.run(["pull", &format!("{}/test/nothing-here", reg.addr)]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(o.stderr.lines().filter(|l| l.starts_with("Error: ")).count(), 1, "{o}");
    assert!(o.stderr.trim_end().lines().last().unwrap().starts_with("Error: "), "{o}");
}

#[test]
fn registry_answers_500() {
    let h = Hostile::start(|_, path| {
        if path == "/v2/" {
            return reply(200, "application/json", b"{}".to_vec());
        }
        reply(500, "application/json", br#"{"errors":[{"code":"UNKNOWN","message":"boom"}]}"#.to_vec())
    });
    refused(&format!("{}/test/bb", h.addr), "500");
}

#[test]
fn registry_not_listening() {
    let port = free_port();
    refused(&format!("127.0.0.1:{port}/test/bb"), "cannot connect");
}

#[test]
fn invalid_references() {
    for bad in ["upper/CASE", "UPPER", "a//b", "bb:", "bb@sha256:xyz", "-bb", "bb:a:b/c", "a b", "bb@md5:0000", ""] {
        let e = refused(bad, "invalid reference");
        drop(e);
    }
}
