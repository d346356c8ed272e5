//! The nook binary: internal helper entry points first (before any thread exists), then the
//! command line.

mod cmd;

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "__userns") {
        std::process::exit(userns_helper(&args[2..]));
    }
    if args.get(1).is_some_and(|a| a == "__monitor") {
        std::process::exit(nook::monitor::detached::main(&args[2..]));
    }
    // `nook run` starts the container's user namespace first: newuidmap and newgidmap, slow
    // setuid helpers, then run while the arguments are parsed and the container is prepared.
    // Not for `run -d`: the container's monitor sets it up.
    let early =
        if args.get(1).is_some_and(|a| a == "run") && !detached(&args[2..]) { cmd::run::begin_early() } else { None };
    let cli = match cmd::Cli::parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            if let Some(p) = early {
                p.abort();
            }
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => 125,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging(cli.log_level());
    let code = match cmd::dispatch(cli, early) {
        Ok(code) => code,
        Err(e) => {
            // An empty message: the error was already reported (by a child nook process).
            let msg = one_line(&chain(&e));
            if !msg.is_empty() {
                eprintln!("Error: {msg}");
            }
            cmd::exit_code(&e)
        }
    };
    std::process::exit(code);
}

/// Does a `run` command line ask for a detached container? (`-d`, `--detach`, or a cluster of
/// short flags with a `d`, such as `-dit`.) A false positive only skips the early setup.
fn detached(args: &[OsString]) -> bool {
    args.iter().filter_map(|a| a.to_str()).any(|a| {
        a == "--detach"
            || a.starts_with("--detach=") && a != "--detach=false"
            || (a.len() > 1
                && a.len() <= 6
                && a.starts_with('-')
                && !a.starts_with("--")
                && a[1..].bytes().all(|b| b.is_ascii_alphabetic())
                && a.contains('d'))
    })
}

/// `nook __userns <sync> <op> …`: a helper in a fresh user namespace.
fn userns_helper(args: &[OsString]) -> i32 {
    match nook::userns::helper_main(args) {
        Ok(op) => nook::helpers::run_op(&op),
        Err(e) => {
            eprintln!("Error: {e}");
            e.exit_code()
        }
    }
}

/// The error and its causes joined with ": ", leaving out a cause whose text the message
/// already ends with (errors that print their source themselves).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let t = c.to_string();
        if out.ends_with(&t) {
            continue;
        }
        if !out.is_empty() && !t.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&t);
    }
    out
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

fn init_logging(level: &str) {
    let level = match level {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "info" => tracing::Level::INFO,
        "error" => tracing::Level::ERROR,
        _ => tracing::Level::WARN,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
