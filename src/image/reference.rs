//! Image references: `[registry/]repository[:tag][@sha256:digest]`, normalised as podman does.
//!
//! Stored names are always fully qualified: `localhost/bb:latest`,
//! `docker.io/library/alpine:3.20`. A short name on the command line (`alpine`) is matched
//! against stored names by repository and tag.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {why}")]
pub struct ReferenceError {
    pub input: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Empty for a short name.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn err(input: &str, why: &'static str) -> ReferenceError {
    ReferenceError { input: input.to_string(), why }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut prev_sep = false;
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        if alnum(x) {
            prev_sep = false;
        } else if x == b'.' || x == b'_' || x == b'-' {
            if prev_sep && !(x == b'-' || (x == b'_' && b[i - 1] == b'_')) {
                return false;
            }
            prev_sep = true;
        } else {
            return false;
        }
        i += 1;
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'_' || *x == b'.' || *x == b'-')
}

fn valid_registry(r: &str) -> bool {
    // host[:port], host being DNS labels or a bracketed IPv6 address.
    let (host, port) = match r.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') && !h.starts_with('[') => {
            return false;
        }
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') {
        return host.ends_with(']') && host[1..host.len() - 1].bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(err(input, "empty"));
        }
        if s.len() > 4096 {
            return Err(err(input, "too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or_else(|| err(input, "only sha256 digests are supported"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(err(input, "malformed digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => {
                let t = &rest[slash + i + 1..];
                if !valid_tag(t) {
                    return Err(err(input, "invalid tag"));
                }
                (&rest[..slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1 {
            let first = parts[0];
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase())
            {
                if !valid_registry(first) {
                    return Err(err(input, "invalid registry"));
                }
                parts.remove(0);
                first.to_string()
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        if parts.is_empty() || !parts.iter().all(|c| valid_component(c)) {
            return Err(err(
                input,
                "repository names must be lowercase letters, digits and separators (. _ -), with / between components",
            ));
        }
        let mut repository = parts.join("/");
        let mut registry = registry;
        if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            registry = "docker.io".into();
        }
        if registry == "docker.io" && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        Ok(Reference { registry, repository, tag, digest })
    }

    pub fn is_qualified(&self) -> bool {
        !self.registry.is_empty()
    }

    /// The tag, or `latest` when neither tag nor digest was given.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, Some(_)) => None,
            (None, None) => Some("latest"),
        }
    }

    /// This reference with `registry` filled in (for short names): `docker.io` adds `library/`.
    pub fn qualified_with(&self, registry: &str) -> Reference {
        let mut r = self.clone();
        if r.registry.is_empty() {
            r.registry = registry.to_string();
            if registry == "docker.io" && !r.repository.contains('/') {
                r.repository = format!("library/{}", r.repository);
            }
        }
        r
    }

    /// `registry/repository` (no tag, no digest).
    pub fn name(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        } else if self.digest.is_none() {
            write!(f, ":latest")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The name a locally made image gets (`nook import f bb` → `localhost/bb:latest`).
pub fn local_name(input: &str) -> Result<String, ReferenceError> {
    let r = Reference::parse(input)?;
    if r.digest.is_some() {
        return Err(err(input, "a new image name cannot have a digest"));
    }
    Ok(r.qualified_with("localhost").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("", "alpine", None));
        assert_eq!(r.qualified_with("docker.io").to_string(), "docker.io/library/alpine:latest");
        assert_eq!(Reference::parse("docker.io/alpine:3").unwrap().to_string(), "docker.io/library/alpine:3");
        assert_eq!(Reference::parse("127.0.0.1:5000/test/bb:v1").unwrap().registry, "127.0.0.1:5000");
        assert_eq!(Reference::parse("[::1]:5000/bb").unwrap().registry, "[::1]:5000");
        assert_eq!(Reference::parse("localhost/bb").unwrap().to_string(), "localhost/bb:latest");
        let d = format!("quay.io/x/y@sha256:{}", "a".repeat(64));
        let r = Reference::parse(&d).unwrap();
        assert_eq!(r.tag_or_latest(), None);
        assert_eq!(r.to_string(), d);
        assert_eq!(local_name("bb").unwrap(), "localhost/bb:latest");
        assert_eq!(local_name("my/bb:2").unwrap(), "localhost/my/bb:2");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "UPPER", "a//b", "a:", "a@sha256:xyz", "-a", "a:b:c/d", "a b", "a@md5:00"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
