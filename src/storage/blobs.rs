//! Content-addressed blobs: `blobs/sha256/<hex>`, written through a temporary file and renamed
//! into place only once their digest is verified.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{StorageError, Store};

/// `sha256:<64 hex>` → the hex part, if well formed.
pub fn digest_hex(d: &str) -> Option<&str> {
    let h = d.strip_prefix("sha256:")?;
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(h)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl Store {
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StorageError> {
        let h = digest_hex(digest).ok_or_else(|| StorageError::BadDigest(digest.to_string()))?;
        Ok(self.root.join("blobs/sha256").join(h))
    }

    /// Stores `data`; returns its digest. Idempotent.
    pub fn put_blob(&self, data: &[u8]) -> Result<String, StorageError> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if path.exists() {
            return Ok(digest);
        }
        let tmp = self.root.join("blobs/sha256").join(format!(".tmp-{}", crate::util::id::random_id()));
        let r = (|| -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::io(format!("writing blob {digest}"), e));
        }
        Ok(digest)
    }

    /// Reads a blob and checks its digest.
    pub fn get_blob(&self, digest: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.blob_path(digest)?;
        let data = fs::read(&path).map_err(|e| StorageError::io(format!("reading blob {digest}"), e))?;
        if sha256_digest(&data) != digest {
            return Err(StorageError::Corrupt(format!(
                "blob {digest} does not match its digest; remove the image and pull or import it again"
            )));
        }
        Ok(data)
    }
}

/// A blob being written: a file in a private `tmp/` directory, hashed as it is written, and
/// renamed into `blobs/sha256/` by [`BlobWriter::commit`] only if its digest is the expected
/// one. Dropped (or killed) before that, it is discarded (`gc_tmp` removes what a killed
/// command left).
pub struct BlobWriter {
    file: Option<fs::File>,
    dir: PathBuf,
    _guard: super::LockGuard,
    hasher: Sha256,
    written: u64,
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Renames the blob into place if it is `expected`; otherwise discards it.
    pub fn commit(mut self, store: &Store, expected: &str) -> Result<PathBuf, StorageError> {
        let got = self.digest();
        if got != expected {
            return Err(StorageError::Corrupt(format!("digest mismatch: expected {expected}, got {got}")));
        }
        let dest = store.blob_path(expected)?;
        drop(self.file.take());
        let src = self.dir.join("blob");
        fs::rename(&src, &dest).map_err(|e| StorageError::io(format!("storing blob {expected}"), e))?;
        Ok(dest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("blob already committed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        drop(self.file.take());
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(self.dir.with_extension("lock"));
    }
}

impl Store {
    /// Starts writing a blob (see [`BlobWriter`]).
    pub fn blob_writer(&self) -> Result<BlobWriter, StorageError> {
        let (dir, guard) = self.tmp_dir()?;
        let file = fs::File::create(dir.join("blob"))
            .map_err(|e| StorageError::io(format!("creating {}", dir.join("blob").display()), e))?;
        Ok(BlobWriter { file: Some(file), dir, _guard: guard, hasher: Sha256::new(), written: 0 })
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Locks one blob or layer (keyed by digest) while this command fetches it, so that a
    /// concurrent pull waits and then finds it stored instead of downloading it again.
    pub fn lock_content(&self, digest: &str, timeout: std::time::Duration) -> Result<super::LockGuard, StorageError> {
        let h = digest_hex(digest).ok_or_else(|| StorageError::BadDigest(digest.to_string()))?;
        let dir = self.root.join("locks");
        if !dir.exists() {
            crate::util::fs::create_dir_all_mode(&dir, 0o700)
                .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(super::lock::lock_file(
            &dir.join(h),
            true,
            timeout,
            &format!("{}, which another nook command is fetching", &digest[..19.min(digest.len())]),
        )?)
    }
}
