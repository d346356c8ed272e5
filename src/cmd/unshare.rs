use std::ffi::OsString;

use nook::context::Context;
use nook::userns::{HelperOp, spawn_helper};

use super::Failure;

/// `nook unshare [COMMAND [ARG...]]`
#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Command to run (default: $SHELL).
    #[arg(allow_hyphen_values = true)]
    command: Vec<OsString>,
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let cmd = if a.command.is_empty() {
        vec![std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())]
    } else {
        a.command.clone()
    };
    if nook::userns::inside_nook_userns() {
        return Err(Failure { code: 125, msg: "already inside nook unshare".into() }.into());
    }
    ctx.notice_single_id();
    let mut child = spawn_helper(&ctx.maps, &HelperOp::Exec(cmd), true, |c| {
        c.env("NOOK_ROOT", &ctx.paths.root).env("NOOK_RUNROOT", &ctx.paths.runroot);
    })?;
    // The child gets the terminal's signals; we wait for it.
    // SAFETY: ignoring signals in this single-threaded process; the child already has its own
    // dispositions (exec reset them).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    if let Some(c) = status.code() {
        // The helper reports a failed exec with its own codes.
        return Ok(c);
    }
    Ok(128 + status.signal().unwrap_or(0))
}
