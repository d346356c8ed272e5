use nook::container::view;
use nook::context::Context;

/// `nook inspect [--format T] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A Go template ({{.State.Status}}) or json.
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Accepted for compatibility: containers only.
    #[arg(long = "type", hide = true)]
    kind: Option<String>,
    /// Containers (names or IDs).
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let mut docs = Vec::new();
    let mut missing = None;
    for c in &a.containers {
        match ctx.store.find_container(c) {
            Ok(rec) => docs.push(view::inspect(ctx, &rec)?),
            Err(e) => missing = Some(e),
        }
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
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}
