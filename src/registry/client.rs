//! A blocking client for one registry: endpoint discovery (https, or plain http for insecure
//! and loopback registries), basic and bearer-token authentication, manifests, blobs, uploads.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use ureq::http;

use super::media::{self, MANIFEST_ACCEPT};
use super::{MAX_MANIFEST_SIZE, RegistryError};

/// How long to wait for a TCP connection (and TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read may stall before the transfer is abandoned.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The registry as written in references (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Skip TLS verification and allow plain http (`--tls-verify=false`, `insecure = true`).
    pub insecure: bool,
    /// Username and password (or identity token with user `<token>`).
    pub creds: Option<(String, String)>,
}

#[derive(Debug, Clone)]
enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

struct State {
    base: Option<String>,
    challenge: Challenge,
    /// Authorization header values by scope.
    tokens: HashMap<String, String>,
}

/// A client for one registry. Shared between download threads.
pub struct Client {
    registry: String,
    host: String,
    insecure: bool,
    creds: Option<(String, String)>,
    agent: ureq::Agent,
    state: Mutex<State>,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub body: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// A blob being downloaded.
pub struct BlobReader {
    pub reader: Box<dyn Read + Send>,
}

enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File(&'a PathBuf),
}

fn is_loopback(host: &str) -> bool {
    let h = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h == "::1" || h.starts_with("127.")
}

fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Parses `Bearer realm="…",service="…"` (quoted values may hold commas).
fn parse_challenge(h: &str) -> Challenge {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = rest[ks..i].trim().to_ascii_lowercase();
        i += 1;
        let val = if i < b.len() && b[i] == b'"' {
            i += 1;
            let vs = i;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            let v = &rest[vs.min(b.len())..i.min(b.len())];
            i += 1;
            v.to_string()
        } else {
            let vs = i.min(b.len());
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            rest[vs..i.min(b.len())].trim().to_string()
        };
        if !key.is_empty() {
            params.insert(key, val);
        }
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => match params.remove("realm") {
            Some(realm) => Challenge::Bearer { realm, service: params.remove("service") },
            None => Challenge::Basic,
        },
        _ => Challenge::None,
    }
}

/// One line from an error body (`{"errors":[{"code":…,"message":…}]}`), if any.
fn error_detail(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let msgs: Vec<String> = v
        .get("errors")
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    (!code.is_empty() || !msg.is_empty()).then(|| format!("{code}: {msg}"))
                })
                .collect()
        })
        .unwrap_or_default();
    if msgs.is_empty() { String::new() } else { format!(" ({})", msgs.join("; ").replace('\n', " ")) }
}

fn transport_why(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(ureq::Timeout::Connect) => {
            format!("timed out after {}s connecting", CONNECT_TIMEOUT.as_secs())
        }
        ureq::Error::Timeout(ureq::Timeout::RecvResponse) => {
            format!("timed out after {}s waiting for the registry to answer", READ_TIMEOUT.as_secs())
        }
        ureq::Error::Timeout(ureq::Timeout::PerRead) => {
            format!("the registry sent nothing for {}s", READ_TIMEOUT.as_secs())
        }
        ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
        ureq::Error::HostNotFound => "host not found".into(),
        other => other.to_string(),
    }
}

impl Client {
    pub fn new(opts: &ClientOptions) -> Client {
        let host =
            if opts.registry == "docker.io" { "registry-1.docker.io".to_string() } else { opts.registry.clone() };
        let tls = ureq::tls::TlsConfig::builder().disable_verification(opts.insecure).build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .timeout_per_write(Some(READ_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .user_agent(format!("nook/{}", crate::VERSION))
            .tls_config(tls)
            .build();
        Client {
            registry: opts.registry.clone(),
            host,
            insecure: opts.insecure,
            creds: opts.creds.clone(),
            agent: ureq::Agent::new_with_config(config),
            state: Mutex::new(State { base: None, challenge: Challenge::None, tokens: HashMap::new() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        auth: Option<&str>,
        body: &Body<'_>,
    ) -> Result<http::Response<ureq::Body>, ureq::Error> {
        let mut b = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        match body {
            Body::Empty => self.agent.run(b.body(()).map_err(ureq::Error::Http)?),
            Body::Bytes(d) => self.agent.run(b.body(*d).map_err(ureq::Error::Http)?),
            Body::File(p) => {
                let f = std::fs::File::open(p).map_err(ureq::Error::Io)?;
                self.agent.run(b.body(f).map_err(ureq::Error::Http)?)
            }
        }
    }

    /// Finds the endpoint (`https://host`, or `http://host` for insecure and loopback
    /// registries that do not speak TLS) and the authentication it asks for.
    pub fn ping(&self) -> Result<(), RegistryError> {
        if self.lock().base.is_some() {
            return Ok(());
        }
        let schemes: &[&str] = if self.insecure || is_loopback(&self.host) { &["https", "http"] } else { &["https"] };
        let mut last = String::new();
        for scheme in schemes {
            let base = format!("{scheme}://{}", self.host);
            match self.raw("GET", &format!("{base}/v2/"), &[], None, &Body::Empty) {
                Ok(resp) => {
                    let challenge = if resp.status() == 401 {
                        resp.headers()
                            .get("www-authenticate")
                            .and_then(|v| v.to_str().ok())
                            .map(parse_challenge)
                            .unwrap_or(Challenge::Basic)
                    } else {
                        Challenge::None
                    };
                    let mut st = self.lock();
                    st.base = Some(base);
                    st.challenge = challenge;
                    return Ok(());
                }
                Err(e) => {
                    tracing::debug!("GET {base}/v2/: {e:?}");
                    last = transport_why(&e);
                    // A certificate that does not verify is not a registry without TLS: no
                    // falling back to plain http, say why.
                    let tls = matches!(&e, ureq::Error::Rustls(_))
                        || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData);
                    if tls && last.contains("certificate") {
                        last = format!(
                            "TLS: {last}; for a registry without a trusted certificate use --tls-verify=false or insecure = true in registries.conf"
                        );
                        break;
                    }
                }
            }
        }
        Err(RegistryError::Connect { registry: self.registry.clone(), why: last })
    }

    fn base(&self) -> Result<String, RegistryError> {
        self.ping()?;
        Ok(self.lock().base.clone().unwrap_or_default())
    }

    /// The Authorization header for `scope`, fetching a token if the registry wants one.
    fn auth_for(&self, scope: &str, what: &str) -> Result<Option<String>, RegistryError> {
        let (challenge, cached) = {
            let st = self.lock();
            (st.challenge.clone(), st.tokens.get(scope).cloned())
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let basic = self
            .creds
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
        let value = match challenge {
            Challenge::None => None,
            Challenge::Basic => basic,
            Challenge::Bearer { realm, service } => {
                let mut url = realm.clone();
                let mut q = Vec::new();
                if let Some(s) = service {
                    q.push(format!("service={}", pct(&s)));
                }
                if !scope.is_empty() {
                    q.push(format!("scope={}", pct(scope)));
                }
                if !q.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&q.join("&"));
                }
                let resp = self.raw("GET", &url, &[], basic.as_deref(), &Body::Empty).map_err(|e| {
                    RegistryError::Transfer {
                        what: format!("{what}: getting a token from {realm}"),
                        why: transport_why(&e),
                    }
                })?;
                let status = resp.status().as_u16();
                let body = resp.into_body().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
                if status == 401 || status == 403 {
                    return Err(self.unauthorized(what));
                }
                if status != 200 {
                    return Err(RegistryError::Status {
                        what: format!("{what}: getting a token from {realm}"),
                        status,
                        detail: error_detail(&body),
                    });
                }
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| RegistryError::Transfer {
                    what: format!("{what}: token from {realm}"),
                    why: format!("not JSON: {e}"),
                })?;
                let tok =
                    v.get("token").or_else(|| v.get("access_token")).and_then(|t| t.as_str()).ok_or_else(|| {
                        RegistryError::Transfer {
                            what: format!("{what}: token from {realm}"),
                            why: "no token in the answer".into(),
                        }
                    })?;
                Some(format!("Bearer {tok}"))
            }
        };
        if let Some(v) = &value {
            self.lock().tokens.insert(scope.to_string(), v.clone());
        }
        Ok(value)
    }

    fn unauthorized(&self, what: &str) -> RegistryError {
        let hint = if self.creds.is_some() {
            format!(": invalid username or password for {} (nook login {})", self.registry, self.registry)
        } else {
            format!(" (401); log in with `nook login {}`", self.registry)
        };
        RegistryError::Unauthorized { what: what.to_string(), hint }
    }

    /// Sends a request with authentication, retrying once after a fresh challenge.
    fn send(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        what: &str,
    ) -> Result<http::Response<ureq::Body>, RegistryError> {
        let mut retried = false;
        loop {
            let auth = self.auth_for(scope, what)?;
            let resp = self
                .raw(method, url, headers, auth.as_deref(), &body)
                .map_err(|e| RegistryError::Transfer { what: what.to_string(), why: transport_why(&e) })?;
            if resp.status() == 401 && !retried {
                retried = true;
                let ch = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(parse_challenge);
                let mut st = self.lock();
                st.tokens.remove(scope);
                if let Some(c) = ch {
                    st.challenge = c;
                }
                if matches!(st.challenge, Challenge::Basic | Challenge::None) && self.creds.is_none() {
                    drop(st);
                    return Err(self.unauthorized(what));
                }
                continue;
            }
            return Ok(resp);
        }
    }

    /// Maps an unexpected status to an error (reading a little of the body for detail).
    fn status_error(&self, resp: http::Response<ureq::Body>, what: &str) -> RegistryError {
        let status = resp.status().as_u16();
        let body = resp.into_body().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
        let detail = error_detail(&body);
        match status {
            401 => self.unauthorized(what),
            403 => RegistryError::Forbidden { what: what.to_string(), detail },
            404 => RegistryError::NotFound { what: what.to_string(), detail },
            _ => RegistryError::Status { what: what.to_string(), status, detail },
        }
    }

    fn scope(repo: &str, push: bool) -> String {
        format!("repository:{repo}:{}", if push { "pull,push" } else { "pull" })
    }

    /// Checks the credentials against the registry (`nook login`).
    pub fn check_login(&self) -> Result<(), RegistryError> {
        let base = self.base()?;
        let what = format!("logging in to {}", self.registry);
        let challenge = self.lock().challenge.clone();
        if matches!(challenge, Challenge::None) {
            return Ok(());
        }
        let resp = self.send("GET", &format!("{base}/v2/"), "", &[], Body::Empty, &what)?;
        match resp.status().as_u16() {
            200 => Ok(()),
            _ => Err(self.status_error(resp, &what)),
        }
    }

    /// Fetches a manifest by tag or digest. The body is limited to 4 MiB; a manifest asked
    /// for by digest must match it.
    pub fn manifest(&self, repo: &str, reference: &str, what: &str) -> Result<Manifest, RegistryError> {
        let base = self.base()?;
        let url = format!("{base}/v2/{repo}/manifests/{reference}");
        let resp = self.send(
            "GET",
            &url,
            &Self::scope(repo, false),
            &[("Accept", MANIFEST_ACCEPT.to_string())],
            Body::Empty,
            what,
        )?;
        if resp.status() != 200 {
            return Err(self.status_error(resp, what));
        }
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if let Some(len) = resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            && len > MAX_MANIFEST_SIZE
        {
            return Err(too_big(what, len));
        }
        let body = resp.into_body().with_config().limit(MAX_MANIFEST_SIZE).read_to_vec().map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => too_big(what, MAX_MANIFEST_SIZE + 1),
            e => RegistryError::Transfer { what: what.to_string(), why: transport_why(&e) },
        })?;
        let digest = media::digest_of(&body);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::Invalid(format!(
                "{what}: manifest digest mismatch: asked for {reference}, got {digest}"
            )));
        }
        Ok(Manifest { body, media_type: ct, digest })
    }

    /// Starts downloading a blob.
    pub fn blob(&self, repo: &str, digest: &str, what: &str) -> Result<BlobReader, RegistryError> {
        let base = self.base()?;
        let url = format!("{base}/v2/{repo}/blobs/{digest}");
        let resp = self.send("GET", &url, &Self::scope(repo, false), &[], Body::Empty, what)?;
        if resp.status() != 200 {
            return Err(self.status_error(resp, what));
        }
        let reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        Ok(BlobReader { reader: Box::new(reader) })
    }

    /// Reads a small blob completely (configs), verifying its digest.
    pub fn small_blob(&self, repo: &str, digest: &str, limit: u64, what: &str) -> Result<Vec<u8>, RegistryError> {
        let mut b = self.blob(repo, digest, what)?;
        let mut data = Vec::new();
        (&mut b.reader)
            .take(limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| RegistryError::Transfer { what: what.to_string(), why: e.to_string() })?;
        if data.len() as u64 > limit {
            return Err(RegistryError::Invalid(format!("{what}: larger than {} MiB", limit >> 20)));
        }
        let got = media::digest_of(&data);
        if got != digest {
            return Err(RegistryError::Invalid(format!("{what}: digest mismatch: expected {digest}, got {got}")));
        }
        Ok(data)
    }

    /// Does the registry have this blob in `repo`?
    pub fn blob_exists(&self, repo: &str, digest: &str, what: &str) -> Result<bool, RegistryError> {
        let base = self.base()?;
        let url = format!("{base}/v2/{repo}/blobs/{digest}");
        let resp = self.send("HEAD", &url, &Self::scope(repo, true), &[], Body::Empty, what)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error(resp, what)),
        }
    }

    /// Uploads a blob from a file of `size` bytes.
    pub fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        src: &PathBuf,
        what: &str,
    ) -> Result<(), RegistryError> {
        self.upload_blob(repo, digest, Body::File(src), Some(size), what)
    }

    /// Uploads a small blob from memory.
    pub fn push_blob_bytes(&self, repo: &str, digest: &str, data: &[u8], what: &str) -> Result<(), RegistryError> {
        self.upload_blob(repo, digest, Body::Bytes(data), None, what)
    }

    /// One blob in one PUT (the monolithic upload of the distribution API): POST for an
    /// upload location, then PUT the body there with the digest.
    fn upload_blob(
        &self,
        repo: &str,
        digest: &str,
        body: Body<'_>,
        size: Option<u64>,
        what: &str,
    ) -> Result<(), RegistryError> {
        let base = self.base()?;
        let scope = Self::scope(repo, true);
        let resp =
            self.send("POST", &format!("{base}/v2/{repo}/blobs/uploads/"), &scope, &[], Body::Bytes(&[]), what)?;
        if resp.status() != 202 {
            return Err(self.status_error(resp, what));
        }
        let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if loc.is_empty() {
            return Err(RegistryError::Transfer {
                what: what.into(),
                why: "the registry gave no upload location".into(),
            });
        }
        let loc = if loc.starts_with("http://") || loc.starts_with("https://") {
            loc
        } else if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            format!("{base}/{loc}")
        };
        let url = format!("{loc}{}digest={}", if loc.contains('?') { '&' } else { '?' }, pct(digest));
        let mut headers = vec![("Content-Type", "application/octet-stream".to_string())];
        if let Some(n) = size {
            headers.push(("Content-Length", n.to_string()));
        }
        let resp = self.send("PUT", &url, &scope, &headers, body, what)?;
        if resp.status() != 201 {
            return Err(self.status_error(resp, what));
        }
        Ok(())
    }

    /// Uploads a manifest under a tag or digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media_type: &str,
        what: &str,
    ) -> Result<(), RegistryError> {
        let base = self.base()?;
        let url = format!("{base}/v2/{repo}/manifests/{reference}");
        let headers = [("Content-Type", media_type.to_string())];
        let resp = self.send("PUT", &url, &Self::scope(repo, true), &headers, Body::Bytes(body), what)?;
        if resp.status() != 201 && resp.status() != 200 {
            return Err(self.status_error(resp, what));
        }
        Ok(())
    }
}

fn too_big(what: &str, len: u64) -> RegistryError {
    RegistryError::Invalid(format!(
        "{what}: the manifest is larger than {} MiB ({len} bytes); refusing it",
        MAX_MANIFEST_SIZE >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        ) {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("reg"));
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(parse_challenge(r#"Basic realm="x""#), Challenge::Basic));
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:80"));
        assert!(!is_loopback("quay.io"));
        assert_eq!(pct("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
