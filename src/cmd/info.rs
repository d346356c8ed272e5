use nook::cgroup;
use nook::config::RunRootSource;
use nook::context::Context;
use nook::storage::driver;
use nook::userns::MapSource;
use serde_json::{Value, json};

/// `nook info`
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: json (default: human-readable).
    #[arg(short = 'f', long)]
    format: Option<String>,
}

fn access(p: &str) -> bool {
    rustix::fs::access(p, rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK).is_ok()
}

pub fn run(ctx: &Context, a: &Args) -> anyhow::Result<i32> {
    let uname = rustix::system::uname();
    let cg = cgroup::detect();
    let mut missing: Vec<String> = Vec::new();
    let (map_source, map_reason) = match &ctx.maps.source {
        MapSource::SubIds { newuidmap, newgidmap } => {
            (format!("/etc/subuid and /etc/subgid via {} and {}", newuidmap.display(), newgidmap.display()), None)
        }
        MapSource::SingleId { reason } => {
            missing.push(format!("subordinate ids: {reason}"));
            ("single id (only your uid, as root)".to_string(), Some(reason.clone()))
        }
    };
    let drv = driver::choose(&ctx.store, &ctx.maps, ctx.storage_driver.as_deref(), &ctx.paths, false);
    let (driver_name, driver_reason) = match &drv {
        Ok(d) => (d.kind.name().to_string(), d.reason.clone()),
        Err(e) => ("unknown".to_string(), e.to_string()),
    };
    if matches!(&drv, Ok(d) if d.kind != driver::DriverKind::Overlay && !d.explicit) {
        missing.push(format!("kernel overlay: {driver_reason}"));
    }
    let fuse_program = driver::find_fuse_overlayfs();
    if fuse_program.is_none() {
        missing.push(
            "fuse-overlayfs is not installed (apt install fuse-overlayfs): used where kernel overlay cannot be, and for a fast --userns=keep-id"
                .into(),
        );
    }
    let fs = driver::select::storage_filesystem(&ctx.store);
    if let Some(h) = fs.as_ref().and_then(|f| driver::fsinfo::hint(f, &ctx.store.root)) {
        missing.push(h);
    }
    if !cg.limits_available {
        missing.push(format!("resource limits: {}", cg.detail));
    }
    if !access("/dev/fuse") {
        missing.push("/dev/fuse is not accessible (fuse-overlayfs cannot be used)".into());
    }
    if !access("/dev/net/tun") {
        missing.push("/dev/net/tun is not accessible (slirp4netns/pasta networking cannot be used)".into());
    }
    let runroot_reason = match &ctx.paths.runroot_source {
        RunRootSource::Flag => "--runroot".to_string(),
        RunRootSource::XdgRuntimeDir => "$XDG_RUNTIME_DIR".to_string(),
        RunRootSource::RunUser => "/run/user/<uid> (XDG_RUNTIME_DIR unset)".to_string(),
        RunRootSource::Fallback { reason } => reason.clone(),
    };
    let maps = |m: &[nook::userns::IdMap]| -> Value {
        m.iter().map(|e| json!({"container_id": e.container_id, "host_id": e.host_id, "size": e.size})).collect()
    };
    let info = json!({
        "host": {
            "arch": nook::image::config::host_arch(),
            "os": "linux",
            "kernel": uname.release().to_string_lossy(),
            "hostname": uname.nodename().to_string_lossy(),
            "rootless": rustix::process::getuid().as_raw() != 0,
            "uid": ctx.maps.host_uid,
            "gid": ctx.maps.host_gid,
            "idMappings": {
                "source": map_source,
                "reason": map_reason,
                "uidmap": maps(&ctx.maps.uid),
                "gidmap": maps(&ctx.maps.gid),
            },
            "cgroupVersion": cg.version,
            "cgroupManager": cg.manager,
            "cgroupControllers": cg.controllers,
            "cgroupDetail": cg.detail,
            "networkDefault": nook::net::DEFAULT_NETWORK.as_str(),
            "missing": missing,
        },
        "store": {
            "graphRoot": ctx.paths.root,
            "runRoot": ctx.paths.runroot,
            "runRootSource": runroot_reason,
            "configDir": ctx.paths.config,
            "graphDriverName": driver_name,
            "graphDriverReason": driver_reason,
            "graphFilesystem": fs.map(|f| f.name),
            "fuseOverlayfs": fuse_program,
            "imageCount": ctx.store.images().map(|i| i.len()).unwrap_or(0),
            "containerCount": ctx.store.containers().map(|c| c.len()).unwrap_or(0),
        },
        "version": { "Version": nook::VERSION },
    });
    match a.format.as_deref() {
        Some("json") | Some("{{json .}}") => println!("{}", serde_json::to_string_pretty(&info)?),
        Some(other) => anyhow::bail!("unknown format {other:?}: use json"),
        None => print!("{}", yaml(&info, 0)),
    }
    Ok(0)
}

/// podman-style indented output of the same data.
fn yaml(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Object(_) => out.push_str(&format!("{pad}{k}:\n{}", yaml(v, indent + 2))),
                    Value::Array(a) if a.is_empty() => out.push_str(&format!("{pad}{k}: []\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}{k}:\n{}", yaml(v, indent))),
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(a) => {
            for item in a {
                match item {
                    Value::Object(m) => {
                        let mut first = true;
                        for (k, v) in m {
                            let lead = if first { format!("{pad}- ") } else { format!("{pad}  ") };
                            out.push_str(&format!("{lead}{k}: {}\n", scalar(v)));
                            first = false;
                        }
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}
