//! What listings show of containers: `ps` rows and filters, `inspect` documents, and logs.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::lifecycle::{Status, status, status_text};
use super::{ContainerError, is_running};
use crate::context::Context;
use crate::monitor::logs::{self, Follower, Record, Stream};
use crate::storage::{ContainerRecord, ContainerState};

/// A container with its state and status.
pub struct Entry {
    pub rec: ContainerRecord,
    pub state: ContainerState,
    pub status: Status,
}

/// Every container, newest first.
pub fn entries(ctx: &Context) -> Result<Vec<Entry>, ContainerError> {
    let mut v = Vec::new();
    for rec in ctx.store.containers()? {
        let state = ctx.store.load_state(&rec.id)?;
        let status = status(&state);
        v.push(Entry { rec, state, status });
    }
    Ok(v)
}

/// `ps --filter KEY=VALUE`: keys AND together, repeated keys OR.
pub struct Filters(Vec<(String, String)>);

impl Filters {
    pub fn parse(list: &[String]) -> Result<Filters, String> {
        let mut v = Vec::new();
        for f in list {
            let (k, val) = f.split_once('=').ok_or_else(|| format!("invalid filter {f:?}: expected KEY=VALUE"))?;
            match k {
                "status" | "name" | "ancestor" | "label" | "id" | "exited" => v.push((k.to_string(), val.to_string())),
                _ => {
                    return Err(format!(
                        "invalid filter {k:?}: supported are status, name, ancestor, label, id, exited"
                    ));
                }
            }
        }
        Ok(Filters(v))
    }

    /// Does the filter select anything but running containers?
    pub fn names_status(&self) -> bool {
        self.0.iter().any(|(k, _)| k == "status" || k == "exited")
    }

    pub fn matches(&self, e: &Entry) -> bool {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        keys.iter().all(|key| self.0.iter().filter(|(k, _)| k == key).any(|(_, v)| one(key, v, e)))
    }
}

fn one(key: &str, v: &str, e: &Entry) -> bool {
    match key {
        "status" => e.status.state == v || (v == "restarting" && e.status.restarting),
        "name" => e.rec.name.contains(v),
        "id" => e.rec.id.starts_with(v),
        "exited" => e.status.state == "exited" && e.status.exit_code.map(|c| c.to_string()).as_deref() == Some(v),
        "ancestor" => {
            let base = |s: &str| s.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map(|(b, _)| b.to_string());
            e.rec.image_name == v
                || base(&e.rec.image_name).as_deref() == Some(v)
                || e.rec.image_id.as_deref().is_some_and(|id| id.starts_with(v.trim_start_matches("sha256:")))
        }
        "label" => match v.split_once('=') {
            Some((k, val)) => e.rec.labels.get(k).is_some_and(|x| x == val),
            None => e.rec.labels.contains_key(v),
        },
        _ => false,
    }
}

/// Bytes of a container's own files (its writable layer), best effort.
pub fn size(ctx: &Context, rec: &ContainerRecord) -> u64 {
    let dir = ctx.store.container_dir(&rec.id);
    let top = if dir.join("upper").exists() { dir.join("upper") } else { dir.join("rootfs") };
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&top)
}

fn unix(t: Option<DateTime<Utc>>) -> i64 {
    t.map(|t| t.timestamp()).unwrap_or(0)
}

fn go_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S%.f %z UTC").to_string())
        .unwrap_or_else(|| "0001-01-01 00:00:00 +0000 UTC".into())
}

/// `ps --format json`: podman's fields.
pub fn ps_json(e: &Entry, size: Option<u64>) -> Value {
    json!({
        "AutoRemove": e.rec.rm,
        "Command": e.rec.command,
        "Created": e.rec.created.timestamp(),
        "CreatedAt": ago_text(e.rec.created),
        "Exited": e.status.state == "exited",
        "ExitedAt": unix(e.state.finished_at),
        "ExitCode": e.status.exit_code.unwrap_or(0),
        "Id": e.rec.id,
        "Image": e.rec.image_name,
        "ImageID": e.rec.image_id.clone().unwrap_or_default(),
        "Labels": e.rec.labels,
        "Mounts": [],
        "Names": [e.rec.name],
        "Networks": [],
        "Pid": if e.status.state == "running" { e.state.pid.unwrap_or(0) } else { 0 },
        "Ports": null,
        "Restarts": e.state.restart_count,
        "Size": size.map(|s| json!({"rwSize": s, "rootFsSize": 0})),
        "StartedAt": unix(e.state.started_at),
        "State": e.status.state,
        "Status": status_text(&e.state),
    })
}

fn ago_text(t: DateTime<Utc>) -> String {
    crate::util::fmt::ago(&t)
}

/// The fields `ps --format '{{.X}}'` sees.
pub fn ps_template_fields(e: &Entry, no_trunc: bool, size: Option<u64>) -> Value {
    json!({
        "ID": if no_trunc { e.rec.id.clone() } else { e.rec.short_id().to_string() },
        "Names": e.rec.name,
        "Image": e.rec.image_name,
        "ImageID": e.rec.image_id.clone().unwrap_or_default(),
        "Command": e.rec.command.join(" "),
        "CreatedAt": go_time(Some(e.rec.created)),
        "Created": ago_text(e.rec.created),
        "RunningFor": ago_text(e.rec.created),
        "Status": status_text(&e.state),
        "State": e.status.state,
        "Labels": e.rec.labels,
        "Ports": "",
        "Size": size.map(crate::util::fmt::human_size).unwrap_or_default(),
        "Pid": e.state.pid.unwrap_or(0),
        "ExitCode": e.status.exit_code.unwrap_or(0),
        "AutoRemove": e.rec.rm,
        "Restarts": e.state.restart_count,
    })
}

fn rfc(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// `inspect`: a podman-like document.
pub fn inspect(ctx: &Context, rec: &ContainerRecord) -> Result<Value, ContainerError> {
    let st = ctx.store.load_state(&rec.id)?;
    let s = status(&st);
    let spec = super::load_spec(ctx, &rec.id).ok();
    let process = spec.as_ref().and_then(|sp| sp.process().clone());
    let env = process.as_ref().and_then(|p| p.env().clone()).unwrap_or_default();
    let cwd = process.as_ref().map(|p| p.cwd().display().to_string()).unwrap_or_default();
    let user = process.as_ref().map(|p| format!("{}:{}", p.user().uid(), p.user().gid())).unwrap_or_default();
    let hostname = spec.as_ref().and_then(|sp| sp.hostname().clone()).unwrap_or_default();
    let rundir = ctx.store.container_rundir(&rec.id);
    let mounts: Vec<Value> = spec
        .as_ref()
        .and_then(|sp| sp.mounts().clone())
        .unwrap_or_default()
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter_map(|m| {
            let src = m.source().clone()?;
            let dest = m.destination();
            let system = ["/sys", "/proc", "/dev"].iter().any(|d| dest.starts_with(d));
            if system || src.starts_with(&rundir) || src.starts_with(&ctx.paths.root) {
                return None;
            }
            let opts = m.options().clone().unwrap_or_default();
            Some(json!({
                "Type": "bind",
                "Source": src,
                "Destination": m.destination(),
                "Driver": "",
                "Mode": "",
                "Options": opts,
                "RW": !opts.iter().any(|o| o == "ro"),
                "Propagation": "rprivate",
            }))
        })
        .collect();
    let running = s.state == "running" || s.state == "stopping";
    let log_path = logs::log_path(&ctx.store.container_dir(&rec.id));
    Ok(json!({
        "Id": rec.id,
        "Created": rfc(Some(rec.created)),
        "Path": rec.command.first().cloned().unwrap_or_default(),
        "Args": rec.command.get(1..).unwrap_or_default(),
        "State": {
            "OciVersion": "1.2.0",
            "Status": s.state,
            "Running": running,
            "Paused": false,
            "Restarting": s.restarting,
            "OOMKilled": st.oom_killed,
            "Dead": false,
            "Pid": if running { st.pid.unwrap_or(0) } else { 0 },
            "ConmonPid": if st.monitor_alive() { st.monitor_pid.unwrap_or(0) } else { 0 },
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": rfc(st.started_at),
            "FinishedAt": rfc(st.finished_at),
        },
        "Image": rec.image_id.clone().unwrap_or_default(),
        "ImageName": rec.image_name,
        "Rootfs": rec.rootfs.as_ref().map(|r| r.display().to_string()).unwrap_or_default(),
        "Name": rec.name,
        "RestartCount": st.restart_count,
        "Driver": rec.driver,
        "LogPath": if rec.log_driver == "none" { String::new() } else { log_path.display().to_string() },
        "Mounts": mounts,
        "Config": {
            "Hostname": hostname,
            "User": user,
            "Env": env,
            "Cmd": rec.command,
            "Image": rec.image_name,
            "WorkingDir": cwd,
            "Labels": rec.labels,
            "StopSignal": super::lifecycle::stop_signal(rec).as_str(),
            "StopTimeout": rec.stop_timeout.unwrap_or(10),
            "Tty": rec.tty,
            "OpenStdin": rec.interactive,
            "AttachStdin": false,
            "CreateCommand": Value::Null,
        },
        "HostConfig": {
            "AutoRemove": rec.rm,
            "Init": rec.init,
            "NetworkMode": rec.network,
            "RestartPolicy": {"Name": if rec.restart == "no" { "" } else { rec.restart.as_str() }, "MaximumRetryCount": rec.restart_max},
            "LogConfig": {"Type": rec.log_driver, "Size": if rec.log_max_size > 0 { rec.log_max_size.to_string() } else { "0B".into() }},
        },
        "NetworkSettings": {
            "Ports": {},
            "IPAddress": "",
            "Gateway": "",
            "MacAddress": "",
            "Networks": {},
            "SandboxKey": "",
        },
    }))
}

/// `nook logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub names: bool,
}

/// A whole line: records joined until one ends the line.
struct Line {
    time: DateTime<Utc>,
    stream: Stream,
    text: Vec<u8>,
    full: bool,
}

fn lines(records: Vec<Record>, open: &mut Vec<Line>) -> Vec<Line> {
    let mut out = Vec::new();
    for r in records {
        let idx = open.iter().position(|l| l.stream == r.stream);
        let mut line = match idx {
            Some(i) => open.remove(i),
            None => Line { time: r.time, stream: r.stream, text: Vec::new(), full: false },
        };
        line.text.extend_from_slice(&r.text);
        if r.full {
            line.full = true;
            out.push(line);
        } else {
            open.push(line);
        }
    }
    out
}

fn print_line(rec: &ContainerRecord, l: &Line, o: &LogOptions) -> std::io::Result<()> {
    if o.since.is_some_and(|s| l.time < s) || o.until.is_some_and(|u| l.time > u) {
        return Ok(());
    }
    let mut buf = Vec::with_capacity(l.text.len() + 64);
    if o.names {
        buf.extend_from_slice(rec.name.as_bytes());
        buf.push(b' ');
    }
    if o.timestamps {
        buf.extend_from_slice(l.time.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
        buf.push(b' ');
    }
    buf.extend_from_slice(&l.text);
    if l.full {
        buf.push(b'\n');
    }
    match l.stream {
        Stream::Stdout => {
            let mut so = std::io::stdout().lock();
            so.write_all(&buf)?;
            so.flush()
        }
        Stream::Stderr => std::io::stderr().write_all(&buf),
    }
}

/// Prints the logs of `recs`; with `follow`, keeps printing until every container has exited
/// and its monitor is gone (across restarts by the monitor).
pub fn print_logs(ctx: &Context, recs: &[ContainerRecord], o: &LogOptions) -> Result<(), ContainerError> {
    let mut followers = Vec::new();
    for rec in recs {
        if rec.log_driver == "none" {
            return Err(ContainerError::Invalid(format!(
                "container {} has no logs: it runs with --log-driver none",
                rec.name
            )));
        }
        let dir = ctx.store.container_dir(&rec.id);
        let follower = o.follow.then(|| Follower::at_end(&dir));
        let records = logs::read_all(&dir).map_err(|e| ContainerError::Io(format!("reading the logs: {e}")))?;
        let mut open = Vec::new();
        let mut all = lines(records, &mut open);
        if let Some(n) = o.tail {
            let skip = all.len().saturating_sub(n);
            all.drain(..skip);
        }
        for l in &all {
            print_line(rec, l, o).map_err(|e| ContainerError::Io(e.to_string()))?;
        }
        if let Some(f) = follower {
            followers.push((rec, f, Vec::new()));
        }
    }
    while !followers.is_empty() {
        let mut i = 0;
        while i < followers.len() {
            let (rec, f, open) = &mut followers[i];
            // Checked before reading: whatever was written before the end is printed.
            let st = ctx.store.load_state(&rec.id).ok();
            let gone = !ctx.store.container_dir(&rec.id).join("container.json").exists();
            let ended = gone || st.as_ref().is_none_or(|s| !s.monitor_alive() && !is_running(s));
            let recs = f.poll().map_err(|e| ContainerError::Io(format!("following the logs: {e}")))?;
            for l in lines(recs, open) {
                print_line(rec, &l, o).map_err(|e| ContainerError::Io(e.to_string()))?;
            }
            if ended {
                followers.remove(i);
            } else {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `--since`/`--until`: RFC 3339, a date, unix seconds, or a duration before now (10m, 1h30m).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    if let Ok(secs) = s.parse::<f64>() {
        let whole = secs.trunc() as i64;
        let nanos = ((secs - secs.trunc()) * 1e9) as u32;
        return DateTime::from_timestamp(whole, nanos).ok_or_else(|| format!("invalid time {s:?}"));
    }
    let d = parse_duration(s)?;
    Ok(Utc::now() - chrono::Duration::from_std(d).map_err(|e| e.to_string())?)
}

/// Go-style durations: `300ms`, `10s`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    if s.is_empty() {
        return Err("empty duration".into());
    }
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let unit_end = b[i..].iter().position(|x| x.is_ascii_digit()).map(|p| i + p).unwrap_or(b.len());
        let unit = &s[i..unit_end];
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let secs = match unit {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("invalid duration {s:?}")),
        };
        total += Duration::from_secs_f64(secs);
        num.clear();
        i = unit_end;
    }
    if !num.is_empty() {
        return Err(format!("invalid duration {s:?}: missing unit"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err() && parse_duration("x").is_err());
        assert_eq!(parse_time("2026-01-02T03:04:05Z").unwrap().timestamp(), 1767323045);
        assert!(parse_time("10m").unwrap() < Utc::now());
    }
}
