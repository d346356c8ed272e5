//! Id-shifted copies of image layers for `--userns=keep-id` on kernel overlay when
//! fuse-overlayfs (which shifts ids on the fly) is not available. Rootless kernel overlay
//! cannot use idmapped mounts on host filesystems, so the owners must be right on disk: each
//! layer is copied once per mapping into `layers/<hex>/idmap-<uid>-<gid>/` and reused by every
//! later keep-id container with that mapping (removed with the layer).

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;

use crate::storage::{StorageError, Store, run_helper};
use crate::userns::{IdMappings, KeepId};

/// Where the copy of `layer` for `k` lives.
pub fn layer_copy(store: &Store, layer: &str, k: &KeepId) -> Result<PathBuf, StorageError> {
    Ok(store.layer_dir(layer)?.join(format!("idmap-{}-{}", k.uid, k.gid)))
}

/// Makes the id-shifted copies of `layers` that do not exist yet.
pub fn ensure(store: &Store, maps: &IdMappings, layers: &[String], k: &KeepId) -> Result<(), StorageError> {
    for l in layers {
        let dest = layer_copy(store, l, k)?;
        if dest.exists() {
            continue;
        }
        eprintln!(
            "nook: making an id-shifted copy of layer {} for --userns=keep-id (once; later containers reuse it; install fuse-overlayfs to avoid it)",
            &l.trim_start_matches("sha256:")[..12.min(l.len())]
        );
        let (tmp, _g) = store.tmp_dir()?;
        let out = tmp.join("copy");
        let src = store.layer_diff(l)?;
        let r = run_helper(
            maps,
            &[
                OsString::from("idmap-copy"),
                src.into_os_string(),
                out.into_os_string(),
                k.arg().into(),
                dest.into_os_string(),
            ],
            Stdio::null(),
            false,
        );
        let _ = store.remove_tree(&tmp, maps);
        let _ = fs::remove_file(tmp.with_extension("lock"));
        r?;
    }
    Ok(())
}
