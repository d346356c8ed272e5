//! `nook pull`: an image from a registry into the store.
//!
//! 1. The reference is resolved as podman does (short names through the search registries of
//!    `registries.conf`, mirrors and rewritten locations, `insecure`, `blocked`).
//! 2. The manifest is fetched with all four media types accepted; an index or manifest list
//!    selects the platform (the host's, or `--platform`). Manifests are limited to 4 MiB.
//! 3. The config is fetched and checked against its digest.
//! 4. Layers download in parallel. Each one streams once from the network into both a
//!    temporary blob file (hashed as it is written) and the unpack helper in the user
//!    namespace (which detects gzip/zstd/plain, unpacks safely and hashes the tar: the
//!    diff_id). Only when the compressed digest, the size and the diff_id all match are the
//!    blob and the layer renamed into place. A per-layer lock makes a concurrent pull of the
//!    same layer wait and then skip it.
//! 5. The image is recorded last, under the store lock, after checking that every layer and
//!    blob is still there (a concurrent rmi/prune may have removed them: then they are fetched
//!    again). So `nook images` never lists an image whose layers are not complete.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::progress::Progress;
use super::reference::Reference;
use crate::context::Context;
use crate::registry::auth::AuthFiles;
use crate::registry::conf::RegistriesConf;
use crate::registry::media::{self, Descriptor, ImageManifest, Parsed, Platform};
use crate::registry::{Client, ClientOptions, MAX_CONFIG_SIZE, RegistryError};
use crate::storage::ImageRecord;
use crate::storage::blobs::digest_hex;
use crate::storage::layers::UnpackInput;

/// How long a pull waits for another command that is fetching the same layer.
pub const LAYER_LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Layers downloaded at once.
const PARALLEL: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub reference: String,
    /// `os/arch[/variant]`; default: the host's.
    pub platform: Option<String>,
    /// `--tls-verify`: `Some(false)` allows plain http and unverified TLS.
    pub tls_verify: Option<bool>,
    pub authfile: Option<PathBuf>,
    /// `--creds USER:PASS`.
    pub creds: Option<(String, String)>,
}

/// An image manifest chosen for this host, with everything needed to store it.
struct Resolved {
    manifest: ImageManifest,
    manifest_bytes: Vec<u8>,
    /// The digest the reference resolved to (an index's, when it was one): the RepoDigest.
    top_digest: String,
    config: Vec<u8>,
    diff_ids: Vec<String>,
}

/// Fault injection for the tests: `_NOOK_FAULT_KILL=POINT` makes a pull kill itself with
/// SIGKILL when it reaches POINT (`manifest`, `blob-downloaded`, `layer-unpacked`,
/// `blob-committed`, `before-record`), so the tests can check what a crash leaves behind.
fn fault(point: &str) {
    if std::env::var_os("_NOOK_FAULT_KILL").is_some_and(|v| v == point) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Pulls `o.reference`; returns the stored image.
pub fn pull(ctx: &Context, o: &PullOptions, progress: &Progress) -> Result<ImageRecord, RegistryError> {
    let r = Reference::parse(&o.reference)?;
    let platform = match &o.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let conf = RegistriesConf::load(&ctx.paths.xdg_config)?;
    let candidates: Vec<Reference> = if r.is_qualified() {
        vec![r.clone()]
    } else {
        conf.search_registries(&o.reference)?.iter().map(|reg| r.qualified_with(reg)).collect()
    };
    let auth = AuthFiles::new(o.authfile.clone(), &ctx.paths);
    ctx.notice_single_id();
    ctx.store.gc_tmp(&ctx.maps);
    let mut errors = Vec::new();
    for c in &candidates {
        match pull_qualified(ctx, &conf, &auth, c, &platform, o, progress) {
            Ok(rec) => return Ok(rec),
            Err(e) if candidates.len() == 1 => {
                return Err(RegistryError::Invalid(format!("pulling {c}: {e}")));
            }
            Err(e) => errors.push(format!("{c}: {e}")),
        }
    }
    Err(RegistryError::Invalid(format!("pulling {}: {}", o.reference, errors.join("; "))))
}

fn pull_qualified(
    ctx: &Context,
    conf: &RegistriesConf,
    auth: &AuthFiles,
    c: &Reference,
    platform: &Platform,
    o: &PullOptions,
    progress: &Progress,
) -> Result<ImageRecord, RegistryError> {
    let reference = match (&c.digest, c.tag_or_latest()) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let endpoints = conf.endpoints(&c.registry, &c.repository, o.tls_verify)?;
    progress.message(&format!("Trying to pull {c}..."));
    let mut last = None;
    for ep in &endpoints {
        let creds = match &o.creds {
            Some(c) => Some(c.clone()),
            None => auth.lookup(&ep.registry, &ep.repository)?,
        };
        let client = Client::new(&ClientOptions { registry: ep.registry.clone(), insecure: ep.insecure, creds });
        let resolved = match resolve(&client, &ep.repository, &reference, platform) {
            Ok(r) => r,
            Err(e) if ep.mirror => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        fault("manifest");
        let name = match &c.digest {
            Some(d) => format!("{}@{d}", c.name()),
            None => format!("{}:{reference}", c.name()),
        };
        return store_image(ctx, &client, &ep.repository, resolved, name, progress);
    }
    Err(last.unwrap_or_else(|| RegistryError::Config("no endpoint to pull from".into())))
}

/// Fetches the manifest (choosing the platform in an index) and the config, and checks them.
fn resolve(client: &Client, repo: &str, reference: &str, platform: &Platform) -> Result<Resolved, RegistryError> {
    let top = client.manifest(repo, reference, "fetching the manifest")?;
    let (parsed, _) = media::parse_manifest(&top.body, &top.media_type, "the manifest")?;
    let (manifest, manifest_bytes) = match parsed {
        Parsed::Image(m) => (m, top.body.clone()),
        Parsed::Index(idx) => {
            let d = select_platform(&idx.manifests, platform)?;
            let what = format!("fetching the manifest for {platform}");
            let m = client.manifest(repo, &d.digest, &what)?;
            match media::parse_manifest(&m.body, &m.media_type, "the platform manifest")?.0 {
                Parsed::Image(im) => (im, m.body),
                Parsed::Index(_) => {
                    return Err(RegistryError::Invalid("the index for this platform names another index".into()));
                }
            }
        }
    };
    let cfg_mt = manifest.config.media_type.as_str();
    if !matches!(cfg_mt, media::OCI_CONFIG | media::DOCKER_CONFIG) {
        return Err(RegistryError::Invalid(format!(
            "unsupported config media type {cfg_mt:?}: this is not a container image"
        )));
    }
    for l in &manifest.layers {
        if !media::is_layer_type(&l.media_type) {
            return Err(RegistryError::Invalid(format!(
                "layer {}: unsupported layer media type {:?}",
                l.digest, l.media_type
            )));
        }
        if digest_hex(&l.digest).is_none() {
            return Err(RegistryError::Invalid(format!("layer digest {:?} is not a sha256 digest", l.digest)));
        }
    }
    if digest_hex(&manifest.config.digest).is_none() {
        return Err(RegistryError::Invalid(format!(
            "config digest {:?} is not a sha256 digest",
            manifest.config.digest
        )));
    }
    let config = client.small_blob(repo, &manifest.config.digest, MAX_CONFIG_SIZE, "fetching the config")?;
    let v: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| RegistryError::Invalid(format!("the image config is not valid JSON: {e}")))?;
    let diff_ids: Vec<String> = v
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers.len() || diff_ids.iter().any(|d| digest_hex(d).is_none()) {
        return Err(RegistryError::Invalid(format!(
            "the image config lists {} layer diff_ids for {} layers in the manifest",
            diff_ids.len(),
            manifest.layers.len()
        )));
    }
    Ok(Resolved { manifest, manifest_bytes, top_digest: top.digest, config, diff_ids })
}

/// The index entry for `platform`.
pub fn select_platform<'a>(entries: &'a [Descriptor], platform: &Platform) -> Result<&'a Descriptor, RegistryError> {
    let hit = entries.iter().find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)));
    hit.ok_or_else(|| {
        let avail: Vec<String> = entries
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(|p| p.to_string())
            .collect();
        RegistryError::Invalid(format!(
            "no image for platform {platform} in the index (it has: {}); choose one with --platform",
            if avail.is_empty() { "none".to_string() } else { avail.join(", ") }
        ))
    })
}

fn store_image(
    ctx: &Context,
    client: &Client,
    repo: &str,
    r: Resolved,
    name: String,
    progress: &Progress,
) -> Result<ImageRecord, RegistryError> {
    let store = &ctx.store;
    let config_digest = r.manifest.config.digest.clone();
    let id = config_digest.trim_start_matches("sha256:").to_string();
    let created = serde_json::from_slice::<serde_json::Value>(&r.config)
        .ok()
        .and_then(|v| v.get("created").and_then(|c| c.as_str()).and_then(|c| DateTime::parse_from_rfc3339(c).ok()))
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    for _attempt in 0..3 {
        fetch_layers(ctx, client, repo, &r.manifest.layers, &r.diff_ids, progress)?;
        progress.message(&format!("Copying config {} done", &config_digest));
        store.put_blob(&r.config)?;
        let manifest_digest = store.put_blob(&r.manifest_bytes)?;
        progress.message("Writing manifest to image destination");
        let mut size = 0;
        for d in &r.diff_ids {
            size += store.layer_record(d).map(|l| l.size).unwrap_or(0);
        }
        let rec = ImageRecord {
            id: id.clone(),
            names: vec![name.clone()],
            digest: Some(r.top_digest.clone()),
            manifest: manifest_digest,
            config: config_digest.clone(),
            layers: r.diff_ids.clone(),
            created,
            size,
        };
        fault("before-record");
        let _lock = store.lock(true)?;
        // A concurrent rmi or prune may have removed what was fetched: check under the lock.
        let complete = r.diff_ids.iter().all(|d| store.has_layer(d))
            && r.manifest.layers.iter().all(|l| store.has_blob(&l.digest))
            && store.has_blob(&rec.config)
            && store.has_blob(&rec.manifest);
        if complete {
            store.put_image(rec.clone())?;
            return Ok(store.find_image(&id).unwrap_or(rec));
        }
    }
    Err(RegistryError::Invalid(
        "layers were removed by a concurrent rmi or prune three times while pulling; pull again".into(),
    ))
}

/// Fetches the layers that are missing, several at once.
fn fetch_layers(
    ctx: &Context,
    client: &Client,
    repo: &str,
    layers: &[Descriptor],
    diff_ids: &[String],
    progress: &Progress,
) -> Result<(), RegistryError> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..layers.len()).collect());
    let failed = AtomicBool::new(false);
    let first_err: Mutex<Option<RegistryError>> = Mutex::new(None);
    let workers = layers.len().clamp(1, PARALLEL);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let Some(i) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else {
                        return;
                    };
                    if let Err(e) = fetch_layer(ctx, client, repo, &layers[i], &diff_ids[i], progress) {
                        failed.store(true, Ordering::SeqCst);
                        let mut fe = first_err.lock().unwrap_or_else(|p| p.into_inner());
                        if fe.is_none() {
                            *fe = Some(e);
                        }
                        return;
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Fetches one layer: its compressed blob and its unpacked directory, whichever is missing.
fn fetch_layer(
    ctx: &Context,
    client: &Client,
    repo: &str,
    desc: &Descriptor,
    diff_id: &str,
    progress: &Progress,
) -> Result<(), RegistryError> {
    let store = &ctx.store;
    let maps = &ctx.maps;
    let _lock = store.lock_content(diff_id, LAYER_LOCK_TIMEOUT)?;
    let have_layer = store.has_layer(diff_id);
    let have_blob = store.has_blob(&desc.digest);
    if have_layer && have_blob {
        progress.skipped("Copying", &desc.digest);
        return Ok(());
    }
    if have_blob {
        // Downloaded before but not unpacked (a pull killed in between): unpack from the store.
        let path = store.blob_path(&desc.digest)?;
        let f = std::fs::File::open(&path)
            .map_err(|e| crate::storage::StorageError::io(format!("opening {}", path.display()), e))?;
        store.start_unpack(maps, UnpackInput::File(f))?.finish(store, maps, Some(diff_id))?;
        progress.skipped("Copying", &desc.digest);
        return Ok(());
    }
    let what = format!("fetching blob {}", desc.digest);
    let started = std::time::Instant::now();
    tracing::debug!("layer {}: downloading {} bytes", desc.digest, desc.size);
    let bar = progress.blob("Copying", &desc.digest, desc.size);
    let mut blob = store.blob_writer()?;
    let mut pending = if have_layer { None } else { Some(store.start_unpack(maps, UnpackInput::Pipe)?) };
    let mut pipe = pending.as_mut().and_then(|p| p.stdin());
    if let Some(p) = &pipe {
        // A larger pipe lets the download run ahead of the unpacker a little.
        let _ = rustix::pipe::fcntl_setpipe_size(p, 1 << 20);
    }
    let mut helper_died = false;
    let r = (|| -> Result<(), RegistryError> {
        let mut src = client.blob(repo, &desc.digest, &what)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match src.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(RegistryError::Transfer {
                        what: what.clone(),
                        why: format!("{e} after {} of {} bytes", blob.written(), desc.size),
                    });
                }
            };
            if blob.written() + n as u64 > desc.size {
                return Err(RegistryError::Invalid(format!(
                    "{what}: the registry sent more than the {} bytes the manifest gives",
                    desc.size
                )));
            }
            blob.write_all(&buf[..n])
                .map_err(|e| RegistryError::Transfer { what: what.clone(), why: format!("writing the blob: {e}") })?;
            let mut write_failed = false;
            if let Some(p) = pipe.as_mut() {
                write_failed = p.write_all(&buf[..n]).is_err();
            }
            if write_failed {
                // The unpacker stopped (a refused entry, a corrupt stream): keep downloading
                // into the blob only, so that a digest mismatch is reported as what it is.
                helper_died = true;
                pipe = None;
            }
            bar.inc(n as u64);
        }
        if blob.written() != desc.size {
            return Err(RegistryError::Invalid(format!(
                "{what}: truncated: got {} of {} bytes",
                blob.written(),
                desc.size
            )));
        }
        let got = blob.digest();
        if got != desc.digest {
            return Err(RegistryError::Invalid(format!(
                "{what}: digest mismatch: the registry sent content with digest {got}"
            )));
        }
        Ok(())
    })();
    drop(pipe);
    if helper_died && r.is_ok() {
        bar.failed();
        // The unpacker stopped reading: its own error says why (a refused tar entry, …).
        let e = match pending {
            Some(p) => p.finish(store, maps, Some(diff_id)).err(),
            None => None,
        };
        return Err(match e {
            Some(e) => RegistryError::Invalid(format!("layer {}: {e}", desc.digest)),
            None => RegistryError::Invalid(format!("layer {}: the unpack helper stopped early", desc.digest)),
        });
    }
    if let Err(e) = r {
        bar.failed();
        if let Some(p) = pending {
            p.abort(store, maps);
        }
        return Err(e);
    }
    fault("blob-downloaded");
    tracing::debug!("layer {}: downloaded and verified after {:?}", desc.digest, started.elapsed());
    if let Some(p) = pending {
        p.finish(store, maps, Some(diff_id)).map_err(|e| {
            bar.failed();
            RegistryError::Invalid(format!("layer {}: {e}", desc.digest))
        })?;
    }
    fault("layer-unpacked");
    blob.commit(store, &desc.digest)?;
    fault("blob-committed");
    tracing::debug!("layer {}: stored after {:?}", desc.digest, started.elapsed());
    bar.done();
    Ok(())
}
