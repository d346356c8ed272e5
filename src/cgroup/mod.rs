//! What the host offers for resource control: cgroup version and whether a systemd user
//! manager can delegate a subtree. Limits themselves come with the cgroup issue; until then
//! nook runs containers without limits and says why where that matters.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V2,
    V1,
    /// v1 controllers with a cgroup2 hierarchy at /sys/fs/cgroup/unified.
    Hybrid,
    Unknown,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CgroupInfo {
    pub version: CgroupVersion,
    /// `systemd` when a user manager is reachable, else `none`.
    pub manager: String,
    /// Controllers available in our cgroup (v2 only).
    pub controllers: Vec<String>,
    /// Whether resource limits could be applied here.
    pub limits_available: bool,
    pub detail: String,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn fs_type(p: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(p).ok().map(|s| s.filesystem_type().0)
}

pub fn detect() -> CgroupInfo {
    let version = match fs_type(Path::new("/sys/fs/cgroup")) {
        Some(CGROUP2_SUPER_MAGIC) => CgroupVersion::V2,
        Some(TMPFS_MAGIC) => {
            if fs_type(Path::new("/sys/fs/cgroup/unified")) == Some(CGROUP2_SUPER_MAGIC) {
                CgroupVersion::Hybrid
            } else {
                CgroupVersion::V1
            }
        }
        _ => CgroupVersion::Unknown,
    };
    let systemd = Path::new("/run/systemd/system").is_dir();
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).join("bus").exists());
    let manager = if systemd && bus { "systemd" } else { "none" }.to_string();
    let mut controllers = Vec::new();
    if version == CgroupVersion::V2
        && let Ok(own) = std::fs::read_to_string("/proc/self/cgroup")
        && let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::"))
        && let Ok(c) = std::fs::read_to_string(
            Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')).join("cgroup.controllers"),
        )
    {
        controllers = c.split_whitespace().map(str::to_string).collect();
    }
    let (limits_available, detail) = match (&version, manager.as_str()) {
        (CgroupVersion::V2, "systemd") => {
            (false, "cgroup v2 with a systemd user manager; resource limits are not implemented yet".to_string())
        }
        (CgroupVersion::V2, _) => (false, "cgroup v2 without a systemd user manager to delegate a subtree".to_string()),
        (CgroupVersion::Hybrid, _) => {
            (false, "hybrid cgroup hierarchy (v1 controllers): rootless resource limits need cgroup v2".to_string())
        }
        (CgroupVersion::V1, _) => (false, "cgroup v1: rootless resource limits need cgroup v2".to_string()),
        (CgroupVersion::Unknown, _) => (false, "no cgroup filesystem at /sys/fs/cgroup".to_string()),
    };
    CgroupInfo { version, manager, controllers, limits_available, detail }
}
