//! A real OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) started by the test
//! on one address of this machine with TLS and htpasswd auth, its storage and log in a directory
//! of the test; and a TCP proxy in front of it that can cut a connection after so many bytes
//! (a download cut mid-way, whatever the protocol above TCP).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `docker-registry serve` process; killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its storage root (`docker/registry/v2/...` under it).
    pub storage: PathBuf,
    /// Its log: one JSON object a line (`http.request.uri`, `http.response.status`,
    /// `http.response.written`, ...).
    pub log: PathBuf,
}

impl Registry {
    /// Serves on `https://ADDR` with certificate `cert` and key `key`, user `user` with
    /// password `password` (an htpasswd file made with `htpasswd -B`), storage and log in `dir`.
    pub fn serve(
        dir: &Path,
        addr: SocketAddr,
        cert: &Path,
        key: &Path,
        user: &str,
        password: &str,
    ) -> Registry {
        crate::require::tool("htpasswd", "apache2-utils");
        fs::create_dir_all(dir).unwrap();
        let htpasswd = dir.join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "htpasswd failed");
        fs::write(&htpasswd, out.stdout).unwrap();
        let auth = format!(
            "  htpasswd:\n    realm: realms-test\n    path: {}\n",
            htpasswd.display()
        );
        Registry::serve_auth(dir, addr, cert, key, &auth)
    }

    /// Serves with token auth: clients get a bearer token from `realm` (for `service`), signed
    /// by `issuer` with the key of a certificate of the PEM bundle `roots`.
    pub fn serve_token(
        dir: &Path,
        addr: SocketAddr,
        (cert, key): (&Path, &Path),
        realm: &str,
        (service, issuer): (&str, &str),
        roots: &Path,
    ) -> Registry {
        let auth = format!(
            "  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            roots.display()
        );
        Registry::serve_auth(dir, addr, cert, key, &auth)
    }

    /// `docker-registry serve` with the `auth:` section `auth` (indented by two spaces).
    fn serve_auth(dir: &Path, addr: SocketAddr, cert: &Path, key: &Path, auth: &str) -> Registry {
        crate::require::tool("docker-registry", "docker-registry");
        fs::create_dir_all(dir).unwrap();
        let storage = dir.join("storage");
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
                 auth:\n{auth}",
                storage = storage.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("stdout.log")).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {addr}: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            storage,
            log,
        }
    }

    /// The file holding blob `sha256` (hex) in the storage.
    pub fn blob_file(&self, sha256: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&sha256[..2])
            .join(sha256)
            .join("data")
    }

    /// The log lines (JSON objects) of completed requests whose uri contains `uri`.
    pub fn requests(&self, uri: &str) -> Vec<serde_json::Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["http.request.uri"]
                    .as_str()
                    .is_some_and(|u| u.contains(uri))
                    && v.get("http.response.status").is_some()
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on 127.0.0.1 to `upstream`; each connection is cut after [`Proxy::cut_after`]
/// bytes from the upstream (all of them while it is `u64::MAX`). Stops on drop.
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    cut: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts the proxy.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicU64::new(u64::MAX));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let limit = c.load(Ordering::SeqCst);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Client to server: as it comes.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (c2, s2);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
                // Server to client: cut after `limit` bytes.
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server, client);
                    let mut sent = 0u64;
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let allowed = (limit - sent).min(n as u64) as usize;
                        if to.write_all(&buf[..allowed]).is_err() {
                            break;
                        }
                        sent += allowed as u64;
                        if sent >= limit {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                    let _ = from.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { addr, cut, stop }
    }

    /// Cuts connections opened from now on after `bytes` bytes from the upstream (`u64::MAX`:
    /// never).
    pub fn cut_after(&self, bytes: u64) {
        self.cut.store(bytes, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A token service for a registry with token auth (`auth: token:`), on `http://ADDR/token`: it
/// checks the basic credentials of one user and answers a JWT (RS256, the signing certificate
/// in `x5c`, signed with `openssl dgst`) granting the scope asked for. Stops on drop.
#[derive(Debug)]
pub struct TokenServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The scopes asked for with good credentials, in order.
    pub granted: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Ok(v) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TokenServer {
    /// Starts it: tokens from `issuer` for `service`, signed with RSA key `key` of certificate
    /// `cert` (PEM), for user `user` with password `password`.
    pub fn start(
        (cert, key): (&Path, &Path),
        (issuer, service): (&str, &str),
        user: &str,
        password: &str,
    ) -> TokenServer {
        use base64::Engine as _;
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(cert)
            .output()
            .unwrap();
        assert!(der.status.success(), "openssl x509 failed");
        let x5c = base64::engine::general_purpose::STANDARD.encode(der.stdout);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let granted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, g) = (stop.clone(), granted.clone());
        let (key, issuer, service, user) = (
            key.to_path_buf(),
            issuer.to_string(),
            service.to_string(),
            user.to_string(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let authorized = req.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization") && v.trim() == basic
                    })
                });
                let scope = path
                    .split_once('?')
                    .map(|(_, q)| q)
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("scope="))
                    .map(percent_decode)
                    .unwrap_or_default();
                let (status, body) = if !authorized {
                    (
                        "401 Unauthorized",
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#
                            .to_string(),
                    )
                } else {
                    g.lock().unwrap().push(scope.clone());
                    let mut parts = scope.splitn(3, ':');
                    let (kind, name, actions) = (
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                    );
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                    let claims = serde_json::json!({
                        "iss": issuer, "sub": user, "aud": service,
                        "exp": now + 300, "nbf": now - 10, "iat": now - 10,
                        "jti": format!("{now}-{}", g.lock().unwrap().len()),
                        "access": [{"type": kind, "name": name,
                                    "actions": actions.split(',').collect::<Vec<_>>()}],
                    });
                    let signing = format!(
                        "{}.{}",
                        b64url(header.to_string().as_bytes()),
                        b64url(claims.to_string().as_bytes())
                    );
                    let sig = sign(&key, signing.as_bytes());
                    let token = format!("{signing}.{}", b64url(&sig));
                    ("200 OK", serde_json::json!({ "token": token }).to_string())
                };
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        TokenServer {
            addr,
            granted,
            stop,
        }
    }
}

/// An RS256 signature (PKCS#1 v1.5 over SHA-256) of `data` with PEM key `key`.
fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    out.stdout
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}
