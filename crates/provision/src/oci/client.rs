//! The OCI distribution API over the fetcher's ureq agent: the `/v2/` challenge answered with
//! basic auth or a bearer token (the `WWW-Authenticate: Bearer realm=...` flow), credentials
//! from `/etc/realms/auth.json` or the docker config (`"auths"`), manifests and small blobs
//! checked against their digests, blob uploads and manifest pushes.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use oci_spec::image::Descriptor;
use serde::Deserialize;
use ureq::http::Response;

use super::{MAX_MANIFEST_BYTES, Reference, sha256_hex};
use crate::fetch::Fetcher;
use crate::{
    AuthProblem, CredentialsProblem, Error, FetchProblem, IndexProblem, IntegrityProblem,
    PushProblem, Result,
};

/// The credentials file of Realms, under the root (docker's config format, `"auths"`).
pub const AUTH_FILE: &str = "etc/realms/auth.json";
/// The media type of the manifests Realms reads and writes.
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// What a client may do in the repository (the scope of its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read.
    Pull,
    /// Read and write.
    Push,
}

#[derive(Clone)]
struct Credentials {
    user: String,
    password: String,
    from: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "credentials of {} from {}",
            self.user,
            self.from.display()
        )
    }
}

/// A session with one repository of one registry.
pub struct Client<'a> {
    fetcher: &'a Fetcher,
    r: Reference,
    authorization: Option<String>,
}

impl std::fmt::Debug for Client<'_> {
    /// Without the authorization header: it holds a password or a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("registry", &self.r.registry)
            .field("repository", &self.r.repository)
            .field("authorized", &self.authorization.is_some())
            .finish()
    }
}

/// The files credentials are read from, first match wins: `ROOT/etc/realms/auth.json`, then
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` of the user running realms.
fn credential_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join(AUTH_FILE)];
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        files.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        files.push(PathBuf::from(h).join(".docker/config.json"));
    }
    files
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The registry a key of `"auths"` names: `HOST[:PORT]` without a scheme or path.
fn auths_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn credentials(root: &Path, r: &Reference) -> Result<Option<Credentials>> {
    for file in credential_files(root) {
        let text = match fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", &file, e)),
        };
        let bad = |problem: CredentialsProblem| Error::RegistryAuth {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            reason: AuthProblem::CredentialsFile {
                file: file.clone(),
                problem,
            },
        };
        let config: DockerConfig =
            serde_json::from_slice(&text).map_err(|e| bad(CredentialsProblem::Json(e)))?;
        let Some(entry) = config
            .auths
            .iter()
            .find(|(k, _)| auths_host(k) == r.registry)
            .map(|(_, v)| v)
        else {
            continue;
        };
        let (user, password) = match (&entry.auth, &entry.username, &entry.password) {
            (Some(a), _, _) => {
                let raw = B64
                    .decode(a.trim())
                    .map_err(|e| bad(CredentialsProblem::NotBase64(e)))?;
                let text = String::from_utf8(raw).map_err(|_| bad(CredentialsProblem::NotUtf8))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| bad(CredentialsProblem::NoColon))?;
                (u.to_string(), p.to_string())
            }
            (None, Some(u), Some(p)) => (u.clone(), p.clone()),
            _ => return Err(bad(CredentialsProblem::Nothing)),
        };
        return Ok(Some(Credentials {
            user,
            password,
            from: file,
        }));
    }
    Ok(None)
}

/// A `WWW-Authenticate` challenge: its scheme and parameters.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let (value, after) = match after.strip_prefix('"') {
                Some(q) => {
                    let end = q.find('"')?;
                    (&q[..end], &q[end + 1..])
                }
                None => {
                    let end = after.find(',').unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            params.push((key.trim().to_ascii_lowercase(), value.to_string()));
            rest = after;
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The registry's own words from an error body (`{"errors": [{"code", "message"}]}`).
fn registry_says(resp: Response<ureq::Body>) -> String {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(64 << 10)
        .read_to_end(&mut body);
    match serde_json::from_slice::<oci_spec::distribution::ErrorResponse>(&body) {
        Ok(e) if !e.detail().is_empty() => {
            let words: Vec<String> = e
                .detail()
                .iter()
                .map(|i| match i.message() {
                    Some(m) => format!("{:?}: {m}", i.code()),
                    None => format!("{:?}", i.code()),
                })
                .collect();
            format!("{status} ({})", words.join("; "))
        }
        _ => status.to_string(),
    }
}

/// At most `limit` bytes of a response body.
fn read_limited(url: &str, resp: Response<ureq::Body>, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Fetch {
            url: url.to_string(),
            reason: FetchProblem::Read(e),
        })?;
    if out.len() as u64 > limit {
        return Err(Error::Fetch {
            url: url.to_string(),
            reason: FetchProblem::TooLarge { limit },
        });
    }
    Ok(out)
}

impl<'a> Client<'a> {
    /// Asks the registry's `/v2/` what it wants and authenticates for `access` to the
    /// repository: nothing, basic auth, or a bearer token from the challenge's realm, with the
    /// credentials of [`credential_files`].
    pub fn connect(
        root: &Path,
        fetcher: &'a Fetcher,
        r: &Reference,
        access: Access,
    ) -> Result<Client<'a>> {
        let mut client = Client {
            fetcher,
            r: r.clone(),
            authorization: None,
        };
        let url = format!("https://{}/v2/", r.registry);
        let resp = fetcher.call(&url, &|a| a.get(&url).call())?;
        match resp.status().as_u16() {
            200 => return Ok(client),
            401 => {}
            _ => {
                return Err(Error::Fetch {
                    url: url.clone(),
                    reason: FetchProblem::NotARegistry {
                        answer: registry_says(resp),
                    },
                });
            }
        }
        let header = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let denied = |reason: AuthProblem| Error::RegistryAuth {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            reason,
        };
        let challenge = Challenge::parse(&header).ok_or_else(|| {
            denied(AuthProblem::Challenge {
                header: header.clone(),
            })
        })?;
        let creds = credentials(root, r)?;
        let basic = creds
            .as_ref()
            .map(|c| format!("Basic {}", B64.encode(format!("{}:{}", c.user, c.password))));
        let whose = |c: &Option<Credentials>| match c {
            Some(c) => format!("user {} from {}", c.user, c.from.display()),
            None => "no credentials".into(),
        };
        match challenge.scheme.as_str() {
            "basic" => {
                let Some(basic) = basic else {
                    return Err(denied(AuthProblem::NoCredentials {
                        registry: r.registry.clone(),
                        files: files_text(root),
                    }));
                };
                let resp = fetcher.call(&url, &|a| {
                    a.get(&url).header("Authorization", basic.as_str()).call()
                })?;
                if resp.status().as_u16() != 200 {
                    return Err(denied(AuthProblem::Refused {
                        whose: whose(&creds),
                        answer: registry_says(resp),
                    }));
                }
                client.authorization = Some(basic);
            }
            "bearer" => {
                let realm = challenge.param("realm").ok_or_else(|| {
                    denied(AuthProblem::NoRealm {
                        header: header.clone(),
                    })
                })?;
                let actions = match access {
                    Access::Pull => "pull",
                    Access::Push => "pull,push",
                };
                let mut token_url = format!(
                    "{realm}{}scope={}",
                    if realm.contains('?') { '&' } else { '?' },
                    encode(&format!("repository:{}:{actions}", r.repository))
                );
                if let Some(service) = challenge.param("service") {
                    token_url.push_str(&format!("&service={}", encode(service)));
                }
                let resp = fetcher.call(&token_url, &|a| {
                    let mut req = a.get(&token_url);
                    if let Some(b) = &basic {
                        req = req.header("Authorization", b.as_str());
                    }
                    req.call()
                })?;
                if resp.status().as_u16() != 200 {
                    return Err(denied(AuthProblem::TokenRefused {
                        realm: realm.to_string(),
                        whose: whose(&creds),
                        answer: registry_says(resp),
                    }));
                }
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_limited(&token_url, resp, 1 << 20)?;
                let token: Token = serde_json::from_slice(&body).map_err(|e| {
                    denied(AuthProblem::NoToken {
                        realm: realm.to_string(),
                        json: Some(e),
                    })
                })?;
                let token = token.token.or(token.access_token).ok_or_else(|| {
                    denied(AuthProblem::NoToken {
                        realm: realm.to_string(),
                        json: None,
                    })
                })?;
                client.authorization = Some(format!("Bearer {token}"));
            }
            other => {
                return Err(denied(AuthProblem::Scheme(other.to_string())));
            }
        }
        Ok(client)
    }

    /// The `Authorization` header value of this session, if any.
    pub fn authorization(&self) -> Option<String> {
        self.authorization.clone()
    }

    fn denied(&self, what: &str, resp: Response<ureq::Body>) -> Error {
        Error::RegistryAuth {
            registry: self.r.registry.clone(),
            repository: self.r.repository.clone(),
            reason: AuthProblem::Denied {
                what: what.to_string(),
                answer: registry_says(resp),
            },
        }
    }

    fn get(&self, url: &str, accept: Option<&str>) -> Result<Response<ureq::Body>> {
        self.fetcher.call(url, &|a| {
            let mut req = a.get(url);
            if let Some(h) = &self.authorization {
                req = req.header("Authorization", h.as_str());
            }
            if let Some(t) = accept {
                req = req.header("Accept", t);
            }
            req.call()
        })
    }

    /// The manifest `reference` (a tag or digest) of the repository; `None` when there is none.
    pub fn manifest(&self, reference: &str) -> Result<Option<Vec<u8>>> {
        let url = format!("{}/manifests/{reference}", self.r.base());
        let resp = self.get(&url, Some(MANIFEST_TYPE))?;
        match resp.status().as_u16() {
            200 => read_limited(&url, resp, MAX_MANIFEST_BYTES).map(Some),
            404 => Ok(None),
            401 | 403 => Err(self.denied(&format!("reading {url}"), resp)),
            _ => Err(Error::Fetch {
                url,
                reason: FetchProblem::Registry {
                    answer: registry_says(resp),
                },
            }),
        }
    }

    /// The blob `d` (at most `limit` bytes), checked against its digest and size.
    pub fn blob(&self, d: &Descriptor, limit: u64) -> Result<Vec<u8>> {
        let digest = d.digest().to_string();
        let url = format!("{}/blobs/{digest}", self.r.base());
        if d.size() > limit {
            return Err(Error::BadIndex {
                url,
                reason: IndexProblem::LayerTooLarge {
                    size: d.size(),
                    limit,
                },
            });
        }
        let resp = self.get(&url, None)?;
        let bytes = match resp.status().as_u16() {
            200 => read_limited(&url, resp, limit)?,
            401 | 403 => return Err(self.denied(&format!("reading {url}"), resp)),
            _ => {
                return Err(Error::Fetch {
                    url,
                    reason: FetchProblem::Registry {
                        answer: registry_says(resp),
                    },
                });
            }
        };
        let got = format!("sha256:{}", sha256_hex(&bytes));
        if got != digest || bytes.len() as u64 != d.size() {
            return Err(Error::Integrity {
                file: digest,
                url,
                reason: IntegrityProblem::Digest {
                    digest: got,
                    size: bytes.len() as u64,
                },
            });
        }
        Ok(bytes)
    }

    /// Whether the repository holds blob `digest`.
    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        let url = format!("{}/blobs/{digest}", self.r.base());
        let resp = self.fetcher.call(&url, &|a| {
            let mut req = a.head(&url);
            if let Some(h) = &self.authorization {
                req = req.header("Authorization", h.as_str());
            }
            req.call()
        })?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            401 | 403 => Err(self.denied(&format!("reading {url}"), resp)),
            _ => Err(Error::Fetch {
                url,
                reason: FetchProblem::Registry {
                    answer: registry_says(resp),
                },
            }),
        }
    }

    fn push_error(&self, url: &str, resp: Response<ureq::Body>) -> Error {
        match resp.status().as_u16() {
            401 | 403 => self.denied(&format!("writing {url}"), resp),
            _ => Error::Push {
                url: url.to_string(),
                reason: PushProblem::Registry {
                    answer: registry_says(resp),
                },
            },
        }
    }

    /// Uploads blob `digest` (monolithic: POST for a session, PUT of the whole body), from
    /// `bytes` or from the file `file`.
    pub fn upload(&self, digest: &str, body: Upload<'_>) -> Result<()> {
        let url = format!("{}/blobs/uploads/", self.r.base());
        let resp = self.fetcher.call(&url, &|a| {
            let mut req = a.post(&url);
            if let Some(h) = &self.authorization {
                req = req.header("Authorization", h.as_str());
            }
            req.send_empty()
        })?;
        if resp.status().as_u16() != 202 {
            return Err(self.push_error(&url, resp));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Push {
                url: url.clone(),
                reason: PushProblem::NoUploadLocation,
            })?;
        let mut put = if location.starts_with('/') {
            format!("https://{}{location}", self.r.registry)
        } else {
            location.to_string()
        };
        put.push(if put.contains('?') { '&' } else { '?' });
        put.push_str(&format!("digest={}", encode(digest)));
        let resp = self.fetcher.call(&put, &|a| {
            let mut req = a
                .put(&put)
                .header("Content-Type", "application/octet-stream");
            if let Some(h) = &self.authorization {
                req = req.header("Authorization", h.as_str());
            }
            match body {
                Upload::Bytes(b) => req.send(b),
                Upload::File(mut f) => {
                    f.seek(SeekFrom::Start(0)).map_err(ureq::Error::Io)?;
                    req.send(f)
                }
            }
        })?;
        if resp.status().as_u16() != 201 {
            return Err(self.push_error(&url, resp));
        }
        Ok(())
    }

    /// Pushes manifest `bytes` as `reference` (a tag): one request, so a reader of the tag sees
    /// the manifest before or the one after, never a mix.
    pub fn put_manifest(&self, reference: &str, bytes: &[u8]) -> Result<()> {
        let url = format!("{}/manifests/{reference}", self.r.base());
        let resp = self.fetcher.call(&url, &|a| {
            let mut req = a.put(&url).header("Content-Type", MANIFEST_TYPE);
            if let Some(h) = &self.authorization {
                req = req.header("Authorization", h.as_str());
            }
            req.send(bytes)
        })?;
        if resp.status().as_u16() != 201 {
            return Err(self.push_error(&url, resp));
        }
        Ok(())
    }
}

/// The body of a blob upload.
#[derive(Debug, Clone, Copy)]
pub enum Upload<'b> {
    /// Bytes in memory (configs, indexes, signatures).
    Bytes(&'b [u8]),
    /// A package file, streamed.
    File(&'b fs::File),
}

fn files_text(root: &Path) -> String {
    credential_files(root)
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("service"), Some("registry.example"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="basic-realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("basic-realm"));
        assert!(Challenge::parse(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn credentials_come_from_auth_json_in_docker_format() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let r = Reference::parse("oci://reg.example:5000/fleet").unwrap();
        fs::create_dir_all(root.join("etc/realms")).unwrap();
        fs::write(
            root.join(AUTH_FILE),
            format!(
                r#"{{"auths": {{"other:5000": {{"auth": "eDp5"}}, "https://reg.example:5000/v1/": {{"auth": "{}"}}}}}}"#,
                B64.encode("fleet:s3cr:et")
            ),
        )
        .unwrap();
        let c = credentials(root, &r).unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("fleet", "s3cr:et"));
        assert_eq!(c.from, root.join(AUTH_FILE));
        fs::write(
            root.join(AUTH_FILE),
            r#"{"auths": {"reg.example:5000": {"auth": "!"}}}"#,
        )
        .unwrap();
        let e = credentials(root, &r).unwrap_err();
        assert!(
            e.to_string().contains("reg.example:5000") && e.to_string().contains("auth.json"),
            "{e}"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
