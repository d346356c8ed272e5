//! Detached containers and their lifecycle: the monitor, run -d, create/start, stop, kill,
//! rm, wait, restart policies, logs, ps, inspect, rename, prune, and the races and faults
//! around them.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::common::{Env, LineReader, mounts_of, rig, run_bounded, wait_bounded, wait_for};

const T: Duration = Duration::from_secs(30);

fn inspect(e: &Env, name: &str) -> Value {
    let out = e.ok(["inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|err| panic!("inspect {name}: {err}\n{out}"));
    v[0].clone()
}

fn status(e: &Env, name: &str) -> String {
    inspect(e, name)["State"]["Status"].as_str().unwrap_or_default().to_string()
}

/// Is `pid` a live process (not a zombie)?
fn alive(pid: i64) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// Monitors of this environment still running.
fn monitors(e: &Env) -> Vec<i64> {
    let root = e.store().display().to_string();
    let mut v = Vec::new();
    for d in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = d.file_name().to_string_lossy().parse::<i64>() else { continue };
        let Ok(cmd) = std::fs::read(d.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("__monitor") && cmd.contains(&root) && alive(pid) {
            v.push(pid);
        }
    }
    v
}

fn wait_monitors_gone(e: &Env) {
    wait_for("every monitor of the test to exit", T, || monitors(e).is_empty());
}

fn wait_status(e: &Env, name: &str, want: &str) {
    wait_for(&format!("container {name} to be {want}"), T, || status(e, name) == want);
}

fn logs(e: &Env, name: &str) -> String {
    e.ok(["logs", name])
}

fn container_dirs(e: &Env) -> usize {
    std::fs::read_dir(e.store().join("containers")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn run_d_ps_logs_stop_start_rm() {
    let e = Env::new();
    e.import_busybox();
    let script = "trap 'echo bye; exit 3' TERM; echo started; while :; do sleep 0.05; done";
    let id = e.ok(["run", "-d", "--name", "web", "bb", "sh", "-c", script]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the full ID: {id:?}");
    let ps = e.ok(["ps"]);
    let row = ps.lines().find(|l| l.ends_with("web")).unwrap_or_else(|| panic!("web not in ps:\n{ps}"));
    assert!(row.starts_with(&id[..12]) && row.contains("Up "), "{ps}");
    wait_for("the container's output in its log", T, || logs(&e, "web").contains("started"));
    let i = inspect(&e, "web");
    let (pid, mon) = (i["State"]["Pid"].as_i64().unwrap(), i["State"]["ConmonPid"].as_i64().unwrap());
    assert!(alive(pid) && alive(mon), "{i}");
    // The monitor: one thread, its own session, the container's parent (its reaper).
    let status_of = |p: i64| std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
    assert!(status_of(mon).lines().any(|l| l.split_whitespace().eq(["Threads:", "1"])), "{}", status_of(mon));
    let stat = std::fs::read_to_string(format!("/proc/{mon}/stat")).unwrap();
    let f: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    assert_eq!(f[3], mon.to_string(), "the monitor leads its own session: {stat}");
    assert!(status_of(pid).lines().any(|l| l == format!("PPid:\t{mon}")), "{}", status_of(pid));
    assert_eq!(e.ok(["stop", "-t", "20", "web"]), "web\n");
    let ps = e.ok(["ps", "-a"]);
    assert!(ps.contains("Exited (3)"), "{ps}");
    assert!(!e.ok(["ps"]).contains("web"));
    assert_eq!(e.ok(["wait", "web"]), "3\n");
    assert!(!alive(pid) && !alive(mon), "the container and its monitor are gone");
    assert_eq!(logs(&e, "web"), "started\nbye\n");
    // Again, by ID prefix.
    assert_eq!(e.ok(["start", &id[..6]]), format!("{}\n", &id[..6]));
    wait_status(&e, "web", "running");
    wait_for("the second run's output", T, || logs(&e, "web").matches("started").count() == 2);
    assert_eq!(e.ok(["rm", "-f", "web"]), "web\n");
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
    wait_monitors_gone(&e);
    assert_eq!(container_dirs(&e), 0);
}

#[test]
fn wait_and_start_attach_return_the_exit_code() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "-d", "--name", "w", "bb", "sh", "-c", "sleep 0.3; exit 7"]);
    assert_eq!(e.ok(["wait", "w"]), "7\n");
    assert_eq!(status(&e, "w"), "exited");
    assert_eq!(inspect(&e, "w")["State"]["ExitCode"], 7);
    // create + start -a: the output, then the container's status as nook's.
    let id = e.ok(["create", "--name", "c", "bb", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(status(&e, "c"), "created");
    assert!(e.ok(["ps", "-a"]).contains("Created"));
    let o = e.run(["start", "-a", "c"]);
    assert_eq!(o.code, 5, "{o}");
    assert_eq!(o.stdout, "out\n", "{o}");
    assert_eq!(o.stderr, "err\n", "{o}");
    // -i passes stdin to an interactive container.
    e.ok(["create", "-i", "--name", "cat", "bb", "sh", "-c", "read x; echo got-$x"]);
    let mut c = e.nook(["start", "-ai", "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = wait_bounded(child, T, "start -ai");
    assert_eq!((o.code, o.stdout.as_str()), (0, "got-hello\n"), "{o}");
    // A start failure is reported by the starting command, with podman's code.
    e.ok(["create", "--name", "bad", "bb", "nosuchcmd"]);
    let o = e.run(["start", "bad"]);
    assert_eq!(o.code, 127, "{o}");
    assert!(o.stderr.starts_with("Error: ") && o.stderr.contains("nosuchcmd"), "{o}");
    let o = e.run(["run", "-d", "bb", "/etc/passwd"]);
    assert_eq!(o.code, 126, "{o}");
    let o = e.run(["wait", "nosuch"]);
    assert_ne!(o.code, 0);
    wait_monitors_gone(&e);
}

#[test]
fn rm_d_removes_the_container_after_it_exits() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "--rm", "-d", "--name", "gone", "bb", "sh", "-c", "sleep 0.5; exit 4"]);
    assert_eq!(e.ok(["wait", "gone"]), "4\n", "wait gives the code of a container --rm removes");
    wait_for("the --rm container to be removed", T, || e.ok(["ps", "-a", "-q"]).is_empty());
    wait_monitors_gone(&e);
    wait_for("the --rm container's files to be removed", T, || container_dirs(&e) == 0);
    let o = e.run(["run", "--rm", "-d", "--restart", "always", "bb", "true"]);
    assert_eq!(o.code, 125, "{o}");
}

/// Start times of each run, from the `run` lines of the log.
fn run_times(e: &Env, name: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    e.ok(["logs", "-t", name])
        .lines()
        .filter(|l| l.ends_with(" run"))
        .map(|l| chrono::DateTime::parse_from_rfc3339(l.split(' ').next().unwrap()).unwrap().to_utc())
        .collect()
}

/// The container's state.json as the monitor writes it (None while it is being replaced).
fn state_json(e: &Env, id: &str) -> Option<Value> {
    let b = std::fs::read(e.store().join("containers").join(id).join("state.json")).ok()?;
    serde_json::from_slice(&b).ok()
}

#[test]
fn restart_on_failure_counts_and_backs_off() {
    let e = Env::new();
    e.import_busybox();
    // Each run lasts a moment, so the monitor's state between the back-offs is seen too.
    let script = "echo run; sleep 0.3; exit 3";
    let id = e.ok(["run", "-d", "--name", "f", "--restart", "on-failure:3", "bb", "sh", "-c", script]);
    let id = id.trim();
    // The back-off before each restart, as the monitor records it in the state while it waits
    // (until the restarted container runs): each back-off with the restart count when first
    // seen (the restart counts once the back-off is over).
    let mut delays: Vec<(u64, u64)> = Vec::new();
    let mut trace: Vec<(u64, Option<u64>, String)> = Vec::new();
    wait_for("the on-failure:3 container's last run to exit", T, || {
        let Some(st) = state_json(&e, id) else { return false };
        let count = st["restart_count"].as_u64().unwrap_or(0);
        let delay = st["restart_delay_ms"].as_u64();
        let status = st["status"].as_str().unwrap_or_default().to_string();
        if trace.last().is_none_or(|(_, d, _)| *d != delay) {
            if let Some(ms) = delay {
                delays.push((count, ms));
            }
            trace.push((count, delay, status.clone()));
        }
        count == 3 && status == "exited" && delay.is_none()
    });
    // The back-off doubles: 100 ms before the first restart, 200 ms, 400 ms.
    assert_eq!(
        delays,
        [(0, 100), (1, 200), (2, 400)],
        "the back-offs the monitor recorded; (restarts, back-off, status) as seen: {trace:?}"
    );
    wait_for("the on-failure:3 container to give up", T, || {
        let i = inspect(&e, "f");
        i["State"]["Status"] == "exited" && i["State"]["ConmonPid"] == 0
    });
    let i = inspect(&e, "f");
    assert_eq!(i["RestartCount"], 3, "{i}");
    assert_eq!(i["State"]["ExitCode"], 3);
    assert_eq!(i["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(state_json(&e, id).unwrap()["restart_delay_ms"], Value::Null, "no back-off once it gave up");
    assert_eq!(run_times(&e, "f").len(), 4, "one run and three restarts");
    // Success is not restarted by on-failure.
    e.ok(["run", "-d", "--name", "ok", "--restart", "on-failure", "bb", "sh", "-c", "echo run"]);
    assert_eq!(e.ok(["wait", "ok"]), "0\n");
    wait_monitors_gone(&e);
    assert_eq!(inspect(&e, "ok")["RestartCount"], 0);
    // no: never.
    e.ok(["run", "-d", "--name", "no", "--restart", "no", "bb", "sh", "-c", "exit 1"]);
    assert_eq!(e.ok(["wait", "no"]), "1\n");
    wait_monitors_gone(&e);
    assert_eq!(inspect(&e, "no")["RestartCount"], 0);
    let o = e.run(["run", "-d", "--restart", "sometimes", "bb", "true"]);
    assert_eq!(o.code, 125, "{o}");
}

#[test]
fn restart_always_and_unless_stopped_until_stopped() {
    let e = Env::new();
    e.import_busybox();
    for policy in ["always", "unless-stopped"] {
        e.ok(["run", "-d", "--name", policy, "--restart", policy, "bb", "sh", "-c", "echo run; sleep 0.2"]);
        wait_for(&format!("{policy}: two restarts"), T, || inspect(&e, policy)["RestartCount"].as_u64() >= Some(2));
        e.ok(["stop", "-t", "1", policy]);
        wait_monitors_gone(&e);
        let i = inspect(&e, policy);
        assert_eq!(i["State"]["Status"], "exited", "{i}");
        let n = run_times(&e, policy).len() as u64;
        let count = i["RestartCount"].as_u64().unwrap();
        // The last restart may have been stopped before its first output.
        assert!(n == count + 1 || n == count, "{n} runs for {count} restarts");
        assert!(!e.ok(["ps"]).contains(policy));
    }
}

#[test]
fn restart_verb_and_logs_follow_across_it() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "-d", "--name", "r", "bb", "sh", "-c", "echo gen; trap 'exit 0' TERM; while :; do sleep 0.05; done"]);
    wait_for("the first output", T, || logs(&e, "r").contains("gen"));
    let mut c = e.nook(["logs", "-f", "r"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut follower = c.spawn().unwrap();
    let mut out = LineReader::new(follower.stdout.take().unwrap());
    assert_eq!(out.next_line(T, "the first line of logs -f"), "gen\n");
    let before = inspect(&e, "r")["State"]["StartedAt"].clone();
    assert_eq!(e.ok(["restart", "-t", "10", "r"]), "r\n");
    let after = inspect(&e, "r");
    assert_eq!(after["State"]["Status"], "running");
    assert_ne!(after["State"]["StartedAt"], before);
    assert_eq!(
        out.next_line(T, "logs -f after the restart"),
        "gen\n",
        "logs -f printed the restarted container's output"
    );
    e.ok(["stop", "r"]);
    let rest = out.rest(T, "logs -f after stop");
    let o = wait_bounded(follower, T, "logs -f to end after stop");
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(rest, "");
    // A stopped container starts again with restart.
    e.ok(["restart", "r"]);
    wait_status(&e, "r", "running");
    e.ok(["rm", "-f", "r"]);
    wait_monitors_gone(&e);
}

#[test]
fn log_rotation_keeps_the_newest_data_and_logs_flags() {
    let e = Env::new();
    e.import_busybox();
    let script = "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); done; echo to-err >&2";
    e.ok(["run", "-d", "--name", "big", "--log-opt", "max-size=4k", "bb", "sh", "-c", script]);
    assert_eq!(e.ok(["wait", "big"]), "0\n");
    wait_monitors_gone(&e);
    let o = e.run(["logs", "big"]);
    assert!(o.stdout.ends_with("line-399\n"), "{}", &o.stdout[o.stdout.len().saturating_sub(200)..]);
    assert!(!o.stdout.contains("line-0\n"), "the oldest data was rotated away");
    assert_eq!(o.stderr, "to-err\n");
    let dir = std::fs::read_dir(e.store().join("containers")).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::metadata(dir.join("ctr.log")).unwrap().len() <= 4096);
    // The log is continuous across the rotation: newest lines, in order, none missing.
    let nums: Vec<u32> = o.stdout.lines().map(|l| l.trim_start_matches("line-").parse().unwrap()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "no gap");
    // The last lines are line-398, line-399 (stdout), to-err (stderr).
    assert_eq!(e.ok(["logs", "--tail", "3", "big"]), "line-398\nline-399\n");
    let named = e.ok(["logs", "--names", "--tail", "2", "big"]);
    assert_eq!(named, "big line-399\n");
    let ts = e.ok(["logs", "-t", "--tail", "2", "big"]);
    assert!(ts.ends_with(" line-399\n") && ts.contains('T') && ts.contains('Z'), "{ts}");
    assert_eq!(e.ok(["logs", "--since", "2000-01-01T00:00:00Z", "--tail", "2", "big"]), "line-399\n");
    assert_eq!(e.run(["logs", "--until", "2000-01-01T00:00:00Z", "big"]).stdout, "");
    assert_eq!(e.ok(["logs", "--since", "1h", "--tail", "2", "big"]), "line-399\n");
    // The format on disk is podman's k8s-file.
    let raw = std::fs::read_to_string(dir.join("ctr.log")).unwrap();
    let last = raw.lines().last().unwrap();
    let f: Vec<&str> = last.splitn(4, ' ').collect();
    assert!(chrono::DateTime::parse_from_rfc3339(f[0]).is_ok() && f[1] == "stderr" && f[2] == "F" && f[3] == "to-err");
    // --log-driver none: no log.
    e.ok(["run", "-d", "--name", "quiet", "--log-driver", "none", "bb", "echo", "x"]);
    e.ok(["wait", "quiet"]);
    assert_ne!(e.run(["logs", "quiet"]).code, 0);
}

#[test]
fn stop_while_starting_and_rm_f_while_running() {
    let e = Env::new();
    e.import_busybox();
    // stop at various moments of a start: before the container exists, while its monitor
    // starts it, after. Each time both commands end and the outcome is consistent: a running
    // container has its monitor, an exited one has none, and nothing restarts it.
    for (i, delay_ms) in [0u64, 40, 80, 120, 200, 400].into_iter().enumerate() {
        let name = format!("s{i}");
        let mut c = e.nook(["run", "-d", "--name", &name, "bb", "sleep", "100"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let stop = e.run(["stop", "-t", "1", &name]);
        let run = wait_bounded(child, T, "run -d racing stop");
        assert!(run.code == 0 || run.code == 125, "{run}");
        // A stop that succeeded wins (README): whatever of the start it raced with, the
        // container does not run afterwards, now or once the monitor is done.
        if stop.code == 0 && e.run(["inspect", &name]).code == 0 {
            let st = status(&e, &name);
            assert!(st == "exited" || st == "created", "{name}: stopped (after {delay_ms} ms) but {st}: {stop}\n{run}");
            wait_for(&format!("the monitor of stopped {name} to exit"), T, || {
                inspect(&e, &name)["State"]["ConmonPid"] == 0
            });
            let st = status(&e, &name);
            assert!(
                st == "exited" || st == "created",
                "{name}: stopped (after {delay_ms} ms), later {st}: {stop}\n{run}"
            );
        }
        wait_for("each running container to have one monitor, and no other monitor", T, || {
            monitors(&e).len() == e.ok(["ps", "-q"]).lines().count()
        });
    }
    let o = run_bounded(&mut e.nook(["rm", "-af"]), T);
    assert_eq!(o.code, 0, "{o}");
    wait_monitors_gone(&e);
    // Stopping a container its monitor is starting: the stop waits for the start, then wins.
    e.ok(["create", "--name", "late", "bb", "sleep", "100"]);
    let mut c = e.nook(["start", "late"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for("the monitor of the starting container", T, || {
        !monitors(&e).is_empty() || status(&e, "late") != "created"
    });
    let stop = e.run(["stop", "-t", "1", "late"]);
    let _ = wait_bounded(child, T, "start racing stop");
    assert_eq!(stop.code, 0, "{stop}");
    let start = std::time::Instant::now();
    while inspect(&e, "late")["State"]["ConmonPid"] != 0 {
        assert!(
            start.elapsed() < T,
            "timed out waiting for the stopped container's monitor to exit: {stop}\n{}",
            inspect(&e, "late")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status(&e, "late"), "exited", "the stop won over the start it waited for");
    let o = run_bounded(&mut e.nook(["rm", "-af"]), T);
    assert_eq!(o.code, 0, "{o}");
    wait_monitors_gone(&e);

    e.ok(["run", "-d", "--name", "busy", "--restart", "always", "bb", "sleep", "100"]);
    let i = inspect(&e, "busy");
    let pid = i["State"]["Pid"].as_i64().unwrap();
    let o = e.run(["rm", "busy"]);
    assert_eq!(o.code, 2, "a running container needs -f: {o}");
    assert_eq!(e.ok(["rm", "-f", "busy"]), "busy\n");
    assert!(!alive(pid));
    wait_monitors_gone(&e);
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
    assert_eq!(container_dirs(&e), 0);
}

#[test]
fn run_rm_racing_rm() {
    let e = Env::new();
    e.import_busybox();
    for i in 0..3 {
        let name = format!("race{i}");
        let mut c = e.nook(["run", "--rm", "-d", "--name", &name, "bb", "sh", "-c", "sleep 0.2"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        // rm -f until the name is gone, whoever removes it.
        wait_for("the racing container to be gone", T, || {
            let o = e.run(["rm", "-f", &name]);
            o.code == 1 || o.code == 0 && e.run(["inspect", &name]).code != 0
        });
        let _ = wait_bounded(child, T, "run --rm -d");
    }
    wait_monitors_gone(&e);
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
    wait_for("every container directory to be removed", T, || container_dirs(&e) == 0);
}

#[test]
fn fifty_containers_in_parallel() {
    let e = Env::new();
    e.import_busybox();
    let children: Vec<_> = (0..50)
        .map(|_| {
            let mut c = e.nook(["run", "-d", "bb", "sleep", "600"]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for ch in children {
        let o = wait_bounded(ch, Duration::from_secs(120), "one of 50 parallel run -d");
        assert_eq!(o.code, 0, "{o}");
        ids.push(o.stdout.trim().to_string());
    }
    let ps = e.ok(["ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.State}}"]);
    let rows: Vec<Vec<&str>> = ps.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 50, "{ps}");
    let mut names: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 50, "names are unique");
    for id in &ids {
        assert!(rows.iter().any(|r| r[0] == id && r[2] == "running"), "{id} is tracked and running");
    }
    assert_eq!(monitors(&e).len(), 50, "one monitor per container");
    let o = run_bounded(&mut e.nook(["rm", "-af"]), Duration::from_secs(120));
    assert_eq!(o.code, 0, "{o}");
    wait_monitors_gone(&e);
    assert_eq!(e.ok(["ps", "-a", "-q"]), "");
}

#[test]
fn sigkill_of_the_monitor_is_reported_and_cleaned_up() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "-d", "--name", "orphan", "bb", "sleep", "100"]);
    let i = inspect(&e, "orphan");
    let (pid, mon) = (i["State"]["Pid"].as_i64().unwrap(), i["State"]["ConmonPid"].as_i64().unwrap());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mon as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the container to die with its monitor", T, || !alive(pid));
    let i = inspect(&e, "orphan");
    assert_eq!(i["State"]["Status"], "exited", "{i}");
    assert!(i["State"]["Error"].as_str().unwrap().contains("monitor"), "{i}");
    assert!(e.ok(["ps", "-a"]).contains("Exited (unknown)"));
    assert_eq!(e.ok(["ps", "-q"]), "");
    // It starts again; then it is removed with nothing left.
    e.ok(["start", "orphan"]);
    wait_status(&e, "orphan", "running");
    let i = inspect(&e, "orphan");
    let (pid, mon) = (i["State"]["Pid"].as_i64().unwrap(), i["State"]["ConmonPid"].as_i64().unwrap());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mon as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the monitor to be gone", T, || !alive(mon));
    // The container dies with its monitor (a parent-death signal), a moment later.
    wait_for("the container to die with its monitor", T, || !alive(pid));
    e.ok(["rm", "orphan"]);
    assert_eq!(container_dirs(&e), 0);
    assert!(monitors(&e).is_empty());

    // With fuse-overlayfs the root filesystem has a daemon of its own: the container dies with
    // its monitor, the daemon is stopped by rm, and no mount is left.
    e.ok(["--storage-driver", "fuse-overlayfs", "run", "-d", "--name", "fz", "bb", "sleep", "100"]);
    let dir = std::fs::read_dir(e.store().join("containers")).unwrap().next().unwrap().unwrap().path();
    let st: Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let helpers: Vec<i64> = st["helpers"].as_array().unwrap().iter().map(|h| h["pid"].as_i64().unwrap()).collect();
    assert!(!helpers.is_empty() && helpers.iter().all(|p| alive(*p)), "{st}");
    // The daemon can be stopped with SIGTERM: it does not inherit the monitor's blocked
    // signals (it would only go with the SIGKILL after rm's grace period).
    for p in &helpers {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
        let blk = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap().trim();
        let mask = u64::from_str_radix(blk, 16).unwrap();
        assert_eq!(mask & (1 << (libc::SIGTERM - 1)), 0, "fuse-overlayfs blocks SIGTERM: {status}");
    }
    let i = inspect(&e, "fz");
    let (pid, mon) = (i["State"]["Pid"].as_i64().unwrap(), i["State"]["ConmonPid"].as_i64().unwrap());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mon as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the container to die with its monitor", T, || !alive(pid));
    assert_eq!(status(&e, "fz"), "exited");
    e.ok(["rm", "fz"]);
    assert!(helpers.iter().all(|p| !alive(*p)), "rm stopped the fuse-overlayfs daemon");
    wait_for("the container's mounts to go", T, || mounts_of(&e.store()).is_empty());
    assert_eq!(container_dirs(&e), 0);
}

#[test]
fn sigkill_of_the_cli_during_start() {
    let e = Env::new();
    e.import_busybox();
    for delay_ms in [0u64, 20, 60, 150] {
        let mut c = e.nook(["run", "-d", "bb", "sleep", "100"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever was reached: a consistent container (or none), removable, nothing left.
        // A monitor still starting its container has no running container yet.
        wait_for("the interrupted start to settle", T, || monitors(&e).len() == e.ok(["ps", "-q"]).lines().count());
        let o = run_bounded(&mut e.nook(["rm", "-af"]), T);
        assert_eq!(o.code, 0, "{o}");
        wait_monitors_gone(&e);
        assert_eq!(e.ok(["ps", "-a", "-q"]), "");
    }
}

#[test]
fn ps_formats_and_filters() {
    let e = Env::new();
    e.import_busybox();
    let up = e.ok(["run", "-d", "--name", "up", "--label", "tier=web", "bb", "sleep", "100"]);
    e.ok(["run", "-d", "--name", "done", "--label", "tier=db", "bb", "sh", "-c", "exit 2"]);
    e.ok(["wait", "done"]);
    e.ok(["create", "--name", "new", "bb", "true"]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = e.ok(&a).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), ["up"]);
    assert_eq!(names(&["-a"]), ["done", "new", "up"]);
    assert_eq!(names(&["--filter", "status=exited"]), ["done"]);
    assert_eq!(names(&["--filter", "status=created"]), ["new"]);
    assert_eq!(names(&["-a", "--filter", "label=tier=web"]), ["up"]);
    assert_eq!(names(&["-a", "--filter", "label=tier"]), ["done", "up"]);
    assert_eq!(names(&["-a", "--filter", "name=do"]), ["done"]);
    assert_eq!(names(&["-a", "--filter", "ancestor=bb"]), ["done", "new", "up"]);
    assert_eq!(names(&["-a", "--filter", "ancestor=other"]), Vec::<String>::new());
    assert_eq!(names(&["-a", "--filter", "status=exited", "--filter", "status=running"]), ["done", "up"]);
    assert_eq!(names(&["-l"]), ["new"]);
    assert_eq!(e.ok(["ps", "-q"]), format!("{}\n", &up.trim()[..12]));
    assert_eq!(e.ok(["ps", "-q", "--no-trunc"]), up);
    let row = e.ok(["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}", "--filter", "name=done"]);
    assert!(row.starts_with(&format!("{} done Exited (2) ", row.split(' ').next().unwrap())), "{row}");
    let json: Value = serde_json::from_str(&e.ok(["ps", "-a", "--format", "json"])).unwrap();
    let arr = json.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    let u = arr.iter().find(|c| c["Names"][0] == "up").unwrap();
    assert_eq!(u["State"], "running");
    assert_eq!(u["Labels"]["tier"], "web");
    assert_eq!(u["Id"], up.trim());
    assert!(u["Status"].as_str().unwrap().starts_with("Up "));
    let d = arr.iter().find(|c| c["Names"][0] == "done").unwrap();
    assert_eq!((d["ExitCode"].as_i64(), d["Exited"].as_bool()), (Some(2), Some(true)));
    let head = e.ok(["ps", "-a", "--size"]);
    assert!(head.lines().next().unwrap().ends_with("SIZE"), "{head}");
    let head = e.ok(["ps", "-a"]);
    let cols: Vec<&str> = head.lines().next().unwrap().split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(cols, ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]);
    assert!(head.contains("Created"));
    // container ls is the same listing.
    assert_eq!(e.ok(["container", "ls", "-a", "-q"]), e.ok(["ps", "-a", "-q"]));
    e.ok(["rm", "-af"]);
    wait_monitors_gone(&e);
}

#[test]
fn inspect_fields() {
    let e = Env::new();
    e.import_busybox();
    let vol = e.mkdir("vol");
    let v = format!("{}:/data:ro", vol.display());
    e.ok([
        "run",
        "-d",
        "--name",
        "i",
        "-v",
        &v,
        "--label",
        "a=b",
        "-e",
        "X=1",
        "bb",
        "sh",
        "-c",
        "trap 'exit 9' TERM; while :; do sleep 0.05; done",
    ]);
    let i = inspect(&e, "i");
    assert_eq!(i["Name"], "i");
    assert_eq!(i["State"]["Status"], "running");
    assert_eq!(i["State"]["Running"], true);
    assert!(i["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(i["State"]["OOMKilled"], false);
    assert!(chrono::DateTime::parse_from_rfc3339(i["State"]["StartedAt"].as_str().unwrap()).is_ok());
    assert_eq!(i["Config"]["Labels"]["a"], "b");
    assert!(i["Config"]["Env"].as_array().unwrap().iter().any(|x| x == "X=1"));
    assert_eq!(i["Config"]["Cmd"][0], "sh");
    let m = &i["Mounts"][0];
    assert_eq!((m["Destination"].as_str(), m["RW"].as_bool()), (Some("/data"), Some(false)), "{i}");
    assert!(i["NetworkSettings"].is_object());
    assert_eq!(e.ok(["inspect", "--format", "{{.State.Status}} {{.Config.Labels.a}}", "i"]), "running b\n");
    e.ok(["stop", "i"]);
    let i = inspect(&e, "i");
    assert_eq!((i["State"]["Status"].as_str(), i["State"]["ExitCode"].as_i64()), (Some("exited"), Some(9)));
    assert_eq!(i["State"]["Pid"], 0);
    let started = chrono::DateTime::parse_from_rfc3339(i["State"]["StartedAt"].as_str().unwrap()).unwrap();
    let finished = chrono::DateTime::parse_from_rfc3339(i["State"]["FinishedAt"].as_str().unwrap()).unwrap();
    assert!(finished >= started);
    let o = e.run(["inspect", "nosuch"]);
    assert_eq!(o.code, 125, "{o}");
    // Images too, as podman's inspect does; --type narrows it.
    let img: Value = serde_json::from_str(&e.ok(["inspect", "bb"])).unwrap();
    assert!(img[0]["Id"].as_str().is_some_and(|id| id.len() == 64), "{img}");
    assert_eq!(e.run(["inspect", "--type", "container", "bb"]).code, 125);
}

#[test]
fn names_rename_prefixes_and_prune() {
    let e = Env::new();
    e.import_busybox();
    let id = e.ok(["run", "-d", "--name", "x", "bb", "sleep", "100"]);
    let o = e.run(["run", "-d", "--name", "x", "bb", "true"]);
    assert_eq!(o.code, 125, "{o}");
    assert!(o.stderr.contains("x") && o.stderr.to_lowercase().contains("in use"), "{o}");
    e.ok(["rename", "x", "y"]);
    assert_eq!(inspect(&e, &id.trim()[..8])["Name"], "y");
    assert!(e.ok(["ps", "--format", "{{.Names}}"]).contains("y"));
    e.ok(["create", "--name", "x", "bb", "true"]);
    let o = e.run(["rename", "x", "y"]);
    assert_eq!(o.code, 125, "{o}");
    // prune: every container that is not running.
    e.ok(["run", "-d", "--name", "e1", "bb", "true"]);
    e.ok(["wait", "e1"]);
    let pruned = e.ok(["container", "prune", "-f"]);
    assert_eq!(pruned.lines().count(), 2, "{pruned}");
    assert_eq!(e.ok(["ps", "-a", "--format", "{{.Names}}"]), "y\n");
    e.ok(["kill", "y"]);
    assert_eq!(e.ok(["wait", "y"]), "137\n");
    let o = e.run(["kill", "y"]);
    assert_eq!(o.code, 125, "{o}");
    e.ok(["container", "rm", "y"]);
    wait_monitors_gone(&e);
}

#[test]
fn kill_signals_and_init() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "-d", "--name", "k", "bb", "sh", "-c", "trap 'echo usr1' USR1; while :; do sleep 0.05; done"]);
    e.ok(["kill", "-s", "USR1", "k"]);
    wait_for("the trap's output", T, || logs(&e, "k").contains("usr1"));
    e.ok(["kill", "-s", "9", "k"]);
    assert_eq!(e.ok(["wait", "k"]), "137\n");
    // The stop signal is the container's (--stop-signal, else the image's StopSignal).
    e.ok([
        "create",
        "--name",
        "sig",
        "--stop-signal",
        "USR1",
        "bb",
        "sh",
        "-c",
        "trap 'exit 5' USR1; while :; do sleep 0.05; done",
    ]);
    assert_eq!(inspect(&e, "sig")["Config"]["StopSignal"], "SIGUSR1");
    let mut c = e.nook(["wait", "--condition", "running", "sig"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let waiter = c.spawn().unwrap();
    e.ok(["start", "sig"]);
    assert_eq!(wait_bounded(waiter, T, "wait --condition running").stdout, "0\n");
    assert_eq!(e.ok(["stop", "--all", "-t", "30"]), format!("{}\n", inspect(&e, "sig")["Id"].as_str().unwrap()));
    assert_eq!(inspect(&e, "sig")["State"]["ExitCode"], 5);
    // --init: pid 1 is a reaper; the command is its child and gets the stop signal.
    assert_eq!(e.ok(["run", "--rm", "--init", "bb", "sh", "-c", "echo $$"]), "2\n");
    assert_eq!(e.run(["run", "--rm", "--init", "bb", "sh", "-c", "exit 6"]).code, 6);
    e.ok(["run", "-d", "--init", "--name", "in", "bb", "sleep", "100"]);
    e.ok(["stop", "-t", "60", "in"]);
    // SIGTERM reached sleep through the reaper (not SIGKILL after the timeout).
    assert_eq!(inspect(&e, "in")["State"]["ExitCode"], 143);
    e.ok(["rm", "-a"]);
    wait_monitors_gone(&e);
}

#[test]
fn after_a_reboot_containers_are_exited_and_start_again() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "-d", "--name", "b", "bb", "sleep", "100"]);
    e.ok(["stop", "-t", "0", "b"]);
    // What a reboot leaves: a state that says running, from another boot, and no run root.
    let dir = std::fs::read_dir(e.store().join("containers")).unwrap().next().unwrap().unwrap().path();
    let p = dir.join("state.json");
    let mut st: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    st["status"] = "running".into();
    st["pid"] = 1.into();
    st["monitor_pid"] = 1.into();
    st["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
    std::fs::write(&p, serde_json::to_vec(&st).unwrap()).unwrap();
    if rig().as_root {
        std::os::unix::fs::chown(&p, Some(e.user.uid), Some(e.user.gid)).unwrap();
    }
    let _ = std::fs::remove_dir_all(e.run.join("nook"));
    assert_eq!(e.ok(["ps", "-q"]), "");
    assert_eq!(status(&e, "b"), "exited");
    assert!(inspect(&e, "b")["State"]["Error"].as_str().unwrap().contains("restarted"));
    e.ok(["start", "b"]);
    wait_status(&e, "b", "running");
    e.ok(["rm", "-f", "b"]);
    wait_monitors_gone(&e);
}

#[test]
fn attach_and_detach_keys() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["run", "-dit", "--name", "t", "bb", "sh"]);
    let attach = |keys: &str, input: &[&[u8]], expect: &str| -> crate::common::Out {
        let cmd = format!("{} attach --detach-keys {keys} t", rig().nook.display());
        let mut c = e.command("script");
        c.args(["-qec", &cmd, "/dev/null"]);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.process_group(0);
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = stdout;
            let mut b = [0u8; 4096];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut seen = String::new();
        let mut pump = |want: &str| {
            let start = std::time::Instant::now();
            while !seen.contains(want) {
                assert!(start.elapsed() < T, "timed out waiting for {want:?} from attach; saw {seen:?}");
                if let Ok(d) = rx.recv_timeout(Duration::from_millis(100)) {
                    seen.push_str(&String::from_utf8_lossy(&d));
                }
            }
        };
        // A newline gets a prompt: attach is connected and the terminal raw.
        stdin.write_all(b"\n").unwrap();
        pump("# ");
        for i in input {
            stdin.write_all(i).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        pump(expect);
        drop(stdin);
        let mut o = wait_bounded(child, T, "nook attach under script");
        o.stdout = seen;
        o
    };
    let o = attach("ctrl-p,ctrl-q", &[b"echo mark-$((40+2))\n", b"\x10\x11"], "mark-42");
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(status(&e, "t"), "running", "detaching leaves the container running");
    let o = attach("ctrl-x", &[b"echo again-$((1+1))\n", b"\x18"], "again-2");
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(status(&e, "t"), "running");
    // Without detaching, attach ends with the container and returns its status.
    let o = attach("ctrl-p,ctrl-q", &[b"exit 4\n"], "exit 4");
    assert_eq!(o.code, 4, "{o}");
    assert_eq!(e.ok(["wait", "t"]), "4\n");
    assert!(logs(&e, "t").contains("mark-42"), "tty output is logged too");
    // --no-stdin: output only.
    e.ok(["run", "-d", "--name", "o", "bb", "sh", "-c", "sleep 1; echo late; exit 3"]);
    let o = run_bounded(&mut e.nook(["attach", "--no-stdin", "o"]), T);
    assert_eq!((o.code, o.stdout.as_str()), (3, "late\n"), "{o}");
    e.ok(["rm", "-af"]);
    wait_monitors_gone(&e);
}

#[test]
fn a_foreground_run_is_logged_too() {
    let e = Env::new();
    e.import_busybox();
    assert_eq!(e.ok(["run", "--name", "fg", "bb", "sh", "-c", "echo out; echo err >&2"]), "out\n");
    let o = e.run(["logs", "fg"]);
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"), "{o}");
    assert_eq!(e.ok(["ps", "-a", "--format", "{{.Status}}"]).split(' ').next(), Some("Exited"));
    // start runs it again, now in the background.
    e.ok(["start", "fg"]);
    assert_eq!(e.ok(["wait", "fg"]), "0\n");
    wait_for("the second run's output", T, || logs(&e, "fg").matches("out").count() == 2);
    wait_monitors_gone(&e);
}

#[test]
fn two_starts_at_once_start_the_container_once() {
    let e = Env::new();
    e.import_busybox();
    e.ok(["create", "--name", "twice", "bb", "sleep", "100"]);
    let spawn = || {
        let mut c = e.nook(["start", "twice"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = wait_bounded(child, T, "nook start twice");
        assert_eq!(o.code, 0, "both starts succeed: {o}");
        assert_eq!(o.stdout.trim(), "twice", "{o}");
    }
    assert_eq!(status(&e, "twice"), "running");
    assert_eq!(monitors(&e).len(), 1, "one monitor");
    e.ok(["rm", "-f", "twice"]);
    wait_monitors_gone(&e);
}
