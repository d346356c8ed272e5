//! What every command needs: paths, the store, and the id maps.

use crate::config::{Paths, RunRootSource};
use crate::storage::{StorageError, Store};
use crate::userns::{IdMappings, MapSource};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Context {
    pub paths: Paths,
    pub store: Store,
    pub maps: IdMappings,
    /// `--storage-driver` / `NOOK_STORAGE_DRIVER`.
    pub storage_driver: Option<String>,
}

impl Context {
    pub fn new(
        root: Option<std::path::PathBuf>,
        runroot: Option<std::path::PathBuf>,
        storage_driver: Option<String>,
    ) -> Result<Context, ContextError> {
        let paths = Paths::resolve(root, runroot)?;
        if let RunRootSource::Fallback { reason } = &paths.runroot_source {
            paths.notice_once("runroot-fallback", reason);
        }
        let store = Store::open(&paths)?;
        let maps = IdMappings::for_current_user();
        Ok(Context { paths, store, maps, storage_driver })
    }

    /// Says once (per boot) that only one id is mapped, and why.
    pub fn notice_single_id(&self) {
        if let MapSource::SingleId { reason } = &self.maps.source
            && rustix::process::getuid().as_raw() != 0
        {
            self.paths.notice_once(
                "single-id-map",
                &format!("only your own uid is mapped into containers (as root): {reason}. Images whose files belong to other users are given to root"),
            );
        }
    }
}
