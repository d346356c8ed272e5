//! A small extra lower layer per image with the mount points the runtime always mounts over
//! (`/proc`, `/dev`, `/sys`, `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`) where the
//! image lacks them. Without it, every container start creates them in its upper directory:
//! a copy-up of `/etc` and a few new inodes per start, and more files to delete afterwards.
//!
//! Made once per layer chain, by the caller (the entries belong to the container's root, which
//! is the caller), next to the image's top layer: `layers/<top>/mnt-<chain>/`. Only entries
//! the image does not have, or has as the same kind (an empty file over a file, a directory
//! over a directory), are added — the runtime mounts over all of them, so the container sees
//! the same thing either way; `export`, `diff` and `commit` read the image layers and the
//! container's upper directory only, never this layer.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::storage::layerfs::{is_opaque_dir, is_whiteout_dev};

const DIRS: [&str; 3] = ["proc", "dev", "sys"];
const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// What the image has at a path (the topmost layer that says anything decides).
#[derive(Debug)]
enum Entry {
    Missing,
    Dir(fs::Metadata),
    File,
    Other,
}

/// Looks `rel` (one or two components) up through `layers` (top first), honouring whiteouts
/// (0/0 character devices) and opaque directories.
fn lookup(layers: &[PathBuf], rel: &str) -> Entry {
    let parent = rel.split_once('/').map(|(p, _)| p);
    for l in layers {
        if let Some(p) = parent {
            match fs::symlink_metadata(l.join(p)) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Entry::Missing, // the parent is not a directory from here down
                Err(_) => continue,
            }
        }
        match fs::symlink_metadata(l.join(rel)) {
            Ok(md) if is_whiteout_dev(&md) => return Entry::Missing,
            Ok(md) if md.is_dir() => return Entry::Dir(md),
            Ok(md) if md.is_file() => return Entry::File,
            Ok(_) => return Entry::Other,
            Err(_) => {}
        }
        if let Some(p) = parent
            && is_opaque_dir(&l.join(p))
        {
            return Entry::Missing;
        }
    }
    Entry::Missing
}

/// The layer's directory name for a chain of layers (bottom first, as images list them).
fn dir_name(chain: &[String]) -> String {
    let mut h = Sha256::new();
    for l in chain {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    let hex: String = h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("mnt-{hex}")
}

/// The mount-point layer for `chain` (bottom first) whose diff directories are `lower` (top
/// first), made if needed; `None` when the image has every mount point already or the layer
/// cannot be made (the runtime then creates what is missing, as without it).
pub fn ensure(top_layer_dir: &Path, chain: &[String], lower: &[PathBuf]) -> Option<PathBuf> {
    let dest = top_layer_dir.join(dir_name(chain));
    if dest.is_dir() {
        return Some(dest);
    }
    if fs::symlink_metadata(top_layer_dir.join(format!("{}.none", dir_name(chain)))).is_ok() {
        return None;
    }
    let uid = rustix::process::getuid().as_raw();
    let dirs: Vec<&str> = DIRS.iter().copied().filter(|d| matches!(lookup(lower, d), Entry::Missing)).collect();
    // /etc: the layer's /etc hides nothing (overlay merges directories) but its attributes
    // win, so it must look like the image's: same mode and times, and the container root's.
    let etc = lookup(lower, "etc");
    let etc_ok = match &etc {
        Entry::Missing => true,
        Entry::Dir(md) => md.uid() == uid,
        _ => false,
    };
    let files: Vec<&str> = if etc_ok {
        ETC_FILES.iter().copied().filter(|f| matches!(lookup(lower, &format!("etc/{f}")), Entry::Missing)).collect()
    } else {
        Vec::new()
    };
    if dirs.is_empty() && files.is_empty() {
        // Remember the answer: nothing to add for this chain.
        let _ = fs::write(top_layer_dir.join(format!("{}.none", dir_name(chain))), b"");
        return None;
    }
    let tmp = top_layer_dir.join(format!("{}.tmp-{}", dir_name(chain), std::process::id()));
    let made = build(
        &tmp,
        &dirs,
        &files,
        match &etc {
            Entry::Dir(md) => Some(md),
            _ => None,
        },
    );
    match made.and_then(|()| fs::rename(&tmp, &dest)) {
        Ok(()) => Some(dest),
        Err(_) => {
            let _ = fs::remove_dir_all(&tmp);
            // Another process may have made it first.
            dest.is_dir().then_some(dest)
        }
    }
}

fn build(tmp: &Path, dirs: &[&str], files: &[&str], etc: Option<&fs::Metadata>) -> io::Result<()> {
    let _ = fs::remove_dir_all(tmp);
    fs::DirBuilder::new().mode(0o755).create(tmp)?;
    for d in dirs {
        fs::DirBuilder::new().mode(0o755).create(tmp.join(d))?;
        fs::set_permissions(tmp.join(d), fs::Permissions::from_mode(0o755))?;
    }
    if !files.is_empty() {
        let etc_dir = tmp.join("etc");
        fs::DirBuilder::new().mode(0o755).create(&etc_dir)?;
        for f in files {
            fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(etc_dir.join(f))?;
            fs::set_permissions(etc_dir.join(f), fs::Permissions::from_mode(0o644))?;
        }
        if let Some(md) = etc {
            fs::set_permissions(&etc_dir, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            let t = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec { tv_sec: md.atime(), tv_nsec: md.atime_nsec() },
                last_modification: rustix::fs::Timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() },
            };
            rustix::fs::utimensat(rustix::fs::CWD, &etc_dir, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        } else {
            fs::set_permissions(&etc_dir, fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_only_what_the_image_lacks() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        let base = t.path().join("base");
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::create_dir_all(base.join("proc")).unwrap();
        fs::write(base.join("etc/hosts"), b"x").unwrap();
        fs::create_dir_all(&top).unwrap();
        let lower = vec![top.clone(), base.clone()];
        let chain = vec!["a".to_string(), "b".to_string()];
        let m = ensure(&top, &chain, &lower).expect("a mount point layer");
        assert!(m.join("dev").is_dir() && m.join("sys").is_dir());
        assert!(!m.join("proc").exists(), "the image has /proc");
        assert!(!m.join("etc/hosts").exists(), "the image has /etc/hosts");
        assert!(m.join("etc/hostname").is_file() && m.join("etc/resolv.conf").is_file());
        // Made once: the second call finds it.
        assert_eq!(ensure(&top, &chain, &lower), Some(m));
    }

    #[test]
    fn a_whiteout_or_an_opaque_directory_hides_lower_entries() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        let base = t.path().join("base");
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::write(base.join("etc/hosts"), b"x").unwrap();
        fs::create_dir_all(base.join("dev")).unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        let lower = vec![top.clone(), base.clone()];
        assert!(matches!(lookup(&lower, "etc/hosts"), Entry::File));
        assert!(matches!(lookup(&lower, "dev"), Entry::Dir(_)));
        // A file where the image has a directory is not something this layer touches.
        fs::write(top.join("sys"), b"").unwrap();
        assert!(matches!(lookup(&lower, "sys"), Entry::File));
        // An opaque /etc in the top layer: the xattr the store writes, or (where the test's
        // filesystem has no user xattrs) the marker form, which layers may carry too.
        let etc = top.join("etc");
        let opaque = crate::storage::unpack::OPAQUE_XATTR;
        if rustix::fs::lsetxattr(&etc, opaque, b"y", rustix::fs::XattrFlags::empty()).is_err() {
            fs::write(etc.join(crate::storage::unpack::OPAQUE_MARKER), b"").unwrap();
        }
        assert!(matches!(lookup(&lower, "etc/hosts"), Entry::Missing));
    }
}
