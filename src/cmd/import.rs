use std::path::PathBuf;

use nook::context::Context;
use nook::image::import::{ImportOptions, ImportSource, import};
use nook::image::reference::local_name;

/// `nook import FILE|- [NAME[:TAG]]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, …).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message recorded in the image history.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Tarball to import (plain, gzip or zstd), or - for stdin.
    file: String,
    /// Name for the image (default: untagged).
    name: Option<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let name = a.name.as_deref().map(local_name).transpose()?;
    let source = if a.file == "-" { ImportSource::Stdin } else { ImportSource::File(PathBuf::from(&a.file)) };
    let rec = import(ctx, &ImportOptions { source, name, changes: a.change.clone(), message: a.message.clone() })?;
    let _ = a.quiet;
    println!("{}", rec.id);
    Ok(0)
}
