//! `nook login`/`logout` and credentials against a registry with htpasswd basic auth.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use base64::Engine;

use crate::common::registry::{Registry, have_openssl, self_signed_cert, share};
use crate::common::{Env, rig, run_bounded};
use crate::pull::{assert_nothing_stored, assert_one_line_error};

#[test]
fn login_stores_credentials_podman_style_and_logout_removes_them() {
    let Some(reg) = Registry::start_with_auth("alice", "s3cret") else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let e = Env::new();
    let name = format!("{}/test/bb", reg.addr);
    // Wrong password: refused, nothing written.
    let o = e.run(["login", "-u", "alice", "-p", "wrong", &reg.addr]);
    assert_one_line_error(&o, "invalid username or password");
    let authfile = e.run.join("containers/auth.json");
    assert!(!authfile.exists());
    // Right password from stdin.
    let mut c = e.nook(["login", "-u", "alice", "--password-stdin", &reg.addr]);
    let pw = e.dir.join("pw");
    fs::write(&pw, "s3cret\n").unwrap();
    c.stdin(fs::File::open(&pw).unwrap());
    let o = run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "Login Succeeded!\n");
    // podman's file, format and mode.
    let md = fs::metadata(&authfile).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(md.uid(), e.user.uid);
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&authfile).unwrap()).unwrap();
    let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    assert_eq!(v["auths"][reg.addr.as_str()]["auth"], enc.as_str());
    e.ok(["pull", "-q", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "echo", "in"]), "in\n");
    assert_eq!(e.ok(["logout", &reg.addr]), format!("Removed login credentials for {}\n", reg.addr));
    e.ok(["rmi", "-a"]);
    let o = e.run(["pull", "-q", &name]);
    assert_one_line_error(&o, "authentication required");
    assert_nothing_stored(&e);
    let o = e.run(["logout", &reg.addr]);
    assert_one_line_error(&o, "not logged in");
}

#[test]
fn credentials_from_authfile_env_and_docker_config() {
    let Some(reg) = Registry::start_with_auth("bob", "pw") else { return };
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let name = format!("{}/test/bb", reg.addr);
    let enc = base64::engine::general_purpose::STANDARD.encode("bob:pw");
    let doc = serde_json::json!({ "auths": { reg.addr.clone(): { "auth": enc } } });
    // --authfile.
    let e = Env::new();
    let f = e.dir.join("my-auth.json");
    fs::write(&f, serde_json::to_vec(&doc).unwrap()).unwrap();
    share(&f);
    e.ok(["pull", "-q", "--authfile", f.to_str().unwrap(), &name]);
    // REGISTRY_AUTH_FILE.
    let mut e2 = Env::new();
    e2.vars.push(("REGISTRY_AUTH_FILE".into(), f.display().to_string()));
    e2.ok(["pull", "-q", &name]);
    // docker's ~/.docker/config.json, with docker's key style.
    let e3 = Env::new();
    let d = e3.home.join(".docker");
    fs::create_dir_all(&d).unwrap();
    let doc3 = serde_json::json!({ "auths": { format!("http://{}/v1/", reg.addr): { "auth": base64::engine::general_purpose::STANDARD.encode("bob:pw") } } });
    fs::write(d.join("config.json"), serde_json::to_vec(&doc3).unwrap()).unwrap();
    if rig().as_root {
        for p in [&d, &d.join("config.json")] {
            std::os::unix::fs::chown(p, Some(e3.user.uid), Some(e3.user.gid)).unwrap();
        }
    }
    e3.ok(["pull", "-q", &name]);
    // login --authfile writes there, not to the runtime directory.
    let e4 = Env::new();
    let f4 = e4.mkdir("cfg").join("auth.json");
    e4.ok(["login", "--authfile", f4.to_str().unwrap(), "-u", "bob", "-p", "pw", &reg.addr]);
    assert!(f4.exists() && !e4.run.join("containers/auth.json").exists());
    e4.ok(["pull", "-q", "--authfile", f4.to_str().unwrap(), &name]);
    e4.ok(["logout", "--authfile", f4.to_str().unwrap(), "--all"]);
    assert!(fs::read_to_string(&f4).unwrap().contains("\"auths\": {}"));
}

/// base64url without padding (JWT).
fn b64url(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token (Bearer) flow: the real registry with `auth: token`, and a token server (the
/// test's own) that checks basic credentials and issues RS256 JWTs signed with openssl, as
/// docker's auth server does.
#[test]
fn bearer_token_flow() {
    use crate::common::hostile::{Hostile, Request, reply};
    if !have_openssl() {
        crate::common::skip("openssl is needed (tests/rig/setup-root.sh installs it)");
        return;
    }
    let dir = rig().base.join("token").join(format!("{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed_cert(&dir, "nook-token-issuer", None);
    // Through a file: the bounded runner's output is text, DER is binary.
    let der_file = dir.join("cert.der");
    let mut c = std::process::Command::new("openssl");
    c.args(["x509", "-outform", "der", "-in"]).arg(&cert).arg("-out").arg(&der_file).stdin(std::process::Stdio::null());
    let o = run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(o.code, 0, "openssl x509 (the issuer certificate as DER) failed: {o}");
    let der = fs::read(&der_file).unwrap();
    let x5c = base64::engine::general_purpose::STANDARD.encode(&der);
    let key2 = key.clone();
    let sign_dir = dir.clone();
    let signed = std::sync::atomic::AtomicUsize::new(0);
    let seen_tokens = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = seen_tokens.clone();
    let token_server = Hostile::start_full(move |r: &Request| {
        let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("dave:pw"));
        if !r.path.starts_with("/token") || r.header("authorization") != Some(want.as_str()) {
            return reply(401, "application/json", br#"{"details":"incorrect username or password"}"#.to_vec());
        }
        let query = r.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut access = Vec::new();
        for kv in query.split('&') {
            if let Some(scope) = kv.strip_prefix("scope=") {
                let scope = pct_decode(scope);
                let parts: Vec<&str> = scope.split(':').collect();
                if parts.len() == 3 {
                    access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                }
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": "nook-test-issuer", "sub": "dave", "aud": "nook-test",
            "exp": now + 600, "nbf": now - 60, "iat": now - 60, "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let signing = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(&claims).unwrap())
        );
        // Input and signature through files (the bounded runner's output is text).
        let n = signed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (input, sig_file) = (sign_dir.join(format!("in-{n}")), sign_dir.join(format!("sig-{n}")));
        fs::write(&input, &signing).unwrap();
        let mut c = std::process::Command::new("openssl");
        c.args(["dgst", "-sha256", "-sign"]).arg(&key2).arg("-out").arg(&sig_file).arg(&input);
        c.stdin(std::process::Stdio::null());
        let o = run_bounded(&mut c, Duration::from_secs(60));
        assert_eq!(o.code, 0, "openssl dgst -sign (the token's signature) failed: {o}");
        let sig = fs::read(&sig_file).unwrap();
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = format!("{signing}.{}", b64url(&sig));
        reply(200, "application/json", serde_json::to_vec(&serde_json::json!({ "token": token })).unwrap())
    });
    let cfg = format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: nook-test\n    issuer: nook-test-issuer\n    rootcertbundle: {}\n",
        token_server.addr,
        cert.display()
    );
    let Some(reg) = Registry::start_with_config(&cfg, Some(("dave".into(), "pw".into()))) else { return };
    // skopeo (a real client) pushes through the same token flow.
    reg.push_fixture("busybox", "test/bb:latest", &[]);
    let name = format!("{}/test/bb", reg.addr);
    let e = Env::new();
    let o = e.run(["pull", "-q", &name]);
    assert_one_line_error(&o, "authentication required");
    let o = e.run(["login", "-u", "dave", "-p", "nope", &reg.addr]);
    assert_one_line_error(&o, "invalid username or password");
    let before = seen_tokens.load(std::sync::atomic::Ordering::SeqCst);
    e.ok(["login", "-u", "dave", "-p", "pw", &reg.addr]);
    e.ok(["pull", "-q", &name]);
    assert_eq!(e.ok(["run", "--rm", &name, "echo", "token"]), "token\n");
    e.ok(["push", "-q", &name, &format!("{}/test/copy:1", reg.addr)]);
    assert!(seen_tokens.load(std::sync::atomic::Ordering::SeqCst) > before, "no token was issued");
    drop(reg);
    drop(token_server);
    let _ = fs::remove_dir_all(&dir);
}
