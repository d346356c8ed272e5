use std::path::PathBuf;

use clap::ArgAction;
use nook::container::exec::{ExecOptions, exec};
use nook::context::Context;

/// `nook exec [OPTIONS] CONTAINER COMMAND [ARG...]`
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true, trailing_var_arg = true)]
pub struct Args {
    /// Keep stdin open and pass it to the process.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from the host).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// User (and group) to run as: UID[:GID] or NAME[:GROUP] (names from the container).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// Run in the background: return once the command started (its output is discarded;
    /// -t is ignored until a monitor can hold the terminal).
    #[arg(short = 'd', long)]
    detach: bool,
    /// Give the process all capabilities.
    #[arg(long)]
    privileged: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// CONTAINER, then the command and its arguments.
    #[arg(required = true, value_name = "CONTAINER COMMAND [ARG...]", num_args = 1..)]
    args: Vec<String>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let Some((container, cmd)) = a.args.split_first() else { anyhow::bail!("a container and a command are required") };
    let o = ExecOptions {
        container: container.clone(),
        command: cmd.to_vec(),
        interactive: a.interactive,
        tty: a.tty,
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        detach: a.detach,
        privileged: a.privileged,
    };
    Ok(exec(ctx, &o)?)
}
