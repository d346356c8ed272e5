use nook::container::layer::{mount, mounted, umount};
use nook::context::Context;

/// `nook mount [CONTAINER...]` (inside `nook unshare`)
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Containers to mount (none: list the mounted ones).
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    if a.containers.is_empty() {
        for (c, p) in mounted(ctx)? {
            println!("{} {}", c.id, p.display());
        }
        return Ok(0);
    }
    let single = a.containers.len() == 1;
    for name in &a.containers {
        let rec = ctx.store.find_container(name)?;
        let p = mount(ctx, &rec)?;
        if single {
            println!("{}", p.display());
        } else {
            println!("{} {}", rec.id, p.display());
        }
    }
    Ok(0)
}

/// `nook umount [-a] CONTAINER...` (inside `nook unshare`)
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Unmount every mounted container.
    #[arg(short = 'a', long)]
    all: bool,
    /// Containers to unmount.
    containers: Vec<String>,
}

pub fn run_umount(ctx: &Context, a: &UmountArgs) -> anyhow::Result<i32> {
    let recs = if a.all {
        mounted(ctx)?.into_iter().map(|(c, _)| c).collect()
    } else {
        if a.containers.is_empty() {
            anyhow::bail!("specify one or more containers to unmount, or --all");
        }
        a.containers.iter().map(|n| ctx.store.find_container(n)).collect::<Result<Vec<_>, _>>()?
    };
    for rec in recs {
        umount(ctx, &rec)?;
        println!("{}", rec.id);
    }
    Ok(0)
}
