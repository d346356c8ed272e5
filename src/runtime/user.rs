//! Resolving `-u user[:group]` against the image's /etc/passwd and /etc/group.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// HOME from passwd, if the user has an entry.
    pub home: Option<String>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 6 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || l.starts_with('#') {
            return None;
        }
        let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (`""` means root) with the image's passwd and group files (empty if absent).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, String> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == u)
                .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
        ),
    };
    let uid = match u.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry.as_ref().map(|e| e.uid).unwrap_or(0),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|(n, _, _)| *n == g)
                .map(|(_, gid, _)| gid)
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
        None => entry.as_ref().map(|e| e.gid).unwrap_or(0),
    };
    let mut additional_gids = Vec::new();
    if g.is_none()
        && let Some(e) = &entry
    {
        for (_, gid2, members) in group_entries(group) {
            if members.contains(&e.name) && gid2 != gid && !additional_gids.contains(&gid2) {
                additional_gids.push(gid2);
            }
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids, home: entry.map(|e| e.home.to_string()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\nstaff:x:50:\n";

    #[test]
    fn resolves_names_numbers_and_groups() {
        assert_eq!(resolve_user("", PASSWD, GROUP).unwrap().home.as_deref(), Some("/root"));
        let a = resolve_user("alice", PASSWD, GROUP).unwrap();
        assert_eq!((a.uid, a.gid, a.additional_gids.clone()), (1000, 1000, vec![10]));
        let n = resolve_user("1234", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.home), (1234, 0, None));
        let ug = resolve_user("1000:1000", PASSWD, GROUP).unwrap();
        assert_eq!((ug.uid, ug.gid), (1000, 1000));
        assert_eq!(resolve_user("alice:staff", PASSWD, GROUP).unwrap().gid, 50);
        assert!(resolve_user("nobody", PASSWD, GROUP).unwrap_err().contains("unable to find user nobody"));
        assert!(resolve_user("0:nogroup", PASSWD, GROUP).is_err());
    }
}
