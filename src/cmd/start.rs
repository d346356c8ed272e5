use nook::container::{self, lifecycle};
use nook::context::Context;
use nook::monitor::attach::{self, AttachEnd, ClientOptions};

/// `nook start [-a] [-i] CONTAINER...`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Attach to the container's output (one container only); exit with its status.
    #[arg(short = 'a', long)]
    attach: bool,
    /// With --attach: pass stdin to the container.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Keys that detach from the container (with --attach).
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = attach::DEFAULT_DETACH_KEYS)]
    detach_keys: String,
    /// Containers (names or IDs).
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    if a.attach && a.containers.len() > 1 {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    }
    let keys = attach::parse_detach_keys(&a.detach_keys).map_err(anyhow::Error::msg)?;
    let mut failed: Option<anyhow::Error> = None;
    for name in &a.containers {
        let r = (|| -> anyhow::Result<i32> {
            let rec = ctx.store.find_container(name)?;
            let started = lifecycle::start_detached(ctx, &rec, a.attach)?;
            if !a.attach {
                println!("{name}");
                return Ok(0);
            }
            let sock = match started.attach {
                Some(s) => s,
                None => attach::connect(&ctx.store.container_rundir(&rec.id))?,
            };
            let o = ClientOptions { stdin: a.interactive && rec.interactive, tty: rec.tty, detach_keys: keys.clone() };
            Ok(match attach::client(sock, &o)? {
                AttachEnd::Exited(c) => c,
                AttachEnd::Detached => 0,
                AttachEnd::Closed => {
                    container::lifecycle::wait(ctx, &rec.id, lifecycle::Condition::Exited, super::POLL)?
                }
            })
        })();
        match r {
            Ok(code) if a.attach => return Ok(code),
            Ok(_) => {}
            Err(e) => {
                if let Some(prev) = failed.take() {
                    eprintln!("Error: {prev:#}");
                }
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
