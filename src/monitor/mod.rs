//! The owner of a running container: holds its stdio (or pty master), forwards signals and the
//! window size, reaps it and reports how it ended. Synchronous: one `poll` loop over a
//! signalfd and the container's descriptors; no threads, no async runtime.
//!
//! Foreground `nook run` runs this loop in its own process with the terminal attached.

pub mod attach;
pub mod detached;
pub mod logs;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::runtime::Stdio;

/// Signals forwarded to the container (podman's `--sig-proxy`).
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How long output is drained after the container exited.
const DRAIN_SECS: i64 = 5;

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the code, or 128 + signal.
    pub fn code(&self) -> i32 {
        match self {
            Exit::Code(c) => *c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// The monitor's side of a container's stdio, prepared before the container is created.
pub struct Foreground {
    tty: bool,
    interactive: bool,
    signals: SignalFd,
    /// Our ends: container stdout/stderr readers, container stdin writer.
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// The container's ends until it has them.
    child: Vec<OwnedFd>,
    child_stdio: Stdio,
    raw: Option<RawMode>,
    /// The container's log, written alongside the terminal.
    log: Option<logs::LogWriter>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(Into::into)
}

impl Foreground {
    /// Blocks the forwarded signals and SIGCHLD (they are read from a signalfd) and makes the
    /// pipes. Call before creating the container so no signal is lost.
    pub fn prepare(tty: bool, interactive: bool) -> io::Result<Foreground> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for s in FORWARDED {
            mask.add(s);
        }
        mask.thread_block().map_err(io::Error::from)?;
        let signals =
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(io::Error::from)?;
        let mut f = Foreground {
            tty,
            interactive,
            signals,
            out: None,
            err: None,
            child: Vec::new(),
            child_stdio: Stdio::Tty,
            raw: None,
            log: None,
        };
        if tty {
            return Ok(f);
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdin = if interactive {
            0
        } else {
            let null = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            let fd = null.as_raw_fd();
            f.child.push(null);
            fd
        };
        f.child_stdio = Stdio::Fds { stdin, stdout: out_w.as_raw_fd(), stderr: err_w.as_raw_fd() };
        f.child.extend([out_w, err_w]);
        f.out = Some(out_r);
        f.err = Some(err_r);
        Ok(f)
    }

    /// Also writes the container's output to its log.
    pub fn log_to(&mut self, log: logs::LogWriter) {
        self.log = Some(log);
    }

    /// The stdio to give the runtime.
    pub fn child_stdio(&self) -> Stdio {
        self.child_stdio
    }

    /// After the container is created: drops the container's ends, sizes the pty and puts our
    /// terminal in raw mode.
    pub fn created(&mut self, pty_master: Option<&OwnedFd>) {
        self.child.clear();
        if let (true, Some(m)) = (self.tty, pty_master) {
            copy_winsize(m);
            if rustix::termios::isatty(rustix::stdio::stdin()) && self.interactive {
                self.raw = RawMode::enter(0).ok();
            }
        }
    }

    /// Copies stdio until the container exits; forwards signals; returns its exit.
    pub fn run(mut self, pid: i32, mut pty_master: Option<OwnedFd>, helper_pids: &[i32]) -> io::Result<Exit> {
        let mut exit: Option<Exit> = None;
        let mut stdin_open = self.interactive && self.tty;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Descriptors to watch, rebuilt each round (they close as streams end).
            let mut fds: Vec<(BorrowedFd<'_>, u8)> = vec![(self.signals.as_fd(), 0)];
            if let Some(m) = &pty_master {
                fds.push((m.as_fd(), 1));
                if stdin_open && exit.is_none() {
                    fds.push((rustix::stdio::stdin(), 2));
                }
            }
            if let Some(o) = &self.out {
                fds.push((o.as_fd(), 3));
            }
            if let Some(e) = &self.err {
                fds.push((e.as_fd(), 4));
            }
            if exit.is_some() && self.out.is_none() && self.err.is_none() && pty_master.is_none() {
                break;
            }
            let mut pfds: Vec<rustix::event::PollFd<'_>> =
                fds.iter().map(|(fd, _)| rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)).collect();
            // After the exit, streams are drained until EOF (pipes) or EIO (pty): every writer
            // died with the pid namespace, but pty output reaches the master asynchronously.
            // Bounded, in case something outside the container holds a stream open.
            let timeout = exit.map(|_| rustix::time::Timespec { tv_sec: DRAIN_SECS, tv_nsec: 0 });
            match rustix::event::poll(&mut pfds, timeout.as_ref()) {
                Ok(0) if exit.is_some() => {
                    tracing::warn!("stopped waiting for the container's output {DRAIN_SECS}s after it exited");
                    break;
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready: Vec<(u8, rustix::event::PollFlags)> = pfds
                .iter()
                .zip(fds.iter())
                .map(|(p, (_, k))| (*k, p.revents()))
                .filter(|(_, r)| !r.is_empty())
                .collect();
            drop(pfds);
            drop(fds);
            let mut close_master = false;
            for (kind, _) in ready {
                match kind {
                    0 => {
                        while let Ok(Some(si)) = self.signals.read_signal() {
                            let sig = si.ssi_signo as i32;
                            if sig == libc::SIGCHLD {
                                reap(pid, &mut exit);
                            } else if sig == libc::SIGWINCH {
                                if let Some(m) = &pty_master {
                                    copy_winsize(m);
                                }
                            } else if exit.is_none() {
                                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::try_from(sig).ok());
                            }
                        }
                    }
                    1 => {
                        let Some(m) = pty_master.as_ref() else { continue };
                        match read_some(m.as_fd(), &mut buf) {
                            Ok(0) | Err(_) => close_master = true,
                            Ok(n) => {
                                if let Some(l) = self.log.as_mut()
                                    && l.write(logs::Stream::Stdout, &buf[..n]).is_err()
                                {
                                    self.log = None;
                                }
                                if write_all(rustix::stdio::stdout(), &buf[..n]).is_err() {
                                    close_master = true;
                                }
                            }
                        }
                    }
                    2 => match read_some(rustix::stdio::stdin(), &mut buf) {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(n) => {
                            if let Some(m) = &pty_master {
                                let _ = write_all(m.as_fd(), &buf[..n]);
                            }
                        }
                    },
                    3 | 4 => {
                        let (src, dst, stream) = if kind == 3 {
                            (&mut self.out, rustix::stdio::stdout(), logs::Stream::Stdout)
                        } else {
                            (&mut self.err, rustix::stdio::stderr(), logs::Stream::Stderr)
                        };
                        let Some(fd) = src.as_ref() else { continue };
                        match read_some(fd.as_fd(), &mut buf) {
                            Ok(0) | Err(_) => *src = None,
                            Ok(n) => {
                                if let Some(l) = self.log.as_mut()
                                    && l.write(stream, &buf[..n]).is_err()
                                {
                                    self.log = None;
                                }
                                if write_all(dst, &buf[..n]).is_err() {
                                    // Our reader went away: so does the container's writer.
                                    *src = None;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if close_master {
                if exit.is_some() {
                    break;
                }
                // The pty closed before the process exited (it closed its terminal): keep
                // waiting for the exit only.
                drop(pty_master.take());
                stdin_open = false;
            }
            if exit.is_some() && self.out.is_none() && self.err.is_none() && pty_master.is_none() {
                break;
            }
        }
        // Helpers serving the rootfs end with the container.
        for h in helper_pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*h), Signal::SIGTERM);
            let _ = waitpid(Pid::from_raw(*h), None);
        }
        drop(self.raw.take());
        let _ = SigSet::all().thread_unblock();
        exit.ok_or_else(|| io::Error::other("the container exit status was lost"))
    }
}

/// Reaps every exited child: the container (recording its exit), and orphans re-parented to
/// us as a subreaper.
fn reap(pid: i32, exit: &mut Option<Exit>) {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => *exit = Some(Exit::Code(c)),
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => *exit = Some(Exit::Signal(s as i32)),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {
                let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::OUT)];
                let _ = rustix::event::poll(&mut p, None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Copies our terminal's window size (stdin, else stdout) to the pty.
fn copy_winsize(master: &OwnedFd) {
    for fd in [rustix::stdio::stdin(), rustix::stdio::stdout()] {
        if let Ok(ws) = rustix::termios::tcgetwinsize(fd) {
            let _ = rustix::termios::tcsetwinsize(master, ws);
            return;
        }
    }
}

/// Our terminal in raw mode; restored on drop.
struct RawMode {
    fd: RawFd,
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter(fd: RawFd) -> io::Result<RawMode> {
        // SAFETY: fd 0 is open for the life of the process; we only borrow it.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let saved = rustix::termios::tcgetattr(b)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(b, rustix::termios::OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        let b = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = rustix::termios::tcsetattr(b, rustix::termios::OptionalActions::Now, &self.saved);
    }
}
