//! Container records (`containers/<id>/container.json`), their state (`state.json`), per-container
//! locks, and unique names (`names/<name>`, created with O_EXCL).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::lock::{self, LockGuard};
use super::{StorageError, Store};
use crate::userns::IdMappings;

/// What a container is: fixed when it is created.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image_name: String,
    /// The image ID, or None for `--rootfs`.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Layer diff_ids of the image, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
    /// `--rootfs DIR`.
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    pub created: DateTime<Utc>,
    /// The command line as run (entrypoint + cmd), for display.
    pub command: Vec<String>,
    /// Storage driver that holds the container's root filesystem.
    pub driver: String,
    #[serde(default)]
    pub rm: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub interactive: bool,
    /// `none` or `host`.
    pub network: String,
    /// The fuse-overlayfs binary, for the fuse-overlayfs driver when it was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_program: Option<PathBuf>,
    /// `--userns=keep-id`: the container's maps put the caller at this uid and gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_id: Option<crate::userns::KeepId>,
    /// `--restart`: no, on-failure, always or unless-stopped.
    #[serde(default = "default_restart")]
    pub restart: String,
    /// `--restart on-failure:N`: at most N restarts (0: no limit).
    #[serde(default)]
    pub restart_max: u32,
    /// `--log-driver`: k8s-file or none.
    #[serde(default = "default_log_driver")]
    pub log_driver: String,
    /// `--log-opt max-size=`: rotate the log past this many bytes (0: never).
    #[serde(default)]
    pub log_max_size: u64,
    /// `--init`: a reaper runs as pid 1 and the command as its child.
    #[serde(default)]
    pub init: bool,
    /// The signal `stop` sends first (the image's StopSignal, or `--stop-signal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL (`--stop-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
}

fn default_restart() -> String {
    "no".into()
}

fn default_log_driver() -> String {
    "k8s-file".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Created,
    Running,
    Stopping,
    Exited,
}

impl ContainerStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopping => "stopping",
            ContainerStatus::Exited => "exited",
        }
    }
}

/// What a container is doing: written atomically by whoever owns the container process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// Host pid of the container process while running.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Start time of that process (clock ticks since boot), to detect pid reuse.
    #[serde(default)]
    pub pid_start: Option<u64>,
    /// Pid of the process that owns the container (the monitor).
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the container is in this state when it is unusual (start failure, lost monitor).
    #[serde(default)]
    pub error: Option<String>,
    /// Kernel boot id when the state was written: a running container from an earlier boot
    /// is exited.
    #[serde(default)]
    pub boot_id: Option<String>,
    /// Processes serving the root filesystem (fuse-overlayfs) while the container runs, with
    /// their start times: stopped by whoever finds them left over (rm, cleanup).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helpers: Vec<HelperProcess>,
    /// Start time of the monitor process, to recognise pid reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_start: Option<u64>,
    /// How often the restart policy restarted the container since it was started.
    #[serde(default)]
    pub restart_count: u32,
    /// The back-off before the next restart, while the monitor waits for it (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
    /// A user stopped (or removes) the container: the restart policy does not apply.
    #[serde(default)]
    pub stop_requested: bool,
    /// `nook restart` asked the monitor to start the container again once it exited.
    #[serde(default)]
    pub restart_requested: bool,
    /// Owned by a detached monitor (which applies restarts), not a foreground `nook run`.
    #[serde(default)]
    pub detached: bool,
}

/// A process serving a container's root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HelperProcess {
    pub pid: i32,
    /// Start time (clock ticks since boot), to recognise pid reuse.
    pub start: Option<u64>,
}

impl HelperProcess {
    pub fn of(pid: i32) -> HelperProcess {
        HelperProcess { pid, start: process_start_time(pid) }
    }

    /// Still the same process?
    pub fn alive(&self) -> bool {
        let now = process_start_time(self.pid);
        now.is_some() && (self.start.is_none() || now == self.start)
    }
}

impl ContainerState {
    pub fn created() -> Self {
        ContainerState {
            status: ContainerStatus::Created,
            pid: None,
            pid_start: None,
            monitor_pid: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            error: None,
            boot_id: boot_id(),
            helpers: Vec::new(),
            monitor_start: None,
            restart_count: 0,
            restart_delay_ms: None,
            stop_requested: false,
            restart_requested: false,
            detached: false,
        }
    }

    /// Is the container's monitor alive (the recorded pid, with its recorded start time)?
    pub fn monitor_alive(&self) -> bool {
        if self.boot_id.is_some() && self.boot_id != boot_id() {
            return false;
        }
        match (self.monitor_pid, self.monitor_start) {
            (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
            _ => false,
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once per process.
pub fn boot_id() -> Option<String> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string())).clone()
}

/// Start time of a process (field 22 of /proc/<pid>/stat), if it exists and has not exited
/// (a zombie waiting for a slow reaper is not running).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl ContainerRecord {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// Valid container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (podman's rule).
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Store {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// Run-root directory of a container (generated /etc files, sockets).
    pub fn container_rundir(&self, id: &str) -> PathBuf {
        self.runroot.join("containers").join(id)
    }

    /// Reserves `name` for `id`; fails if it is taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<(), StorageError> {
        if !valid_name(name) {
            return Err(StorageError::Other(format!(
                "invalid container name {name:?}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
            )));
        }
        let p = self.root.join("names").join(name);
        match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(mut f) => io::Write::write_all(&mut f, id.as_bytes()).map_err(|e| StorageError::io("writing name", e)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&p).unwrap_or_default();
                // A name left behind by a container that no longer exists is free again.
                if !owner.is_empty() && !self.container_dir(&owner).join("container.json").exists() {
                    let _ = fs::remove_file(&p);
                    return self.reserve_name(name, id);
                }
                Err(StorageError::NameInUse { name: name.to_string(), id: owner })
            }
            Err(e) => Err(StorageError::io(format!("reserving name {name}"), e)),
        }
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let p = self.root.join("names").join(name);
        if fs::read_to_string(&p).is_ok_and(|o| o == id) {
            let _ = fs::remove_file(p);
        }
    }

    /// Creates the container's directory and record. The caller holds the store lock. The
    /// returned lock on the container keeps cleanups away until creation is complete.
    pub fn create_container(&self, rec: &ContainerRecord) -> Result<LockGuard, StorageError> {
        let dir = self.container_dir(&rec.id);
        crate::util::fs::create_dir_all_mode(&dir, 0o700)
            .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        let guard = lock::lock_dir(&dir, true, Duration::ZERO, "a new container")?;
        // No state.json yet: a container without one is "created".
        let data = serde_json::to_vec_pretty(rec).map_err(|e| StorageError::Other(e.to_string()))?;
        // Written last: a directory without container.json is an incomplete container.
        crate::util::fs::write_atomic(&dir.join("container.json"), &data)
            .map_err(|e| StorageError::io("writing container.json", e))?;
        Ok(guard)
    }

    pub fn load_container(&self, id: &str) -> Result<ContainerRecord, StorageError> {
        let p = self.container_dir(id).join("container.json");
        match fs::read(&p) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| StorageError::Corrupt(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StorageError::ContainerNotFound(id.to_string())),
            Err(e) => Err(StorageError::io(format!("reading {}", p.display()), e)),
        }
    }

    pub fn save_container(&self, rec: &ContainerRecord) -> Result<(), StorageError> {
        let data = serde_json::to_vec_pretty(rec).map_err(|e| StorageError::Other(e.to_string()))?;
        crate::util::fs::write_atomic(&self.container_dir(&rec.id).join("container.json"), &data)
            .map_err(|e| StorageError::io("writing container.json", e))
    }

    /// Every complete container record.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StorageError> {
        let rd = fs::read_dir(self.root.join("containers")).map_err(|e| StorageError::io("listing containers", e))?;
        let mut v = Vec::new();
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            match self.load_container(&id) {
                Ok(r) => v.push(r),
                Err(StorageError::ContainerNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        v.sort_by_key(|c| std::cmp::Reverse(c.created));
        Ok(v)
    }

    /// Finds a container by name, full ID, or unique ID prefix.
    pub fn find_container(&self, input: &str) -> Result<ContainerRecord, StorageError> {
        if valid_name(input)
            && let Ok(id) = fs::read_to_string(self.root.join("names").join(input))
            && let Ok(r) = self.load_container(&id)
        {
            return Ok(r);
        }
        if input.len() == 64
            && let Ok(r) = self.load_container(input)
        {
            return Ok(r);
        }
        if !input.is_empty() && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            let rd =
                fs::read_dir(self.root.join("containers")).map_err(|e| StorageError::io("listing containers", e))?;
            let hits: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(input))
                .collect();
            match hits.len() {
                0 => {}
                1 => return self.load_container(&hits[0]),
                _ => return Err(StorageError::AmbiguousContainer(input.to_string())),
            }
        }
        Err(StorageError::ContainerNotFound(input.to_string()))
    }

    pub fn load_state(&self, id: &str) -> Result<ContainerState, StorageError> {
        let p = self.container_dir(id).join("state.json");
        match fs::read(&p) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| StorageError::Corrupt(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ContainerState::created()),
            Err(e) => Err(StorageError::io(format!("reading {}", p.display()), e)),
        }
    }

    pub fn save_state(&self, id: &str, st: &ContainerState) -> Result<(), StorageError> {
        let data = serde_json::to_vec(st).map_err(|e| StorageError::Other(e.to_string()))?;
        crate::util::fs::write_atomic(&self.container_dir(id).join("state.json"), &data)
            .map_err(|e| StorageError::io("writing state.json", e))
    }

    /// Changes a container's state under its lock: load, `f`, save. Returns what `f` returned.
    pub fn update_state<T>(&self, id: &str, f: impl FnOnce(&mut ContainerState) -> T) -> Result<T, StorageError> {
        let _g = self.lock_container(id)?;
        let mut st = self.load_state(id)?;
        let r = f(&mut st);
        self.save_state(id, &st)?;
        Ok(r)
    }

    /// The per-container lock (a flock on the container's directory), held while changing the
    /// container's state.
    pub fn lock_container(&self, id: &str) -> Result<LockGuard, StorageError> {
        Ok(lock::lock_dir(
            &self.container_dir(id),
            true,
            Duration::from_secs(60),
            &format!("the lock of container {}", &id[..12.min(id.len())]),
        )?)
    }

    /// Removes a container's record, name, run directory and files. The record goes first so
    /// the container disappears from listings at once even if the file removal is slow.
    pub fn remove_container(&self, rec: &ContainerRecord, maps: &IdMappings) -> Result<(), StorageError> {
        self.unregister_container(rec)?;
        self.delete_container_files(&rec.id, maps)
    }

    /// Removes a container's record and name: it no longer exists for any command. Its files
    /// stay until [`Store::delete_container_files`] (or a later cleanup) removes them.
    pub fn unregister_container(&self, rec: &ContainerRecord) -> Result<(), StorageError> {
        match fs::remove_file(self.container_dir(&rec.id).join("container.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("removing container.json", e)),
        }
        self.release_name(&rec.name, &rec.id);
        Ok(())
    }

    /// Deletes the files of an unregistered container.
    pub fn delete_container_files(&self, id: &str, maps: &IdMappings) -> Result<(), StorageError> {
        let _ = crate::storage::unpack::remove_tree(&self.container_rundir(id));
        self.remove_tree(&self.container_dir(id), maps)
    }

    /// Deletes the files of containers whose removal or creation was interrupted (a directory
    /// without a record that nobody holds locked).
    pub fn collect_incomplete_containers(&self, maps: &IdMappings) {
        for dir in self.incomplete_containers() {
            if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                let _ = self.delete_container_files(id, maps);
            }
        }
    }

    /// Container directories without a record (a create or remove that was interrupted) and
    /// not locked by anyone: safe to delete.
    pub fn incomplete_containers(&self) -> Vec<PathBuf> {
        let Ok(rd) = fs::read_dir(self.root.join("containers")) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| !p.join("container.json").exists())
            .filter(|p| lock::lock_dir(p, true, Duration::ZERO, "an incomplete container").is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("web") && valid_name("a.b_c-1") && valid_name("X"));
        assert!(!valid_name("") && !valid_name("-x") && !valid_name("a b") && !valid_name("a/b"));
    }

    #[test]
    fn start_time_of_self() {
        assert!(process_start_time(std::process::id() as i32).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
