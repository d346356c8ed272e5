//! Talking to image registries (the OCI distribution API): a small blocking client over
//! `ureq`, credentials (`auth.json`, `~/.docker/config.json`), and `registries.conf`.
//!
//! Blocking on purpose: a pull runs in its own process (`nook pull`, or a child of `nook run`),
//! downloads layers on plain threads, and never needs an async runtime. Every request has a
//! connect timeout and a per-read idle timeout, so a silent registry cannot hang a command.

pub mod auth;
mod client;
pub mod conf;
pub mod media;

pub use client::{BlobReader, Client, ClientOptions, Manifest};

use crate::image::reference::ReferenceError;
use crate::storage::StorageError;

/// Largest manifest or index accepted (distribution refuses larger ones too).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config accepted.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("cannot connect to {registry}: {why}")]
    Connect { registry: String, why: String },
    #[error("{what}: authentication required{hint}")]
    Unauthorized { what: String, hint: String },
    #[error("{what}: access denied (403){detail}")]
    Forbidden { what: String, detail: String },
    #[error("{what}: not found (404){detail}")]
    NotFound { what: String, detail: String },
    #[error("{what}: the registry answered {status}{detail}")]
    Status { what: String, status: u16, detail: String },
    #[error("{what}: {why}")]
    Transfer { what: String, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RegistryError {
    /// True for errors worth trying the next mirror or search registry for.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}
