use nook::context::Context;
use nook::image::reference::Reference;
use nook::util::fmt::{Table, ago, human_size};

/// `nook images`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show only image IDs.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate image IDs.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let mut images = ctx.store.images()?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    let id = |i: &nook::storage::ImageRecord| {
        if a.no_trunc { format!("sha256:{}", i.id) } else { i.short_id().to_string() }
    };
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            if seen.insert(i.id.clone()) {
                println!("{}", id(i));
            }
        }
        return Ok(0);
    }
    let mut t = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    for i in &images {
        let names: Vec<(String, String)> = i
            .names
            .iter()
            .map(|n| match Reference::parse(n) {
                Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".into())),
                Err(_) => (n.clone(), "<none>".into()),
            })
            .collect();
        let names = if names.is_empty() { vec![("<none>".to_string(), "<none>".to_string())] } else { names };
        for (repo, tag) in names {
            t.row(vec![repo, tag, id(i), ago(&i.created), human_size(i.size)]);
        }
    }
    print!("{}", t.render());
    Ok(0)
}
