//! File locks (flock) with bounded waits.
//!
//! Each nook command is its own process; the store is guarded by `flock(2)` locks on files.
//! A lock is released when its `File` is dropped or the process dies (even by SIGKILL), so a
//! crashed command never leaves the store locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("timed out after {secs}s waiting for {what} ({path}); another nook command holds it")]
    Timeout { what: String, path: PathBuf, secs: u64 },
    #[error("locking {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

impl LockGuard {
    /// The locked file's descriptor. A child that inherits it (without close-on-exec) keeps
    /// the lock held until it exits too, even if this process dies first.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._file.as_raw_fd()
    }
}

/// How long commands wait for a lock before giving up.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Locks `path` (created if missing), waiting at most `timeout`. `what` names the lock in
/// messages ("the storage lock").
pub fn lock_file(path: &Path, exclusive: bool, timeout: Duration, what: &str) -> Result<LockGuard, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LockError::Open { path: path.to_path_buf(), source: e })?;
    wait_for_lock(file, path, exclusive, timeout, what)
}

/// Locks the directory `path` itself (no lock file to create or clean up).
pub fn lock_dir(path: &Path, exclusive: bool, timeout: Duration, what: &str) -> Result<LockGuard, LockError> {
    let file = File::open(path).map_err(|e| LockError::Open { path: path.to_path_buf(), source: e })?;
    wait_for_lock(file, path, exclusive, timeout, what)
}

fn wait_for_lock(
    file: File,
    path: &Path,
    exclusive: bool,
    timeout: Duration,
    what: &str,
) -> Result<LockGuard, LockError> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(500);
    let mut told = false;
    loop {
        let r = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match r {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(LockError::Lock { path: path.to_path_buf(), source: e }),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(LockError::Timeout { what: what.into(), path: path.to_path_buf(), secs: timeout.as_secs() });
        }
        if !told && waited > Duration::from_secs(3) {
            eprintln!("nook: waiting for {what} ({}), held by another nook command", path.display());
            told = true;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Takes the lock only if it is free right now.
pub fn try_lock_file(path: &Path) -> Result<Option<LockGuard>, LockError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LockError::Open { path: path.to_path_buf(), source: e });
        }
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(LockError::Lock { path: path.to_path_buf(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_times_out_with_a_message() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        let g = lock_file(&p, true, Duration::from_secs(1), "the test lock").unwrap();
        let e = lock_file(&p, false, Duration::from_millis(50), "the test lock").unwrap_err().to_string();
        assert!(e.contains("timed out") && e.contains("the test lock"), "{e}");
        assert!(try_lock_file(&p).unwrap().is_none());
        drop(g);
        let dg = lock_dir(d.path(), true, Duration::from_secs(1), "the dir").unwrap();
        assert!(lock_dir(d.path(), true, Duration::from_millis(30), "the dir").is_err());
        drop(dg);
        let _a = lock_file(&p, false, Duration::from_secs(1), "x").unwrap();
        let _b = lock_file(&p, false, Duration::from_secs(1), "x").unwrap();
    }
}
