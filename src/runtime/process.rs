//! The owner's side of starting a container, and the message protocol with the setup and
//! init processes (a `SOCK_SEQPACKET` socket pair, close-on-exec).
//!
//! ```text
//! setup -> owner  U            unshared the user namespace: write my maps
//! owner -> setup  M            maps written
//! setup -> owner  P pid…       init's host pid, then helper pids (fuse-overlayfs)
//! init  -> owner  T + fd       pty master (with a terminal)
//! init  -> owner  R            ready to exec
//! owner -> init   G            go
//! any   -> owner  E code msg   failed (code: 125, 126 or 127)
//! ```
//! After `G` the socket closes when init execs (close-on-exec): EOF means the command runs.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::{RootfsMount, RuntimeError, init};
use crate::userns::{IdMappings, write_maps};

/// The container process's stdio.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    /// A pty is made inside the container; its master comes back in [`Created::pty_master`].
    Tty,
    /// These descriptors (inherited) become 0, 1 and 2.
    Fds { stdin: RawFd, stdout: RawFd, stderr: RawFd },
}

pub struct SpawnConfig<'a> {
    pub spec: &'a Spec,
    pub maps: &'a IdMappings,
    pub rootfs: &'a dyn RootfsMount,
    pub stdio: Stdio,
    /// Kill the container if its owner dies.
    pub kill_with_owner: bool,
}

/// A container process that finished its setup and waits for [`Created::start`].
pub struct Created {
    /// Host pid of the container's init (pid 1 inside).
    pub pid: i32,
    pub pty_master: Option<OwnedFd>,
    /// Processes serving the root filesystem, to stop after the container exits.
    pub helper_pids: Vec<i32>,
    sock: OwnedFd,
}

/// How long each setup step may take before the owner gives up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn send(sock: &OwnedFd, tag: u8, payload: &[u8], fd: Option<RawFd>) -> Result<(), String> {
    let mut buf = Vec::with_capacity(1 + payload.len());
    buf.push(tag);
    buf.extend_from_slice(payload);
    let iov = [std::io::IoSlice::new(&buf)];
    let fds;
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(f) => {
            fds = [f];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map(|_| ())
        .map_err(|e| format!("sending to the container owner: {e}"))
}

pub(super) struct Message {
    pub tag: u8,
    pub payload: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

/// Receives one message, waiting at most `timeout` (while saying what for). EOF gives tag 0.
pub(super) fn recv(sock: &OwnedFd, timeout: Duration, what: &str) -> Result<Message, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = [rustix::event::PollFd::new(sock, rustix::event::PollFlags::IN)];
        let ts = rustix::time::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: left.subsec_nanos() as i64 };
        match rustix::event::poll(&mut pfd, Some(&ts)) {
            Ok(0) => {
                return Err(format!("timed out after {}s waiting for {what}", timeout.as_secs()));
            }
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
    let mut buf = vec![0u8; 8192];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fd) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| format!("receiving {what}: {e}"))?;
        let mut fd = None;
        for c in msg.cmsgs().map_err(|e| format!("receiving {what}: {e}"))? {
            if let ControlMessageOwned::ScmRights(v) = c
                && let Some(&f) = v.first()
            {
                // SAFETY: the kernel just installed this descriptor in our table for us.
                fd = Some(unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
        (msg.bytes, fd)
    };
    if n == 0 {
        return Ok(Message { tag: 0, payload: Vec::new(), fd: None });
    }
    Ok(Message { tag: buf[0], payload: buf[1..n].to_vec(), fd })
}

fn error_from(m: &Message) -> RuntimeError {
    let code = m.payload.first().copied().unwrap_or(125);
    let msg = String::from_utf8_lossy(m.payload.get(1..).unwrap_or_default()).into_owned();
    match code {
        127 => RuntimeError::NotFound(msg),
        126 => RuntimeError::CannotInvoke(msg),
        _ => RuntimeError::Setup(msg),
    }
}

fn reap(pid: i32) -> Option<WaitStatus> {
    waitpid(Pid::from_raw(pid), None).ok()
}

fn kill_and_reap(pid: i32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let _ = reap(pid);
}

/// Creates the container's namespaces and process. Returns once its init is ready to exec.
/// Must be called from a single-threaded process (it forks).
pub fn create(cfg: &SpawnConfig<'_>) -> Result<Created, RuntimeError> {
    // Init is re-parented to us when the setup process exits.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| RuntimeError::Setup(format!("becoming a subreaper: {e}")))?;
    let (msock, csock) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| RuntimeError::Setup(format!("socketpair: {e}")))?;
    // SAFETY: the caller guarantees a single-threaded process, so the child may run arbitrary
    // code (allocation included) until it execs or exits.
    let fork = unsafe { nix::unistd::fork() }.map_err(|e| RuntimeError::Setup(format!("fork: {e}")))?;
    let setup_pid = match fork {
        nix::unistd::ForkResult::Child => {
            drop(msock);
            init::stage_setup(csock, cfg)
        }
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    drop(csock);
    let mut init_pid: Option<i32> = None;
    let r = (|| -> Result<Created, RuntimeError> {
        let m = recv(&msock, SETUP_TIMEOUT, "the container setup process to create its user namespace")
            .map_err(RuntimeError::Setup)?;
        match m.tag {
            b'U' => {}
            b'E' => return Err(error_from(&m)),
            _ => {
                return Err(RuntimeError::Setup("the container setup process exited early".into()));
            }
        }
        write_maps(setup_pid, cfg.maps)?;
        send(&msock, b'M', &[], None).map_err(RuntimeError::Setup)?;
        // Setup reports init's pid (P); init reports its pty (T) and readiness (R). The two
        // processes run concurrently, so these arrive in any order.
        let mut helper_pids = Vec::new();
        let mut pty_master = None;
        let mut ready = false;
        while init_pid.is_none() || !ready {
            let what = if init_pid.is_none() {
                "the container root filesystem to be mounted"
            } else {
                "the container init to finish its setup"
            };
            let m = recv(&msock, SETUP_TIMEOUT, what).map_err(RuntimeError::Setup)?;
            match m.tag {
                b'P' => {
                    let pids: Vec<i32> =
                        m.payload.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                    init_pid = pids.first().copied();
                    helper_pids.extend_from_slice(pids.get(1..).unwrap_or_default());
                    let _ = reap(setup_pid);
                }
                b'T' => pty_master = m.fd,
                b'R' => ready = true,
                b'E' => return Err(error_from(&m)),
                _ => return Err(RuntimeError::Setup("the container setup exited before it was ready".into())),
            }
        }
        let pid = init_pid.ok_or_else(|| RuntimeError::Setup("no init pid".into()))?;
        Ok(Created {
            pid,
            pty_master,
            helper_pids,
            sock: msock.try_clone().map_err(|e| RuntimeError::Setup(e.to_string()))?,
        })
    })();
    if r.is_err() {
        // Whatever stage failed, nothing of it may survive.
        if let Ok(WaitStatus::StillAlive) = waitpid(Pid::from_raw(setup_pid), Some(WaitPidFlag::WNOHANG)) {
            kill_and_reap(setup_pid);
        }
        if let Some(p) = init_pid {
            kill_and_reap(p);
        }
    }
    r
}

impl Created {
    /// Lets the container exec its command; returns once it did (or failed to).
    pub fn start(self) -> Result<(), RuntimeError> {
        send(&self.sock, b'G', &[], None).map_err(RuntimeError::Setup)?;
        let m = recv(&self.sock, SETUP_TIMEOUT, "the container command to start").map_err(RuntimeError::Setup)?;
        match m.tag {
            0 => Ok(()),
            b'E' => {
                let _ = reap(self.pid);
                Err(error_from(&m))
            }
            _ => Err(RuntimeError::Setup("unexpected message from the container init".into())),
        }
    }

    /// Gives up on a created container: kills and reaps it.
    pub fn abort(self) {
        kill_and_reap(self.pid);
    }
}
