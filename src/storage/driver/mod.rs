//! Storage drivers: how a container's root filesystem is made from its image's layers.
//!
//! - `overlay`: kernel overlayfs with `userxattr`, mounted inside the container's user and
//!   mount namespaces; the image layers are shared read-only and nothing is copied.
//! - `fuse-overlayfs`: the same layout served by the fuse-overlayfs daemon, started inside the
//!   container's namespaces (for kernels or storage filesystems where kernel overlay does not
//!   work, and for `--userns=keep-id`, whose id shift it does on the fly).
//! - `vfs`: a full private copy, made once when the container is created; always works.
//!
//! A driver does two things: prepares the container's directories when it is created, and
//! describes to the runtime ([`RootfsSetup`]) what to mount inside the namespaces. Which
//! driver is used is decided in [`select`].

mod conf;
pub mod fsinfo;
pub mod idmapped;
mod mountpoints;
pub mod select;
mod vfs;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use select::{DriverChoice, choose, dev_fuse_usable, find_fuse_overlayfs};
pub use vfs::copy_layers;

use super::{ContainerRecord, StorageError, Store, run_helper};
use crate::runtime::RootfsSetup;
use crate::runtime::fuse::FuseOverlay;
use crate::userns::IdMappings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriverKind {
    Overlay,
    FuseOverlayfs,
    Vfs,
}

impl DriverKind {
    pub fn name(&self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::FuseOverlayfs => "fuse-overlayfs",
            DriverKind::Vfs => "vfs",
        }
    }

    pub fn parse(s: &str) -> Result<DriverKind, StorageError> {
        match s {
            "overlay" | "overlay2" => Ok(DriverKind::Overlay),
            "fuse-overlayfs" | "fuse" => Ok(DriverKind::FuseOverlayfs),
            "vfs" => Ok(DriverKind::Vfs),
            other => Err(StorageError::Other(format!(
                "unknown storage driver {other:?} (choose overlay, fuse-overlayfs or vfs)"
            ))),
        }
    }

    /// Overlay drivers keep an upper and a work directory per container.
    pub fn is_overlay(&self) -> bool {
        matches!(self, DriverKind::Overlay | DriverKind::FuseOverlayfs)
    }
}

/// Prepares a new container's root filesystem directories. vfs copies the layers here (in the
/// user namespace); the overlay drivers only create empty upper, work and mount-point
/// directories (and, for keep-id on kernel overlay, make sure the id-shifted copies of the
/// image's layers exist).
pub fn create_rootfs(store: &Store, maps: &IdMappings, rec: &ContainerRecord) -> Result<(), StorageError> {
    if rec.rootfs.is_some() {
        return Ok(());
    }
    let dir = store.container_dir(&rec.id);
    let mk = |p: PathBuf| fs::create_dir(&p).map_err(|e| StorageError::io(format!("creating {}", p.display()), e));
    let kind = DriverKind::parse(&rec.driver)?;
    match kind {
        DriverKind::Overlay | DriverKind::FuseOverlayfs => {
            mk(dir.join("upper"))?;
            mk(dir.join("work"))?;
            mk(dir.join("merged"))?;
            if rec.layers.is_empty() {
                mk(dir.join("empty"))?;
            }
            if let (DriverKind::Overlay, Some(k)) = (kind, &rec.keep_id) {
                idmapped::ensure(store, maps, &rec.layers, k)?;
                // The merged root is the upper directory: owned by the container's root.
                if let Some(top) = rec.layers.last() {
                    let args = [
                        OsString::from("shift-root"),
                        dir.join("upper").into_os_string(),
                        store.layer_diff(top)?.into_os_string(),
                        k.arg().into(),
                    ];
                    run_helper(maps, &args, Stdio::null(), false)?;
                }
            }
            Ok(())
        }
        DriverKind::Vfs => {
            let dest = dir.join("rootfs");
            mk(dest.clone())?;
            let mut args = vec![OsString::from("vfs-copy"), dest.into_os_string()];
            if let Some(k) = &rec.keep_id {
                args.push("--keep-id".into());
                args.push(k.arg().into());
            }
            for l in &rec.layers {
                args.push(store.layer_diff(l)?.into_os_string());
            }
            run_helper(maps, &args, Stdio::null(), false).map(|_| ())
        }
    }
}

/// The lower directories of a container on an overlay driver, top first.
pub fn lower_dirs(store: &Store, rec: &ContainerRecord) -> Result<Vec<PathBuf>, StorageError> {
    let mut lower: Vec<PathBuf> = Vec::new();
    let shifted = rec.driver == "overlay" && rec.keep_id.is_some();
    for l in rec.layers.iter().rev() {
        lower.push(match (&rec.keep_id, shifted) {
            (Some(k), true) => idmapped::layer_copy(store, l, k)?,
            _ => store.layer_diff(l)?,
        });
    }
    if lower.is_empty() {
        lower.push(store.container_dir(&rec.id).join("empty"));
    } else if rec.keep_id.is_none()
        && let Some(top) = rec.layers.last()
        && let Some(m) = mountpoints::ensure(&store.layer_dir(top)?, &rec.layers, &lower)
    {
        lower.insert(0, m);
    }
    Ok(lower)
}

/// Where fuse-overlayfs writes its messages for a container.
pub fn fuse_log(store: &Store, id: &str) -> PathBuf {
    store.container_rundir(id).join("fuse-overlayfs.log")
}

/// What the runtime mounts as the container's root filesystem. `maps` are the store's (the
/// default) maps; a keep-id container on fuse-overlayfs gets the id mapping that shows the
/// image's owners unchanged in its own namespace.
pub fn rootfs_setup(store: &Store, maps: &IdMappings, rec: &ContainerRecord) -> Result<RootfsSetup, StorageError> {
    if let Some(dir) = &rec.rootfs {
        return Ok(RootfsSetup::Bind { dir: dir.clone() });
    }
    let dir = store.container_dir(&rec.id);
    Ok(match DriverKind::parse(&rec.driver)? {
        DriverKind::Overlay => RootfsSetup::Overlay {
            layers_dir: store.root.join("layers"),
            lower: lower_dirs(store, rec)?,
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("merged"),
            volatile: rec.rm,
        },
        DriverKind::FuseOverlayfs => {
            let (uidmapping, gidmapping) = match &rec.keep_id {
                Some(k) => {
                    let (u, g) = k.fuse_mappings(maps);
                    (Some(u), Some(g))
                }
                None => (None, None),
            };
            RootfsSetup::FuseOverlay(FuseOverlay {
                program: fuse_program(rec)?,
                lower: lower_dirs(store, rec)?,
                upper: dir.join("upper"),
                work: dir.join("work"),
                target: dir.join("merged"),
                uidmapping,
                gidmapping,
                volatile: rec.rm,
                log: fuse_log(store, &rec.id),
            })
        }
        DriverKind::Vfs => RootfsSetup::Bind { dir: dir.join("rootfs") },
    })
}

/// The fuse-overlayfs binary a container uses.
pub fn fuse_program(rec: &ContainerRecord) -> Result<PathBuf, StorageError> {
    match &rec.mount_program {
        Some(p) => Ok(p.clone()),
        None => find_fuse_overlayfs().ok_or_else(|| {
            StorageError::Other(format!(
                "container {} uses fuse-overlayfs, which is not installed (Debian/Ubuntu: apt install fuse-overlayfs)",
                rec.short_id()
            ))
        }),
    }
}

/// The directory that becomes the container's root once mounted (for the spec's `root.path`).
pub fn rootfs_dir_hint(store: &Store, rec: &ContainerRecord) -> PathBuf {
    match (&rec.rootfs, rec.driver.as_str()) {
        (Some(d), _) => d.clone(),
        (None, "vfs") => store.container_dir(&rec.id).join("rootfs"),
        (None, _) => store.container_dir(&rec.id).join("merged"),
    }
}

/// Where a container's files are readable from the host (for `--rootfs` and vfs), if anywhere
/// without mounting.
pub fn host_rootfs_dir(store: &Store, rec: &ContainerRecord) -> Option<PathBuf> {
    if let Some(d) = &rec.rootfs {
        return Some(d.clone());
    }
    (rec.driver == "vfs").then(|| store.container_dir(&rec.id).join("rootfs"))
}

/// The layer directories of an image, top first (for reading files such as /etc/passwd
/// without mounting).
pub fn layer_dirs_top_first(store: &Store, layers: &[String]) -> Result<Vec<PathBuf>, StorageError> {
    layers.iter().rev().map(|l| store.layer_diff(l)).collect()
}

/// Reads a file as the merged image would show it, from the layer directories (top first),
/// honouring whiteouts and opaque directories. Only for small files (`/etc/passwd`).
pub fn read_merged_file(layers_top_first: &[PathBuf], rel: &Path) -> Option<Vec<u8>> {
    for dir in layers_top_first {
        let p = dir.join(rel);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if crate::storage::layerfs::is_whiteout_dev(&md) {
                return None; // whited out
            }
            if md.is_file() {
                return fs::read(&p).ok();
            }
            return None;
        }
        // An opaque parent hides everything below it.
        let mut anc = rel.parent();
        while let Some(a) = anc {
            if !a.as_os_str().is_empty() && crate::storage::layerfs::is_opaque_dir(&dir.join(a)) {
                return None;
            }
            anc = a.parent();
        }
    }
    None
}
