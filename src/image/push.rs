//! `nook push`: a stored image to a registry, exactly as stored: the kept layer blobs, the
//! config and the manifest bytes, so the registry's digests are the ones nook has.

use std::path::PathBuf;

use super::progress::Progress;
use super::reference::Reference;
use crate::context::Context;
use crate::registry::auth::AuthFiles;
use crate::registry::conf::RegistriesConf;
use crate::registry::media::{self, ImageManifest};
use crate::registry::{Client, ClientOptions, RegistryError};

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub image: String,
    /// `[docker://]REGISTRY/REPOSITORY[:TAG]`; default: the image's name.
    pub dest: Option<String>,
    pub tls_verify: Option<bool>,
    pub authfile: Option<PathBuf>,
    pub creds: Option<(String, String)>,
}

/// Pushes; returns the destination and the manifest digest.
pub fn push(ctx: &Context, o: &PushOptions, progress: &Progress) -> Result<(String, String), RegistryError> {
    let store = &ctx.store;
    let img = store.find_image(&o.image)?;
    let dest = match &o.dest {
        Some(d) => d.strip_prefix("docker://").unwrap_or(d).to_string(),
        None => {
            let r = Reference::parse(&o.image).ok().filter(|r| r.is_qualified() && r.digest.is_none());
            match r {
                Some(r) => r.to_string(),
                None => img.names.iter().find(|n| !n.contains('@')).cloned().ok_or_else(|| {
                    RegistryError::Invalid(format!("{}: the image has no name; give a destination", o.image))
                })?,
            }
        }
    };
    let r = Reference::parse(&dest)?;
    if !r.is_qualified() {
        return Err(RegistryError::Invalid(format!("{dest}: give the destination as REGISTRY/REPOSITORY[:TAG]")));
    }
    if r.digest.is_some() {
        return Err(RegistryError::Invalid(format!("{dest}: cannot push to a digest; give a tag")));
    }
    let tag = r.tag_or_latest().unwrap_or("latest").to_string();
    let wrap = |e: RegistryError| RegistryError::Invalid(format!("pushing {r}: {e}"));
    let conf = RegistriesConf::load(&ctx.paths.xdg_config)?;
    let insecure = match o.tls_verify {
        Some(v) => !v,
        None => conf.insecure(&r.registry),
    };
    let creds = match &o.creds {
        Some(c) => Some(c.clone()),
        None => AuthFiles::new(o.authfile.clone(), &ctx.paths).lookup(&r.registry, &r.repository)?,
    };
    let client = Client::new(&ClientOptions { registry: r.registry.clone(), insecure, creds });
    let manifest_bytes = store.get_blob(&img.manifest)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| RegistryError::Invalid(format!("the stored manifest of {} is invalid: {e}", img.short_id())))?;
    let repo = &r.repository;
    for l in &manifest.layers {
        let path = store.blob_path(&l.digest)?;
        if !path.exists() {
            return Err(RegistryError::Invalid(format!(
                "layer blob {} of image {} is not stored (the image was stored by an older nook); pull or import it again",
                l.digest,
                img.short_id()
            )));
        }
        let what = format!("uploading blob {}", l.digest);
        if client.blob_exists(repo, &l.digest, &what).map_err(wrap)? {
            progress.skipped("Copying", &l.digest);
            continue;
        }
        let bar = progress.blob("Copying", &l.digest, l.size);
        client.push_blob(repo, &l.digest, l.size, &path, &what).map_err(|e| {
            bar.failed();
            wrap(e)
        })?;
        bar.inc(l.size);
        bar.done();
    }
    let config = store.get_blob(&manifest.config.digest)?;
    let what = format!("uploading config {}", manifest.config.digest);
    if !client.blob_exists(repo, &manifest.config.digest, &what).map_err(wrap)? {
        client.push_blob_bytes(repo, &manifest.config.digest, &config, &what).map_err(wrap)?;
    }
    progress.message(&format!("Copying config {} done", manifest.config.digest));
    progress.message("Writing manifest to image destination");
    let mt = manifest.media_type.clone().unwrap_or_else(|| media::OCI_MANIFEST.to_string());
    client.push_manifest(repo, &tag, &manifest_bytes, &mt, "uploading the manifest").map_err(wrap)?;
    Ok((r.to_string(), media::digest_of(&manifest_bytes)))
}
