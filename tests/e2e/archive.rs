//! `nook save` / `nook load`: round trips, and archives from and for podman and skopeo.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::fixtures::{Entry, tar_with};
use crate::common::registry::{Registry, share};
use crate::common::{Env, rig, run_bounded, skip, tree};
use crate::pull::{assert_nothing_stored, assert_one_line_error};

/// Stops the pause process rootless podman leaves running for this test's user environment
/// (its PID is in `$XDG_RUNTIME_DIR/libpod/tmp/pause.pid`), even when the test fails.
struct PodmanPause(std::path::PathBuf);

impl Drop for PodmanPause {
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(&self.0).ok().and_then(|p| p.trim().parse::<i32>().ok())
            && pid > 1
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {cmd} >/dev/null")).status().is_ok_and(|s| s.success())
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    let Some(reg) = Registry::start() else { return };
    reg.push_fixture("multilayer", "test/ml:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/ml:latest", reg.addr);
    let id = e.ok(["pull", "-q", &name]);
    e.import_busybox();
    let dir = e.mkdir("out");
    for format in ["docker-archive", "oci-archive"] {
        let out = dir.join(format!("{format}.tar"));
        e.ok(["save", "--format", format, "-o", out.to_str().unwrap(), &name, "bb"]);
        let e2 = Env::new();
        let o = e2.ok(["load", "-i", out.to_str().unwrap()]);
        assert!(o.contains(&format!("Loaded image: {name}")) && o.contains("Loaded image: localhost/bb:latest"), "{o}");
        // Same image ID (the config is unchanged), and it runs.
        assert!(e2.ok(["images", "-q", "--no-trunc"]).contains(id.trim()));
        assert_eq!(e2.ok(["run", "--rm", &name, "sh", "-c", "cat /layer3.txt; ls /opt"]), "zstd layer\nnew\n");
        assert_eq!(e2.ok(["run", "--rm", "bb", "echo", "bb"]), "bb\n");
        // Loading again is idempotent.
        e2.ok(["load", "-i", out.to_str().unwrap()]);
        assert_eq!(e2.ok(["images", "-q"]).lines().count(), 2);
    }
    // save to stdout, load from stdin (gzip-compressed on the way).
    let gz = dir.join("bb.tar.gz");
    let sh = format!("{} save bb | gzip > {}", rig().nook.display(), gz.display());
    let o = run_bounded(e.command("sh").args(["-c", &sh]), Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    let e3 = Env::new();
    let mut c = e3.nook(["load"]);
    c.stdin(fs::File::open(&gz).unwrap());
    let o = run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(e3.ok(["run", "--rm", "bb", "echo", "stdin"]), "stdin\n");
}

#[test]
fn archives_from_skopeo_and_podman_load_and_nook_archives_load_into_podman() {
    if !have("skopeo") || !have("podman") {
        skip("skopeo and podman are needed (tests/rig/setup-root.sh installs them)");
        return;
    }
    let e = Env::new();
    let _pause = PodmanPause(e.run.join("libpod/tmp/pause.pid"));
    // skopeo's oci-archive.
    let sk = e.dir.join("skopeo-oci.tar");
    let mut c = Command::new("skopeo");
    c.args(["copy", "-q"])
        .arg(format!("oci:{}:multilayer", rig().fixtures.join("oci").display()))
        .arg(format!("oci-archive:{}:example.com/ml:1", sk.display()));
    let o = run_bounded(&mut c, Duration::from_secs(180));
    assert_eq!(o.code, 0, "skopeo copy multilayer -> oci-archive failed: {o}");
    share(&sk);
    let o = e.ok(["load", "-i", sk.to_str().unwrap()]);
    assert!(o.contains("Loaded image: example.com/ml:1"), "{o}");
    // skopeo's docker-archive (RepoTags without a registry: docker.io, as docker names them).
    let skd = e.dir.join("skopeo-docker.tar");
    let mut c = Command::new("skopeo");
    c.args(["copy", "-q"])
        .arg(format!("oci:{}:busybox", rig().fixtures.join("oci").display()))
        .arg(format!("docker-archive:{}:sk/bb:2", skd.display()));
    let o = run_bounded(&mut c, Duration::from_secs(180));
    assert_eq!(o.code, 0, "skopeo copy busybox -> docker-archive failed: {o}");
    share(&skd);
    let o = e.ok(["load", "-i", skd.to_str().unwrap()]);
    assert!(o.contains("Loaded image: docker.io/sk/bb:2"), "{o}");
    assert_eq!(e.ok(["run", "--rm", "sk/bb:2", "echo", "skopeo"]), "skopeo\n");
    assert_eq!(e.ok(["run", "--rm", "example.com/ml:1", "cat", "/layer3.txt"]), "zstd layer\n");
    // nook's archives into podman (run as the same user, its own storage under HOME).
    e.import_busybox();
    let dir = e.mkdir("out");
    let podman = |args: &[&str]| {
        let o = run_bounded(e.command("podman").args(args), Duration::from_secs(120));
        assert_eq!(o.code, 0, "podman {args:?}: {o}");
        o.stdout
    };
    for format in ["docker-archive", "oci-archive"] {
        let f = dir.join(format!("nook-{format}.tar"));
        e.ok(["save", "--format", format, "-o", f.to_str().unwrap(), "bb"]);
        podman(&["load", "-q", "-i", f.to_str().unwrap()]);
        let images = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(images.contains("localhost/bb:latest"), "{images}");
        podman(&["rmi", "-f", "localhost/bb:latest"]);
    }
    // podman's archives into nook: docker-archive (symlinked layer layout) and oci-archive.
    let f = dir.join("nook-docker-archive.tar");
    podman(&["load", "-q", "-i", f.to_str().unwrap()]);
    podman(&["tag", "localhost/bb:latest", "localhost/frompodman:latest"]);
    for format in ["docker-archive", "oci-archive"] {
        let out = dir.join(format!("podman-{format}.tar"));
        podman(&["save", "--format", format, "-o", out.to_str().unwrap(), "localhost/frompodman:latest"]);
        let e2 = Env::new();
        let o = e2.ok(["load", "-i", out.to_str().unwrap()]);
        assert!(o.contains("frompodman"), "{o}");
        assert_eq!(e2.ok(["run", "--rm", "frompodman", "echo", "from podman"]), "from podman\n");
    }
    podman(&["rmi", "-a", "-f"]);
}

#[test]
fn load_refuses_bad_archives() {
    let e = Env::new();
    e.ok(["images"]);
    let write = |name: &str, data: Vec<u8>| {
        let p = e.dir.join(name);
        fs::write(&p, data).unwrap();
        share(&p);
        p.display().to_string()
    };
    let junk = write("junk.tar", vec![0x42; 4096]);
    assert_one_line_error(&e.run(["load", "-i", &junk]), "reading the archive");
    let esc = write("escape.tar", tar_with(&[Entry::File("../../evil-archive", b"x", 0o644)]));
    assert_one_line_error(&e.run(["load", "-i", &esc]), "leaves the archive");
    // Nothing escaped: not where `../../` from nook's extraction directory (STORE/tmp/X)
    // lands, the store itself, nor anywhere else in the test's world (HOME, the runtime
    // directory: all the test user can write).
    assert!(!e.store().join("evil-archive").exists(), "the escape landed in the store");
    let hits: Vec<String> = tree(&e.dir).into_iter().filter(|p| p.ends_with("evil-archive")).collect();
    assert!(hits.is_empty(), "written outside the archive: {hits:?}");
    // A docker-archive whose layer does not match the config's diff_id.
    let layer = tar_with(&[Entry::File("f", b"data", 0o644)]);
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "1".repeat(64))]},
    });
    let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": ["bad:1"], "Layers": ["l.tar"]}]);
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in [
        ("c.json", serde_json::to_vec(&cfg).unwrap()),
        ("l.tar", layer),
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_path(n).unwrap();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &d[..]).unwrap();
    }
    let bad = write("bad-diffid.tar", b.into_inner().unwrap());
    assert_one_line_error(&e.run(["load", "-i", &bad]), "diff_id mismatch");
    assert_nothing_stored(&e);
}

/// A private Docker daemon (`dockerd` from Debian's docker.io) for one test: its own data and
/// exec roots and socket, vfs storage, no networking set up, no container ever run. Stopped
/// (SIGTERM, then SIGKILL) and its files removed on drop.
struct Dockerd {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        if !nix::unistd::geteuid().is_root() || !have("dockerd") || !have("docker") {
            skip("a Docker daemon is needed: run the tests as root with docker.io installed (tests/rig/setup-root.sh)");
            return None;
        }
        // Short: the socket path must fit in 108 bytes.
        let dir = std::path::PathBuf::from(format!("/tmp/nook-dk-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = fs::File::create(dir.join("log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("sock").display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false", "--storage-driver=vfs"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        let d = Dockerd { child, dir };
        let start = std::time::Instant::now();
        loop {
            let o = run_bounded(d.cmd().arg("version"), Duration::from_secs(30));
            if o.code == 0 {
                return Some(d);
            }
            let log = fs::read_to_string(d.dir.join("log")).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "dockerd did not answer on {} within 60 s:\n{log}",
                d.dir.join("sock").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!("unix://{}", self.dir.join("sock").display())).env("DOCKER_BUILDKIT", "0");
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = run_bounded(self.cmd().args(args), Duration::from_secs(120));
        assert_eq!(o.code, 0, "docker {args:?}: {o}");
        o.stdout
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn archives_from_docker_save_load_and_nook_archives_load_into_docker() {
    let Some(d) = Dockerd::start() else { return };
    let e = Env::new();
    // A two-layer image made by docker itself: an imported rootfs and a COPY on top (the legacy
    // builder runs no container for COPY and ENV).
    let bb = rig().fixtures.join("busybox.tar");
    d.ok(&["import", "-c", "CMD [\"/bin/sh\"]", bb.to_str().unwrap(), "dbb:1"]);
    let ctx = e.mkdir("docker-ctx");
    fs::write(ctx.join("hello.txt"), "hello from docker\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM dbb:1\nCOPY hello.txt /hello.txt\nENV GREETING=docker\n").unwrap();
    d.ok(&["build", "-q", "-t", "dbb:2", ctx.to_str().unwrap()]);
    let saved = e.dir.join("docker-save.tar");
    d.ok(&["save", "-o", saved.to_str().unwrap(), "dbb:2"]);
    share(&saved);
    let o = e.ok(["load", "-i", saved.to_str().unwrap()]);
    assert!(o.contains("Loaded image: docker.io/library/dbb:2"), "{o}");
    let inspect: serde_json::Value = serde_json::from_str(&e.ok(["image", "inspect", "dbb:2"])).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().map(Vec::len), Some(2), "two layers: {inspect}");
    // docker's history (an empty ENV step included) comes along.
    assert_eq!(e.ok(["history", "-q", "dbb:2"]).lines().count(), 3);
    assert_eq!(
        e.ok(["run", "--rm", "dbb:2", "sh", "-c", "cat /hello.txt; echo $GREETING"]),
        "hello from docker\ndocker\n"
    );
    // nook's docker-archive into docker (Debian's docker 20.10 cannot load an oci-archive).
    e.import_busybox();
    let out = e.mkdir("out");
    let f = out.join("nook-docker-archive.tar");
    e.ok(["save", "--format", "docker-archive", "-o", f.to_str().unwrap(), "bb"]);
    d.ok(&["load", "-q", "-i", f.to_str().unwrap()]);
    let images = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.contains("localhost/bb:latest"), "{images}");
}
