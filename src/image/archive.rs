//! `nook save` and `nook load`: docker-archive and oci-archive tarballs.
//!
//! - docker-archive: `manifest.json` (`[{Config, RepoTags, Layers}]`), the config as
//!   `<hex>.json`, and each layer as an uncompressed tar `<diff_id hex>.tar` (decompressed from
//!   the kept blob). Loads what `docker save` (the old layout with symlinked layers, and the
//!   OCI-based one of docker 25+, through its manifest.json) and `podman save` write.
//! - oci-archive: a tar of an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`),
//!   the blobs as stored; docker v2s2 manifests are written as OCI manifests (same config, so
//!   the same image ID). Loads what `skopeo copy … oci-archive:` and `podman save --format
//!   oci-archive` write; an index selects the host's platform.
//!
//! Loading extracts the archive (plain, gzip or zstd) into a private directory under the
//! store's `tmp/` (regular files only, names checked), verifies every blob against its digest
//! and every layer against its diff_id, and records the images last.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::reference::Reference;
use crate::context::Context;
use crate::registry::media::{self, Descriptor, ImageManifest, Platform};
use crate::storage::blobs::digest_hex;
use crate::storage::unpack::{Compression, decompressed};
use crate::storage::{ImageRecord, StorageError, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Docker,
    Oci,
}

impl ArchiveFormat {
    pub fn parse(s: &str) -> Result<ArchiveFormat, StorageError> {
        match s {
            "docker-archive" => Ok(ArchiveFormat::Docker),
            "oci-archive" => Ok(ArchiveFormat::Oci),
            other => Err(StorageError::Other(format!(
                "unsupported archive format {other:?}: choose docker-archive or oci-archive"
            ))),
        }
    }
}

fn other(e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(e.to_string())
}

fn hex_of(d: &str) -> Result<&str, StorageError> {
    digest_hex(d).ok_or_else(|| StorageError::BadDigest(d.to_string()))
}

fn tar_file(b: &mut tar::Builder<&mut dyn Write>, path: &str, size: u64, data: &mut dyn Read) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_path(path)?;
    h.set_cksum();
    let mut counted = CountingReader { inner: data.take(size), n: 0 };
    b.append(&h, &mut counted)?;
    if counted.n != size {
        return Err(io::Error::other(format!("{path}: expected {size} bytes, got {}", counted.n)));
    }
    Ok(())
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn stored_manifest(store: &Store, img: &ImageRecord) -> Result<ImageManifest, StorageError> {
    let data = store.get_blob(&img.manifest)?;
    serde_json::from_slice(&data)
        .map_err(|e| StorageError::Corrupt(format!("image {}: invalid stored manifest: {e}", img.short_id())))
}

fn blob_file(store: &Store, img: &ImageRecord, digest: &str) -> Result<(fs::File, u64), StorageError> {
    let p = store.blob_path(digest)?;
    let f = fs::File::open(&p).map_err(|_| {
        StorageError::Other(format!(
            "layer blob {digest} of image {} is not stored (the image was stored by an older nook); pull or import it again",
            img.short_id()
        ))
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((f, len))
}

/// Writes the images to `out`.
pub fn save(store: &Store, images: &[String], format: ArchiveFormat, out: &mut dyn Write) -> Result<(), StorageError> {
    let mut imgs = Vec::new();
    for i in images {
        let img = store.find_image(i)?;
        // Saved by one of its names: that name; by ID: all its names.
        let names = match super::manage::matching_name(&img, i) {
            Some(n) => vec![n],
            None => img.names.iter().filter(|n| !n.contains('@')).cloned().collect(),
        };
        imgs.push((img, names));
    }
    let mut b = tar::Builder::new(out);
    let io_err = |e: io::Error| StorageError::io("writing the archive", e);
    match format {
        ArchiveFormat::Docker => {
            let mut manifest = Vec::new();
            let mut written = std::collections::HashSet::new();
            for (img, names) in &imgs {
                let m = stored_manifest(store, img)?;
                let cfg = store.get_blob(&img.config)?;
                let cfg_name = format!("{}.json", hex_of(&img.config)?);
                if written.insert(cfg_name.clone()) {
                    tar_file(&mut b, &cfg_name, cfg.len() as u64, &mut &cfg[..]).map_err(io_err)?;
                }
                let mut layers = Vec::new();
                for (desc, diff_id) in m.layers.iter().zip(&img.layers) {
                    let name = format!("{}.tar", hex_of(diff_id)?);
                    if written.insert(name.clone()) {
                        let rec = store.layer_record(diff_id)?;
                        let (f, _) = blob_file(store, img, &desc.digest)?;
                        let mut r = decompressed(f).map_err(io_err)?;
                        tar_file(&mut b, &name, rec.tar_size, &mut r).map_err(io_err)?;
                    }
                    layers.push(name);
                }
                manifest.push(serde_json::json!({ "Config": cfg_name, "RepoTags": names, "Layers": layers }));
            }
            let data = serde_json::to_vec(&manifest).map_err(other)?;
            tar_file(&mut b, "manifest.json", data.len() as u64, &mut &data[..]).map_err(io_err)?;
        }
        ArchiveFormat::Oci => {
            let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
            tar_file(&mut b, "oci-layout", layout.len() as u64, &mut &layout[..]).map_err(io_err)?;
            let mut written = std::collections::HashSet::new();
            let mut index = Vec::new();
            let mut blob = |b: &mut tar::Builder<&mut dyn Write>, digest: &str, r: &mut dyn Read, len: u64| {
                if written.insert(digest.to_string()) {
                    tar_file(b, &format!("blobs/sha256/{}", hex_of(digest)?), len, r).map_err(io_err)?;
                }
                Ok::<(), StorageError>(())
            };
            for (img, names) in &imgs {
                let m = stored_manifest(store, img)?;
                let (mbytes, mdigest) = oci_manifest(store, img, &m)?;
                let cfg = store.get_blob(&img.config)?;
                blob(&mut b, &img.config, &mut &cfg[..], cfg.len() as u64)?;
                for desc in &m.layers {
                    let (mut f, len) = blob_file(store, img, &desc.digest)?;
                    blob(&mut b, &desc.digest, &mut f, len)?;
                }
                blob(&mut b, &mdigest, &mut &mbytes[..], mbytes.len() as u64)?;
                let desc =
                    serde_json::json!({ "mediaType": media::OCI_MANIFEST, "digest": mdigest, "size": mbytes.len() });
                if names.is_empty() {
                    index.push(desc.clone());
                }
                for n in names {
                    let mut d = desc.clone();
                    d["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": n });
                    index.push(d);
                }
            }
            let idx = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": index });
            let data = serde_json::to_vec(&idx).map_err(other)?;
            tar_file(&mut b, "index.json", data.len() as u64, &mut &data[..]).map_err(io_err)?;
        }
    }
    b.into_inner().map_err(io_err)?.flush().map_err(io_err)?;
    Ok(())
}

/// The stored manifest as an OCI manifest (docker v2s2 media types translated).
fn oci_manifest(store: &Store, img: &ImageRecord, m: &ImageManifest) -> Result<(Vec<u8>, String), StorageError> {
    if m.media_type.as_deref().unwrap_or(media::OCI_MANIFEST) == media::OCI_MANIFEST
        && m.config.media_type == media::OCI_CONFIG
    {
        let data = store.get_blob(&img.manifest)?;
        return Ok((data, img.manifest.clone()));
    }
    let mut o = m.clone();
    o.media_type = Some(media::OCI_MANIFEST.into());
    o.config.media_type = media::OCI_CONFIG.into();
    for l in &mut o.layers {
        l.media_type = match l.media_type.as_str() {
            media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
            media::DOCKER_LAYER_ZSTD => media::OCI_LAYER_ZSTD,
            media::DOCKER_LAYER_TAR => media::OCI_LAYER,
            other => other,
        }
        .to_string();
    }
    let data = serde_json::to_vec(&o).map_err(other)?;
    let d = media::digest_of(&data);
    Ok((data, d))
}

/// An extracted archive: regular files, plus symlinks resolved inside it.
struct Extracted {
    root: PathBuf,
    links: HashMap<String, String>,
}

fn clean(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            _ => return None,
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

impl Extracted {
    fn extract(r: impl Read, root: &Path) -> Result<Extracted, StorageError> {
        let mut ar = tar::Archive::new(decompressed(r).map_err(|e| StorageError::io("reading the archive", e))?);
        let mut links = HashMap::new();
        let bad = |e: io::Error| StorageError::Other(format!("reading the archive: {e}"));
        for entry in ar.entries().map_err(bad)? {
            let mut e = entry.map_err(bad)?;
            let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let Some(rel) = clean(&raw) else {
                return Err(StorageError::Other(format!("archive entry {raw:?} leaves the archive")));
            };
            let kind = e.header().entry_type();
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = root.join(&rel);
                    if let Some(parent) = dest.parent() {
                        fs::create_dir_all(parent).map_err(|e| StorageError::io("extracting the archive", e))?;
                    }
                    let mut f = fs::File::create(&dest).map_err(|e| StorageError::io("extracting the archive", e))?;
                    io::copy(&mut e, &mut f).map_err(bad)?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target =
                        e.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
                    let base = if kind == tar::EntryType::Symlink {
                        Path::new(&rel).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
                    } else {
                        String::new()
                    };
                    let joined = if base.is_empty() { target.clone() } else { format!("{base}/{target}") };
                    match clean(&joined) {
                        Some(t) if !target.starts_with('/') => {
                            links.insert(rel, t);
                        }
                        _ => {
                            return Err(StorageError::Other(format!("archive link {raw:?} points out of the archive")));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Extracted { root: root.to_path_buf(), links })
    }

    fn path(&self, rel: &str) -> Result<PathBuf, StorageError> {
        let mut cur = clean(rel).ok_or_else(|| StorageError::Other(format!("archive path {rel:?} is invalid")))?;
        for _ in 0..16 {
            let p = self.root.join(&cur);
            if p.is_file() {
                return Ok(p);
            }
            match self.links.get(&cur) {
                Some(t) => cur = t.clone(),
                None => break,
            }
        }
        Err(StorageError::Other(format!("the archive has no file {rel}")))
    }

    fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, StorageError> {
        let p = self.path(rel)?;
        let mut d = Vec::new();
        fs::File::open(&p)
            .and_then(|f| f.take(limit + 1).read_to_end(&mut d))
            .map_err(|e| StorageError::io(format!("reading {rel} from the archive"), e))?;
        if d.len() as u64 > limit {
            return Err(StorageError::Other(format!("{rel} in the archive is larger than {} MiB", limit >> 20)));
        }
        Ok(d)
    }
}

fn sha256_file(p: &Path) -> Result<(String, u64), StorageError> {
    let mut f = fs::File::open(p).map_err(|e| StorageError::io(format!("reading {}", p.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| StorageError::io(format!("reading {}", p.display()), e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// Stores one layer file: its blob (as given) and its unpacked directory. Returns its
/// descriptor (media type from its compression).
fn store_layer(
    ctx: &Context,
    path: &Path,
    expected_blob: Option<&str>,
    diff_id: &str,
) -> Result<Descriptor, StorageError> {
    let store = &ctx.store;
    let (digest, size) = sha256_file(path)?;
    if let Some(e) = expected_blob
        && e != digest
    {
        return Err(StorageError::Other(format!(
            "layer blob {e} in the archive does not match its digest (got {digest})"
        )));
    }
    let _lock = store.lock_content(diff_id, super::pull::LAYER_LOCK_TIMEOUT)?;
    let mut head = [0u8; 8];
    let n = fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let compression = crate::storage::unpack::detect(&mut &head[..n]).unwrap_or(Compression::None);
    let media_type = match compression {
        Compression::Gzip => media::OCI_LAYER_GZIP,
        Compression::Zstd => media::OCI_LAYER_ZSTD,
        Compression::None => media::OCI_LAYER,
    };
    let desc = Descriptor {
        media_type: media_type.into(),
        digest: digest.clone(),
        size,
        platform: None,
        urls: None,
        annotations: None,
    };
    if store.has_layer(diff_id) && store.has_blob(&digest) {
        return Ok(desc);
    }
    let mut f = fs::File::open(path).map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
    if store.has_layer(diff_id) {
        let mut w = store.blob_writer()?;
        io::copy(&mut f, &mut w).map_err(|e| StorageError::io("storing a layer blob", e))?;
        w.commit(store, &digest)?;
    } else {
        let kept = store.unpack_and_keep(&ctx.maps, &mut f, Some(diff_id))?;
        if kept.blob != digest {
            return Err(StorageError::Other(format!("layer {diff_id} changed while it was read")));
        }
    }
    Ok(desc)
}

/// One image found in an archive, ready to store.
struct Found {
    config: Vec<u8>,
    manifest: Vec<u8>,
    layers: Vec<String>,
    names: Vec<String>,
}

fn diff_ids(config: &[u8]) -> Result<Vec<String>, StorageError> {
    let v: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| StorageError::Other(format!("an image config in the archive is not valid JSON: {e}")))?;
    let ids: Vec<String> = v
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if ids.iter().any(|d| digest_hex(d).is_none()) {
        return Err(StorageError::Other("an image config in the archive has an invalid diff_id".into()));
    }
    Ok(ids)
}

/// Builds an OCI manifest for a config and layer descriptors.
fn make_manifest(config: &[u8], layers: Vec<Descriptor>) -> Result<Vec<u8>, StorageError> {
    let m = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: media::OCI_CONFIG.into(),
            digest: media::digest_of(config),
            size: config.len() as u64,
            platform: None,
            urls: None,
            annotations: None,
        },
        layers,
    };
    serde_json::to_vec(&m).map_err(other)
}

fn load_docker(ctx: &Context, x: &Extracted) -> Result<Vec<Found>, StorageError> {
    let m: serde_json::Value = serde_json::from_slice(&x.read("manifest.json", 16 << 20)?)
        .map_err(|e| StorageError::Other(format!("manifest.json in the archive is not valid JSON: {e}")))?;
    let entries =
        m.as_array().ok_or_else(|| StorageError::Other("manifest.json in the archive is not a list".into()))?;
    let mut out = Vec::new();
    for e in entries {
        let cfg_path =
            e.get("Config").and_then(|c| c.as_str()).ok_or_else(|| other("manifest.json: an entry has no Config"))?;
        let config = x.read(cfg_path, crate::registry::MAX_CONFIG_SIZE)?;
        let ids = diff_ids(&config)?;
        let files: Vec<&str> = e
            .get("Layers")
            .and_then(|l| l.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        if files.len() != ids.len() {
            return Err(StorageError::Other(format!(
                "manifest.json: {} layers for {} diff_ids in {cfg_path}",
                files.len(),
                ids.len()
            )));
        }
        let mut descs = Vec::new();
        for (f, id) in files.iter().zip(&ids) {
            descs.push(store_layer(ctx, &x.path(f)?, None, id)?);
        }
        let names = e
            .get("RepoTags")
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str())
                    .filter_map(|s| Reference::parse(s).ok())
                    .map(|r| r.qualified_with("docker.io").to_string())
                    .collect()
            })
            .unwrap_or_default();
        let manifest = make_manifest(&config, descs)?;
        out.push(Found { config, manifest, layers: ids, names });
    }
    Ok(out)
}

fn load_oci(ctx: &Context, x: &Extracted) -> Result<Vec<Found>, StorageError> {
    let blob = |d: &str, limit: u64| -> Result<Vec<u8>, StorageError> {
        let data = x.read(&format!("blobs/sha256/{}", hex_of(d)?), limit)?;
        if media::digest_of(&data) != d {
            return Err(StorageError::Other(format!("blob {d} in the archive does not match its digest")));
        }
        Ok(data)
    };
    let idx: media::ImageIndex = serde_json::from_slice(&x.read("index.json", 4 << 20)?)
        .map_err(|e| StorageError::Other(format!("index.json in the archive is invalid: {e}")))?;
    let mut out: Vec<Found> = Vec::new();
    for d in &idx.manifests {
        let mut desc = d.clone();
        let mut body = blob(&desc.digest, crate::registry::MAX_MANIFEST_SIZE)?;
        if matches!(desc.media_type.as_str(), media::OCI_INDEX | media::DOCKER_LIST) {
            let i: media::ImageIndex = serde_json::from_slice(&body)
                .map_err(|e| StorageError::Other(format!("an index in the archive is invalid: {e}")))?;
            desc = super::pull::select_platform(&i.manifests, &Platform::host()).map_err(other)?.clone();
            body = blob(&desc.digest, crate::registry::MAX_MANIFEST_SIZE)?;
        }
        let m = match media::parse_manifest(&body, &desc.media_type, "a manifest in the archive").map_err(other)?.0 {
            media::Parsed::Image(m) => m,
            media::Parsed::Index(_) => return Err(other("nested indexes in the archive are not supported")),
        };
        let config = blob(&m.config.digest, crate::registry::MAX_CONFIG_SIZE)?;
        let ids = diff_ids(&config)?;
        if ids.len() != m.layers.len() {
            return Err(other(format!(
                "a manifest in the archive has {} layers for {} diff_ids",
                m.layers.len(),
                ids.len()
            )));
        }
        for (l, id) in m.layers.iter().zip(&ids) {
            if !media::is_layer_type(&l.media_type) {
                return Err(other(format!("layer {}: unsupported media type {:?}", l.digest, l.media_type)));
            }
            store_layer(ctx, &x.path(&format!("blobs/sha256/{}", hex_of(&l.digest)?))?, Some(&l.digest), id)?;
        }
        let name = d
            .annotations
            .as_ref()
            .and_then(|a| a.get("io.containerd.image.name").or_else(|| a.get("org.opencontainers.image.ref.name")))
            .and_then(|n| Reference::parse(n).ok())
            .map(|r| r.qualified_with("localhost").to_string());
        match out.iter_mut().find(|f| f.manifest == body) {
            Some(f) => f.names.extend(name),
            None => out.push(Found { config, manifest: body, layers: ids, names: name.into_iter().collect() }),
        }
    }
    Ok(out)
}

/// Loads every image in the archive; returns the stored images.
pub fn load(ctx: &Context, input: impl Read) -> Result<Vec<ImageRecord>, StorageError> {
    let store = &ctx.store;
    ctx.notice_single_id();
    store.gc_tmp(&ctx.maps);
    let (tmp, _guard) = store.tmp_dir()?;
    let r = (|| {
        let x = Extracted::extract(input, &tmp)?;
        // docker save (25+) writes both: its manifest.json has the full names (RepoTags).
        let found = if x.path("manifest.json").is_ok() {
            load_docker(ctx, &x)?
        } else if x.path("index.json").is_ok() && x.path("oci-layout").is_ok() {
            load_oci(ctx, &x)?
        } else {
            return Err(other(
                "the archive is neither a docker-archive (manifest.json) nor an oci-archive (index.json)",
            ));
        };
        if found.is_empty() {
            return Err(other("the archive holds no image"));
        }
        let mut recs = Vec::new();
        for f in found {
            let config_digest = store.put_blob(&f.config)?;
            let manifest_digest = store.put_blob(&f.manifest)?;
            let created = serde_json::from_slice::<serde_json::Value>(&f.config)
                .ok()
                .and_then(|v| {
                    v.get("created").and_then(|c| c.as_str()).and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                })
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or_else(Utc::now);
            let size = f.layers.iter().map(|l| store.layer_record(l).map(|r| r.size).unwrap_or(0)).sum();
            let rec = ImageRecord {
                id: config_digest.trim_start_matches("sha256:").to_string(),
                names: f.names,
                digest: None,
                manifest: manifest_digest,
                config: config_digest,
                layers: f.layers,
                created,
                size,
            };
            let _lock = store.lock(true)?;
            if !rec.layers.iter().all(|l| store.has_layer(l)) {
                return Err(other("a layer was removed by a concurrent rmi or prune while loading; load again"));
            }
            store.put_image(rec.clone())?;
            recs.push(rec);
        }
        Ok(recs)
    })();
    let _ = store.remove_tree(&tmp, &ctx.maps);
    let _ = fs::remove_file(tmp.with_extension("lock"));
    r
}
