//! Provisioning: `realms provision apply` of a ~200 MB package from a local nginx, beside the
//! pipeline a user would script (`curl -o`, `sha256sum -c`, `tar x`, `portablectl attach
//! --now`) and beside systemd's own downloader (`systemd-pull tar --verify=checksum`, then
//! `portablectl attach --now`), all on the same package, in the same booted container, in the
//! same run. The container has no curl: the scripted pipeline's download, check and unpack run
//! on the host into the container's tree (the same disk), its attach inside.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use realms_tests::container::Container;
use realms_tests::fixtures::{debian_base, portable_image};
use realms_tests::http::HttpServer;
use realms_tests::scratch::{Scratch, unique};

use crate::table::{Row, paired, print};

pub(crate) fn sh(c: Option<&Container>, script: &str) -> anyhow::Result<Duration> {
    let mut cmd = match c {
        Some(c) => {
            let mut cmd = c.nsenter();
            cmd.args(["sh", "-c", script]);
            cmd
        }
        None => {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script]);
            cmd
        }
    };
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{script}`"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// `realms --root ROOT ARGS...`, which must succeed.
pub(crate) fn realms(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "realms {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The package source: the busybox image plus ~200 MB of the host's libraries and programs.
pub(crate) fn source(work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let src = work.join("foo-test");
    sh(
        None,
        &format!("cp -a {} {}", portable_image().display(), src.display()),
    )?;
    add_payload(&src)?;
    Ok(src)
}

/// ~200 MB of the host's libraries and programs under the image's /usr/share/payload.
pub(crate) fn add_payload(src: &Path) -> anyhow::Result<()> {
    let data = src.join("usr/share/payload");
    fs::create_dir_all(&data)?;
    let mut total = 0u64;
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/bin",
        "/usr/lib",
    ] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() || total > 200 << 20 {
                continue;
            }
            if fs::copy(e.path(), data.join(e.file_name())).is_ok() {
                total += m.len();
            }
        }
    }
    Ok(())
}

/// A snapshot of the Debian base for a booted container that provisions: this build's realms,
/// an empty /var/lib/portables and the key `repo` of `keys` trusted.
pub(crate) fn container_root(label: &str, keys: &Path) -> anyhow::Result<Scratch> {
    let tree = Scratch::snapshot(debian_base(), label);
    let root = tree.path();
    fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms"))?;
    let portables = root.join("var/lib/portables");
    let _ = fs::remove_dir(&portables);
    fs::create_dir_all(&portables)?;
    fs::create_dir_all(root.join("etc/realms/keys.d"))?;
    fs::copy(
        keys.join("etc/realms/keys.d/repo.pub"),
        root.join("etc/realms/keys.d/repo.pub"),
    )?;
    Ok(tree)
}

/// The Debian architecture name of this machine, as repositories name their directories.
pub(crate) fn arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    }
}

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
    let pkg = out.join("foo-test_1.tar.gz");
    let repo = serve.join("repo").display().to_string();
    let p = pkg.display().to_string();
    realms(
        &keys,
        &["provision", "publish", &p, "--to", &repo, "--key", "repo"],
    )?;
    let size = fs::metadata(&pkg)?.len();
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let _server = HttpServer::serve(&serve, addr);
    let arch = arch();
    let base = format!("http://{addr}/repo/{arch}");

    let tree = container_root("bench-provision", &keys)?;
    let root = tree.path();
    let portables = root.join("var/lib/portables");
    fs::write(
        root.join("root/m.yaml"),
        format!(
            "composable:\n  packages:\n    - name: foo-test\n      repository: http://{addr}/repo\n      start: [foo-test.service]\n"
        ),
    )?;
    let c = Container::boot(root, &unique("bench-provision"), &[]);
    let clean = "(realms portable detach --now foo-test_1 || portablectl detach --now foo-test_1 || portablectl detach --now foo-test-1) >/dev/null 2>&1; \
                 chattr -R -i /var/lib/portables/foo-test-1 /var/lib/portables/.tar-* >/dev/null 2>&1; \
                 rm -rf /var/lib/portables/foo-test_1 /var/lib/portables/foo-test-1 /var/lib/realms/provision /var/cache/realms/provision /var/tmp/dl /var/lib/portables/.tar-* /var/lib/machines/.tar-* ; sync";
    // Each one starts from a clean machine (untimed): nothing attached, nothing cached.
    let between = || sh(Some(&c), clean).map(drop);
    let ours = || {
        between()?;
        sh(
            Some(&c),
            "realms provision apply /root/m.yaml >/dev/null 2>&1",
        )
    };
    let host_dl = root.join("var/tmp/dl");
    let scripted = || -> anyhow::Result<Duration> {
        between()?;
        let d = host_dl.display();
        let img = portables.join("foo-test_1");
        let fetch = sh(
            None,
            &format!(
                "mkdir -p {d} && cd {d} && curl -sfo foo-test_1.tar.gz {base}/foo-test_1.tar.gz && \
                 curl -sfo SHA256SUMS {base}/SHA256SUMS && grep ' foo-test_1.tar.gz$' SHA256SUMS | sha256sum -c --quiet && \
                 mkdir {img} && tar xzf foo-test_1.tar.gz -C {img}",
                img = img.display()
            ),
        )?;
        Ok(fetch
            + sh(
                Some(&c),
                "portablectl attach --now foo-test_1 >/dev/null 2>&1",
            )?)
    };
    let pull = || {
        between()?;
        sh(
            Some(&c),
            &format!(
                "/usr/lib/systemd/systemd-pull tar --verify=checksum --btrfs-subvol=no --btrfs-quota=no --sync=no \
                 --image-root=/var/lib/portables {base}/foo-test_1.tar.gz foo-test-1 2>&1 && \
                 portablectl attach --now foo-test-1 foo-test >/dev/null 2>&1"
            ),
        )
    };
    let mut rows = Vec::new();
    let mb = size as f64 / (1 << 20) as f64;
    let (a, b) = paired(runs, ours, scripted, between)?;
    rows.push(Row::new(
        format!("apply a {mb:.0} MB package (http, one pass)"),
        a,
        "curl|sha256sum|tar|portablectl",
        b,
        Some(1.0 / 1.5),
    ));
    // systemd-pull keeps downloads it has seen (by URL and ETag) and skips them; when the
    // comparison cannot run clean, say so rather than print a number that is not one.
    match paired(runs, ours, pull, between) {
        Ok((a, b)) => rows.push(Row::new(
            format!("apply a {mb:.0} MB package (http, one pass)"),
            a,
            "systemd-pull + portablectl",
            b,
            Some(1.0),
        )),
        Err(e) => eprintln!("[!] the systemd-pull comparison did not run: {e:#}"),
    }
    print(
        "provisioning: fetch, verify, unpack and attach a package",
        &rows,
    );
    c.stop();
    drop(tree);
    Ok(())
}
