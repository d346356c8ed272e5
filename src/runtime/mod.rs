//! The container runtime: turns an OCI runtime [`Spec`](oci_spec::runtime::Spec) into a running
//! process in new user, mount, pid, uts and ipc namespaces (and net for `--network none`).
//!
//! It knows nothing of the CLI: callers give it a `Spec`, the id maps, a [`RootfsSetup`]
//! describing the root filesystem to mount inside the namespaces, and the stdio to use.
//!
//! Process shape (the caller is the *owner*: `nook run` in the foreground, later the monitor):
//! ```text
//! owner ──fork──> setup (unshare user+mount ns; the owner writes the maps while it prepares
//!   │                    the container, then sends the spec; setup mounts the rootfs;
//!   │                    unshare pid/uts/ipc[/net]) ──fork──> init (pid 1: mounts, pivot_root,
//!   │                                                         caps, exec the command)
//!   └── subreaper: init is re-parented to the owner when setup exits
//! ```

mod caps;
pub mod exec;
pub mod fuse;
mod init;
mod mounts;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod user;

pub use caps::{DEFAULT_CAPS, parse_cap};
pub use process::{Created, Pending, SpawnConfig, Stdio, begin};
pub use rootfs::{MountedRootfs, RootfsSetup, probe_overlay};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container command was not found (exit 127).
    #[error("{0}")]
    NotFound(String),
    /// The container command could not be invoked (exit 126).
    #[error("{0}")]
    CannotInvoke(String),
    /// Anything else while setting the container up (exit 125).
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
}

impl RuntimeError {
    /// podman's exit codes: 127 not found, 126 cannot invoke, 125 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::NotFound(_) => 127,
            RuntimeError::CannotInvoke(_) => 126,
            _ => 125,
        }
    }
}
