//! The monitor of a detached container: `nook __monitor …`, started by `run -d` and `start`.
//!
//! It double-forks into its own session, then owns the container exactly as foreground
//! `nook run` does ([`crate::container::launch`]): it reaps it, writes its logs, holds its
//! stdin pipe or pty master, serves attach clients, records how it ended, applies the restart
//! policy and removes `--rm` containers. The command that started it learns the outcome of
//! the first start through a pipe (`S pid`, or `E code message`; `L` when an attach client may
//! connect before the container starts).
//!
//! One thread, one `poll` loop over a signalfd, the container's streams and the attach
//! sockets; no async runtime.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, poll};

use super::attach;
use super::logs::{LogWriter, Stream};
use crate::container::{self, ContainerError};
use crate::context::Context;
use crate::runtime::{self, Stdio};
use crate::storage::ContainerRecord;
use crate::storage::containers::process_start_time;

/// How long output is drained after the container exited.
const DRAIN: Duration = Duration::from_secs(5);
/// How long `start --attach` may take to connect before the container starts anyway.
const ATTACH_WAIT: Duration = Duration::from_secs(10);
/// The first restart back-off; it doubles with each quick failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF_MS: u64 = 100;
const MAX_BACKOFF_MS: u64 = 10_000;
/// A run this long resets the back-off.
const STABLE: Duration = Duration::from_secs(10);
const MAX_CLIENTS: usize = 16;

/// The monitor's command line (built by [`crate::container::lifecycle`]).
pub struct MonitorArgs {
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub storage_driver: Option<String>,
    pub sync_fd: Option<RawFd>,
    pub wait_attach: bool,
    /// The starting command, which stands in for the monitor in the state until it claims it.
    pub starter: Option<i32>,
    pub id: String,
}

impl MonitorArgs {
    pub fn to_args(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec!["__monitor".into(), "--root".into(), self.root.clone().into()];
        v.push("--runroot".into());
        v.push(self.runroot.clone().into());
        if let Some(d) = &self.storage_driver {
            v.push("--storage-driver".into());
            v.push(d.into());
        }
        if let Some(fd) = self.sync_fd {
            v.push("--sync".into());
            v.push(fd.to_string().into());
        }
        if self.wait_attach {
            v.push("--wait-attach".into());
        }
        if let Some(p) = self.starter {
            v.push("--starter".into());
            v.push(p.to_string().into());
        }
        v.push(self.id.clone().into());
        v
    }

    fn parse(args: &[OsString]) -> Option<MonitorArgs> {
        let mut m = MonitorArgs {
            root: PathBuf::new(),
            runroot: PathBuf::new(),
            storage_driver: None,
            sync_fd: None,
            wait_attach: false,
            starter: None,
            id: String::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.to_str()? {
                "--root" => m.root = it.next()?.into(),
                "--runroot" => m.runroot = it.next()?.into(),
                "--storage-driver" => m.storage_driver = Some(it.next()?.to_str()?.to_string()),
                "--sync" => m.sync_fd = it.next()?.to_str()?.parse().ok(),
                "--wait-attach" => m.wait_attach = true,
                "--starter" => m.starter = it.next()?.to_str()?.parse().ok(),
                id => m.id = id.to_string(),
            }
        }
        (!m.id.is_empty()).then_some(m)
    }
}

/// Reports to the starting command (once), then closes the pipe.
struct Starter(Option<OwnedFd>);

impl Starter {
    fn say(&mut self, line: &str) {
        if let Some(fd) = &self.0 {
            let _ = super::write_all(fd.as_fd(), line.as_bytes());
        }
    }

    fn done(&mut self, line: &str) {
        self.say(line);
        self.0 = None;
    }
}

/// `nook __monitor`: never returns to the caller's command line; the exit code is for the
/// first process only (the one the starting command waits for).
pub fn main(args: &[OsString]) -> i32 {
    let Some(a) = MonitorArgs::parse(args) else {
        eprintln!("Error: usage: nook __monitor --root DIR --runroot DIR [--sync FD] ID");
        return 125;
    };
    // SAFETY: called from main() before any thread exists.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            eprintln!("Error: forking the monitor: {e}");
            return 125;
        }
    }
    let _ = nix::unistd::setsid();
    // Holds no directory of the caller's busy for the container's lifetime.
    let _ = std::env::set_current_dir("/");
    // SAFETY: the starting command passed this descriptor to us; nothing else owns it.
    let sync = a.sync_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    if let Some(fd) = &sync {
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for t in 0..3 {
            // SAFETY: dup2 onto our own standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), t) };
        }
    }
    let mut sync = Starter(sync);
    let code = match monitor(&a, &mut sync) {
        Ok(()) => 0,
        Err(e) => {
            sync.done(&format!("E {} {}\n", e.exit_code(), one_line(&e.to_string())));
            e.exit_code()
        }
    };
    // SAFETY: leave without running destructors of state the container's processes share.
    unsafe { libc::_exit(code) }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |e| ContainerError::Io(format!("{what}: {e}"))
}

fn monitor(a: &MonitorArgs, sync: &mut Starter) -> Result<(), ContainerError> {
    let ctx = Context::new(Some(a.root.clone()), Some(a.runroot.clone()), a.storage_driver.clone())
        .map_err(|e| ContainerError::Io(e.to_string()))?;
    let store = &ctx.store;
    let rec = store.load_container(&a.id)?;
    let spec = container::load_spec(&ctx, &rec.id)?;
    let me = std::process::id() as i32;
    let claimed = store.update_state(&rec.id, |st| {
        if st.monitor_alive() && st.monitor_pid != Some(me) && st.monitor_pid != a.starter {
            return false;
        }
        st.monitor_pid = Some(me);
        st.monitor_start = process_start_time(me);
        st.restart_count = 0;
        st.restart_delay_ms = None;
        st.restart_requested = false;
        st.boot_id = crate::storage::containers::boot_id();
        true
    })?;
    if !claimed {
        return Err(ContainerError::Invalid(format!("container {} is already running", rec.short_id())));
    }
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT] {
        mask.add(s);
    }
    mask.thread_block().map_err(|e| ContainerError::Io(format!("blocking signals: {e}")))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| ContainerError::Io(format!("signalfd: {e}")))?;
    let rundir = store.container_rundir(&rec.id);
    crate::util::fs::create_dir_all_mode(&rundir, 0o700).map_err(io_err("creating the run directory"))?;
    let listener = attach::listen(&rundir).map_err(io_err("creating the attach socket"))?;
    let mut clients: Vec<OwnedFd> = Vec::new();
    if a.wait_attach {
        sync.say("L\n");
        let ts = rustix::time::Timespec { tv_sec: ATTACH_WAIT.as_secs() as i64, tv_nsec: 0 };
        let mut p = [PollFd::new(&listener, PollFlags::IN)];
        if matches!(poll(&mut p, Some(&ts)), Ok(n) if n > 0)
            && let Ok(c) = rustix::net::accept_with(&listener, rustix::net::SocketFlags::CLOEXEC)
        {
            clients.push(c);
        }
    }
    let mut log = match rec.log_driver.as_str() {
        "none" => None,
        _ => Some(LogWriter::open(&store.container_dir(&rec.id), rec.log_max_size).map_err(io_err("opening the log"))?),
    };
    let mut first = true;
    let mut backoff_ms = 0u64;
    let maps = container::maps_for(&ctx, &rec);
    loop {
        let started_at = Instant::now();
        let run = start_once(&ctx, &rec, &spec, &maps);
        let (l, mut streams) = match run {
            Ok(x) => x,
            Err(e) => {
                if first {
                    finish(&ctx, &rec);
                    return Err(e);
                }
                // A restart failed: the error is in the state; nothing more to try.
                break;
            }
        };
        if first {
            sync.done(&format!("S {}\n", l.pid));
            first = false;
        }
        // What setting the container up allocated goes back to the system: the monitor
        // idles for the container's lifetime.
        // SAFETY: malloc_trim only releases free heap pages; no pointer is invalidated.
        unsafe {
            libc::malloc_trim(0);
        }
        // Stopped (or removed) while it was being started: it ends at once.
        if store.load_state(&rec.id).map(|st| st.stop_requested).unwrap_or(true) {
            let _ = nix::sys::signal::kill(Pid::from_raw(l.pid), Signal::SIGKILL);
        }
        let code = serve(&rec, &signals, &listener, &mut clients, &mut streams, &mut log, l.pid);
        for h in &l.helpers {
            runtime::fuse::stop_daemon(*h, Duration::from_secs(5));
        }
        let _ = container::record_exit(&ctx, &rec.id, code);
        let _ = write_exit_file(&ctx, &rec.id, code);
        for c in clients.drain(..) {
            let mut b = Vec::new();
            let _ = attach::send_nb(c.as_fd(), attach::EXIT, &code.to_le_bytes(), &mut b);
        }
        // What next: the user's request, then the restart policy.
        if !store.container_dir(&rec.id).join("container.json").exists() {
            break;
        }
        let st = store.load_state(&rec.id)?;
        if st.stop_requested {
            break;
        }
        if st.restart_requested {
            let _ = store.update_state(&rec.id, |st| st.restart_requested = false);
            continue;
        }
        let wants = match rec.restart.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (rec.restart_max == 0 || st.restart_count < rec.restart_max),
            _ => false,
        };
        if !wants {
            break;
        }
        backoff_ms = if started_at.elapsed() >= STABLE || backoff_ms == 0 {
            FIRST_BACKOFF_MS
        } else {
            (backoff_ms * 2).min(MAX_BACKOFF_MS)
        };
        store.update_state(&rec.id, |st| st.restart_delay_ms = Some(backoff_ms))?;
        if !back_off(&signals, Duration::from_millis(backoff_ms)) {
            break;
        }
        // A stop (or rm) during the back-off; else the restart counts.
        let go = store.update_state(&rec.id, |st| {
            if !st.stop_requested {
                st.restart_count += 1;
            }
            !st.stop_requested
        });
        if !matches!(go, Ok(true)) {
            break;
        }
    }
    let _ = store.update_state(&rec.id, |st| st.restart_delay_ms = None);
    drop(listener);
    let _ = std::fs::remove_file(attach::socket_path(&rundir));
    finish(&ctx, &rec);
    Ok(())
}

/// After the last run: `--rm` removes the container.
fn finish(ctx: &Context, rec: &ContainerRecord) {
    if rec.rm
        && let Ok(_g) = ctx.store.lock_container(&rec.id)
        && ctx.store.container_dir(&rec.id).join("container.json").exists()
    {
        let st = ctx.store.load_state(&rec.id).unwrap_or_else(|_| crate::storage::ContainerState::created());
        crate::container::layer::stop_helpers(ctx, rec, &st);
        let _ = ctx.store.remove_container(rec, &ctx.maps);
    }
}

/// `<runroot>/exits/<id>`: the last exit code, for `wait` on a container `--rm` removed.
fn write_exit_file(ctx: &Context, id: &str, code: i32) -> io::Result<()> {
    let dir = ctx.paths.runroot.join("exits");
    crate::util::fs::create_dir_all_mode(&dir, 0o700)?;
    crate::util::fs::write_atomic(&dir.join(id), code.to_string().as_bytes())
}

/// Waits out a restart back-off; false when told to stop instead.
fn back_off(signals: &SignalFd, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
        let mut p = [PollFd::new(signals, PollFlags::IN)];
        match poll(&mut p, Some(&ts)) {
            Ok(0) => return true,
            Ok(_) => {
                while let Ok(Some(si)) = signals.read_signal() {
                    if si.ssi_signo as i32 != libc::SIGCHLD {
                        return false;
                    }
                    reap_all(None);
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return true,
        }
    }
}

/// The monitor's ends of the container's stdio.
struct Streams {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    master: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Into::into)
}

fn start_once(
    ctx: &Context,
    rec: &ContainerRecord,
    spec: &oci_spec::runtime::Spec,
    maps: &crate::userns::IdMappings,
) -> Result<(container::Launched, Streams), ContainerError> {
    let pending = runtime::begin(maps)?;
    let mut streams = Streams { out: None, err: None, master: None, stdin: None };
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    let stdio = if rec.tty {
        Stdio::Tty
    } else {
        let made = (|| -> io::Result<Stdio> {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdin = if rec.interactive {
                let (in_r, in_w) = pipe()?;
                streams.stdin = Some(in_w);
                in_r
            } else {
                std::fs::File::open("/dev/null")?.into()
            };
            let s = Stdio::Fds { stdin: stdin.as_raw_fd(), stdout: out_w.as_raw_fd(), stderr: err_w.as_raw_fd() };
            child_ends.extend([stdin, out_w, err_w]);
            streams.out = Some(out_r);
            streams.err = Some(err_r);
            Ok(s)
        })();
        match made {
            Ok(s) => s,
            Err(e) => {
                pending.abort();
                return Err(ContainerError::Io(format!("preparing stdio: {e}")));
            }
        }
    };
    let mut l = container::launch(ctx, rec, spec, pending, stdio, true, |_| {})?;
    drop(child_ends);
    streams.master = l.pty_master.take();
    Ok((l, streams))
}

/// Reaps every exited child; returns the exit code of `pid` if it was among them.
fn reap_all(pid: Option<i32>) -> Option<i32> {
    let mut code = None;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if Some(p.as_raw()) == pid => code = Some(c),
            Ok(WaitStatus::Signaled(p, s, _)) if Some(p.as_raw()) == pid => code = Some(128 + s as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

/// Runs until the container exits and its output is drained; returns its exit code.
#[allow(clippy::too_many_arguments)]
fn serve(
    rec: &ContainerRecord,
    signals: &SignalFd,
    listener: &OwnedFd,
    clients: &mut Vec<OwnedFd>,
    s: &mut Streams,
    log: &mut Option<LogWriter>,
    pid: i32,
) -> i32 {
    let mut exit: Option<i32> = None;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];
    let mut msg = Vec::with_capacity(32 * 1024 + 1);
    loop {
        if exit.is_some() && s.out.is_none() && s.err.is_none() && s.master.is_none() {
            break;
        }
        // 0 signals, 1 listener, 2 out, 3 err, 4 master, 10+i client i.
        let mut kinds: Vec<usize> = vec![0, 1];
        let mut fds: Vec<PollFd<'_>> = vec![PollFd::new(signals, PollFlags::IN), PollFd::new(listener, PollFlags::IN)];
        for (k, f) in [(2, &s.out), (3, &s.err), (4, &s.master)] {
            if let Some(f) = f {
                kinds.push(k);
                fds.push(PollFd::new(f, PollFlags::IN));
            }
        }
        for (i, c) in clients.iter().enumerate() {
            kinds.push(10 + i);
            fds.push(PollFd::new(c, PollFlags::IN));
        }
        let timeout = exited_at.map(|t| {
            let left = DRAIN.saturating_sub(t.elapsed());
            rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 }
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) if exit.is_some() => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<usize> =
            fds.iter().zip(kinds.iter()).filter(|(f, _)| !f.revents().is_empty()).map(|(_, k)| *k).collect();
        drop(fds);
        let mut gone: Vec<usize> = Vec::new();
        for k in ready {
            match k {
                0 => {
                    while let Ok(Some(si)) = signals.read_signal() {
                        let sig = si.ssi_signo as i32;
                        if sig == libc::SIGCHLD {
                            if let Some(c) = reap_all(Some(pid)) {
                                exit = Some(c);
                                exited_at = Some(Instant::now());
                            }
                        } else if exit.is_none() {
                            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::try_from(sig).ok());
                        }
                    }
                }
                1 => {
                    if let Ok(c) = rustix::net::accept_with(
                        listener,
                        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
                    ) && clients.len() < MAX_CLIENTS
                    {
                        clients.push(c);
                    }
                }
                2..=4 => {
                    let (slot, stream, tag) = match k {
                        2 => (&mut s.out, Stream::Stdout, attach::OUT),
                        3 => (&mut s.err, Stream::Stderr, attach::ERR),
                        _ => (&mut s.master, Stream::Stdout, attach::OUT),
                    };
                    let Some(fd) = slot.as_ref() else { continue };
                    match super::read_some(fd.as_fd(), &mut buf) {
                        Ok(0) => *slot = None,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => *slot = None,
                        Ok(n) => {
                            if let Some(l) = log.as_mut()
                                && l.write(stream, &buf[..n]).is_err()
                            {
                                // A full disk must not stop the container; keep serving.
                                *log = None;
                            }
                            for (i, c) in clients.iter().enumerate() {
                                if attach::send_nb(c.as_fd(), tag, &buf[..n], &mut msg).is_err() {
                                    gone.push(i);
                                }
                            }
                        }
                    }
                }
                _ => {
                    let i = k - 10;
                    let Some(c) = clients.get(i) else { continue };
                    let n = match rustix::net::recv(c, &mut buf[..], rustix::net::RecvFlags::DONTWAIT) {
                        Ok((n, _)) => n,
                        Err(rustix::io::Errno::AGAIN) => continue,
                        Err(_) => 0,
                    };
                    if n == 0 {
                        gone.push(i);
                        continue;
                    }
                    match buf[0] {
                        attach::IN => {
                            let target = s.master.as_ref().or(s.stdin.as_ref());
                            if let Some(t) = target
                                && super::write_all(t.as_fd(), &buf[1..n]).is_err()
                            {
                                s.stdin = None;
                            }
                        }
                        attach::IN_EOF if !rec.tty => s.stdin = None,
                        attach::RESIZE if n >= 5 => {
                            if let Some(m) = &s.master {
                                let ws = rustix::termios::Winsize {
                                    ws_row: u16::from_le_bytes([buf[1], buf[2]]),
                                    ws_col: u16::from_le_bytes([buf[3], buf[4]]),
                                    ws_xpixel: 0,
                                    ws_ypixel: 0,
                                };
                                let _ = rustix::termios::tcsetwinsize(m, ws);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
    }
    exit.unwrap_or(-1)
}
