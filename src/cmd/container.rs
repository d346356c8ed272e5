use nook::container::layer::cleanup;
use nook::context::Context;

/// `nook container …`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Stop what is left serving the root filesystems of stopped containers (fuse-overlayfs
    /// daemons whose owner died).
    Cleanup(CleanupArgs),
    /// Run a command in a running container.
    Exec(super::exec::Args),
    /// Show the processes of a running container.
    Top(super::top::Args),
}

#[derive(clap::Args, Debug)]
pub struct CleanupArgs {
    /// Clean up every stopped container.
    #[arg(short = 'a', long)]
    all: bool,
    /// Also remove the containers.
    #[arg(long)]
    rm: bool,
    /// Containers (names or IDs).
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    match &a.command {
        Sub::Cleanup(c) => cleanup_cmd(ctx, c),
        Sub::Exec(e) => super::exec::run(ctx, e),
        Sub::Top(t) => super::top::run(ctx, t),
    }
}

fn cleanup_cmd(ctx: &Context, a: &CleanupArgs) -> anyhow::Result<i32> {
    let store = &ctx.store;
    store.collect_incomplete_containers(&ctx.maps);
    let recs = if a.all {
        store
            .containers()?
            .into_iter()
            .filter(|c| store.load_state(&c.id).map(|s| !nook::container::is_running(&s)).unwrap_or(false))
            .collect()
    } else {
        if a.containers.is_empty() {
            anyhow::bail!("specify one or more containers to clean up, or --all");
        }
        a.containers.iter().map(|n| store.find_container(n)).collect::<Result<Vec<_>, _>>()?
    };
    for rec in recs {
        cleanup(ctx, &rec)?;
        if a.rm {
            nook::container::remove(ctx, &rec, false)?;
        }
        println!("{}", rec.id);
    }
    Ok(0)
}
