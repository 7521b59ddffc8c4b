//! An https repository on a real nginx whose certificate comes from a private CA made by the
//! test: refused without `--ca-file` (the system trust store does not know it) and with a CA
//! file of another CA, installed with `--ca-file CA.pem`; a CA file without certificates is an
//! error naming it.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};

use realms_tests::http::HttpServer;
use realms_tests::tls::{ca, server_cert};

use super::{Publisher, free_port, package};

fn apply(root: &Path, extra: &[&str]) -> Output {
    Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root)
        .args(["provision", "apply"])
        .args(extra)
        .output()
        .unwrap()
}

fn portables(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("var/lib/portables"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn https_repository_with_a_private_ca_needs_ca_file() {
    realms_tests::require::tool("openssl", "openssl");
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let tls = work.join("tls");
    fs::create_dir_all(&tls).unwrap();
    let p = Publisher::new(work);
    let serve = p.serve.clone();
    let pkg = package(work, "tls", "1");
    p.publish("main", &[&pkg], &[]);
    ca(&tls, "good");
    ca(&tls, "other");
    server_cert(&tls, "good");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _server = HttpServer::serve_tls(
        &serve,
        addr,
        &tls.join("server.pem"),
        &tls.join("server.key"),
    );

    let root = work.join("root");
    p.trust_in(&root);
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: https://{addr}/main\n  packages:\n    - name: tls\n"
        ),
    )
    .unwrap();
    let good = tls.join("good-ca.pem").display().to_string();
    let other = tls.join("other-ca.pem").display().to_string();
    let empty = tls.join("empty.pem");
    fs::write(&empty, "not a certificate\n").unwrap();
    let empty = empty.display().to_string();

    // The system trust store does not know the CA, nor does another CA.
    for extra in [&[][..], &["--ca-file", &other]] {
        let out = apply(&root, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("certificate")
                && err.contains("(after 1 attempt)")
                && err.contains(&format!("https://{addr}/")),
            "{extra:?}: {err}"
        );
        assert!(
            portables(&root).is_empty(),
            "{extra:?}: {:?}",
            portables(&root)
        );
    }
    let out = apply(&root, &["--ca-file", &empty]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&empty) && err.contains("no PEM certificate"),
        "{err}"
    );
    // With its CA, the package installs over https; on a terminal with a progress bar.
    realms_tests::require::tool("script", "bsdutils");
    let cmd = format!(
        "{} --root {} provision apply --ca-file {good}",
        realms_tests::realms_bin().display(),
        root.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && tty.contains("installed tls 1"),
        "{tty}"
    );
    assert!(
        tty.contains("[+] tls_1.tar.zst [")
            && tty.contains("=>")
            && tty.contains("tls_1.tar.zst: 100%"),
        "no progress bar on a terminal:\n{tty}"
    );
    assert_eq!(portables(&root), ["tls_1"]);
    // Off a terminal (the journal): no bar, a line when the download starts, at each quarter
    // and at its end. (State and cache removed: the package is fetched again.)
    fs::remove_dir_all(root.join("var/lib/realms/provision")).unwrap();
    fs::remove_dir_all(root.join("var/cache/realms/provision")).unwrap();
    let out = apply(&root, &["--ca-file", &good]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("tls_1.tar.zst: 0% (0 B of")
            && err.contains("tls_1.tar.zst: 100%")
            && !err.contains("=>"),
        "{err}"
    );
    let out = apply(&root, &["--ca-file", &good]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("nothing changed"),
        "{err}"
    );
}
