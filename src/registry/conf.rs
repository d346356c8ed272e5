//! `registries.conf` (version 2, TOML), as podman reads it: `unqualified-search-registries`,
//! and `[[registry]]` tables with `prefix`, `location`, `insecure`, `blocked` and
//! `[[registry.mirror]]` entries. Read from `$CONTAINERS_REGISTRIES_CONF`, else
//! `$XDG_CONFIG_HOME/containers/registries.conf`, else `/etc/containers/registries.conf`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::RegistryError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    #[serde(default)]
    pub unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
    /// Where it was read from (for messages).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

/// Where to fetch one image from: a registry host and the repository on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub registry: String,
    pub repository: String,
    pub insecure: bool,
    pub mirror: bool,
}

/// The search registries used when no configuration names any (docker's behaviour).
pub const DEFAULT_SEARCH: &str = "docker.io";

impl RegistriesConf {
    /// Loads the configuration podman would use; a missing file is an empty configuration.
    pub fn load(xdg_config: &Path) -> Result<RegistriesConf, RegistryError> {
        let candidates: Vec<PathBuf> = match std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
            Some(p) if !p.is_empty() => vec![PathBuf::from(p)],
            _ => vec![xdg_config.join("containers/registries.conf"), PathBuf::from("/etc/containers/registries.conf")],
        };
        for p in candidates {
            match std::fs::read_to_string(&p) {
                Ok(s) => {
                    let mut c = Self::parse(&s).map_err(|e| {
                        RegistryError::Config(format!("{}: {}", p.display(), e.lines().next().unwrap_or("")))
                    })?;
                    c.source = Some(p);
                    return Ok(c);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RegistryError::Config(format!("reading {}: {e}", p.display()))),
            }
        }
        Ok(RegistriesConf::default())
    }

    pub fn parse(s: &str) -> Result<RegistriesConf, String> {
        toml::from_str(s).map_err(|e| e.to_string().replace('\n', " "))
    }

    /// The registries a short name is tried against, in order: the configured ones, or
    /// `docker.io` when no file sets `unqualified-search-registries`. An empty list set on
    /// purpose means short names are not resolved.
    pub fn search_registries(&self, short: &str) -> Result<Vec<String>, RegistryError> {
        match &self.unqualified_search_registries {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            Some(_) => Err(RegistryError::Config(format!(
                "short-name {short:?} did not resolve: no unqualified-search-registries are defined in {}; use a fully qualified name (registry/repository:tag)",
                self.source.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "registries.conf".into())
            ))),
            None => Ok(vec![DEFAULT_SEARCH.to_string()]),
        }
    }

    /// The entry whose prefix matches `name` (`registry/repository`) most specifically.
    fn entry_for(&self, name: &str) -> Option<(&RegistryEntry, String)> {
        let mut best: Option<(&RegistryEntry, String)> = None;
        for e in &self.registry {
            let Some(prefix) = e.prefix.clone().or_else(|| e.location.clone()) else {
                continue;
            };
            let prefix = prefix.trim_end_matches('/').to_string();
            let hit = name == prefix || name.starts_with(&format!("{prefix}/"));
            if hit && best.as_ref().is_none_or(|(_, p)| prefix.len() > p.len()) {
                best = Some((e, prefix));
            }
        }
        best
    }

    /// Where to pull `registry/repository` from: its mirrors, then the (possibly rewritten)
    /// location. Refuses a blocked registry.
    pub fn endpoints(
        &self,
        registry: &str,
        repository: &str,
        tls_verify: Option<bool>,
    ) -> Result<Vec<Endpoint>, RegistryError> {
        let name = format!("{registry}/{repository}");
        let force_insecure = tls_verify == Some(false);
        let Some((e, prefix)) = self.entry_for(&name) else {
            return Ok(vec![Endpoint {
                registry: registry.to_string(),
                repository: repository.to_string(),
                insecure: force_insecure,
                mirror: false,
            }]);
        };
        if e.blocked {
            return Err(RegistryError::Config(format!(
                "registry {prefix} is blocked in {}",
                self.source.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "registries.conf".into())
            )));
        }
        let rest = &name[prefix.len()..];
        let split = |loc: &str| -> (String, String) {
            let full = format!("{}{rest}", loc.trim_end_matches('/'));
            match full.split_once('/') {
                Some((r, p)) => (r.to_string(), p.to_string()),
                None => (full, String::new()),
            }
        };
        let mut out = Vec::new();
        for m in &e.mirror {
            let (r, p) = split(&m.location);
            if !p.is_empty() {
                out.push(Endpoint { registry: r, repository: p, insecure: m.insecure || force_insecure, mirror: true });
            }
        }
        let loc = e.location.clone().unwrap_or_else(|| prefix.clone());
        let (r, p) = split(&loc);
        let insecure = match tls_verify {
            Some(v) => !v,
            None => e.insecure,
        };
        out.push(Endpoint { registry: r, repository: p, insecure, mirror: false });
        Ok(out)
    }

    /// Is this registry marked insecure (for push and login)?
    pub fn insecure(&self, registry: &str) -> bool {
        self.registry.iter().any(|e| {
            e.insecure
                && e.prefix.as_deref().or(e.location.as_deref()).is_some_and(|p| p.trim_end_matches('/') == registry)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_mirrors_insecure_and_blocked() {
        let c = RegistriesConf::parse(
            r#"
unqualified-search-registries = ["127.0.0.1:5000", "docker.io"]
[[registry]]
location = "127.0.0.1:5000"
insecure = true
[[registry]]
prefix = "example.com/team"
location = "127.0.0.1:6000/mirrored"
[[registry.mirror]]
location = "127.0.0.1:7000/m"
insecure = true
[[registry]]
location = "evil.example"
blocked = true
"#,
        )
        .unwrap();
        assert_eq!(c.search_registries("x").unwrap(), vec!["127.0.0.1:5000", "docker.io"]);
        let e = c.endpoints("127.0.0.1:5000", "test/bb", None).unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].insecure);
        let e = c.endpoints("example.com", "team/app", None).unwrap();
        assert_eq!(
            e[0],
            Endpoint { registry: "127.0.0.1:7000".into(), repository: "m/app".into(), insecure: true, mirror: true }
        );
        assert_eq!(
            e[1],
            Endpoint {
                registry: "127.0.0.1:6000".into(),
                repository: "mirrored/app".into(),
                insecure: false,
                mirror: false
            }
        );
        assert!(c.endpoints("evil.example", "x", None).unwrap_err().to_string().contains("blocked"));
        let e = c.endpoints("quay.io", "x/y", Some(false)).unwrap();
        assert!(e[0].insecure);
        assert_eq!(RegistriesConf::default().search_registries("x").unwrap(), vec!["docker.io"]);
        let none = RegistriesConf::parse("unqualified-search-registries = []").unwrap();
        assert!(none.search_registries("x").unwrap_err().to_string().contains("short-name"));
    }
}
