//! What a container can see and do: its own processes, podman's capabilities, masked and
//! read-only kernel paths, no_new_privs.

use crate::common::Env;

#[test]
fn sees_only_its_own_processes() {
    let e = Env::new();
    e.import_busybox();
    let out = e.ok(["run", "--rm", "bb", "sh", "-c", "sleep 5 & ps -o pid,comm"]);
    let pids: Vec<&str> = out.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert!(pids.len() <= 3 && pids.contains(&"1"), "{out}");
    assert!(pids.iter().all(|p| p.parse::<u32>().unwrap() < 10), "{out}");
}

#[test]
fn default_capabilities_are_podmans() {
    let e = Env::new();
    e.import_busybox();
    let caps = e.ok(["run", "--rm", "bb", "grep", "^Cap", "/proc/self/status"]);
    assert!(caps.contains("CapEff:\t00000000800405fb"), "{caps}");
    assert!(caps.contains("CapBnd:\t00000000800405fb"), "{caps}");
    assert!(caps.contains("CapAmb:\t0000000000000000"), "{caps}");
    let add = e.ok([
        "run",
        "--rm",
        "--cap-add",
        "net_admin",
        "--cap-drop",
        "CAP_CHOWN",
        "bb",
        "grep",
        "^CapEff",
        "/proc/self/status",
    ]);
    // +NET_ADMIN (bit 12) -CHOWN (bit 0)
    assert_eq!(add.trim(), "CapEff:\t00000000800415fa");
    let none = e.ok(["run", "--rm", "--cap-drop", "all", "bb", "grep", "^CapEff", "/proc/self/status"]);
    assert_eq!(none.trim(), "CapEff:\t0000000000000000");
    assert_eq!(e.run(["run", "--rm", "--cap-add", "bogus", "bb", "true"]).code, 125);
    let nnp = e.ok(["run", "--rm", "bb", "grep", "^NoNewPrivs", "/proc/self/status"]);
    assert_eq!(nnp.split_whitespace().last(), Some("1"));
}

#[test]
fn privileged_gets_all_capabilities_and_no_masks() {
    let e = Env::new();
    e.import_busybox();
    let out = e.ok([
        "run",
        "--rm",
        "--privileged",
        "bb",
        "sh",
        "-c",
        "grep ^CapEff /proc/self/status; grep -c ' /proc/kcore ' /proc/self/mountinfo || true",
    ]);
    let eff = out.lines().next().unwrap().split_whitespace().last().unwrap().to_string();
    assert!(u64::from_str_radix(&eff, 16).unwrap().count_ones() >= 38, "{out}");
    assert_eq!(out.lines().nth(1), Some("0"), "{out}");
}

#[test]
fn kernel_paths_are_masked_or_read_only() {
    let e = Env::new();
    e.import_busybox();
    let o = e.run(["run", "--rm", "bb", "sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    let o = e.run(["run", "--rm", "bb", "sh", "-c", "echo 1 > /proc/sysrq-trigger"]);
    assert_ne!(o.code, 0, "{o}");
    // Masked: empty (whichever of them this kernel has).
    assert_eq!(
        e.ok([
            "run",
            "--rm",
            "bb",
            "sh",
            "-c",
            "cat /proc/keys /proc/timer_list 2>/dev/null | wc -c; ls /sys/firmware | wc -l"
        ]),
        "0\n0\n"
    );
    let host_keys = std::fs::metadata("/proc/keys").is_ok();
    assert!(host_keys, "the host has /proc/keys, so the mask above was exercised");
    // /sys is read-only.
    assert_ne!(e.run(["run", "--rm", "bb", "sh", "-c", "echo x > /sys/kernel/uevent_helper"]).code, 0);
    // Devices, /dev/pts, /dev/shm and the standard links exist.
    let out = e.ok(["run", "--rm", "bb", "sh", "-c", "ls /dev; readlink /dev/fd; readlink /dev/stdin; echo ok > /dev/null; head -c 4 /dev/zero | wc -c; touch /dev/shm/x"]);
    for d in [
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "pts",
        "shm",
        "mqueue",
        "ptmx",
        "/proc/self/fd",
        "/proc/self/fd/0",
    ] {
        assert!(out.split_whitespace().any(|w| w == d), "/dev lacks {d}: {out}");
    }
    assert!(out.trim_end().ends_with('4'), "{out}");
}

#[test]
fn network_none_has_only_loopback_and_etc_files_exist() {
    let e = Env::new();
    e.import_busybox();
    let out = e.ok(["run", "--rm", "--network", "none", "bb", "sh", "-c", "ls /sys/class/net; cat /etc/hosts"]);
    assert!(out.starts_with("lo\n"), "{out}");
    assert!(out.contains("localhost"), "{out}");
    let host = e.ok(["run", "--rm", "--network", "host", "bb", "ls", "/sys/class/net"]);
    assert!(host.lines().count() >= 1);
    assert_eq!(e.run(["run", "--rm", "--network", "pasta", "bb", "true"]).code, 125);
}
