use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use nook::context::Context;

/// `nook login [-u USER] [-p PASS | --password-stdin] REGISTRY`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Username.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// Credentials file (default: ${XDG_RUNTIME_DIR}/containers/auth.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Require HTTPS and verify certificates (false: allow plain HTTP and unverified TLS).
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tls_verify: Option<bool>,
    /// The registry (or REGISTRY/REPOSITORY for credentials used only there).
    registry: String,
}

fn prompt(msg: &str, echo: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    eprint!("{msg}");
    let _ = std::io::stderr().flush();
    let fd = rustix::stdio::stdin();
    let old = if echo { None } else { rustix::termios::tcgetattr(fd).ok() };
    if let Some(o) = &old {
        let mut t = o.clone();
        t.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &t);
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let Some(o) = &old {
        let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, o);
        eprintln!();
    }
    r?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    if a.password_stdin && a.password.is_some() {
        anyhow::bail!("--password and --password-stdin cannot be used together");
    }
    let tty = std::io::stdin().is_terminal();
    let user = match &a.username {
        Some(u) => u.clone(),
        None if tty && !a.password_stdin => prompt("Username: ", true)?,
        None => anyhow::bail!("logging in to {}: a username is required (-u)", a.registry),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match &a.password {
            Some(p) => p.clone(),
            None if tty => prompt("Password: ", false)?,
            None => anyhow::bail!("logging in to {}: a password is required (-p or --password-stdin)", a.registry),
        }
    };
    if user.is_empty() || password.is_empty() {
        anyhow::bail!("logging in to {}: username and password must not be empty", a.registry);
    }
    nook::registry::login(&ctx.paths, &a.registry, &user, &password, a.authfile.clone(), a.tls_verify)?;
    println!("Login Succeeded!");
    Ok(0)
}
