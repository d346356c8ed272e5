use nook::container::view::{self, LogOptions};
use nook::context::Context;

/// `nook logs [-f] [--tail N] [--since T] [--until T] [-t] [-n] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keep printing new output until the container exits (across restarts).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<i64>,
    /// Only lines since this time (RFC 3339, unix seconds, or a duration such as 10m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only lines until this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Show timestamps.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Prefix each line with the container's name.
    #[arg(short = 'n', long)]
    names: bool,
    /// Containers (names or IDs).
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let recs = a.containers.iter().map(|c| ctx.store.find_container(c)).collect::<Result<Vec<_>, _>>()?;
    let o = LogOptions {
        follow: a.follow,
        tail: a.tail.filter(|n| *n >= 0).map(|n| n as usize),
        since: a.since.as_deref().map(view::parse_time).transpose().map_err(anyhow::Error::msg)?,
        until: a.until.as_deref().map(view::parse_time).transpose().map_err(anyhow::Error::msg)?,
        timestamps: a.timestamps,
        names: a.names,
    };
    view::print_logs(ctx, &recs, &o)?;
    Ok(0)
}
