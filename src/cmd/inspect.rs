use nook::container::view;
use nook::context::Context;

/// `nook inspect [--format T] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A Go template ({{.State.Status}}) or json.
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// What to look for: container, image or all (default: containers, then images).
    #[arg(short = 't', long = "type", default_value = "all", value_parser = ["all", "container", "image"])]
    kind: String,
    /// Containers or images (names or IDs).
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let mut docs = Vec::new();
    let mut missing = None;
    for c in &a.containers {
        if a.kind != "image" {
            match ctx.store.find_container(c) {
                Ok(rec) => {
                    docs.push(view::inspect(ctx, &rec)?);
                    continue;
                }
                Err(nook::storage::StorageError::ContainerNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if a.kind != "container"
            && let Ok(img) = ctx.store.find_image(c)
        {
            let driver =
                nook::storage::driver::choose(&ctx.store, &ctx.maps, ctx.storage_driver.as_deref(), &ctx.paths, false)
                    .map(|c| c.kind.name().to_string())
                    .unwrap_or_else(|_| "vfs".into());
            docs.push(serde_json::to_value(nook::image::manage::inspect_json(&ctx.store, &img, &driver))?);
            continue;
        }
        missing = Some(anyhow::anyhow!("no such object: {c:?}"));
    }
    match a.format.as_deref() {
        None | Some("json") => println!("{}", serde_json::to_string_pretty(&docs)?),
        Some(t) => {
            for d in &docs {
                println!("{}", nook::util::template::render(t, d));
            }
        }
    }
    match missing {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
