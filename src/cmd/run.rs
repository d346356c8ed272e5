use std::path::PathBuf;

use clap::ArgAction;
use nook::container::{self, CreateOptions};
use nook::context::Context;

/// `nook run [OPTIONS] IMAGE [COMMAND [ARG...]]`
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true, trailing_var_arg = true)]
pub struct Args {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run the container in the background (under its own monitor) and print its ID.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Restart policy: no, on-failure[:max_retries], always, unless-stopped.
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// Log driver: k8s-file (default) or none.
    #[arg(long = "log-driver", value_name = "DRIVER")]
    log_driver: Option<String>,
    /// Log driver options: max-size=SIZE (rotate past SIZE, keeping the newest data).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// Run a small init as pid 1 that forwards signals and reaps processes.
    #[arg(long)]
    init: bool,
    /// The signal that stops the container (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    stop_timeout: Option<u32>,
    /// Accepted for compatibility (detach keys apply to `nook attach`).
    #[arg(long = "detach-keys", value_name = "KEYS", hide = true)]
    detach_keys: Option<String>,
    /// Keep stdin open and pass it to the container.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Name the container.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from the host).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User (and group) to run as: UID[:GID] or NAME[:GROUP].
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Container hostname.
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Override the image's entrypoint (a string, or a JSON array).
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Option<String>,
    /// Bind mount HOST-DIR:CONTAINER-DIR[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    volume: Vec<String>,
    /// Network mode: none or host (default host).
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Add a capability.
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Give the container all capabilities and no masked paths.
    #[arg(long)]
    privileged: bool,
    /// Set a label (KEY=VALUE).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// User namespace mode: keep-id[:uid=U,gid=G] runs you as your own uid and gid inside.
    #[arg(long, value_name = "MODE")]
    userns: Option<String>,
    /// The first argument is an exploded root filesystem directory, not an image.
    #[arg(long)]
    rootfs: bool,
    /// Pull the image: missing (when not stored), always, never, or newer (when the
    /// registry has a different one; the stored one is used if the registry cannot be reached).
    #[arg(long, value_name = "POLICY", default_value = "missing", value_parser = ["always", "missing", "never", "newer"])]
    pull: String,
    /// For a pull: require HTTPS and verify certificates (false: allow plain HTTP).
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    tls_verify: Option<bool>,
    /// For a pull: the credentials file.
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// For a pull: the platform (os/arch[/variant]) to choose from an index.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// IMAGE (or DIR with --rootfs), then the command and its arguments.
    #[arg(required = true, value_name = "IMAGE [COMMAND [ARG...]]", num_args = 1..)]
    args: Vec<String>,
}

/// Starts the container's setup process before anything else (see `main`). A failure here is
/// not reported: the normal path starts it again and reports the error.
pub fn begin_early() -> Option<nook::runtime::Pending> {
    nook::runtime::begin(&nook::userns::IdMappings::for_current_user()).ok()
}

/// The container options from the flags.
fn options(a: &Args) -> anyhow::Result<CreateOptions> {
    let Some((first, cmd)) = a.args.split_first() else {
        anyhow::bail!("an image (or --rootfs directory) is required")
    };
    let labels = a
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let opts = CreateOptions {
        image: first.clone(),
        rootfs: a.rootfs.then(|| PathBuf::from(first)),
        command: cmd.to_vec(),
        name: a.name.clone(),
        rm: a.rm,
        interactive: a.interactive,
        tty: a.tty,
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        entrypoint: a.entrypoint.clone(),
        volumes: a.volume.clone(),
        network: a.network.clone(),
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        labels,
        userns: a.userns.clone(),
        restart: a.restart.clone(),
        log_driver: a.log_driver.clone(),
        log_opts: a.log_opt.clone(),
        init: a.init,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
    };
    Ok(opts)
}

pub fn run(ctx: &Context, a: &Args, early: Option<nook::runtime::Pending>) -> anyhow::Result<i32> {
    let opts = match options(a) {
        Ok(o) => o,
        Err(e) => {
            if let Some(p) = early {
                p.abort();
            }
            return Err(e);
        }
    };
    if a.detach {
        // The container's monitor sets it up; this process only creates and reports.
        if let Some(p) = early {
            p.abort();
        }
        if !a.rootfs {
            ensure_image(ctx, a, &opts.image, None)?;
        }
        let c = container::create(ctx, &opts)?;
        match container::lifecycle::start_detached(ctx, &c.rec, false) {
            Ok(_) => {
                println!("{}", c.rec.id);
                Ok(0)
            }
            Err(e) => {
                if c.rec.rm {
                    let _ = container::remove(ctx, &c.rec, true);
                }
                Err(e.into())
            }
        }
    } else {
        if a.restart.as_deref().is_some_and(|r| r != "no") {
            if let Some(p) = early {
                p.abort();
            }
            anyhow::bail!("--restart needs a detached container (-d): a foreground run has no monitor to restart it");
        }
        // `--pull=missing` (the default): the run itself finds out whether the image is
        // stored (one read of images.json); only when it is not, pull and run again.
        let lazy = !a.rootfs && a.pull == "missing";
        let early = if a.rootfs || lazy { early } else { ensure_image(ctx, a, &opts.image, early)? };
        match container::run(ctx, &opts, early) {
            Err(container::ContainerError::Storage(nook::storage::StorageError::ImageNotFound(_))) if lazy => {
                pull_image(ctx, a, &opts.image)?;
                Ok(container::run(ctx, &opts, None)?)
            }
            r => Ok(r?),
        }
    }
}

/// `nook create`: the container, not started; prints its ID.
pub fn create(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let opts = options(a)?;
    if !a.rootfs {
        ensure_image(ctx, a, &opts.image, None)?;
    }
    let c = container::create(ctx, &opts)?;
    println!("{}", c.rec.id);
    Ok(0)
}

/// `--pull`: pulls the image first when the policy asks for it. The pull runs in a child
/// `nook pull` process: this process must stay single-threaded so that it can create the
/// container's user namespace, and a pull uses threads. When the image is stored and the
/// policy is `missing`, this costs one read of images.json (foreground `run` skips even that:
/// the run's own lookup tells).
/// `early` (the container setup process `main` started) is kept when nothing is pulled; a
/// pull stops it first (it would time out waiting) and the run starts a fresh one.
fn ensure_image(
    ctx: &Context,
    a: &Args,
    image: &str,
    early: Option<nook::runtime::Pending>,
) -> anyhow::Result<Option<nook::runtime::Pending>> {
    let present = match ctx.store.find_image(image) {
        Ok(_) => true,
        Err(nook::storage::StorageError::ImageNotFound(_)) => false,
        Err(e) => {
            if let Some(p) = early {
                p.abort();
            }
            return Err(e.into());
        }
    };
    let pull = match a.pull.as_str() {
        "never" => false,
        "missing" => !present,
        _ => true,
    };
    if !pull {
        return Ok(early);
    }
    if let Some(p) = early {
        p.abort();
    }
    match pull_image(ctx, a, image) {
        Err(_) if a.pull == "newer" && present => {
            eprintln!("nook: could not check {image} for a newer image; using the stored one");
            Ok(None)
        }
        r => r.map(|()| None),
    }
}

/// Pulls `image` in a child `nook pull` (which prints its own progress and one-line error).
fn pull_image(ctx: &Context, a: &Args, image: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use std::os::unix::process::CommandExt;

    let mut c = std::process::Command::new("/proc/self/exe");
    c.arg0("nook").arg("--root").arg(&ctx.paths.root).arg("--runroot").arg(&ctx.paths.runroot);
    if let Some(d) = &ctx.storage_driver {
        c.arg("--storage-driver").arg(d);
    }
    c.arg("pull");
    // Progress bars on a terminal; otherwise only an error, in one line.
    if !std::io::stderr().is_terminal() {
        c.arg("--quiet");
    }
    if let Some(v) = a.tls_verify {
        c.arg(format!("--tls-verify={v}"));
    }
    if let Some(f) = &a.authfile {
        c.arg("--authfile").arg(f);
    }
    if let Some(p) = &a.platform {
        c.arg("--platform").arg(p);
    }
    c.arg(image).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    let status = c.status().map_err(|e| anyhow::anyhow!("running nook pull for {image}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    // The child already printed the one-line error.
    Err(super::Failure { code: 125, msg: String::new() }.into())
}
