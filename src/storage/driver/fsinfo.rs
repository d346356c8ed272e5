//! What filesystem the storage root is on (statfs), and what that means for storage drivers.
//!
//! Network and cluster filesystems (NFS, Lustre, GPFS, …) refuse kernel overlay as an upper
//! layer and usually refuse `chown` to subordinate ids, which every layer unpack needs; an
//! overlayfs or FUSE storage root (a nested container) refuses kernel overlay too.

use std::path::Path;

/// A filesystem type as far as storage is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsClass {
    /// A local disk or memory filesystem (ext4, xfs, btrfs, tmpfs, …): everything works.
    Local,
    /// A network or cluster filesystem: overlay and ownership of subordinate ids break.
    Network,
    /// overlayfs (the storage root is inside a container): no kernel overlay on top.
    Overlay,
    /// A FUSE filesystem: no kernel overlay on top; ownership depends on the daemon.
    Fuse,
}

/// Known `f_type` magic numbers (linux/magic.h and the cluster filesystems' own).
const KNOWN: &[(i64, &str, FsClass)] = &[
    (0xEF53, "ext4", FsClass::Local),
    (0x5846_5342, "xfs", FsClass::Local),
    (0x9123_683E, "btrfs", FsClass::Local),
    (0x0102_1994, "tmpfs", FsClass::Local),
    (0x2FC1_2FC1, "zfs", FsClass::Local),
    (0xF2F5_2010, "f2fs", FsClass::Local),
    (0x6969, "nfs", FsClass::Network),
    (0x0BD0_0BD0, "lustre", FsClass::Network),
    (0x4750_4653, "gpfs", FsClass::Network),
    (0xFF53_4D42, "cifs", FsClass::Network),
    (0xFE53_4D42, "smb2", FsClass::Network),
    (0x1983_0326, "beegfs", FsClass::Network),
    (0xAAD7_AAEA, "panfs", FsClass::Network),
    (0x00C3_6400, "cephfs", FsClass::Network),
    (0x5346_414F, "afs", FsClass::Network),
    (0x6B41_4653, "afs", FsClass::Network),
    (0x0110_1995, "glusterfs", FsClass::Network),
    (0x794C_7630, "overlayfs", FsClass::Overlay),
    (0x6573_5546, "fuse", FsClass::Fuse),
];

/// The storage root's filesystem: its name and class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub name: String,
    pub class: FsClass,
}

/// Classifies an `f_type` value.
pub fn classify(f_type: i64) -> FsInfo {
    match KNOWN.iter().find(|(m, _, _)| *m == f_type) {
        Some((_, name, class)) => FsInfo { name: (*name).to_string(), class: *class },
        None => FsInfo { name: format!("0x{f_type:x}"), class: FsClass::Local },
    }
}

/// statfs of `path` (or its nearest existing ancestor), classified.
pub fn detect(path: &Path) -> Option<FsInfo> {
    let mut p = Some(path);
    while let Some(q) = p {
        if let Ok(st) = rustix::fs::statfs(q) {
            #[allow(clippy::unnecessary_cast)]
            return Some(classify(st.f_type as i64));
        }
        p = q.parent();
    }
    None
}

/// A one-line hint for a storage root on `fs`, if it needs one.
pub fn hint(fs: &FsInfo, root: &Path) -> Option<String> {
    match fs.class {
        FsClass::Local => None,
        FsClass::Network => Some(format!(
            "the storage root {} is on {}, a network filesystem that breaks overlay mounts, file ownership by subordinate ids and file locks; put it on a node-local disk with --root or NOOK_ROOT (for example /var/tmp/$USER/nook or a local scratch directory)",
            root.display(),
            fs.name
        )),
        FsClass::Overlay => Some(format!(
            "the storage root {} is on overlayfs (nook inside a container?), which kernel overlay cannot use as an upper layer; a storage root on a local filesystem (--root) is faster",
            root.display()
        )),
        FsClass::Fuse => Some(format!(
            "the storage root {} is on a FUSE filesystem, which kernel overlay cannot use as an upper layer; a storage root on a local filesystem (--root) is faster",
            root.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_known_filesystems() {
        assert_eq!(classify(0x6969).class, FsClass::Network);
        assert_eq!(classify(0x0BD0_0BD0).name, "lustre");
        assert_eq!(classify(0x4750_4653).name, "gpfs");
        assert_eq!(classify(0x794C_7630).class, FsClass::Overlay);
        assert_eq!(classify(0xEF53).class, FsClass::Local);
        assert_eq!(classify(0x1234).class, FsClass::Local);
        let h = hint(&classify(0x6969), Path::new("/home/u/.local/share/nook")).unwrap();
        assert!(h.contains("nfs") && h.contains("--root"), "{h}");
        assert!(hint(&classify(0xEF53), Path::new("/x")).is_none());
    }

    #[test]
    fn detects_the_filesystem_of_a_missing_path_from_its_parent() {
        let d = tempfile::tempdir().unwrap();
        assert!(detect(&d.path().join("not/yet")).is_some());
    }
}
