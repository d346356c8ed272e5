//! Registry credentials in podman's `auth.json` format (`{"auths":{"host":{"auth":"base64(user:pass)"}}}`).
//!
//! Read, first match wins: `--authfile` (alone, when given), `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `$XDG_CONFIG_HOME/containers/auth.json`, and docker's
//! `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`). Keys may name a registry or a
//! repository prefix (`quay.io/team`); the most specific one matching wins. `nook login` writes
//! `--authfile`, else `$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, mode 0600.
//! Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::RegistryError;
use crate::config::{Paths, RunRootSource};

#[derive(Debug, Clone)]
pub struct AuthFiles {
    pub explicit: Option<PathBuf>,
    pub env: Option<PathBuf>,
    pub runtime: PathBuf,
    pub config: PathBuf,
    pub docker: Option<PathBuf>,
}

/// The user's runtime directory as podman sees it.
fn runtime_dir(paths: &Paths) -> PathBuf {
    match &paths.runroot_source {
        RunRootSource::XdgRuntimeDir | RunRootSource::RunUser => {
            paths.runroot.parent().map(Path::to_path_buf).unwrap_or_else(|| paths.runroot.clone())
        }
        RunRootSource::Flag => std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| paths.runroot.clone()),
        RunRootSource::Fallback { .. } => paths.runroot.clone(),
    }
}

impl AuthFiles {
    pub fn new(explicit: Option<PathBuf>, paths: &Paths) -> AuthFiles {
        let env = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()).map(PathBuf::from);
        let docker = match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            Some(d) => Some(PathBuf::from(d).join("config.json")),
            None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
        };
        AuthFiles {
            explicit,
            env,
            runtime: runtime_dir(paths).join("containers/auth.json"),
            config: paths.xdg_config.join("containers/auth.json"),
            docker,
        }
    }

    /// The file `login` and `logout` change.
    pub fn write_path(&self) -> PathBuf {
        self.explicit.clone().or_else(|| self.env.clone()).unwrap_or_else(|| self.runtime.clone())
    }

    fn read_order(&self) -> Vec<PathBuf> {
        if let Some(e) = &self.explicit {
            return vec![e.clone()];
        }
        let mut v: Vec<PathBuf> = self.env.iter().cloned().collect();
        v.push(self.runtime.clone());
        v.push(self.config.clone());
        v.extend(self.docker.iter().cloned());
        v
    }

    /// Credentials for `registry/repository`, if any file has them.
    pub fn lookup(&self, registry: &str, repository: &str) -> Result<Option<(String, String)>, RegistryError> {
        for f in self.read_order() {
            let Some(doc) = read(&f)? else { continue };
            if let Some(c) = find(&doc, registry, repository, &f)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Stores credentials for `key` (a registry, or `registry/repository`).
    pub fn store(&self, key: &str, user: &str, password: &str) -> Result<PathBuf, RegistryError> {
        let p = self.write_path();
        let mut doc = read(&p)?.unwrap_or_else(|| serde_json::json!({}));
        if !doc.is_object() {
            doc = serde_json::json!({});
        }
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let auths = doc
            .as_object_mut()
            .map(|o| o.entry("auths").or_insert_with(|| serde_json::json!({})))
            .ok_or_else(|| RegistryError::Config(format!("{}: not a JSON object", p.display())))?;
        if !auths.is_object() {
            *auths = serde_json::json!({});
        }
        auths[key] = serde_json::json!({ "auth": enc });
        write(&p, &doc)?;
        Ok(p)
    }

    /// Removes the credentials for `key`; false when there were none.
    pub fn remove(&self, key: &str) -> Result<bool, RegistryError> {
        let p = self.write_path();
        let Some(mut doc) = read(&p)? else { return Ok(false) };
        let removed = doc.get_mut("auths").and_then(|a| a.as_object_mut()).and_then(|a| a.remove(key)).is_some();
        if removed {
            write(&p, &doc)?;
        }
        Ok(removed)
    }

    /// Removes every credential in the write file.
    pub fn remove_all(&self) -> Result<(), RegistryError> {
        let p = self.write_path();
        if read(&p)?.is_some() {
            write(&p, &serde_json::json!({ "auths": {} }))?;
        }
        Ok(())
    }
}

fn read(p: &Path) -> Result<Option<serde_json::Value>, RegistryError> {
    match std::fs::read(p) {
        Ok(d) if d.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(d) => serde_json::from_slice(&d)
            .map(Some)
            .map_err(|e| RegistryError::Config(format!("{}: invalid JSON: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Config(format!("reading {}: {e}", p.display()))),
    }
}

fn write(p: &Path, doc: &serde_json::Value) -> Result<(), RegistryError> {
    if let Some(d) = p.parent() {
        crate::util::fs::create_dir_all_mode(d, 0o700)
            .map_err(|e| RegistryError::Config(format!("creating {}: {e}", d.display())))?;
    }
    let data = serde_json::to_vec_pretty(doc).map_err(|e| RegistryError::Config(e.to_string()))?;
    crate::util::fs::write_atomic_mode(p, &data, 0o600)
        .map_err(|e| RegistryError::Config(format!("writing {}: {e}", p.display())))
}

/// Normalises a key: docker writes `https://index.docker.io/v1/` and URLs.
fn normalise_key(k: &str) -> String {
    let k = k.trim_start_matches("https://").trim_start_matches("http://");
    let k = k.trim_end_matches('/');
    match k {
        "index.docker.io/v1" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => k.strip_suffix("/v1").or_else(|| k.strip_suffix("/v2")).unwrap_or(k).to_string(),
    }
}

fn find(
    doc: &serde_json::Value,
    registry: &str,
    repository: &str,
    file: &Path,
) -> Result<Option<(String, String)>, RegistryError> {
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let full = format!("{registry}/{repository}");
    let mut best: Option<(usize, &serde_json::Value)> = None;
    for (k, v) in auths {
        let k = normalise_key(k);
        if (full == k || full.starts_with(&format!("{k}/"))) && best.as_ref().is_none_or(|(l, _)| k.len() > *l) {
            best = Some((k.len(), v));
        }
    }
    let Some((_, v)) = best else { return Ok(None) };
    if let Some(a) = v.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let dec = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                RegistryError::Config(format!("{}: the entry for {registry} is not valid base64", file.display()))
            })?;
        let (u, p) = dec.split_once(':').ok_or_else(|| {
            RegistryError::Config(format!("{}: the entry for {registry} is not user:password", file.display()))
        })?;
        return Ok(Some((u.to_string(), p.to_string())));
    }
    if let (Some(u), Some(p)) = (v.get("username").and_then(|u| u.as_str()), v.get("password").and_then(|p| p.as_str()))
    {
        return Ok(Some((u.to_string(), p.to_string())));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_key_and_docker_forms() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let doc = serde_json::json!({"auths": {
            "quay.io": {"auth": enc("a:1")},
            "quay.io/team": {"auth": enc("b:2")},
            "https://index.docker.io/v1/": {"auth": enc("c:3")},
        }});
        let f = Path::new("x");
        assert_eq!(find(&doc, "quay.io", "team/app", f).unwrap().unwrap().0, "b");
        assert_eq!(find(&doc, "quay.io", "other/app", f).unwrap().unwrap().0, "a");
        assert_eq!(find(&doc, "docker.io", "library/alpine", f).unwrap().unwrap(), ("c".into(), "3".into()));
        assert!(find(&doc, "example.com", "x", f).unwrap().is_none());
    }

    #[test]
    fn store_and_remove_keep_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/auth.json");
        let files = AuthFiles {
            explicit: Some(p.clone()),
            env: None,
            runtime: d.path().join("r"),
            config: d.path().join("c"),
            docker: None,
        };
        files.store("127.0.0.1:5000", "u", "p:w").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(files.lookup("127.0.0.1:5000", "x/y").unwrap(), Some(("u".into(), "p:w".into())));
        assert!(files.remove("127.0.0.1:5000").unwrap());
        assert!(!files.remove("127.0.0.1:5000").unwrap());
        assert_eq!(files.lookup("127.0.0.1:5000", "x/y").unwrap(), None);
    }
}
