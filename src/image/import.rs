//! `nook import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image. The layer
//! is unpacked once, inside the user namespace, and the image gets an OCI image config.

use std::path::PathBuf;

use chrono::Utc;
use oci_spec::image::{
    Arch, Config, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};

use super::config::{apply_changes, host_arch};
use crate::context::Context;
use crate::storage::unpack::Compression;
use crate::storage::{ImageRecord, StorageError};

pub enum ImportSource {
    File(PathBuf),
    Stdin,
}

pub struct ImportOptions {
    pub source: ImportSource,
    /// Full name (`localhost/bb:latest`), if any.
    pub name: Option<String>,
    pub changes: Vec<String>,
    pub message: Option<String>,
}

fn other(e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(e.to_string())
}

pub fn import(ctx: &Context, opts: &ImportOptions) -> Result<ImageRecord, StorageError> {
    let store = &ctx.store;
    let mut cfg = Config::default();
    apply_changes(&mut cfg, &opts.changes).map_err(StorageError::Other)?;
    let mut input: Box<dyn std::io::Read> = match &opts.source {
        ImportSource::File(p) => {
            let f = std::fs::File::open(p).map_err(|e| StorageError::io(format!("opening {}", p.display()), e))?;
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(StorageError::Other(format!(
                    "{} is a directory; import takes a tarball (use run --rootfs for a directory)",
                    p.display()
                )));
            }
            Box::new(f)
        }
        ImportSource::Stdin => Box::new(std::io::stdin().lock()),
    };
    ctx.notice_single_id();
    store.gc_tmp(&ctx.maps);
    // The tarball is kept as the layer's blob (as given, compressed or not), for push and save.
    let kept = store.unpack_and_keep(&ctx.maps, &mut input, None)?;
    let layer = kept.layer.clone();

    let now = Utc::now();
    let created = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut history = HistoryBuilder::default().created(created.clone()).created_by("nook import");
    if let Some(m) = &opts.message {
        history = history.comment(m.clone());
    }
    let image_cfg = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(host_arch()))
        .os(Os::Linux)
        .config(cfg)
        .rootfs(RootFsBuilder::default().typ("layers").diff_ids(vec![layer.diff_id.clone()]).build().map_err(other)?)
        .history(vec![history.build().map_err(other)?])
        .build()
        .map_err(other)?;
    let cfg_bytes = serde_json::to_vec(&image_cfg).map_err(other)?;
    let cfg_digest = store.put_blob(&cfg_bytes)?;
    let layer_type = match kept.compression {
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
        Compression::None => MediaType::ImageLayer,
    };
    let layer_desc =
        Descriptor::new(layer_type, kept.blob_size, kept.blob.parse::<oci_spec::image::Digest>().map_err(other)?);
    let cfg_desc = Descriptor::new(
        MediaType::ImageConfig,
        cfg_bytes.len() as u64,
        cfg_digest.parse::<oci_spec::image::Digest>().map_err(other)?,
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(cfg_desc)
        .layers(vec![layer_desc])
        .build()
        .map_err(other)?;
    let manifest_digest = store.put_blob(&serde_json::to_vec(&manifest).map_err(other)?)?;
    let rec = ImageRecord {
        id: cfg_digest.trim_start_matches("sha256:").to_string(),
        names: opts.name.iter().cloned().collect(),
        digest: None,
        manifest: manifest_digest,
        config: cfg_digest,
        layers: vec![layer.diff_id],
        created: now,
        size: layer.size,
    };
    let _lock = store.lock(true)?;
    store.put_image(rec.clone())?;
    Ok(rec)
}
