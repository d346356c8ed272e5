//! Mount helpers for the container init: OCI mount options, safe mount targets inside the
//! root filesystem, and attribute changes with `mount_setattr`.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;
use rustix::fs::{Mode, OFlags, ResolveFlags};

/// OCI/fstab mount options, split into flags, attributes and filesystem data.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub bind: bool,
    pub recursive: bool,
    /// `MOUNT_ATTR_*` bits to set on a bind mount after it is made.
    pub attrs: u64,
    pub data: Vec<String>,
}

pub fn parse_options(opts: &[String]) -> MountOptions {
    let mut m = MountOptions { flags: MsFlags::empty(), bind: false, recursive: false, attrs: 0, data: Vec::new() };
    for o in opts {
        match o.as_str() {
            "ro" => {
                m.flags |= MsFlags::MS_RDONLY;
                m.attrs |= libc::MOUNT_ATTR_RDONLY;
            }
            "rw" => {
                m.flags.remove(MsFlags::MS_RDONLY);
                m.attrs &= !libc::MOUNT_ATTR_RDONLY;
            }
            "nosuid" => {
                m.flags |= MsFlags::MS_NOSUID;
                m.attrs |= libc::MOUNT_ATTR_NOSUID;
            }
            "nodev" => {
                m.flags |= MsFlags::MS_NODEV;
                m.attrs |= libc::MOUNT_ATTR_NODEV;
            }
            "noexec" => {
                m.flags |= MsFlags::MS_NOEXEC;
                m.attrs |= libc::MOUNT_ATTR_NOEXEC;
            }
            "suid" | "dev" | "exec" | "defaults" | "tmpcopyup" | "z" | "Z" => {}
            "strictatime" => m.flags |= MsFlags::MS_STRICTATIME,
            "noatime" => m.flags |= MsFlags::MS_NOATIME,
            "relatime" => m.flags |= MsFlags::MS_RELATIME,
            "bind" => m.bind = true,
            "rbind" => {
                m.bind = true;
                m.recursive = true;
            }
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable" | "runbindable" => {}
            other => m.data.push(other.to_string()),
        }
    }
    m
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens `dest` inside `root` as a mount target, creating missing directories (and, when
/// `dir` is false, an empty file for the last component). Symlinks in the image are resolved
/// as if `root` were `/`, so a hostile image cannot send a mount outside its root.
pub fn mount_target(root: &OwnedFd, dest: &str, dir: bool) -> Result<OwnedFd, String> {
    let comps: Vec<&str> = dest.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    let mut cur = rustix::fs::openat(root, c".", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening the root: {e}"))?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let prefix = comps[..=i].join("/");
        let want_dir = !last || dir;
        let flags = if want_dir { OFlags::PATH | OFlags::DIRECTORY } else { OFlags::PATH };
        match rustix::fs::openat2(root, prefix.as_str(), flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT) {
            Ok(fd) => cur = fd,
            Err(rustix::io::Errno::NOENT) => {
                let name = CString::new(*c).map_err(|_| format!("bad path {dest:?}"))?;
                if want_dir {
                    match rustix::fs::mkdirat(&cur, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(format!("creating {prefix} in the container: {e}")),
                    }
                } else {
                    match rustix::fs::openat(
                        &cur,
                        name.as_c_str(),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    ) {
                        Ok(_) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(format!("creating {prefix} in the container: {e}")),
                    }
                }
                cur = rustix::fs::openat2(root, prefix.as_str(), flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)
                    .map_err(|e| format!("opening {prefix} in the container: {e}"))?;
            }
            Err(rustix::io::Errno::NOTDIR) if !want_dir => {
                return Err(format!("cannot mount on {dest}: a parent is not a directory"));
            }
            Err(e) => return Err(format!("opening {prefix} in the container: {e}")),
        }
    }
    Ok(cur)
}

/// `/proc/self/fd/N`: a path the kernel resolves to exactly the opened object.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Sets `attrs` (MOUNT_ATTR_*) on the mount at `path`, recursively if asked. Locked flags of
/// the underlying mount are kept by the kernel.
pub fn set_attrs(path: &str, attrs: u64, recursive: bool) -> Result<(), String> {
    if attrs == 0 {
        return Ok(());
    }
    let c = CString::new(path).map_err(|e| e.to_string())?;
    let attr = libc::mount_attr { attr_set: attrs, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr(2) with a NUL-terminated path, a valid pointer to a mount_attr of
    // the size we pass, and no other memory shared with the kernel.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags as libc::c_uint,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(format!("setting mount attributes on {path}: {e}"));
    }
    // Kernels before 5.12: remount, keeping the flags the kernel locked.
    let st = nix::sys::statvfs::statvfs(Path::new(path)).map_err(|e| format!("statvfs {path}: {e}"))?;
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    for (ff, mf) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if f.contains(ff) {
            flags |= mf;
        }
    }
    for (a, mf) in [
        (libc::MOUNT_ATTR_RDONLY, MsFlags::MS_RDONLY),
        (libc::MOUNT_ATTR_NOSUID, MsFlags::MS_NOSUID),
        (libc::MOUNT_ATTR_NODEV, MsFlags::MS_NODEV),
        (libc::MOUNT_ATTR_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if attrs & a != 0 {
            flags |= mf;
        }
    }
    nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .map_err(|e| format!("remounting {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse_options(&["rbind".into(), "ro".into(), "nosuid".into(), "mode=755".into(), "rprivate".into()]);
        assert!(o.bind && o.recursive);
        assert!(o.flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(o.attrs, libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
    }

    #[test]
    fn mount_targets_stay_in_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let rfd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for dest in ["/escape/evil", "/up/evil"] {
            let fd = mount_target(&rfd, dest, false).unwrap();
            let real = std::fs::read_link(fd_path(&fd)).unwrap();
            assert!(real.starts_with(&root), "{dest} resolved to {}", real.display());
        }
        assert!(root.join("evil").exists());
        let d = mount_target(&rfd, "/a/b/c", true).unwrap();
        assert_eq!(std::fs::read_link(fd_path(&d)).unwrap(), root.join("a/b/c"));
    }
}
