use std::path::PathBuf;

use nook::context::Context;
use nook::image::progress::Progress;
use nook::image::push::{PushOptions, push};

/// `nook push [OPTIONS] IMAGE [DESTINATION]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Require HTTPS and verify certificates (false: allow plain HTTP and unverified TLS).
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tls_verify: Option<bool>,
    /// Credentials file (default: ${XDG_RUNTIME_DIR}/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Credentials USERNAME:PASSWORD for the registry.
    #[arg(long, value_name = "USER:PASS")]
    creds: Option<String>,
    /// Write the manifest digest to this file.
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    /// Print no progress.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The stored image (name or ID).
    image: String,
    /// Where to: [docker://]REGISTRY/REPOSITORY[:TAG] (default: the image's name).
    destination: Option<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let opts = PushOptions {
        image: a.image.clone(),
        dest: a.destination.clone(),
        tls_verify: a.tls_verify,
        authfile: a.authfile.clone(),
        creds: super::pull::parse_creds(&a.creds)?,
    };
    let (_dest, digest) = push(ctx, &opts, &Progress::new(a.quiet))?;
    if let Some(f) = &a.digestfile {
        std::fs::write(f, &digest).map_err(|e| anyhow::anyhow!("writing {}: {e}", f.display()))?;
    }
    Ok(0)
}
