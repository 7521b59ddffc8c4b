//! Provisioning from an OCI registry: `realms provision apply` of the same ~200 MB package pulled
//! from Debian's docker-registry (CNCF distribution: token-less htpasswd auth, the `/v2/` blob
//! API) and from nginx, both over https with the same private CA on 127.0.0.1, in the same run.
//! Each apply starts from a fresh root directory (no cache, nothing installed); the package is
//! attached in the root (offline), so the comparison is the transport: index, fetch, verify,
//! unpack.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use realms_tests::fixtures::write_portable_tree;
use realms_tests::http::HttpServer;
use realms_tests::registry::Registry;
use realms_tests::tls::{ca, server_cert};

use crate::provision::{add_payload, realms};
use crate::table::{Row, paired, print};

fn free_addr() -> anyhow::Result<SocketAddr> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// The busybox image plus ~200 MB of the host's libraries and programs.
fn source(work: &Path) -> anyhow::Result<PathBuf> {
    let src = work.join("big");
    write_portable_tree(&src, &fs::read("/bin/busybox")?, "big");
    let unit = src.join("usr/lib/systemd/system/big.service");
    let text = fs::read_to_string(&unit)?;
    fs::write(
        &unit,
        format!("{text}\n[Install]\nWantedBy=multi-user.target\n"),
    )?;
    add_payload(&src)?;
    Ok(src)
}

pub fn run_suite(runs: usize) -> anyhow::Result<()> {
    let work_dir = tempfile::tempdir()?;
    let work = work_dir.path();
    let (keys, serve, tls) = (work.join("keys"), work.join("serve"), work.join("tls"));
    for d in [&keys, &serve, &tls] {
        fs::create_dir_all(d)?;
    }
    realms(&keys, &["appimg", "key", "generate", "repo"])?;
    ca(&tls, "bench");
    server_cert(&tls, "bench");
    let ca_file = tls.join("bench-ca.pem").display().to_string();
    let (cert, key) = (tls.join("server.pem"), tls.join("server.key"));

    let src = source(work)?;
    let out = work.join("out");
    fs::create_dir_all(&out)?;
    let (o, s) = (out.display().to_string(), src.display().to_string());
    realms(
        work,
        &[
            "provision",
            "pack",
            &s,
            "--pkg-version",
            "1",
            "--format",
            "tar.gz",
            "-o",
            &o,
        ],
    )?;
    let pkg = out.join("big_1.tar.gz");
    let size = fs::metadata(&pkg)?.len();
    let p = pkg.display().to_string();

    let nginx_addr = free_addr()?;
    let _nginx = HttpServer::serve_tls(&serve, nginx_addr, &cert, &key);
    let dir = serve.join("repo").display().to_string();
    realms(
        &keys,
        &["provision", "publish", &p, "--to", &dir, "--key", "repo"],
    )?;
    let reg_addr = free_addr()?;
    let _registry = Registry::serve(
        &work.join("registry"),
        reg_addr,
        &cert,
        &key,
        "bench",
        "bench-pw",
    );
    let auth = format!(
        "{{\"auths\": {{\"{reg_addr}\": {{\"username\": \"bench\", \"password\": \"bench-pw\"}}}}}}\n"
    );
    fs::create_dir_all(keys.join("etc/realms"))?;
    fs::write(keys.join("etc/realms/auth.json"), &auth)?;
    let oci = format!("oci://{reg_addr}/bench/portables");
    realms(
        &keys,
        &[
            "provision",
            "publish",
            &p,
            "--to",
            &oci,
            "--key",
            "repo",
            "--ca-file",
            &ca_file,
        ],
    )?;

    // A fresh root for each apply (untimed), then the timed apply.
    let apply = |name: &str, repo: &str| -> anyhow::Result<Duration> {
        let root = work.join(name);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc/realms/keys.d"))?;
        fs::copy(
            keys.join("etc/realms/keys.d/repo.pub"),
            root.join("etc/realms/keys.d/repo.pub"),
        )?;
        fs::write(root.join("etc/realms/auth.json"), &auth)?;
        fs::write(
            root.join("etc/realms/provision.yaml"),
            format!(
                "composable:\n  packages:\n    - name: big\n      repository: {repo}\n      version: '1'\n"
            ),
        )?;
        let start = Instant::now();
        realms(&root, &["provision", "apply", "--ca-file", &ca_file])
            .with_context(|| format!("apply from {repo}"))?;
        let took = start.elapsed();
        anyhow::ensure!(
            root.join("var/lib/portables/big_1").is_dir(),
            "{repo}: not installed"
        );
        Ok(took)
    };
    let https = format!("https://{nginx_addr}/repo");
    let between = || -> anyhow::Result<()> {
        for name in ["root-oci", "root-https"] {
            let _ = fs::remove_dir_all(work.join(name));
        }
        Ok(())
    };
    let (a, b) = paired(
        runs,
        || apply("root-oci", &oci),
        || apply("root-https", &https),
        between,
    )?;
    let mb = size as f64 / (1 << 20) as f64;
    print(
        "provisioning from an OCI registry: the same package from docker-registry and from nginx",
        &[Row::new(
            format!("apply a {mb:.0} MB package (oci://, docker-registry)"),
            a,
            "the same from https:// (nginx)",
            b,
            Some(1.2),
        )],
    );
    Ok(())
}
