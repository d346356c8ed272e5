//! Terminals, stdin and signals: `-t`, `-i`, window size, forwarded signals, 128+N.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Env, LineReader, rig, wait_bounded, wait_for};

#[test]
fn tty_gives_the_container_a_terminal() {
    let e = Env::new();
    e.import_busybox();
    let out = e.ok(["run", "--rm", "-t", "bb", "sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty; echo $TERM"]);
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("both-tty") && out.contains("xterm"), "{out:?}");
    // /dev/console is the same terminal.
    let out = e.ok(["run", "--rm", "-t", "bb", "sh", "-c", "echo via-console > /dev/console"]);
    assert!(out.contains("via-console"), "{out:?}");
    // Without -t the container's stdio are not terminals.
    assert_eq!(e.ok(["run", "--rm", "bb", "sh", "-c", "test -t 1 || echo no-tty"]), "no-tty\n");
}

#[test]
fn window_size_is_forwarded() {
    let e = Env::new();
    e.import_busybox();
    // `script` gives nook a real terminal of a known size.
    let cmd = format!("stty rows 41 cols 97; {} run --rm -it bb stty size", rig().nook.display());
    let mut c = e.command("script");
    c.args(["-qec", &cmd, "/dev/null"]);
    let o = crate::common::run_bounded(&mut c, Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("41 97"), "{o}");
}

#[test]
fn stdin_passes_through_with_i_only() {
    let e = Env::new();
    e.import_busybox();
    for (flags, want) in [(vec!["-i"], "hello from stdin\n"), (vec![], "")] {
        let mut c = e.nook(["run", "--rm"]);
        c.args(flags).args(["bb", "cat"]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"hello from stdin\n").unwrap();
        let o = wait_bounded(child, Duration::from_secs(60), "nook run cat");
        assert_eq!(o.code, 0, "{o}");
        assert_eq!(o.stdout, want);
    }
}

#[test]
fn signals_are_forwarded_and_exit_status_follows() {
    let e = Env::new();
    e.import_busybox();
    for (sig, name) in [
        (nix::sys::signal::Signal::SIGTERM, "TERM"),
        (nix::sys::signal::Signal::SIGUSR1, "USR1"),
        (nix::sys::signal::Signal::SIGHUP, "HUP"),
    ] {
        let script = format!("trap 'echo got-{name}; exit 3' {name}; echo ready; while :; do sleep 0.05; done");
        let mut c = e.nook(["run", "--rm", "bb", "sh", "-c", &script]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut out = LineReader::new(child.stdout.take().unwrap());
        assert_eq!(out.next_line(Duration::from_secs(30), "the container's first line"), "ready\n");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let rest = out.rest(Duration::from_secs(30), &format!("the container's output after SIG{name}"));
        let o = wait_bounded(child, Duration::from_secs(30), "nook run with a trap");
        assert_eq!(o.code, 3, "{name}: {o}");
        assert_eq!(rest, format!("got-{name}\n"));
    }
}

#[test]
fn a_container_killed_by_a_signal_exits_128_plus_n() {
    let e = Env::new();
    e.import_busybox();
    let mut c = e.nook(["run", "--name", "victim", "bb", "sleep", "100"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let store = e.store();
    let mut pid = 0;
    wait_for("the container to be running", Duration::from_secs(30), || {
        let Some(dir) =
            std::fs::read_dir(store.join("containers")).ok().and_then(|mut d| d.next()).and_then(|x| x.ok())
        else {
            return false;
        };
        let Ok(st) = std::fs::read(dir.path().join("state.json")) else { return false };
        let v: serde_json::Value = serde_json::from_slice(&st).unwrap_or_default();
        pid = v["pid"].as_i64().unwrap_or(0) as i32;
        v["status"] == "running" && pid > 0
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let o = wait_bounded(child, Duration::from_secs(30), "nook run after SIGKILL of the container");
    assert_eq!(o.code, 137, "{o}");
    assert!(e.ok(["ps", "-a"]).contains("Exited (137)"));
    e.ok(["rm", "victim"]);
}

#[test]
fn the_container_dies_with_its_foreground_owner() {
    let e = Env::new();
    e.import_busybox();
    let mut c = e.nook(["run", "--rm", "bb", "sh", "-c", "echo ready; sleep 100"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = LineReader::new(child.stdout.take().unwrap());
    assert_eq!(out.next_line(Duration::from_secs(30), "the container's first line"), "ready\n");
    let store = e.store();
    let st: serde_json::Value = {
        let dir = std::fs::read_dir(store.join("containers")).unwrap().next().unwrap().unwrap().path();
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap()
    };
    let pid = st["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = wait_bounded(child, Duration::from_secs(30), "nook after SIGKILL");
    wait_for("the container process to die with nook", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
}
