use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use nook::context::Context;
use nook::image::archive::{ArchiveFormat, save};

/// `nook save [-o FILE] [--format docker-archive|oci-archive] IMAGE...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write to this file (default: stdout, when it is not a terminal).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Archive format: docker-archive or oci-archive.
    #[arg(long, default_value = "docker-archive")]
    format: String,
    /// Accepted for podman compatibility (nook always writes every given image).
    #[arg(short = 'm', long = "multi-image-archive")]
    multi: bool,
    /// Print nothing.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Images (names or IDs).
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let _ = (a.multi, a.quiet);
    let format = ArchiveFormat::parse(&a.format)?;
    match &a.output {
        Some(p) => {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = dir.join(format!(".{name}.nook-tmp{}", std::process::id()));
            let r = (|| -> anyhow::Result<()> {
                let f = std::fs::File::create(&tmp).map_err(|e| anyhow::anyhow!("creating {}: {e}", tmp.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                save(&ctx.store, &a.images, format, &mut w)?;
                w.flush()?;
                std::fs::rename(&tmp, p).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
                Ok(())
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                anyhow::bail!("refusing to write an archive to a terminal; use -o FILE or redirect stdout");
            }
            let out = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, out.lock());
            save(&ctx.store, &a.images, format, &mut w)?;
            w.flush()?;
        }
    }
    Ok(0)
}
