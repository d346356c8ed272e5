use nook::context::Context;

/// `nook tag IMAGE TARGET_NAME...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (name or ID).
    image: String,
    /// New names (short names become localhost/NAME).
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    nook::image::manage::tag(&ctx.store, &a.image, &a.names)?;
    Ok(0)
}
