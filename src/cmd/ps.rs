use nook::container::view::{self, Filters};
use nook::context::Context;
use nook::util::fmt::{Table, ago, human_size};

/// `nook ps`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default: running only).
    #[arg(short = 'a', long)]
    all: bool,
    /// Show only container IDs.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Show only the latest created container.
    #[arg(short = 'l', long)]
    latest: bool,
    /// Show the size of each container's own files.
    #[arg(short = 's', long)]
    size: bool,
    /// Filter: status=, name=, ancestor=, label=, id=, exited=.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Output: table (default), json, or a Go template such as '{{.ID}} {{.Names}}'.
    #[arg(long)]
    format: Option<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let filters = Filters::parse(&a.filter).map_err(anyhow::Error::msg)?;
    let mut list = view::entries(ctx)?;
    if a.latest {
        list.truncate(1);
    } else if !a.all && !filters.names_status() {
        list.retain(|e| e.status.state == "running" || e.status.state == "stopping");
    }
    list.retain(|e| filters.matches(e));
    let sizes: Vec<Option<u64>> = list.iter().map(|e| a.size.then(|| view::size(ctx, &e.rec))).collect();
    if a.quiet {
        for e in &list {
            println!("{}", if a.no_trunc { e.rec.id.as_str() } else { e.rec.short_id() });
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            let v: Vec<_> = list.iter().zip(&sizes).map(|(e, s)| view::ps_json(e, *s)).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(0);
        }
        Some(t) if t != "table" => {
            for (e, s) in list.iter().zip(&sizes) {
                println!("{}", nook::util::template::render(t, &view::ps_template_fields(e, a.no_trunc, *s)));
            }
            return Ok(0);
        }
        _ => {}
    }
    let mut head = vec!["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"];
    if a.size {
        head.push("SIZE");
    }
    let mut t = Table::new(&head);
    for (e, s) in list.iter().zip(&sizes) {
        let id = if a.no_trunc { e.rec.id.clone() } else { e.rec.short_id().to_string() };
        let mut cmd = e.rec.command.join(" ");
        if !a.no_trunc && cmd.chars().count() > 20 {
            cmd = format!("{}...", cmd.chars().take(17).collect::<String>());
        }
        let mut row = vec![
            id,
            e.rec.image_name.clone(),
            cmd,
            ago(&e.rec.created),
            nook::container::lifecycle::status_text(&e.state),
            String::new(),
            e.rec.name.clone(),
        ];
        if let Some(s) = s {
            row.push(human_size(*s));
        }
        t.row(row);
    }
    print!("{}", t.render());
    Ok(0)
}
