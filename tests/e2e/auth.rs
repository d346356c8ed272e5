//! `nook login`/`logout` and credentials against a registry with htpasswd basic auth.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use base64::Engine;

use crate::common::registry::{Registry, share};
use crate::common::{Env, rig};
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
    let o = crate::common::run_bounded(&mut c, std::time::Duration::from_secs(60));
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
