//! `nook image SUBCOMMAND`: the image verbs under one name, as podman has them.

use nook::context::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Show an image's details as JSON.
    Inspect(InspectArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(super::images::Args),
    /// Remove images.
    Rm(super::rmi::Args),
    /// Pull an image from a registry.
    Pull(super::pull::Args),
    /// Push an image to a registry.
    Push(super::push::Args),
    /// Add names to an image.
    Tag(super::tag::Args),
    /// Remove names from an image.
    Untag(super::untag::Args),
    /// Show an image's history.
    History(super::history::Args),
    /// Save images to an archive.
    Save(super::save::Args),
    /// Load images from an archive.
    Load(super::load::Args),
    /// Make an image from a rootfs tarball.
    Import(super::import::Args),
}

/// `nook image inspect IMAGE...`
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Output format: json (the default).
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Images (names or IDs).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `nook image prune [-a] [-f]`
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only unnamed ones.
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not ask for confirmation (nook never asks).
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    match &a.cmd {
        Sub::Inspect(i) => inspect(ctx, i),
        Sub::Prune(p) => {
            let _ = p.force;
            for id in nook::image::manage::prune(ctx, p.all)? {
                println!("{id}");
            }
            Ok(0)
        }
        Sub::Ls(x) => super::images::run(ctx, x),
        Sub::Rm(x) => super::rmi::run(ctx, x),
        Sub::Pull(x) => super::pull::run(ctx, x),
        Sub::Push(x) => super::push::run(ctx, x),
        Sub::Tag(x) => super::tag::run(ctx, x),
        Sub::Untag(x) => super::untag::run(ctx, x),
        Sub::History(x) => super::history::run(ctx, x),
        Sub::Save(x) => super::save::run(ctx, x),
        Sub::Load(x) => super::load::run(ctx, x),
        Sub::Import(x) => super::import::run(ctx, x),
    }
}

pub fn inspect(ctx: &Context, a: &InspectArgs) -> anyhow::Result<i32> {
    if let Some(f) = a.format.as_deref().filter(|f| *f != "json") {
        anyhow::bail!("unsupported --format {f:?}: only json is supported");
    }
    let driver = nook::storage::driver::choose(&ctx.store, &ctx.maps, ctx.storage_driver.as_deref(), &ctx.paths, false)
        .map(|c| c.kind.name().to_string())
        .unwrap_or_else(|_| "vfs".into());
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for i in &a.images {
        match ctx.store.find_image(i) {
            Ok(img) => out.push(nook::image::manage::inspect_json(&ctx.store, &img, &driver)),
            Err(e) => missing.push(e.to_string()),
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if let Some(m) = missing.last() {
        anyhow::bail!("{m}");
    }
    Ok(0)
}
