use nook::container::lifecycle;
use nook::context::Context;

/// `nook restart [-t N] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
    time: Option<u32>,
    /// Restart every container.
    #[arg(short = 'a', long)]
    all: bool,
    /// Containers (names or IDs).
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    super::each(ctx, &a.containers, a.all.then_some(|_| true), false, |rec| {
        lifecycle::restart(ctx, rec, a.time).map_err(Into::into)
    })
}
