//! Images: references, image configs, and making images from local tarballs (`nook import`).
//! Registry transfers: `pull`, `push`; archives: `save`, `load` (`archive`).

pub mod archive;
pub mod config;
pub mod import;
pub mod manage;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;

pub use config::{ImageDefaults, load_config};
