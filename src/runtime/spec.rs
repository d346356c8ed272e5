//! Building the OCI runtime spec for a container: podman's rootless defaults (mounts, masked
//! and read-only paths, capabilities) plus what the caller asked for.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceType, Mount, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::caps::DEFAULT_CAPS;
use super::user::ResolvedUser;
use crate::userns::IdMappings;

/// podman's masked paths (containers/common `DefaultMaskedPaths`).
pub const MASKED_PATHS: [&str; 13] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/dev/block",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/proc/interrupts",
];

/// podman's read-only paths (`DefaultReadOnlyPaths`).
pub const READONLY_PATHS: [&str; 6] =
    ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The devices bound from the host into /dev.
pub const DEVICES: [&str; 6] = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/// How the container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new, empty network namespace (loopback only).
    None,
    /// The host's network namespace.
    Host,
}

impl NetworkMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// A bind mount from the host (`-v HOST:CTR[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindVolume {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything that decides a container's spec, already resolved against the image.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ResolvedUser,
    pub hostname: String,
    pub tty: bool,
    pub read_only: bool,
    pub volumes: Vec<BindVolume>,
    pub network: NetworkMode,
    /// Capabilities (`CAP_*` names) the process keeps.
    pub caps: Vec<String>,
    pub privileged: bool,
    /// Host files bound over /etc/hosts, /etc/hostname and /etc/resolv.conf.
    pub etc_files: Vec<(PathBuf, &'static str)>,
}

/// The capability list after `--cap-add`/`--cap-drop` (`ALL` allowed in both), as podman.
pub fn effective_caps(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    let all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    if privileged {
        return sorted(all);
    }
    let mut set: HashSet<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if drop.iter().any(|d| d == "ALL") {
        set.clear();
    }
    if add.iter().any(|a| a == "ALL") {
        set.extend(all.iter().cloned());
    }
    for a in add.iter().filter(|a| *a != "ALL") {
        set.insert(a.clone());
    }
    for d in drop.iter().filter(|d| *d != "ALL") {
        set.remove(d);
    }
    sorted(set.into_iter().collect())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into());
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

pub(crate) fn to_oci_caps(names: &[String]) -> HashSet<Capability> {
    names.iter().filter_map(|n| Capability::from_str(n.trim_start_matches("CAP_")).ok()).collect()
}

fn id_maps(m: &[crate::userns::IdMap]) -> Result<Vec<LinuxIdMapping>, String> {
    m.iter()
        .map(|e| {
            LinuxIdMappingBuilder::default()
                .container_id(e.container_id)
                .host_id(e.host_id)
                .size(e.size)
                .build()
                .map_err(|err| err.to_string())
        })
        .collect()
}

/// A process's capabilities as podman gives them: a non-root process keeps the bounding set
/// only; root gets the set effective and permitted.
pub fn user_capabilities(bounding: HashSet<Capability>, uid: u32) -> Result<LinuxCapabilities, String> {
    let user_caps = if uid == 0 { bounding.clone() } else { HashSet::new() };
    LinuxCapabilitiesBuilder::default()
        .bounding(bounding)
        .effective(user_caps.clone())
        .permitted(user_caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(|e| e.to_string())
}

/// Builds the spec. `root` is where the root filesystem will be (informational: the runtime
/// mounts it through the storage driver).
pub fn build(c: &ContainerConfig, maps: &IdMappings, root: PathBuf) -> Result<Spec, String> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
    ];
    // gid=5 (tty) only where that group exists in the namespace; without it devpts refuses.
    if maps.maps(5, true) {
        mounts.push(mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ));
    } else {
        mounts.push(mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        ));
    }
    mounts.push(mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]));
    mounts.push(mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]));
    // A fresh sysfs needs a network namespace of our own; otherwise bind the host's, read-only.
    let sys_ro = if c.privileged { "rw" } else { "ro" };
    match c.network {
        NetworkMode::None => mounts.push(mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", sys_ro])),
        NetworkMode::Host => {
            mounts.push(mount("/sys", "bind", "/sys", &["rbind", "nosuid", "noexec", "nodev", sys_ro]))
        }
    }
    for (src, dest) in &c.etc_files {
        mounts.push(mount(dest, "bind", &src.to_string_lossy(), &["bind", "nosuid", "noexec", "nodev", "private"]));
    }
    if c.read_only {
        mounts.push(mount("/tmp", "tmpfs", "tmpfs", &["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]));
        mounts.push(mount("/var/tmp", "tmpfs", "tmpfs", &["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]));
        mounts.push(mount("/run", "tmpfs", "tmpfs", &["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]));
    }
    for v in &c.volumes {
        let mut o = vec!["rbind", "rprivate"];
        if v.read_only {
            o.push("ro");
        }
        mounts.push(mount(&v.destination, "bind", &v.source.to_string_lossy(), &o));
    }

    let capabilities = user_capabilities(to_oci_caps(&c.caps), c.user.uid)?;
    let mut user = UserBuilder::default().uid(c.user.uid).gid(c.user.gid);
    if !c.user.additional_gids.is_empty() {
        user = user.additional_gids(c.user.additional_gids.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(c.tty)
        .user(user.build().map_err(|e| e.to_string())?)
        .args(c.args.clone())
        .env(c.env.clone())
        .cwd(c.cwd.clone())
        .capabilities(capabilities)
        .no_new_privileges(!c.privileged)
        .build()
        .map_err(|e| e.to_string())?;

    let mut ns = vec![
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
    ];
    if c.network == NetworkMode::None {
        ns.push(LinuxNamespaceType::Network);
    }
    let namespaces = ns
        .into_iter()
        .map(|t| {
            let mut n = LinuxNamespace::default();
            n.set_typ(t);
            n
        })
        .collect::<Vec<_>>();
    let mut linux = LinuxBuilder::default()
        .uid_mappings(id_maps(&maps.uid)?)
        .gid_mappings(id_maps(&maps.gid)?)
        .namespaces(namespaces);
    if !c.privileged {
        linux = linux
            .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }
    let linux = linux.build().map_err(|e| e.to_string())?;

    SpecBuilder::default()
        .version("1.2.0")
        .root(RootBuilder::default().path(root).readonly(c.read_only).build().map_err(|e| e.to_string())?)
        .hostname(c.hostname.clone())
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_add_and_drop() {
        let d = effective_caps(false, &[], &[]);
        assert_eq!(d.len(), 11);
        let a = effective_caps(false, &["CAP_NET_ADMIN".into()], &["CAP_CHOWN".into()]);
        assert!(a.contains(&"CAP_NET_ADMIN".to_string()) && !a.contains(&"CAP_CHOWN".to_string()));
        let n = effective_caps(false, &["CAP_KILL".into()], &["ALL".into()]);
        assert_eq!(n, vec!["CAP_KILL".to_string()]);
        assert!(effective_caps(true, &[], &[]).len() > 30);
    }

    #[test]
    fn spec_has_podman_defaults() {
        let maps = IdMappings {
            uid: vec![crate::userns::IdMap { container_id: 0, host_id: 1000, size: 1 }],
            gid: vec![crate::userns::IdMap { container_id: 0, host_id: 1000, size: 1 }],
            source: crate::userns::MapSource::SingleId { reason: "test".into() },
            host_uid: 1000,
            host_gid: 1000,
        };
        let c = ContainerConfig {
            args: vec!["true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: None },
            hostname: "h".into(),
            tty: false,
            read_only: true,
            volumes: vec![BindVolume { source: "/src".into(), destination: "/dst".into(), read_only: true }],
            network: NetworkMode::None,
            caps: effective_caps(false, &[], &[]),
            privileged: false,
            etc_files: vec![],
        };
        let s = build(&c, &maps, "/r".into()).unwrap();
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["linux"]["maskedPaths"].as_array().unwrap().len(), 13);
        assert!(j["process"]["noNewPrivileges"].as_bool().unwrap());
        let mounts: Vec<_> =
            j["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap().to_string()).collect();
        assert!(mounts.contains(&"/dst".to_string()) && mounts.contains(&"/tmp".to_string()));
        // Single-id map: no gid=5 on devpts.
        let pts = j["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/dev/pts").unwrap();
        assert!(!pts["options"].as_array().unwrap().iter().any(|o| o == "gid=5"));
        assert!(j["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "network"));
    }
}
