//! Choosing the storage driver, in this order:
//!
//! 1. `--storage-driver`, then `NOOK_STORAGE_DRIVER`;
//! 2. `$XDG_CONFIG_HOME/nook/storage.conf` (podman's keys: `driver`, `mount_program`);
//! 3. automatically: kernel overlay if a probe shows it works on this kernel and storage root,
//!    else fuse-overlayfs if it is installed, /dev/fuse is usable and a probe mount works, else
//!    vfs. Probe results are cached in `driver-probe.json` (per kernel), so the run path only
//!    reads one small file. A fallback is explained once (per boot) on stderr.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::fsinfo::{self, FsInfo};
use super::{DriverKind, conf};
use crate::config::Paths;
use crate::storage::{StorageError, Store, run_helper};
use crate::userns::IdMappings;

/// The driver in use and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriverChoice {
    pub kind: DriverKind,
    pub reason: String,
    /// The fuse-overlayfs binary (for [`DriverKind::FuseOverlayfs`]).
    pub program: Option<PathBuf>,
    /// Asked for (flag, environment or storage.conf) rather than chosen automatically.
    pub explicit: bool,
}

/// The cached result of probing the drivers in a user namespace on this store.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ProbeCache {
    kernel: String,
    overlay: bool,
    detail: String,
    /// Whether the storage root's filesystem needs a word of advice.
    #[serde(default)]
    fs_hint: Option<String>,
    /// fuse-overlayfs, probed only when kernel overlay does not work.
    #[serde(default)]
    fuse: Option<FuseProbe>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct FuseProbe {
    program: PathBuf,
    ok: bool,
    detail: String,
}

fn kernel_release() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

/// The fuse-overlayfs binary on `PATH` (or the usual directories).
pub fn find_fuse_overlayfs() -> Option<PathBuf> {
    crate::userns::find_in_path("fuse-overlayfs")
}

/// Whether /dev/fuse can be opened for reading and writing.
pub fn dev_fuse_usable() -> bool {
    rustix::fs::access("/dev/fuse", rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK).is_ok()
}

/// How the driver was asked for, if it was.
fn requested_source(value: &str) -> &'static str {
    if std::env::var("NOOK_STORAGE_DRIVER").is_ok_and(|v| v == value) {
        "NOOK_STORAGE_DRIVER"
    } else {
        "--storage-driver"
    }
}

/// Picks the driver. `requested` is `--storage-driver`/`NOOK_STORAGE_DRIVER`; `notify` prints
/// the once-per-boot explanation of an automatic fallback.
pub fn choose(
    store: &Store,
    maps: &IdMappings,
    requested: Option<&str>,
    paths: &Paths,
    notify: bool,
) -> Result<DriverChoice, StorageError> {
    if let Some(r) = requested {
        let kind = DriverKind::parse(r)?;
        let program = program_for(kind, None)?;
        return Ok(DriverChoice {
            kind,
            reason: format!("requested ({})", requested_source(r)),
            program,
            explicit: true,
        });
    }
    if let Some(c) = conf::read(&paths.config).map_err(StorageError::Other)? {
        let kind =
            DriverKind::parse(&c.driver).map_err(|e| StorageError::Other(format!("{}: {e}", c.file.display())))?;
        let program = program_for(kind, c.program.as_deref())?;
        return Ok(DriverChoice {
            kind,
            reason: format!("configured in {}", c.file.display()),
            program,
            explicit: true,
        });
    }
    let cache_path = store.root.join("driver-probe.json");
    let kernel = kernel_release();
    let cached: Option<ProbeCache> = fs::read(&cache_path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .filter(|c: &ProbeCache| c.kernel == kernel);
    // The common case: one small file read, nothing else.
    let fresh = cached.is_none();
    let mut probe = match cached {
        Some(c) => c,
        None => {
            let fs = fsinfo::detect(&store.root);
            let (overlay, detail) = match run_probe(store, maps, "probe-overlay", &[]) {
                Ok(()) => (true, "kernel overlay with userxattr works in a user namespace".to_string()),
                Err(e) => (false, e.to_string()),
            };
            let c = ProbeCache {
                kernel,
                overlay,
                detail,
                fs_hint: fs.as_ref().and_then(|f| fsinfo::hint(f, &store.root)),
                fuse: None,
            };
            save(&cache_path, &c);
            c
        }
    };
    if probe.overlay {
        if let (true, true, Some(h)) = (fresh, notify, &probe.fs_hint) {
            paths.notice_once("storage-filesystem", h);
        }
        return Ok(DriverChoice { kind: DriverKind::Overlay, reason: probe.detail, program: None, explicit: false });
    }
    // Kernel overlay does not work here: fuse-overlayfs, else vfs.
    let program = find_fuse_overlayfs();
    let fuse_state: Result<PathBuf, String> = match &program {
        None => Err("fuse-overlayfs is not installed (Debian/Ubuntu: apt install fuse-overlayfs)".into()),
        Some(_) if !dev_fuse_usable() => Err(
            "/dev/fuse cannot be opened (ask your administrator to make it 0666, as udev does on most distributions)"
                .into(),
        ),
        Some(p) => match &probe.fuse {
            Some(f) if f.program == *p => {
                if f.ok {
                    Ok(p.clone())
                } else {
                    Err(f.detail.clone())
                }
            }
            _ => {
                let r = run_probe(store, maps, "probe-fuse", &[p.clone().into_os_string()]);
                let f = FuseProbe {
                    program: p.clone(),
                    ok: r.is_ok(),
                    detail: r
                        .as_ref()
                        .err()
                        .map(|e| format!("fuse-overlayfs does not work here: {e}"))
                        .unwrap_or_default(),
                };
                probe.fuse = Some(f.clone());
                save(&cache_path, &probe);
                if f.ok { Ok(p.clone()) } else { Err(f.detail) }
            }
        },
    };
    let why = format!("kernel overlay cannot be used ({})", probe.detail);
    let choice = match fuse_state {
        Ok(p) => DriverChoice {
            kind: DriverKind::FuseOverlayfs,
            reason: format!("{why}; using fuse-overlayfs ({})", p.display()),
            program: Some(p),
            explicit: false,
        },
        Err(e) => DriverChoice {
            kind: DriverKind::Vfs,
            reason: format!("{why}; {e}; using vfs, which copies the image for each container"),
            program: None,
            explicit: false,
        },
    };
    if notify {
        let mut msg = format!("storage driver {}: {}", choice.kind.name(), choice.reason);
        if let Some(h) = &probe.fs_hint {
            msg.push_str(". Note: ");
            msg.push_str(h);
        }
        paths.notice_once("storage-driver", &msg);
    }
    Ok(choice)
}

/// The fuse-overlayfs binary for an explicitly chosen driver.
fn program_for(kind: DriverKind, configured: Option<&Path>) -> Result<Option<PathBuf>, StorageError> {
    if kind != DriverKind::FuseOverlayfs {
        return Ok(None);
    }
    match configured {
        Some(p) => Ok(Some(p.to_path_buf())),
        None => find_fuse_overlayfs().map(Some).ok_or_else(|| {
            StorageError::Other(
                "the fuse-overlayfs storage driver needs the fuse-overlayfs program (Debian/Ubuntu: apt install fuse-overlayfs)"
                    .into(),
            )
        }),
    }
}

fn save(path: &Path, c: &ProbeCache) {
    if let Ok(d) = serde_json::to_vec_pretty(c) {
        let _ = crate::util::fs::write_atomic(path, &d);
    }
}

/// Runs a probe helper (`probe-overlay DIR` or `probe-fuse DIR PROGRAM`) in a user and mount
/// namespace, in a scratch directory of the store (the filesystem that matters).
fn run_probe(store: &Store, maps: &IdMappings, op: &str, extra: &[OsString]) -> Result<(), StorageError> {
    let (tmp, _g) = store.tmp_dir()?;
    let mut args = vec![OsString::from(op), tmp.clone().into_os_string()];
    args.extend_from_slice(extra);
    let r = run_helper(maps, &args, Stdio::null(), true);
    let _ = store.remove_tree(&tmp, maps);
    let _ = fs::remove_file(tmp.with_extension("lock"));
    r.map(|_| ())
}

/// The storage root's filesystem (for `nook info`).
pub fn storage_filesystem(store: &Store) -> Option<FsInfo> {
    fsinfo::detect(&store.root)
}
