//! Where nook keeps things: storage root, run root, config directory.
//!
//! podman's rootless conventions with nook's own names:
//! - storage root `$XDG_DATA_HOME/nook` (default `~/.local/share/nook`)
//! - run root `$XDG_RUNTIME_DIR/nook`
//! - config `$XDG_CONFIG_HOME/nook`
//!
//! `XDG_RUNTIME_DIR` is often missing or wrong (su, ssh without logind, batch jobs). Then nook
//! uses a private 0700 directory under `$TMPDIR` (or /tmp) named for the uid, after checking
//! its owner and mode, and says so once. It never fails for this.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use etcetera::BaseStrategy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find the home directory: set HOME or XDG_DATA_HOME")]
    NoHome,
    #[error("cannot use {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
}

/// Why the run root is where it is (shown by `nook info`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RunRootSource {
    /// `--runroot` on the command line.
    Flag,
    /// `$XDG_RUNTIME_DIR/nook`.
    XdgRuntimeDir,
    /// `/run/user/<uid>/nook`: XDG_RUNTIME_DIR was unset but the login directory exists.
    RunUser,
    /// A private directory under `$TMPDIR` or /tmp because XDG_RUNTIME_DIR was unusable.
    Fallback { reason: String },
}

#[derive(Debug, Clone)]
pub struct Paths {
    /// Persistent storage: images, layers, containers.
    pub root: PathBuf,
    /// Runtime state, wiped at reboot.
    pub runroot: PathBuf,
    pub runroot_source: RunRootSource,
    /// User configuration (`storage.conf`, …).
    pub config: PathBuf,
    /// `$XDG_CONFIG_HOME` (for `containers/registries.conf` and friends).
    pub xdg_config: PathBuf,
}

impl Paths {
    /// Resolves every path from flags and the environment. Creates the run root (it must exist
    /// for the fallback checks) but not the storage root.
    pub fn resolve(root: Option<PathBuf>, runroot: Option<PathBuf>) -> Result<Paths, ConfigError> {
        let xdg = etcetera::choose_base_strategy().map_err(|_| ConfigError::NoHome)?;
        let root = match root {
            Some(r) => absolute(r),
            None => xdg.data_dir().join("nook"),
        };
        let uid = rustix::process::getuid().as_raw();
        let (runroot, runroot_source) = match runroot {
            Some(r) => {
                let r = absolute(r);
                crate::util::fs::create_dir_all_mode(&r, 0o700)
                    .map_err(|e| ConfigError::Dir { path: r.clone(), source: e })?;
                (r, RunRootSource::Flag)
            }
            None => runtime_dir(uid)?,
        };
        let xdg_config = xdg.config_dir();
        Ok(Paths { root, runroot, runroot_source, config: xdg_config.join("nook"), xdg_config })
    }

    /// The file that records which once-only notices this boot has already shown.
    fn notice_path(&self, key: &str) -> PathBuf {
        self.runroot.join("notices").join(key)
    }

    /// Prints `msg` on stderr unless it was already shown since the run root was created
    /// (in practice: once per boot). Returns whether it was printed.
    pub fn notice_once(&self, key: &str, msg: &str) -> bool {
        let p = self.notice_path(key);
        if p.exists() {
            return false;
        }
        let _ = fs::create_dir_all(self.runroot.join("notices"));
        // O_EXCL: when two commands race, exactly one of them prints.
        match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(_) => {
                eprintln!("nook: {msg}");
                true
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(_) => {
                eprintln!("nook: {msg}");
                true
            }
        }
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p) }
}

/// Checks that `dir` is a real directory owned by `uid` and not accessible to others.
/// A directory owned by us with a loose mode is tightened; anything else is refused.
fn check_private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let md = fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !md.file_type().is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if md.uid() != uid {
        return Err(format!("{} is owned by uid {}, not {uid}", dir.display(), md.uid()));
    }
    if md.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

fn runtime_dir(uid: u32) -> Result<(PathBuf, RunRootSource), ConfigError> {
    let reason = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(&v);
            if !p.is_absolute() {
                format!("XDG_RUNTIME_DIR={} is not an absolute path", p.display())
            } else {
                match fs::symlink_metadata(&p) {
                    Ok(md) if md.is_dir() && md.uid() == uid => {
                        let r = p.join("nook");
                        if let Err(e) = crate::util::fs::create_dir_all_mode(&r, 0o700) {
                            format!("cannot create {}: {e}", r.display())
                        } else {
                            return Ok((r, RunRootSource::XdgRuntimeDir));
                        }
                    }
                    Ok(md) if md.is_dir() => {
                        format!("XDG_RUNTIME_DIR={} is owned by uid {}, not {uid}", p.display(), md.uid())
                    }
                    Ok(_) => format!("XDG_RUNTIME_DIR={} is not a directory", p.display()),
                    Err(_) => format!("XDG_RUNTIME_DIR={} does not exist", p.display()),
                }
            }
        }
        _ => {
            // Same as podman: a logind-made /run/user/<uid> that we own is fine.
            let p = PathBuf::from(format!("/run/user/{uid}"));
            if check_private_dir(&p, uid).is_ok() {
                let r = p.join("nook");
                if crate::util::fs::create_dir_all_mode(&r, 0o700).is_ok() {
                    return Ok((r, RunRootSource::RunUser));
                }
            }
            "XDG_RUNTIME_DIR is not set".to_string()
        }
    };
    let mut bases: Vec<PathBuf> = Vec::new();
    if let Some(t) = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()).map(PathBuf::from)
        && t.is_absolute()
    {
        bases.push(t);
    }
    bases.push(PathBuf::from("/tmp"));
    let mut problems = Vec::new();
    for base in &bases {
        // A name taken by someone else is skipped, never trusted.
        for n in 0..4 {
            let name = if n == 0 { format!("nook-run-{uid}") } else { format!("nook-run-{uid}.{n}") };
            let dir = base.join(name);
            match fs::create_dir(&dir) {
                Ok(()) => {
                    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    problems.push(format!("{}: {e}", dir.display()));
                    break;
                }
            }
            match check_private_dir(&dir, uid) {
                Ok(()) => {
                    let reason = format!("{reason}; using {}", dir.display());
                    return Ok((dir, RunRootSource::Fallback { reason }));
                }
                Err(p) => problems.push(p),
            }
        }
    }
    // Last resort: inside the storage root's parent, which is private to the user.
    let xdg = etcetera::choose_base_strategy().map_err(|_| ConfigError::NoHome)?;
    let dir = xdg.data_dir().join("nook").join("run");
    crate::util::fs::create_dir_all_mode(&dir, 0o700).map_err(|e| ConfigError::Dir { path: dir.clone(), source: e })?;
    let reason = format!("{reason}; {}; using {}", problems.join("; "), dir.display());
    Ok((dir, RunRootSource::Fallback { reason }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_check_tightens_mode_and_refuses_files() {
        let d = tempfile::tempdir().unwrap();
        let uid = rustix::process::getuid().as_raw();
        let sub = d.path().join("x");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(&sub, uid).unwrap();
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o777, 0o700);
        let f = d.path().join("f");
        fs::write(&f, b"").unwrap();
        assert!(check_private_dir(&f, uid).is_err());
        assert!(check_private_dir(&sub, uid + 1).is_err());
    }
}
