use std::path::PathBuf;

use nook::context::Context;

/// `nook logout [-a] [REGISTRY]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove the credentials of every registry.
    #[arg(short = 'a', long)]
    all: bool,
    /// Credentials file (default: ${XDG_RUNTIME_DIR}/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The registry.
    #[arg(required_unless_present = "all")]
    registry: Option<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    if a.all {
        nook::registry::logout(&ctx.paths, None, a.authfile.clone())?;
        println!("Removed login credentials for all registries");
        return Ok(0);
    }
    let r = a.registry.as_deref().unwrap_or_default();
    if nook::registry::logout(&ctx.paths, Some(r), a.authfile.clone())? {
        println!("Removed login credentials for {r}");
        Ok(0)
    } else {
        anyhow::bail!("logging out of {r}: not logged in")
    }
}
