//! vfs: a full copy of the image's layers per container, whiteouts and opaque directories
//! applied.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::storage::unpack::{OPAQUE_XATTR, remove_tree};

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 2];
    rustix::fs::getxattr(p, OPAQUE_XATTR, &mut buf).is_ok_and(|n| &buf[..n] == b"y")
}

fn copy_meta(md: &fs::Metadata, dst: &Path, symlink: bool) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: md.atime(), tv_nsec: md.atime_nsec() },
        last_modification: rustix::fs::Timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dst, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(Into::into)
}

/// Copies `layers` (bottom first) into `dest`, applying whiteouts and opaque directories.
/// Runs as root of the user namespace so ownership is kept.
pub fn copy_layers(dest: &Path, layers: &[PathBuf]) -> io::Result<()> {
    for l in layers {
        let mut links = HashMap::new();
        apply(l, dest, &mut links)?;
    }
    Ok(())
}

fn apply(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let s = e.path();
        let d = dst.join(e.file_name());
        let md = fs::symlink_metadata(&s)?;
        if is_whiteout(&md) {
            remove_tree(&d)?;
            continue;
        }
        let existing = fs::symlink_metadata(&d).ok();
        if md.is_dir() {
            match existing {
                Some(x) if x.is_dir() && !is_opaque(&s) => {}
                Some(_) => {
                    remove_tree(&d)?;
                    fs::create_dir(&d)?;
                }
                None => fs::create_dir(&d)?,
            }
            apply(&s, &d, links)?;
            copy_meta(&md, &d, false)?;
            continue;
        }
        if existing.is_some() {
            remove_tree(&d)?;
        }
        if md.nlink() > 1 && !md.is_dir() {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &d)?;
                continue;
            }
            links.insert((md.dev(), md.ino()), d.clone());
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            copy_meta(&md, &d, true)?;
        } else if ft.is_file() {
            fs::copy(&s, &d)?;
            copy_meta(&md, &d, false)?;
        } else if ft.is_fifo() {
            nix::unistd::mkfifo(&d, nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777))
                .map_err(io::Error::from)?;
            copy_meta(&md, &d, false)?;
        }
        // Device nodes other than whiteouts cannot exist in an unprivileged store.
    }
    Ok(())
}
