use nook::container::lifecycle;
use nook::context::Context;

/// `nook rename CONTAINER NEW_NAME`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The container (name or ID).
    container: String,
    /// Its new name.
    name: String,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let rec = ctx.store.find_container(&a.container)?;
    lifecycle::rename(ctx, &rec, &a.name)?;
    Ok(0)
}
