use nook::container::layer::{CommitOptions, commit};
use nook::context::Context;
use nook::image::reference::local_name;

/// `nook commit [OPTIONS] CONTAINER [IMAGE]`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Apply a Dockerfile instruction to the image config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, …).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Commit message recorded in the image history.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Author recorded in the image.
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Print only the image ID (the default output already is).
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The container (name or ID).
    container: String,
    /// Name for the new image (default: untagged).
    image: Option<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let name = a.image.as_deref().map(local_name).transpose()?;
    let rec = ctx.store.find_container(&a.container)?;
    let o = CommitOptions { name, changes: a.change.clone(), message: a.message.clone(), author: a.author.clone() };
    let img = commit(ctx, &rec, &o)?;
    let _ = a.quiet;
    println!("{}", img.id);
    Ok(0)
}
