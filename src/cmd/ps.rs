use chrono::Utc;
use nook::container::is_running;
use nook::context::Context;
use nook::storage::ContainerStatus;
use nook::util::fmt::{Table, ago, human_duration};

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
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let store = &ctx.store;
    let mut t = Table::new(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]);
    for c in store.containers()? {
        let st = store.load_state(&c.id)?;
        let running = is_running(&st);
        if !a.all && !running {
            continue;
        }
        let id = if a.no_trunc { c.id.clone() } else { c.short_id().to_string() };
        if a.quiet {
            println!("{id}");
            continue;
        }
        let status = if running {
            let since = st.started_at.map(|s| (Utc::now() - s).num_seconds()).unwrap_or(0);
            format!("Up {}", human_duration(since))
        } else {
            match st.status {
                ContainerStatus::Created => "Created".to_string(),
                _ => {
                    let code = st.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "unknown".into());
                    let when = st.finished_at.map(|f| ago(&f)).unwrap_or_default();
                    format!("Exited ({code}) {when}").trim_end().to_string()
                }
            }
        };
        let mut cmd = c.command.join(" ");
        if !a.no_trunc && cmd.chars().count() > 20 {
            cmd = format!("{}...", cmd.chars().take(17).collect::<String>());
        }
        t.row(vec![id, c.image_name.clone(), cmd, ago(&c.created), status, String::new(), c.name.clone()]);
    }
    if !a.quiet {
        print!("{}", t.render());
    }
    Ok(0)
}
