//! Media types of manifests, indexes, configs and layers, and lenient manifest parsing.

use serde::{Deserialize, Serialize};

use super::RegistryError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The `Accept` header for manifests: all four current types. distribution answers 404 for an
/// OCI manifest requested without the OCI type, and converts a v2s2 manifest to schema 1
/// without the docker type.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Layer media types nook unpacks (compression is detected from the bytes anyway).
pub fn is_layer_type(mt: &str) -> bool {
    matches!(
        mt,
        OCI_LAYER
            | OCI_LAYER_GZIP
            | OCI_LAYER_ZSTD
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_ZSTD
            | DOCKER_LAYER_TAR
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, RegistryError> {
        let p: Vec<&str> = s.split('/').collect();
        let bad = || RegistryError::Invalid(format!("invalid platform {s:?}: expected os/arch[/variant]"));
        match p.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: Some(v.to_string()) })
            }
            _ => Err(bad()),
        }
    }

    /// The host's platform.
    pub fn host() -> Platform {
        let arch = crate::image::config::host_arch().to_string();
        let variant = match arch.as_str() {
            "arm64" => Some("v8".to_string()),
            _ => None,
        };
        Platform { os: "linux".into(), architecture: arch, variant }
    }

    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match (&self.variant, &other.variant) {
            (Some(a), Some(b)) => a == b,
            // arm64 images often leave out "v8".
            _ => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or docker v2 schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index or docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest body is.
#[derive(Debug, Clone)]
pub enum Parsed {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// Parses a manifest body given the media type the registry announced (which may be empty or
/// generic). Refuses schema 1, bodies that are not JSON, and unknown types, each in one line.
pub fn parse_manifest(body: &[u8], content_type: &str, what: &str) -> Result<(Parsed, String), RegistryError> {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_string();
    if ct == DOCKER_SCHEMA1 || ct == DOCKER_SCHEMA1_SIGNED {
        return Err(schema1(what));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| RegistryError::Invalid(format!("{what}: the manifest is not valid JSON: {e}")))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err(schema1(what));
    }
    let body_mt = v.get("mediaType").and_then(|m| m.as_str()).unwrap_or("").to_string();
    // The announced type wins unless it is generic; otherwise the body's, otherwise the shape.
    let generic = ct.is_empty() || ct == "application/json" || ct == "text/plain" || ct == "application/octet-stream";
    let mt = if !generic {
        ct.clone()
    } else if !body_mt.is_empty() {
        body_mt.clone()
    } else if v.get("manifests").is_some() {
        OCI_INDEX.to_string()
    } else if v.get("layers").is_some() {
        OCI_MANIFEST.to_string()
    } else {
        String::new()
    };
    let bad = |e: serde_json::Error| RegistryError::Invalid(format!("{what}: malformed {mt} manifest: {e}"));
    match mt.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_value(v).map_err(bad)?;
            if m.schema_version != 2 {
                return Err(RegistryError::Invalid(format!(
                    "{what}: unsupported manifest schemaVersion {}",
                    m.schema_version
                )));
            }
            Ok((Parsed::Image(m), mt))
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = serde_json::from_value(v).map_err(bad)?;
            Ok((Parsed::Index(i), mt))
        }
        "" => Err(RegistryError::Invalid(format!("{what}: the registry sent a manifest of unknown type"))),
        other => Err(RegistryError::Invalid(format!(
            "{what}: unsupported manifest media type {other:?} (nook pulls OCI and docker v2 schema 2 images)"
        ))),
    }
}

fn schema1(what: &str) -> RegistryError {
    RegistryError::Invalid(format!(
        "{what}: docker schema 1 manifests are not supported; push the image again with a current client (docker v2 schema 2 or OCI)"
    ))
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    crate::storage::blobs::sha256_digest(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_refuses_bad_ones() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(matches!(parse_manifest(m, OCI_MANIFEST, "x").unwrap().0, Parsed::Image(_)));
        assert!(matches!(parse_manifest(m, "", "x").unwrap().0, Parsed::Image(_)));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_manifest(i, DOCKER_LIST, "x").unwrap().0, Parsed::Index(_)));
        let e = parse_manifest(b"<html>", OCI_MANIFEST, "x").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        let e = parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, "", "x").unwrap_err().to_string();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse_manifest(m, "application/vnd.example.thing+json", "x").unwrap_err().to_string();
        assert!(e.contains("unsupported manifest media type"), "{e}");
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::parse("linux").is_err());
    }
}
