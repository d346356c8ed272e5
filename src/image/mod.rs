//! Images: references, image configs, and making images from local tarballs (`nook import`).
//! Registry transfers (pull, push, save, load) come with the registry issue.

pub mod config;
pub mod import;
pub mod reference;

pub use config::{ImageDefaults, load_config};
