//! A real registry for the tests: Debian's `docker-registry` (distribution) on 127.0.0.1 with a
//! free port, plain or with htpasswd basic auth, stopped (by PID) when dropped. Images go in
//! with the real `skopeo copy`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{rig, run_bounded, skip};

static N: AtomicUsize = AtomicUsize::new(0);

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: PathBuf,
    child: Child,
    pub auth: Option<(String, String)>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Registry {
    /// A plain registry; None (skipped, or a failure under CI) when docker-registry is missing.
    pub fn start() -> Option<Registry> {
        Self::start_inner(None)
    }

    /// A registry with htpasswd basic auth for `user`/`pass`.
    pub fn start_with_auth(user: &str, pass: &str) -> Option<Registry> {
        Self::start_inner(Some((user.to_string(), pass.to_string())))
    }

    /// A registry with an extra configuration section (`auth: token: …`); `creds` are what
    /// skopeo pushes with.
    pub fn start_with_config(extra: &str, creds: Option<(String, String)>) -> Option<Registry> {
        Self::start_cfg(creds, extra.to_string())
    }

    fn start_inner(auth: Option<(String, String)>) -> Option<Registry> {
        Self::start_cfg(auth, String::new())
    }

    /// A registry with extra lines in its `http:` section (`  tls: …`).
    pub fn start_with_http_extra(http: &str) -> Option<Registry> {
        Self::start_full(None, String::new(), http.to_string())
    }

    fn start_cfg(auth: Option<(String, String)>, extra: String) -> Option<Registry> {
        Self::start_full(auth, extra, String::new())
    }

    fn start_full(auth: Option<(String, String)>, extra: String, http_extra: String) -> Option<Registry> {
        if !have("docker-registry") || !have("skopeo") {
            skip("docker-registry and skopeo are needed (tests/rig/setup-root.sh installs them)");
            return None;
        }
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = rig().base.join("reg").join(format!("{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        let mut auth_cfg = extra;
        if let (Some((u, p)), true) = (&auth, auth_cfg.is_empty()) {
            let o = run_bounded(
                Command::new("htpasswd").args(["-Bbn", u, p]).stdin(Stdio::null()),
                Duration::from_secs(60),
            );
            assert_eq!(o.code, 0, "htpasswd (apache2-utils) failed: {o}");
            fs::write(dir.join("htpasswd"), &o.stdout).unwrap();
            auth_cfg =
                format!("auth:\n  htpasswd:\n    realm: nook-test\n    path: {}\n", dir.join("htpasswd").display());
        }
        for _attempt in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let cfg = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http_extra}{auth_cfg}",
                dir.join("data").display()
            );
            fs::write(dir.join("config.yml"), cfg).unwrap();
            let log = fs::File::create(dir.join("registry.log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting docker-registry");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                if http_status(&addr, "/v2/").is_some() {
                    return Some(Registry { addr, dir, child, auth });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start within 10s: {}",
            fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
        );
    }

    fn creds(&self) -> Vec<String> {
        match &self.auth {
            Some((u, p)) => vec!["--dest-creds".into(), format!("{u}:{p}")],
            None => vec![],
        }
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://ADDR/DEST` (extra args such as `--format v2s2`, `--all`).
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, extra: &[&str]) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "-q", "--dest-tls-verify=false"])
            .args(self.creds())
            .args(extra)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.addr))
            .stdin(Stdio::null());
        let o = run_bounded(&mut c, Duration::from_secs(180));
        assert_eq!(o.code, 0, "skopeo copy {tag} -> {dest} failed: {o}");
    }

    /// Pushes one of the rig's fixture images (`busybox`, `multilayer` from `oci/`; `multiarch`,
    /// `ma-amd64`, `ma-arm64` from `oci-more/`).
    pub fn push_fixture(&self, tag: &str, dest: &str, extra: &[&str]) {
        let layout = if tag == "busybox" || tag == "multilayer" { "oci" } else { "oci-more" };
        self.push(&rig().fixtures.join(layout), tag, dest, extra);
    }

    /// The file holding a blob in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let h = digest.trim_start_matches("sha256:");
        self.dir.join("data/docker/registry/v2/blobs/sha256").join(&h[..2]).join(h).join("data")
    }

    /// A manifest's raw bytes and digest, as the registry serves them.
    pub fn manifest(&self, repo: &str, reference: &str) -> (Vec<u8>, String) {
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
        let (status, headers, body) = http(
            &self.addr,
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", accept)],
            &[],
            self.auth.as_ref(),
        );
        assert_eq!(status, 200, "GET manifest {repo}:{reference}: {}", String::from_utf8_lossy(&body));
        let digest = headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase().starts_with("docker-content-digest:").then(|| l[22..].trim().to_string())
            })
            .unwrap();
        (body, digest)
    }

    /// PUTs a manifest of `media_type` under `reference`.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
        let (status, _, resp) = http(
            &self.addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            body,
            self.auth.as_ref(),
        );
        assert_eq!(status, 201, "PUT manifest: {}", String::from_utf8_lossy(&resp));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A minimal HTTP/1.0 request (the tests' own, for setting up registry content).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    auth: Option<&(String, String)>,
) -> (u16, String, Vec<u8>) {
    use base64::Engine;
    let mut s = TcpStream::connect(addr).expect("connecting to the registry");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((u, p)) = auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.get(split + 4..).unwrap_or_default().to_vec();
    (status, head, body)
}

fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1)?.parse().ok()
}

/// Makes `p` and its parents readable for the test user.
pub fn share(p: &Path) {
    if let Ok(md) = fs::metadata(p) {
        let mode = if md.is_dir() { 0o755 } else { 0o644 };
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode));
    }
}

/// A self-signed certificate and its key (`DIR/cert.pem`, `DIR/key.pem`, RSA 2048) made by
/// `openssl req`, for the subject `/CN=CN` and, when given, a subjectAltName (`IP:127.0.0.1`).
pub fn self_signed_cert(dir: &Path, cn: &str, san: Option<&str>) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut c = Command::new("openssl");
    c.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", &format!("/CN={cn}")]);
    if let Some(san) = san {
        c.args(["-addext", &format!("subjectAltName={san}")]);
    }
    c.arg("-keyout").arg(&key).arg("-out").arg(&cert).stdin(Stdio::null());
    let o = run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(o.code, 0, "openssl req (a self-signed certificate for {cn}) failed: {o}");
    (cert, key)
}

/// Does `openssl version` run (bounded)?
pub fn have_openssl() -> bool {
    let mut c = Command::new("openssl");
    c.arg("version").stdin(Stdio::null());
    // Bounded by hand: a missing openssl is an answer, not a failure.
    c.stdout(Stdio::null()).stderr(Stdio::null());
    let Ok(mut child) = c.spawn() else { return false };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st.success(),
            Ok(None) if start.elapsed() < Duration::from_secs(30) => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("openssl version did not answer within 30s");
            }
        }
    }
}
