//! Container networking. This slice supports `--network none` (a new namespace with only
//! loopback) and `--network host`; slirp4netns/pasta and port publishing come with the
//! networking issue. Also the /etc/hosts, /etc/hostname and /etc/resolv.conf a container sees.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::runtime::spec::NetworkMode;

/// The default when `--network` is not given.
pub const DEFAULT_NETWORK: NetworkMode = NetworkMode::Host;

pub fn parse_mode(s: &str) -> Result<NetworkMode, String> {
    match s {
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        "slirp4netns" | "pasta" | "bridge" | "private" => {
            Err(format!("network mode {s:?} is not supported yet; use --network none or --network host"))
        }
        other => Err(format!("unknown network mode {other:?}: use none or host")),
    }
}

/// Writes `hosts`, `hostname` and `resolv.conf` for a container into `dir`; returns
/// (host file, container path) pairs to bind-mount.
pub fn write_etc_files(
    dir: &Path,
    hostname: &str,
    name: &str,
    mode: NetworkMode,
) -> io::Result<Vec<(PathBuf, &'static str)>> {
    crate::util::fs::create_dir_all_mode(dir, 0o700)?;
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost localhost.localdomain localhost4 localhost4.localdomain4\n::1\tlocalhost localhost.localdomain localhost6 localhost6.localdomain6\n",
    );
    if mode == NetworkMode::Host
        && let Ok(h) = fs::read_to_string("/etc/hosts")
    {
        // The host's own entries, so names resolve as they do on the host.
        for line in h.lines() {
            let t = line.trim();
            if t.is_empty()
                || t.starts_with('#')
                || t.split_whitespace().skip(1).all(|n| n.starts_with("localhost") || n.starts_with("ip6-"))
            {
                continue;
            }
            hosts.push_str(line);
            hosts.push('\n');
        }
    }
    hosts.push_str(&format!("127.0.1.1\t{hostname} {name}\n"));
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hosts", hosts, "/etc/hosts"),
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        ("resolv.conf", resolv, "/etc/resolv.conf"),
    ];
    let mut out = Vec::new();
    for (f, content, dest) in files {
        let p = dir.join(f);
        fs::write(&p, content)?;
        out.push((p, dest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("none").unwrap(), NetworkMode::None);
        assert_eq!(parse_mode("host").unwrap(), NetworkMode::Host);
        assert!(parse_mode("pasta").unwrap_err().contains("not supported yet"));
        assert!(parse_mode("weird").is_err());
    }

    #[test]
    fn etc_files() {
        let d = tempfile::tempdir().unwrap();
        let f = write_etc_files(d.path(), "h1", "web", NetworkMode::None).unwrap();
        assert_eq!(f.len(), 3);
        let hosts = fs::read_to_string(d.path().join("hosts")).unwrap();
        assert!(hosts.contains("localhost") && hosts.contains("h1 web"));
        assert_eq!(fs::read_to_string(d.path().join("hostname")).unwrap(), "h1\n");
    }
}
