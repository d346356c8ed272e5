use nook::container::lifecycle;
use nook::context::Context;

/// `nook kill [-s SIGNAL] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The signal to send (name or number).
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    /// Signal every running container.
    #[arg(short = 'a', long)]
    all: bool,
    /// Containers (names or IDs).
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let sig = nook::util::signal::parse(&a.signal).map_err(anyhow::Error::msg)?;
    let all: Option<fn(&nook::storage::ContainerState) -> bool> = a.all.then_some(nook::container::is_running);
    super::each(ctx, &a.containers, all, false, |rec| lifecycle::kill(ctx, rec, sig).map_err(Into::into))
}
