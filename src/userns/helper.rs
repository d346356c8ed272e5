//! Helper processes in a user namespace: `/proc/self/exe __userns <sync-fd> <op> [args…]`.
//!
//! A process with a second thread cannot unshare a user namespace, and capabilities in a new
//! user namespace survive `execve` only if the uid is already mapped. So the parent forks
//! (through `std::process::Command`, safe even from a multi-threaded pull), the child unshares
//! in `pre_exec` and execs this binary, which waits on the sync fd while the parent writes the
//! maps, then execs again — now as root of the namespace with full capabilities — into either
//! the user's command (`exec`) or nook's own helper operation.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use super::{IdMappings, UsernsError, write_maps};

/// What the helper does once it is root in the namespace.
#[derive(Debug, Clone)]
pub enum HelperOp {
    /// Exec the user's command (`nook unshare CMD`).
    Exec(Vec<OsString>),
    /// Run nook itself again with these arguments (an internal operation).
    Nook(Vec<OsString>),
}

/// How long a helper waits for its parent to write the maps.
const MAP_WAIT_MS: i32 = 30_000;

/// Starts `op` in a new user namespace (and a new mount namespace when `mount_ns`) with `maps`.
/// `configure` sets stdio and environment on the command before it is spawned.
pub fn spawn_helper(
    maps: &IdMappings,
    op: &HelperOp,
    mount_ns: bool,
    configure: impl FnOnce(&mut Command),
) -> Result<Child, UsernsError> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| UsernsError::Spawn { what: "sync pipe".into(), source: e.into() })?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("nook").arg("__userns").arg(r.as_raw_fd().to_string());
    match op {
        HelperOp::Exec(args) => cmd.arg("exec").args(args),
        HelperOp::Nook(args) => cmd.arg("nook").args(args),
    };
    cmd.env("_NOOK_USERNS", "1");
    configure(&mut cmd);
    let fd = r.as_raw_fd();
    let flags = libc::CLONE_NEWUSER | if mount_ns { libc::CLONE_NEWNS } else { 0 };
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (fcntl, unshare) on integers it captured by value; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            if libc::unshare(flags) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| UsernsError::Spawn {
        what: format!(
            "a user namespace ({e}; check that unprivileged user namespaces are enabled: sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
        ),
        source: e,
    })?;
    drop(r);
    if let Err(e) = write_maps(child.id() as i32, maps) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    rustix::io::write(&w, b"1").map_err(|e| UsernsError::Spawn { what: "sync pipe".into(), source: e.into() })?;
    Ok(child)
}

/// The `__userns` entry point, called by `main` before anything else (single-threaded).
/// Waits for the maps, then execs. Returns the internal operation's arguments once this
/// process is root of the namespace with full capabilities.
pub fn helper_main(args: &[OsString]) -> Result<Vec<OsString>, UsernsError> {
    let (Some(sync), Some(kind)) = (args.first(), args.get(1)) else {
        return Err(UsernsError::Helper("missing arguments".into()));
    };
    let rest = &args[2..];
    if sync != "-" {
        let fd: i32 =
            sync.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| UsernsError::Helper("bad sync fd".into()))?;
        // SAFETY: the fd number was handed to us by our parent, which kept it open for us and
        // cleared its close-on-exec flag; nothing else in this fresh process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        wait_readable(&fd, MAP_WAIT_MS, "the parent to write the uid/gid maps")?;
        let mut b = [0u8; 1];
        match rustix::io::read(&fd, &mut b) {
            Ok(1) => {}
            _ => {
                return Err(UsernsError::Helper("the parent could not write the uid/gid maps".into()));
            }
        }
        drop(fd);
        let mut argv: Vec<OsString> = Vec::new();
        match kind.to_str() {
            Some("exec") => {
                if rest.is_empty() {
                    return Err(UsernsError::Helper("no command".into()));
                }
                argv.extend(rest.iter().cloned());
                return Err(exec(&argv, true));
            }
            Some("nook") => {
                argv.extend(["nook", "__userns", "-", "nook"].map(OsString::from));
                argv.extend(rest.iter().cloned());
                return Err(exec_path(b"/proc/self/exe", &argv));
            }
            _ => return Err(UsernsError::Helper(format!("unknown operation {kind:?}"))),
        }
    }
    Ok(rest.to_vec())
}

fn wait_readable(fd: &OwnedFd, timeout_ms: i32, what: &str) -> Result<(), UsernsError> {
    let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    let ts = rustix::time::Timespec { tv_sec: i64::from(timeout_ms / 1000), tv_nsec: 0 };
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => {
                return Err(UsernsError::Helper(format!("timed out after {}s waiting for {what}", timeout_ms / 1000)));
            }
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(UsernsError::Helper(format!("waiting for {what}: {e}"))),
        }
    }
}

fn cstrings(argv: &[OsString]) -> Vec<CString> {
    argv.iter().map(|a| CString::new(a.as_bytes()).unwrap_or_else(|_| c"?".to_owned())).collect()
}

/// execvp; returns only on failure.
fn exec(argv: &[OsString], search: bool) -> UsernsError {
    let c = cstrings(argv);
    let err = if search { nix::unistd::execvp(&c[0], &c).err() } else { nix::unistd::execv(&c[0], &c).err() };
    let e = err.map(io::Error::from).unwrap_or_else(io::Error::last_os_error);
    UsernsError::Exec { cmd: argv[0].to_string_lossy().into_owned(), source: e }
}

fn exec_path(path: &[u8], argv: &[OsString]) -> UsernsError {
    let c = cstrings(argv);
    let p = CString::new(path).unwrap_or_else(|_| c"/proc/self/exe".to_owned());
    let e = nix::unistd::execv(&p, &c).err().map(io::Error::from).unwrap_or_else(io::Error::last_os_error);
    UsernsError::Helper(format!("cannot re-execute nook: {e}"))
}
