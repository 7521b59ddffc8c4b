//! Certificates for TLS servers the tests start: a private CA and a server certificate for
//! 127.0.0.1 it signs (made with `openssl`), for nginx and the OCI registry.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::run::run;

/// `openssl` making a CA (`NAME-ca.pem`, `NAME-ca.key`) in `dir`.
pub fn ca(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN=realms test {name} CA")])
        .args(["-keyout", &format!("{name}-ca.key")])
        .args(["-out", &format!("{name}-ca.pem")]));
}

/// A server certificate for 127.0.0.1 (`server.pem`, `server.key`) signed by CA `name`.
pub fn server_cert(dir: &Path, name: &str) {
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-subj", "/CN=127.0.0.1"])
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["x509", "-req", "-in", "server.csr", "-days", "2"])
        .args(["-CA", &format!("{name}-ca.pem")])
        .args(["-CAkey", &format!("{name}-ca.key")])
        .args([
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]));
}
