//! `nook exec` and `nook top` on a running container (kept running by a foreground
//! `nook run` in the background, see `Env::start_container`).

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Env, LineReader, rig, run_bounded, wait_bounded, wait_for};

/// The pids listed by `ps` output (first column), header skipped.
fn ps_pids(out: &str) -> Vec<u32> {
    out.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect()
}

#[test]
fn exec_sees_the_containers_processes_and_files() {
    let e = Env::new();
    e.import_busybox();
    let c = e.start_container("c1", &["bb", "sh", "-c", "echo from-the-container > /tmp/mark; exec sleep 1000"]);
    wait_for("the container to write /tmp/mark", Duration::from_secs(30), || {
        e.run(["exec", "c1", "cat", "/tmp/mark"]).stdout == "from-the-container\n"
    });
    // Its processes: sleep is pid 1, and nothing of the host (not even its owner) is visible.
    let ps = e.ok(["exec", "c1", "ps", "-o", "pid,args"]);
    let pid1 = ps.lines().find(|l| l.split_whitespace().next() == Some("1")).unwrap_or_default();
    assert!(pid1.contains("sleep 1000"), "{ps}");
    assert!(!ps.contains("nook"), "host processes are visible:\n{ps}");
    let pids = ps_pids(&ps);
    assert_eq!(pids.len(), 2, "only sleep and ps itself:\n{ps}");
    assert!(!pids.contains(&(c.pid as u32)), "the init's host pid {} is visible:\n{ps}", c.pid);
    // The host's view of the init: pid 1 of a namespace of its own.
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap_or_default();
    assert_eq!(nspid.split_whitespace().collect::<Vec<_>>(), [c.pid.to_string().as_str(), "1"], "{status}");
    // It is in the container's pid namespace, as a child of nothing inside it.
    let me = e.ok(["exec", "c1", "sh", "-c", "echo $$; cut -d' ' -f4 /proc/$$/stat"]);
    let v: Vec<&str> = me.lines().collect();
    assert!(v[0].parse::<u32>().unwrap() > 1 && v[1] == "0", "{me}");
    let host_ns = std::fs::read_link(format!("/proc/{}/ns/pid", c.pid)).unwrap();
    assert_ne!(host_ns, std::fs::read_link("/proc/self/ns/pid").unwrap());
    // Its hostname (the short ID) and filesystem.
    assert_eq!(e.ok(["exec", "c1", "hostname"]).trim(), &c.id[..12]);
    e.ok(["exec", "c1", "sh", "-c", "echo from-exec > /tmp/second"]);
    assert_eq!(e.ok(["exec", "c1", "cat", "/tmp/second"]), "from-exec\n");
    // The root is the container's: / lists what a fresh container of the image lists (plus
    // nothing of the host's), and /bin/sh is busybox.
    let ls = e.ok(["exec", "c1", "ls", "-a", "/"]);
    assert_eq!(ls, e.ok(["run", "--rm", "bb", "ls", "-a", "/"]));
    let host = run_bounded(std::process::Command::new("ls").args(["-a", "/"]), Duration::from_secs(30));
    assert_eq!(host.code, 0, "ls -a / on the host failed: {host}");
    assert_ne!(ls, host.stdout);
    assert_eq!(e.ok(["exec", "c1", "readlink", "/bin/sh"]).trim(), "busybox");
    // `container exec` is the same verb.
    assert_eq!(e.ok(["container", "exec", "c1", "cat", "/tmp/second"]), "from-exec\n");
}

#[test]
fn exec_exit_codes_are_podmans() {
    let e = Env::new();
    e.import_busybox();
    let _c = e.start_container("c1", &["bb", "sleep", "1000"]);
    assert_eq!(e.run(["exec", "c1", "true"]).code, 0);
    assert_eq!(e.run(["exec", "c1", "sh", "-c", "exit 7"]).code, 7);
    let o = e.run(["exec", "c1", "nosuchcmd"]);
    assert_eq!(o.code, 127, "{o}");
    assert!(o.stderr.contains("nosuchcmd") && o.stderr.contains("not found"), "{o}");
    let o = e.run(["exec", "c1", "/etc/passwd"]);
    assert_eq!(o.code, 126, "{o}");
    // A process killed by a signal: 128 + N.
    assert_eq!(e.run(["exec", "c1", "sh", "-c", "kill -KILL $$"]).code, 137);
    let o = e.run(["exec", "nosuch", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.starts_with("Error: ") && o.stderr.contains("nosuch"), "{o}");
    // A container that is not running.
    e.ok(["run", "--name", "done", "bb", "true"]);
    let o = e.run(["exec", "done", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert_eq!(o.stderr.trim(), "Error: container done is not running", "{o}");
    // No command.
    assert_eq!(e.run(["exec", "c1"]).code, 125);
}

#[test]
fn exec_env_workdir_and_user_follow_the_container_unless_given() {
    let e = Env::new();
    e.import_busybox();
    let _c = e.start_container("c1", &["-e", "FROMRUN=yes", "-u", "nobody", "-w", "/tmp", "bb", "sleep", "1000"]);
    // The container's environment, working directory and user.
    let out = e.ok(["exec", "c1", "sh", "-c", "echo $FROMRUN; pwd; id -un; id -u; grep CapEff /proc/self/status"]);
    let v: Vec<&str> = out.lines().collect();
    assert_eq!(&v[..4], ["yes", "/tmp", "nobody", "65534"], "{out}");
    assert!(v[4].ends_with("0000000000000000"), "a non-root user has no effective capabilities: {out}");
    // -e, --env-file, -w, -u (a name from the container's passwd, and numbers).
    let envf = e.dir.join("envfile");
    std::fs::write(&envf, "# comment\nFROMFILE=file\nOVER=file\n").unwrap();
    let out = e.ok([
        "exec",
        "-e",
        "A=1",
        "-e",
        "OVER=flag",
        "--env-file",
        envf.to_str().unwrap(),
        "-w",
        "/etc",
        "-u",
        "root",
        "c1",
        "sh",
        "-c",
        "echo $A $FROMFILE $OVER $FROMRUN $HOME; pwd; id -un; grep CapEff /proc/self/status",
    ]);
    let v: Vec<&str> = out.lines().collect();
    assert_eq!(&v[..3], ["1 file flag yes /root", "/etc", "root"], "{out}");
    assert!(v[3].ends_with("00000000800405fb"), "root gets the container's capabilities: {out}");
    let out = e.ok(["exec", "-u", "1000:1000", "c1", "sh", "-c", "id -u; id -g"]);
    assert_eq!(out, "1000\n1000\n");
    let o = e.run(["exec", "-u", "nosuchuser", "c1", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("nosuchuser"), "{o}");
    // --privileged: every capability.
    let out = e.ok(["exec", "--privileged", "-u", "root", "c1", "grep", "CapBnd", "/proc/self/status"]);
    assert!(!out.trim().ends_with("00000000800405fb"), "{out}");
    // no_new_privs as the container's process.
    assert!(e.ok(["exec", "c1", "grep", "NoNewPrivs", "/proc/self/status"]).contains('1'));
}

#[test]
fn exec_i_passes_stdin() {
    let e = Env::new();
    e.import_busybox();
    let _c = e.start_container("c1", &["bb", "sleep", "1000"]);
    for (flags, want) in [(vec!["-i"], "hello from stdin\n"), (vec![], "")] {
        let mut c = e.nook(["exec"]);
        c.args(flags).args(["c1", "cat"]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"hello from stdin\n").unwrap();
        let o = wait_bounded(child, Duration::from_secs(60), "nook exec cat");
        assert_eq!(o.code, 0, "{o}");
        assert_eq!(o.stdout, want);
    }
}

#[test]
fn exec_t_gives_a_terminal_in_the_container() {
    let e = Env::new();
    e.import_busybox();
    let c = e.start_container("c1", &["bb", "sleep", "1000"]);
    let out = e.ok(["exec", "-t", "c1", "sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty; echo $TERM"]);
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("both-tty") && out.contains("xterm"), "{out:?}");
    // The pty is one of the container's own devpts instance: the only one there (the
    // container itself has none), so it is number 0.
    let out = e.ok(["exec", "-t", "c1", "sh", "-c", "tty; ls /dev/pts"]);
    let v: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(v, ["/dev/pts/0", "0", "ptmx"], "{out:?}");
    // The exec'd process is in the container's mount namespace (the init's), not the host's.
    let init_mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", c.pid)).unwrap();
    let init_mnt = init_mnt.to_str().unwrap();
    assert_ne!(std::fs::read_link("/proc/self/ns/mnt").unwrap().to_str(), Some(init_mnt));
    let out = e.ok(["exec", "-t", "c1", "readlink", "/proc/self/ns/mnt"]);
    assert_eq!(out.trim(), init_mnt, "{out:?}");
    // Without -t the process's stdio are not terminals.
    assert_eq!(e.ok(["exec", "c1", "sh", "-c", "test -t 1 || echo no-tty"]), "no-tty\n");
    // The window size is forwarded: `script` gives nook a terminal of a known size.
    let cmd = format!("stty rows 41 cols 97; {} exec -it c1 stty size", rig().nook.display());
    let mut s = e.command("script");
    s.args(["-qec", &cmd, "/dev/null"]);
    let o = run_bounded(&mut s, Duration::from_secs(60));
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("41 97"), "{o}");
}

#[test]
fn exec_forwards_signals() {
    let e = Env::new();
    e.import_busybox();
    let _c = e.start_container("c1", &["bb", "sleep", "1000"]);
    let script = "trap 'echo got-TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done";
    let mut c = e.nook(["exec", "c1", "sh", "-c", script]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = LineReader::new(child.stdout.take().unwrap());
    assert_eq!(out.next_line(Duration::from_secs(30), "the exec'd script's first line"), "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let rest = out.rest(Duration::from_secs(30), "the exec'd script's output after SIGTERM");
    let o = wait_bounded(child, Duration::from_secs(30), "nook exec with a trap");
    assert_eq!(o.code, 3, "{o}");
    assert_eq!(rest, "got-TERM\n");
}

#[test]
fn exec_d_returns_once_started() {
    let e = Env::new();
    e.import_busybox();
    let _c = e.start_container("c1", &["bb", "sleep", "1000"]);
    let o = e.run(["exec", "-d", "c1", "sh", "-c", "echo started > /tmp/det; exec sleep 999"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "", "{o}");
    // nook returned while the process still runs in the container.
    wait_for("the detached process to write /tmp/det", Duration::from_secs(30), || {
        e.run(["exec", "c1", "cat", "/tmp/det"]).stdout == "started\n"
    });
    let top = e.ok(["top", "c1", "pid,args"]);
    assert!(top.lines().any(|l| l.ends_with("sleep 999")), "{top}");
    // A detached command that cannot run still reports why.
    let o = e.run(["exec", "-d", "c1", "nosuchcmd"]);
    assert_eq!(o.code, 127, "{o}");
}

#[test]
fn exec_into_a_network_none_container_sees_no_host_interfaces() {
    let e = Env::new();
    e.import_busybox();
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    let host_ifs: Vec<&str> = host.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert!(host_ifs.iter().any(|i| *i != "lo"), "the host needs an interface besides lo: {host_ifs:?}");
    let _c = e.start_container("nonet", &["--network", "none", "bb", "sleep", "1000"]);
    let out = e.ok(["exec", "nonet", "cat", "/proc/net/dev"]);
    let ifs: Vec<&str> = out.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(ifs, ["lo"], "{out}");
    // With the host network, exec sees the host's interfaces.
    let _h = e.start_container("hostnet", &["bb", "sleep", "1000"]);
    let out = e.ok(["exec", "hostnet", "cat", "/proc/net/dev"]);
    assert!(host_ifs.iter().filter(|i| **i != "lo").all(|i| out.contains(&format!("{i}:"))), "{out}");
}

#[test]
fn top_shows_the_containers_processes() {
    let e = Env::new();
    e.import_busybox();
    let c = e.start_container("c1", &["bb", "sleep", "1000"]);
    e.ok(["exec", "-d", "-u", "nobody", "c1", "sleep", "999"]);
    let mut rows = Vec::new();
    wait_for("top to show the detached sleep", Duration::from_secs(30), || {
        rows = e.ok(["top", "c1"]).lines().map(str::to_string).collect();
        rows.iter().any(|r| r.ends_with("sleep 999"))
    });
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(header, ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]);
    assert_eq!(rows.len(), 3, "init and the exec'd sleep only:\n{}", rows.join("\n"));
    let init: Vec<&str> = rows[1].split_whitespace().collect();
    assert_eq!((init[0], init[1], init[2], init[5]), ("root", "1", "0", "?"), "{rows:?}");
    assert!(init[3].parse::<f64>().is_ok() && init[4].ends_with('s') && init[6].ends_with('s'), "{rows:?}");
    assert_eq!(init[7..].join(" "), "sleep 1000");
    let other: Vec<&str> = rows[2].split_whitespace().collect();
    assert_eq!(other[0], "nobody", "users come from the container's passwd: {rows:?}");
    assert!(other[1].parse::<u32>().unwrap() > 1);
    // Descriptors: host pid and user, container pid, command name.
    let out = e.ok(["top", "c1", "pid,hpid", "huser", "comm"]);
    let v: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(v[0], ["PID", "HPID", "HUSER", "COMMAND"]);
    assert_eq!(v[1], ["1", &c.pid.to_string(), &e.user.name, "sleep"]);
    assert_eq!(e.ok(["container", "top", "c1", "%p"]).lines().count(), 3);
    let o = e.run(["top", "c1", "bogus"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("bogus"), "{o}");
    e.ok(["run", "--name", "done", "bb", "true"]);
    assert_eq!(e.run(["top", "done"]).code, 125);
    assert_eq!(e.run(["top", "nosuch"]).code, 125);
}
