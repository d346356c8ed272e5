//! The owner's side of starting a container, and the message protocol with the setup and
//! init processes (a `SOCK_SEQPACKET` socket pair, close-on-exec).
//!
//! The owner forks the setup process first ([`begin`]) so that newuidmap and newgidmap run
//! while it prepares the container; then it sends the spec ([`Pending::create`]).
//!
//! ```text
//! setup -> owner  U            unshared the user namespace: write my maps
//! owner -> setup  C json + fds what to build (spec, rootfs, stdio descriptors)
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

use super::{RootfsSetup, RuntimeError, init};
use crate::userns::{IdMappings, MapWriter};

/// The container process's stdio.
#[derive(Debug, Clone, Copy)]
pub enum Stdio {
    /// A pty is made inside the container; its master comes back in [`Created::pty_master`].
    Tty,
    /// These descriptors (of the owner) become 0, 1 and 2.
    Fds { stdin: RawFd, stdout: RawFd, stderr: RawFd },
}

pub struct SpawnConfig<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a RootfsSetup,
    pub stdio: Stdio,
    /// Kill the container if its owner dies.
    pub kill_with_owner: bool,
    /// Let the container exec its command as soon as it is ready, without waiting for
    /// [`Created::start`] (which then only waits for the exec): one round trip less, for an
    /// owner that has nothing to do between the two.
    pub start_at_once: bool,
    /// Pid 1 stays a small reaper (`--init`): it runs the command as its child, forwards
    /// signals to it, reaps orphans and exits with the command's status.
    pub init: bool,
}

/// What the setup process receives (as JSON, with the stdio descriptors alongside).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SetupRequest {
    pub spec: Spec,
    pub rootfs: RootfsSetup,
    pub tty: bool,
    pub kill_with_owner: bool,
    /// Only root is mapped (no supplementary groups can be set).
    pub single_id: bool,
    #[serde(default)]
    pub init: bool,
}

/// A setup process in its new user namespace, whose maps are being written.
pub struct Pending {
    setup_pid: i32,
    sock: OwnedFd,
    maps: Option<MapWriter>,
    single_id: bool,
}

/// A container process that finished its setup and waits for [`Created::start`].
pub struct Created {
    /// Host pid of the container's init (pid 1 inside).
    pub pid: i32,
    pub pty_master: Option<OwnedFd>,
    /// Processes serving the root filesystem, to stop after the container exits.
    pub helper_pids: Vec<i32>,
    sock: OwnedFd,
    /// The go was sent with the configuration (`start_at_once`).
    go_sent: bool,
}

/// How long each setup step may take before the owner gives up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn send(sock: &OwnedFd, tag: u8, payload: &[u8], fd: Option<RawFd>) -> Result<(), String> {
    match fd {
        Some(f) => send_fds(sock, tag, payload, &[f]),
        None => send_fds(sock, tag, payload, &[]),
    }
}

pub(super) fn send_fds(sock: &OwnedFd, tag: u8, payload: &[u8], fds: &[RawFd]) -> Result<(), String> {
    let mut buf = Vec::with_capacity(1 + payload.len());
    buf.push(tag);
    buf.extend_from_slice(payload);
    let iov = [std::io::IoSlice::new(&buf)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map(|_| ())
        .map_err(|e| format!("sending to the container owner: {e}"))
}

pub(super) struct Message {
    pub tag: u8,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
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
    let mut buf = vec![0u8; 256 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 3]);
    let (n, fds) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| format!("receiving {what}: {e}"))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| format!("receiving {what}: {e}"))? {
            if let ControlMessageOwned::ScmRights(v) = c {
                for f in v {
                    // SAFETY: the kernel just installed this descriptor in our table for us.
                    fds.push(unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
        }
        (msg.bytes, fds)
    };
    if n == 0 {
        return Ok(Message { tag: 0, payload: Vec::new(), fds });
    }
    buf.truncate(n);
    let tag = buf.remove(0);
    Ok(Message { tag, payload: buf, fds })
}

pub(super) fn error_from(m: &Message) -> RuntimeError {
    let code = m.payload.first().copied().unwrap_or(125);
    let msg = String::from_utf8_lossy(m.payload.get(1..).unwrap_or_default()).into_owned();
    match code {
        127 => RuntimeError::NotFound(msg),
        126 => RuntimeError::CannotInvoke(msg),
        _ => RuntimeError::Setup(msg),
    }
}

/// A send failed because the other side is gone: it usually said why before it left.
fn peer_error(sock: &OwnedFd, send_err: String) -> RuntimeError {
    match recv(sock, Duration::from_millis(100), "the reason the container setup stopped") {
        Ok(m) if m.tag == b'E' => error_from(&m),
        _ => RuntimeError::Setup(send_err),
    }
}

fn reap(pid: i32) -> Option<WaitStatus> {
    waitpid(Pid::from_raw(pid), None).ok()
}

pub(super) fn kill_and_reap(pid: i32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    let _ = reap(pid);
}

/// Starts a setup process in a new user and mount namespace and starts writing its id maps.
/// Call it as early as possible: the map tools run while the caller prepares the container.
/// Must be called from a single-threaded process (it forks).
pub fn begin(maps: &IdMappings) -> Result<Pending, RuntimeError> {
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
            init::stage_setup(csock)
        }
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    drop(csock);
    let mut p = Pending { setup_pid, sock: msock, maps: None, single_id: maps.is_single() };
    let m = recv(&p.sock, SETUP_TIMEOUT, "the container setup process to create its user namespace");
    match m {
        Ok(m) if m.tag == b'U' => {}
        Ok(m) if m.tag == b'E' => {
            p.abort();
            return Err(error_from(&m));
        }
        Ok(_) => {
            p.abort();
            return Err(RuntimeError::Setup("the container setup process exited early".into()));
        }
        Err(e) => {
            p.abort();
            return Err(RuntimeError::Setup(e));
        }
    }
    match MapWriter::start(setup_pid, maps) {
        Ok(w) => p.maps = Some(w),
        Err(e) => {
            p.abort();
            return Err(e.into());
        }
    }
    Ok(p)
}

impl Pending {
    /// Gives up: the setup process is killed.
    pub fn abort(mut self) {
        drop(self.maps.take());
        kill_and_reap(self.setup_pid);
    }

    /// Hands the setup process the container to build. Returns once its init is ready to exec.
    pub fn create(mut self, cfg: &SpawnConfig<'_>) -> Result<Created, RuntimeError> {
        let mut init_pid: Option<i32> = None;
        let mut helper_pids: Vec<i32> = Vec::new();
        let setup_pid = self.setup_pid;
        let r = self.create_inner(cfg, &mut init_pid, &mut helper_pids);
        if r.is_err() {
            for h in &helper_pids {
                kill_and_reap(*h);
            }
            // Whatever stage failed, nothing of it may survive.
            drop(self.maps.take());
            if let Ok(WaitStatus::StillAlive) = waitpid(Pid::from_raw(setup_pid), Some(WaitPidFlag::WNOHANG)) {
                kill_and_reap(setup_pid);
            }
            if let Some(p) = init_pid {
                kill_and_reap(p);
            }
        }
        r
    }

    fn create_inner(
        &mut self,
        cfg: &SpawnConfig<'_>,
        init_pid: &mut Option<i32>,
        helper_pids: &mut Vec<i32>,
    ) -> Result<Created, RuntimeError> {
        let req = SetupRequest {
            spec: cfg.spec.clone(),
            rootfs: cfg.rootfs.clone(),
            tty: matches!(cfg.stdio, Stdio::Tty),
            kill_with_owner: cfg.kill_with_owner,
            single_id: self.single_id,
            init: cfg.init,
        };
        let json = serde_json::to_vec(&req).map_err(|e| RuntimeError::Setup(e.to_string()))?;
        let fds: Vec<RawFd> = match cfg.stdio {
            Stdio::Tty => Vec::new(),
            Stdio::Fds { stdin, stdout, stderr } => vec![stdin, stdout, stderr],
        };
        send_fds(&self.sock, b'C', &json, &fds).map_err(|e| peer_error(&self.sock, e))?;
        if let Some(w) = self.maps.take() {
            w.wait()?;
        }
        send(&self.sock, b'M', &[], None).map_err(|e| peer_error(&self.sock, e))?;
        // Setup reports init's pid (P); init reports its pty (T) and readiness (R). The two
        // processes run concurrently, so these arrive in any order.
        let mut pty_master = None;
        let mut ready = false;
        while init_pid.is_none() || !ready {
            let what = if init_pid.is_none() {
                "the container root filesystem to be mounted"
            } else {
                "the container init to finish its setup"
            };
            let mut m = recv(&self.sock, SETUP_TIMEOUT, what).map_err(RuntimeError::Setup)?;
            match m.tag {
                b'P' => {
                    let pids: Vec<i32> =
                        m.payload.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                    *init_pid = pids.first().copied();
                    helper_pids.extend_from_slice(pids.get(1..).unwrap_or_default());
                    let _ = reap(self.setup_pid);
                    if cfg.start_at_once {
                        // Queued for init, which reads it once ready. Only now: the setup
                        // process is gone, so init's parent is this process when init sets
                        // its parent-death signal (the setup process exiting later would
                        // deliver it).
                        send(&self.sock, b'G', &[], None).map_err(|e| peer_error(&self.sock, e))?;
                    }
                }
                b'T' => pty_master = m.fds.pop(),
                b'R' => ready = true,
                b'E' => return Err(error_from(&m)),
                _ => return Err(RuntimeError::Setup("the container setup exited before it was ready".into())),
            }
        }
        let pid = init_pid.ok_or_else(|| RuntimeError::Setup("no init pid".into()))?;
        Ok(Created {
            pid,
            pty_master,
            helper_pids: helper_pids.clone(),
            sock: self.sock.try_clone().map_err(|e| RuntimeError::Setup(e.to_string()))?,
            go_sent: cfg.start_at_once,
        })
    }
}

impl Created {
    /// Lets the container exec its command; returns once it did (or failed to). `starting`
    /// runs while the container execs (the caller records the container as running).
    pub fn start(self, starting: impl FnOnce()) -> Result<(), RuntimeError> {
        if !self.go_sent {
            send(&self.sock, b'G', &[], None).map_err(|e| peer_error(&self.sock, e))?;
        }
        starting();
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
