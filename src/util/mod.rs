//! Small helpers shared by the library: ids, human-readable output, atomic files.

pub mod fmt;
pub mod fs;
pub mod id;
pub mod signal;
pub mod template;
