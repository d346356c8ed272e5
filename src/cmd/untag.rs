use nook::context::Context;

/// `nook untag IMAGE [NAME...]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (name or ID).
    image: String,
    /// Names to remove (default: all of them).
    names: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    nook::image::manage::untag(&ctx.store, &a.image, &a.names)?;
    Ok(0)
}
