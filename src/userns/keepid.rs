//! `--userns=keep-id`: the caller's uid and gid are the same inside the container as outside
//! (podman's semantics).
//!
//! In terms of the default maps' ids (0 = the caller, 1.. = the subordinate ids, called
//! *intermediate* ids here), podman's keep-id map for uid X with N subordinate ids is:
//! ```text
//! container X          -> intermediate 0 (the caller)
//! container 0..X-1     -> intermediate 1..X
//! container X+1..N     -> intermediate X+1..N
//! ```
//! Image layers are stored with the default maps, so a file owned by container id c in the
//! image has intermediate id c. A keep-id container must still see it as c, which is what
//! [`KeepId::to_container`] / [`KeepId::from_container`] translate (fuse-overlayfs does it on
//! the fly with `uidmapping=`/`gidmapping=`; a copy does it once).

use super::{IdMap, IdMappings, MapSource};

/// A parsed `--userns=keep-id[:uid=U,gid=G]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeepId {
    pub uid: u32,
    pub gid: u32,
}

/// Parses `--userns`: `""`/`host`… mean the default maps (None); `keep-id[:uid=U,gid=G]`.
pub fn parse_userns(s: &str, host_uid: u32, host_gid: u32) -> Result<Option<KeepId>, String> {
    let (mode, opts) = match s.split_once(':') {
        Some((m, o)) => (m, o),
        None => (s, ""),
    };
    match mode {
        "" | "host" => {
            if !opts.is_empty() {
                return Err(format!("invalid --userns {s:?}"));
            }
            Ok(None)
        }
        "keep-id" => {
            let mut k = KeepId { uid: host_uid, gid: host_gid };
            for o in opts.split(',').filter(|o| !o.is_empty()) {
                let (key, v) = o.split_once('=').ok_or_else(|| format!("invalid keep-id option {o:?}"))?;
                let n: u32 = v.parse().map_err(|_| format!("invalid keep-id option {o:?}: not a number"))?;
                match key {
                    "uid" => k.uid = n,
                    "gid" => k.gid = n,
                    _ => return Err(format!("invalid keep-id option {o:?}: use uid=N or gid=N")),
                }
            }
            Ok(Some(k))
        }
        "auto" | "nomap" | "ns" | "private" => {
            Err(format!("--userns={mode} is not supported; use keep-id or leave it out"))
        }
        other => Err(format!("invalid --userns {other:?}: use keep-id")),
    }
}

/// Segments (container start, intermediate start, size) of the keep-id map for id `x` with
/// `n` subordinate ids.
fn segments(x: u32, n: u32) -> Vec<(u32, u32, u32)> {
    let mut v = vec![(x, 0, 1)];
    let low = x.min(n);
    if low > 0 {
        v.push((0, 1, low));
    }
    if x < n {
        v.push((x + 1, x + 1, n - x));
    }
    v
}

/// Composes keep-id segments with the default map (intermediate -> host).
fn compose(segs: &[(u32, u32, u32)], default: &[IdMap]) -> Vec<IdMap> {
    let mut out = Vec::new();
    for &(c, i, s) in segs {
        let (lo, hi) = (u64::from(i), u64::from(i) + u64::from(s));
        for d in default {
            let (dlo, dhi) = (u64::from(d.container_id), u64::from(d.container_id) + u64::from(d.size));
            let (a, b) = (lo.max(dlo), hi.min(dhi));
            if a < b {
                out.push(IdMap {
                    container_id: (u64::from(c) + (a - lo)) as u32,
                    host_id: (u64::from(d.host_id) + (a - dlo)) as u32,
                    size: (b - a) as u32,
                });
            }
        }
    }
    out.sort_by_key(|m| m.container_id);
    out
}

fn subordinate_count(m: &[IdMap]) -> u32 {
    let total: u64 = m.iter().map(|e| u64::from(e.size)).sum();
    total.saturating_sub(1).min(u64::from(u32::MAX - 1)) as u32
}

impl KeepId {
    /// The container's maps: the caller's id at `uid`/`gid`, the subordinate ids around it.
    pub fn maps(&self, default: &IdMappings) -> IdMappings {
        let nu = subordinate_count(&default.uid);
        let ng = subordinate_count(&default.gid);
        IdMappings {
            uid: compose(&segments(self.uid, nu), &default.uid),
            gid: compose(&segments(self.gid, ng), &default.gid),
            source: match &default.source {
                MapSource::SubIds { newuidmap, newgidmap } => {
                    MapSource::SubIds { newuidmap: newuidmap.clone(), newgidmap: newgidmap.clone() }
                }
                MapSource::SingleId { reason } => MapSource::SingleId { reason: reason.clone() },
            },
            host_uid: default.host_uid,
            host_gid: default.host_gid,
        }
    }

    /// The container id under keep-id of a file whose intermediate (store) id is `i`.
    pub fn to_container(&self, i: u32, gid: bool) -> u32 {
        let x = if gid { self.gid } else { self.uid };
        if i == 0 {
            x
        } else if i <= x {
            i - 1
        } else {
            i
        }
    }

    /// The intermediate (store) id that shows as container id `c` under keep-id.
    pub fn from_container(&self, c: u32, gid: bool) -> u32 {
        let x = if gid { self.gid } else { self.uid };
        if c == x {
            0
        } else if c < x {
            c + 1
        } else {
            c
        }
    }

    /// fuse-overlayfs `uidmapping=`/`gidmapping=` values (`STORED:SHOWN:LEN` triples) for a
    /// keep-id container whose layers are stored with the default maps: the daemon runs in the
    /// keep-id namespace, sees a file of image id c as `to_container(c)`, and must show c.
    pub fn fuse_mappings(&self, default: &IdMappings) -> (String, String) {
        let f = |x: u32, n: u32| -> String {
            segments(x, n).iter().map(|(c, i, s)| format!("{c}:{i}:{s}")).collect::<Vec<_>>().join(":")
        };
        (f(self.uid, subordinate_count(&default.uid)), f(self.gid, subordinate_count(&default.gid)))
    }

    /// `U:G`, as helpers take it.
    pub fn arg(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }

    pub fn parse_arg(s: &str) -> Option<KeepId> {
        let (u, g) = s.split_once(':')?;
        Some(KeepId { uid: u.parse().ok()?, gid: g.parse().ok()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_maps() -> IdMappings {
        IdMappings {
            uid: vec![
                IdMap { container_id: 0, host_id: 1000, size: 1 },
                IdMap { container_id: 1, host_id: 100000, size: 65536 },
            ],
            gid: vec![
                IdMap { container_id: 0, host_id: 1001, size: 1 },
                IdMap { container_id: 1, host_id: 200000, size: 10 },
                IdMap { container_id: 11, host_id: 300000, size: 65526 },
            ],
            source: MapSource::SingleId { reason: "test".into() },
            host_uid: 1000,
            host_gid: 1001,
        }
    }

    #[test]
    fn parses_userns() {
        assert_eq!(parse_userns("keep-id", 5, 6).unwrap(), Some(KeepId { uid: 5, gid: 6 }));
        assert_eq!(parse_userns("keep-id:uid=7,gid=8", 5, 6).unwrap(), Some(KeepId { uid: 7, gid: 8 }));
        assert_eq!(parse_userns("host", 5, 6).unwrap(), None);
        assert!(parse_userns("keep-id:size=3", 5, 6).is_err());
        assert!(parse_userns("auto", 5, 6).unwrap_err().contains("not supported"));
    }

    #[test]
    fn podman_keep_id_map() {
        let k = KeepId { uid: 1000, gid: 1001 };
        let m = k.maps(&default_maps());
        assert_eq!(
            m.uid,
            vec![
                IdMap { container_id: 0, host_id: 100000, size: 1000 },
                IdMap { container_id: 1000, host_id: 1000, size: 1 },
                IdMap { container_id: 1001, host_id: 101000, size: 64536 },
            ]
        );
        // gid ranges split across the two subordinate ranges.
        assert_eq!(m.gid[0], IdMap { container_id: 0, host_id: 200000, size: 10 });
        assert_eq!(m.gid[1], IdMap { container_id: 10, host_id: 300000, size: 991 });
        assert_eq!(m.gid[2], IdMap { container_id: 1001, host_id: 1001, size: 1 });
        assert_eq!(m.gid[3], IdMap { container_id: 1002, host_id: 300991, size: 64535 });
        let total: u64 = m.gid.iter().map(|e| u64::from(e.size)).sum();
        assert_eq!(total, 65537);
        assert_eq!(m.to_host(1000, false), Some(1000));
        assert_eq!(m.to_host(0, false), Some(100000));
    }

    #[test]
    fn translations_agree_with_the_maps() {
        let d = default_maps();
        let k = KeepId { uid: 1000, gid: 1001 };
        let m = k.maps(&d);
        for c in [0u32, 1, 999, 1000, 1001, 5000, 65536] {
            // The host id of container id c under keep-id is the host id of intermediate
            // from_container(c) under the default maps.
            assert_eq!(m.to_host(c, false), d.to_host(k.from_container(c, false), false), "uid {c}");
            assert_eq!(k.to_container(k.from_container(c, false), false), c);
        }
        let (u, _) = k.fuse_mappings(&d);
        assert_eq!(u, "1000:0:1:0:1:1000:1001:1001:64536");
    }

    #[test]
    fn single_id_user() {
        let mut d = default_maps();
        d.uid.truncate(1);
        d.gid.truncate(1);
        let k = KeepId { uid: 1000, gid: 1001 };
        let m = k.maps(&d);
        assert_eq!(m.uid, vec![IdMap { container_id: 1000, host_id: 1000, size: 1 }]);
        assert_eq!(k.fuse_mappings(&d).0, "1000:0:1");
    }
}
