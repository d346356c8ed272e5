//! Detached containers: starting one under its own monitor, and stop, kill, wait, restart,
//! rename and the status every listing shows.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{ContainerError, is_running, layer};
use crate::context::Context;
use crate::monitor::detached::MonitorArgs;
use crate::runtime::RuntimeError;
use crate::storage::containers::process_start_time;
use crate::storage::{ContainerRecord, ContainerState, ContainerStatus, StorageError};

/// How long a starting command waits for the monitor's report (setup steps time out at 60 s).
const START_TIMEOUT: Duration = Duration::from_secs(150);
/// How long `stop` waits for the monitor to record the exit after the container died.
const RECORD_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_STOP_TIMEOUT: u32 = 10;

/// A container's status as listings show it, from its state and the processes behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// created, running, stopping, exited.
    pub state: &'static str,
    pub exit_code: Option<i32>,
    /// Why the container is in this state when it is unusual.
    pub error: Option<String>,
    /// The monitor waits to restart it.
    pub restarting: bool,
}

/// The status of a container from its recorded state.
pub fn status(st: &ContainerState) -> Status {
    let restarting = st.restart_delay_ms.is_some() && st.monitor_alive();
    if is_running(st) {
        let state = if st.status == ContainerStatus::Stopping { "stopping" } else { "running" };
        return Status { state, exit_code: None, error: None, restarting: false };
    }
    match st.status {
        ContainerStatus::Created => Status { state: "created", exit_code: None, error: st.error.clone(), restarting },
        ContainerStatus::Exited => {
            Status { state: "exited", exit_code: st.exit_code, error: st.error.clone(), restarting }
        }
        ContainerStatus::Running | ContainerStatus::Stopping => {
            let rebooted = st.boot_id.is_some() && st.boot_id != crate::storage::containers::boot_id();
            let error = if rebooted {
                Some("the system restarted while the container was running".to_string())
            } else if st.monitor_alive() {
                // The monitor is about to record the exit.
                None
            } else {
                Some(format!(
                    "the container's monitor (pid {}) died: the exit status is unknown",
                    st.monitor_pid.unwrap_or(0)
                ))
            };
            Status { state: "exited", exit_code: None, error, restarting: false }
        }
    }
}

/// `ps` STATUS: "Up 3 seconds", "Exited (0) 2 seconds ago", "Created".
pub fn status_text(st: &ContainerState) -> String {
    use crate::util::fmt::{ago, human_duration};
    let s = status(st);
    match s.state {
        "running" | "stopping" => {
            let since = st.started_at.map(|t| (Utc::now() - t).num_seconds()).unwrap_or(0);
            format!("Up {}", human_duration(since))
        }
        "created" => "Created".into(),
        _ => {
            let code = s.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into());
            let when = st.finished_at.map(|f| ago(&f)).unwrap_or_default();
            let t = format!("Exited ({code}) {when}").trim_end().to_string();
            if s.restarting { format!("{t} (restarting)") } else { t }
        }
    }
}

/// How long `start` waits for a start already in progress.
const CONCURRENT_START_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a detached start gives back.
pub struct Started {
    /// The container's host pid (0 if it was already running).
    pub pid: i32,
    /// Connected to the attach socket before the container started (`start --attach`).
    pub attach: Option<OwnedFd>,
}

fn runtime_error(code: i32, msg: String) -> ContainerError {
    ContainerError::Runtime(match code {
        127 => RuntimeError::NotFound(msg),
        126 => RuntimeError::CannotInvoke(msg),
        _ => RuntimeError::Setup(msg),
    })
}

/// Starts a container under a new monitor and waits (bounded) until its command runs or
/// the start failed. With `attach`, connects to the monitor before the container starts.
pub fn start_detached(ctx: &Context, rec: &ContainerRecord, attach: bool) -> Result<Started, ContainerError> {
    let store = &ctx.store;
    // Another start (or a restart by its monitor) in progress: wait for it, bounded, as podman
    // waits for the container's lock; then the container runs (nothing to do) or is started.
    let deadline = std::time::Instant::now() + CONCURRENT_START_WAIT;
    loop {
        let g = store.lock_container(&rec.id)?;
        let mut st = store.load_state(&rec.id)?;
        if is_running(&st) {
            return Ok(Started { pid: st.pid.unwrap_or(0), attach: None });
        }
        if st.monitor_alive() {
            drop(g);
            if std::time::Instant::now() >= deadline {
                return Err(ContainerError::Invalid(format!(
                    "container {} is still being started or restarted by its monitor (pid {}) after {} s",
                    rec.short_id(),
                    st.monitor_pid.unwrap_or(0),
                    CONCURRENT_START_WAIT.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        // Whatever the last run left (a dead monitor's fuse-overlayfs daemon).
        layer::stop_helpers(ctx, rec, &st);
        st.helpers.clear();
        st.stop_requested = false;
        st.restart_requested = false;
        st.error = None;
        if st.status != ContainerStatus::Created {
            st.status = ContainerStatus::Exited;
        }
        // Until the monitor takes over, this command stands in for it: a concurrent stop
        // sees a start in progress and waits for it.
        let me = std::process::id() as i32;
        st.monitor_pid = Some(me);
        st.monitor_start = process_start_time(me);
        st.detached = true;
        st.restart_delay_ms = None;
        store.save_state(&rec.id, &st)?;
        break;
    }
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ContainerError::Io(format!("pipe: {e}")))?;
    // The write end goes to the monitor: not close-on-exec.
    rustix::io::fcntl_setfd(&w, rustix::io::FdFlags::empty()).map_err(|e| ContainerError::Io(format!("fcntl: {e}")))?;
    let args = MonitorArgs {
        // The monitor runs in /: relative paths would not reach the store.
        root: std::path::absolute(&ctx.paths.root).unwrap_or_else(|_| ctx.paths.root.clone()),
        runroot: std::path::absolute(&ctx.paths.runroot).unwrap_or_else(|_| ctx.paths.runroot.clone()),
        storage_driver: ctx.storage_driver.clone(),
        sync_fd: Some(w.as_raw_fd()),
        wait_attach: attach,
        starter: Some(std::process::id() as i32),
        id: rec.id.clone(),
    };
    let mut c = std::process::Command::new("/proc/self/exe");
    c.arg0("nook")
        .args(args.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let st = c.status().map_err(|e| ContainerError::Io(format!("starting the container monitor: {e}")))?;
    drop(w);
    if !st.success() {
        return Err(ContainerError::Io(format!("the container monitor could not start ({st})")));
    }
    let mut file = std::fs::File::from(r);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut data = Vec::new();
    let mut attach_sock = None;
    loop {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = data.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if line == "L" {
                let rundir = store.container_rundir(&rec.id);
                attach_sock = Some(
                    crate::monitor::attach::connect(&rundir)
                        .map_err(|e| ContainerError::Io(format!("attaching to container {}: {e}", rec.short_id())))?,
                );
            } else if let Some(pid) = line.strip_prefix("S ") {
                return Ok(Started { pid: pid.trim().parse().unwrap_or(0), attach: attach_sock });
            } else if let Some(rest) = line.strip_prefix("E ") {
                let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                return Err(runtime_error(code.parse().unwrap_or(125), msg.to_string()));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ContainerError::Io(format!(
                "timed out after {}s waiting for the monitor of container {} to report the start",
                START_TIMEOUT.as_secs(),
                rec.short_id()
            )));
        }
        let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: 0 };
        let mut p = [rustix::event::PollFd::new(&file, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut p, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ContainerError::Io(format!("waiting for the monitor: {e}"))),
        }
        let mut chunk = [0u8; 4096];
        let n = file.read(&mut chunk).map_err(|e| ContainerError::Io(format!("reading from the monitor: {e}")))?;
        if n == 0 {
            let why = store.load_state(&rec.id).ok().and_then(|s| s.error).unwrap_or_else(|| {
                "the container monitor exited without reporting the start (see `nook inspect`)".into()
            });
            return Err(ContainerError::Io(why));
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// The signal `stop` sends first.
pub fn stop_signal(rec: &ContainerRecord) -> Signal {
    rec.stop_signal.as_deref().and_then(|s| crate::util::signal::parse(s).ok()).unwrap_or(Signal::SIGTERM)
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn load(ctx: &Context, id: &str) -> ContainerState {
    ctx.store.load_state(id).unwrap_or_else(|_| ContainerState::created())
}

/// Stops a container: no restart; its stop signal, then SIGKILL after `timeout` seconds.
/// Returns once the exit is recorded. Stopping a stopped container is not an error.
pub fn stop(ctx: &Context, rec: &ContainerRecord, timeout: Option<u32>) -> Result<(), ContainerError> {
    let store = &ctx.store;
    store.update_state(&rec.id, |st| st.stop_requested = true)?;
    let timeout = Duration::from_secs(u64::from(timeout.or(rec.stop_timeout).unwrap_or(DEFAULT_STOP_TIMEOUT)));
    // Being started: wait for the command to run (or the start to fail).
    wait_until(Duration::from_secs(90), || settled(&load(ctx, &rec.id)));
    let st = load(ctx, &rec.id);
    if is_running(&st)
        && let Some(pid) = st.pid
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), stop_signal(rec));
        if !wait_until(timeout, || !is_running(&load(ctx, &rec.id))) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_until(Duration::from_secs(10), || !is_running(&load(ctx, &rec.id)));
        }
    } else if st.monitor_alive()
        && st.detached
        && let Some(m) = st.monitor_pid
    {
        // Waiting to restart: the monitor stops waiting.
        let _ = nix::sys::signal::kill(Pid::from_raw(m), Signal::SIGTERM);
    }
    settle(ctx, rec)
}

/// Not being started: running, without a monitor, or a monitor waiting to restart it.
fn settled(st: &ContainerState) -> bool {
    is_running(st) || !st.monitor_alive() || st.restart_delay_ms.is_some()
}

/// Waits for the monitor to record the exit; records it itself when the monitor is gone.
fn settle(ctx: &Context, rec: &ContainerRecord) -> Result<(), ContainerError> {
    let recorded = wait_until(RECORD_TIMEOUT, || {
        let st = load(ctx, &rec.id);
        !st.monitor_alive() || (st.status == ContainerStatus::Exited && !st.detached)
    });
    let st = load(ctx, &rec.id);
    if !recorded {
        return Err(ContainerError::Io(format!(
            "timed out after {}s waiting for the monitor of container {} (pid {}) to record the exit",
            RECORD_TIMEOUT.as_secs(),
            rec.short_id(),
            st.monitor_pid.unwrap_or(0)
        )));
    }
    if matches!(st.status, ContainerStatus::Running | ContainerStatus::Stopping) && !is_running(&st) {
        let why = status(&st).error;
        ctx.store.update_state(&rec.id, |st| {
            st.status = ContainerStatus::Exited;
            st.pid = None;
            st.pid_start = None;
            st.finished_at.get_or_insert_with(Utc::now);
            st.error = why;
        })?;
        layer::stop_helpers(ctx, rec, &st);
    }
    Ok(())
}

/// Sends `sig` to a running container.
pub fn kill(ctx: &Context, rec: &ContainerRecord, sig: Signal) -> Result<(), ContainerError> {
    let st = ctx.store.load_state(&rec.id)?;
    match (is_running(&st), st.pid) {
        (true, Some(pid)) => nix::sys::signal::kill(Pid::from_raw(pid), sig)
            .map_err(|e| ContainerError::Io(format!("sending {sig} to container {}: {e}", rec.short_id()))),
        _ => Err(ContainerError::Invalid(format!(
            "can only kill running containers. {} is in state {}: container state improper",
            rec.short_id(),
            status(&st).state
        ))),
    }
}

/// `nook wait --condition`: what to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Running,
    Exited,
    Created,
}

impl Condition {
    pub fn parse(s: &str) -> Result<Condition, String> {
        match s {
            "running" => Ok(Condition::Running),
            "exited" | "stopped" => Ok(Condition::Exited),
            "created" | "configured" => Ok(Condition::Created),
            _ => Err(format!("invalid condition {s:?}: use running, exited, stopped or created")),
        }
    }
}

/// Waits until the container meets `cond`; returns its exit code (for `exited`), else 0.
/// A container removed meanwhile (`--rm`) gives the code its monitor left behind.
pub fn wait(ctx: &Context, id: &str, cond: Condition, interval: Duration) -> Result<i32, ContainerError> {
    loop {
        if !ctx.store.container_dir(id).join("container.json").exists() {
            let p = ctx.paths.runroot.join("exits").join(id);
            return match std::fs::read_to_string(&p) {
                Ok(s) => Ok(s.trim().parse().unwrap_or(-1)),
                Err(_) => Err(StorageError::ContainerNotFound(id.to_string()).into()),
            };
        }
        let st = ctx.store.load_state(id)?;
        let s = status(&st);
        match cond {
            Condition::Running if s.state == "running" => return Ok(0),
            Condition::Created if s.state == "created" => return Ok(0),
            Condition::Exited
                if s.state == "exited"
                    && !(matches!(st.status, ContainerStatus::Running | ContainerStatus::Stopping)
                        && st.monitor_alive()) =>
            {
                return Ok(s.exit_code.unwrap_or(-1));
            }
            _ => {}
        }
        std::thread::sleep(interval);
    }
}

/// Restarts a container: a detached one is restarted by its monitor (logs and attach
/// continue), anything else is stopped and started under a new monitor.
pub fn restart(ctx: &Context, rec: &ContainerRecord, timeout: Option<u32>) -> Result<(), ContainerError> {
    let store = &ctx.store;
    let st = store.load_state(&rec.id)?;
    if is_running(&st)
        && st.detached
        && st.monitor_alive()
        && let Some(pid) = st.pid
    {
        let before = st.started_at;
        store.update_state(&rec.id, |st| {
            st.restart_requested = true;
            st.stop_requested = false;
        })?;
        let timeout = Duration::from_secs(u64::from(timeout.or(rec.stop_timeout).unwrap_or(DEFAULT_STOP_TIMEOUT)));
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), stop_signal(rec));
        if !wait_until(timeout, || process_start_time(pid) != st.pid_start) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let again = wait_until(Duration::from_secs(90), || {
            let s = load(ctx, &rec.id);
            (is_running(&s) && s.started_at != before) || !s.monitor_alive()
        });
        let s = load(ctx, &rec.id);
        if again && is_running(&s) {
            return Ok(());
        }
        return Err(ContainerError::Io(
            s.error.unwrap_or_else(|| format!("container {} did not start again", rec.short_id())),
        ));
    }
    stop(ctx, rec, timeout)?;
    start_detached(ctx, rec, false).map(|_| ())
}

/// Renames a container.
pub fn rename(ctx: &Context, rec: &ContainerRecord, new: &str) -> Result<(), ContainerError> {
    let store = &ctx.store;
    let _g = store.lock_container(&rec.id)?;
    let mut r = store.load_container(&rec.id)?;
    if r.name == new {
        return Ok(());
    }
    store.reserve_name(new, &r.id)?;
    let old = std::mem::replace(&mut r.name, new.to_string());
    if let Err(e) = store.save_container(&r) {
        store.release_name(new, &r.id);
        return Err(e.into());
    }
    store.release_name(&old, &r.id);
    Ok(())
}

/// Stops the monitor's work on a container about to be removed: no restart, the container
/// killed (`force`), the monitor gone. A running container without `force` is refused.
pub fn quiesce(ctx: &Context, rec: &ContainerRecord, force: bool) -> Result<(), ContainerError> {
    let store = &ctx.store;
    let st = store.load_state(&rec.id)?;
    let running = is_running(&st);
    if running && !force {
        return Err(ContainerError::Invalid(format!(
            "cannot remove container {} as it is running - running or paused containers cannot be removed without force: container state improper",
            rec.id
        )));
    }
    if !running && !st.monitor_alive() {
        return Ok(());
    }
    store.update_state(&rec.id, |st| st.stop_requested = true)?;
    // Being started: let the start finish first, then kill it.
    wait_until(Duration::from_secs(90), || settled(&load(ctx, &rec.id)));
    let st = load(ctx, &rec.id);
    if is_running(&st)
        && let Some(pid) = st.pid
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    } else if st.detached
        && let Some(m) = st.monitor_pid
        && st.monitor_alive()
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(m), Signal::SIGTERM);
    }
    // Bounded: the kernel tears a killed pid namespace down quickly.
    let done = wait_until(RECORD_TIMEOUT, || {
        let st = load(ctx, &rec.id);
        !is_running(&st) && (!st.monitor_alive() || !st.detached)
    });
    if !done {
        let st = load(ctx, &rec.id);
        if st.detached
            && let Some(m) = st.monitor_pid
            && st.monitor_alive()
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(m), Signal::SIGKILL);
        }
    }
    Ok(())
}
