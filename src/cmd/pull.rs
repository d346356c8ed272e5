use std::path::PathBuf;

use nook::context::Context;
use nook::image::progress::Progress;
use nook::image::pull::{PullOptions, pull};

/// `nook pull [--platform OS/ARCH[/VARIANT]] [--tls-verify=false] [--authfile F] [-q] IMAGE`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pull the image for this platform (os/arch[/variant]) from an index; default: the host's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Require HTTPS and verify certificates (false: allow plain HTTP and unverified TLS).
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tls_verify: Option<bool>,
    /// Credentials file (default: ${XDG_RUNTIME_DIR}/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Credentials USERNAME:PASSWORD for the registry.
    #[arg(long, value_name = "USER:PASS")]
    creds: Option<String>,
    /// Print nothing but the image ID.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Image reference: [REGISTRY/]REPOSITORY[:TAG|@DIGEST].
    image: String,
}

pub fn parse_creds(c: &Option<String>) -> anyhow::Result<Option<(String, String)>> {
    match c {
        None => Ok(None),
        Some(c) => match c.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Some((u.to_string(), p.to_string()))),
            _ => anyhow::bail!("invalid --creds {c:?}: expected USERNAME:PASSWORD"),
        },
    }
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let opts = PullOptions {
        reference: a.image.clone(),
        platform: a.platform.clone(),
        tls_verify: a.tls_verify,
        authfile: a.authfile.clone(),
        creds: parse_creds(&a.creds)?,
    };
    let rec = pull(ctx, &opts, &Progress::new(a.quiet))?;
    println!("{}", rec.id);
    Ok(0)
}
