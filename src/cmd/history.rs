use nook::context::Context;
use nook::image::manage::history;
use nook::util::fmt::{Table, ago, human_size};

/// `nook history [--no-trunc] [-q] [--format json] IMAGE`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do not truncate IDs and commands.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Show only IDs.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Output format: json.
    #[arg(long)]
    format: Option<String>,
    /// Do not shorten sizes and times.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    human: bool,
    /// The image.
    image: String,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let img = ctx.store.find_image(&a.image)?;
    let rows = history(&ctx.store, &img);
    match a.format.as_deref() {
        Some("json") => {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(0);
        }
        Some(f) => anyhow::bail!("unsupported --format {f:?}: only json is supported"),
        None => {}
    }
    let short = |id: &str| if a.no_trunc || id.len() < 12 { id.to_string() } else { id[..12].to_string() };
    if a.quiet {
        for r in &rows {
            println!("{}", short(&r.id));
        }
        return Ok(0);
    }
    let mut t = Table::new(&["ID", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for r in &rows {
        let by = if a.no_trunc || r.created_by.chars().count() <= 45 {
            r.created_by.clone()
        } else {
            format!("{}...", r.created_by.chars().take(42).collect::<String>())
        };
        t.row(vec![
            short(&r.id),
            r.created.as_ref().map(ago).unwrap_or_default(),
            by,
            human_size(r.size),
            r.comment.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(0)
}
