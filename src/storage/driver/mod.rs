//! Storage drivers: how a container's root filesystem is made from its image's layers.
//!
//! - `overlay`: kernel overlayfs with `userxattr`, mounted inside the container's user and
//!   mount namespaces; the image layers are shared read-only and nothing is copied.
//! - `vfs`: a full private copy, made once when the container is created; always works.
//!
//! A driver does two things: prepares the container's directories when it is created, and
//! describes to the runtime ([`RootfsSetup`]) what to mount inside the namespaces.

mod vfs;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use vfs::copy_layers;

use super::{ContainerRecord, StorageError, Store, run_helper};
use crate::runtime::RootfsSetup;
use crate::userns::IdMappings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Overlay,
    Vfs,
}

impl DriverKind {
    pub fn name(&self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Vfs => "vfs",
        }
    }

    pub fn parse(s: &str) -> Result<DriverKind, StorageError> {
        match s {
            "overlay" | "overlay2" => Ok(DriverKind::Overlay),
            "vfs" => Ok(DriverKind::Vfs),
            other => Err(StorageError::Other(format!("unknown storage driver {other:?} (choose overlay or vfs)"))),
        }
    }
}

/// The driver in use and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriverChoice {
    pub kind: DriverKind,
    pub reason: String,
}

/// The cached result of probing kernel overlay in a user namespace.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ProbeCache {
    kernel: String,
    overlay: bool,
    detail: String,
}

fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// Picks the driver: an explicit request wins; otherwise kernel overlay when a probe (run once
/// per kernel and cached in the store) shows it works, else vfs.
pub fn choose(store: &Store, maps: &IdMappings, requested: Option<&str>) -> Result<DriverChoice, StorageError> {
    if let Some(r) = requested {
        let kind = DriverKind::parse(r)?;
        return Ok(DriverChoice { kind, reason: "requested".into() });
    }
    let cache_path = store.root.join("driver-probe.json");
    let kernel = kernel_release();
    let cached: Option<ProbeCache> = fs::read(&cache_path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .filter(|c: &ProbeCache| c.kernel == kernel);
    let probe = match cached {
        Some(c) => c,
        None => {
            let (overlay, detail) = match run_probe(store, maps) {
                Ok(()) => (true, "kernel overlay with userxattr works in a user namespace".to_string()),
                Err(e) => (false, e.to_string()),
            };
            let c = ProbeCache { kernel, overlay, detail };
            if let Ok(d) = serde_json::to_vec_pretty(&c) {
                let _ = crate::util::fs::write_atomic(&cache_path, &d);
            }
            c
        }
    };
    Ok(if probe.overlay {
        DriverChoice { kind: DriverKind::Overlay, reason: probe.detail }
    } else {
        DriverChoice {
            kind: DriverKind::Vfs,
            reason: format!("kernel overlay is not usable here ({}); vfs copies each container's files", probe.detail),
        }
    })
}

fn run_probe(store: &Store, maps: &IdMappings) -> Result<(), StorageError> {
    let (tmp, _g) = store.tmp_dir()?;
    let r = run_helper(maps, &[OsString::from("probe-overlay"), tmp.clone().into_os_string()], Stdio::null(), true);
    let _ = store.remove_tree(&tmp, maps);
    let _ = fs::remove_file(tmp.with_extension("lock"));
    r.map(|_| ())
}

/// Prepares a new container's root filesystem directories. vfs copies the layers here (in the
/// user namespace); overlay only creates empty upper, work and mount-point directories.
pub fn create_rootfs(store: &Store, maps: &IdMappings, rec: &ContainerRecord) -> Result<(), StorageError> {
    if rec.rootfs.is_some() {
        return Ok(());
    }
    let dir = store.container_dir(&rec.id);
    let mk = |p: PathBuf| fs::create_dir(&p).map_err(|e| StorageError::io(format!("creating {}", p.display()), e));
    match DriverKind::parse(&rec.driver)? {
        DriverKind::Overlay => {
            mk(dir.join("upper"))?;
            mk(dir.join("work"))?;
            mk(dir.join("merged"))?;
            if rec.layers.is_empty() {
                mk(dir.join("empty"))?;
            }
            Ok(())
        }
        DriverKind::Vfs => {
            let dest = dir.join("rootfs");
            mk(dest.clone())?;
            let mut args = vec![OsString::from("vfs-copy"), dest.into_os_string()];
            for l in &rec.layers {
                args.push(store.layer_diff(l)?.into_os_string());
            }
            run_helper(maps, &args, Stdio::null(), false).map(|_| ())
        }
    }
}

/// What the runtime mounts as the container's root filesystem.
pub fn rootfs_setup(store: &Store, rec: &ContainerRecord) -> Result<RootfsSetup, StorageError> {
    if let Some(dir) = &rec.rootfs {
        return Ok(RootfsSetup::Bind { dir: dir.clone() });
    }
    let dir = store.container_dir(&rec.id);
    Ok(match DriverKind::parse(&rec.driver)? {
        DriverKind::Overlay => {
            let mut lower: Vec<PathBuf> = Vec::new();
            for l in rec.layers.iter().rev() {
                lower.push(store.layer_diff(l)?);
            }
            if lower.is_empty() {
                lower.push(dir.join("empty"));
            }
            RootfsSetup::Overlay {
                layers_dir: store.root.join("layers"),
                lower,
                upper: dir.join("upper"),
                work: dir.join("work"),
                target: dir.join("merged"),
                volatile: rec.rm,
            }
        }
        DriverKind::Vfs => RootfsSetup::Bind { dir: dir.join("rootfs") },
    })
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
    use std::os::unix::fs::FileTypeExt;
    for dir in layers_top_first {
        let p = dir.join(rel);
        if let Ok(md) = fs::symlink_metadata(&p) {
            if md.file_type().is_char_device() {
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
            if !a.as_os_str().is_empty() {
                let mut buf = [0u8; 2];
                if rustix::fs::getxattr(dir.join(a).as_path(), super::unpack::OPAQUE_XATTR, &mut buf)
                    .is_ok_and(|n| &buf[..n] == b"y")
                {
                    return None;
                }
            }
            anc = a.parent();
        }
    }
    None
}
