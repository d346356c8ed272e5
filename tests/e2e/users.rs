//! Users without subordinate ids, a missing XDG_RUNTIME_DIR, and `nook unshare`.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::common::{Env, rig, skip};

#[test]
fn user_without_subordinate_ids_runs_with_a_single_id_map() {
    let Some(u) = rig().nosub.clone() else {
        skip("needs root to create a user without subordinate ids");
        return;
    };
    let e = Env::for_user(u.clone());
    let tar = rig().fixtures.join("busybox.tar");
    let o = e.run(["import", tar.to_str().unwrap(), "bb"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stderr.matches("only your own uid is mapped").count(), 1, "one notice: {o}");
    let o = e.run(["run", "--rm", "bb", "sh", "-c", "cat /proc/self/uid_map; id -u; echo $$"]);
    assert_eq!(o.code, 0, "{o}");
    let l: Vec<Vec<&str>> = o.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(l[0], vec!["0", &u.uid.to_string(), "1"]);
    assert_eq!(l[1], vec!["0"]);
    assert_eq!(l[2], vec!["1"]);
    assert!(!o.stderr.contains("only your own uid"), "the notice is said once: {o}");
    // Other ids do not exist here: a clear error.
    let o = e.run(["run", "--rm", "-u", "1000", "bb", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("not mapped"), "{o}");
    let info = e.ok(["info", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["host"]["idMappings"]["uidmap"].as_array().unwrap().len(), 1);
    assert!(v["host"]["missing"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().contains("subordinate ids")));
}

#[test]
fn works_without_xdg_runtime_dir() {
    let mut e = Env::new();
    let tmp = e.mkdir("tmp");
    e.unset.push("XDG_RUNTIME_DIR".into());
    e.vars.push(("TMPDIR".into(), tmp.display().to_string()));
    e.import_busybox();
    let o = e.run(["run", "--rm", "bb", "echo", "hi"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "hi\n");
    let run = tmp.join(format!("nook-run-{}", e.user.uid));
    let md = fs::metadata(&run).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (e.user.uid, 0o700));
    let v: serde_json::Value = serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap();
    assert_eq!(v["store"]["runRoot"].as_str().unwrap(), run.to_str().unwrap());
    assert!(v["store"]["runRootSource"].as_str().unwrap().contains("XDG_RUNTIME_DIR is not set"));
}

#[test]
fn a_runtime_dir_owned_by_someone_else_is_not_used() {
    if !rig().as_root {
        skip("needs root to make a directory owned by another user");
        return;
    }
    let mut e = Env::new();
    let foreign = e.dir.join("foreign");
    fs::create_dir(&foreign).unwrap(); // owned by root
    let tmp = e.mkdir("tmp");
    // A squatter took the fallback name too.
    let squat = tmp.join(format!("nook-run-{}", e.user.uid));
    fs::create_dir(&squat).unwrap();
    e.vars.push(("XDG_RUNTIME_DIR".into(), foreign.display().to_string()));
    e.vars.push(("TMPDIR".into(), tmp.display().to_string()));
    e.import_busybox();
    let o = e.run(["run", "--rm", "bb", "true"]);
    assert_eq!(o.code, 0, "{o}");
    let v: serde_json::Value = serde_json::from_str(&e.ok(["info", "--format", "json"])).unwrap();
    let rr = v["store"]["runRoot"].as_str().unwrap().to_string();
    assert_ne!(rr, squat.to_str().unwrap());
    assert!(!rr.starts_with(foreign.to_str().unwrap()));
    assert_eq!(fs::metadata(&rr).unwrap().uid(), e.user.uid);
    assert!(fs::read_dir(&squat).unwrap().next().is_none(), "nothing written into the squatted dir");
}

#[test]
fn unshare_runs_commands_with_the_container_maps() {
    let e = Env::new();
    let out = e.ok(["unshare", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0");
    assert!(l[1].split_whitespace().eq(["0", &e.user.uid.to_string(), "1"]), "{out}");
    assert_eq!(l[2].split_whitespace().nth(2), Some("65536"), "{out}");
    // chown to a container id: on the host the file belongs to the subordinate id.
    let f = e.dir.join("f");
    fs::write(&f, "x").unwrap();
    std::os::unix::fs::chown(&f, Some(e.user.uid), Some(e.user.gid)).unwrap();
    e.ok(["unshare", "chown", "1:1", f.to_str().unwrap()]);
    assert_ne!(fs::metadata(&f).unwrap().uid(), e.user.uid);
    e.ok(["unshare", "chown", "0:0", f.to_str().unwrap()]);
    assert_eq!(fs::metadata(&f).unwrap().uid(), e.user.uid);
    assert_eq!(e.run(["unshare", "sh", "-c", "exit 4"]).code, 4);
    assert_eq!(e.run(["unshare", "no-such-command"]).code, 127);
}
