//! Kernel overlayfs in the user namespace (`userxattr`, Linux 5.11+).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::runtime::{MountedRootfs, RootfsMount};

/// Mounts `lower` (top first) + `upper` at `target`.
#[derive(Debug, Clone)]
pub struct OverlayMount {
    /// Lower paths under this directory are passed relative to it (the options string is
    /// limited to a page), after a chdir.
    pub layers_dir: PathBuf,
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// Skip syncs (transient `--rm` containers).
    pub volatile: bool,
}

fn escape(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "\\\\").replace(',', "\\,").replace(':', "\\:")
}

impl OverlayMount {
    fn options(&self) -> String {
        let lower: Vec<String> =
            self.lower.iter().map(|l| escape(l.strip_prefix(&self.layers_dir).unwrap_or(l))).collect();
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            lower.join(":"),
            escape(&self.upper),
            escape(&self.work)
        );
        if self.volatile {
            o.push_str(",volatile");
        }
        o
    }
}

impl RootfsMount for OverlayMount {
    fn mount(&self) -> Result<MountedRootfs, String> {
        std::env::set_current_dir(&self.layers_dir).map_err(|e| format!("chdir {}: {e}", self.layers_dir.display()))?;
        // A volatile upper dir left by an unclean shutdown must be cleared before reuse.
        let _ = fs::remove_dir_all(self.work.join("work/incompat"));
        let opts = self.options();
        nix::mount::mount(
            Some("overlay"),
            &self.target,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|e| format!("mounting overlay on {}: {e}", self.target.display()))?;
        let _ = std::env::set_current_dir("/");
        Ok(MountedRootfs { root: self.target.clone(), helper_pids: Vec::new() })
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
    let opts = format!("lowerdir={},upperdir={},workdir={},userxattr", escape(&l), escape(&u), escape(&w));
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
