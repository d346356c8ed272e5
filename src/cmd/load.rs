use std::path::PathBuf;

use nook::context::Context;
use nook::image::archive::load;

/// `nook load [-i FILE] [-q]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read from this file (default: stdin). docker-archive or oci-archive, plain, gzip or zstd.
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    /// Print nothing.
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let recs = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| anyhow::anyhow!("opening {}: {e}", p.display()))?;
            load(ctx, f)?
        }
        None => load(ctx, std::io::stdin().lock())?,
    };
    if !a.quiet {
        for r in recs {
            if r.names.is_empty() {
                println!("Loaded image: sha256:{}", r.id);
            }
            for n in &r.names {
                println!("Loaded image: {n}");
            }
        }
    }
    Ok(0)
}
