use nook::container;
use nook::context::Context;
use nook::storage::StorageError;

use super::Failure;

/// `nook rmi [-f] IMAGE...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove containers that use the image too.
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove all images.
    #[arg(short = 'a', long)]
    all: bool,
    /// Images (names or IDs).
    images: Vec<String>,
}

/// podman's exit codes: 1 an image did not exist, 2 an image is in use, 125 anything else.
pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let store = &ctx.store;
    let targets: Vec<String> =
        if a.all { store.images()?.into_iter().map(|i| i.id).collect() } else { a.images.clone() };
    if targets.is_empty() && a.all {
        return Ok(0); // nothing to remove, as podman
    }
    if targets.is_empty() {
        return Err(Failure { code: 125, msg: "image name or ID must be specified".into() }.into());
    }
    let mut worst = 0;
    let mut last_err = None;
    for t in &targets {
        match remove_one(ctx, t, a.force) {
            Ok(()) => {}
            Err(e) => {
                let code = match e.downcast_ref::<StorageError>() {
                    Some(StorageError::ImageNotFound(_)) => 1,
                    Some(StorageError::ImageInUse { .. }) => 2,
                    _ => 125,
                };
                if last_err.is_some() {
                    eprintln!("Error: {}", last_err.take().unwrap_or_default());
                }
                last_err = Some(format!("{e:#}"));
                worst = worst.max(code);
            }
        }
    }
    match last_err {
        Some(msg) => Err(Failure { code: worst, msg }.into()),
        None => Ok(0),
    }
}

fn remove_one(ctx: &Context, target: &str, force: bool) -> anyhow::Result<()> {
    let store = &ctx.store;
    let lock = store.lock(true)?;
    let img = store.find_image(target)?;
    // A name of an image with several names: only that name goes (podman's untag).
    if img.names.len() > 1
        && let Some(n) = nook::image::manage::matching_name(&img, target)
    {
        let mut all = store.images()?;
        for i in all.iter_mut().filter(|i| i.id == img.id) {
            i.names.retain(|x| *x != n);
        }
        store.save_images(all)?;
        println!("Untagged: {n}");
        return Ok(());
    }
    let users: Vec<_> =
        store.containers()?.into_iter().filter(|c| c.image_id.as_deref() == Some(img.id.as_str())).collect();
    if !users.is_empty() {
        if !force {
            return Err(StorageError::ImageInUse {
                image: img.short_id().to_string(),
                containers: users.iter().map(|c| c.short_id().to_string()).collect::<Vec<_>>().join(", "),
            }
            .into());
        }
        drop(lock);
        for c in &users {
            container::remove(ctx, c, true)?;
        }
        return remove_one(ctx, target, false);
    }
    for n in &img.names {
        println!("Untagged: {n}");
    }
    store.delete_image_record(&img.id)?;
    store.remove_unreferenced_layers(&ctx.maps)?;
    store.remove_unreferenced_blobs()?;
    println!("Deleted: {}", img.id);
    Ok(())
}
