use nook::container::lifecycle::{self, Condition};
use nook::context::Context;

/// `nook wait [--condition C] CONTAINER...`: prints each container's exit code.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to wait for: exited/stopped (default), running, created.
    #[arg(long, value_name = "STATE", default_value = "stopped")]
    condition: String,
    /// How often to check, in milliseconds or with a unit (250ms, 1s).
    #[arg(short = 'i', long, default_value = "50ms")]
    interval: String,
    /// Containers (names or IDs).
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let cond = Condition::parse(&a.condition).map_err(anyhow::Error::msg)?;
    let interval = super::parse_duration(&a.interval)?;
    let recs = a.containers.iter().map(|c| ctx.store.find_container(c)).collect::<Result<Vec<_>, _>>()?;
    for rec in recs {
        println!("{}", lifecycle::wait(ctx, &rec.id, cond, interval)?);
    }
    Ok(0)
}
