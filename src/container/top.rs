//! `nook top`: the processes of a running container, as podman's `top` (psgo) shows them.
//!
//! The container's processes are the host's /proc entries whose pid namespace is the one of
//! the container's init. Pids are shown as the container sees them (`NSpid` in
//! /proc/PID/status), users and groups through the container's id maps and its /etc/passwd
//! and /etc/group.

use std::fs;
use std::path::Path;

use super::{ContainerError, is_running, read_image_file};
use crate::context::Context;
use crate::storage::containers::process_start_time;
use crate::userns::IdMap;

/// psgo's default descriptors.
pub const DEFAULT_DESCRIPTORS: [&str; 8] = ["user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"];

/// A descriptor: its psgo name and AIX-format alias, and its column header.
const DESCRIPTORS: [(&str, &str, &str); 19] = [
    ("args", "%a", "COMMAND"),
    ("comm", "%c", "COMMAND"),
    ("etime", "%t", "ELAPSED"),
    ("group", "%G", "GROUP"),
    ("hgroup", "", "HGROUP"),
    ("hpid", "", "HPID"),
    ("huser", "", "HUSER"),
    ("nice", "%n", "NI"),
    ("pcpu", "%C", "%CPU"),
    ("pgid", "%r", "PGID"),
    ("pid", "%p", "PID"),
    ("ppid", "%P", "PPID"),
    ("rgroup", "%g", "RGROUP"),
    ("ruser", "%u", "RUSER"),
    ("state", "", "STATE"),
    ("time", "%x", "TIME"),
    ("tty", "%y", "TTY"),
    ("user", "%U", "USER"),
    ("vsz", "%z", "VSZ"),
];

/// The descriptors asked for (each argument may hold several, comma-separated), as psgo
/// names; the defaults when none.
pub fn parse_descriptors(args: &[String]) -> Result<Vec<&'static str>, ContainerError> {
    let mut out = Vec::new();
    for a in args.iter().flat_map(|a| a.split(',')).map(str::trim).filter(|a| !a.is_empty()) {
        let d = DESCRIPTORS
            .iter()
            .find(|(n, aix, _)| *n == a || (!aix.is_empty() && *aix == a))
            .ok_or_else(|| ContainerError::Invalid(format!("unknown descriptor: {a}")))?;
        out.push(d.0);
    }
    if out.is_empty() {
        out.extend(DEFAULT_DESCRIPTORS);
    }
    Ok(out)
}

fn header(d: &str) -> &'static str {
    DESCRIPTORS.iter().find(|(n, _, _)| *n == d).map(|(_, _, h)| *h).unwrap_or("?")
}

/// One process, from /proc.
#[derive(Debug, Clone, Default)]
struct Proc {
    hpid: i32,
    /// Pid, parent pid and process group as seen in the container (0: outside it).
    pid: i32,
    ppid_host: i32,
    pgid: i32,
    comm: String,
    args: Vec<String>,
    state: String,
    tty_nr: u64,
    /// CPU time in clock ticks.
    ticks: u64,
    nice: i64,
    /// Start, in clock ticks after boot.
    start: u64,
    vsz_kib: u64,
    /// Real and effective host uid and gid.
    ruid: u32,
    euid: u32,
    rgid: u32,
    egid: u32,
}

/// The last field of /proc/PID/stat's comm and the fields after it (`state` is index 0).
fn parse_stat(s: &str) -> Option<(String, Vec<&str>)> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    Some((comm, s.get(close + 2..)?.split_whitespace().collect()))
}

fn status_field<'a>(status: &'a str, key: &str) -> Vec<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default()
}

/// Reads process `hpid`; `level` is the index of the container's pid namespace in NSpid.
fn read_proc(hpid: i32, level: usize) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{hpid}/stat")).ok()?;
    let status = fs::read_to_string(format!("/proc/{hpid}/status")).ok()?;
    let (comm, f) = parse_stat(&stat)?;
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let at_level = |key: &str| status_field(&status, key).get(level).and_then(|v| v.parse().ok()).unwrap_or(0);
    let uids = status_field(&status, "Uid");
    let gids = status_field(&status, "Gid");
    let id = |v: &[&str], i: usize| v.get(i).and_then(|x| x.parse().ok()).unwrap_or(u32::MAX);
    let args: Vec<String> = fs::read(format!("/proc/{hpid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        })
        .unwrap_or_default();
    Some(Proc {
        hpid,
        pid: at_level("NSpid"),
        ppid_host: f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0),
        pgid: at_level("NSpgid"),
        comm,
        args,
        state: f.first().map(|s| s.to_string()).unwrap_or_default(),
        tty_nr: num(4),
        ticks: num(11) + num(12),
        nice: f.get(16).and_then(|v| v.parse().ok()).unwrap_or(0),
        start: num(19),
        vsz_kib: num(20) / 1024,
        ruid: id(&uids, 0),
        euid: id(&uids, 1),
        rgid: id(&gids, 0),
        egid: id(&gids, 1),
    })
}

/// The container id of host id `host` under `maps` (from /proc/PID/uid_map or gid_map).
fn to_container(maps: &[IdMap], host: u32) -> Option<u32> {
    maps.iter().find(|m| host >= m.host_id && host - m.host_id < m.size).map(|m| m.container_id + (host - m.host_id))
}

fn read_id_map(path: &str) -> Vec<IdMap> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<u32> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            match f.as_slice() {
                [c, h, s] => Some(IdMap { container_id: *c, host_id: *h, size: *s }),
                _ => None,
            }
        })
        .collect()
}

/// Id → name from a passwd or group file.
fn name_of(file: &str, id: u32) -> Option<String> {
    file.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[2].parse::<u32>().ok() == Some(id)).then(|| f[0].to_string())
    })
}

/// A duration as Go's `time.Duration.String()` prints it: `1h2m3.5s`, `1.5s`, `20ms`, `0s`.
pub fn go_duration(nanos: u128) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", frac(nanos, div));
    }
    let secs = nanos / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let s = frac(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s);
    out.push('s');
    out
}

/// `n / div` with the fraction's trailing zeros dropped.
fn frac(n: u128, div: u128) -> String {
    let whole = n / div;
    let rest = n % div;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = div.to_string().len() - 1;
    let f = format!("{rest:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

fn tty_name(tty_nr: u64) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        4 if minor < 64 => format!("tty{minor}"),
        _ => "?".into(),
    }
}

fn host_user(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn host_group(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| gid.to_string())
}

/// The container's table: a header row, then one row per process (by pid).
pub fn top(ctx: &Context, name: &str, descriptors: &[String]) -> Result<Vec<Vec<String>>, ContainerError> {
    let ds = parse_descriptors(descriptors)?;
    let store = &ctx.store;
    let rec = store.find_container(name)?;
    let st = store.load_state(&rec.id)?;
    let not_running = || {
        ContainerError::Invalid(format!("top can only be used on running containers: container {name} is not running"))
    };
    let init = match st.pid {
        Some(p) if is_running(&st) => p,
        _ => return Err(not_running()),
    };
    let ns = fs::read_link(format!("/proc/{init}/ns/pid")).map_err(|_| not_running())?;
    let level = status_field(&fs::read_to_string(format!("/proc/{init}/status")).unwrap_or_default(), "NSpid")
        .len()
        .saturating_sub(1);
    let uid_map = read_id_map(&format!("/proc/{init}/uid_map"));
    let gid_map = read_id_map(&format!("/proc/{init}/gid_map"));
    if st.pid_start.is_some() && process_start_time(init) != st.pid_start {
        return Err(not_running());
    }
    // The container's own files (keep-id's generated entries included), else the image's.
    let etc = |rel: &str| {
        fs::read_to_string(Path::new(&format!("/proc/{init}/root")).join(rel))
            .unwrap_or_else(|_| read_image_file(ctx, rec.rootfs.as_deref(), &rec.layers, rel))
    };
    let (passwd, group) = (etc("etc/passwd"), etc("etc/group"));

    let mut procs: Vec<Proc> = Vec::new();
    for e in fs::read_dir("/proc").map_err(|e| ContainerError::Io(format!("reading /proc: {e}")))?.flatten() {
        let Some(hpid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if fs::read_link(format!("/proc/{hpid}/ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        if let Some(p) = read_proc(hpid, level) {
            procs.push(p);
        }
    }
    procs.sort_by_key(|p| p.pid);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u128;
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let now_ns = now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128;
    let in_ctr = |host: i32| procs.iter().find(|p| p.hpid == host).map(|p| p.pid).unwrap_or(0);
    let user = |uid: u32| match to_container(&uid_map, uid) {
        Some(c) => name_of(&passwd, c).unwrap_or_else(|| c.to_string()),
        None => uid.to_string(),
    };
    let grp = |gid: u32| match to_container(&gid_map, gid) {
        Some(c) => name_of(&group, c).unwrap_or_else(|| c.to_string()),
        None => gid.to_string(),
    };

    let mut rows = vec![ds.iter().map(|d| header(d).to_string()).collect::<Vec<_>>()];
    for p in &procs {
        let elapsed = now_ns.saturating_sub(p.start as u128 * 1_000_000_000 / hz);
        let cpu_ns = p.ticks as u128 * 1_000_000_000 / hz;
        let row = ds
            .iter()
            .map(|d| match *d {
                "args" if !p.args.is_empty() => p.args.join(" "),
                "args" | "comm" => p.comm.clone(),
                "etime" => go_duration(elapsed),
                "group" => grp(p.egid),
                "hgroup" => host_group(p.egid),
                "hpid" => p.hpid.to_string(),
                "huser" => host_user(p.euid),
                "nice" => p.nice.to_string(),
                "pcpu" => {
                    let pct = if elapsed == 0 { 0.0 } else { cpu_ns as f64 / elapsed as f64 * 100.0 };
                    format!("{pct:.3}")
                }
                "pgid" => p.pgid.to_string(),
                "pid" => p.pid.to_string(),
                "ppid" => in_ctr(p.ppid_host).to_string(),
                "rgroup" => grp(p.rgid),
                "ruser" => user(p.ruid),
                "state" => p.state.clone(),
                "time" => go_duration(cpu_ns),
                "tty" => tty_name(p.tty_nr),
                "user" => user(p.euid),
                "vsz" => p.vsz_kib.to_string(),
                _ => String::new(),
            })
            .collect();
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(20_000_000), "20ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(85_672_935_485), "1m25.672935485s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500), "1.5µs");
    }

    #[test]
    fn descriptors() {
        assert_eq!(parse_descriptors(&[]).unwrap(), DEFAULT_DESCRIPTORS.to_vec());
        assert_eq!(parse_descriptors(&["pid,user".into(), "%C".into()]).unwrap(), vec!["pid", "user", "pcpu"]);
        assert!(parse_descriptors(&["bogus".into()]).is_err());
    }

    #[test]
    fn ids_ttys_and_stat() {
        let m = [
            IdMap { container_id: 0, host_id: 1000, size: 1 },
            IdMap { container_id: 1, host_id: 100000, size: 65536 },
        ];
        assert_eq!(to_container(&m, 1000), Some(0));
        assert_eq!(to_container(&m, 100999), Some(1000));
        assert_eq!(to_container(&m, 5), None);
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        let (comm, f) = parse_stat("12 (a (b) c) S 1 12 12 0 -1").unwrap();
        assert_eq!(comm, "a (b) c");
        assert_eq!(f[0], "S");
        assert_eq!(f[1], "1");
        assert_eq!(
            name_of("root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n", 65534).as_deref(),
            Some("nobody")
        );
    }
}
