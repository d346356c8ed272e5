//! Container lifecycle: create a container from an image (record, root filesystem, OCI spec),
//! run it with its owner attached, remove it. Ties storage, runtime and monitor together.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use oci_spec::runtime::Spec;

pub mod exec;
pub mod layer;
pub mod lifecycle;
pub mod top;
pub mod view;

use crate::context::Context;
use crate::image::{ImageDefaults, load_config};
use crate::monitor::Foreground;
use crate::net::{self, NetworkMode};
use crate::runtime::spec::{BindVolume, ContainerConfig, build, effective_caps};
use crate::runtime::user::resolve_user;
use crate::runtime::{self, Pending, RootfsSetup, RuntimeError, SpawnConfig, parse_cap};
use crate::storage::containers::{HelperProcess, process_start_time, valid_name};
use crate::storage::driver;
use crate::storage::{ContainerRecord, ContainerState, ContainerStatus, StorageError};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

impl ContainerError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Runtime(r) => r.exit_code(),
            _ => 125,
        }
    }
}

/// What the user asked for (`nook run` / `nook create` flags), independent of the CLI.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Image name or ID; with `rootfs`, unused.
    pub image: String,
    pub rootfs: Option<PathBuf>,
    pub command: Vec<String>,
    pub name: Option<String>,
    pub rm: bool,
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `--entrypoint`: a string, or a JSON array.
    pub entrypoint: Option<String>,
    pub volumes: Vec<String>,
    pub network: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub labels: BTreeMap<String, String>,
    /// `--userns`: empty for the default maps, or `keep-id[:uid=U,gid=G]`.
    pub userns: Option<String>,
    /// `--restart`: no, on-failure[:N], always, unless-stopped.
    pub restart: Option<String>,
    /// `--log-driver`: k8s-file (default) or none.
    pub log_driver: Option<String>,
    /// `--log-opt KEY=VALUE` (max-size=SIZE).
    pub log_opts: Vec<String>,
    /// `--init`.
    pub init: bool,
    /// `--stop-signal`.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<u32>,
}

/// `--restart`: the policy and its retry limit.
pub fn parse_restart(r: &str) -> Result<(String, u32), String> {
    let (name, n) = match r.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (r, None),
    };
    match (name, n) {
        ("" | "no", None) => Ok(("no".into(), 0)),
        ("always" | "unless-stopped", None) => Ok((name.into(), 0)),
        ("on-failure", None) => Ok((name.into(), 0)),
        ("on-failure", Some(n)) => n
            .parse::<u32>()
            .map(|n| (name.to_string(), n))
            .map_err(|_| format!("invalid restart policy {r:?}: the retry count must be a number")),
        _ => Err(format!(
            "invalid restart policy {r:?}: must be one of no, on-failure[:max_retries], always, unless-stopped"
        )),
    }
}

/// `--log-opt max-size=10k`: bytes.
pub fn parse_size(v: &str) -> Result<u64, String> {
    let t = v.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024u64),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as u64)
        .ok_or_else(|| format!("invalid size {v:?}"))
}

fn log_settings(o: &CreateOptions) -> Result<(String, u64), String> {
    let driver = match o.log_driver.as_deref() {
        None | Some("k8s-file") | Some("") => "k8s-file",
        Some("none") => "none",
        Some(d) => return Err(format!("unsupported log driver {d:?}: use k8s-file or none")),
    };
    let mut max = 0;
    for opt in &o.log_opts {
        match opt.split_once('=') {
            Some(("max-size", v)) => max = parse_size(v)?,
            Some(("path" | "tag", _)) => {}
            _ => return Err(format!("unsupported --log-opt {opt:?}: use max-size=SIZE")),
        }
    }
    Ok((driver.to_string(), max))
}

/// `-v HOST:CTR[:ro|rw|…]`.
pub fn parse_volume(v: &str) -> Result<BindVolume, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(format!("invalid volume {v:?}: expected HOST-DIR:CONTAINER-DIR[:OPTIONS]"));
        }
    };
    if !src.starts_with('/') && !src.starts_with('.') {
        return Err(format!("invalid volume {v:?}: named volumes are not supported yet; give an absolute host path"));
    }
    if !dst.starts_with('/') {
        return Err(format!("invalid volume {v:?}: the container path must be absolute"));
    }
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "rprivate" | "private" | "rbind" | "bind" => {}
            other => return Err(format!("invalid volume option {other:?} in {v:?}")),
        }
    }
    let source = fs::canonicalize(src).map_err(|e| format!("invalid volume {v:?}: {src}: {e}"))?;
    Ok(BindVolume { source, destination: dst.to_string(), read_only })
}

/// `--env-file`: KEY=VALUE lines; `#` comments; a bare KEY takes the host's value.
pub fn read_env_file(p: &Path) -> Result<Vec<String>, String> {
    let s = fs::read_to_string(p).map_err(|e| format!("reading env file {}: {e}", p.display()))?;
    Ok(s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(expand_env).collect())
}

/// `-e KEY=VALUE` as is; `-e KEY` takes the host's value (dropped if unset).
pub fn expand_env(e: &str) -> Option<String> {
    if e.contains('=') { Some(e.to_string()) } else { std::env::var(e).ok().map(|v| format!("{e}={v}")) }
}

/// Merges `add` into `env`, later values winning.
pub(crate) fn merge_env(env: &mut Vec<String>, add: impl IntoIterator<Item = String>) {
    for kv in add {
        let k = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(k.as_str()));
        env.push(kv);
    }
}

/// Entrypoint + command as podman computes them.
pub fn command_line(defaults: &ImageDefaults, entrypoint: Option<&str>, cmd: &[String]) -> Result<Vec<String>, String> {
    let (ep, image_cmd) = match entrypoint {
        Some(e) => {
            let ep = if e.trim_start().starts_with('[') {
                serde_json::from_str::<Vec<String>>(e).map_err(|err| format!("invalid --entrypoint {e:?}: {err}"))?
            } else if e.is_empty() {
                Vec::new()
            } else {
                vec![e.to_string()]
            };
            // An explicit entrypoint drops the image's CMD.
            (ep, Vec::new())
        }
        None => (defaults.entrypoint.clone(), defaults.cmd.clone()),
    };
    let mut args = ep;
    args.extend(if cmd.is_empty() { image_cmd } else { cmd.to_vec() });
    if args.is_empty() {
        return Err("no command or entrypoint provided, and no CMD or ENTRYPOINT from image".into());
    }
    Ok(args)
}

/// Reads a small file from the container's future root filesystem without mounting it.
pub(crate) fn read_image_file(ctx: &Context, rootfs: Option<&Path>, layers: &[String], rel: &str) -> String {
    let data = match rootfs {
        Some(dir) => fs::read(dir.join(rel)).ok(),
        None => driver::layer_dirs_top_first(&ctx.store, layers)
            .ok()
            .and_then(|l| driver::read_merged_file(&l, Path::new(rel))),
    };
    data.map(|d| String::from_utf8_lossy(&d).into_owned()).unwrap_or_default()
}

/// A created container: its record and OCI spec.
pub struct Created {
    pub rec: ContainerRecord,
    pub spec: Spec,
}

/// Creates a container: validates the options, resolves them against the image, stores the
/// record, prepares the root filesystem and writes the OCI spec (`config.json`).
pub fn create(ctx: &Context, o: &CreateOptions) -> Result<Created, ContainerError> {
    let inv = ContainerError::Invalid;
    let network = match &o.network {
        Some(n) => net::parse_mode(n).map_err(inv)?,
        None => net::DEFAULT_NETWORK,
    };
    let volumes = o.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>, _>>().map_err(inv)?;
    let cap_add = o.cap_add.iter().map(|c| parse_cap(c)).collect::<Result<Vec<_>, _>>().map_err(inv)?;
    let cap_drop = o.cap_drop.iter().map(|c| parse_cap(c)).collect::<Result<Vec<_>, _>>().map_err(inv)?;
    if let Some(n) = &o.name
        && !valid_name(n)
    {
        return Err(inv(format!("invalid container name {n:?}: names must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")));
    }
    let mut file_env = Vec::new();
    for f in &o.env_files {
        file_env.extend(read_env_file(f).map_err(inv)?);
    }
    let (restart, restart_max) = parse_restart(o.restart.as_deref().unwrap_or("no")).map_err(inv)?;
    let (log_driver, log_max_size) = log_settings(o).map_err(inv)?;
    if o.rm && restart != "no" {
        return Err(inv("the --rm option conflicts with --restart (when the restart policy is not \"no\")".into()));
    }
    if let Some(s) = &o.stop_signal {
        crate::util::signal::parse(s).map_err(inv)?;
    }
    if let Some(r) = &o.rootfs
        && !r.is_dir()
    {
        return Err(inv(format!("--rootfs {}: not a directory", r.display())));
    }

    let store = &ctx.store;
    let lock = store.lock(true)?;
    let (image_name, image_id, layers, defaults) = match &o.rootfs {
        Some(dir) => (dir.display().to_string(), None, Vec::new(), ImageDefaults::default()),
        None => {
            let img = store.find_image(&o.image)?;
            let cfg = load_config(store, &img)?;
            (o.image.clone(), Some(img.id.clone()), img.layers.clone(), ImageDefaults::from_config(&cfg))
        }
    };
    let rootfs = o.rootfs.as_ref().map(|r| fs::canonicalize(r).unwrap_or_else(|_| r.clone()));
    let args = command_line(&defaults, o.entrypoint.as_deref(), &o.command).map_err(inv)?;
    let keep_id = keep_id_of(ctx, o)?;
    let passwd = read_image_file(ctx, rootfs.as_deref(), &layers, "etc/passwd");
    let group = read_image_file(ctx, rootfs.as_deref(), &layers, "etc/group");
    // keep-id: the caller gets a passwd and group entry (as podman adds them).
    let keep_files = keep_id.as_ref().map(|k| layer::keep_id_etc(ctx, k, &passwd, &group));
    let (passwd, group) = match &keep_files {
        Some((p, g)) => (p.clone().unwrap_or(passwd), g.clone().unwrap_or(group)),
        None => (passwd, group),
    };
    let user_spec = o
        .user
        .clone()
        .or_else(|| keep_id.map(|k| format!("{}:{}", k.uid, k.gid)))
        .or_else(|| defaults.user.clone())
        .unwrap_or_default();
    let user = resolve_user(&user_spec, &passwd, &group).map_err(inv)?;

    let (driver_name, mount_program) = if rootfs.is_some() {
        ("rootfs".to_string(), None)
    } else {
        let choice = driver::choose(store, &ctx.maps, ctx.storage_driver.as_deref(), &ctx.paths, true)?;
        layer::driver_for(&choice, keep_id.as_ref())
    };
    let id = crate::util::id::random_id();
    let name = match &o.name {
        Some(n) => {
            store.reserve_name(n, &id)?;
            n.clone()
        }
        None => loop {
            let n = crate::util::id::random_name();
            match store.reserve_name(&n, &id) {
                Ok(()) => break n,
                Err(StorageError::NameInUse { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        },
    };
    let hostname = o.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    let mut env = vec![DEFAULT_PATH.to_string()];
    merge_env(&mut env, defaults.env.iter().cloned());
    merge_env(&mut env, [format!("HOSTNAME={hostname}"), "container=oci".to_string()]);
    if o.tty {
        merge_env(&mut env, ["TERM=xterm".to_string()]);
    }
    merge_env(&mut env, file_env);
    merge_env(&mut env, o.env.iter().filter_map(|e| expand_env(e)));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home.clone().unwrap_or_else(|| "/".into())));
    }
    let rec = ContainerRecord {
        id: id.clone(),
        name: name.clone(),
        image_name,
        image_id,
        layers,
        rootfs: rootfs.clone(),
        created: Utc::now(),
        command: args.clone(),
        driver: driver_name,
        rm: o.rm,
        labels: o.labels.clone(),
        tty: o.tty,
        interactive: o.interactive,
        network: network.as_str().to_string(),
        mount_program,
        keep_id,
        restart,
        restart_max,
        log_driver,
        log_max_size,
        init: o.init,
        stop_signal: o.stop_signal.clone().or_else(|| defaults.stop_signal.clone()),
        stop_timeout: o.stop_timeout,
    };
    let created = store.create_container(&rec);
    drop(lock);
    let _creating = match created {
        Ok(guard) => guard,
        Err(e) => {
            store.release_name(&name, &id);
            let _ = store.remove_tree(&store.container_dir(&id), &ctx.maps);
            return Err(e.into());
        }
    };
    let rest = (|| -> Result<Spec, ContainerError> {
        driver::create_rootfs(store, &ctx.maps, &rec)?;
        let mut etc_files = etc_paths(ctx, &id);
        if let Some(files) = &keep_files {
            etc_files.extend(layer::write_keep_id_etc(store, &id, files)?);
        }
        let cfg = ContainerConfig {
            args,
            env,
            cwd: o.workdir.clone().or_else(|| defaults.working_dir.clone()).unwrap_or_else(|| "/".into()),
            user,
            hostname,
            tty: o.tty,
            read_only: o.read_only,
            volumes,
            network,
            caps: effective_caps(o.privileged, &cap_add, &cap_drop),
            privileged: o.privileged,
            etc_files,
        };
        let root = match &rootfs {
            Some(r) => r.clone(),
            None => driver::rootfs_dir_hint(store, &rec),
        };
        let spec = build(&cfg, &maps_for(ctx, &rec), root).map_err(ContainerError::Invalid)?;
        let data = serde_json::to_vec(&spec).map_err(|e| ContainerError::Io(e.to_string()))?;
        // Not atomic: nothing runs this container before create() returns.
        fs::write(store.container_dir(&id).join("config.json"), &data)
            .map_err(|e| ContainerError::Io(format!("writing config.json: {e}")))?;
        Ok(spec)
    })();
    match rest {
        Ok(spec) => Ok(Created { rec, spec }),
        Err(e) => {
            let _ = store.remove_container(&rec, &ctx.maps);
            Err(e)
        }
    }
}

/// Where the generated /etc files of a container live (run root: regenerated at each start).
fn etc_paths(ctx: &Context, id: &str) -> Vec<(PathBuf, &'static str)> {
    let d = ctx.store.container_rundir(id);
    vec![
        (d.join("hosts"), "/etc/hosts"),
        (d.join("hostname"), "/etc/hostname"),
        (d.join("resolv.conf"), "/etc/resolv.conf"),
    ]
}

/// Loads a container's OCI spec.
pub fn load_spec(ctx: &Context, id: &str) -> Result<Spec, ContainerError> {
    let p = ctx.store.container_dir(id).join("config.json");
    let d = fs::read(&p).map_err(|e| ContainerError::Io(format!("reading {}: {e}", p.display())))?;
    serde_json::from_slice(&d)
        .map_err(|e| ContainerError::Storage(StorageError::Corrupt(format!("{}: {e}", p.display()))))
}

/// `nook run` in the foreground: creates the container and runs it with this process as its
/// owner and the terminal attached. Returns the container's exit code.
pub fn run(ctx: &Context, o: &CreateOptions, early: Option<Pending>) -> Result<i32, ContainerError> {
    // The setup process starts first: newuidmap and newgidmap, slow setuid helpers, then run
    // while the container is prepared. (An image that must be pulled is fetched before this.)
    // A keep-id container needs other maps than the default ones the early setup has.
    let keep_id = keep_id_of(ctx, o)?;
    let pending = match (early, keep_id) {
        (Some(p), None) => p,
        (Some(p), Some(k)) => {
            p.abort();
            runtime::begin(&k.maps(&ctx.maps))?
        }
        (None, k) => runtime::begin(&k.map(|k| k.maps(&ctx.maps)).unwrap_or_else(|| ctx.maps.clone()))?,
    };
    let c = match create(ctx, o) {
        Ok(c) => c,
        Err(e) => {
            pending.abort();
            return Err(e);
        }
    };
    run_attached(ctx, &c, pending)
}

/// Runs a created container with this process as its owner and the terminal attached, in the
/// setup process `pending` (from [`runtime::begin`]). With `--rm` the container is removed
/// afterwards.
pub fn run_attached(ctx: &Context, c: &Created, pending: Pending) -> Result<i32, ContainerError> {
    let r = run_attached_inner(ctx, c, pending);
    if c.rec.rm {
        // The container is gone for every command at once; its files are deleted in the
        // background so the exit status comes back without waiting for the disk.
        if ctx.store.unregister_container(&c.rec).is_ok() {
            delete_in_background(ctx, &c.rec.id);
        }
    }
    r
}

/// Deletes an unregistered container's files in a detached process (this process is
/// single-threaded here). If that process dies, a later cleanup finds the leftovers.
fn delete_in_background(ctx: &Context, id: &str) {
    // SAFETY: the foreground owner is single-threaded; the child only deletes files and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            // Off the terminal and out of any pipeline the caller reads.
            if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                use std::os::fd::AsRawFd;
                for fd in 0..3 {
                    // SAFETY: dup2 onto our own standard descriptors.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            let _g = ctx.store.lock_container(id);
            let code = i32::from(ctx.store.delete_container_files(id, &ctx.maps).is_err());
            // SAFETY: leave without running the parent's exit handlers twice.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        Err(_) => {
            let _ = ctx.store.delete_container_files(id, &ctx.maps);
        }
    }
}

fn run_attached_inner(ctx: &Context, c: &Created, pending: Pending) -> Result<i32, ContainerError> {
    let rec = &c.rec;
    let mut fg = match Foreground::prepare(rec.tty, rec.interactive) {
        Ok(f) => f,
        Err(e) => {
            pending.abort();
            return Err(ContainerError::Io(format!("preparing stdio: {e}")));
        }
    };
    // `--rm` containers are gone with their logs: none is written.
    if !rec.rm
        && rec.log_driver != "none"
        && let Ok(w) = crate::monitor::logs::LogWriter::open(&ctx.store.container_dir(&rec.id), rec.log_max_size)
    {
        fg.log_to(w);
    }
    let stdio = fg.child_stdio();
    let l = launch(ctx, rec, &c.spec, pending, stdio, false, |m| fg.created(m))?;
    let exit = fg
        .run(l.pid, l.pty_master, &l.helpers)
        .map_err(|e| ContainerError::Io(format!("monitoring the container: {e}")))?;
    if !rec.rm {
        record_exit(ctx, &rec.id, exit.code())?;
    }
    Ok(exit.code())
}

/// A container whose command runs: what its owner needs to watch it.
pub struct Launched {
    pub pid: i32,
    pub pty_master: Option<std::os::fd::OwnedFd>,
    /// Processes serving the root filesystem, stopped after the container exits.
    pub helpers: Vec<i32>,
}

/// Starts a container in the setup process `pending` (from [`runtime::begin`]) with this
/// process as its owner: the one path for foreground `nook run` and the detached monitor.
/// Writes the /etc files, mounts the root filesystem, creates the container, calls `created`
/// with its pty master (when it has a terminal), records it as running and lets it exec.
/// A failure is recorded in the container's state.
pub fn launch(
    ctx: &Context,
    rec: &ContainerRecord,
    spec: &Spec,
    pending: Pending,
    stdio: runtime::Stdio,
    detached: bool,
    created: impl FnOnce(Option<&std::os::fd::OwnedFd>),
) -> Result<Launched, ContainerError> {
    let store = &ctx.store;
    let prepared = (|| -> Result<RootfsSetup, ContainerError> {
        ctx.notice_single_id();
        let cg = crate::cgroup::detect();
        if !cg.limits_available && cg.version != crate::cgroup::CgroupVersion::V2 {
            ctx.paths.notice_once("cgroup", &format!("containers run without resource limits: {}", cg.detail));
        }
        let hostname = spec.hostname().clone().unwrap_or_default();
        let mode = if rec.network == "none" { NetworkMode::None } else { NetworkMode::Host };
        net::write_etc_files(&store.container_rundir(&rec.id), &hostname, &rec.name, mode)
            .map_err(|e| ContainerError::Io(format!("writing the container's /etc files: {e}")))?;
        Ok(driver::rootfs_setup(store, &ctx.maps, rec)?)
    })();
    let rootfs = match prepared {
        Ok(p) => p,
        Err(e) => {
            pending.abort();
            set_error(ctx, rec, &e.to_string());
            return Err(e);
        }
    };
    // Without a terminal or a monitor nothing has to happen between the container being
    // ready and its exec (one round trip less); with a terminal it is put in raw mode first.
    let spawn = SpawnConfig {
        spec,
        rootfs: &rootfs,
        stdio,
        kill_with_owner: true,
        init: rec.init,
        start_at_once: !rec.tty && !detached,
    };
    let cr = match pending.create(&spawn) {
        Ok(cr) => cr,
        Err(e) => {
            set_error(ctx, rec, &e.to_string());
            return Err(e.into());
        }
    };
    created(cr.pty_master.as_ref());
    let pid = cr.pid;
    let helpers = cr.helper_pids.clone();
    let master = cr.pty_master.as_ref().and_then(|m| m.try_clone().ok());
    let me = std::process::id() as i32;
    let mut saved = Ok(());
    // Recorded while the container execs its command.
    let started = cr.start(|| {
        saved = store.update_state(&rec.id, |st| {
            st.status = ContainerStatus::Running;
            st.pid = Some(pid);
            st.pid_start = process_start_time(pid);
            st.monitor_pid = Some(me);
            st.monitor_start = process_start_time(me);
            st.started_at = Some(Utc::now());
            st.finished_at = None;
            st.exit_code = None;
            st.oom_killed = false;
            st.error = None;
            st.boot_id = crate::storage::containers::boot_id();
            st.restart_delay_ms = None;
            st.detached = detached;
            st.helpers = helpers.iter().map(|h| HelperProcess::of(*h)).collect();
        })
    });
    if let Err(e) = started {
        // What serves the root filesystem goes with the container that never ran.
        for h in &helpers {
            runtime::fuse::stop_daemon(*h, std::time::Duration::from_secs(5));
        }
        let _ = store.update_state(&rec.id, |st| {
            st.status = ContainerStatus::Exited;
            st.pid = None;
            st.pid_start = None;
            st.helpers.clear();
            st.finished_at = Some(Utc::now());
            st.exit_code = Some(e.exit_code());
            st.error = Some(e.to_string());
        });
        return Err(e.into());
    }
    saved?;
    Ok(Launched { pid, pty_master: master, helpers })
}

/// Records a start failure (unless the container is gone or removed with `--rm`).
fn set_error(ctx: &Context, rec: &ContainerRecord, msg: &str) {
    if rec.rm && !ctx.store.container_dir(&rec.id).join("container.json").exists() {
        return;
    }
    let _ = ctx.store.update_state(&rec.id, |st| {
        if st.status == ContainerStatus::Running {
            st.status = ContainerStatus::Exited;
        }
        st.error = Some(msg.to_string());
    });
}

/// Records that the container exited with `code` (no longer running, no helpers).
pub fn record_exit(ctx: &Context, id: &str, code: i32) -> Result<(), ContainerError> {
    if !ctx.store.container_dir(id).join("container.json").exists() {
        return Ok(());
    }
    ctx.store.update_state(id, |st| {
        st.status = ContainerStatus::Exited;
        st.pid = None;
        st.pid_start = None;
        st.helpers.clear();
        st.finished_at = Some(Utc::now());
        st.exit_code = Some(code);
    })?;
    Ok(())
}

/// Is the container's process alive (the recorded pid, with the recorded start time)?
pub fn is_running(st: &ContainerState) -> bool {
    if st.status != ContainerStatus::Running && st.status != ContainerStatus::Stopping {
        return false;
    }
    if st.boot_id.is_some() && st.boot_id != crate::storage::containers::boot_id() {
        return false;
    }
    match (st.pid, st.pid_start) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        (Some(pid), None) => process_start_time(pid).is_some(),
        _ => false,
    }
}

/// Removes a container. A running one is refused unless `force`, which kills it first (and
/// tells its monitor not to restart it).
pub fn remove(ctx: &Context, rec: &ContainerRecord, force: bool) -> Result<(), ContainerError> {
    let store = &ctx.store;
    lifecycle::quiesce(ctx, rec, force)?;
    let _g = store.lock_container(&rec.id)?;
    // Removed meanwhile (`--rm`, another rm): nothing left to do.
    if !store.container_dir(&rec.id).join("container.json").exists() {
        return Ok(());
    }
    let st = store.load_state(&rec.id)?;
    if is_running(&st) {
        return Err(ContainerError::Invalid(format!(
            "container {} is still running after it was killed",
            rec.short_id()
        )));
    }
    layer::stop_helpers(ctx, rec, &st);
    store.remove_container(rec, &ctx.maps)?;
    // The exit code a monitor left for `wait`.
    let _ = fs::remove_file(ctx.paths.runroot.join("exits").join(&rec.id));
    Ok(())
}

/// Parses `--userns` for a container.
fn keep_id_of(ctx: &Context, o: &CreateOptions) -> Result<Option<crate::userns::KeepId>, ContainerError> {
    match o.userns.as_deref() {
        None => Ok(None),
        Some(u) => {
            crate::userns::parse_userns(u, ctx.maps.host_uid, ctx.maps.host_gid).map_err(ContainerError::Invalid)
        }
    }
}

/// The id maps a container runs with: the default ones, or its keep-id maps.
pub fn maps_for(ctx: &Context, rec: &ContainerRecord) -> crate::userns::IdMappings {
    match &rec.keep_id {
        Some(k) => k.maps(&ctx.maps),
        None => ctx.maps.clone(),
    }
}
