//! Capabilities: podman's default set, `--cap-add/--cap-drop` names, and applying a set.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};

/// podman's default capabilities (containers.conf `default_capabilities`).
pub const DEFAULT_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// `net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `all` → `ALL`.
pub fn parse_cap(s: &str) -> Result<String, String> {
    let up = s.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") { up } else { format!("CAP_{up}") };
    Capability::from_str(&full).map(|_| full).map_err(|_| format!("unknown capability {s:?}"))
}

pub(crate) fn to_caps(names: &[String]) -> HashSet<Capability> {
    names.iter().filter_map(|n| Capability::from_str(n).ok()).collect()
}

/// Drops every capability not in `keep` from the bounding set.
pub(crate) fn apply_bounding(keep: &HashSet<Capability>) -> Result<(), String> {
    for c in caps::all() {
        if !keep.contains(&c) {
            match caps::drop(None, CapSet::Bounding, c) {
                Ok(()) => {}
                // Capabilities newer than the kernel do not exist there.
                Err(_) if !caps::runtime::thread_all_supported().contains(&c) => {}
                Err(e) => return Err(format!("dropping {c} from the bounding set: {e}")),
            }
        }
    }
    Ok(())
}

/// Sets effective, permitted, inheritable and ambient sets after the uid change.
pub(crate) fn apply_sets(
    effective: &HashSet<Capability>,
    permitted: &HashSet<Capability>,
    inheritable: &HashSet<Capability>,
    ambient: &HashSet<Capability>,
) -> Result<(), String> {
    // Effective must stay a subset of permitted at every step: shrink it first.
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    caps::set(None, CapSet::Effective, effective).map_err(|e| format!("setting effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, permitted).map_err(|e| format!("setting permitted capabilities: {e}"))?;
    caps::set(None, CapSet::Inheritable, inheritable).map_err(|e| format!("setting inheritable capabilities: {e}"))?;
    for c in ambient {
        caps::raise(None, CapSet::Ambient, *c).map_err(|e| format!("raising ambient {c}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_cap("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(parse_cap("CAP_SYS_ADMIN").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(parse_cap("all").unwrap(), "ALL");
        assert!(parse_cap("nope").is_err());
        for c in DEFAULT_CAPS {
            assert!(Capability::from_str(c).is_ok());
        }
    }

    #[test]
    fn default_set_is_podmans_capeff() {
        let mask: u64 = to_caps(&DEFAULT_CAPS.map(String::from)).iter().map(|c| 1u64 << c.index()).sum();
        assert_eq!(mask, 0x8004_05fb);
    }
}
