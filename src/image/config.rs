//! OCI image configs: reading what a container inherits from its image, and `--change`
//! instructions (Dockerfile syntax) when making one.

use oci_spec::image::{Config, ImageConfiguration};

use crate::storage::{ImageRecord, StorageError, Store};

/// What a container inherits from its image's config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
}

/// Loads an image's config blob.
pub fn load_config(store: &Store, img: &ImageRecord) -> Result<ImageConfiguration, StorageError> {
    let data = store.get_blob(&img.config)?;
    serde_json::from_slice(&data)
        .map_err(|e| StorageError::Corrupt(format!("image {} has an invalid config: {e}", img.short_id())))
}

impl ImageDefaults {
    pub fn from_config(c: &ImageConfiguration) -> ImageDefaults {
        let Some(cfg) = c.config() else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            env: cfg.env().clone().unwrap_or_default(),
            entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
            cmd: cfg.cmd().clone().unwrap_or_default(),
            working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
            user: cfg.user().clone().filter(|u| !u.is_empty()),
            stop_signal: cfg.stop_signal().clone(),
        }
    }
}

/// The host's architecture in OCI terms.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A Dockerfile-style argument: JSON array form, or shell form wrapped in `/bin/sh -c`.
fn exec_or_shell(v: &str) -> Vec<String> {
    let t = v.trim();
    if t.starts_with('[')
        && let Ok(a) = serde_json::from_str::<Vec<String>>(t)
    {
        return a;
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

/// Applies `--change` instructions (`CMD=/bin/sh`, `ENV FOO=bar`, …) to a config.
pub fn apply_changes(cfg: &mut Config, changes: &[String]) -> Result<(), String> {
    for ch in changes {
        let (instr, value) = match ch.find(['=', ' ']) {
            Some(i) => (&ch[..i], ch[i + 1..].trim()),
            None => return Err(format!("invalid change {ch:?}: expected INSTRUCTION=value")),
        };
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => cfg.set_cmd(Some(exec_or_shell(value))),
            "ENTRYPOINT" => cfg.set_entrypoint(Some(exec_or_shell(value))),
            "ENV" => {
                let mut env = cfg.env().clone().unwrap_or_default();
                let (k, v) = match value.split_once('=') {
                    Some((k, v)) => (k.trim(), v.trim()),
                    None => match value.split_once(' ') {
                        Some((k, v)) => (k.trim(), v.trim()),
                        None => {
                            return Err(format!("invalid ENV change {ch:?}: expected ENV KEY=value"));
                        }
                    },
                };
                env.retain(|e| e.split('=').next() != Some(k));
                env.push(format!("{k}={v}"));
                cfg.set_env(Some(env))
            }
            "WORKDIR" => cfg.set_working_dir(Some(value.to_string())),
            "USER" => cfg.set_user(Some(value.to_string())),
            "STOPSIGNAL" => cfg.set_stop_signal(Some(value.to_string())),
            "LABEL" => {
                let mut l = cfg.labels().clone().unwrap_or_default();
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("invalid LABEL change {ch:?}: expected LABEL key=value"))?;
                l.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
                cfg.set_labels(Some(l))
            }
            "EXPOSE" => {
                let mut p = cfg.exposed_ports().clone().unwrap_or_default();
                for port in value.split_whitespace() {
                    let port = if port.contains('/') { port.to_string() } else { format!("{port}/tcp") };
                    if !p.contains(&port) {
                        p.push(port);
                    }
                }
                cfg.set_exposed_ports(Some(p))
            }
            "VOLUME" => {
                let mut v = cfg.volumes().clone().unwrap_or_default();
                v.extend(exec_or_list(value));
                cfg.set_volumes(Some(v))
            }
            "ONBUILD" => cfg,
            other => {
                return Err(format!(
                    "invalid change {ch:?}: {other} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR"
                ));
            }
        };
    }
    Ok(())
}

fn exec_or_list(v: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(v.trim()).unwrap_or_else(|_| v.split_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = Config::default();
        apply_changes(
            &mut c,
            &[
                "CMD=/bin/sh".into(),
                "ENTRYPOINT [\"/bin/echo\",\"hi\"]".into(),
                "ENV=A=1".into(),
                "ENV B 2".into(),
                "WORKDIR=/w".into(),
                "EXPOSE 80".into(),
                "LABEL a=b".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd().clone().unwrap(), vec!["/bin/sh", "-c", "/bin/sh"]);
        assert_eq!(c.entrypoint().clone().unwrap(), vec!["/bin/echo", "hi"]);
        assert_eq!(c.env().clone().unwrap(), vec!["A=1", "B=2"]);
        assert_eq!(c.working_dir().as_deref(), Some("/w"));
        assert_eq!(c.exposed_ports().clone().unwrap(), vec!["80/tcp"]);
        assert!(apply_changes(&mut c, &["FROM=x".into()]).is_err());
        assert!(apply_changes(&mut c, &["CMD".into()]).is_err());
    }
}
