//! vfs: a full copy of the image's layers per container, whiteouts and opaque directories
//! applied.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::storage::layerfs::{Shift, finish_meta, is_opaque_dir, is_whiteout_dev};
use crate::storage::unpack::remove_tree;

/// Copies `layers` (bottom first) into `dest`, applying whiteouts and opaque directories.
/// Runs as root of the user namespace so ownership is kept (or shifted for a keep-id
/// container with `shift`).
pub fn copy_layers(dest: &Path, layers: &[PathBuf], shift: Shift) -> io::Result<()> {
    for l in layers {
        let mut links = HashMap::new();
        apply(l, dest, &mut links, shift)?;
    }
    // The root directory as the top layer has it (owned by root of the container).
    if let Some(top) = layers.last() {
        finish_meta(dest, &fs::symlink_metadata(top)?, shift, false)?;
    }
    Ok(())
}

fn apply(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>, shift: Shift) -> io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        let s = e.path();
        let d = dst.join(e.file_name());
        let md = fs::symlink_metadata(&s)?;
        if is_whiteout_dev(&md) {
            remove_tree(&d)?;
            continue;
        }
        let existing = fs::symlink_metadata(&d).ok();
        if md.is_dir() {
            match existing {
                Some(x) if x.is_dir() && !is_opaque_dir(&s) => {}
                Some(_) => {
                    remove_tree(&d)?;
                    fs::create_dir(&d)?;
                }
                None => fs::create_dir(&d)?,
            }
            apply(&s, &d, links, shift)?;
            finish_meta(&d, &md, shift, false)?;
            continue;
        }
        if existing.is_some() {
            remove_tree(&d)?;
        }
        if md.nlink() > 1 && !md.is_dir() {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &d)?;
                continue;
            }
            links.insert((md.dev(), md.ino()), d.clone());
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            finish_meta(&d, &md, shift, true)?;
        } else if ft.is_file() {
            fs::copy(&s, &d)?;
            finish_meta(&d, &md, shift, false)?;
        } else if ft.is_fifo() {
            nix::unistd::mkfifo(&d, nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777))
                .map_err(io::Error::from)?;
            finish_meta(&d, &md, shift, false)?;
        }
        // Device nodes other than whiteouts cannot exist in an unprivileged store.
    }
    Ok(())
}
