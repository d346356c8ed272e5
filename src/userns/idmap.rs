//! The uid/gid maps nook uses, where they come from, and writing them for a process.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::UsernsError;
use super::subid::{SubIdRange, parse_subid};

/// One line of `/proc/<pid>/uid_map`: ids `container_id..container_id+size` in the namespace
/// are `host_id..host_id+size` outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// Where the maps came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MapSource {
    /// The caller's ranges in /etc/subuid and /etc/subgid, written by newuidmap/newgidmap.
    SubIds { newuidmap: PathBuf, newgidmap: PathBuf },
    /// Only the caller's own id is mapped (to root), with the reason.
    SingleId { reason: String },
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdMappings {
    pub uid: Vec<IdMap>,
    pub gid: Vec<IdMap>,
    pub source: MapSource,
    /// The caller's host uid and gid.
    pub host_uid: u32,
    pub host_gid: u32,
}

impl IdMappings {
    /// The maps for the calling user: root → caller, then the subordinate ranges.
    pub fn for_current_user() -> IdMappings {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        Self::for_user(uid, gid, Path::new("/etc/subuid"), Path::new("/etc/subgid"))
    }

    fn for_user(uid: u32, gid: u32, subuid: &Path, subgid: &Path) -> IdMappings {
        let single = |reason: String| IdMappings {
            uid: vec![IdMap { container_id: 0, host_id: uid, size: 1 }],
            gid: vec![IdMap { container_id: 0, host_id: gid, size: 1 }],
            source: MapSource::SingleId { reason },
            host_uid: uid,
            host_gid: gid,
        };
        if std::env::var_os("NOOK_SINGLE_ID_MAP").is_some_and(|v| v == "1") {
            return single("NOOK_SINGLE_ID_MAP=1".into());
        }
        if uid == 0 {
            // Real root (or root in a namespace): subordinate ids are not how root maps ids.
            return single("running as root; only uid 0 is mapped".into());
        }
        let (Ok(su), Ok(sg)) = (fs::read_to_string(subuid), fs::read_to_string(subgid)) else {
            return single(format!(
                "{} or {} cannot be read; ask your administrator for a range (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER)",
                subuid.display(),
                subgid.display()
            ));
        };
        // Look the name up only when needed: NSS can be slow (LDAP) on shared machines.
        let mut name: Option<String> = None;
        let mut lookup_name = || -> Option<String> {
            if name.is_none() {
                name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name);
            }
            name.clone()
        };
        let mut uranges = parse_subid(&su, None, uid);
        if uranges.is_empty() {
            uranges = parse_subid(&su, lookup_name().as_deref(), uid);
        }
        let mut granges = parse_subid(&sg, None, uid);
        if granges.is_empty() {
            granges = parse_subid(&sg, lookup_name().as_deref(), uid);
        }
        let who = lookup_name().unwrap_or_else(|| uid.to_string());
        if uranges.is_empty() || granges.is_empty() {
            let missing = if uranges.is_empty() { subuid } else { subgid };
            return single(format!(
                "no entry for {who} in {}; ask your administrator for one (usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {who})",
                missing.display()
            ));
        }
        let (Some(newuidmap), Some(newgidmap)) = (find_in_path("newuidmap"), find_in_path("newgidmap")) else {
            return single("newuidmap/newgidmap are not installed (Debian/Ubuntu: apt install uidmap)".into());
        };
        IdMappings {
            uid: ranges_to_map(uid, &uranges),
            gid: ranges_to_map(gid, &granges),
            source: MapSource::SubIds { newuidmap, newgidmap },
            host_uid: uid,
            host_gid: gid,
        }
    }

    /// Number of ids mapped (uids).
    pub fn uid_count(&self) -> u64 {
        self.uid.iter().map(|m| u64::from(m.size)).sum()
    }

    pub fn is_single(&self) -> bool {
        matches!(self.source, MapSource::SingleId { .. })
    }

    /// True when container id `id` is mapped for uids (`gid == false`) or gids.
    pub fn maps(&self, id: u32, gid: bool) -> bool {
        let m = if gid { &self.gid } else { &self.uid };
        m.iter().any(|e| id >= e.container_id && u64::from(id) < u64::from(e.container_id) + u64::from(e.size))
    }

    /// The host id for container id `id`, if mapped.
    pub fn to_host(&self, id: u32, gid: bool) -> Option<u32> {
        let m = if gid { &self.gid } else { &self.uid };
        m.iter()
            .find(|e| id >= e.container_id && u64::from(id) < u64::from(e.container_id) + u64::from(e.size))
            .map(|e| e.host_id + (id - e.container_id))
    }
}

fn ranges_to_map(own: u32, ranges: &[SubIdRange]) -> Vec<IdMap> {
    let mut v = vec![IdMap { container_id: 0, host_id: own, size: 1 }];
    let mut next: u32 = 1;
    for r in ranges {
        v.push(IdMap { container_id: next, host_id: r.start, size: r.count });
        match next.checked_add(r.count) {
            Some(n) => next = n,
            None => break,
        }
    }
    v
}

/// Looks `prog` up in `$PATH` (and the usual sbin directories, which su sessions lack).
pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file()
}

fn map_args(m: &[IdMap]) -> Vec<String> {
    m.iter().flat_map(|e| [e.container_id.to_string(), e.host_id.to_string(), e.size.to_string()]).collect()
}

/// Writes the uid and gid maps of process `pid`, which must have just entered a new user
/// namespace and be waiting. With subordinate ids, newuidmap and newgidmap run in parallel.
pub fn write_maps(pid: i32, m: &IdMappings) -> Result<(), UsernsError> {
    MapWriter::start(pid, m)?.wait()
}

/// Map writing in progress: the setuid tools run while the caller does other work.
pub struct MapWriter {
    pid: i32,
    tools: Vec<(PathBuf, std::process::Child)>,
}

impl MapWriter {
    /// Starts writing the maps of `pid`: spawns newuidmap and newgidmap, or writes a single-id
    /// map directly (which is immediate).
    pub fn start(pid: i32, m: &IdMappings) -> Result<MapWriter, UsernsError> {
        let mut w = MapWriter { pid, tools: Vec::new() };
        match &m.source {
            MapSource::SubIds { newuidmap, newgidmap } => {
                for (tool, maps) in [(newuidmap, &m.uid), (newgidmap, &m.gid)] {
                    let child = Command::new(tool)
                        .arg(pid.to_string())
                        .args(map_args(maps))
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .map_err(|e| UsernsError::Spawn { what: tool.display().to_string(), source: e })?;
                    w.tools.push((tool.clone(), child));
                }
            }
            MapSource::SingleId { .. } => {
                let write = |what: &'static str, data: String| {
                    fs::write(format!("/proc/{pid}/{what}"), data).map_err(|e| UsernsError::MapWrite {
                        what,
                        pid,
                        source: e,
                    })
                };
                write("setgroups", "deny".into())?;
                let line =
                    |v: &[IdMap]| v.iter().map(|e| format!("{} {} {}\n", e.container_id, e.host_id, e.size)).collect();
                write("uid_map", line(&m.uid))?;
                write("gid_map", line(&m.gid))?;
            }
        }
        Ok(w)
    }

    /// Waits for the tools; the first failure is the error.
    pub fn wait(mut self) -> Result<(), UsernsError> {
        let mut first_err = None;
        for (tool, child) in std::mem::take(&mut self.tools) {
            let r = child.wait_with_output();
            if first_err.is_some() {
                continue;
            }
            match r {
                Err(e) => first_err = Some(UsernsError::Spawn { what: tool.display().to_string(), source: e }),
                Ok(out) if !out.status.success() => {
                    let msg = String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ");
                    first_err = Some(UsernsError::MapTool {
                        tool: tool.display().to_string(),
                        pid: self.pid,
                        msg: format!(
                            "{msg} (check the ranges in /etc/subuid and /etc/subgid and that {} is setuid root)",
                            tool.display()
                        ),
                    });
                }
                Ok(_) => {}
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for MapWriter {
    fn drop(&mut self) {
        for (_, child) in &mut self.tools {
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_root_then_ranges() {
        let m =
            ranges_to_map(1000, &[SubIdRange { start: 100000, count: 65536 }, SubIdRange { start: 300000, count: 10 }]);
        assert_eq!(
            m,
            vec![
                IdMap { container_id: 0, host_id: 1000, size: 1 },
                IdMap { container_id: 1, host_id: 100000, size: 65536 },
                IdMap { container_id: 65537, host_id: 300000, size: 10 },
            ]
        );
    }

    #[test]
    fn missing_entry_falls_back_to_single_id_with_a_reason() {
        let d = tempfile::tempdir().unwrap();
        let su = d.path().join("subuid");
        let sg = d.path().join("subgid");
        fs::write(&su, "someoneelse:100000:65536\n").unwrap();
        fs::write(&sg, "someoneelse:100000:65536\n").unwrap();
        let m = IdMappings::for_user(4242, 4242, &su, &sg);
        assert!(m.is_single());
        assert_eq!(m.uid, vec![IdMap { container_id: 0, host_id: 4242, size: 1 }]);
        match &m.source {
            MapSource::SingleId { reason } => assert!(reason.contains("no entry"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(m.maps(0, false) && !m.maps(1, false));
    }

    #[test]
    fn numeric_entries_are_used() {
        let d = tempfile::tempdir().unwrap();
        let su = d.path().join("subuid");
        let sg = d.path().join("subgid");
        fs::write(&su, "4242:100000:65536\n").unwrap();
        fs::write(&sg, "4242:200000:65536\n").unwrap();
        let m = IdMappings::for_user(4242, 4343, &su, &sg);
        if find_in_path("newuidmap").is_some() && find_in_path("newgidmap").is_some() {
            assert!(!m.is_single());
            assert_eq!(m.uid_count(), 65537);
            assert_eq!(m.to_host(1, false), Some(100000));
            assert_eq!(m.to_host(1, true), Some(200000));
            assert_eq!(m.to_host(0, true), Some(4343));
        } else {
            assert!(m.is_single());
        }
    }
}
