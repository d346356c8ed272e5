//! Unpacked layers, one per diff_id, shared by every image that contains them.
//!
//! A layer is unpacked inside the user namespace (owners map into the subordinate range) into
//! a private directory under `tmp/`, checked against the expected diff_id, and renamed to
//! `layers/<hex>` under the store lock. `layers/<hex>` existing means the layer is complete.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};

use chrono::{DateTime, Utc};

use super::blobs::digest_hex;
use super::unpack::UnpackStats;
use super::{LockGuard, StorageError, Store};
use crate::userns::{HelperOp, IdMappings};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    pub diff_id: String,
    /// Bytes of file content in the layer.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    pub created: DateTime<Utc>,
}

/// Where a layer's tar stream comes from.
pub enum UnpackInput {
    /// The helper reads this file itself.
    File(fs::File),
    /// The helper reads nook's own stdin (`nook import -`).
    Inherit,
    /// The caller writes the stream into [`PendingUnpack::stdin`].
    Pipe,
}

/// An unpack running in a helper process.
pub struct PendingUnpack {
    child: Child,
    tmp: PathBuf,
    _guard: LockGuard,
}

impl PendingUnpack {
    /// The helper's stdin, for [`UnpackInput::Pipe`]; close it (drop) at the end of the stream.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Stops the helper and discards what it unpacked (a download failed or did not verify).
    pub fn abort(self, store: &Store, maps: &IdMappings) {
        let PendingUnpack { mut child, tmp, _guard } = self;
        drop(child.stdin.take());
        let _ = child.kill();
        let _ = child.wait();
        let _ = store.remove_tree(&tmp, maps);
        let _ = fs::remove_file(tmp.with_extension("lock"));
    }

    /// Waits for the helper, checks the diff_id, and moves the layer into the store.
    pub fn finish(self, store: &Store, maps: &IdMappings, expected: Option<&str>) -> Result<LayerRecord, StorageError> {
        let PendingUnpack { child, tmp, _guard } = self;
        let out = child.wait_with_output().map_err(|e| StorageError::io("waiting for the unpack helper", e));
        let discard = |e: StorageError| {
            let _ = store.remove_tree(&tmp, maps);
            let _ = fs::remove_file(tmp.with_extension("lock"));
            e
        };
        let out = out.map_err(discard)?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            let line = msg.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("the unpack helper failed");
            return Err(discard(StorageError::Unpack(line.trim_start_matches("Error: ").to_string())));
        }
        let stats: UnpackStats = serde_json::from_slice(&out.stdout)
            .map_err(|e| discard(StorageError::Unpack(format!("bad report from the unpack helper: {e}"))))?;
        if let Some(exp) = expected
            && exp != stats.diff_id
        {
            return Err(discard(StorageError::DiffIdMismatch { expected: exp.to_string(), actual: stats.diff_id }));
        }
        let rec = LayerRecord {
            diff_id: stats.diff_id.clone(),
            size: stats.content_size,
            tar_size: stats.tar_size,
            created: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&rec).map_err(|e| StorageError::Other(e.to_string()))?;
        fs::write(tmp.join("layer.json"), json).map_err(|e| discard(StorageError::io("writing layer.json", e)))?;
        if stats.squashed_owners > 0 {
            eprintln!(
                "nook: {} file(s) in layer {} have owners outside the mapped id range; they belong to root in the container",
                stats.squashed_owners,
                short(&rec.diff_id)
            );
        }
        if stats.skipped_devices > 0 {
            eprintln!(
                "nook: {} device node(s) in layer {} were skipped: an unprivileged user cannot create them",
                stats.skipped_devices,
                short(&rec.diff_id)
            );
        }
        let dest = store.layer_dir(&rec.diff_id)?;
        {
            let _lock = store.lock(true).map_err(discard)?;
            if !dest.exists() {
                fs::rename(&tmp, &dest)
                    .map_err(|e| discard(StorageError::io(format!("moving layer into {}", dest.display()), e)))?;
                let _ = fs::remove_file(tmp.with_extension("lock"));
                return Ok(rec);
            }
        }
        // Another command stored the same layer meanwhile: keep theirs.
        let _ = discard(StorageError::Other(String::new()));
        store.layer_record(&rec.diff_id)
    }
}

fn short(d: &str) -> &str {
    let h = d.strip_prefix("sha256:").unwrap_or(d);
    &h[..h.len().min(12)]
}

impl Store {
    /// `layers/<hex>` for a diff_id.
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, StorageError> {
        let h = digest_hex(diff_id).ok_or_else(|| StorageError::BadDigest(diff_id.to_string()))?;
        Ok(self.root.join("layers").join(h))
    }

    /// The directory holding the layer's files.
    pub fn layer_diff(&self, diff_id: &str) -> Result<PathBuf, StorageError> {
        Ok(self.layer_dir(diff_id)?.join("diff"))
    }

    pub fn has_layer(&self, diff_id: &str) -> bool {
        self.layer_dir(diff_id).map(|d| d.exists()).unwrap_or(false)
    }

    pub fn layer_record(&self, diff_id: &str) -> Result<LayerRecord, StorageError> {
        let p = self.layer_dir(diff_id)?.join("layer.json");
        let data = fs::read(&p).map_err(|e| StorageError::io(format!("reading {}", p.display()), e))?;
        serde_json::from_slice(&data).map_err(|e| StorageError::Corrupt(format!("{}: {e}", p.display())))
    }

    /// Starts unpacking a layer tar stream (plain, gzip or zstd) in the user namespace.
    pub fn start_unpack(&self, maps: &IdMappings, input: UnpackInput) -> Result<PendingUnpack, StorageError> {
        let (tmp, guard) = self.tmp_dir()?;
        let diff = tmp.join("diff");
        fs::create_dir(&diff).map_err(|e| StorageError::io(format!("creating {}", diff.display()), e))?;
        let mut args = vec![OsString::from("unpack"), diff.into_os_string()];
        if maps.is_single() {
            args.push("--squash-owners".into());
        }
        let stdin = match input {
            UnpackInput::File(f) => Stdio::from(f),
            UnpackInput::Inherit => Stdio::inherit(),
            UnpackInput::Pipe => Stdio::piped(),
        };
        // The helper inherits the temporary directory's lock, so that a command that died
        // (kill -9) cannot have its directory cleaned up while the helper still writes into it,
        // and it dies with its parent (see `helpers`).
        let lock_fd = guard.raw_fd();
        let child = crate::userns::spawn_helper(maps, &HelperOp::Nook(args), false, |c| {
            use std::os::unix::process::CommandExt;
            c.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
            c.env("_NOOK_PARENT_PID", std::process::id().to_string());
            // SAFETY: runs between fork and exec; fcntl is async-signal-safe and the closure
            // only uses an integer captured by value.
            unsafe {
                c.pre_exec(move || {
                    if libc::fcntl(lock_fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        match child {
            Ok(child) => Ok(PendingUnpack { child, tmp, _guard: guard }),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                let _ = fs::remove_file(tmp.with_extension("lock"));
                Err(e.into())
            }
        }
    }

    /// Diff_ids of every layer present.
    pub fn layer_ids(&self) -> Result<Vec<String>, StorageError> {
        let rd = fs::read_dir(self.root.join("layers")).map_err(|e| StorageError::io("listing layers", e))?;
        Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(|h| format!("sha256:{h}")))
            .filter(|d| digest_hex(d).is_some())
            .collect())
    }

    /// Removes layers that no image references. Call with the store lock held exclusively.
    pub fn remove_unreferenced_layers(&self, maps: &IdMappings) -> Result<Vec<String>, StorageError> {
        let used: std::collections::HashSet<String> =
            self.images()?.into_iter().flat_map(|i| i.layers.into_iter()).collect();
        let mut removed = Vec::new();
        for id in self.layer_ids()? {
            if used.contains(&id) {
                continue;
            }
            let dir = self.layer_dir(&id)?;
            // Rename first so that the layer stops being "complete" at once, then delete.
            let (tmp, _g) = self.tmp_dir()?;
            let doomed = tmp.join("layer");
            fs::rename(&dir, &doomed).map_err(|e| StorageError::io(format!("removing layer {id}"), e))?;
            self.remove_tree(&tmp, maps)?;
            let _ = fs::remove_file(tmp.with_extension("lock"));
            removed.push(id);
        }
        Ok(removed)
    }
}

/// A layer stored from a local stream (import, load): the unpacked layer and the kept blob.
#[derive(Debug, Clone)]
pub struct KeptLayer {
    pub layer: LayerRecord,
    /// Digest and size of the stream as given (compressed or not): the blob in `blobs/`.
    pub blob: String,
    pub blob_size: u64,
    pub compression: super::unpack::Compression,
}

impl Store {
    /// Streams `input` once into both a blob (kept, for push and save) and the unpack helper.
    /// With `expected`, the diff_id must match. Nothing is stored unless everything succeeds.
    pub fn unpack_and_keep(
        &self,
        maps: &IdMappings,
        input: &mut dyn std::io::Read,
        expected: Option<&str>,
    ) -> Result<KeptLayer, StorageError> {
        use std::io::Write;
        let mut blob = self.blob_writer()?;
        let mut pending = self.start_unpack(maps, UnpackInput::Pipe)?;
        let mut pipe = pending.stdin();
        if let Some(p) = &pipe {
            let _ = rustix::pipe::fcntl_setpipe_size(p, 1 << 20);
        }
        let mut buf = vec![0u8; 256 << 10];
        let mut head: Vec<u8> = Vec::new();
        let mut read_err = None;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    read_err = Some(e);
                    break;
                }
            };
            if head.len() < 8 {
                head.extend_from_slice(&buf[..n.min(8)]);
            }
            if let Err(e) = blob.write_all(&buf[..n]) {
                read_err = Some(e);
                break;
            }
            if let Some(p) = pipe.as_mut()
                && p.write_all(&buf[..n]).is_err()
            {
                // The unpacker stopped: its error says why.
                pipe = None;
                break;
            }
        }
        drop(pipe);
        if let Some(e) = read_err {
            pending.abort(self, maps);
            return Err(StorageError::io("reading the layer", e));
        }
        let layer = pending.finish(self, maps, expected)?;
        let compression = super::unpack::detect(&mut &head[..]).unwrap_or(super::unpack::Compression::None);
        let digest = blob.digest();
        let blob_size = blob.written();
        blob.commit(self, &digest)?;
        Ok(KeptLayer { layer, blob: digest, blob_size, compression })
    }
}
