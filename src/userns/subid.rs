//! `/etc/subuid` and `/etc/subgid`: `name:start:count` or `uid:start:count` lines.

/// One subordinate id range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SubIdRange {
    pub start: u32,
    pub count: u32,
}

/// The ranges in `content` that belong to the user named `name` or with numeric id `id`,
/// in file order. Malformed lines and zero-length ranges are skipped.
pub fn parse_subid(content: &str, name: Option<&str>, id: u32) -> Vec<SubIdRange> {
    let id_s = id.to_string();
    let mut out = Vec::new();
    for line in content.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(':');
        let (Some(who), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if who != id_s && Some(who) != name {
            continue;
        }
        let (Ok(start), Ok(count)) = (start.trim().parse::<u32>(), count.trim().parse::<u32>()) else {
            continue;
        };
        if count == 0 || start.checked_add(count).is_none() {
            continue;
        }
        out.push(SubIdRange { start, count });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_and_uid() {
        let f = "alice:100000:65536\n# comment\nbob:200000:1000\n1001:300000:10\nbad line\nalice:400000:5\n";
        assert_eq!(
            parse_subid(f, Some("alice"), 1000),
            vec![SubIdRange { start: 100000, count: 65536 }, SubIdRange { start: 400000, count: 5 }]
        );
        assert_eq!(parse_subid(f, Some("carol"), 1001), vec![SubIdRange { start: 300000, count: 10 }]);
        assert!(parse_subid(f, Some("dave"), 5).is_empty());
    }

    #[test]
    fn skips_overflow_and_empty() {
        let f = "u:4294967295:10\nu:1:0\nu:5:x\n";
        assert!(parse_subid(f, Some("u"), 1).is_empty());
    }
}
