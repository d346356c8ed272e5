//! The per-user store: images, layers, blobs and containers under the storage root, guarded
//! by file locks because every nook command is its own process.
//!
//! Layout of the storage root (`$XDG_DATA_HOME/nook`, mode 0700):
//! ```text
//! storage.lock            store-wide lock (shared: readers, exclusive: writers)
//! images.json             image records: names/tags -> manifest -> config -> layers
//! blobs/sha256/<hex>      content-addressed blobs: manifests, configs, and every layer's tar
//!                         as it came (compressed or not), named by the image's manifest
//! layers/<hex>/           one unpacked layer per diff_id: diff/ + layer.json
//! locks/<hex>             per-layer locks (by diff_id), held while a command fetches a layer
//!                         (empty files, kept: removing a lock file others may open is unsafe)
//! containers/<id>/        container.json, config.json (OCI runtime spec), state.json, lock,
//!                         and the driver's data (upper/ work/ merged/, or rootfs/)
//! names/<name>            name -> container id (O_EXCL creation makes names unique)
//! tmp/                    work in progress (unpacks, removals), invisible until renamed
//! ```
//! A half-written blob or half-unpacked layer lives only in `tmp/` (or as a `.tmp-*` file) and
//! is renamed into place when complete, so a kill -9 at any moment never leaves it visible as
//! complete; the next command that takes the store lock discards the leftovers.
//!
//! Layer blobs are kept (not only the unpacked layers) so that `push` and `save` send exactly
//! the bytes the manifest names — same digests as the registry's, no recompression — at the
//! cost of the compressed size again on disk. A pull streams each layer once from the network
//! into both the blob (hashed while written) and the unpacker; the blob is renamed into place
//! only after its digest and size matched and the layer unpacked to the config's diff_id.
//! An image is recorded in `images.json` last, under the exclusive store lock, after checking
//! that all its layers and blobs are there; garbage collection (rmi, prune) runs under the same
//! lock and keeps every blob that a recorded image's manifest names.

pub mod blobs;
pub mod containers;
pub mod driver;
pub mod images;
pub mod layerfs;
pub mod layers;
pub mod lock;
pub mod unpack;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::Paths;
use crate::userns::{HelperOp, IdMappings, UsernsError};

pub use containers::{ContainerRecord, ContainerState, ContainerStatus};
pub use images::ImageRecord;
pub use layers::LayerRecord;
pub use lock::{LockError, LockGuard};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Userns(#[from] UsernsError),
    #[error("{0}: image not known")]
    ImageNotFound(String),
    #[error("{0}: no such container")]
    ContainerNotFound(String),
    #[error("{0}: more than one image matches; use a longer ID or the full name")]
    AmbiguousImage(String),
    #[error("{0}: more than one container matches; use a longer ID or the full name")]
    AmbiguousContainer(String),
    #[error("the container name {name:?} is already in use by {id}; remove that container or choose another name")]
    NameInUse { name: String, id: String },
    #[error("image {image} is in use by container(s) {containers}; remove them first or use --force")]
    ImageInUse { image: String, containers: String },
    #[error("invalid digest {0:?}")]
    BadDigest(String),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("layer diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: String, actual: String },
    #[error("unpacking layer: {0}")]
    Unpack(String),
    #[error("{0}")]
    Other(String),
}

impl StorageError {
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io { what: what.into(), source }
    }
}

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    pub runroot: PathBuf,
}

const SUBDIRS: [&str; 6] = ["blobs/sha256", "layers", "containers", "names", "tmp", "images"];

impl Store {
    /// Opens the store, creating its directories the first time.
    pub fn open(paths: &Paths) -> Result<Store, StorageError> {
        let store = Store { root: paths.root.clone(), runroot: paths.runroot.clone() };
        if !store.root.join("storage.lock").exists() {
            crate::util::fs::create_dir_all_mode(&store.root, 0o700)
                .map_err(|e| StorageError::io(format!("creating the storage root {}", store.root.display()), e))?;
            for d in SUBDIRS {
                crate::util::fs::create_dir_all_mode(&store.root.join(d), 0o700)
                    .map_err(|e| StorageError::io(format!("creating {}", store.root.join(d).display()), e))?;
            }
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(store.root.join("storage.lock"))
                .map_err(|e| StorageError::io("creating storage.lock", e))?;
        }
        Ok(store)
    }

    /// The store-wide lock: shared for readers, exclusive for writers. Hold it briefly.
    pub fn lock(&self, exclusive: bool) -> Result<LockGuard, StorageError> {
        Ok(lock::lock_file(&self.root.join("storage.lock"), exclusive, lock::DEFAULT_LOCK_TIMEOUT, "the storage lock")?)
    }

    /// A fresh private working directory under `tmp/`, locked while the returned guard lives.
    pub fn tmp_dir(&self) -> Result<(PathBuf, LockGuard), StorageError> {
        let name = crate::util::id::random_id();
        let dir = self.root.join("tmp").join(&name[..32]);
        let guard =
            lock::lock_file(&dir.with_extension("lock"), true, Duration::from_secs(1), "a temporary directory")?;
        fs::create_dir(&dir).map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        Ok((dir, guard))
    }

    /// Discards work left in `tmp/` by commands that died (their lock is free).
    pub fn gc_tmp(&self, maps: &IdMappings) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "lock") {
                continue;
            }
            let lockp = p.with_extension("lock");
            if let Ok(Some(_g)) = lock::try_lock_file(&lockp) {
                if self.remove_tree(&p, maps).is_ok() {
                    let _ = fs::remove_file(&lockp);
                }
            } else if !lockp.exists() {
                let _ = self.remove_tree(&p, maps);
            }
        }
    }

    /// Removes a tree that may hold files owned by subordinate ids: directly when the caller
    /// can, otherwise as root of the user namespace.
    pub fn remove_tree(&self, path: &Path, maps: &IdMappings) -> Result<(), StorageError> {
        match unpack::remove_tree(path) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOTEMPTY)) => {
                run_helper(maps, &[OsString::from("rmtree"), path.as_os_str().to_owned()], Stdio::null(), false)
                    .map(|_| ())
            }
            Err(e) => Err(StorageError::io(format!("removing {}", path.display()), e)),
        }
    }
}

/// Runs `nook <op> …` as root of a new user namespace; returns its stdout. A failure carries
/// the helper's own one-line error.
pub fn run_helper(maps: &IdMappings, args: &[OsString], stdin: Stdio, mount_ns: bool) -> Result<Vec<u8>, StorageError> {
    let child = crate::userns::spawn_helper(maps, &HelperOp::Nook(args.to_vec()), mount_ns, |c| {
        c.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    })?;
    let out = child.wait_with_output().map_err(|e| StorageError::io("waiting for the user namespace helper", e))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let msg = String::from_utf8_lossy(&out.stderr);
        let line = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("helper failed without a message");
        Err(StorageError::Other(line.trim_start_matches("Error: ").to_string()))
    }
}
