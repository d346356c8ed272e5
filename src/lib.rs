//! nook: a rootless, daemonless, per-user container manager.
//!
//! The library holds everything but the command line (`src/cmd/`, in the binary), so the
//! arrows run one way: commands call into these modules, never the reverse.

pub mod cgroup;
pub mod config;
pub mod container;
pub mod context;
pub mod helpers;
pub mod image;
pub mod monitor;
pub mod net;
pub mod registry;
pub mod runtime;
pub mod storage;
pub mod userns;
pub mod util;

/// nook's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
