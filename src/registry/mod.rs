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

/// `nook login`: checks the credentials against the registry (basic or token flow), then
/// stores them. `key` is a registry (`quay.io`) or a repository prefix (`quay.io/team`).
pub fn login(
    paths: &crate::config::Paths,
    key: &str,
    user: &str,
    password: &str,
    authfile: Option<std::path::PathBuf>,
    tls_verify: Option<bool>,
) -> Result<std::path::PathBuf, RegistryError> {
    let key = normalise_login_key(key)?;
    let registry = key.split('/').next().unwrap_or(&key).to_string();
    let conf = conf::RegistriesConf::load(&paths.xdg_config)?;
    let insecure = match tls_verify {
        Some(v) => !v,
        None => conf.insecure(&registry),
    };
    let client =
        Client::new(&ClientOptions { registry, insecure, creds: Some((user.to_string(), password.to_string())) });
    client.check_login()?;
    auth::AuthFiles::new(authfile, paths).store(&key, user, password)
}

/// `nook logout`: removes stored credentials; false when there were none.
pub fn logout(
    paths: &crate::config::Paths,
    key: Option<&str>,
    authfile: Option<std::path::PathBuf>,
) -> Result<bool, RegistryError> {
    let files = auth::AuthFiles::new(authfile, paths);
    match key {
        Some(k) => files.remove(&normalise_login_key(k)?),
        None => files.remove_all().map(|_| true),
    }
}

/// `https://quay.io/` → `quay.io`; `docker.io/library` stays; a bad host is refused.
fn normalise_login_key(k: &str) -> Result<String, RegistryError> {
    let k = k.trim().trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let k = match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        k => k,
    };
    let host = k.split('/').next().unwrap_or("");
    if host.is_empty() || k.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(RegistryError::Invalid(format!("invalid registry {k:?}")));
    }
    Ok(k.to_string())
}
