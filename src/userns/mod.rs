//! User namespaces: the caller's subordinate ids, writing uid/gid maps, and running helper
//! processes (`nook unshare`, layer unpacking, tree removal) inside a user namespace.
//!
//! Container root is the caller; ids 1..N map to the caller's `/etc/subuid` and `/etc/subgid`
//! ranges, written by the setuid `newuidmap`/`newgidmap`. Without subordinate ids nook falls
//! back to a single-id map (root only) and keeps working.

mod helper;
mod idmap;
mod subid;

pub use helper::{HelperOp, helper_main, spawn_helper};
pub use idmap::{IdMap, IdMappings, MapSource, MapWriter, write_maps};
pub use subid::{SubIdRange, parse_subid};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("{tool} failed for pid {pid}: {msg}")]
    MapTool { tool: String, pid: i32, msg: String },
    #[error("cannot write {what} for pid {pid}: {source}")]
    MapWrite { what: &'static str, pid: i32, source: std::io::Error },
    #[error("cannot start {what}: {source}")]
    Spawn { what: String, source: std::io::Error },
    #[error("cannot run {cmd}: {source}")]
    Exec { cmd: String, source: std::io::Error },
    #[error("user namespace helper: {0}")]
    Helper(String),
}

impl UsernsError {
    /// podman's codes for a command that cannot be run: 127 not found, 126 not executable.
    pub fn exit_code(&self) -> i32 {
        match self {
            UsernsError::Exec { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            UsernsError::Exec { .. } => 126,
            _ => 125,
        }
    }
}

/// True when this process already runs inside a user namespace that nook made (`nook unshare`).
pub fn inside_nook_userns() -> bool {
    std::env::var_os("_NOOK_USERNS").is_some_and(|v| v == "1")
}
