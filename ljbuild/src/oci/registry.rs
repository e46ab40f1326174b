//! A client of the OCI distribution protocol (`docker://HOST/REPO:TAG`): manifests and blobs
//! pulled and checked like any other source, blobs pushed once (a `HEAD` first: a blob the
//! registry has is not sent again), the manifest last, so an interrupted push publishes nothing.
//!
//! Auth: the file podman and skopeo use (`$REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`, else `~/.config/containers/auth.json`, else
//! `~/.docker/config.json`), `{"auths": {"HOST[:PORT]": {"auth": base64("USER:PASSWORD")}}}`;
//! a `Basic` challenge gets those credentials, a `Bearer` challenge a token from its realm
//! (fetched with them when there are any). TLS is verified (webpki roots); `--tls-verify=false`
//! skips verification and falls back to plain HTTP, for loopback and test registries.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use super::source::Blobs;
use super::OciError;

/// Media types a pull accepts for a manifest.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// `HOST[:PORT]` (`docker.io` is `registry-1.docker.io`).
    pub host: String,
    /// The repository (`library/NAME` for a one-part Docker Hub name).
    pub repo: String,
    /// A tag or a digest; `None` for a push without one (the version is used).
    pub reference: Option<String>,
}

impl RegistryRef {
    /// Parses what follows `docker://`.
    pub fn parse(s: &str) -> Result<RegistryRef, OciError> {
        let bad = |why: &str| OciError::Reference(format!("bad registry reference 'docker://{s}': {why}"));
        // Docker's rule: the first component is a host if a '/' follows it and it has a '.' or a
        // ':' or is `localhost`; otherwise the name is Docker Hub's.
        let (host, path) = match s.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), s.to_string()),
        };
        if host.is_empty() || path.is_empty() {
            return Err(bad("expected HOST/REPOSITORY[:TAG]"));
        }
        let (repo, reference) = if let Some((r, d)) = path.split_once('@') {
            (r.to_string(), Some(d.to_string()))
        } else {
            match path.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
                _ => (path.clone(), None),
            }
        };
        if repo.is_empty()
            || !repo.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            })
        {
            return Err(bad("the repository must be lower-case [a-z0-9._-] components"));
        }
        let repo = if host == "docker.io" && !repo.contains('/') { format!("library/{repo}") } else { repo };
        Ok(RegistryRef { host, repo, reference })
    }

    fn api_host(&self) -> &str {
        if self.host == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.host
        }
    }
}

impl std::fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "docker://{}/{}", self.host, self.repo)?;
        match &self.reference {
            Some(r) if r.contains(':') => write!(f, "@{r}"),
            Some(r) => write!(f, ":{r}"),
            None => Ok(()),
        }
    }
}

/// Credentials from the auth file.
#[derive(Clone)]
struct Creds {
    user: String,
    password: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({}, <hidden>)", self.user)
    }
}

/// The auth file to read: `$REGISTRY_AUTH_FILE`, podman's, then docker's.
pub fn auth_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut c = Vec::new();
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        c.push(PathBuf::from(r).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        let h = PathBuf::from(h);
        c.push(h.join(".config/containers/auth.json"));
        c.push(h.join(".docker/config.json"));
    }
    c.into_iter().find(|p| p.is_file())
}

fn creds_for(host: &str) -> Result<Option<Creds>, OciError> {
    let Some(path) = auth_file() else { return Ok(None) };
    let bad = |why: String| OciError::Registry(format!("auth file {}: {why}", path.display()));
    let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let auths = &v["auths"];
    let keys = [host.to_string(), format!("https://{host}"), format!("http://{host}")];
    let entry = keys
        .iter()
        .find_map(|k| auths.get(k))
        .or_else(|| (host == "docker.io").then(|| auths.get("https://index.docker.io/v1/")).flatten());
    let Some(auth) = entry.and_then(|e| e["auth"].as_str()) else { return Ok(None) };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| bad(format!("entry for {host}: {e}")))?;
    let s = String::from_utf8(raw).map_err(|_| bad(format!("entry for {host} is not UTF-8")))?;
    let (user, password) =
        s.split_once(':').ok_or_else(|| bad(format!("entry for {host} is not USER:PASSWORD")))?;
    Ok(Some(Creds { user: user.into(), password: password.into() }))
}

/// `key="value"` pairs of a `WWW-Authenticate` challenge.
fn challenge_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            value = r[..end].to_string();
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.insert(key, value);
    }
    out
}

/// Percent-encodes a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What a transfer moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Blobs downloaded.
    pub fetched: u64,
    /// Their bytes.
    pub fetched_bytes: u64,
    /// Blobs uploaded.
    pub uploaded: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Blobs the registry had already (not sent).
    pub skipped: u64,
}

/// A connection to one repository of a registry.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// The reference.
    pub r: RegistryRef,
    auth: Option<String>,
    manifests: HashMap<String, Vec<u8>>,
    /// What moved so far.
    pub stats: Stats,
}

type Resp = ureq::http::Response<ureq::Body>;

impl Client {
    /// Connects (`GET /v2/`) and authenticates for `pull` or `pull,push`.
    pub fn connect(r: &RegistryRef, tls_verify: bool, push: bool) -> Result<Client, OciError> {
        let tls = ureq::tls::TlsConfig::builder().disable_verification(!tls_verify).build();
        let loopback =
            r.host.starts_with("127.") || r.host.starts_with("localhost") || r.host.starts_with("[::1]");
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .max_redirects(10)
            .user_agent(concat!("ljbuild/", env!("CARGO_PKG_VERSION")));
        if loopback {
            cfg = cfg.proxy(None);
        }
        let agent: ureq::Agent = cfg.build().into();
        let host = r.api_host().to_string();
        let ping = |scheme: &str| agent.get(&format!("{scheme}://{host}/v2/")).call();
        let (base, resp) = match ping("https") {
            Ok(resp) => (format!("https://{host}"), resp),
            Err(e) if !tls_verify => match ping("http") {
                Ok(resp) => (format!("http://{host}"), resp),
                Err(_) => return Err(OciError::Registry(format!("cannot reach {host}: {e}"))),
            },
            Err(e) => {
                return Err(OciError::Registry(format!(
                    "cannot reach https://{host}: {e}{}",
                    if loopback { " (a plain-HTTP test registry needs --tls-verify=false)" } else { "" }
                )))
            }
        };
        let mut c = Client {
            agent,
            base,
            r: r.clone(),
            auth: None,
            manifests: HashMap::new(),
            stats: Stats::default(),
        };
        match resp.status().as_u16() {
            200 => {}
            401 => {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                c.authenticate(&challenge, push)?;
                let check = c.call(c.agent.get(&format!("{}/v2/", c.base)))?;
                if check.status().as_u16() == 401 {
                    return Err(c.auth_failed());
                }
            }
            s => return Err(OciError::Registry(format!("{host}/v2/ answered {s}: not an OCI registry?"))),
        }
        Ok(c)
    }

    fn auth_failed(&self) -> OciError {
        let file = auth_file().map_or("no auth file".to_string(), |p| p.display().to_string());
        OciError::Registry(format!(
            "authentication to {} failed for {} (credentials from {file}; `podman login {}` or $REGISTRY_AUTH_FILE)",
            self.r.host, self.r.repo, self.r.host
        ))
    }

    fn authenticate(&mut self, challenge: &str, push: bool) -> Result<(), OciError> {
        let creds = creds_for(&self.r.host)?;
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                let c = creds.ok_or_else(|| self.auth_failed())?;
                let b =
                    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
                self.auth = Some(format!("Basic {b}"));
            }
            "bearer" => {
                let p = challenge_params(params);
                let realm = p.get("realm").ok_or_else(|| {
                    OciError::Registry(format!("{}: bearer challenge without a realm", self.r.host))
                })?;
                let scope = format!("repository:{}:{}", self.r.repo, if push { "pull,push" } else { "pull" });
                let mut url = format!("{realm}?scope={}", query_escape(&scope));
                if let Some(s) = p.get("service") {
                    url.push_str(&format!("&service={}", query_escape(s)));
                }
                let mut req = self.agent.get(&url);
                if let Some(c) = &creds {
                    let b = base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.user, c.password));
                    req = req.header("Authorization", format!("Basic {b}"));
                }
                let mut resp =
                    req.call().map_err(|e| OciError::Registry(format!("token from {realm}: {e}")))?;
                if resp.status().as_u16() != 200 {
                    return Err(self.auth_failed());
                }
                let body = resp
                    .body_mut()
                    .read_to_vec()
                    .map_err(|e| OciError::Registry(format!("token from {realm}: {e}")))?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| OciError::Registry(format!("token from {realm}: {e}")))?;
                let tok = v["token"].as_str().or(v["access_token"].as_str()).ok_or_else(|| {
                    OciError::Registry(format!("token from {realm}: no token in the answer"))
                })?;
                self.auth = Some(format!("Bearer {tok}"));
            }
            _ => {
                return Err(OciError::Registry(format!(
                    "{}: unsupported authentication '{scheme}'",
                    self.r.host
                )))
            }
        }
        Ok(())
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.r.repo)
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    fn call(&self, req: ureq::RequestBuilder<ureq::typestate::WithoutBody>) -> Result<Resp, OciError> {
        self.with_auth(req).call().map_err(|e| self.net_err(e))
    }

    fn net_err(&self, e: ureq::Error) -> OciError {
        OciError::Registry(format!("{}: {e} (transfer interrupted; nothing published)", self.r.host))
    }

    fn status_err(&self, what: &str, mut resp: Resp) -> OciError {
        let code = resp.status().as_u16();
        if code == 401 || code == 403 {
            return self.auth_failed();
        }
        let body = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(String::from))
            .unwrap_or_else(|| body.lines().next().unwrap_or("").to_string());
        OciError::Registry(format!("{} {what}: {code} {msg}", self.r))
    }

    /// Fetches the manifest of `reference` (tag or digest); returns its digest (checked when
    /// `reference` is one).
    pub fn fetch_manifest(&mut self, reference: &str) -> Result<String, OciError> {
        let resp =
            self.call(self.agent.get(&self.url(&format!("manifests/{reference}"))).header("Accept", ACCEPT))?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_err(&format!("manifest {reference}"), resp));
        }
        let mut resp = resp;
        let body = resp
            .body_mut()
            .with_config()
            .limit(super::LIMIT_JSON)
            .read_to_vec()
            .map_err(|e| self.net_err(e))?;
        let d = super::digest::of_bytes(&body);
        if reference.starts_with("sha256:") && reference != d {
            return Err(OciError::Digest {
                what: format!("manifest of {}", self.r),
                want: reference.into(),
                got: d,
            });
        }
        self.manifests.insert(d.clone(), body);
        Ok(d)
    }

    /// Whether the registry has blob `d`.
    pub fn has_blob(&self, d: &str) -> Result<bool, OciError> {
        let resp = self.call(self.agent.head(&self.url(&format!("blobs/{d}"))))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_err(&format!("blob {d}"), resp)),
        }
    }

    /// Uploads the blob `d` from `path` (one monolithic PUT) unless the registry has it.
    pub fn push_blob(&mut self, d: &str, path: &Path) -> Result<(), OciError> {
        if self.has_blob(d)? {
            self.stats.skipped += 1;
            return Ok(());
        }
        let resp = self
            .with_auth(self.agent.post(&self.url("blobs/uploads/")))
            .header("Content-Length", "0")
            .send_empty()
            .map_err(|e| self.net_err(e))?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_err("upload", resp));
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::Registry(format!("{}: upload without a Location", self.r)))?
            .to_string();
        let mut url = if loc.starts_with("http://") || loc.starts_with("https://") {
            loc
        } else {
            format!("{}{loc}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={}", query_escape(d)));
        let mut f = File::open(path).map_err(|e| OciError::Io {
            what: "cannot open",
            path: path.into(),
            source: e,
        })?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = io::BufReader::with_capacity(1 << 20, &mut f);
        let resp = self
            .with_auth(self.agent.put(&url))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len.to_string())
            .send(ureq::SendBody::from_reader(&mut reader))
            .map_err(|e| self.net_err(e))?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_err(&format!("upload of {d}"), resp));
        }
        self.stats.uploaded += 1;
        self.stats.uploaded_bytes += len;
        Ok(())
    }

    /// Publishes `manifest` as `tag` (the last step of a push).
    pub fn put_manifest(&mut self, tag: &str, media_type: &str, manifest: &[u8]) -> Result<(), OciError> {
        let resp = self
            .with_auth(self.agent.put(&self.url(&format!("manifests/{tag}"))))
            .header("Content-Type", media_type)
            .send(manifest)
            .map_err(|e| self.net_err(e))?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_err(&format!("manifest {tag}"), resp));
        }
        Ok(())
    }
}

impl Blobs for Client {
    fn open(&mut self, loc: &str) -> Result<Box<dyn Read + Send + '_>, OciError> {
        if let Some(d) = loc.strip_prefix("manifests/") {
            if !self.manifests.contains_key(d) {
                self.fetch_manifest(d)?;
            }
            let body = self.manifests.get(d).cloned().unwrap_or_default();
            return Ok(Box::new(io::Cursor::new(body)));
        }
        let resp = self.call(self.agent.get(&self.url(loc)))?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_err(loc, resp));
        }
        self.stats.fetched += 1;
        let len: u64 =
            resp.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        self.stats.fetched_bytes += len;
        Ok(Box::new(resp.into_body().into_reader()))
    }

    fn blob_loc(&self, d: &str) -> Result<String, OciError> {
        super::digest::sha256_hex(d)?;
        Ok(format!("blobs/{d}"))
    }

    fn manifest_loc(&self, d: &str) -> Result<String, OciError> {
        super::digest::sha256_hex(d)?;
        Ok(format!("manifests/{d}"))
    }

    fn describe(&self) -> String {
        self.r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        let r = RegistryRef::parse("127.0.0.1:5000/lj/child:v1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repo.as_str(), r.reference.as_deref()),
            ("127.0.0.1:5000", "lj/child", Some("v1"))
        );
        let r = RegistryRef::parse("busybox:1.36").unwrap();
        assert_eq!((r.host.as_str(), r.repo.as_str()), ("docker.io", "library/busybox"));
        assert_eq!(RegistryRef::parse("localhost/a").unwrap().reference, None);
        assert!(RegistryRef::parse("h.example/UPPER").is_err());
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        );
        assert_eq!(p["service"], "registry.example");
        assert_eq!(query_escape("sha256:ab"), "sha256%3Aab");
    }
}
