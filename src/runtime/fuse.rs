//! fuse-overlayfs: started inside the container's user and mount namespaces, in the
//! foreground (`-f`) as a child of the process that mounts the root filesystem, so its pid is
//! known and its owner can stop it once the container has exited (SIGTERM: it unmounts and
//! exits). Its stderr goes to a log file next to the container's run state.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long fuse-overlayfs may take to mount before we give up.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// A fuse-overlayfs mount to make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FuseOverlay {
    pub program: PathBuf,
    /// Lower layers, top first.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// `uidmapping=`/`gidmapping=` (STORED:SHOWN:LEN…) when the container's maps differ from
    /// the store's.
    #[serde(default)]
    pub uidmapping: Option<String>,
    #[serde(default)]
    pub gidmapping: Option<String>,
    /// Skip fsync (transient `--rm` containers).
    #[serde(default)]
    pub volatile: bool,
    /// Where the daemon's stderr goes.
    pub log: PathBuf,
}

fn check_path(p: &Path) -> Result<String, String> {
    let s = p.to_str().ok_or_else(|| format!("{}: not valid UTF-8", p.display()))?;
    if s.contains([',', ':', '\\']) {
        return Err(format!("{s}: fuse-overlayfs cannot use paths that contain ',', ':' or '\\'"));
    }
    Ok(s.to_string())
}

impl FuseOverlay {
    /// The `-o` option string.
    pub fn options(&self) -> Result<String, String> {
        let lower = self.lower.iter().map(|l| check_path(l)).collect::<Result<Vec<_>, _>>()?;
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            check_path(&self.upper)?,
            check_path(&self.work)?
        );
        if let Some(u) = &self.uidmapping {
            o.push_str(&format!(",uidmapping={u}"));
        }
        if let Some(g) = &self.gidmapping {
            o.push_str(&format!(",gidmapping={g}"));
        }
        // Several requests in flight (the daemon serialises what must be): about twice as fast
        // at creating many files on two cores.
        o.push_str(",threaded=1");
        if self.volatile {
            o.push_str(",fsync=0");
        }
        Ok(o)
    }

    /// Starts the daemon and waits (bounded) until the mount is there. Returns its pid. Must
    /// run as root of the user namespace that owns the current mount namespace, or with the
    /// capabilities of its creator (then the daemon becomes root of the namespace first).
    pub fn mount(&self) -> Result<i32, String> {
        let opts = self.options()?;
        let target = check_path(&self.target)?;
        let before = fs::metadata(&self.target).map_err(|e| format!("{target}: {e}"))?.dev();
        let log = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.log)
            .map_err(|e| format!("creating {}: {e}", self.log.display()))?;
        let mut cmd = Command::new(&self.program);
        cmd.arg0("fuse-overlayfs")
            .arg("-f")
            .arg("-o")
            .arg(&opts)
            .arg(&target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        // SAFETY: runs in the forked child before exec; only async-signal-safe system calls
        // (sigprocmask on a local set, setsid, getuid, setresgid, setresuid, prctl).
        unsafe {
            cmd.pre_exec(|| {
                // The owner blocks the signals it reads from a signalfd, and a blocked mask
                // survives exec: the daemon would never see the SIGTERM that stops it.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                // Out of the terminal's process group: a ^C for the container must not stop
                // the filesystem under it.
                libc::setsid();
                if libc::geteuid() != 0 {
                    // keep-id: become root of the namespace so the daemon keeps its
                    // capabilities across exec; without a mapped root, pass them as ambient.
                    if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                        raise_ambient();
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("starting {}: {e}", self.program.display()))?;
        let pid = child.id() as i32;
        let start = Instant::now();
        let mut delay = Duration::from_micros(200);
        loop {
            if fs::metadata(&self.target).map(|m| m.dev()).is_ok_and(|d| d != before) {
                return Ok(pid);
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("fuse-overlayfs exited ({st}) before mounting: {}", log_tail(&self.log)));
            }
            if start.elapsed() >= MOUNT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {}s waiting for fuse-overlayfs to mount {target}: {}",
                    MOUNT_TIMEOUT.as_secs(),
                    log_tail(&self.log)
                ));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(10));
        }
    }
}

/// Raises every permitted capability into the ambient set (for a daemon exec'd by a non-root
/// user of the namespace). Async-signal-safe: raw prctl/capset calls only.
fn raise_ambient() {
    // SAFETY: capget/capset/prctl on this thread with stack buffers of the kernel's layout.
    unsafe {
        let mut hdr = libc_cap_header { version: 0x2008_0522, pid: 0 };
        let mut data = [libc_cap_data::default(); 2];
        if libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) != 0 {
            return;
        }
        data[0].inheritable = data[0].permitted;
        data[1].inheritable = data[1].permitted;
        if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
            return;
        }
        for cap in 0..64u32 {
            let word = (cap / 32) as usize;
            if data[word].permitted & (1 << (cap % 32)) != 0 {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0);
            }
        }
    }
}

#[repr(C)]
#[allow(non_camel_case_types)]
struct libc_cap_header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
#[allow(non_camel_case_types)]
struct libc_cap_data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The daemon's last meaningful lines of stderr (without its harmless chatter).
pub fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("unknown argument ignored")).collect();
    if lines.is_empty() { "no message".to_string() } else { lines[lines.len().saturating_sub(3)..].join("; ") }
}

/// Stops a fuse-overlayfs daemon: SIGTERM (it unmounts and exits), SIGKILL after `grace`.
/// Only a process that still is fuse-overlayfs (by name) is signalled.
pub fn stop_daemon(pid: i32, grace: Duration) {
    if !is_fuse_overlayfs(pid) {
        return;
    }
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    if wait_gone(pid, grace) {
        return;
    }
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    // Gone (or a zombie) shortly after SIGKILL; bounded in case it is stuck in the kernel.
    wait_gone(pid, Duration::from_secs(1));
}

/// Waits up to `limit` for the daemon `pid` to end: reaps it when it is our child, else waits
/// for it to vanish (or become a zombie). Whether it ended.
fn wait_gone(pid: i32, limit: Duration) -> bool {
    let p = nix::unistd::Pid::from_raw(pid);
    let start = Instant::now();
    while start.elapsed() < limit {
        match nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => {}
            Ok(_) => return true,
            Err(_) if !is_fuse_overlayfs(pid) => return true,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Whether `pid` is a live fuse-overlayfs process (not a zombie).
pub fn is_fuse_overlayfs(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
    comm.starts_with("fuse-overlayfs") && state != "Z"
}

/// Run in a user + mount namespace: checks that fuse-overlayfs mounts in `dir` and that
/// whiteouts, opaque directories and copy-up work.
pub fn probe_fuse(dir: &Path, program: &Path) -> Result<(), String> {
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    let (l, u, w, m) = (dir.join("l"), dir.join("u"), dir.join("w"), dir.join("m"));
    for p in [&l, &u, &w, &m] {
        mk(p)?;
    }
    mk(&l.join("d/sub"))?;
    fs::write(l.join("f"), b"x").map_err(|e| e.to_string())?;
    let f = FuseOverlay {
        program: program.to_path_buf(),
        lower: vec![l],
        upper: u,
        work: w,
        target: m.clone(),
        uidmapping: None,
        gidmapping: None,
        volatile: true,
        log: dir.join("fuse.log"),
    };
    let pid = f.mount()?;
    let r = (|| {
        fs::remove_dir_all(m.join("d")).map_err(|e| format!("removing a lower directory: {e}"))?;
        fs::create_dir(m.join("d")).map_err(|e| format!("recreating it: {e}"))?;
        fs::write(m.join("f"), b"y").map_err(|e| format!("copy-up: {e}"))?;
        Ok(())
    })();
    stop_daemon(pid, Duration::from_secs(5));
    r
}
