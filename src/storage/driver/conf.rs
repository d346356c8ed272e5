//! `$XDG_CONFIG_HOME/nook/storage.conf`: the storage driver, in podman's `storage.conf` format
//! (only the keys that mean the same thing for nook are read; the rest are ignored).
//!
//! ```toml
//! [storage]
//! driver = "overlay"          # overlay, fuse-overlayfs or vfs
//!
//! [storage.options.overlay]
//! mount_program = "/usr/bin/fuse-overlayfs"   # podman's way to ask for fuse-overlayfs
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    storage: Storage,
}

#[derive(Debug, Default, Deserialize)]
struct Storage {
    driver: Option<String>,
    #[serde(default)]
    options: Options,
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    /// Old location of `mount_program` (containers-storage accepts both).
    mount_program: Option<String>,
    #[serde(default)]
    overlay: Overlay,
}

#[derive(Debug, Default, Deserialize)]
struct Overlay {
    mount_program: Option<String>,
}

/// The driver a storage.conf asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// `overlay`, `fuse-overlayfs` or `vfs` (already mapped from podman's keys).
    pub driver: String,
    /// The fuse-overlayfs binary, when `mount_program` names one.
    pub program: Option<PathBuf>,
    pub file: PathBuf,
}

/// Reads `dir/storage.conf`. `Ok(None)` when it does not exist or names no driver.
pub fn read(dir: &Path) -> Result<Option<Configured>, String> {
    let file = dir.join("storage.conf");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", file.display())),
    };
    parse(&text, &file)
}

fn parse(text: &str, file: &Path) -> Result<Option<Configured>, String> {
    let f: File = toml::from_str(text).map_err(|e| {
        let msg = e.to_string();
        format!("{}: {}", file.display(), msg.lines().next().unwrap_or("invalid TOML"))
    })?;
    let program = f.storage.options.overlay.mount_program.or(f.storage.options.mount_program).filter(|p| !p.is_empty());
    let Some(driver) = f.storage.driver.filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let driver = match (driver.as_str(), &program) {
        ("overlay" | "overlay2", Some(_)) => "fuse-overlayfs".to_string(),
        _ => driver,
    };
    Ok(Some(Configured { driver, program: program.map(PathBuf::from), file: file.to_path_buf() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<Configured> {
        parse(s, Path::new("/c/storage.conf")).unwrap()
    }

    #[test]
    fn podman_keys() {
        let c = p("[storage]\ndriver = \"overlay\"\ngraphroot = \"/x\"\n[storage.options]\nadditionalimagestores = [\n]\n[storage.options.overlay]\nmount_program = \"/usr/bin/fuse-overlayfs\"\nmountopt = \"nodev\"\n").unwrap();
        assert_eq!(c.driver, "fuse-overlayfs");
        assert_eq!(c.program.as_deref(), Some(Path::new("/usr/bin/fuse-overlayfs")));
        assert_eq!(p("[storage]\ndriver = \"overlay\"\n").unwrap().driver, "overlay");
        assert_eq!(p("[storage]\ndriver = \"vfs\"\n").unwrap().driver, "vfs");
        assert_eq!(p("# nothing\n[storage]\nrunroot = \"/r\"\n"), None);
        assert_eq!(p(""), None);
        assert!(parse("[storage\n", Path::new("/c/storage.conf")).unwrap_err().contains("/c/storage.conf"));
    }

    #[test]
    fn missing_file_is_no_choice() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
    }
}
