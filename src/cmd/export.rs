use std::path::PathBuf;
use std::process::Stdio;

use nook::container::layer::export;
use nook::context::Context;

/// `nook export [-o FILE] CONTAINER`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// The container (name or ID).
    container: String,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let rec = ctx.store.find_container(&a.container)?;
    let out = match &a.output {
        Some(p) => Stdio::from(std::fs::File::create(p).map_err(|e| anyhow::anyhow!("creating {}: {e}", p.display()))?),
        None => {
            if rustix::termios::isatty(rustix::stdio::stdout()) {
                anyhow::bail!("refusing to export to a terminal: use -o FILE or redirect stdout");
            }
            Stdio::inherit()
        }
    };
    export(ctx, &rec, out)?;
    Ok(0)
}
