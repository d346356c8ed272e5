use nook::container;
use nook::context::Context;
use nook::storage::StorageError;

use super::Failure;

/// `nook rm [-f] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill and remove running containers.
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove all containers.
    #[arg(short = 'a', long)]
    all: bool,
    /// Also remove the container's anonymous volumes (nook has none: accepted).
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Do not fail on containers that do not exist.
    #[arg(short = 'i', long)]
    ignore: bool,
    /// Seconds to wait before killing (accepted; `rm -f` kills at once).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    time: Option<u32>,
    /// Containers (names or IDs).
    containers: Vec<String>,
}

/// podman's exit codes: 1 no such container, 2 a container is running, 125 anything else.
pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let store = &ctx.store;
    store.collect_incomplete_containers(&ctx.maps);
    let targets: Vec<String> =
        if a.all { store.containers()?.into_iter().map(|c| c.id).collect() } else { a.containers.clone() };
    if targets.is_empty() && !a.all {
        return Err(Failure { code: 125, msg: "specify one or more containers to remove".into() }.into());
    }
    let mut worst = 0;
    let mut last: Option<String> = None;
    for t in &targets {
        let r = store.find_container(t).map_err(container::ContainerError::from).and_then(|rec| {
            container::remove(ctx, &rec, a.force)?;
            Ok(rec)
        });
        match r {
            Ok(rec) => println!("{}", if a.all || rec.id == *t { rec.id.clone() } else { t.clone() }),
            Err(e) => {
                if a.ignore && matches!(&e, container::ContainerError::Storage(StorageError::ContainerNotFound(_))) {
                    continue;
                }
                let code = match &e {
                    container::ContainerError::Storage(StorageError::ContainerNotFound(_)) => 1,
                    container::ContainerError::Invalid(m) if m.contains("state improper") => 2,
                    _ => 125,
                };
                if let Some(prev) = last.take() {
                    eprintln!("Error: {prev}");
                }
                last = Some(e.to_string());
                worst = worst.max(code);
            }
        }
    }
    match last {
        Some(msg) => Err(Failure { code: worst, msg }.into()),
        None => Ok(0),
    }
}
