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
    /// List containers.
    #[command(alias = "ls", alias = "ps")]
    List(super::ps::Args),
    /// Create a container without starting it.
    Create(Box<super::run::Args>),
    /// Run a command in a new container.
    Run(Box<super::run::Args>),
    /// Start containers.
    Start(super::start::Args),
    /// Stop containers.
    Stop(super::stop::Args),
    /// Send a signal to containers.
    Kill(super::kill::Args),
    /// Restart containers.
    Restart(super::restart::Args),
    /// Wait for containers to stop.
    Wait(super::wait::Args),
    /// Attach to a running container.
    Attach(super::attach::Args),
    /// Show a container's output.
    Logs(super::logs::Args),
    /// Show containers' configuration and state.
    Inspect(super::inspect::Args),
    /// Rename a container.
    Rename(super::rename::Args),
    /// Remove containers.
    Rm(super::rm::Args),
    /// Remove every stopped container.
    Prune(super::prune::Args),
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
        Sub::List(a) => super::ps::run(ctx, a),
        Sub::Create(a) => super::run::create(ctx, a),
        Sub::Run(a) => super::run::run(ctx, a, None),
        Sub::Start(a) => super::start::run(ctx, a),
        Sub::Stop(a) => super::stop::run(ctx, a),
        Sub::Kill(a) => super::kill::run(ctx, a),
        Sub::Restart(a) => super::restart::run(ctx, a),
        Sub::Wait(a) => super::wait::run(ctx, a),
        Sub::Attach(a) => super::attach::run(ctx, a),
        Sub::Logs(a) => super::logs::run(ctx, a),
        Sub::Inspect(a) => super::inspect::run(ctx, a),
        Sub::Rename(a) => super::rename::run(ctx, a),
        Sub::Rm(a) => super::rm::run(ctx, a),
        Sub::Prune(a) => super::prune::run(ctx, a),
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
