//! The test rig: runs the real `nook` binary as an unprivileged user with subordinate ids.
//!
//! - As root (CI): `tests/rig/setup-root.sh` installs packages and creates `nook-test` (with a
//!   /etc/subuid range) and `nook-nosub` (without); every nook invocation runs as one of them.
//! - As a normal user (a developer's laptop): nook runs as you; tests that need a second user
//!   are skipped with a message (they fail instead under `CI=true`).
//!
//! Each test gets its own HOME, XDG directories and store under a short private directory, so
//! tests run in parallel and leave nothing behind.

#![allow(dead_code)]

pub mod fixtures;
pub mod hostile;
pub mod registry;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

pub struct Rig {
    /// nook runs as this user.
    pub user: TestUser,
    /// A user without subordinate ids (root only).
    pub nosub: Option<TestUser>,
    /// A copy of the nook binary every test user can execute.
    pub nook: PathBuf,
    /// World-readable fixtures (busybox.tar, …).
    pub fixtures: PathBuf,
    /// Base directory for per-test directories.
    pub base: PathBuf,
    pub as_root: bool,
}

static RIG: OnceLock<Rig> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn lookup_user(name: &str) -> Option<TestUser> {
    let u = nix::unistd::User::from_name(name).ok().flatten()?;
    Some(TestUser { name: name.to_string(), uid: u.uid.as_raw(), gid: u.gid.as_raw() })
}

pub fn rig() -> &'static Rig {
    RIG.get_or_init(|| {
        let as_root = nix::unistd::geteuid().is_root();
        let base;
        let (user, nosub) = if as_root {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rig/setup-root.sh");
            let st = Command::new("bash").arg(&script).status().expect("running tests/rig/setup-root.sh");
            assert!(st.success(), "tests/rig/setup-root.sh failed");
            base = PathBuf::from("/tmp/nook-e2e");
            (lookup_user("nook-test").expect("nook-test user"), lookup_user("nook-nosub"))
        } else {
            let uid = nix::unistd::getuid().as_raw();
            let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default();
            base = std::env::temp_dir().join(format!("nook-e2e-{uid}"));
            (TestUser { name, uid, gid: nix::unistd::getgid().as_raw() }, None)
        };
        fs::create_dir_all(&base).expect("creating the rig base directory");
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).expect("chmod rig base");
        // A private copy of the binary at a path every test user can reach (the checkout may
        // be under a 0700 home).
        let bin_dir = base.join("bin");
        fs::create_dir_all(&bin_dir).expect("creating bin dir");
        fs::set_permissions(&bin_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let src = Path::new(env!("CARGO_BIN_EXE_nook"));
        let md = fs::metadata(src).expect("nook binary");
        let nook = bin_dir.join(format!("nook-{}-{}", md.len(), md.mtime()));
        if !nook.exists() {
            let tmp = bin_dir.join(format!(".nook-{}", std::process::id()));
            fs::copy(src, &tmp).expect("copying nook");
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&tmp, &nook).expect("installing nook copy");
        }
        // Keyed by the fixture code, so worktrees and later changes never reuse a stale set.
        let fixtures = base.join(format!("fixtures-{:016x}", fixtures::version()));
        fixtures::build_all(&fixtures);
        Rig { user, nosub, nook, fixtures, base, as_root }
    })
}

/// True under CI, where a skipped test is a failure.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns true) with a message, or fails under CI.
pub fn skip(why: &str) -> bool {
    assert!(!ci(), "test cannot run here under CI: {why}");
    eprintln!("SKIPPED: {why}");
    true
}

/// One test's private world: HOME, XDG directories and a store, for one user.
pub struct Env {
    pub user: TestUser,
    pub dir: PathBuf,
    pub home: PathBuf,
    pub run: PathBuf,
    /// Extra environment variables for every nook invocation.
    pub vars: Vec<(String, String)>,
    /// Variables removed from the environment.
    pub unset: Vec<String>,
}

impl Env {
    /// An environment for the test user with subordinate ids.
    pub fn new() -> Env {
        let r = rig();
        Env::for_user(r.user.clone())
    }

    pub fn for_user(user: TestUser) -> Env {
        let r = rig();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Short: unix socket paths under XDG_RUNTIME_DIR are limited to 108 bytes.
        let dir = r.base.join("t").join(format!("{}-{n}", std::process::id()));
        let home = dir.join("home");
        let run = dir.join("run");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&run).unwrap();
        fs::set_permissions(r.base.join("t"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        if r.as_root {
            for p in [&home, &run] {
                std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
        let conf = r.fixtures.join("registries-none.conf").display().to_string();
        let vars = vec![("CONTAINERS_REGISTRIES_CONF".to_string(), conf)];
        Env { user, dir, home, run, vars, unset: Vec::new() }
    }

    /// A directory in this test's world owned by the test user.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        fs::create_dir_all(&p).unwrap();
        if rig().as_root {
            std::os::unix::fs::chown(&p, Some(self.user.uid), Some(self.user.gid)).unwrap();
        }
        p
    }

    /// The storage root of this environment.
    pub fn store(&self) -> PathBuf {
        self.home.join(".local/share/nook")
    }

    /// A command running `prog` as the test user in this environment.
    pub fn command(&self, prog: impl AsRef<OsStr>) -> Command {
        let r = rig();
        let mut c = Command::new(prog);
        c.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("USER", &self.user.name)
            .env("LOGNAME", &self.user.name)
            .env("XDG_RUNTIME_DIR", &self.run)
            .env("LANG", "C.UTF-8")
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        for k in &self.unset {
            c.env_remove(k);
        }
        if r.as_root {
            c.uid(self.user.uid).gid(self.user.gid);
        }
        c
    }

    /// `nook ARGS` as the test user.
    pub fn nook<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(&rig().nook);
        c.args(args);
        c
    }

    /// Runs `nook ARGS` to completion (bounded).
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.nook(args);
        run_bounded(&mut c, Duration::from_secs(120))
    }

    /// Runs `nook ARGS`, asserting success; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let o = self.run(&args);
        assert_eq!(o.code, 0, "nook {args:?} failed:\n{o}");
        o.stdout
    }

    /// Imports the busybox fixture as `bb`.
    pub fn import_busybox(&self) {
        let tar = rig().fixtures.join("busybox.tar");
        self.ok([OsStr::new("import"), tar.as_os_str(), OsStr::new("bb")]);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A test that failed half-way may leave detached containers: their monitors (and
        // fuse-overlayfs daemons) name this environment's directories on their command lines.
        // SIGKILL them; each container dies with its monitor.
        kill_processes_naming(&self.dir);
        if rig().as_root {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            // Files owned by subordinate ids: remove them from inside the user namespace.
            let mut c = self.nook(["unshare", "rm", "-rf"]);
            c.arg(&self.home).arg(&self.run);
            let _ = run_bounded(&mut c, Duration::from_secs(60));
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGKILLs every process whose command line mentions `dir` (not this process).
fn kill_processes_naming(dir: &Path) {
    // With the trailing slash: /…/t/12-3 must not match /…/t/12-30.
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else { return };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = fs::read(p.path().join("cmdline"))
            && cmd.windows(needle.len()).any(|w| w == needle.as_slice())
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A container kept running by a foreground `nook run` in the background (a stand-in for
/// `run -d`). Dropping it SIGKILLs that owner (the container dies with it) and waits for it.
pub struct Background {
    child: Option<Child>,
    pub name: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// The container's ID.
    pub id: String,
}

impl Env {
    /// Starts `nook run --name NAME ARGS…` as a background child and waits (bounded) until the
    /// container is recorded as running.
    pub fn start_container(&self, name: &str, args: &[&str]) -> Background {
        let mut c = self.nook(["run", "--name", name]);
        c.args(args).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        let mut child = c.spawn().expect("spawning nook run");
        let store = self.store();
        let (mut pid, mut id) = (0, String::new());
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().expect("polling nook run") {
                let out = wait_bounded(child, Duration::from_secs(10), "nook run's output");
                panic!("nook run --name {name} ended early ({st}):\n{out}");
            }
            for d in fs::read_dir(store.join("containers")).into_iter().flatten().flatten() {
                let rec: serde_json::Value = fs::read(d.path().join("container.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let st: serde_json::Value = fs::read(d.path().join("state.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                if rec["name"] == name && st["status"] == "running" && st["pid"].as_i64().unwrap_or(0) > 0 {
                    pid = st["pid"].as_i64().unwrap_or(0) as i32;
                    id = rec["id"].as_str().unwrap_or_default().to_string();
                }
            }
            if pid > 0 {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let out = wait_bounded(child, Duration::from_secs(10), "nook run after a failed start");
                panic!("timed out after 60s waiting for container {name} to be running\n{out}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Background { child: Some(child), name: name.to_string(), pid, id }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            // Bounded, without panicking in a drop: the owner was SIGKILLed.
            let start = Instant::now();
            while !matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                if start.elapsed() > Duration::from_secs(30) {
                    eprintln!("the background nook run of {} did not end 30s after SIGKILL", self.name);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Its init dies with it (parent-death signal): wait for that too, bounded.
            let start = Instant::now();
            while Path::new(&format!("/proc/{}", self.pid)).exists()
                && !fs::read_to_string(format!("/proc/{}/stat", self.pid)).is_ok_and(|s| s.contains(") Z"))
            {
                if start.elapsed() > Duration::from_secs(30) {
                    eprintln!("container {} (pid {}) still alive 30s after its owner was killed", self.name, self.pid);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A finished command.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code: {}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

fn to_out(o: Output) -> Out {
    use std::os::unix::process::ExitStatusExt;
    Out {
        code: o.status.code().unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs a command with captured output, killing it (and failing) after `limit`.
pub fn run_bounded(c: &mut Command, limit: Duration) -> Out {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so a timeout kills everything it started.
    c.process_group(0);
    let child = c.spawn().expect("spawning a command");
    wait_bounded(child, limit, &format!("{c:?}"))
}

/// Waits for a spawned child with captured output, killing it after `limit`.
pub fn wait_bounded(child: Child, limit: Duration, what: &str) -> Out {
    let pid = child.id() as i32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if d2.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        true
    });
    let out = child.wait_with_output().expect("waiting for a command");
    done.store(true, Ordering::SeqCst);
    let timed_out = watchdog.join().unwrap_or(false);
    let out = to_out(out);
    assert!(!timed_out, "timed out after {}s waiting for {what}\n{out}", limit.as_secs());
    out
}

/// Polls `cond` every 20 ms for at most `limit`; panics naming `what` if it never holds.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {}s waiting for {what}", limit.as_secs());
}

/// A child's output read line by line on a thread of its own, so every read is bounded.
pub struct LineReader {
    rx: std::sync::mpsc::Receiver<std::io::Result<String>>,
    /// Everything read so far (for failure messages).
    seen: String,
}

impl LineReader {
    /// Reads `r` (a child's stdout or stderr) until its end.
    pub fn new(r: impl std::io::Read + Send + 'static) -> LineReader {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(r);
            loop {
                let mut line = String::new();
                let res = r.read_line(&mut line).map(|_| line);
                let end = !matches!(&res, Ok(l) if !l.is_empty());
                if tx.send(res).is_err() || end {
                    break;
                }
            }
        });
        LineReader { rx, seen: String::new() }
    }

    /// The next line (with its newline; "" at the end of the output); fails naming `what` if
    /// none comes within `limit`.
    pub fn next_line(&mut self, limit: Duration, what: &str) -> String {
        match self.rx.recv_timeout(limit) {
            Ok(Ok(line)) => {
                self.seen.push_str(&line);
                line
            }
            Ok(Err(e)) => panic!("reading {what}: {e}; read so far: {:?}", self.seen),
            // The reader thread ended after the end of the output.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => String::new(),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("timed out after {}s waiting for {what}; read so far: {:?}", limit.as_secs(), self.seen)
            }
        }
    }

    /// Everything up to the end of the output, which must come within `limit`.
    pub fn rest(&mut self, limit: Duration, what: &str) -> String {
        let start = Instant::now();
        let mut rest = String::new();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                panic!(
                    "timed out after {}s waiting for the end of {what}; read so far: {:?}",
                    limit.as_secs(),
                    self.seen
                );
            }
            let line = self.next_line(left, what);
            if line.is_empty() {
                return rest;
            }
            rest.push_str(&line);
        }
    }
}

/// Mounts of anything under `path`, as any process on the host sees them (every process's
/// mountinfo: nook's mounts live in the mount namespaces of its containers and helpers, never
/// in the test's own).
pub fn mounts_of(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<i32>().is_err() {
            continue;
        }
        let mi = fs::read_to_string(e.path().join("mountinfo")).unwrap_or_default();
        for l in mi.lines().filter(|l| l.contains(&needle)) {
            v.push(format!("pid {}: {l}", e.file_name().to_string_lossy()));
        }
    }
    v
}

/// The type of the filesystem holding `path` (`ext4`, `tmpfs`, …), from the test's own
/// mountinfo: the mount with the longest mount point above it.
pub fn fs_type_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut best: Option<(usize, String)> = None;
    for l in mi.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else { continue };
        // Mount points escape spaces and such as octal (\040): none of the rig's paths has any.
        let mp = Path::new(f[4]);
        if path.starts_with(mp) && best.as_ref().is_none_or(|(n, _)| mp.as_os_str().len() >= *n) {
            best = Some((mp.as_os_str().len(), f[dash + 1].to_string()));
        }
    }
    let t = best.map(|(_, t)| t).unwrap_or_default();
    assert!(!t.is_empty(), "no mount holds {}:\n{mi}", path.display());
    t
}

/// Files and directories under `dir`, recursively (paths relative to it).
pub fn tree(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(base: &Path, d: &Path, v: &mut Vec<String>) {
        if let Ok(rd) = fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                v.push(p.strip_prefix(base).unwrap().display().to_string());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(base, &p, v);
                }
            }
        }
    }
    walk(dir, dir, &mut v);
    v.sort();
    v
}
