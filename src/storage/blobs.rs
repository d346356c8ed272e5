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
