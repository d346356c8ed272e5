//! `nook exec`: finds a running container, builds the process to run from its OCI spec
//! (`config.json`) and the options, and runs it in the container's namespaces
//! ([`crate::runtime::exec`]) with this process as its owner.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};

use super::{ContainerError, expand_env, is_running, load_spec, maps_for, merge_env, read_env_file};
use crate::context::Context;
use crate::monitor::Foreground;
use crate::runtime::Stdio;
use crate::runtime::exec::{ExecConfig, ExecTarget, spawn};
use crate::runtime::spec::{effective_caps, to_oci_caps, user_capabilities};
use crate::storage::containers::process_start_time;

/// What the user asked for (`nook exec` flags), independent of the CLI.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Container name or ID (prefix).
    pub container: String,
    pub command: Vec<String>,
    pub interactive: bool,
    pub tty: bool,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    /// `-u USER[:GROUP]`, names resolved in the container.
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Start the process and return without waiting for it (stdio on /dev/null, no terminal:
    /// nothing would hold it once nook exits).
    pub detach: bool,
    pub privileged: bool,
}

/// The process to run: the container's process with the command, environment, working
/// directory and capabilities the options ask for. Returns it and whether HOME should follow
/// a `-u` user (it does unless the options set HOME).
pub fn build_process(base: &Process, o: &ExecOptions) -> Result<(Process, bool), ContainerError> {
    if o.command.is_empty() {
        return Err(ContainerError::Invalid("exec requires a command to run".into()));
    }
    let mut extra = Vec::new();
    for f in &o.env_files {
        extra.extend(read_env_file(f).map_err(ContainerError::Invalid)?);
    }
    extra.extend(o.env.iter().filter_map(|e| expand_env(e)));
    let sets_home = extra.iter().any(|e| e.starts_with("HOME="));
    let mut env = base.env().clone().unwrap_or_default();
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    merge_env(&mut env, extra);
    let mut p = base.clone();
    p.set_args(Some(o.command.clone()));
    p.set_env(Some(env));
    p.set_terminal(Some(o.tty));
    if let Some(w) = &o.workdir {
        if !w.starts_with('/') {
            return Err(ContainerError::Invalid(format!("invalid working directory {w:?}: it must be absolute")));
        }
        p.set_cwd(w.into());
    }
    if o.privileged {
        let all = to_oci_caps(&effective_caps(true, &[], &[]));
        p.set_capabilities(Some(user_capabilities(all, p.user().uid()).map_err(ContainerError::Invalid)?));
    }
    Ok((p, o.user.is_some() && !sets_home))
}

fn not_running(name: &str) -> ContainerError {
    ContainerError::Invalid(format!("container {name} is not running"))
}

/// Runs a command in a running container. Returns its exit code (0 once started with
/// `detach`).
pub fn exec(ctx: &Context, o: &ExecOptions) -> Result<i32, ContainerError> {
    let store = &ctx.store;
    let rec = store.find_container(&o.container)?;
    let st = store.load_state(&rec.id)?;
    let pid = match st.pid {
        Some(pid) if is_running(&st) => pid,
        _ => return Err(not_running(&o.container)),
    };
    let spec: Spec = load_spec(ctx, &rec.id)?;
    let base = spec.process().as_ref().ok_or_else(|| ContainerError::Io("config.json has no process".into()))?;
    let (process, user_home) = build_process(base, o)?;
    // The descriptors pin the process: is it still the container's?
    let same = || st.pid_start.is_none_or(|s| process_start_time(pid) == Some(s));
    let target = match ExecTarget::open(pid, &spec) {
        Ok(t) if same() => t,
        Ok(_) => return Err(not_running(&o.container)),
        Err(e) if same() => return Err(e.into()),
        Err(_) => return Err(not_running(&o.container)),
    };
    let cfg = |stdio| ExecConfig {
        target: &target,
        process: &process,
        user: o.user.as_deref(),
        user_home,
        stdio,
        single_id: maps_for(ctx, &rec).is_single(),
        kill_with_owner: !o.detach,
    };
    if o.detach {
        let null = |write: bool| {
            std::fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open("/dev/null")
                .map_err(|e| ContainerError::Io(format!("opening /dev/null: {e}")))
        };
        let (i, out) = (null(false)?, null(true)?);
        let stdio = Stdio::Fds { stdin: i.as_raw_fd(), stdout: out.as_raw_fd(), stderr: out.as_raw_fd() };
        spawn(&cfg(stdio))?.start()?;
        return Ok(0);
    }
    let mut fg =
        Foreground::prepare(o.tty, o.interactive).map_err(|e| ContainerError::Io(format!("preparing stdio: {e}")))?;
    let pending = spawn(&cfg(fg.child_stdio()))?;
    fg.created(pending.pty_master.as_ref());
    let pid = pending.pid;
    let master = match pending.pty_master.as_ref().map(|m| m.try_clone()).transpose() {
        Ok(m) => m,
        Err(e) => {
            pending.abort();
            return Err(ContainerError::Io(format!("duplicating the pty: {e}")));
        }
    };
    pending.start()?;
    let exit = fg.run(pid, master, &[]).map_err(|e| ContainerError::Io(format!("running the command: {e}")))?;
    Ok(exit.code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    fn base() -> Process {
        ProcessBuilder::default()
            .args(vec!["sleep".to_string(), "1000".to_string()])
            .env(vec!["PATH=/bin".to_string(), "HOME=/root".to_string(), "A=container".to_string()])
            .cwd("/srv")
            .capabilities(user_capabilities(to_oci_caps(&["CAP_KILL".to_string()]), 0).unwrap())
            .build()
            .unwrap()
    }

    fn opts() -> ExecOptions {
        ExecOptions { container: "c".into(), command: vec!["sh".into()], ..Default::default() }
    }

    #[test]
    fn the_containers_process_with_the_options() {
        let (p, home) = build_process(&base(), &opts()).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.cwd().to_str(), Some("/srv"));
        assert_eq!(p.env().as_ref().unwrap(), base().env().as_ref().unwrap());
        assert!(!home);

        let o = ExecOptions {
            env: vec!["A=flag".into(), "B=2".into()],
            tty: true,
            workdir: Some("/tmp".into()),
            user: Some("nobody".into()),
            ..opts()
        };
        let (p, home) = build_process(&base(), &o).unwrap();
        let env = p.env().clone().unwrap();
        assert!(env.contains(&"A=flag".to_string()) && !env.contains(&"A=container".to_string()));
        assert!(env.contains(&"B=2".to_string()) && env.contains(&"TERM=xterm".to_string()));
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.terminal(), Some(true));
        assert!(home, "-u moves HOME to the user's");
        let (_, home) = build_process(&base(), &ExecOptions { env: vec!["HOME=/x".into()], ..o.clone() }).unwrap();
        assert!(!home, "unless HOME is given");
    }

    #[test]
    fn privileged_and_errors() {
        let (p, _) = build_process(&base(), &ExecOptions { privileged: true, ..opts() }).unwrap();
        let caps = p.capabilities().clone().unwrap();
        assert!(caps.bounding().as_ref().unwrap().len() > 30);
        assert_eq!(caps.effective(), caps.bounding());
        assert!(build_process(&base(), &ExecOptions { command: vec![], ..opts() }).is_err());
        assert!(build_process(&base(), &ExecOptions { workdir: Some("rel".into()), ..opts() }).is_err());
    }
}
