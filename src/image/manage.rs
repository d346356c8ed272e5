//! Image bookkeeping: tag, untag, prune, and podman-like JSON for `images`, `image inspect`
//! and `history`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::reference::{Reference, local_name};
use crate::context::Context;
use crate::storage::{ImageRecord, StorageError, Store};

/// A name for a new tag: short names become `localhost/NAME`, as podman does.
/// The stored name `target` refers to, if it is a name rather than an ID: a qualified
/// reference names itself; a short one (`bb`, `test/bb:v1`) the stored name ending in it.
pub fn matching_name(img: &ImageRecord, target: &str) -> Option<String> {
    let r = Reference::parse(target).ok()?;
    let tag = r.tag_or_latest()?;
    if r.is_qualified() {
        let full = format!("{}:{tag}", r.name());
        img.names.contains(&full).then_some(full)
    } else {
        img.names.iter().find(|n| n.ends_with(&format!("/{}:{tag}", r.repository))).cloned()
    }
}

pub fn tag_name(input: &str) -> Result<String, StorageError> {
    let r = Reference::parse(input).map_err(|e| StorageError::Other(e.to_string()))?;
    if r.digest.is_some() {
        return Err(StorageError::Other(format!("{input}: a tag cannot have a digest")));
    }
    if r.is_qualified() { Ok(r.to_string()) } else { local_name(input).map_err(|e| StorageError::Other(e.to_string())) }
}

/// `nook tag IMAGE NAME...`: adds names (moving them from any other image).
pub fn tag(store: &Store, image: &str, names: &[String]) -> Result<ImageRecord, StorageError> {
    let names = names.iter().map(|n| tag_name(n)).collect::<Result<Vec<_>, _>>()?;
    let _lock = store.lock(true)?;
    let mut img = store.find_image(image)?;
    img.names = names;
    store.put_image(img)?;
    store.find_image(image)
}

/// `nook untag IMAGE [NAME...]`: removes the given names, or all of them.
pub fn untag(store: &Store, image: &str, names: &[String]) -> Result<Vec<String>, StorageError> {
    let _lock = store.lock(true)?;
    let img = store.find_image(image)?;
    let mut all = store.images()?;
    let mut removed = Vec::new();
    let wanted: Vec<String> = if names.is_empty() {
        img.names.clone()
    } else {
        let mut w = Vec::new();
        for n in names {
            match matching_name(&img, n) {
                Some(f) => w.push(f),
                None => return Err(StorageError::Other(format!("{n}: the image {} has no such name", img.short_id()))),
            }
        }
        w
    };
    for i in all.iter_mut().filter(|i| i.id == img.id) {
        i.names.retain(|n| {
            let drop = wanted.contains(n);
            if drop {
                removed.push(n.clone());
            }
            !drop
        });
    }
    store.save_images(all)?;
    Ok(removed)
}

/// `nook image prune [-a]`: removes images without names (all unused ones with `all`) that no
/// container uses, then layers and blobs nothing references. Returns the removed IDs.
pub fn prune(ctx: &Context, all: bool) -> Result<Vec<String>, StorageError> {
    let store = &ctx.store;
    let _lock = store.lock(true)?;
    let used: std::collections::HashSet<String> = store.containers()?.into_iter().filter_map(|c| c.image_id).collect();
    let mut removed = Vec::new();
    for img in store.images()? {
        if used.contains(&img.id) || (!all && !img.names.is_empty()) {
            continue;
        }
        store.delete_image_record(&img.id)?;
        removed.push(img.id);
    }
    store.remove_unreferenced_layers(&ctx.maps)?;
    store.remove_unreferenced_blobs()?;
    Ok(removed)
}

/// `name@digest` for each repository the image is named in.
pub fn repo_digests(img: &ImageRecord) -> Vec<String> {
    let mut out = Vec::new();
    let mut digests: Vec<&str> = Vec::new();
    if let Some(d) = &img.digest {
        digests.push(d);
    }
    digests.push(&img.manifest);
    for n in &img.names {
        if let Ok(r) = Reference::parse(n) {
            for d in &digests {
                let s = format!("{}@{d}", r.name());
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Tags (`name:tag`) of an image, without digest names.
pub fn repo_tags(img: &ImageRecord) -> Vec<String> {
    img.names.iter().filter(|n| !n.contains('@')).cloned().collect()
}

/// Glob match with `*` and `?`.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

/// `--filter reference=PATTERN`: the pattern (`bb`, `bb:1`, `*/bb:*`, a full name) against
/// the image's names, as podman matches them.
pub fn matches_reference(img: &ImageRecord, pattern: &str) -> bool {
    img.names.iter().any(|n| {
        let Ok(r) = Reference::parse(n) else { return false };
        let tag = r.tag.clone().unwrap_or_default();
        let mut forms = vec![r.name(), r.repository.clone()];
        if let Some(last) = r.repository.rsplit('/').next() {
            forms.push(last.to_string());
        }
        let with_tag: Vec<String> = forms.iter().map(|f| format!("{f}:{tag}")).collect();
        let pat = pattern.as_bytes();
        // A tag is a ':' after the last '/' (a registry port comes before it).
        let last = pattern.rsplit('/').next().unwrap_or(pattern);
        if last.contains(':') {
            with_tag.iter().any(|f| glob(pat, f.as_bytes()))
        } else {
            forms.iter().any(|f| glob(pat, f.as_bytes()))
        }
    })
}

fn config_json(store: &Store, img: &ImageRecord) -> Value {
    store.get_blob(&img.config).ok().and_then(|d| serde_json::from_slice(&d).ok()).unwrap_or(Value::Null)
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// One image as `nook images --format json` shows it (podman's field names).
pub fn images_json(store: &Store, img: &ImageRecord, containers: usize) -> Value {
    let cfg = config_json(store, img);
    json!({
        "Id": img.id,
        "ParentId": "",
        "RepoTags": repo_tags(img),
        "RepoDigests": repo_digests(img),
        "Size": img.size,
        "SharedSize": 0,
        "VirtualSize": img.size,
        "Labels": cfg.pointer("/config/Labels").cloned().unwrap_or(Value::Null),
        "Containers": containers,
        "Names": img.names,
        "Digest": img.digest.clone().unwrap_or_else(|| img.manifest.clone()),
        "Dangling": img.names.is_empty(),
        "Created": img.created.timestamp(),
        "CreatedAt": rfc3339(&img.created),
    })
}

/// `nook image inspect`: podman's layout.
pub fn inspect_json(store: &Store, img: &ImageRecord, driver: &str) -> Value {
    let cfg = config_json(store, img);
    let manifest_type = store
        .get_blob(&img.manifest)
        .ok()
        .and_then(|d| serde_json::from_slice::<Value>(&d).ok())
        .and_then(|m| m.get("mediaType").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| crate::registry::media::OCI_MANIFEST.to_string());
    let dirs: Vec<String> =
        img.layers.iter().rev().filter_map(|l| store.layer_diff(l).ok()).map(|p| p.display().to_string()).collect();
    let (upper, lower) = match dirs.split_first() {
        Some((u, l)) => (u.clone(), l.join(":")),
        None => (String::new(), String::new()),
    };
    let mut gd = json!({ "UpperDir": upper });
    if !lower.is_empty() {
        gd["LowerDir"] = json!(lower);
    }
    json!({
        "Id": img.id,
        "Digest": img.digest.clone().unwrap_or_else(|| img.manifest.clone()),
        "RepoTags": repo_tags(img),
        "RepoDigests": repo_digests(img),
        "Parent": "",
        "Comment": cfg.get("comment").cloned().unwrap_or(json!("")),
        "Created": rfc3339(&img.created),
        "Config": cfg.get("config").cloned().unwrap_or(json!({})),
        "Version": cfg.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("")),
        "Os": cfg.get("os").cloned().unwrap_or(json!("")),
        "Variant": cfg.get("variant").cloned().unwrap_or(Value::Null),
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": { "Name": driver, "Data": gd },
        "RootFS": { "Type": "layers", "Layers": img.layers },
        "Labels": cfg.pointer("/config/Labels").cloned().unwrap_or(Value::Null),
        "Annotations": {},
        "ManifestType": manifest_type,
        "User": cfg.pointer("/config/User").cloned().unwrap_or(json!("")),
        "History": cfg.get("history").cloned().unwrap_or(json!([])),
        "NamesHistory": img.names,
    })
}

/// One row of `nook history`, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    pub id: String,
    pub created: Option<DateTime<Utc>>,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub size: u64,
    pub comment: String,
    #[serde(skip)]
    pub empty_layer: bool,
}

pub fn history(store: &Store, img: &ImageRecord) -> Vec<HistoryRow> {
    let cfg = config_json(store, img);
    let sizes: Vec<u64> = img.layers.iter().map(|l| store.layer_record(l).map(|r| r.size).unwrap_or(0)).collect();
    let entries = cfg.get("history").and_then(|h| h.as_array()).cloned().unwrap_or_default();
    let mut rows = Vec::new();
    if entries.is_empty() {
        for (i, s) in sizes.iter().enumerate() {
            rows.push(HistoryRow {
                id: String::new(),
                created: Some(img.created),
                created_by: String::new(),
                size: *s,
                comment: format!("layer {}", i + 1),
                empty_layer: false,
            });
        }
    } else {
        let mut li = 0;
        for h in entries {
            let empty = h.get("empty_layer").and_then(|e| e.as_bool()).unwrap_or(false);
            let size = if empty {
                0
            } else {
                li += 1;
                sizes.get(li - 1).copied().unwrap_or(0)
            };
            rows.push(HistoryRow {
                id: String::new(),
                created: h
                    .get("created")
                    .and_then(|c| c.as_str())
                    .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                    .map(|d| d.with_timezone(&Utc)),
                created_by: h.get("created_by").and_then(|c| c.as_str()).unwrap_or("").to_string(),
                size,
                comment: h.get("comment").and_then(|c| c.as_str()).unwrap_or("").to_string(),
                empty_layer: empty,
            });
        }
    }
    rows.reverse();
    for (i, r) in rows.iter_mut().enumerate() {
        r.id = if i == 0 { img.id.clone() } else { "<missing>".into() };
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(names: &[&str]) -> ImageRecord {
        ImageRecord {
            id: "a".repeat(64),
            names: names.iter().map(|n| n.to_string()).collect(),
            digest: None,
            manifest: String::new(),
            config: String::new(),
            layers: vec![],
            created: Utc::now(),
            size: 0,
        }
    }

    #[test]
    fn a_name_matches_as_given_short_or_qualified() {
        let img = image(&["docker.io/library/bb:latest", "localhost/x:1"]);
        for (given, name) in [
            ("bb", "docker.io/library/bb:latest"),
            ("docker.io/bb", "docker.io/library/bb:latest"),
            ("library/bb:latest", "docker.io/library/bb:latest"),
            ("x:1", "localhost/x:1"),
            ("localhost/x:1", "localhost/x:1"),
        ] {
            assert_eq!(matching_name(&img, given).as_deref(), Some(name), "{given}");
        }
        for given in ["x", "quay.io/bb", "b", &"a".repeat(12)] {
            assert_eq!(matching_name(&img, given), None, "{given}");
        }
    }

    #[test]
    fn reference_filter() {
        let img = image(&["127.0.0.1:5000/test/bb:v1"]);
        for p in ["bb", "test/bb", "bb:v1", "127.0.0.1:5000/test/bb", "*bb", "*/bb:*", "127.0.0.1:5000/test/bb:v1"] {
            assert!(matches_reference(&img, p), "{p}");
        }
        for p in ["b", "bb:v2", "other", "test/bb:latest"] {
            assert!(!matches_reference(&img, p), "{p}");
        }
        assert_eq!(tag_name("x").unwrap(), "localhost/x:latest");
        assert_eq!(tag_name("quay.io/a/b:2").unwrap(), "quay.io/a/b:2");
    }
}
