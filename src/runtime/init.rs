//! The two processes that build a container, both forked from the owner:
//!
//! - *setup*: enters a new user and mount namespace, waits while the owner writes its id maps,
//!   mounts the root filesystem (the storage driver's [`RootfsMount`]), unshares the pid, uts,
//!   ipc (and net) namespaces, forks init, reports init's pid and exits.
//! - *init*: pid 1 of the new pid namespace. Mounts /proc, /dev, /sys and the rest, pivots into
//!   the root filesystem, masks paths, waits for the owner's go, drops to the container user
//!   and capabilities and execs the command.
//!
//! Both run in a forked copy of the single-threaded owner and end with `_exit` or `exec`;
//! every failure is reported to the owner as one line with an exit code.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::mounts::{fd_path, mount_target, parse_options, set_attrs};
use super::process::{SetupRequest, recv, send};
use super::spec::DEVICES;

/// A failure: the exit code (125, 126 or 127) and one line saying why.
pub(super) type Fail = (u8, String);

pub(super) fn fail(code: u8, msg: impl Into<String>) -> Fail {
    (code, msg.into())
}

pub(super) fn setup_err(what: &str) -> impl FnOnce(nix::Error) -> Fail + '_ {
    move |e| fail(125, format!("{what}: {e}"))
}

/// Reports the outcome to the owner and ends this forked process.
pub(super) fn finish(sock: &OwnedFd, r: Result<(), Fail>) -> ! {
    let code = match r {
        Ok(()) => 0,
        Err((code, msg)) => {
            let mut p = vec![code];
            p.extend_from_slice(msg.as_bytes());
            let _ = send(sock, b'E', &p, None);
            i32::from(code)
        }
    };
    // SAFETY: _exit ends this forked child without running the owner's atexit handlers or
    // destructors on state it shares with the owner.
    unsafe { libc::_exit(code) }
}

/// The setup process (never returns).
pub(super) fn stage_setup(sock: OwnedFd) -> ! {
    let r = setup(&sock);
    finish(&sock, r)
}

fn setup(sock: &OwnedFd) -> Result<(), Fail> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(setup_err("prctl"))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|e| {
        fail(
            125,
            format!(
                "creating a user namespace: {e} (check that unprivileged user namespaces are enabled: sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)"
            ),
        )
    })?;
    send(sock, b'U', &[], None).map_err(|e| fail(125, e))?;
    // While the maps are written: what needs no mapped ids.
    nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(setup_err("making mounts private"))?;
    let mut m = recv(sock, Duration::from_secs(60), "the container configuration").map_err(|e| fail(125, e))?;
    if m.tag != b'C' {
        return Err(fail(125, "the owner sent no container configuration"));
    }
    let req: SetupRequest =
        serde_json::from_slice(&m.payload).map_err(|e| fail(125, format!("bad container configuration: {e}")))?;
    let stdio: Vec<OwnedFd> = std::mem::take(&mut m.fds);
    let m = recv(sock, Duration::from_secs(60), "the uid/gid maps").map_err(|e| fail(125, e))?;
    if m.tag != b'M' {
        return Err(fail(125, "the owner could not write the uid/gid maps"));
    }
    let mounted = req.rootfs.mount().map_err(|e| fail(125, format!("mounting the root filesystem: {e}")))?;
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    if has_ns(&req.spec, LinuxNamespaceType::Network) {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if !mounted.helper_pids.is_empty() {
        // A mount helper (fuse-overlayfs) stays in this mount namespace: init's pivot_root
        // would move the helper's root too, so init gets a copy of the namespace instead.
        flags |= CloneFlags::CLONE_NEWNS;
    }
    nix::sched::unshare(flags).map_err(setup_err("creating the pid, uts and ipc namespaces"))?;
    // SAFETY: this process is a single-threaded fork of the owner.
    match unsafe { nix::unistd::fork() }.map_err(setup_err("fork"))? {
        nix::unistd::ForkResult::Child => {
            let r = init(sock, &req, &stdio, &mounted.root).map(|_| ());
            finish(sock, r)
        }
        nix::unistd::ForkResult::Parent { child } => {
            let mut p = Vec::new();
            for pid in std::iter::once(child.as_raw()).chain(mounted.helper_pids.iter().copied()) {
                p.extend_from_slice(&pid.to_le_bytes());
            }
            send(sock, b'P', &p, None).map_err(|e| fail(125, e))
        }
    }
}

fn has_ns(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
}

fn mount_fd(
    src: Option<&str>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(src, fd_path(target).as_str(), fstype, flags, data)
}

/// Mounts `m` (a filesystem, not a bind) at the path of `target`.
fn mount_fs(m: &oci_spec::runtime::Mount, target: &str) -> Result<(), Fail> {
    let typ = m.typ().as_deref().unwrap_or("tmpfs");
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let src = m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| typ.to_string());
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(src.as_str()), target, Some(typ), opts.flags, data)
        .map_err(|e| fail(125, format!("mounting {typ} on {}: {e}", m.destination().display())))
}

/// Fills a fresh /dev tmpfs (open as `devdir`): host devices bound onto empty files, and the
/// standard links.
fn populate_dev(devdir: &OwnedFd) -> Result<(), Fail> {
    for d in DEVICES {
        let name = d.trim_start_matches("/dev/");
        let f = rustix::fs::openat(
            devdir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| fail(125, format!("creating {d}: {e}")))?;
        mount_fd(Some(d), &f, None, MsFlags::MS_BIND, None).map_err(|e| fail(125, format!("binding {d}: {e}")))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        match rustix::fs::symlinkat(target, devdir, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(fail(125, format!("creating /dev/{name}: {e}"))),
        }
    }
    Ok(())
}

/// The spec's mounts in order, then /dev's devices and links when /dev is a tmpfs.
fn do_mounts(spec: &Spec, rootfd: &OwnedFd) -> Result<(), Fail> {
    let mut dev_tmpfs = false;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        let dest = m.destination().to_string_lossy().into_owned();
        let typ = m.typ().as_deref().unwrap_or("bind");
        let opts = parse_options(m.options().as_deref().unwrap_or_default());
        let src = m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| typ.to_string());
        if opts.bind || typ == "bind" {
            let md = std::fs::metadata(&src).map_err(|e| fail(125, format!("bind mount source {src}: {e}")))?;
            let target = mount_target(rootfd, &dest, md.is_dir()).map_err(|e| fail(125, e))?;
            let mut flags = MsFlags::MS_BIND;
            if opts.recursive {
                flags |= MsFlags::MS_REC;
            }
            mount_fd(Some(&src), &target, None, flags, None)
                .map_err(|e| fail(125, format!("bind-mounting {src} on {dest}: {e}")))?;
            if opts.attrs != 0 {
                let mounted = mount_target(rootfd, &dest, md.is_dir()).map_err(|e| fail(125, e))?;
                set_attrs(&fd_path(&mounted), opts.attrs, opts.recursive).map_err(|e| fail(125, e))?;
            }
            continue;
        }
        let target = mount_target(rootfd, &dest, true).map_err(|e| fail(125, e))?;
        mount_fs(m, &fd_path(&target))?;
        if dest == "/dev" && typ == "tmpfs" {
            dev_tmpfs = true;
        }
    }
    if dev_tmpfs {
        let dev = mount_target(rootfd, "/dev", true).map_err(|e| fail(125, e))?;
        let devdir =
            rustix::fs::openat(&dev, c".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| fail(125, format!("opening /dev: {e}")))?;
        populate_dev(&devdir)?;
    }
    Ok(())
}

/// Opens a pty inside the container's devpts (`dev/pts/ptmx` under `rootfd`). Returns
/// (master, slave).
pub(super) fn open_pty(rootfd: &OwnedFd) -> Result<(OwnedFd, OwnedFd), Fail> {
    let master = rustix::fs::openat2(
        rootfd,
        "dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .map_err(|e| fail(125, format!("opening /dev/pts/ptmx: {e}")))?;
    rustix::pty::unlockpt(&master).map_err(|e| fail(125, format!("unlockpt: {e}")))?;
    let slave =
        rustix::pty::ioctl_tiocgptpeer(&master, rustix::pty::OpenptFlags::RDWR | rustix::pty::OpenptFlags::NOCTTY)
            .map_err(|e| fail(125, format!("opening the pty slave: {e}")))?;
    Ok((master, slave))
}

/// Opens a pty inside the container's devpts; binds the slave on /dev/console. Returns
/// (master, slave).
fn make_pty(rootfd: &OwnedFd) -> Result<(OwnedFd, OwnedFd), Fail> {
    let (master, slave) = open_pty(rootfd)?;
    let console = mount_target(rootfd, "/dev/console", false).map_err(|e| fail(125, e))?;
    mount_fd(Some(fd_path(&slave).as_str()), &console, None, MsFlags::MS_BIND, None)
        .map_err(|e| fail(125, format!("binding the pty on /dev/console: {e}")))?;
    Ok((master, slave))
}

fn loopback_up() -> Result<(), Fail> {
    // SAFETY: plain socket/ioctl calls on a descriptor we own, with a zeroed ifreq whose name
    // we fill within its bounds.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(fail(125, format!("socket: {}", std::io::Error::last_os_error())));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        let e = std::io::Error::last_os_error();
        libc::close(s);
        if r != 0 {
            return Err(fail(125, format!("bringing up the loopback interface: {e}")));
        }
    }
    Ok(())
}

fn pivot(root: &Path) -> Result<(), Fail> {
    nix::unistd::chdir(root).map_err(setup_err("chdir to the root filesystem"))?;
    nix::unistd::pivot_root(".", ".").map_err(setup_err("pivot_root"))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(setup_err("detaching the old root"))?;
    nix::unistd::chdir("/").map_err(setup_err("chdir /"))
}

fn mask_and_protect(spec: &Spec) -> Result<(), Fail> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    for p in linux.masked_paths().as_deref().unwrap_or_default() {
        match std::fs::symlink_metadata(p) {
            Err(_) => continue,
            Ok(md) if md.is_dir() => {
                nix::mount::mount(Some("tmpfs"), p.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
                    .map_err(|e| fail(125, format!("masking {p}: {e}")))?;
            }
            Ok(_) => nix::mount::mount(Some("/dev/null"), p.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| fail(125, format!("masking {p}: {e}")))?,
        }
    }
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        nix::mount::mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| fail(125, format!("binding {p}: {e}")))?;
        set_attrs(
            p,
            libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
            true,
        )
        .map_err(|e| fail(125, e))?;
    }
    Ok(())
}

/// Creates the working directory if missing (as podman does), owned by the container user.
fn ensure_cwd(cwd: &Path, uid: u32, gid: u32) -> Result<(), Fail> {
    if cwd.exists() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut p = cwd;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(q) => p = q,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        std::fs::create_dir(d)
            .map_err(|e| fail(125, format!("creating the working directory {}: {e}", d.display())))?;
        let _ = std::os::unix::fs::chown(d, Some(uid), Some(gid));
    }
    Ok(())
}

fn drop_privileges(process: &Process, single_id: bool) -> Result<(), Fail> {
    let user = process.user();
    let caps = process.capabilities().as_ref();
    let names = |s: Option<&oci_spec::runtime::Capabilities>| -> Vec<String> {
        s.map(|v| v.iter().map(|c| format!("CAP_{c}")).collect()).unwrap_or_default()
    };
    let bounding = super::caps::to_caps(&names(caps.and_then(|c| c.bounding().as_ref())));
    super::caps::apply_bounding(&bounding).map_err(|e| fail(125, e))?;
    nix::sys::prctl::set_keepcaps(true).map_err(setup_err("prctl(PR_SET_KEEPCAPS)"))?;
    if !single_id {
        let mut groups: Vec<nix::unistd::Gid> = vec![nix::unistd::Gid::from_raw(user.gid())];
        for g in user.additional_gids().as_deref().unwrap_or_default() {
            groups.push(nix::unistd::Gid::from_raw(*g));
        }
        nix::unistd::setgroups(&groups).map_err(|e| fail(125, format!("setting supplementary groups: {e}")))?;
    }
    let not_mapped = |what: &'static str, id: u32| {
        move |e: nix::Error| {
            if e == nix::Error::EINVAL {
                fail(
                    125,
                    format!(
                        "{what} {id} is not mapped in the container's user namespace{}",
                        if single_id {
                            " (only root is: this user has no subordinate ids in /etc/subuid and /etc/subgid)"
                        } else {
                            ""
                        }
                    ),
                )
            } else {
                fail(125, format!("setting {what} {id}: {e}"))
            }
        }
    };
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(not_mapped("gid", user.gid()))?;
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(not_mapped("uid", user.uid()))?;
    nix::sys::prctl::set_keepcaps(false).map_err(setup_err("prctl(PR_SET_KEEPCAPS)"))?;
    let set = |s: Option<&oci_spec::runtime::Capabilities>| super::caps::to_caps(&names(s));
    super::caps::apply_sets(
        &set(caps.and_then(|c| c.effective().as_ref())),
        &set(caps.and_then(|c| c.permitted().as_ref())),
        &set(caps.and_then(|c| c.inheritable().as_ref())),
        &set(caps.and_then(|c| c.ambient().as_ref())),
    )
    .map_err(|e| fail(125, e))
}

fn reset_signals() {
    for s in 1..32 {
        if s == libc::SIGKILL || s == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring default dispositions in a single-threaded process about to exec.
        unsafe {
            libc::signal(s, libc::SIG_DFL);
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

fn dup_onto(fd: RawFd, target: RawFd) -> Result<(), Fail> {
    if fd == target {
        return Ok(());
    }
    // SAFETY: dup2 on descriptors this process owns; the targets are 0, 1 and 2.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(fail(125, format!("setting up stdio: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

/// execve the command, searching PATH from the container's environment as execvp would.
fn exec(args: &[String], env: &[String]) -> Fail {
    let Some(arg0) = args.first() else {
        return fail(125, "no command given");
    };
    let argv: Vec<CString> = args.iter().map(|a| CString::new(a.as_str()).unwrap_or_default()).collect();
    let envp: Vec<CString> = env.iter().map(|a| CString::new(a.as_str()).unwrap_or_default()).collect();
    let candidates: Vec<String> = if arg0.contains('/') {
        vec![arg0.clone()]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{}/{arg0}", d.trim_end_matches('/'))).collect()
    };
    let mut denied = None;
    for c in &candidates {
        let Ok(p) = CString::new(c.as_str()) else {
            continue;
        };
        let e = nix::unistd::execve(&p, &argv, &envp).unwrap_err();
        match e {
            nix::Error::ENOENT | nix::Error::ENOTDIR => continue,
            nix::Error::EACCES | nix::Error::EPERM | nix::Error::EISDIR => {
                denied.get_or_insert((c.clone(), e));
            }
            nix::Error::ENOEXEC => return fail(126, format!("{c}: exec format error")),
            other => return fail(126, format!("{c}: {}", other.desc())),
        }
    }
    if let Some((c, e)) = denied {
        return fail(
            126,
            format!("{c}: {}", if e == nix::Error::EISDIR { "is a directory" } else { "permission denied" }),
        );
    }
    if arg0.contains('/') {
        fail(127, format!("executable file `{arg0}` not found: No such file or directory"))
    } else {
        fail(127, format!("executable file `{arg0}` not found in $PATH: No such file or directory"))
    }
}

/// `--init`: pid 1 forks; the child goes on to run the command and this process becomes a
/// reaper (catatonit's role): signals are forwarded to the command, every child is reaped,
/// and pid 1 exits with the command's status. Returns in the child only.
fn reaper_fork(kill_with_owner: bool) -> Result<(), Fail> {
    use nix::sys::signal::{SigSet, Signal};
    // Blocked signals are delivered to pid 1 even without a handler; read from a signalfd.
    let mut mask = SigSet::all();
    mask.remove(Signal::SIGKILL);
    mask.remove(Signal::SIGSTOP);
    mask.thread_block().map_err(setup_err("blocking signals"))?;
    // SAFETY: this process is single-threaded (a fork of the owner).
    match unsafe { nix::unistd::fork() }.map_err(setup_err("fork"))? {
        nix::unistd::ForkResult::Child => Ok(()),
        nix::unistd::ForkResult::Parent { child } => {
            if kill_with_owner {
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            }
            // The child reports its own failures and the owner sees EOF once it execs; the
            // reaper must not keep the owner's socket open. Every other descriptor goes too.
            // SAFETY: close_range on our own descriptor table; nothing here uses them again.
            unsafe {
                libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            }
            reap_forever(child.as_raw(), &mask)
        }
    }
}

fn reap_forever(child: i32, mask: &nix::sys::signal::SigSet) -> ! {
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let Ok(sfd) = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC) else {
        // SAFETY: see `finish`.
        unsafe { libc::_exit(125) }
    };
    loop {
        let sig = match sfd.read_signal() {
            Ok(Some(si)) => si.ssi_signo as i32,
            _ => continue,
        };
        if sig != libc::SIGCHLD {
            // Forwarded to the command's process group when it has one, else the command.
            // SAFETY: plain kill(2) calls.
            unsafe {
                if libc::kill(-child, sig) != 0 {
                    libc::kill(child, sig);
                }
            }
            continue;
        }
        loop {
            match waitpid(None::<nix::unistd::Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) if p.as_raw() == child => {
                    // SAFETY: see `finish`.
                    unsafe { libc::_exit(c) }
                }
                Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == child => {
                    // SAFETY: see `finish`.
                    unsafe { libc::_exit(128 + s as i32) }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// The container's init (pid 1). Returns only on failure.
fn init(sock: &OwnedFd, req: &SetupRequest, stdio: &[OwnedFd], root: &Path) -> Result<Infallible, Fail> {
    let spec = &req.spec;
    let process = spec.process().as_ref().ok_or_else(|| fail(125, "no process in the spec"))?;
    let rootfd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| fail(125, format!("opening the root filesystem {}: {e}", root.display())))?;
    do_mounts(spec, &rootfd)?;
    let mut pty_slave = None;
    if req.tty {
        let (master, slave) = make_pty(&rootfd)?;
        send(sock, b'T', &[], Some(master.as_raw_fd())).map_err(|e| fail(125, e))?;
        drop(master);
        pty_slave = Some(slave);
    }
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(setup_err("setting the hostname"))?;
    }
    if has_ns(spec, LinuxNamespaceType::Network) {
        loopback_up()?;
    }
    drop(rootfd);
    pivot(root)?;
    mask_and_protect(spec)?;
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        set_attrs("/", libc::MOUNT_ATTR_RDONLY, false).map_err(|e| fail(125, e))?;
    }
    let cwd = process.cwd().clone();
    ensure_cwd(&cwd, process.user().uid(), process.user().gid())?;
    if spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()).is_some() {
        // Seccomp filters are applied here, after no_new_privs and right before exec, once
        // nook supports them (a later issue). Refuse rather than run unfiltered.
        return Err(fail(125, "seccomp profiles are not supported yet"));
    }

    send(sock, b'R', &[], None).map_err(|e| fail(125, e))?;
    let m = recv(sock, Duration::from_secs(300), "the owner's go").map_err(|e| fail(125, e))?;
    if m.tag != b'G' {
        // The owner went away: nothing to run for.
        // SAFETY: see `finish`.
        unsafe { libc::_exit(125) }
    }

    if req.init {
        reaper_fork(req.kill_with_owner)?;
    }
    let stdio = match stdio {
        [stdin, stdout, stderr] => Some([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]),
        _ => None,
    };
    Err(become_process(process, req.single_id, req.kill_with_owner, pty_slave.as_ref(), stdio))
}

/// The last steps before the command runs, shared by init and `exec`: a new session with the
/// pty slave as controlling terminal (or the given descriptors) on 0, 1 and 2, the process's
/// user, capabilities and no_new_privs, default signals, its working directory, then exec.
/// `kill_with_owner`: our parent must already be the owner. Returns only on failure.
pub(super) fn become_process(
    process: &Process,
    single_id: bool,
    kill_with_owner: bool,
    pty_slave: Option<&OwnedFd>,
    stdio: Option<[RawFd; 3]>,
) -> Fail {
    match become_inner(process, single_id, kill_with_owner, pty_slave, stdio) {
        Ok(never) => match never {},
        Err(f) => f,
    }
}

fn become_inner(
    process: &Process,
    single_id: bool,
    kill_with_owner: bool,
    pty_slave: Option<&OwnedFd>,
    stdio: Option<[RawFd; 3]>,
) -> Result<Infallible, Fail> {
    nix::unistd::setsid().map_err(setup_err("setsid"))?;
    match (pty_slave, stdio) {
        (Some(slave), _) => {
            // SAFETY: TIOCSCTTY on a pty slave we own, from a session leader.
            if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
                return Err(fail(
                    125,
                    format!("setting the controlling terminal: {}", std::io::Error::last_os_error()),
                ));
            }
            for t in 0..3 {
                dup_onto(slave.as_raw_fd(), t)?;
            }
        }
        (None, Some([stdin, stdout, stderr])) => {
            dup_onto(stdin, 0)?;
            dup_onto(stdout, 1)?;
            dup_onto(stderr, 2)?;
        }
        (None, None) => return Err(fail(125, "the container's stdio is missing")),
    }
    drop_privileges(process, single_id)?;
    if process.no_new_privileges().unwrap_or(false) {
        nix::sys::prctl::set_no_new_privs().map_err(setup_err("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    if kill_with_owner {
        // Set last: changing credentials clears it.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(setup_err("prctl(PR_SET_PDEATHSIG)"))?;
    }
    reset_signals();
    let cwd = process.cwd();
    if let Err(e) = std::env::set_current_dir(cwd) {
        let code = if e.kind() == std::io::ErrorKind::PermissionDenied { 126 } else { 125 };
        return Err(fail(code, format!("chdir to `{}`: {e}", cwd.display())));
    }
    // Every descriptor above stderr closes on exec, the owner socket included.
    // SAFETY: close_range only changes flags on our own descriptor table.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    }
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    Err(exec(&args, &env))
}
