//! `nook pull` and `nook run` of a missing image, against the real distribution registry.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use crate::common::registry::{Registry, self_signed_cert};
use crate::common::{Env, Out, run_bounded};

/// Entries of a store directory (ignoring lock files).
pub fn count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .map(|r| r.flatten().filter(|e| !e.file_name().to_string_lossy().ends_with(".lock")).count())
        .unwrap_or(0)
}

/// No image, layer, blob or temporary leftover in the store.
pub fn assert_nothing_stored(e: &Env) {
    assert_eq!(e.ok(["images", "-q"]), "", "an image was recorded");
    let s = e.store();
    assert_eq!(count(&s.join("layers")), 0, "a layer was stored: {:?}", crate::common::tree(&s.join("layers")));
    assert_eq!(count(&s.join("blobs/sha256")), 0, "a blob was stored: {:?}", crate::common::tree(&s.join("blobs")));
    assert_eq!(count(&s.join("tmp")), 0, "temporary files were left: {:?}", crate::common::tree(&s.join("tmp")));
}

/// A failed command: exit 125 and exactly one line `Error: …` containing `want`.
pub fn assert_one_line_error(o: &Out, want: &str) {
    assert_eq!(o.code, 125, "{o}");
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {o}");
    assert!(lines[0].starts_with("Error: "), "{o}");
    assert!(lines[0].contains(want), "expected {want:?} in the error: {o}");
}

#[test]
fn pull_oci_multilayer_image_and_run_it() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:v1", &[]);
    let e = Env::new();
    let name = format!("{}/test/ml:v1", reg.addr);
    let o = e.run(["pull", &name]);
    assert_eq!(o.code, 0, "{o}");
    // The final (and only) stdout line is the image ID; progress went to stderr as lines.
    let id = o.stdout.trim();
    assert!(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{o}");
    assert!(o.stderr.contains("Trying to pull") && o.stderr.contains("Copying blob"), "{o}");
    assert!(e.ok(["images"]).lines().any(|l| l.starts_with(&format!("{}/test/ml", reg.addr)) && l.contains("v1")));
    assert_eq!(count(&e.store().join("layers")), 3);
    // Every layer feature survived: whiteout, opaque directory, hardlink, symlink, setuid,
    // owners in the subordinate range, and the zstd layer.
    let out = e.ok([
        "run",
        "--rm",
        &name,
        "sh",
        "-c",
        "test -e /bin/vi && echo vi-present; ls /opt; cat /layer3.txt; readlink /data/soft; \
         [ $(stat -c %i /data/orig) = $(stat -c %i /data/hard) ] && echo hardlinked; \
         stat -c '%u:%g %a' /data/setuid /data/owned /data/owned2",
    ]);
    assert_eq!(out, "new\nzstd layer\norig\nhardlinked\n0:0 4755\n1000:1000 640\n2000:3000 600\n");
    // Pulling again stores nothing new and says the blobs exist.
    let o = e.run(["pull", &name]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout.trim(), id);
    assert!(o.stderr.contains("already exists"), "{o}");
    // -q: only the ID.
    let o = e.run(["pull", "-q", &name]);
    assert_eq!((o.code, o.stdout.trim(), o.stderr.as_str()), (0, id, ""), "{o}");
}

#[test]
fn pull_docker_v2s2_manifest() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:v2s2", &["--format", "v2s2"]);
    let (m, _) = reg.manifest("test/bb", "v2s2");
    assert!(String::from_utf8_lossy(&m).contains("application/vnd.docker.distribution.manifest.v2+json"));
    let e = Env::new();
    let name = format!("{}/test/bb:v2s2", reg.addr);
    e.ok(["pull", "-q", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "echo", "v2s2"]), "v2s2\n");
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(["image", "inspect", &name])).unwrap();
    assert_eq!(inspect[0]["ManifestType"], "application/vnd.docker.distribution.manifest.v2+json");
}

#[test]
fn pull_oci_index_selects_the_platform() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multiarch", "test/ma:latest", &["--all"]);
    let (idx, digest) = reg.manifest("test/ma", "latest");
    assert!(String::from_utf8_lossy(&idx).contains("application/vnd.oci.image.index.v1+json"));
    let name = format!("{}/test/ma", reg.addr);
    let e = Env::new();
    e.ok(["pull", "-q", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "cat", "/arch"]), "amd64\n");
    // The RepoDigest is the index's digest; pulling by it finds the same image.
    assert!(e.ok(["images", "--digests"]).contains(&digest));
    let id = e.ok(["images", "-q", "--no-trunc"]);
    assert_eq!(id.lines().count(), 1, "{id}");
    let by_digest = format!("{name}@{digest}");
    assert_eq!(e.ok(["pull", "-q", &by_digest]).trim(), id.trim().trim_start_matches("sha256:"));
    assert_eq!(e.ok(["images", "-q", "--no-trunc"]), id, "pulling by the digest stored no other image");
    assert_eq!(e.ok(["run", "--rm", &by_digest, "cat", "/arch"]), "amd64\n");
    let e2 = Env::new();
    e2.ok(["pull", "-q", "--platform", "linux/arm64", &name]);
    assert_eq!(e2.ok(["run", "--rm", &name, "cat", "/arch"]), "arm64\n");
    let e3 = Env::new();
    let o = e3.run(["pull", "--platform", "linux/s390x", &name]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("no image for platform linux/s390x") && o.stderr.contains("linux/arm64"), "{o}");
    assert_nothing_stored(&e3);
    let o = e3.run(["pull", "--platform", "linux", &name]);
    assert_one_line_error(&o, "invalid platform");
}

#[test]
fn pull_docker_manifest_list() {
    let Some(reg) = Registry::start() else { return };
    // Each platform as a v2s2 image (skopeo), then a docker manifest list naming both.
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        reg.push_fixture(&format!("ma-{arch}"), &format!("test/list:{arch}"), &["--format", "v2s2"]);
        let (m, d) = reg.manifest("test/list", arch);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": d, "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": entries,
    });
    let mt = "application/vnd.docker.distribution.manifest.list.v2+json";
    reg.put_manifest("test/list", "latest", mt, &serde_json::to_vec(&list).unwrap());
    let e = Env::new();
    let name = format!("{}/test/list:latest", reg.addr);
    e.ok(["pull", "-q", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "cat", "/arch"]), "amd64\n");
    let e2 = Env::new();
    e2.ok(["pull", "-q", "--platform=linux/arm64", &name]);
    assert_eq!(e2.ok(["run", "--rm", &name, "cat", "/arch"]), "arm64\n");
}

#[test]
fn pull_by_digest() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let (_, digest) = reg.manifest("test/bb", "latest");
    let e = Env::new();
    let name = format!("{}/test/bb@{digest}", reg.addr);
    e.ok(["pull", "-q", &name]);
    let images = e.ok(["images"]);
    assert!(
        images.lines().any(|l| l.starts_with(&format!("{}/test/bb ", reg.addr)) && l.contains("<none>")),
        "{images}"
    );
    assert_eq!(e.ok(["run", "--rm", &name, "echo", "by-digest"]), "by-digest\n");
    // A digest the registry does not have.
    let bad = format!("{}/test/bb@sha256:{}", reg.addr, "0".repeat(64));
    let o = e.run(["pull", &bad]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("not found"), "{o}");
}

/// Points this environment at its own registries.conf.
pub fn write_conf(e: &mut Env, body: &str) {
    let p = e.dir.join("registries.conf");
    fs::write(&p, body).unwrap();
    crate::common::registry::share(&p);
    // Later variables win: this replaces the rig's default.
    e.vars.push(("CONTAINERS_REGISTRIES_CONF".into(), p.display().to_string()));
}

#[test]
fn short_names_resolve_through_search_registries() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "bb:latest", &[]);
    let mut e = Env::new();
    // Without search registries (the rig's default here) a short name is refused at once.
    let o = e.run(["pull", "bb"]);
    assert_one_line_error(&o, "short-name");
    write_conf(&mut e, &format!("unqualified-search-registries = [\"127.0.0.1:1\", \"{}\"]\n", reg.addr));
    let o = e.run(["pull", "bb"]);
    assert_eq!(o.code, 0, "{o}");
    assert!(e.ok(["images"]).contains(&format!("{}/bb ", reg.addr)));
    assert_eq!(e.ok(["run", "--rm", "bb", "echo", "short"]), "short\n");
}

#[test]
fn registries_conf_mirrors_and_blocked() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "mirrored/bb:latest", &[]);
    let mut e = Env::new();
    // example.invalid is never contacted: its mirror (the test registry) has the image.
    write_conf(
        &mut e,
        &format!(
            "[[registry]]\nprefix = \"example.invalid/team\"\nlocation = \"127.0.0.1:1/nothing\"\n[[registry.mirror]]\nlocation = \"{}/mirrored\"\ninsecure = true\n\n[[registry]]\nlocation = \"blocked.invalid\"\nblocked = true\n",
            reg.addr
        ),
    );
    e.ok(["pull", "-q", "example.invalid/team/bb"]);
    assert!(e.ok(["images"]).contains("example.invalid/team/bb"));
    let o = e.run(["pull", "blocked.invalid/x/y"]);
    assert_one_line_error(&o, "blocked");
}

#[test]
fn run_pulls_a_missing_image() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/bb", reg.addr);
    // --pull=never: not there, not pulled.
    let o = e.run(["run", "--rm", "--pull=never", &name, "true"]);
    assert_one_line_error(&o, "image not known");
    // The default (missing) pulls, quietly when stderr is not a terminal.
    let o = e.run(["run", "--rm", &name, "echo", "pulled"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "pulled\n"), "{o}");
    assert_eq!(e.ok(["images", "-q"]).lines().count(), 1);
    // A missing image the registry does not have: one line, 125.
    let o = e.run(["run", "--rm", &format!("{}/test/nope", reg.addr), "true"]);
    assert_one_line_error(&o, "not found");
    // --pull=always pulls again (and fails when the registry is gone); newer falls back to the
    // stored image.
    assert_eq!(e.ok(["run", "--rm", "--pull=always", &name, "echo", "a"]), "a\n");
    drop(reg);
    let o = e.run(["run", "--rm", "--pull=always", &name, "true"]);
    assert_one_line_error(&o, "cannot connect");
    let o = e.run(["run", "--rm", "--pull=newer", &name, "echo", "stored"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "stored\n"), "{o}");
    // Present image, default policy: no registry contact at all (it is gone).
    assert_eq!(e.ok(["run", "--rm", &name, "echo", "local"]), "local\n");
}

#[test]
fn layers_shared_by_two_images_are_stored_once() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    reg.push_fixture("ma-amd64", "test/plus:latest", &[]);
    let e = Env::new();
    e.ok(["pull", "-q", &format!("{}/test/bb", reg.addr)]);
    let du = |p: &Path| -> u64 {
        let o = run_bounded(std::process::Command::new("du").args(["-s", "-B1"]).arg(p), Duration::from_secs(60));
        assert_eq!(o.code, 0, "du -s {} failed: {o}", p.display());
        o.stdout.split_whitespace().next().unwrap().parse().unwrap()
    };
    let one = du(&e.store().join("layers")) + du(&e.store().join("blobs"));
    e.ok(["pull", "-q", &format!("{}/test/plus", reg.addr)]);
    let two = du(&e.store().join("layers")) + du(&e.store().join("blobs"));
    // The second image adds only its small marker layer: the busybox layer is shared.
    assert_eq!(count(&e.store().join("layers")), 2);
    assert!(two < one + one / 10, "the shared layer was stored twice: {one} -> {two} bytes");
    // The blob of the shared layer is stored once: 2 layer blobs + 2 configs + 2 manifests.
    assert_eq!(count(&e.store().join("blobs/sha256")), 6);
    assert_eq!(e.ok(["run", "--rm", &format!("{}/test/plus", reg.addr), "cat", "/arch"]), "amd64\n");
    // Removing one image keeps the shared layer for the other.
    e.ok(["rmi", &format!("{}/test/plus", reg.addr)]);
    assert_eq!(count(&e.store().join("layers")), 1);
    assert_eq!(e.ok(["run", "--rm", &format!("{}/test/bb", reg.addr), "echo", "ok"]), "ok\n");
}

#[test]
fn two_concurrent_pulls_both_succeed_and_store_each_layer_once() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/ml", reg.addr);
    for _round in 0..3 {
        let a = e
            .nook(["pull", "-q", &name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let b = e
            .nook(["pull", "-q", &name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let oa = crate::common::wait_bounded(a, Duration::from_secs(120), "pull a");
        let ob = crate::common::wait_bounded(b, Duration::from_secs(120), "pull b");
        assert_eq!(oa.code, 0, "{oa}");
        assert_eq!(ob.code, 0, "{ob}");
        assert_eq!(oa.stdout, ob.stdout);
        assert_eq!(count(&e.store().join("layers")), 3);
        assert_eq!(count(&e.store().join("blobs/sha256")), 5);
        assert_eq!(e.ok(["images", "-q"]).lines().count(), 1);
        e.ok(["rmi", "-a"]);
        assert_eq!(count(&e.store().join("layers")), 0);
    }
}

#[test]
fn a_pull_killed_at_any_point_leaves_no_broken_image_and_pulling_again_works() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/ml", reg.addr);
    for point in ["manifest", "blob-downloaded", "layer-unpacked", "blob-committed", "before-record"] {
        let mut c = e.nook(["pull", "-q", &name]);
        c.env("_NOOK_FAULT_KILL", point);
        let o = run_bounded(&mut c, Duration::from_secs(120));
        assert_eq!(o.code, 128 + 9, "the pull was not killed at {point}: {o}");
        // Whatever the kill left behind, no image is listed.
        assert_eq!(e.ok(["images", "-q"]), "", "a broken image is listed after a kill at {point}");
        let o = e.run(["pull", "-q", &name]);
        assert_eq!(o.code, 0, "pulling after a kill at {point}: {o}");
        assert_eq!(e.ok(["run", "--rm", &name, "cat", "/layer3.txt"]), "zstd layer\n");
        assert_eq!(count(&e.store().join("layers")), 3, "after a kill at {point}");
        // The next command cleared what the killed one left in tmp/.
        assert_eq!(count(&e.store().join("tmp")), 0, "leftovers after a kill at {point}");
        e.ok(["rmi", "-a"]);
        assert_eq!(count(&e.store().join("blobs/sha256")), 0, "after a kill at {point}");
    }
    // A real SIGKILL from outside, mid-transfer or not: the same guarantees.
    let mut c = e.nook(["pull", "-q", &name]);
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let _ = child.kill();
    let st = child.wait().unwrap();
    assert!(st.success() || st.signal() == Some(9));
    let listed = e.ok(["images", "-q"]);
    if !listed.is_empty() {
        // It finished before the kill: the image must be complete.
        assert_eq!(e.ok(["run", "--rm", &name, "cat", "/layer3.txt"]), "zstd layer\n");
    }
    e.ok(["pull", "-q", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "cat", "/layer3.txt"]), "zstd layer\n");
}

#[test]
fn progress_bars_on_a_terminal_and_nothing_with_quiet() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/ml", reg.addr);
    // `script` gives nook a terminal: one bar per layer with bytes and rate, then the ID.
    let cmd = format!("{} pull {name}", crate::common::rig().nook.display());
    let o = run_bounded(
        e.command("script").env("TERM", "xterm").args(["-qec", &cmd, "/dev/null"]),
        Duration::from_secs(120),
    );
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("Copying blob") && o.stdout.contains("/s") && o.stdout.contains("done"), "{o}");
    let id = e.ok(["images", "-q", "--no-trunc"]).trim().trim_start_matches("sha256:").to_string();
    assert!(o.stdout.trim_end().ends_with(&id), "the last line is the image ID: {o}");
    e.ok(["rmi", "-a"]);
    let cmd = format!("{} pull -q {name}", crate::common::rig().nook.display());
    let o = run_bounded(
        e.command("script").env("TERM", "xterm").args(["-qec", &cmd, "/dev/null"]),
        Duration::from_secs(120),
    );
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout.trim(), id, "{o}");
}

#[test]
fn pulls_racing_with_prune_and_rmi_never_leave_a_broken_image() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/ml", reg.addr);
    for _round in 0..4 {
        let spawn = |args: &[&str]| {
            e.nook(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        };
        let p = spawn(&["pull", "-q", &name]);
        let r1 = spawn(&["image", "prune", "-a"]);
        let r2 = spawn(&["rmi", "-a", "-f"]);
        let op = crate::common::wait_bounded(p, Duration::from_secs(120), "pull");
        let o1 = crate::common::wait_bounded(r1, Duration::from_secs(120), "prune");
        let o2 = crate::common::wait_bounded(r2, Duration::from_secs(120), "rmi");
        assert_eq!(op.code, 0, "{op}");
        assert_eq!(o1.code, 0, "{o1}");
        assert_eq!(o2.code, 0, "{o2}");
        // Whatever order they ran in: a listed image is complete and runs.
        if !e.ok(["images", "-q"]).is_empty() {
            assert_eq!(e.ok(["run", "--rm", &name, "cat", "/layer3.txt"]), "zstd layer\n");
        }
        e.ok(["rmi", "-a"]);
        assert_eq!(count(&e.store().join("layers")), 0);
        assert_eq!(count(&e.store().join("blobs/sha256")), 0);
    }
}

#[test]
fn tls_registry_needs_a_trusted_certificate_or_tls_verify_false() {
    let Some(probe) = Registry::start() else { return };
    drop(probe);
    let dir = crate::common::rig().base.join("tls").join(format!("{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed_cert(&dir, "127.0.0.1", Some("IP:127.0.0.1"));
    let cfg = format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display());
    let Some(reg) = Registry::start_with_http_extra(&cfg) else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let name = format!("{}/test/bb", reg.addr);
    let e = Env::new();
    let o = e.run(["pull", "-q", &name]);
    assert_one_line_error(&o, "certificate");
    assert!(o.stderr.contains("--tls-verify=false"), "{o}");
    assert_nothing_stored(&e);
    e.ok(["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "echo", "over tls"]), "over tls\n");
    drop(reg);
    let _ = fs::remove_dir_all(&dir);
}
