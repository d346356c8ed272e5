use nook::container::lifecycle;
use nook::context::Context;

/// `nook stop [-t N] [--all] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10).
    #[arg(short = 't', long = "time", alias = "timeout", value_name = "SECONDS")]
    time: Option<u32>,
    /// Stop every running container.
    #[arg(short = 'a', long)]
    all: bool,
    /// Ignore containers that do not exist.
    #[arg(short = 'i', long)]
    ignore: bool,
    /// Containers (names or IDs).
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    // --all: the running ones (and those a monitor is starting or restarting).
    let all: Option<fn(&nook::storage::ContainerState) -> bool> =
        a.all.then_some(|s| nook::container::is_running(s) || s.monitor_alive());
    super::each(ctx, &a.containers, all, a.ignore, |rec| lifecycle::stop(ctx, rec, a.time).map_err(Into::into))
}
