use nook::container::layer::diff;
use nook::context::Context;

/// `nook diff [--format json] CONTAINER`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: json (default: one `A|C|D PATH` line per change).
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// The container (name or ID).
    container: String,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let rec = ctx.store.find_container(&a.container)?;
    let changes = diff(ctx, &rec)?;
    match a.format.as_deref() {
        None => {
            let mut out = String::new();
            for c in &changes {
                out.push_str(&format!("{} {}\n", c.kind.letter(), c.path.display()));
            }
            print!("{out}");
        }
        Some("json") | Some("{{json .}}") => {
            let kind =
                |k: char| changes.iter().filter(|c| c.kind.letter() == k).map(|c| c.path.clone()).collect::<Vec<_>>();
            let v = serde_json::json!({ "added": kind('A'), "changed": kind('C'), "deleted": kind('D') });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Some(other) => anyhow::bail!("unknown format {other:?}: use json"),
    }
    Ok(0)
}
