use nook::container::{is_running, lifecycle};
use nook::context::Context;
use nook::monitor::attach::{self, AttachEnd, ClientOptions};

/// `nook attach [--detach-keys K] [--no-stdin] CONTAINER`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Keys that detach from the container ("" for none).
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = attach::DEFAULT_DETACH_KEYS)]
    detach_keys: String,
    /// Do not pass stdin to the container.
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Accepted for compatibility (signals are not proxied).
    #[arg(long = "sig-proxy", hide = true, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: Option<bool>,
    /// The container (name or ID).
    container: String,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let keys = attach::parse_detach_keys(&a.detach_keys).map_err(anyhow::Error::msg)?;
    let rec = ctx.store.find_container(&a.container)?;
    let st = ctx.store.load_state(&rec.id)?;
    if !is_running(&st) || !st.detached {
        return Err(super::Failure {
            code: 125,
            msg: format!(
                "you can only attach to running containers started in the background: {} is {}",
                a.container,
                lifecycle::status(&st).state
            ),
        }
        .into());
    }
    let sock = attach::connect(&ctx.store.container_rundir(&rec.id))?;
    let o = ClientOptions { stdin: !a.no_stdin && rec.interactive, tty: rec.tty, detach_keys: keys };
    Ok(match attach::client(sock, &o)? {
        AttachEnd::Exited(c) => c,
        AttachEnd::Detached => {
            eprintln!();
            0
        }
        AttachEnd::Closed => lifecycle::wait(ctx, &rec.id, lifecycle::Condition::Exited, super::POLL)?,
    })
}
