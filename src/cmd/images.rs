use nook::context::Context;
use nook::image::manage::{images_json, matches_reference};
use nook::image::reference::Reference;
use nook::storage::ImageRecord;
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
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Show all images (nook stores no intermediate images, so this is the default list).
    #[arg(short = 'a', long)]
    all: bool,
    /// Filter: dangling=true|false, reference=PATTERN (repeatable; all must hold).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Output format: json.
    #[arg(long)]
    format: Option<String>,
    /// Only images matching this reference (as --filter reference=…).
    reference: Option<String>,
}

enum Filter {
    Dangling(bool),
    Reference(String),
}

fn parse_filters(f: &[String]) -> anyhow::Result<Vec<Filter>> {
    f.iter()
        .map(|x| match x.split_once('=') {
            Some(("dangling", v)) => match v {
                "true" | "1" => Ok(Filter::Dangling(true)),
                "false" | "0" => Ok(Filter::Dangling(false)),
                _ => anyhow::bail!("invalid filter {x:?}: dangling takes true or false"),
            },
            Some(("reference", v)) if !v.is_empty() => Ok(Filter::Reference(v.to_string())),
            _ => anyhow::bail!("invalid filter {x:?}: nook supports dangling=true|false and reference=PATTERN"),
        })
        .collect()
}

fn keep(i: &ImageRecord, filters: &[Filter]) -> bool {
    filters.iter().all(|f| match f {
        Filter::Dangling(d) => i.names.is_empty() == *d,
        Filter::Reference(p) => matches_reference(i, p),
    })
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let _ = a.all;
    let mut filters = parse_filters(&a.filter)?;
    if let Some(r) = &a.reference {
        filters.push(Filter::Reference(r.clone()));
    }
    let mut images: Vec<ImageRecord> = ctx.store.images()?.into_iter().filter(|i| keep(i, &filters)).collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    match a.format.as_deref() {
        Some("json") => {
            let containers = ctx.store.containers()?;
            let out: Vec<_> = images
                .iter()
                .map(|i| {
                    let n = containers.iter().filter(|c| c.image_id.as_deref() == Some(i.id.as_str())).count();
                    images_json(&ctx.store, i, n)
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(0);
        }
        Some(f) => anyhow::bail!("unsupported --format {f:?}: only json is supported"),
        None => {}
    }
    let id = |i: &ImageRecord| if a.no_trunc { format!("sha256:{}", i.id) } else { i.short_id().to_string() };
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            if seen.insert(i.id.clone()) {
                println!("{}", id(i));
            }
        }
        return Ok(0);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut t = Table::new(&header);
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
            let mut row = vec![repo, tag];
            if a.digests {
                row.push(i.digest.clone().unwrap_or_else(|| i.manifest.clone()));
            }
            row.extend([id(i), ago(&i.created), human_size(i.size)]);
            t.row(row);
        }
    }
    print!("{}", t.render());
    Ok(0)
}
