//! A real nginx serving a directory on one address of this machine, started and stopped by the
//! test that needs it (a local stand-in for a remote repository: traffic never leaves the host).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::fixtures_dir;
use crate::scratch::unique;

/// An nginx process; killed on drop.
#[derive(Debug)]
pub struct HttpServer {
    child: Child,
    pub addr: SocketAddr,
}

impl HttpServer {
    /// Serves `root` at `http://ADDR/` with nginx in the foreground (`daemon off`).
    pub fn serve(root: &Path, addr: SocketAddr) -> HttpServer {
        HttpServer::start(root, addr, "", "")
    }

    /// Serves `root` at `http://ADDR/` with extra nginx directives in the server block
    /// (`limit_rate 1m;`, an `access_log`).
    pub fn serve_with(root: &Path, addr: SocketAddr, server: &str) -> HttpServer {
        HttpServer::start(root, addr, "", server)
    }

    /// Serves `root` at `https://ADDR/` with the PEM certificate (chain) `cert` and its key.
    pub fn serve_tls(root: &Path, addr: SocketAddr, cert: &Path, key: &Path) -> HttpServer {
        let server = format!(
            "ssl_certificate {}; ssl_certificate_key {};",
            cert.display(),
            key.display()
        );
        HttpServer::start(root, addr, " ssl", &server)
    }

    /// nginx with `listen ADDR{listen};` and the directives `server` in its server block.
    fn start(root: &Path, addr: SocketAddr, listen: &str, server: &str) -> HttpServer {
        crate::require::tool("nginx", "nginx");
        let dir = fixtures_dir().join(unique("nginx"));
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nuser root;\npid {pid};\nerror_log stderr warn;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {tmp};\n  \
                 server {{ listen {addr}{listen}; root {root}; autoindex on; log_not_found off; {server} }}\n}}\n",
                pid = dir.join("nginx.pid").display(),
                tmp = dir.display(),
                root = root.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer { child, addr }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
