//! Transports: `file://` and `http(s)://` (ureq with rustls; the proxy variables honoured),
//! retries with exponential backoff on connection errors and 5xx, and resume from an offset
//! with a `Range` request. HTTPS trusts the system trust store (Debian's ca-certificates
//! bundle, or `SSL_CERT_FILE`) plus the certificates of `--ca-file`; without a system bundle,
//! the Mozilla roots built into ureq.

use realms_sys::IoContext;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::{CaProblem, Error, FetchProblem, Result, Transfer};

/// The system trust store: Debian's ca-certificates bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Fetches files of repositories.
#[derive(Debug, Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    attempts: u32,
    backoff: Duration,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher::new(4, Duration::from_millis(500))
    }
}

/// The url of `file` under `ARCH/` of repository `repo`.
pub fn join(repo: &str, arch: &str, file: &str) -> String {
    format!("{}/{arch}/{file}", repo.trim_end_matches('/'))
}

/// The certificates of a PEM file.
fn pem_certificates(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = fs::read(path).ctx("reading", path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::CaFile {
                    path: path.to_path_buf(),
                    reason: CaProblem::Pem(e.to_string()),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::CaFile {
            path: path.to_path_buf(),
            reason: CaProblem::Empty,
        });
    }
    Ok(certs)
}

/// The system trust store's file: `SSL_CERT_FILE`, or [`SYSTEM_CA_BUNDLE`].
fn system_bundle() -> PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into())
}

impl Fetcher {
    /// A fetcher trying each request `attempts` times, waiting `backoff`, then twice that, ...
    /// It trusts the system trust store (or, when there is none, ureq's built-in roots).
    pub fn new(attempts: u32, backoff: Duration) -> Fetcher {
        let roots = match pem_certificates(&system_bundle()) {
            Ok(certs) => RootCerts::Specific(Arc::new(certs)),
            Err(_) => RootCerts::WebPki,
        };
        Fetcher::with_roots(attempts, backoff, roots)
    }

    /// The same fetcher also trusting the certificates of the PEM file `ca_file` (a private
    /// repository's own CA or a self-signed server certificate).
    pub fn trusting(self, ca_file: &Path) -> Result<Fetcher> {
        let mut certs = pem_certificates(ca_file)?;
        if let Ok(system) = pem_certificates(&system_bundle()) {
            certs.extend(system);
        }
        Ok(Fetcher::with_roots(
            self.attempts,
            self.backoff,
            RootCerts::Specific(Arc::new(certs)),
        ))
    }

    fn with_roots(attempts: u32, backoff: Duration, roots: RootCerts) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .user_agent(concat!("realms-provision/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
            attempts: attempts.max(1),
            backoff,
        }
    }

    /// A whole small file of at most `limit` bytes; `None` when it does not exist.
    pub fn get(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(mut r) = self.open(url, 0)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        r.by_ref()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| fetch_error(url, FetchProblem::Read(e)))?;
        if out.len() as u64 > limit {
            return Err(fetch_error(url, FetchProblem::TooLarge { limit }));
        }
        Ok(Some(out))
    }

    /// The bytes of `url` from `offset` on; `None` when it does not exist.
    pub fn open(&self, url: &str, offset: u64) -> Result<Option<Box<dyn Read + Send>>> {
        self.open_authorized(url, offset, None)
    }

    /// Runs `call` (one request) with this fetcher's retries on connection errors and 5xx;
    /// any other answer is the caller's.
    pub(crate) fn call(
        &self,
        url: &str,
        call: &dyn Fn(
            &ureq::Agent,
        )
            -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            let result = call(&self.agent).map_err(classify).and_then(|resp| {
                let status = resp.status().as_u16();
                if (500..=599).contains(&status) {
                    Err(Retry::Again(Transfer::ServerError(status)))
                } else {
                    Ok(resp)
                }
            });
            match result {
                Err(Retry::Again(cause)) if attempt < self.attempts => {
                    tracing::info!("{url}: {cause}; retrying in {:.1}s", delay.as_secs_f32());
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(Retry::Again(cause) | Retry::Fatal(cause)) => {
                    return Err(fetch_error(
                        url,
                        FetchProblem::Failed {
                            cause,
                            attempts: attempt,
                        },
                    ));
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    /// [`Fetcher::open`] sending `authorization` as the `Authorization` header (a registry's
    /// bearer token).
    pub(crate) fn open_authorized(
        &self,
        url: &str,
        offset: u64,
        authorization: Option<&str>,
    ) -> Result<Option<Box<dyn Read + Send>>> {
        if let Some(path) = url.strip_prefix("file://") {
            let mut f = match fs::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(fetch_error(url, FetchProblem::Read(e))),
            };
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| fetch_error(url, FetchProblem::Read(e)))?;
            return Ok(Some(Box::new(f)));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Scheme {
                url: url.to_string(),
            });
        }
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            match self.http(url, offset, authorization) {
                Err(Retry::Again(cause)) if attempt < self.attempts => {
                    tracing::info!(
                        "{url}: {cause}; retrying in {:.1}s (attempt {attempt} of {})",
                        delay.as_secs_f32(),
                        self.attempts
                    );
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(Retry::Again(cause) | Retry::Fatal(cause)) => {
                    return Err(fetch_error(
                        url,
                        FetchProblem::Failed {
                            cause,
                            attempts: attempt,
                        },
                    ));
                }
                Ok(r) => return Ok(r),
            }
        }
    }

    fn http(
        &self,
        url: &str,
        offset: u64,
        authorization: Option<&str>,
    ) -> std::result::Result<Option<Box<dyn Read + Send>>, Retry> {
        let mut req = self.agent.get(url);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(classify)?;
        let status = resp.status().as_u16();
        match status {
            404 | 410 => Ok(None),
            500..=599 => Err(Retry::Again(Transfer::ServerError(status))),
            200 | 206 => {
                let mut body: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
                if offset > 0 && status == 200 {
                    // The server ignored the range: skip what is there already.
                    io::copy(&mut body.by_ref().take(offset), &mut io::sink())
                        .map_err(|e| Retry::Again(Transfer::Read(e)))?;
                }
                Ok(Some(body))
            }
            other => Err(Retry::Fatal(Transfer::Status(other))),
        }
    }
}

/// Whether a failed request is worth another try.
fn classify(e: ureq::Error) -> Retry {
    match e {
        // rustls's verdicts (an unknown issuer, a wrong name) come as invalid data: trying
        // again cannot change them.
        ureq::Error::Io(ref io) if io.kind() == io::ErrorKind::InvalidData => {
            Retry::Fatal(Transfer::Client(e.to_string()))
        }
        ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Timeout(_) => Retry::Again(Transfer::Client(e.to_string())),
        other => Retry::Fatal(Transfer::Client(other.to_string())),
    }
}

impl Fetcher {
    /// POSTs `body` (JSON) to `url` with the extra `headers`; returns the status and the body
    /// (at most 64 KiB). Connection errors are retried as for downloads.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, String)> {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            let mut req = self
                .agent
                .post(url)
                .header("Content-Type", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            match req.send(body) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let mut text = String::new();
                    resp.into_body()
                        .into_reader()
                        .take(64 << 10)
                        .read_to_string(&mut text)
                        .map_err(|e| fetch_error(url, FetchProblem::Read(e)))?;
                    return Ok((status, text));
                }
                Err(e) if attempt < self.attempts => {
                    tracing::info!("{url}: {e}; retrying in {:.1}s", delay.as_secs_f32());
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    let cause = Transfer::Client(e.to_string());
                    return Err(fetch_error(url, FetchProblem::Request(cause)));
                }
            }
        }
    }
}

enum Retry {
    Again(Transfer),
    Fatal(Transfer),
}

fn fetch_error(url: &str, reason: FetchProblem) -> Error {
    Error::Fetch {
        url: url.to_string(),
        reason,
    }
}
