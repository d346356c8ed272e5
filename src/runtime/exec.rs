//! Running another process in a running container (`nook exec`): the kernel side.
//!
//! ```text
//! owner ──fork──> join (setns into the container init's user, mount, pid, uts, ipc [, net]
//!   │                   namespaces through a pidfd; chroot to init's root) ──fork──> process
//!   │                   (pid N of the container; resolves -u in the container's /etc files,
//!   │                    opens its pty in the container's devpts, waits for the go, then
//!   │                    the same last steps as the container's init: user, capabilities,
//!   │                    no_new_privs, working directory, exec)
//!   └── subreaper: the process is re-parented to the owner when join exits
//! ```
//! Joining a user namespace needs a single-threaded process: both run in forks of the
//! single-threaded owner. Messages (the socket pair of [`super::process`]):
//! ```text
//! join    -> owner  P pid    the process's host pid
//! process -> owner  T + fd   pty master (with a terminal)
//! process -> owner  R        ready to exec
//! owner   -> process G       go (join is reaped by then, so the owner is the parent)
//! any     -> owner  E code msg
//! ```
//! After `G`, EOF means the command runs (the socket is close-on-exec).

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use rustix::fs::{Mode, OFlags};

use super::init::{Fail, become_process, fail, finish, open_pty, setup_err};
use super::process::{error_from, kill_and_reap, recv, send};
use super::user::resolve_user;
use super::{RuntimeError, Stdio};

/// How long each step may take before the other side gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running container's init, pinned: a pidfd (its namespaces) and its root directory.
pub struct ExecTarget {
    pidfd: OwnedFd,
    root: OwnedFd,
    flags: CloneFlags,
}

impl ExecTarget {
    /// Opens the container init `pid`, to join the namespaces `spec` gives the container.
    /// The caller then checks that `pid` is still the container's (its start time): from then
    /// on these descriptors refer to that process, whatever happens to the pid number.
    pub fn open(pid: i32, spec: &Spec) -> Result<ExecTarget, RuntimeError> {
        let p = rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| RuntimeError::Setup(format!("invalid container pid {pid}")))?;
        let pidfd = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
            .map_err(|e| RuntimeError::Setup(format!("opening the container process {pid}: {e}")))?;
        let root = rustix::fs::open(
            format!("/proc/{pid}/root"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RuntimeError::Setup(format!("opening the root of the container process {pid}: {e}")))?;
        let mut flags = CloneFlags::empty();
        for t in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
            flags |= match t.typ() {
                LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                // Not joined: nook makes none of these for a container.
                _ => CloneFlags::empty(),
            };
        }
        Ok(ExecTarget { pidfd, root, flags })
    }
}

/// What to run in the container.
pub struct ExecConfig<'a> {
    pub target: &'a ExecTarget,
    /// The process: args, env, cwd, user, capabilities, no_new_privs.
    pub process: &'a Process,
    /// `-u USER[:GROUP]`: resolved in the container's /etc/passwd and /etc/group, replacing
    /// the process's user, its capabilities (as podman: root keeps them effective) and, when
    /// `user_home`, HOME.
    pub user: Option<&'a str>,
    pub user_home: bool,
    pub stdio: Stdio,
    /// Only root is mapped in the container (no supplementary groups can be set).
    pub single_id: bool,
    /// Kill the process if the owner dies.
    pub kill_with_owner: bool,
}

/// A process in the container, ready to exec once [`ExecPending::start`] says go.
pub struct ExecPending {
    /// Its host pid.
    pub pid: i32,
    pub pty_master: Option<OwnedFd>,
    sock: OwnedFd,
}

/// Starts a process in the container's namespaces; returns once it is ready to exec. Must be
/// called from a single-threaded process (it forks and the child joins a user namespace).
pub fn spawn(cfg: &ExecConfig<'_>) -> Result<ExecPending, RuntimeError> {
    // The process is re-parented to us when the joining process exits.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| RuntimeError::Setup(format!("becoming a subreaper: {e}")))?;
    let (msock, csock) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| RuntimeError::Setup(format!("socketpair: {e}")))?;
    // SAFETY: the caller guarantees a single-threaded process, so the child may run arbitrary
    // code (allocation included) until it execs or exits.
    let join_pid = match unsafe { nix::unistd::fork() }.map_err(|e| RuntimeError::Setup(format!("fork: {e}")))? {
        nix::unistd::ForkResult::Child => {
            drop(msock);
            let r = join(&csock, cfg);
            finish(&csock, r)
        }
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    drop(csock);
    let mut pid: Option<i32> = None;
    let mut join_alive = true;
    let r = (|| -> Result<ExecPending, RuntimeError> {
        let mut pty_master = None;
        let mut ready = false;
        while pid.is_none() || !ready {
            let what = if pid.is_none() {
                "the process to join the container's namespaces"
            } else {
                "the process to be ready in the container"
            };
            let mut m = recv(&msock, STEP_TIMEOUT, what).map_err(RuntimeError::Setup)?;
            match m.tag {
                b'P' => {
                    let b: [u8; 4] = m.payload.get(..4).and_then(|b| b.try_into().ok()).unwrap_or_default();
                    pid = Some(i32::from_le_bytes(b));
                    // Join exits right after it said so; then the process is ours.
                    let _ = waitpid(Pid::from_raw(join_pid), None);
                    join_alive = false;
                }
                b'T' => pty_master = m.fds.pop(),
                b'R' => ready = true,
                b'E' => return Err(error_from(&m)),
                _ => return Err(RuntimeError::Setup("the exec process exited before it was ready".into())),
            }
        }
        let pid = pid.ok_or_else(|| RuntimeError::Setup("no exec pid".into()))?;
        Ok(ExecPending { pid, pty_master, sock: msock.try_clone().map_err(|e| RuntimeError::Setup(e.to_string()))? })
    })();
    if r.is_err() {
        if join_alive {
            kill_and_reap(join_pid);
        }
        if let Some(p) = pid {
            kill_and_reap(p);
        }
    }
    r
}

impl ExecPending {
    /// Lets the process exec its command; returns once it did (or failed to).
    pub fn start(self) -> Result<(), RuntimeError> {
        let sent = send(&self.sock, b'G', &[], None);
        let m = recv(&self.sock, STEP_TIMEOUT, "the command to start in the container");
        match (sent, m) {
            (_, Ok(m)) if m.tag == b'E' => {
                let _ = waitpid(Pid::from_raw(self.pid), None);
                Err(error_from(&m))
            }
            (Ok(()), Ok(m)) if m.tag == 0 => Ok(()),
            (Err(e), _) | (_, Err(e)) => {
                kill_and_reap(self.pid);
                Err(RuntimeError::Setup(e))
            }
            (_, Ok(_)) => {
                kill_and_reap(self.pid);
                Err(RuntimeError::Setup("unexpected message from the exec process".into()))
            }
        }
    }

    /// Gives up: kills and reaps the process.
    pub fn abort(self) {
        kill_and_reap(self.pid);
    }
}

/// The joining process: enters the namespaces, takes init's root, forks the process.
fn join(sock: &OwnedFd, cfg: &ExecConfig<'_>) -> Result<(), Fail> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(setup_err("prctl"))?;
    // All at once through the pidfd: the user namespace first, then the rest with its rights.
    nix::sched::setns(&cfg.target.pidfd, cfg.target.flags).map_err(|e| {
        if e == nix::Error::ESRCH {
            fail(125, "the container is not running")
        } else {
            setup_err("joining the container's namespaces")(e)
        }
    })?;
    // The mount namespace's root may be the one init pivoted away from: take init's own root.
    nix::unistd::fchdir(&cfg.target.root).map_err(setup_err("entering the container's root"))?;
    nix::unistd::chroot(".").map_err(setup_err("chroot to the container's root"))?;
    nix::unistd::chdir("/").map_err(setup_err("chdir /"))?;
    // SAFETY: this process is a single-threaded fork of the owner.
    match unsafe { nix::unistd::fork() }.map_err(setup_err("fork"))? {
        nix::unistd::ForkResult::Child => {
            let r = in_container(sock, cfg).map(|_| ());
            finish(sock, r)
        }
        nix::unistd::ForkResult::Parent { child } => {
            send(sock, b'P', &child.as_raw().to_le_bytes(), None).map_err(|e| {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                fail(125, e)
            })
        }
    }
}

/// Applies a resolved `-u` to `process`.
fn set_user(process: &mut Process, spec: &str, home: bool) -> Result<(), Fail> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let u = resolve_user(spec, &read("/etc/passwd"), &read("/etc/group")).map_err(|e| fail(125, e))?;
    let mut user = process.user().clone();
    user.set_uid(u.uid);
    user.set_gid(u.gid);
    user.set_additional_gids((!u.additional_gids.is_empty()).then(|| u.additional_gids.clone()));
    process.set_user(user);
    let bounding: HashSet<_> = process.capabilities().as_ref().and_then(|c| c.bounding().clone()).unwrap_or_default();
    process.set_capabilities(Some(super::spec::user_capabilities(bounding, u.uid).map_err(|e| fail(125, e))?));
    if home {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| !e.starts_with("HOME="));
        env.push(format!("HOME={}", u.home.as_deref().unwrap_or("/")));
        process.set_env(Some(env));
    }
    Ok(())
}

/// The process in the container (pid N there). Returns only on failure.
fn in_container(sock: &OwnedFd, cfg: &ExecConfig<'_>) -> Result<std::convert::Infallible, Fail> {
    let mut process = cfg.process.clone();
    if let Some(u) = cfg.user {
        set_user(&mut process, u, cfg.user_home)?;
    }
    let (slave, stdio): (Option<OwnedFd>, Option<[RawFd; 3]>) = match cfg.stdio {
        Stdio::Tty => {
            let root = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| fail(125, format!("opening /: {e}")))?;
            let (master, slave) = open_pty(&root)?;
            send(sock, b'T', &[], Some(master.as_raw_fd())).map_err(|e| fail(125, e))?;
            (Some(slave), None)
        }
        Stdio::Fds { stdin, stdout, stderr } => (None, Some([stdin, stdout, stderr])),
    };
    send(sock, b'R', &[], None).map_err(|e| fail(125, e))?;
    let m = recv(sock, STEP_TIMEOUT, "the owner's go").map_err(|e| fail(125, e))?;
    if m.tag != b'G' {
        // The owner went away: nothing to run for.
        // SAFETY: _exit ends this forked child without running the owner's exit handlers.
        unsafe { libc::_exit(125) }
    }
    Err(become_process(&process, cfg.single_id, cfg.kill_with_owner, slave.as_ref(), stdio))
}
