//! Mounting a container's root filesystem inside its user and mount namespaces.
//!
//! Storage drivers describe *what* to mount ([`RootfsSetup`], plain data that crosses the
//! process boundary to the setup process); this module knows *how*.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A root filesystem to mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RootfsSetup {
    /// A directory, bound onto itself (a vfs copy, or `--rootfs DIR`).
    Bind { dir: PathBuf },
    /// Kernel overlayfs with `userxattr`: `lower` (top first) under `upper`, mounted at `target`.
    Overlay {
        /// Lower paths under this directory are passed relative to it after a chdir (the mount
        /// options string is limited to one page).
        layers_dir: PathBuf,
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
        /// Skip syncs (transient `--rm` containers).
        volatile: bool,
    },
}

/// A mounted root filesystem.
#[derive(Debug, Clone)]
pub struct MountedRootfs {
    /// The directory that becomes `/`.
    pub root: PathBuf,
    /// Helper processes serving the mount, stopped after the container exits.
    pub helper_pids: Vec<i32>,
}

/// Escapes `\`, `,` and `:` in a path for overlay mount options.
pub fn escape_overlay_path(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "\\\\").replace(',', "\\,").replace(':', "\\:")
}

/// The overlay mount options for `lower` (top first, each relative to `base` when under it).
pub fn overlay_options(base: &Path, lower: &[PathBuf], upper: &Path, work: &Path, volatile: bool) -> String {
    let lower: Vec<String> = lower.iter().map(|l| escape_overlay_path(l.strip_prefix(base).unwrap_or(l))).collect();
    let mut o = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        escape_overlay_path(upper),
        escape_overlay_path(work)
    );
    if volatile {
        o.push_str(",volatile");
    }
    o
}

impl RootfsSetup {
    /// Mounts it. Called in the container's user and mount namespaces, as root of the user
    /// namespace, before `pivot_root`.
    pub fn mount(&self) -> Result<MountedRootfs, String> {
        match self {
            RootfsSetup::Bind { dir } => {
                nix::mount::mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| format!("bind-mounting {}: {e}", dir.display()))?;
                Ok(MountedRootfs { root: dir.clone(), helper_pids: Vec::new() })
            }
            RootfsSetup::Overlay { layers_dir, lower, upper, work, target, volatile } => {
                std::env::set_current_dir(layers_dir).map_err(|e| format!("chdir {}: {e}", layers_dir.display()))?;
                if *volatile {
                    // A volatile upper dir left by an unclean shutdown must be cleared before reuse.
                    let _ = fs::remove_dir_all(work.join("work/incompat"));
                }
                let opts = overlay_options(layers_dir, lower, upper, work, *volatile);
                nix::mount::mount(
                    Some("overlay"),
                    target,
                    Some("overlay"),
                    nix::mount::MsFlags::empty(),
                    Some(opts.as_str()),
                )
                .map_err(|e| format!("mounting overlay on {}: {e}", target.display()))?;
                let _ = std::env::set_current_dir("/");
                Ok(MountedRootfs { root: target.clone(), helper_pids: Vec::new() })
            }
        }
    }
}

/// Run in a user + mount namespace: checks that overlay with `userxattr` mounts in `dir` and
/// that removing a lower directory works (it fails with EIO without `userxattr`).
pub fn probe_overlay(dir: &Path) -> Result<(), String> {
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()));
    let (l, u, w, m) = (dir.join("l"), dir.join("u"), dir.join("w"), dir.join("m"));
    for p in [&l, &u, &w, &m] {
        mk(p)?;
    }
    mk(&l.join("d/sub"))?;
    fs::write(l.join("f"), b"x").map_err(|e| e.to_string())?;
    // As the real mount does: lower directories relative to a base we chdir into.
    std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
    let opts = overlay_options(dir, std::slice::from_ref(&l), &u, &w, false);
    nix::mount::mount(Some("overlay"), &m, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| format!("mount -t overlay: {e}"))?;
    let r = (|| {
        fs::remove_dir_all(m.join("d")).map_err(|e| format!("removing a lower directory: {e}"))?;
        fs::create_dir(m.join("d")).map_err(|e| format!("recreating it: {e}"))?;
        fs::write(m.join("f"), b"y").map_err(|e| format!("copy-up: {e}"))?;
        Ok(())
    })();
    let c = CString::new(m.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let _ = nix::mount::umount2(c.as_c_str(), nix::mount::MntFlags::MNT_DETACH);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_relative_and_escaped() {
        let o = overlay_options(
            Path::new("/s/layers"),
            &[PathBuf::from("/s/layers/b/diff"), PathBuf::from("/s/layers/a/diff")],
            Path::new("/c/up,per"),
            Path::new("/c/work"),
            true,
        );
        assert_eq!(o, "lowerdir=b/diff:a/diff,upperdir=/c/up\\,per,workdir=/c/work,userxattr,volatile");
    }

    #[test]
    fn setups_cross_process_boundaries_as_json() {
        let s = RootfsSetup::Bind { dir: "/x".into() };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RootfsSetup>(&j).unwrap(), s);
    }
}
