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
        crate::require::tool("docker-registry", "docker-registry");
        crate::require::tool("htpasswd", "apache2-utils");
        fs::create_dir_all(dir).unwrap();
        let htpasswd = dir.join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "htpasswd failed");
        fs::write(&htpasswd, out.stdout).unwrap();
        let storage = dir.join("storage");
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  tls:\n    certificate: {cert}\n    key: {key}\n\
                 auth:\n  htpasswd:\n    realm: realms-test\n    path: {htpasswd}\n",
                storage = storage.display(),
                cert = cert.display(),
                key = key.display(),
                htpasswd = htpasswd.display(),
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
