//! Talking to registries (Docker Registry HTTP API v2 / OCI distribution) through `oci-client`:
//! manifests, blobs, uploads, mounts, and the credentials the docker CLI sends.

use std::sync::Arc;

use base64::Engine;
use futures_util::Stream;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference as OciRef, RegistryOperation};
use serde::Deserialize;

use super::{RegistryError, RegistryOptions, DEFAULT_INDEX};
use crate::errors::ErrorKind;
use crate::util::http::error_chain;

/// Where Docker Hub's API lives.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// Media types of manifests berth asks for.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// The largest manifest accepted from a registry: containerd's `MaxManifestSize`
/// (`4 * 1048 * 1048` bytes, sic), which dockerd's containerd image store applies.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1048 * 1048;

/// How much of an error response's body is read.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Credentials as the docker CLI sends them (`X-Registry-Auth`, `POST /auth`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
}

/// The bytes of a base64 request header (`X-Registry-Auth`, `X-Registry-Config`): URL-safe or
/// standard alphabet, padded or not, as the clients send them.
pub fn decode_header_base64(value: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines.iter().find_map(|e| e.decode(value.trim()).ok())
}

impl AuthConfig {
    /// Decode an `X-Registry-Auth` header: base64url (padded or not) of JSON. An empty header
    /// or `{}` means anonymous.
    pub fn from_header(value: &str) -> Result<AuthConfig, RegistryError> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(AuthConfig::default());
        }
        let bytes = decode_header_base64(value).ok_or_else(|| {
            RegistryError::new(
                ErrorKind::InvalidParameter,
                "invalid X-Registry-Auth header: not base64",
            )
        })?;
        let mut a: AuthConfig = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::new(
                ErrorKind::InvalidParameter,
                format!("invalid X-Registry-Auth header: {e}"),
            )
        })?;
        a.fill_from_auth();
        Ok(a)
    }

    /// `auth` is base64 of `user:password`: fill username and password from it.
    pub fn fill_from_auth(&mut self) {
        if self.username.is_empty() && !self.auth.is_empty() {
            if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(&self.auth) {
                if let Some((u, p)) = String::from_utf8_lossy(&b).split_once(':') {
                    self.username = u.to_string();
                    self.password = p.to_string();
                }
            }
        }
    }

    fn registry_auth(&self) -> RegistryAuth {
        if !self.registry_token.is_empty() {
            RegistryAuth::Bearer(self.registry_token.clone())
        } else if !self.username.is_empty() {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        } else if !self.identity_token.is_empty() {
            RegistryAuth::Basic("<token>".to_string(), self.identity_token.clone())
        } else {
            RegistryAuth::Anonymous
        }
    }
}

/// One place to reach a repository: a registry host, its scheme, and the repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP (insecure registries and `http://` mirrors).
    pub plain_http: bool,
    /// A `--registry-mirror`, tried before Docker Hub itself.
    pub mirror: bool,
    /// HTTPS without certificate checks (an insecure registry that speaks TLS).
    pub insecure_tls: bool,
}

impl Endpoint {
    pub fn scheme(&self) -> &'static str {
        if self.plain_http {
            "http"
        } else {
            "https"
        }
    }
}

/// A client bound to one endpoint and one set of credentials.
#[derive(Clone)]
pub struct Session {
    client: Arc<Client>,
    pub endpoint: Endpoint,
    auth: RegistryAuth,
}

/// What fetching a manifest gave.
pub struct FetchedManifest {
    pub bytes: bytes::Bytes,
    pub digest: String,
    pub media_type: String,
}

/// The endpoints to try for a registry domain: mirrors first for Docker Hub.
pub fn endpoints(opts: &RegistryOptions, domain: &str) -> Vec<Endpoint> {
    let ep = |host: String, plain_http: bool, mirror: bool, insecure_tls: bool| Endpoint {
        host,
        plain_http,
        mirror,
        insecure_tls,
    };
    let mut out = Vec::new();
    if domain == DEFAULT_INDEX {
        for m in &opts.mirrors {
            if let Ok(u) = url::Url::parse(m) {
                let host = match (u.host_str(), u.port()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    (Some(h), None) => h.to_string(),
                    _ => continue,
                };
                out.push(ep(host, u.scheme() == "http", true, false));
            }
        }
        out.push(ep(DOCKER_HUB_REGISTRY.to_string(), false, false, false));
    } else if opts.is_insecure(domain) {
        // As dockerd: HTTPS without certificate checks first, then plain HTTP.
        out.push(ep(domain.to_string(), false, false, true));
        out.push(ep(domain.to_string(), true, false, false));
    } else {
        out.push(ep(domain.to_string(), false, false, false));
    }
    out
}

/// The one endpoint to use for a registry (not a mirror): for an insecure registry, HTTPS if
/// it answers HTTPS at all, else plain HTTP.
pub async fn pick_endpoint(
    opts: &RegistryOptions,
    domain: &str,
) -> Result<Endpoint, RegistryError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let candidates: Vec<Endpoint> = endpoints(opts, domain)
        .into_iter()
        .filter(|e| !e.mirror)
        .collect();
    if candidates.len() > 1 {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| RegistryError::new(ErrorKind::Internal, format!("http client: {e}")))?;
        for c in &candidates {
            let url = format!("{}://{}/v2/", c.scheme(), c.host);
            if http.get(&url).send().await.is_ok() {
                return Ok(c.clone());
            }
        }
    }
    candidates
        .into_iter()
        .last()
        .ok_or_else(|| RegistryError::new(ErrorKind::Internal, "no registry endpoint"))
}

impl Session {
    pub fn new(endpoint: Endpoint, auth: &AuthConfig) -> Session {
        // rustls needs a process-wide crypto provider; berth uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..Default::default()
        };
        Session {
            client: Arc::new(Client::new(config)),
            endpoint,
            auth: auth.registry_auth(),
        }
    }

    fn oci_ref(&self, repo: &str, tag_or_digest: &str) -> OciRef {
        if tag_or_digest.starts_with("sha256:") {
            OciRef::with_digest(
                self.endpoint.host.clone(),
                repo.to_string(),
                tag_or_digest.to_string(),
            )
        } else {
            OciRef::with_tag(
                self.endpoint.host.clone(),
                repo.to_string(),
                tag_or_digest.to_string(),
            )
        }
    }

    /// Authenticate for `op` on `repo` (fetches a bearer token when the registry asks for one).
    pub async fn authenticate(
        &self,
        repo: &str,
        op: RegistryOperation,
    ) -> Result<(), RegistryError> {
        let r = self.oci_ref(repo, "latest");
        self.client
            .auth(&r, &self.auth, op)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &format!("{}/{repo}", self.endpoint.host)))
    }

    /// `GET /v2/<repo>/tags/list`: the repository's tags, as the registry lists them unasked
    /// (the whole list for Distribution's registry; no `n`/`last` pages are requested).
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let r = self.oci_ref(repo, "latest");
        self.client
            .list_tags(&r, &self.auth, None, None)
            .await
            .map(|t| t.tags)
            .map_err(|e| self.error(e, &format!("{}/{repo}", self.endpoint.host)))
    }

    /// Fetch a manifest by tag or digest; the digest is verified. Manifests larger than
    /// [`MAX_MANIFEST_SIZE`] are refused before they are read whole.
    pub async fn manifest(
        &self,
        repo: &str,
        tag_or_digest: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        // As dockerd names it (`FamiliarString`): `repo:tag`, or `repo@sha256:…` for a digest.
        let sep = if tag_or_digest.contains(':') {
            '@'
        } else {
            ':'
        };
        let what = format!("{}/{repo}{sep}{tag_or_digest}", self.endpoint.host);
        let (bytes, digest) = self.get_manifest_capped(repo, tag_or_digest, &what).await?;
        let computed = crate::util::digest::sha256_digest(&bytes);
        if tag_or_digest.starts_with("sha256:") && computed != tag_or_digest {
            return Err(RegistryError::new(
                ErrorKind::InvalidParameter,
                format!("manifest verification failed for digest {tag_or_digest}"),
            ));
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(FetchedManifest {
            bytes,
            digest: if digest.is_empty() { computed } else { digest },
            media_type,
        })
    }

    /// `GET /v2/<repo>/manifests/<ref>` with the session's credentials, reading at most
    /// [`MAX_MANIFEST_SIZE`] bytes (`oci-client` would read any size into memory). Returns the
    /// body and the `Docker-Content-Digest` header (empty when absent).
    async fn get_manifest_capped(
        &self,
        repo: &str,
        tag_or_digest: &str,
        what: &str,
    ) -> Result<(bytes::Bytes, String), RegistryError> {
        let r = self.oci_ref(repo, tag_or_digest);
        // A bearer token when the registry wants one (fetched and cached by oci-client).
        let token = self
            .client
            .auth(&r, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.error(e, what))?;
        let url = format!(
            "{}://{}/v2/{repo}/manifests/{tag_or_digest}",
            self.endpoint.scheme(),
            self.endpoint.host
        );
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(self.endpoint.insecure_tls)
            .build()
            .map_err(|e| RegistryError::new(ErrorKind::Internal, format!("http client: {e}")))?;
        let mut req = http.get(&url).header("Accept", MANIFEST_TYPES.join(", "));
        match (&token, &self.auth) {
            (Some(t), _) => req = req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req = req.basic_auth(u, Some(p)),
            _ => {}
        }
        let mut resp = req.send().await.map_err(|e| {
            RegistryError::new(
                ErrorKind::Unavailable,
                format!("Get \"{url}\": {}", error_chain(&e)),
            )
        })?;
        let status = resp.status();
        let header_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string();
        let too_large = |size: Option<u64>| {
            RegistryError::new(
                ErrorKind::NotFound,
                match size {
                    Some(n) => format!(
                        "rejecting {n} byte manifest for {}: the limit is {MAX_MANIFEST_SIZE} bytes",
                        self.familiar(what)
                    ),
                    None => format!(
                        "rejecting manifest for {}: larger than the limit of {MAX_MANIFEST_SIZE} bytes",
                        self.familiar(what)
                    ),
                },
            )
        };
        // Error bodies are read to a smaller bound.
        let limit = if status.is_success() {
            MAX_MANIFEST_SIZE
        } else {
            MAX_ERROR_BODY
        };
        if let Some(n) = resp.content_length() {
            if n > limit && status.is_success() {
                return Err(too_large(Some(n)));
            }
        }
        let mut body = bytes::BytesMut::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                RegistryError::new(
                    ErrorKind::Unavailable,
                    format!("Get \"{url}\": {}", error_chain(&e)),
                )
            })?;
            let Some(chunk) = chunk else { break };
            if (body.len() + chunk.len()) as u64 > limit {
                if status.is_success() {
                    return Err(too_large(None));
                }
                let room = (limit as usize).saturating_sub(body.len());
                body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();
        if let Some(e) = status_error(status, reqwest::StatusCode::OK, &body, &url) {
            return Err(self.error(e, what));
        }
        if !header_digest.is_empty()
            && header_digest.starts_with("sha256:")
            && header_digest != crate::util::digest::sha256_digest(&body)
        {
            return Err(RegistryError::new(
                ErrorKind::InvalidParameter,
                format!("manifest verification failed for digest {header_digest}"),
            ));
        }
        Ok((body, header_digest))
    }

    /// Stream a blob.
    pub async fn blob_stream(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin, RegistryError>
    {
        let r = self.oci_ref(repo, digest);
        let s = self
            .client
            .pull_blob_stream(&r, digest)
            .await
            .map_err(|e| self.error(e, &format!("{}/{repo}@{digest}", self.endpoint.host)))?;
        Ok(s.stream)
    }

    /// Whether the repository already has a blob.
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let r = self.oci_ref(repo, digest);
        self.client
            .blob_exists(&r, digest)
            .await
            .map_err(|e| self.error(e, &format!("{}/{repo}", self.endpoint.host)))
    }

    /// Cross-repository mount of a blob the registry has in `from`.
    pub async fn mount(&self, repo: &str, from: &str, digest: &str) -> Result<(), RegistryError> {
        let target = self.oci_ref(repo, "latest");
        let source = self.oci_ref(from, "latest");
        self.client
            .mount_blob(&target, &source, digest)
            .await
            .map_err(|e| self.error(e, &format!("{}/{repo}", self.endpoint.host)))
    }

    /// Open a blob upload session in `repo` (`POST /v2/<repo>/blobs/uploads/`), to send a blob
    /// whose digest is known only once it is sent: [`BlobUpload::send`] streams it in one
    /// `PATCH`, [`BlobUpload::commit`] names its digest (distribution's "stream upload", what
    /// dockerd's push does).
    pub async fn begin_upload(&self, repo: &str) -> Result<BlobUpload, RegistryError> {
        let what = format!("{}/{repo}", self.endpoint.host);
        // A bearer token when the registry wants one (fetched and cached by oci-client).
        let token = self
            .client
            .auth(
                &self.oci_ref(repo, "latest"),
                &self.auth,
                RegistryOperation::Push,
            )
            .await
            .map_err(|e| self.error(e, &what))?;
        let auth = match (token, &self.auth) {
            (Some(t), _) => UploadAuth::Bearer(t),
            (None, RegistryAuth::Basic(u, p)) => UploadAuth::Basic(u.clone(), p.clone()),
            _ => UploadAuth::None,
        };
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(self.endpoint.insecure_tls)
            .build()
            .map_err(|e| RegistryError::new(ErrorKind::Internal, format!("http client: {e}")))?;
        let base = format!("{}://{}/", self.endpoint.scheme(), self.endpoint.host);
        let base = url::Url::parse(&base)
            .map_err(|e| RegistryError::new(ErrorKind::InvalidParameter, format!("{base}: {e}")))?;
        let mut upload = BlobUpload {
            session: self.clone(),
            http,
            auth,
            location: base.clone(),
            base,
            what,
        };
        let url = format!(
            "{}://{}/v2/{repo}/blobs/uploads/",
            self.endpoint.scheme(),
            self.endpoint.host
        );
        let req = upload
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_LENGTH, "0");
        upload
            .request("Post", &url, req, reqwest::StatusCode::ACCEPTED)
            .await?;
        Ok(upload)
    }

    /// Upload a small blob whole.
    pub async fn upload_bytes(
        &self,
        repo: &str,
        data: Vec<u8>,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let r = self.oci_ref(repo, "latest");
        self.client
            .push_blob(&r, data, digest)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &format!("{}/{repo}", self.endpoint.host)))
    }

    /// Put a manifest under a tag.
    pub async fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        body: Vec<u8>,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let r = self.oci_ref(repo, tag);
        let ct = reqwest::header::HeaderValue::from_str(media_type).map_err(|e| {
            RegistryError::new(ErrorKind::Internal, format!("media type {media_type}: {e}"))
        })?;
        self.client
            .push_manifest_raw(&r, body, ct)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &format!("{}/{repo}:{tag}", self.endpoint.host)))
    }

    /// Turn a client error into dockerd's words.
    /// `what` as dockerd names it: Docker Hub repositories without host and `library/`.
    fn familiar(&self, what: &str) -> String {
        if self.endpoint.mirror || self.endpoint.host == DOCKER_HUB_REGISTRY {
            let rest = what
                .strip_prefix(&format!("{}/", self.endpoint.host))
                .unwrap_or(what);
            rest.strip_prefix("library/").unwrap_or(rest).to_string()
        } else {
            what.to_string()
        }
    }

    fn error(&self, e: oci_client::errors::OciDistributionError, what: &str) -> RegistryError {
        use oci_client::errors::OciDistributionError as E;
        let what = self.familiar(what);
        // The repository without tag or digest, for "repository ... not found".
        let name = {
            let no_digest = what.split('@').next().unwrap_or(&what);
            match no_digest.rfind(':') {
                Some(i) if !no_digest[i..].contains('/') => no_digest[..i].to_string(),
                _ => no_digest.to_string(),
            }
        };
        match &e {
            E::AuthenticationFailure(m) => RegistryError::new(
                ErrorKind::Unauthorized,
                format!("unauthorized: {}", m.trim()),
            ),
            E::UnauthorizedError { .. } => RegistryError::new(
                ErrorKind::Unauthorized,
                format!("unauthorized: authentication required for {what}"),
            ),
            E::ImageManifestNotFoundError(_) => RegistryError::new(
                ErrorKind::NotFound,
                format!("manifest for {what} not found: manifest unknown: manifest unknown"),
            ),
            E::RegistryError { envelope, .. } => {
                let code = envelope
                    .errors
                    .first()
                    .map(|x| format!("{:?}", x.code))
                    .unwrap_or_default();
                let msg = envelope
                    .errors
                    .iter()
                    .map(|x| x.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                if code.contains("ManifestUnknown") {
                    return RegistryError::new(
                        ErrorKind::NotFound,
                        format!("manifest for {what} not found: manifest unknown: {msg}"),
                    );
                }
                if code.contains("NameUnknown") {
                    return RegistryError::new(
                        ErrorKind::NotFound,
                        format!("repository {name} not found: name unknown: {msg}"),
                    );
                }
                if code.contains("Denied") {
                    return RegistryError::new(
                        ErrorKind::NotFound,
                        format!("pull access denied for {name}, repository does not exist or may require 'docker login': denied: {msg}"),
                    );
                }
                let kind = if code.contains("Unknown") {
                    ErrorKind::NotFound
                } else if code.contains("Unauthorized") {
                    ErrorKind::Unauthorized
                } else {
                    ErrorKind::Unavailable
                };
                RegistryError::new(kind, format!("{what}: {msg}"))
            }
            E::ServerError { code: 404, .. } => RegistryError::new(
                ErrorKind::NotFound,
                format!("manifest for {what} not found: manifest unknown: manifest unknown"),
            ),
            E::RequestError(r) => RegistryError::new(
                ErrorKind::Unavailable,
                format!(
                    "Get \"{}://{}/v2/\": {}",
                    self.endpoint.scheme(),
                    self.endpoint.host,
                    error_chain(r)
                ),
            ),
            _ => RegistryError::new(ErrorKind::Unavailable, format!("{what}: {e}")),
        }
    }
}

/// How an upload session's requests are authorised.
enum UploadAuth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// A blob upload session: the registry's `Location` for its next request.
pub struct BlobUpload {
    session: Session,
    http: reqwest::Client,
    auth: UploadAuth,
    base: url::Url,
    location: url::Url,
    /// `host/repo`, for errors.
    what: String,
}

impl BlobUpload {
    /// Send the whole blob as one `PATCH` without `Content-Range` (the body goes with chunked
    /// transfer encoding, each item one chunk). An `Err` item fails the request: a short stream
    /// never becomes a blob.
    pub async fn send<S>(&mut self, data: S) -> Result<(), RegistryError>
    where
        S: Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let url = self.location.clone();
        let req = self
            .http
            .patch(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(data));
        self.request("Patch", url.as_str(), req, reqwest::StatusCode::ACCEPTED)
            .await
    }

    /// Close the session with the blob's digest (`PUT <location>?digest=`); the registry checks
    /// it against what it received.
    pub async fn commit(mut self, digest: &str) -> Result<(), RegistryError> {
        let mut url = self.location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let req = self
            .http
            .put(url.clone())
            .header(reqwest::header::CONTENT_LENGTH, "0");
        self.request("Put", url.as_str(), req, reqwest::StatusCode::CREATED)
            .await
    }

    /// Send one request of the session; on the expected status, follow its `Location`.
    async fn request(
        &mut self,
        method: &str,
        url: &str,
        req: reqwest::RequestBuilder,
        expected: reqwest::StatusCode,
    ) -> Result<(), RegistryError> {
        let req = match &self.auth {
            UploadAuth::None => req,
            UploadAuth::Bearer(t) => req.bearer_auth(t),
            UploadAuth::Basic(u, p) => req.basic_auth(u, Some(p)),
        };
        let unavailable = |e: &reqwest::Error| {
            RegistryError::new(
                ErrorKind::Unavailable,
                format!("{method} \"{url}\": {}", error_chain(e)),
            )
        };
        let resp = req.send().await.map_err(|e| unavailable(&e))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status == expected {
            if let Some(l) = location {
                self.location = self.base.join(&l).map_err(|e| {
                    RegistryError::new(
                        ErrorKind::Unavailable,
                        format!("{method} \"{url}\": invalid Location {l:?}: {e}"),
                    )
                })?;
            } else if expected == reqwest::StatusCode::ACCEPTED {
                return Err(RegistryError::new(
                    ErrorKind::Unavailable,
                    format!("{method} \"{url}\": the registry gave no upload location"),
                ));
            }
            return Ok(());
        }
        let mut body = bytes::BytesMut::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(&e))? {
            let room = (MAX_ERROR_BODY as usize).saturating_sub(body.len());
            body.extend_from_slice(&chunk[..room.min(chunk.len())]);
            if room <= chunk.len() {
                break;
            }
        }
        let e = status_error(status, expected, &body, url).unwrap_or_else(|| {
            oci_client::errors::OciDistributionError::SpecViolationError(format!(
                "Expected HTTP Status {expected}, got {status} instead"
            ))
        });
        Err(self.session.error(e, &self.what))
    }
}

/// The error of a registry response whose status is not `expected`, from its body: the
/// registry's error envelope for client errors, else the status and body text.
fn status_error(
    status: reqwest::StatusCode,
    expected: reqwest::StatusCode,
    body: &[u8],
    url: &str,
) -> Option<oci_client::errors::OciDistributionError> {
    use oci_client::errors::{OciDistributionError as E, OciEnvelope};
    let url = url.to_string();
    match status {
        s if s == expected => None,
        reqwest::StatusCode::UNAUTHORIZED => Some(E::UnauthorizedError { url }),
        s if s.is_success() => Some(E::SpecViolationError(format!(
            "Expected HTTP Status {expected}, got {s} instead"
        ))),
        s => Some(
            match serde_json::from_slice::<OciEnvelope>(body)
                .ok()
                .filter(|_| s.is_client_error())
            {
                Some(envelope) => E::RegistryError { envelope, url },
                None => E::ServerError {
                    code: s.as_u16(),
                    url,
                    message: String::from_utf8_lossy(body).to_string(),
                },
            },
        ),
    }
}

/// `POST /auth`: check credentials against a registry as dockerd does. Returns the status text.
pub async fn login(opts: &RegistryOptions, auth: &AuthConfig) -> Result<String, RegistryError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = auth.server_address.trim();
    let host = server
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches("/v2")
        .to_string();
    let host = if host.is_empty() || host == "index.docker.io" || host == DEFAULT_INDEX {
        DEFAULT_INDEX.to_string()
    } else {
        host
    };
    let ep = pick_endpoint(opts, &host).await?;
    let url = format!("{}://{}/v2/", ep.scheme(), ep.host);
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(ep.insecure_tls)
        .build()
        .map_err(|e| RegistryError::new(ErrorKind::Internal, format!("http client: {e}")))?;
    let unreachable = |e: reqwest::Error| {
        RegistryError::new(
            ErrorKind::Unavailable,
            format!("Get \"{url}\": {}", error_chain(&e)),
        )
    };
    let first = http.get(&url).send().await.map_err(unreachable)?;
    let failed = |status: reqwest::StatusCode| {
        RegistryError::new(
            ErrorKind::Unauthorized,
            format!(
                "login attempt to {url} failed with status: {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
        )
    };
    if first.status().is_success() {
        return Ok("Login Succeeded".to_string());
    }
    if first.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(failed(first.status()));
    }
    let challenge = first
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if challenge.to_ascii_lowercase().starts_with("bearer") {
        let params = parse_challenge(&challenge);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut req = http.get(&realm);
        if let Some((_, svc)) = params.iter().find(|(k, _)| k == "service") {
            req = req.query(&[("service", svc)]);
        }
        let resp = req
            .basic_auth(&auth.username, Some(&auth.password))
            .send()
            .await
            .map_err(unreachable)?;
        if resp.status().is_success() {
            return Ok("Login Succeeded".to_string());
        }
        return Err(failed(resp.status()));
    }
    let resp = http
        .get(&url)
        .basic_auth(&auth.username, Some(&auth.password))
        .send()
        .await
        .map_err(unreachable)?;
    if resp.status().is_success() {
        Ok("Login Succeeded".to_string())
    } else {
        Err(failed(resp.status()))
    }
}

/// `Bearer realm="...",service="..."` into pairs.
fn parse_challenge(h: &str) -> Vec<(String, String)> {
    let rest = h.split_once(' ').map(|(_, r)| r).unwrap_or("");
    rest.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// `GET /images/search`: the registry's v1 search API (`/v1/search?q=`), where it has one.
/// `term` may start with a registry host (`127.0.0.1:5000/busy`); otherwise Docker Hub.
pub async fn search(
    opts: &RegistryOptions,
    term: &str,
    limit: Option<i64>,
    auth: &AuthConfig,
) -> Result<Vec<bollard_stubs::models::ImageSearchResponseItem>, RegistryError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (host, query) = match term.split_once('/') {
        Some((h, rest)) if h.contains('.') || h.contains(':') || h == "localhost" => {
            (h.to_string(), rest.to_string())
        }
        _ => ("index.docker.io".to_string(), term.to_string()),
    };
    if query.is_empty() {
        return Err(RegistryError::new(
            ErrorKind::InvalidParameter,
            "search term must not be empty",
        ));
    }
    let (scheme, insecure_tls) = if host == "index.docker.io" {
        ("https", false)
    } else {
        let ep = pick_endpoint(opts, &host).await?;
        (ep.scheme(), ep.insecure_tls)
    };
    let url = format!("{scheme}://{host}/v1/search");
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure_tls)
        .build()
        .map_err(|e| RegistryError::new(ErrorKind::Internal, format!("http client: {e}")))?;
    let mut req = http.get(&url).query(&[
        ("q", query.as_str()),
        ("n", &limit.unwrap_or(25).to_string()),
    ]);
    if !auth.username.is_empty() {
        req = req.basic_auth(&auth.username, Some(&auth.password));
    }
    let resp = req.send().await.map_err(|e| {
        RegistryError::new(
            ErrorKind::Unavailable,
            format!("Get \"{url}\": {}", error_chain(&e)),
        )
    })?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(RegistryError::new(
            ErrorKind::NotImplemented,
            format!("registry {host} has no search API (GET {url} answered 404 Not Found)"),
        ));
    }
    if !resp.status().is_success() {
        return Err(RegistryError::new(
            ErrorKind::Unavailable,
            format!(
                "Unexpected status code {} from {url}",
                resp.status().as_u16()
            ),
        ));
    }
    #[derive(Deserialize)]
    struct Results {
        #[serde(default)]
        results: Vec<bollard_stubs::models::ImageSearchResponseItem>,
    }
    let r: Results = resp.json().await.map_err(|e| {
        RegistryError::new(
            ErrorKind::Unavailable,
            format!("decode search results from {url}: {e}"),
        )
    })?;
    Ok(r.results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_cli_header() {
        let json = r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}"#;
        let h = base64::engine::general_purpose::URL_SAFE.encode(json);
        let a = AuthConfig::from_header(&h).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        let auth = base64::engine::general_purpose::STANDARD.encode("x:y");
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"auth":"{auth}"}}"#));
        let a = AuthConfig::from_header(&h).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("x", "y"));
        assert!(AuthConfig::from_header("").unwrap().username.is_empty());
        assert!(AuthConfig::from_header("!!!").is_err());
    }

    #[test]
    fn endpoints_put_mirrors_first_for_docker_hub() {
        let o = RegistryOptions::new(vec!["http://127.0.0.1:5001".into()], vec![]).unwrap();
        let ep = |host: &str, plain_http, mirror, insecure_tls| Endpoint {
            host: host.to_string(),
            plain_http,
            mirror,
            insecure_tls,
        };
        let e = endpoints(&o, "docker.io");
        assert_eq!(e[0], ep("127.0.0.1:5001", true, true, false));
        assert_eq!(e[1].host, "registry-1.docker.io");
        // Insecure registries: HTTPS without certificate checks first, then HTTP.
        let e = endpoints(&o, "localhost:5000");
        assert_eq!(
            e,
            vec![
                ep("localhost:5000", false, false, true),
                ep("localhost:5000", true, false, false)
            ]
        );
        let e = endpoints(&o, "registry.example:443");
        assert_eq!(e, vec![ep("registry.example:443", false, false, false)]);
    }

    #[test]
    fn parses_bearer_challenges() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example""#,
        );
        assert_eq!(
            p[0],
            (
                "realm".to_string(),
                "https://auth.example/token".to_string()
            )
        );
        assert_eq!(p[1].1, "registry.example");
    }
}
