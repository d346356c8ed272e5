//! The command line: one file per verb. Each parses its flags (clap derive), calls the library
//! and prints. Errors become one line `Error: …` and podman's exit codes.

mod attach;
mod commit;
mod container;
mod diff;
mod exec;
mod export;
mod history;
mod image;
mod images;
mod import;
mod info;
mod inspect;
mod kill;
mod load;
mod login;
mod logout;
mod logs;
mod mount;
mod prune;
mod ps;
mod pull;
mod push;
mod rename;
mod restart;
mod rm;
mod rmi;
pub mod run;
mod save;
mod start;
mod stop;
mod tag;
mod top;
mod unshare;
mod untag;
mod version;
mod wait;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nook::context::Context;

#[derive(Parser, Debug)]
#[command(
    name = "nook",
    version,
    about = "Rootless, daemonless, per-user containers",
    long_about = "nook runs OCI containers as an ordinary user: no root, no daemon. Each command is its own process; state lives under your XDG directories.",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// The flags every verb takes.
#[derive(clap::Args, Debug)]
struct Globals {
    /// Storage root (default: $XDG_DATA_HOME/nook).
    #[arg(long, global = true, env = "NOOK_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// Run root for runtime state (default: $XDG_RUNTIME_DIR/nook).
    #[arg(long, global = true, env = "NOOK_RUNROOT", value_name = "DIR")]
    runroot: Option<PathBuf>,
    /// Log messages at this level and above: debug, info, warn, error.
    #[arg(long, global = true, default_value = "warn", env = "NOOK_LOG_LEVEL", value_parser = ["trace", "debug", "info", "warn", "error"])]
    log_level: String,
    /// Storage driver: overlay, fuse-overlayfs or vfs (default: storage.conf, else chosen automatically).
    #[arg(long, global = true, env = "NOOK_STORAGE_DRIVER", value_name = "NAME")]
    storage_driver: Option<String>,
}

/// `nook run …` alone: building clap's description of every verb costs more than the rest of
/// argument parsing, and `run` is the path whose latency matters.
#[derive(Parser, Debug)]
#[command(name = "nook", version)]
struct RunOnly {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: RunVerb,
}

#[derive(Subcommand, Debug)]
enum RunVerb {
    Run(run::Args),
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command in a new container.
    Run(Box<run::Args>),
    /// Create a container without starting it.
    Create(Box<run::Args>),
    /// Start containers (in the background, each under its own monitor).
    Start(start::Args),
    /// Stop containers: their stop signal, then SIGKILL after a timeout.
    Stop(stop::Args),
    /// Send a signal to containers.
    Kill(kill::Args),
    /// Restart containers.
    Restart(restart::Args),
    /// Wait for containers to stop; print their exit codes.
    Wait(wait::Args),
    /// Attach to a running container's terminal or output.
    Attach(attach::Args),
    /// Show a container's output.
    Logs(logs::Args),
    /// Show containers' configuration and state (JSON).
    Inspect(inspect::Args),
    /// Rename a container.
    Rename(rename::Args),
    /// Make an image from a rootfs tarball.
    Import(import::Args),
    /// List images.
    Images(images::Args),
    /// Remove images.
    Rmi(rmi::Args),
    /// List containers.
    Ps(ps::Args),
    /// Pull an image from a registry.
    Pull(pull::Args),
    /// Push an image to a registry.
    Push(push::Args),
    /// Log in to a registry.
    Login(login::Args),
    /// Log out of a registry.
    Logout(logout::Args),
    /// Add names to an image.
    Tag(tag::Args),
    /// Remove names from an image.
    Untag(untag::Args),
    /// Show an image's history.
    History(history::Args),
    /// Save images to an archive (docker-archive or oci-archive).
    Save(save::Args),
    /// Load images from an archive.
    Load(load::Args),
    /// Manage images (inspect, prune, ls, rm, pull, push, tag, untag, history, save, load).
    Image(image::Args),
    /// Remove containers.
    Rm(rm::Args),
    /// Show what nook will use on this host and what is missing.
    Info(info::Args),
    /// Run a command in a user namespace with the same id maps as containers.
    Unshare(unshare::Args),
    /// Show version information.
    Version(version::Args),
    /// Make an image from a container's changes.
    Commit(commit::Args),
    /// Show what a container changed in its image's files (A added, C changed, D deleted).
    Diff(diff::Args),
    /// Write a container's root filesystem as a tar archive.
    Export(export::Args),
    /// Mount containers' root filesystems (inside `nook unshare`), or list mounted ones.
    Mount(mount::Args),
    /// Unmount containers' root filesystems (inside `nook unshare`).
    #[command(alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Manage containers.
    Container(container::Args),
    /// Run a command in a running container.
    Exec(exec::Args),
    /// Show the processes of a running container.
    Top(top::Args),
}

impl Cli {
    fn context(&self) -> anyhow::Result<Context> {
        let g = &self.globals;
        Ok(Context::new(g.root.clone(), g.runroot.clone(), g.storage_driver.clone())?)
    }

    pub fn log_level(&self) -> &str {
        &self.globals.log_level
    }

    /// Parses the command line. `nook run …` is parsed with the `run` verb alone; anything
    /// that does not parse that way (help, errors, other verbs) gets the full parser, so
    /// messages are the same.
    pub fn parse_args(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
        if args.get(1).is_some_and(|a| a == "run")
            && let Ok(RunOnly { globals, command: RunVerb::Run(a) }) = RunOnly::try_parse_from(args)
        {
            return Ok(Cli { globals, command: Command::Run(Box::new(a)) });
        }
        Cli::try_parse_from(args)
    }
}

/// Runs the command; returns the exit code. `early` is a container setup process that `run`
/// started before the arguments were parsed.
pub fn dispatch(cli: Cli, early: Option<nook::runtime::Pending>) -> anyhow::Result<i32> {
    if !matches!(cli.command, Command::Run(_))
        && let Some(p) = early
    {
        p.abort();
        return dispatch(cli, None);
    }
    match &cli.command {
        Command::Run(a) => match cli.context() {
            Ok(ctx) => run::run(&ctx, a, early),
            Err(e) => {
                if let Some(p) = early {
                    p.abort();
                }
                Err(e)
            }
        },
        Command::Create(a) => run::create(&cli.context()?, a),
        Command::Start(a) => start::run(&cli.context()?, a),
        Command::Stop(a) => stop::run(&cli.context()?, a),
        Command::Kill(a) => kill::run(&cli.context()?, a),
        Command::Restart(a) => restart::run(&cli.context()?, a),
        Command::Wait(a) => wait::run(&cli.context()?, a),
        Command::Attach(a) => attach::run(&cli.context()?, a),
        Command::Logs(a) => logs::run(&cli.context()?, a),
        Command::Inspect(a) => inspect::run(&cli.context()?, a),
        Command::Rename(a) => rename::run(&cli.context()?, a),
        Command::Import(a) => import::run(&cli.context()?, a),
        Command::Images(a) => images::run(&cli.context()?, a),
        Command::Rmi(a) => rmi::run(&cli.context()?, a),
        Command::Ps(a) => ps::run(&cli.context()?, a),
        Command::Pull(a) => pull::run(&cli.context()?, a),
        Command::Push(a) => push::run(&cli.context()?, a),
        Command::Login(a) => login::run(&cli.context()?, a),
        Command::Logout(a) => logout::run(&cli.context()?, a),
        Command::Tag(a) => tag::run(&cli.context()?, a),
        Command::Untag(a) => untag::run(&cli.context()?, a),
        Command::History(a) => history::run(&cli.context()?, a),
        Command::Save(a) => save::run(&cli.context()?, a),
        Command::Load(a) => load::run(&cli.context()?, a),
        Command::Image(a) => image::run(&cli.context()?, a),
        Command::Rm(a) => rm::run(&cli.context()?, a),
        Command::Info(a) => info::run(&cli.context()?, a),
        Command::Unshare(a) => unshare::run(&cli.context()?, a),
        Command::Version(a) => version::run(a),
        Command::Commit(a) => commit::run(&cli.context()?, a),
        Command::Diff(a) => diff::run(&cli.context()?, a),
        Command::Export(a) => export::run(&cli.context()?, a),
        Command::Mount(a) => mount::run(&cli.context()?, a),
        Command::Umount(a) => mount::run_umount(&cli.context()?, a),
        Command::Container(a) => container::run(&cli.context()?, a),
        Command::Exec(a) => exec::run(&cli.context()?, a),
        Command::Top(a) => top::run(&cli.context()?, a),
    }
}

/// How often `wait` and attach fall-backs look at a container's state.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// `250ms`, `1s`, or bare milliseconds.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_millis(ms));
    }
    nook::container::view::parse_duration(s).map_err(anyhow::Error::msg)
}

/// Runs `f` on each named container (or all with `all`), printing each name as given;
/// podman's exit codes: 1 when a container does not exist, else 125.
pub fn each(
    ctx: &Context,
    names: &[String],
    all: Option<fn(&nook::storage::ContainerState) -> bool>,
    ignore_missing: bool,
    f: impl Fn(&nook::storage::ContainerRecord) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    // --all: every container whose state passes the filter; none is fine.
    let targets: Vec<String> = match all {
        Some(keep) => ctx
            .store
            .containers()?
            .into_iter()
            .filter(|c| ctx.store.load_state(&c.id).is_ok_and(|s| keep(&s)))
            .map(|c| c.id)
            .collect(),
        None if names.is_empty() => {
            return Err(Failure { code: 125, msg: "specify one or more containers".into() }.into());
        }
        None => names.to_vec(),
    };
    let mut last: Option<(i32, String)> = None;
    for t in &targets {
        let r = match ctx.store.find_container(t) {
            Ok(rec) => f(&rec).map_err(|e| (exit_code(&e), format!("{e:#}"))),
            Err(nook::storage::StorageError::ContainerNotFound(_)) if ignore_missing => continue,
            Err(e @ nook::storage::StorageError::ContainerNotFound(_)) => Err((1, e.to_string())),
            Err(e) => Err((125, e.to_string())),
        };
        match r {
            Ok(()) => println!("{t}"),
            Err(e) => {
                if let Some((_, prev)) = last.take() {
                    eprintln!("Error: {prev}");
                }
                last = Some(e);
            }
        }
    }
    match last {
        Some((code, msg)) => Err(Failure { code, msg }.into()),
        None => Ok(0),
    }
}

/// An error with an explicit exit code (for verbs whose codes podman documents).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub msg: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: podman's 125 unless the error says otherwise.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(f) = e.downcast_ref::<Failure>() {
        return f.code;
    }
    if let Some(c) = e.downcast_ref::<nook::container::ContainerError>() {
        return c.exit_code();
    }
    if let Some(r) = e.downcast_ref::<nook::runtime::RuntimeError>() {
        return r.exit_code();
    }
    125
}
