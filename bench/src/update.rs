//! Updates: `realms provision update` of a ~200 MB package from 1 to 2 (check the index, fetch,
//! verify, unpack, reattach with the service restarted; the health check's settle time is 0)
//! beside the same update done with systemd's tools (`systemd-pull tar --verify=checksum` of the
//! new version, then `portablectl reattach --now`), same package, same nginx, same booted
//! container, same run. systemd-pull cannot name an image `foo-test_2` (no `_` in machine
//! names), so its pull is renamed to that (a rename, free) for portablectl's reattach, which
//! matches versions by the `_` prefix.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use realms_tests::container::Container;
use realms_tests::http::HttpServer;
use realms_tests::scratch::unique;

use crate::provision::{arch, container_root, realms, sh, source};
use crate::table::{Row, paired, print};

pub fn run_suite(runs: usize) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let work = work.path();
    let keys = work.join("keys");
    let serve = work.join("serve");
    fs::create_dir_all(&keys)?;
    fs::create_dir_all(&serve)?;
    realms(&keys, &["appimg", "key", "generate", "repo"])?;
    let src = source(work)?;
    let out = work.join("out");
    fs::create_dir_all(&out)?;
    let (o, s) = (out.display().to_string(), src.display().to_string());
    for v in ["1", "2"] {
        fs::write(src.join("etc/version"), v)?;
        realms(
            work,
            &[
                "provision",
                "pack",
                &s,
                "--pkg-version",
                v,
                "--format",
                "tar.gz",
                "-o",
                &o,
            ],
        )?;
    }
    let repo = serve.join("repo").display().to_string();
    let pkgs: Vec<String> = ["1", "2"]
        .iter()
        .map(|v| {
            out.join(format!("foo-test_{v}.tar.gz"))
                .display()
                .to_string()
        })
        .collect();
    realms(
        &keys,
        &[
            "provision",
            "publish",
            &pkgs[0],
            &pkgs[1],
            "--to",
            &repo,
            "--key",
            "repo",
        ],
    )?;
    let size = fs::metadata(&pkgs[1])?.len();
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let _server = HttpServer::serve(&serve, addr);
    let arch = arch();
    let base = format!("http://{addr}/repo/{arch}");

    let tree = container_root("bench-update", &keys)?;
    let root = tree.path();
    let manifest = |version: &str| {
        format!(
            "composable:\n  packages:\n    - name: foo-test\n      repository: http://{addr}/repo\n      version: '{version}'\n      start: [foo-test.service]\n      health: {{settle: 0s}}\n"
        )
    };
    fs::write(root.join("root/m1.yaml"), manifest("1"))?;
    fs::write(root.join("root/m2.yaml"), manifest("latest"))?;
    let c = Container::boot(root, &unique("bench-update"), &[]);
    let clean = "for i in foo-test_1 foo-test_2; do (realms portable detach --now $i || portablectl detach --now $i) >/dev/null 2>&1; done; \
                 chattr -R -i /var/lib/portables/foo-test-* /var/lib/portables/.tar-* >/dev/null 2>&1; \
                 rm -rf /var/lib/portables/foo-test* /var/lib/realms/provision /var/cache/realms/provision /var/lib/portables/.tar-* /var/lib/machines/.tar-* ; sync";
    let between = || sh(Some(&c), clean).map(drop);
    // Each starts (untimed) from version 1 installed, attached and running its way.
    let ours = || -> anyhow::Result<Duration> {
        between()?;
        sh(
            Some(&c),
            "realms provision apply /root/m1.yaml >/dev/null 2>&1 && systemctl is-active -q foo-test.service",
        )?;
        sh(
            Some(&c),
            "realms provision update /root/m2.yaml 2>&1 | grep -q 'updated foo-test 1 -> 2'",
        )
    };
    let pull = |name: &str| {
        format!(
            "/usr/lib/systemd/systemd-pull tar --verify=checksum --btrfs-subvol=no --btrfs-quota=no --sync=no \
             --image-root=/var/lib/portables {base}/{name}.tar.gz {} >/dev/null 2>&1 && \
             mv /var/lib/portables/{} /var/lib/portables/{name}",
            name.replace('_', "-"),
            name.replace('_', "-"),
        )
    };
    let systemd = || -> anyhow::Result<Duration> {
        between()?;
        sh(
            Some(&c),
            &format!(
                "{} && portablectl attach --now foo-test_1 >/dev/null 2>&1 && systemctl is-active -q foo-test.service",
                pull("foo-test_1")
            ),
        )?;
        sh(
            Some(&c),
            &format!(
                "{} && portablectl reattach --now foo-test_2 >/dev/null 2>&1 && systemctl is-active -q foo-test.service && \
                 grep -q 2 /proc/$(systemctl show -p MainPID --value foo-test.service)/root/etc/version",
                pull("foo-test_2")
            ),
        )
    };
    let mb = size as f64 / (1 << 20) as f64;
    let mut rows = Vec::new();
    match paired(runs, ours, systemd, between) {
        Ok((a, b)) => rows.push(Row::new(
            format!("update a {mb:.0} MB package 1 -> 2 (check, fetch, verify, reattach)"),
            a,
            "systemd-pull + portablectl reattach --now",
            b,
            Some(1.0 / 1.5),
        )),
        Err(e) => eprintln!("[!] the update comparison did not run: {e:#}"),
    }
    print("updates: move a running package to its next version", &rows);
    c.stop();
    drop(tree);
    Ok(())
}
