use nook::container::{self, view};
use nook::context::Context;

/// `nook container prune`: removes every container that is not running.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not ask for confirmation (nook never asks).
    #[arg(short = 'f', long)]
    force: bool,
    /// Only containers matching these filters (as `ps --filter`: status, name, ancestor, label, id, exited).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let filters = view::Filters::parse(&a.filter).map_err(anyhow::Error::msg)?;
    ctx.store.collect_incomplete_containers(&ctx.maps);
    for e in view::entries(ctx)? {
        if e.status.state != "exited" && e.status.state != "created" || e.state.monitor_alive() {
            continue;
        }
        if !filters.matches(&e) {
            continue;
        }
        match container::remove(ctx, &e.rec, false) {
            Ok(()) => println!("{}", e.rec.id),
            Err(err) => eprintln!("Error: {err}"),
        }
    }
    Ok(0)
}
