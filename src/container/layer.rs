//! A container's own layer: what it changed (`diff`), that change as a new image (`commit`),
//! its whole root filesystem as a tar (`export`), mounting it for inspection inside `nook
//! unshare` (`mount`/`umount`), stopping what serves it once it is gone (`container cleanup`),
//! and the keep-id details of creating one.
//!
//! Files a container wrote belong to subordinate ids, so every read of its tree happens in a
//! helper that is root of a user namespace with the store's maps (`nook __userns … changes |
//! layer-diff | export`). A keep-id container's tree may be stored shifted (kernel overlay over
//! id-shifted layer copies, or vfs); the helper shifts owners back so layers and tars always
//! carry the image's ids.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;

use super::{ContainerError, is_running};
use crate::context::Context;
use crate::runtime::RootfsSetup;
use crate::runtime::fuse;
use crate::storage::containers::HelperProcess;
use crate::storage::driver::{self, DriverChoice, DriverKind};
use crate::storage::layerfs::Change;
use crate::storage::{ContainerRecord, ContainerState, ImageRecord, StorageError, Store, run_helper};
use crate::userns::{HelperOp, KeepId};

/// The driver (and fuse-overlayfs binary) a new container gets. keep-id on an automatically
/// chosen kernel overlay uses fuse-overlayfs when it can, which shifts ids without copying;
/// an explicitly requested kernel overlay gets id-shifted copies of the layers instead.
pub fn driver_for(choice: &DriverChoice, keep_id: Option<&KeepId>) -> (String, Option<PathBuf>) {
    if choice.kind == DriverKind::Overlay
        && keep_id.is_some()
        && !choice.explicit
        && driver::dev_fuse_usable()
        && let Some(p) = driver::find_fuse_overlayfs()
    {
        return (DriverKind::FuseOverlayfs.name().to_string(), Some(p));
    }
    (choice.kind.name().to_string(), choice.program.clone())
}

/// keep-id: the image's passwd and group with an entry for the caller added where missing
/// (None: the file needs no change).
pub fn keep_id_etc(ctx: &Context, k: &KeepId, passwd: &str, group: &str) -> (Option<String>, Option<String>) {
    let host = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(ctx.maps.host_uid)).ok().flatten();
    let name = host.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| format!("user{}", k.uid));
    let home = host
        .as_ref()
        .map(|u| u.dir.display().to_string())
        .or_else(|| std::env::var("HOME").ok())
        .unwrap_or_else(|| "/".into());
    let has =
        |text: &str, id: u32| text.lines().any(|l| l.split(':').nth(2).and_then(|v| v.parse::<u32>().ok()) == Some(id));
    let with_line = |text: &str, line: String| {
        let mut t = text.to_string();
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(&line);
        t
    };
    let p = (!has(passwd, k.uid))
        .then(|| with_line(passwd, format!("{name}:*:{}:{}:{name}:{home}:/bin/sh\n", k.uid, k.gid)));
    let g = (!has(group, k.gid)).then(|| with_line(group, format!("{name}:x:{}:\n", k.gid)));
    (p, g)
}

/// Writes the keep-id passwd/group files into the container's directory; returns the binds.
pub fn write_keep_id_etc(
    store: &Store,
    id: &str,
    files: &(Option<String>, Option<String>),
) -> Result<Vec<(PathBuf, &'static str)>, ContainerError> {
    let dir = store.container_dir(id);
    let mut out = Vec::new();
    for (content, name, dest) in [(&files.0, "passwd", "/etc/passwd"), (&files.1, "group", "/etc/group")] {
        if let Some(c) = content {
            let p = dir.join(name);
            fs::write(&p, c).map_err(|e| ContainerError::Io(format!("writing {}: {e}", p.display())))?;
            out.push((p, dest));
        }
    }
    Ok(out)
}

/// Stops processes left serving a container's root filesystem: its fuse-overlayfs daemon when
/// its owner died, and one started by `nook mount`.
pub fn stop_helpers(ctx: &Context, rec: &ContainerRecord, st: &ContainerState) {
    for h in &st.helpers {
        if h.alive() {
            fuse::stop_daemon(h.pid, Duration::from_secs(5));
        }
    }
    if let Some(h) = mount_helper(ctx, &rec.id) {
        if h.alive() {
            fuse::stop_daemon(h.pid, Duration::from_secs(5));
        }
        let _ = fs::remove_file(mount_record(ctx, &rec.id));
    }
}

fn mount_record(ctx: &Context, id: &str) -> PathBuf {
    ctx.store.container_rundir(id).join("mount-helper.json")
}

fn mount_helper(ctx: &Context, id: &str) -> Option<HelperProcess> {
    serde_json::from_slice(&fs::read(mount_record(ctx, id)).ok()?).ok()
}

/// How a container's own tree is read by the helpers.
struct Tree {
    args: Vec<OsString>,
}

fn tree(ctx: &Context, rec: &ContainerRecord) -> Result<Tree, ContainerError> {
    let store = &ctx.store;
    if rec.rootfs.is_some() {
        return Err(ContainerError::Invalid(format!(
            "container {} runs an exploded root filesystem (--rootfs): it has no image layers to compare with",
            rec.short_id()
        )));
    }
    let kind = DriverKind::parse(&rec.driver)?;
    let dir = store.container_dir(&rec.id);
    let (k, t) = if kind.is_overlay() { ("upper", dir.join("upper")) } else { ("full", dir.join("rootfs")) };
    let mut args: Vec<OsString> = vec![k.into(), t.into_os_string()];
    // Stored shifted: vfs copies and kernel overlay over shifted layer copies.
    if let Some(kid) = &rec.keep_id
        && kind != DriverKind::FuseOverlayfs
    {
        args.push("--keep-id".into());
        args.push(kid.arg().into());
    }
    // Mount points the runtime created in the root filesystem are not the container's changes.
    if let Ok(spec) = super::load_spec(ctx, &rec.id) {
        for m in spec.mounts().as_deref().unwrap_or_default() {
            args.push("--exclude".into());
            args.push(m.destination().clone().into_os_string());
        }
    }
    args.push("--".into());
    for l in rec.layers.iter().rev() {
        if !store.has_layer(l) {
            return Err(ContainerError::Invalid(format!(
                "layer {l} of container {} is no longer in the store (its image was removed)",
                rec.short_id()
            )));
        }
        args.push(store.layer_diff(l)?.into_os_string());
    }
    Ok(Tree { args })
}

/// Runs a tree helper `op`, its stdout going to `stdout`; returns its error line on failure.
fn tree_helper(ctx: &Context, op: &str, t: &Tree, stdout: Stdio) -> Result<std::process::Child, ContainerError> {
    let mut args = vec![OsString::from(op)];
    args.extend(t.args.iter().cloned());
    Ok(crate::userns::spawn_helper(&ctx.maps, &HelperOp::Nook(args), false, |c| {
        c.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
    })?)
}

/// A tree helper's stdout; at its end, the helper's exit: a failed helper is a read error
/// with its message (so a cut stream is never stored as a layer).
struct HelperOutput(std::process::Child);

impl Read for HelperOutput {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.0.stdout.as_mut() {
            Some(out) => out.read(buf)?,
            None => 0,
        };
        if n > 0 {
            return Ok(n);
        }
        let mut err = Vec::new();
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        let status = self.0.wait()?;
        if status.success() { Ok(0) } else { Err(std::io::Error::other(helper_error(&err))) }
    }
}

fn helper_error(stderr: &[u8]) -> String {
    let msg = String::from_utf8_lossy(stderr);
    msg.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the helper failed without a message")
        .trim_start_matches("Error: ")
        .to_string()
}

/// `nook diff`: what the container changed, sorted by path.
pub fn diff(ctx: &Context, rec: &ContainerRecord) -> Result<Vec<Change>, ContainerError> {
    let t = tree(ctx, rec)?;
    let mut args = vec![OsString::from("changes")];
    args.extend(t.args);
    let out = run_helper(&ctx.maps, &args, Stdio::null(), false)?;
    serde_json::from_slice(&out).map_err(|e| ContainerError::Io(format!("reading the changes: {e}")))
}

/// `nook export`: the container's merged root filesystem as a tar, written to `out`.
pub fn export(ctx: &Context, rec: &ContainerRecord, out: Stdio) -> Result<(), ContainerError> {
    let t = match &rec.rootfs {
        // An exploded directory is its own tree.
        Some(dir) => Tree { args: vec!["full".into(), dir.clone().into_os_string(), "--".into()] },
        None => tree(ctx, rec)?,
    };
    let child = tree_helper(ctx, "export", &t, out)?;
    let o = child.wait_with_output().map_err(|e| ContainerError::Io(format!("waiting for the export: {e}")))?;
    if !o.status.success() {
        return Err(ContainerError::Io(format!("exporting {}: {}", rec.short_id(), helper_error(&o.stderr))));
    }
    Ok(())
}

/// What `nook commit` makes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Full name for the new image (`localhost/name:tag`), if any.
    pub name: Option<String>,
    /// `--change` instructions applied to the image config.
    pub changes: Vec<String>,
    /// `-m`: the history comment.
    pub message: Option<String>,
    /// `-a`: the author.
    pub author: Option<String>,
}

/// `nook commit`: the container's changes become a new layer on top of its image's layers.
pub fn commit(ctx: &Context, rec: &ContainerRecord, o: &CommitOptions) -> Result<ImageRecord, ContainerError> {
    let store = &ctx.store;
    let base_id = rec.image_id.clone().ok_or_else(|| {
        ContainerError::Invalid(format!("container {} was not created from an image (--rootfs)", rec.short_id()))
    })?;
    let base = store
        .images()?
        .into_iter()
        .find(|i| i.id == base_id)
        .ok_or_else(|| ContainerError::Invalid(format!("the image of container {} was removed", rec.short_id())))?;
    let t = tree(ctx, rec)?;
    // Validate the changes before the (possibly long) layer is written.
    let mut cfg: serde_json::Value = serde_json::from_slice(&store.get_blob(&base.config)?)
        .map_err(|e| ContainerError::Io(format!("reading the image config: {e}")))?;
    let mut runtime_cfg: oci_spec::image::Config =
        serde_json::from_value(cfg.get("config").cloned().unwrap_or(serde_json::json!({}))).unwrap_or_default();
    crate::image::config::apply_changes(&mut runtime_cfg, &o.changes).map_err(ContainerError::Invalid)?;

    let _g = store.lock_container(&rec.id)?;
    let writer = tree_helper(ctx, "layer-diff", &t, Stdio::piped())?;
    // The layer tar is kept as a blob too (for push and save), as `import` keeps its tarball.
    let kept = store
        .unpack_and_keep(&ctx.maps, &mut HelperOutput(writer), None)
        .map_err(|e| ContainerError::Io(format!("writing the layer of {}: {e}", rec.short_id())))?;
    let layer = kept.layer;
    let now = Utc::now();
    let created = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    cfg["created"] = serde_json::json!(created);
    if let Some(a) = &o.author {
        cfg["author"] = serde_json::json!(a);
    }
    cfg["config"] = serde_json::to_value(&runtime_cfg).map_err(|e| ContainerError::Io(e.to_string()))?;
    let mut layers = base.layers.clone();
    layers.push(layer.diff_id.clone());
    cfg["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": layers });
    let mut h = serde_json::json!({ "created": created, "created_by": format!("nook commit {}", rec.short_id()) });
    if let Some(m) = &o.message {
        h["comment"] = serde_json::json!(m);
    }
    if let Some(a) = &o.author {
        h["author"] = serde_json::json!(a);
    }
    match cfg.get_mut("history").and_then(|v| v.as_array_mut()) {
        Some(hist) => hist.push(h),
        None => cfg["history"] = serde_json::json!([h]),
    }
    let cfg_bytes = serde_json::to_vec(&cfg).map_err(|e| ContainerError::Io(e.to_string()))?;
    let cfg_digest = store.put_blob(&cfg_bytes)?;
    // The base image's layer descriptors as its manifest has them (their blobs are stored
    // under those digests), then the new layer's.
    let base_manifest: serde_json::Value = serde_json::from_slice(&store.get_blob(&base.manifest)?)
        .map_err(|e| ContainerError::Io(format!("reading the image manifest: {e}")))?;
    let mut descs: Vec<serde_json::Value> =
        base_manifest.get("layers").and_then(|l| l.as_array()).cloned().unwrap_or_default();
    descs.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": kept.blob,
        "size": kept.blob_size,
    }));
    let mut size = 0;
    for l in &layers {
        size += store.layer_record(l)?.size;
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cfg_digest,
            "size": cfg_bytes.len(),
        },
        "layers": descs,
    });
    let manifest_digest =
        store.put_blob(&serde_json::to_vec(&manifest).map_err(|e| ContainerError::Io(e.to_string()))?)?;
    let img = ImageRecord {
        id: cfg_digest.trim_start_matches("sha256:").to_string(),
        names: o.name.iter().cloned().collect(),
        digest: None,
        manifest: manifest_digest,
        config: cfg_digest,
        layers,
        created: now,
        size,
    };
    let _lock = store.lock(true)?;
    store.put_image(img.clone())?;
    Ok(img)
}

fn require_unshare(verb: &str) -> Result<(), ContainerError> {
    if crate::userns::inside_nook_userns() {
        return Ok(());
    }
    Err(ContainerError::Invalid(format!(
        "cannot run \"nook {verb}\" outside a user namespace: the mount would exist only there; run it inside `nook unshare` (e.g. nook unshare sh -c 'cd $(nook {verb} CONTAINER) && ls')"
    )))
}

/// Mount points of this mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let s = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    s.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape_mountinfo(p))).collect()
}

fn unescape_mountinfo(p: &str) -> String {
    let mut out = String::new();
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// `nook mount CONTAINER` (inside `nook unshare`): mounts the container's root filesystem in
/// this mount namespace; returns where. A running container gets a read-only view.
pub fn mount(ctx: &Context, rec: &ContainerRecord) -> Result<PathBuf, ContainerError> {
    require_unshare("mount")?;
    let store = &ctx.store;
    if let Some(d) = driver::host_rootfs_dir(store, rec) {
        return Ok(d);
    }
    let dir = store.container_dir(&rec.id);
    let target = dir.join("merged");
    if mount_points().contains(&target) {
        return Ok(target);
    }
    let running = is_running(&store.load_state(&rec.id)?);
    let kind = DriverKind::parse(&rec.driver)?;
    let setup = match (kind, running) {
        (DriverKind::Overlay, true) => {
            // The container's upper directory in use: only a read-only view on top of it.
            let mut lower = vec![dir.join("upper")];
            lower.extend(driver::lower_dirs(store, rec)?);
            let opts = crate::runtime::rootfs::overlay_options_ro(&store.root.join("layers"), &lower);
            std::env::set_current_dir(store.root.join("layers"))
                .map_err(|e| ContainerError::Io(format!("chdir to the layers: {e}")))?;
            let r = nix::mount::mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                nix::mount::MsFlags::MS_RDONLY,
                Some(opts.as_str()),
            );
            let _ = std::env::set_current_dir("/");
            r.map_err(|e| ContainerError::Io(format!("mounting a read-only view of {}: {e}", rec.short_id())))?;
            return Ok(target);
        }
        (DriverKind::FuseOverlayfs, true) => {
            return Err(ContainerError::Invalid(format!(
                "container {} is running on fuse-overlayfs; its root filesystem can only be mounted once it has stopped (nook export reads it while it runs)",
                rec.short_id()
            )));
        }
        _ => driver::rootfs_setup(store, &ctx.maps, rec)?,
    };
    let setup = match setup {
        RootfsSetup::FuseOverlay(mut f) => {
            // This namespace has the store's maps: the stored ids are shown as they are.
            f.uidmapping = None;
            f.gidmapping = None;
            f.volatile = false;
            crate::util::fs::create_dir_all_mode(&store.container_rundir(&rec.id), 0o700)
                .map_err(|e| ContainerError::Io(format!("creating the run directory: {e}")))?;
            RootfsSetup::FuseOverlay(f)
        }
        RootfsSetup::Overlay { layers_dir, lower, upper, work, target, .. } => {
            RootfsSetup::Overlay { layers_dir, lower, upper, work, target, volatile: false }
        }
        other => other,
    };
    let m = setup.mount().map_err(|e| ContainerError::Io(format!("mounting {}: {e}", rec.short_id())))?;
    if let Some(pid) = m.helper_pids.first() {
        let rec_json = serde_json::to_vec(&HelperProcess::of(*pid)).unwrap_or_default();
        let _ = crate::util::fs::write_atomic(&mount_record(ctx, &rec.id), &rec_json);
    }
    Ok(m.root)
}

/// `nook umount CONTAINER` (inside `nook unshare`).
pub fn umount(ctx: &Context, rec: &ContainerRecord) -> Result<(), ContainerError> {
    require_unshare("umount")?;
    let target = ctx.store.container_dir(&rec.id).join("merged");
    if driver::host_rootfs_dir(&ctx.store, rec).is_some() {
        return Ok(());
    }
    if !mount_points().contains(&target) {
        return Err(ContainerError::Invalid(format!("container {} is not mounted", rec.short_id())));
    }
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| ContainerError::Io(format!("unmounting {}: {e}", target.display())))?;
    if let Some(h) = mount_helper(ctx, &rec.id) {
        // The daemon exits once its mount is gone; make sure of it.
        if h.alive() {
            fuse::stop_daemon(h.pid, Duration::from_secs(5));
        }
        let _ = fs::remove_file(mount_record(ctx, &rec.id));
    }
    Ok(())
}

/// Containers mounted in this mount namespace, with their mount points.
pub fn mounted(ctx: &Context) -> Result<Vec<(ContainerRecord, PathBuf)>, ContainerError> {
    require_unshare("mount")?;
    let points = mount_points();
    Ok(ctx
        .store
        .containers()?
        .into_iter()
        .filter_map(|c| {
            let t = ctx.store.container_dir(&c.id).join("merged");
            points.contains(&t).then_some((c, t))
        })
        .collect())
}

/// `nook container cleanup`: for a container that is not running, stops what was left serving
/// its root filesystem (a fuse-overlayfs daemon whose owner died) and forgets it.
pub fn cleanup(ctx: &Context, rec: &ContainerRecord) -> Result<(), ContainerError> {
    let store = &ctx.store;
    let _g = store.lock_container(&rec.id)?;
    let mut st = store.load_state(&rec.id)?;
    if is_running(&st) {
        return Err(ContainerError::Invalid(format!("container {} is running", rec.short_id())));
    }
    stop_helpers(ctx, rec, &st);
    if !st.helpers.is_empty() {
        st.helpers.clear();
        store.save_state(&rec.id, &st)?;
    }
    Ok(())
}

impl From<crate::userns::UsernsError> for ContainerError {
    fn from(e: crate::userns::UsernsError) -> Self {
        ContainerError::Storage(StorageError::Userns(e))
    }
}
