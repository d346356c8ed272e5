//! Image records: names/tags → manifest digest → config → layers, in `images.json`.

use std::fs;

use chrono::{DateTime, Utc};

use super::{StorageError, Store};
use crate::image::reference::Reference;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ImageRecord {
    /// Hex sha256 of the config blob (the image ID).
    pub id: String,
    /// Fully qualified names (`localhost/bb:latest`).
    pub names: Vec<String>,
    /// Digest of the manifest as the registry knows it (RepoDigest), when pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Blob digest of the stored manifest.
    pub manifest: String,
    /// Blob digest of the config.
    pub config: String,
    /// Layer diff_ids, bottom first.
    pub layers: Vec<String>,
    /// Creation time from the image config.
    pub created: DateTime<Utc>,
    /// Bytes of content in all layers.
    pub size: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ImageIndex {
    images: Vec<ImageRecord>,
}

impl ImageRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

impl Store {
    fn images_path(&self) -> std::path::PathBuf {
        self.root.join("images.json")
    }

    /// Every image. The index is replaced atomically, so this needs no lock to be consistent.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StorageError> {
        match crate::util::fs::read_optional(&self.images_path()) {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(d)) => serde_json::from_slice::<ImageIndex>(&d)
                .map(|i| i.images)
                .map_err(|e| StorageError::Corrupt(format!("{}: {e}", self.images_path().display()))),
            Err(e) => Err(StorageError::io("reading images.json", e)),
        }
    }

    /// Replaces the index. Call with the store lock held exclusively.
    pub fn save_images(&self, images: Vec<ImageRecord>) -> Result<(), StorageError> {
        let data = serde_json::to_vec_pretty(&ImageIndex { images }).map_err(|e| StorageError::Other(e.to_string()))?;
        crate::util::fs::write_atomic_durable(&self.images_path(), &data)
            .map_err(|e| StorageError::io("writing images.json", e))
    }

    /// Adds (or updates) an image. Its names move away from any other image that had them,
    /// as podman does with tags. Call with the store lock held exclusively.
    pub fn put_image(&self, rec: ImageRecord) -> Result<(), StorageError> {
        let mut all = self.images()?;
        for other in all.iter_mut() {
            other.names.retain(|n| !rec.names.contains(n));
        }
        match all.iter_mut().find(|i| i.id == rec.id) {
            Some(existing) => {
                for n in &rec.names {
                    if !existing.names.contains(n) {
                        existing.names.push(n.clone());
                    }
                }
                if rec.digest.is_some() {
                    existing.digest = rec.digest.clone();
                }
            }
            None => all.push(rec),
        }
        self.save_images(all)
    }

    /// Finds an image by name, short name, digest reference, or ID (prefix).
    pub fn find_image(&self, input: &str) -> Result<ImageRecord, StorageError> {
        let all = self.images()?;
        find_in(&all, input).cloned()
    }
}

/// Name lookup as podman does it: full names first, then short names against any registry
/// (preferring `localhost/` then `docker.io/`), then an ID or ID prefix.
pub fn find_in<'a>(all: &'a [ImageRecord], input: &str) -> Result<&'a ImageRecord, StorageError> {
    let id_input = input.strip_prefix("sha256:").unwrap_or(input);
    if id_input.len() == 64
        && let Some(i) = all.iter().find(|i| i.id == id_input)
    {
        return Ok(i);
    }
    if let Ok(r) = Reference::parse(input) {
        if let Some(d) = &r.digest {
            let hits: Vec<_> = all
                .iter()
                .filter(|i| {
                    i.digest.as_deref() == Some(d.as_str())
                        && i.names.iter().any(|n| {
                            Reference::parse(n).is_ok_and(|nr| {
                                nr.repository == r.repository || nr.repository.ends_with(&format!("/{}", r.repository))
                            })
                        })
                })
                .collect();
            if let Some(i) = hits.first() {
                return Ok(i);
            }
        } else if let Some(tag) = r.tag_or_latest() {
            if r.is_qualified() {
                let full = format!("{}:{tag}", r.name());
                if let Some(i) = all.iter().find(|i| i.names.contains(&full)) {
                    return Ok(i);
                }
            } else {
                for reg in ["localhost", "docker.io"] {
                    let full = format!("{}:{tag}", r.qualified_with(reg).name());
                    if let Some(i) = all.iter().find(|i| i.names.contains(&full)) {
                        return Ok(i);
                    }
                }
                let suffix = format!("/{}:{tag}", r.repository);
                let hits: Vec<_> = all.iter().filter(|i| i.names.iter().any(|n| n.ends_with(&suffix))).collect();
                match hits.len() {
                    0 => {}
                    1 => return Ok(hits[0]),
                    _ => return Err(StorageError::AmbiguousImage(input.to_string())),
                }
            }
        }
    }
    if !id_input.is_empty() && id_input.len() <= 64 && id_input.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<_> = all.iter().filter(|i| i.id.starts_with(id_input)).collect();
        match hits.len() {
            0 => {}
            1 => return Ok(hits[0]),
            _ => return Err(StorageError::AmbiguousImage(input.to_string())),
        }
    }
    Err(StorageError::ImageNotFound(input.to_string()))
}

impl Store {
    /// Removes the image record `id` (not its layers). Call with the store lock held exclusively.
    pub fn delete_image_record(&self, id: &str) -> Result<(), StorageError> {
        let mut all = self.images()?;
        all.retain(|i| i.id != id);
        self.save_images(all)
    }

    /// Removes blobs no image references (manifests, configs, compressed layers named by the
    /// manifests). Store lock held exclusively.
    pub fn remove_unreferenced_blobs(&self) -> Result<(), StorageError> {
        let mut used: std::collections::HashSet<String> = std::collections::HashSet::new();
        for i in self.images()? {
            used.extend(self.manifest_blobs(&i.manifest));
            used.insert(i.manifest);
            used.insert(i.config);
        }
        let used: std::collections::HashSet<String> =
            used.iter().filter_map(|d| d.strip_prefix("sha256:").map(str::to_string)).collect();
        let dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&dir).map_err(|e| StorageError::io("listing blobs", e))?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !used.contains(&n) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

impl Store {
    /// The config and layer blob digests a stored manifest names (empty if unreadable).
    pub fn manifest_blobs(&self, manifest: &str) -> Vec<String> {
        let Ok(data) = self.blob_path(manifest).and_then(|p| fs::read(&p).map_err(|e| StorageError::io("", e))) else {
            return Vec::new();
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&data) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(d) = v.pointer("/config/digest").and_then(|d| d.as_str()) {
            out.push(d.to_string());
        }
        for l in v.get("layers").and_then(|l| l.as_array()).into_iter().flatten() {
            if let Some(d) = l.get("digest").and_then(|d| d.as_str()) {
                out.push(d.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, names: &[&str]) -> ImageRecord {
        ImageRecord {
            id: id.repeat(64 / id.len()),
            names: names.iter().map(|s| s.to_string()).collect(),
            digest: None,
            manifest: String::new(),
            config: String::new(),
            layers: vec![],
            created: Utc::now(),
            size: 0,
        }
    }

    #[test]
    fn lookup_order() {
        let all = vec![
            img("a", &["localhost/bb:latest"]),
            img("b", &["docker.io/library/bb:latest", "docker.io/library/bb:1"]),
            img("c", &["quay.io/x/only:latest"]),
            img("d", &["quay.io/x/two:latest"]),
            img("e", &["example.com/y/two:latest"]),
        ];
        assert_eq!(find_in(&all, "bb").unwrap().id.as_bytes()[0], b'a');
        assert_eq!(find_in(&all, "bb:1").unwrap().id.as_bytes()[0], b'b');
        assert_eq!(find_in(&all, "docker.io/bb").unwrap().id.as_bytes()[0], b'b');
        assert_eq!(find_in(&all, "only").unwrap().id.as_bytes()[0], b'c');
        assert!(matches!(find_in(&all, "two"), Err(StorageError::AmbiguousImage(_))));
        assert_eq!(find_in(&all, "ccc").unwrap().id.as_bytes()[0], b'c');
        assert!(matches!(find_in(&all, "nosuchimage"), Err(StorageError::ImageNotFound(_))));
        assert!(matches!(find_in(&all, "zzz"), Err(StorageError::ImageNotFound(_))));
    }
}
