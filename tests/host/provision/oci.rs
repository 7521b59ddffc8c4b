//! An OCI registry as the repository: Debian's docker-registry (CNCF distribution) started by
//! the test on 127.0.0.1 with a certificate of a private CA and htpasswd auth. Two versions of a
//! package pushed with `realms provision publish --to oci://...`, applied from `oci://` (with
//! `--ca-file` and the credentials of /etc/realms/auth.json) and upgraded; refused with wrong or
//! missing credentials (the error names the registry), and for a tampered blob (nothing left in
//! /var/lib/portables); a blob download cut mid-way (a proxy in front of the registry closes the
//! connection after 1 MiB) resumes with a Range request on the next apply.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};

use realms_tests::registry::{Proxy, Registry, TokenServer};
use realms_tests::run::run;
use realms_tests::tls::{ca, server_cert};

use realms_tests::container::Container;
use realms_tests::scratch::unique;

use super::update::{boot_provisioned, upd_package};
use super::{Booted, Publisher, free_port, package, realms};

const USER: &str = "fleet";
const PASSWORD: &str = "s3cret-fleet";

/// `ROOT/etc/realms/auth.json` with `user:password` for each registry of `hosts`.
fn auth_json(root: &Path, hosts: &[SocketAddr], user: &str, password: &str) {
    let token = base64(&format!("{user}:{password}"));
    let auths: Vec<String> = hosts
        .iter()
        .map(|h| format!("\"{h}\": {{\"auth\": \"{token}\"}}"))
        .collect();
    fs::create_dir_all(root.join("etc/realms")).unwrap();
    fs::write(
        root.join("etc/realms/auth.json"),
        format!("{{\"auths\": {{{}}}}}\n", auths.join(", ")),
    )
    .unwrap();
}

fn base64(s: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn run_realms(root: &Path, args: &[&str]) -> Output {
    Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// A machine root trusting the repository key, with a manifest of `name` at `version` from
/// `repo`.
fn machine(p: &Publisher, root: &Path, repo: &str, name: &str, version: &str) {
    p.trust_in(root);
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: {repo}\n  packages:\n    - name: {name}\n      version: '{version}'\n      start: [{name}.service]\n"
        ),
    )
    .unwrap();
}

fn portables(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("var/lib/portables"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(fs::read(path).unwrap()))
}

/// The work directory's `tls/` with a private CA and a server certificate for 127.0.0.1;
/// returns it and the CA file's path.
fn tls_dir(work: &Path) -> (std::path::PathBuf, String) {
    let tls = work.join("tls");
    fs::create_dir_all(&tls).unwrap();
    ca(&tls, "reg");
    server_cert(&tls, "reg");
    let ca_file = tls.join("reg-ca.pem").display().to_string();
    (tls, ca_file)
}

/// docker-registry on a free port of 127.0.0.1 with TLS and htpasswd auth (USER, PASSWORD).
fn registry(work: &Path, tls: &Path) -> (Registry, SocketAddr) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let registry = Registry::serve(
        &work.join("registry"),
        addr,
        &tls.join("server.pem"),
        &tls.join("server.key"),
        USER,
        PASSWORD,
    );
    (registry, addr)
}

#[test]
fn oci_registry_publish_apply_refusals_and_a_cut_blob_download_resumes() {
    realms_tests::require::tool("openssl", "openssl");
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let (tls, ca_file) = tls_dir(work);
    let (registry, reg_addr) = self::registry(work, &tls);
    let proxy = Proxy::start(reg_addr);
    let p = Publisher::new(work);
    auth_json(&p.keys, &[reg_addr], USER, PASSWORD);
    let push_to = format!("oci://{reg_addr}/realms/fleet");
    let publish = |pkg: &Path| {
        let pkg = pkg.display().to_string();
        realms(
            &p.keys,
            &[
                "provision",
                "publish",
                &pkg,
                "--to",
                &push_to,
                "--key",
                "repo",
                "--ca-file",
                &ca_file,
            ],
        )
    };

    // Two versions, published one after the other: the index artifact's serial goes up.
    let v1 = package(work, "ocisvc", "1");
    let v2 = package(work, "ocisvc", "2");
    publish(&v1);
    let pkg2 = v2.display().to_string();
    let out = run_realms(
        &p.keys,
        &[
            "provision",
            "publish",
            &pkg2,
            "--to",
            &push_to,
            "--key",
            "repo",
            "--ca-file",
            &ca_file,
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("(serial 2)"),
        "{text}"
    );
    // Packages never change: other bytes under a published NAME_VERSION are refused, and the
    // index stays as it was.
    let other = work.join("other");
    fs::create_dir_all(&other).unwrap();
    let changed = other.join("ocisvc_1.tar.zst");
    fs::copy(&v2, &changed).unwrap();
    let out = run_realms(
        &p.keys,
        &[
            "provision",
            "publish",
            &changed.display().to_string(),
            "--to",
            &push_to,
            "--key",
            "repo",
            "--ca-file",
            &ca_file,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("oci://{reg_addr}/realms/fleet:ocisvc_1."))
            && err.contains("other contents"),
        "{err}"
    );
    // The package blob is the layer whose digest the index states.
    let blob = registry.blob_file(&sha256_hex(&v2));
    assert_eq!(fs::read(&blob).unwrap(), fs::read(&v2).unwrap());

    // A machine pulling through the proxy (no cuts yet): installs v1, then moves to latest.
    let repo = format!("oci://{}/realms/fleet", proxy.addr);
    let root = work.join("root");
    machine(&p, &root, &repo, "ocisvc", "1");
    auth_json(&root, &[proxy.addr], USER, PASSWORD);
    let apply = |root: &Path| run_realms(root, &["provision", "apply", "--ca-file", &ca_file]);
    let out = apply(&root);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("installed ocisvc 1"),
        "{err}"
    );
    assert_eq!(portables(&root), ["ocisvc_1"]);
    let status = realms(&root, &["provision", "status"]);
    assert!(
        status.contains("ocisvc") && status.contains(&repo),
        "{status}"
    );
    machine(&p, &root, &repo, "ocisvc", "latest");
    let out = apply(&root);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("upgraded ocisvc 2"),
        "{err}"
    );
    assert_eq!(portables(&root), ["ocisvc_2"]);
    let attached = realms(&root, &["portable", "list"]);
    assert!(attached.contains("ocisvc_2"), "not attached: {attached}");
    let out = apply(&root);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("nothing changed"),
        "{err}"
    );

    // Wrong and missing credentials: refused, naming the registry; nothing installed.
    let wrong = work.join("wrong");
    machine(&p, &wrong, &repo, "ocisvc", "latest");
    auth_json(&wrong, &[proxy.addr], USER, "not-the-password");
    let out = apply(&wrong);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("registry {}", proxy.addr))
            && err.contains("refused the credentials")
            && err.contains("auth.json"),
        "{err}"
    );
    fs::remove_file(wrong.join("etc/realms/auth.json")).unwrap();
    let out = run_realms(&wrong, &["provision", "apply", "--ca-file", &ca_file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("registry {}", proxy.addr))
            && err.contains("asks for a user and password"),
        "{err}"
    );
    assert!(portables(&wrong).is_empty(), "{:?}", portables(&wrong));

    // A tampered blob (one byte changed in the registry's storage): its digest no longer
    // matches; refused, nothing left in /var/lib/portables.
    let bad = package(work, "tampered", "1");
    let out = run_realms(
        &p.keys,
        &[
            "provision",
            "publish",
            &bad.display().to_string(),
            "--to",
            &push_to,
            "--key",
            "repo",
            "--ca-file",
            &ca_file,
        ],
    );
    // Serial 3: the refused publish above left the index at 2.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("(serial 3)"), "{err}");
    let file = registry.blob_file(&sha256_hex(&bad));
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&file, bytes).unwrap();
    let troot = work.join("tampered-root");
    machine(&p, &troot, &repo, "tampered", "1");
    auth_json(&troot, &[proxy.addr], USER, PASSWORD);
    let out = apply(&troot);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("its SHA-256 is") && err.contains("discarded"),
        "{err}"
    );
    assert!(portables(&troot).is_empty(), "{:?}", portables(&troot));

    // A 4 MiB blob whose download the proxy cuts after 1 MiB: the apply fails saying the next
    // try resumes; the next one asks the registry only for the rest (a 206 of the missing
    // bytes in its log) and installs it.
    let cut = super::resume::cut_package(work, "src-cut", "out");
    let size = fs::metadata(&cut).unwrap().len();
    publish(&cut);
    let croot = work.join("cut-root");
    machine(&p, &croot, &repo, "cut", "1");
    auth_json(&croot, &[proxy.addr], USER, PASSWORD);
    proxy.cut_after(1 << 20);
    let out = apply(&croot);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the next try resumes"),
        "a cut download: {err}"
    );
    let have = super::resume::part_len(&croot);
    assert!(
        have >= 512 << 10 && have < size,
        "{have} of {size} bytes kept"
    );
    assert!(portables(&croot).is_empty(), "{:?}", portables(&croot));
    proxy.cut_after(u64::MAX);
    let out = apply(&croot);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("installed cut 1"),
        "{err}"
    );
    assert_eq!(portables(&croot), ["cut_1"]);
    let digest = sha256_hex(&cut);
    let gets: Vec<_> = registry
        .requests(&format!("/blobs/sha256:{digest}"))
        .into_iter()
        .filter(|r| r["http.request.method"] == "GET")
        .collect();
    let last = gets.last().unwrap_or_else(|| panic!("no GET of the blob"));
    assert_eq!(
        last["http.response.status"], 206,
        "not a range answer: {last}"
    );
    assert_eq!(
        last["http.response.written"].as_u64(),
        Some(size - have),
        "resumed at {have} of {size}: {last}"
    );
}

/// The same registry with token auth: `/v2/` answers `Bearer realm=...`; publish and apply get a
/// token for their scope from the token service (which checks the user and password of
/// auth.json) and use it; a wrong password is refused by the token service, naming the registry.
#[test]
fn oci_registry_with_token_auth_pushes_and_pulls_with_a_bearer_token() {
    realms_tests::require::tool("openssl", "openssl");
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let (tls, ca_file) = tls_dir(work);
    run(Command::new("openssl")
        .current_dir(&tls)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=realms test token issuer"])
        .args(["-keyout", "token.key", "-out", "token.pem"]));
    let (service, issuer) = ("realms-test-registry", "realms-test-issuer");
    let tokens = TokenServer::start(
        (&tls.join("token.pem"), &tls.join("token.key")),
        (issuer, service),
        USER,
        PASSWORD,
    );
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _registry = Registry::serve_token(
        &work.join("registry"),
        addr,
        (&tls.join("server.pem"), &tls.join("server.key")),
        &format!("http://{}/token", tokens.addr),
        (service, issuer),
        &tls.join("token.pem"),
    );
    let p = Publisher::new(work);
    auth_json(&p.keys, &[addr], USER, PASSWORD);
    let repo = format!("oci://{addr}/realms/tok");
    let pkg = package(work, "tok", "1");
    let pkg_arg = pkg.display().to_string();
    realms(
        &p.keys,
        &[
            "provision",
            "publish",
            &pkg_arg,
            "--to",
            &repo,
            "--key",
            "repo",
            "--ca-file",
            &ca_file,
        ],
    );
    let root = work.join("root");
    machine(&p, &root, &repo, "tok", "1");
    auth_json(&root, &[addr], USER, PASSWORD);
    let out = run_realms(&root, &["provision", "apply", "--ca-file", &ca_file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("installed tok 1"),
        "{err}"
    );
    assert_eq!(portables(&root), ["tok_1"]);
    let granted = tokens.granted.lock().unwrap().clone();
    assert!(
        granted.contains(&"repository:realms/tok:pull,push".to_string())
            && granted.contains(&"repository:realms/tok:pull".to_string()),
        "{granted:?}"
    );

    let wrong = work.join("wrong");
    machine(&p, &wrong, &repo, "tok", "1");
    auth_json(&wrong, &[addr], USER, "not-the-password");
    let out = run_realms(&wrong, &["provision", "apply", "--ca-file", &ca_file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!("registry {addr}"))
            && err.contains("refused a token")
            && err.contains("user fleet from"),
        "{err}"
    );
    assert!(portables(&wrong).is_empty(), "{:?}", portables(&wrong));
}

/// In a booted systemd container (sharing this machine's loopback): the manifest names an
/// `oci://` repository; `realms provision apply` pulls from the registry with the CA file and
/// the credentials of /etc/realms/auth.json, attaches the package, enables and starts its unit.
#[test]
fn oci_registry_apply_in_a_booted_container_starts_the_service() {
    realms_tests::require::tool("openssl", "openssl");
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let (tls, ca_file) = tls_dir(work);
    let (_registry, addr) = registry(work, &tls);
    let p = Publisher::new(work);
    auth_json(&p.keys, &[addr], USER, PASSWORD);
    let repo = format!("oci://{addr}/realms/boot");
    let pkg = package(work, "ocibox", "1");
    let pkg_arg = pkg.display().to_string();
    realms(
        &p.keys,
        &[
            "provision",
            "publish",
            &pkg_arg,
            "--to",
            &repo,
            "--key",
            "repo",
            "--ca-file",
            &ca_file,
        ],
    );

    let tree = super::provision_root("provision-oci");
    let root = tree.path();
    p.trust_in(root);
    auth_json(root, &[addr], USER, PASSWORD);
    fs::copy(&ca_file, root.join("etc/realms/registry-ca.pem")).unwrap();
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: {repo}\n  packages:\n    - name: ocibox\n      version: latest\n      enable: [ocibox.service]\n      start: [ocibox.service]\n"
        ),
    )
    .unwrap();
    let b = Booted {
        c: Container::boot(root, &unique("provision-oci"), &[]),
        _tree: tree,
    };
    let out = b.ok("realms provision apply --ca-file /etc/realms/registry-ca.pem");
    assert!(out.contains("installed ocibox 1"), "{out}");
    assert_eq!(
        b.ok("systemctl is-active ocibox.service || true").trim(),
        "active"
    );
    let list = b.ok("portablectl list --no-legend");
    assert!(list.contains("ocibox_1"), "{list}");
    // Enabled the portable way (as portablectl --enable): the [Install] link is in the attach
    // directory.
    let wants = b.ok("ls /etc/systemd/system.attached/multi-user.target.wants/");
    assert!(wants.contains("ocibox.service"), "not enabled: {wants}");
    // And PID 1 knows it (with a single package no later attach reloads it for the apply).
    let wants = b.ok("systemctl show -p Wants --value multi-user.target");
    assert!(
        wants.contains("ocibox.service"),
        "PID 1 does not know: {wants}"
    );
    let again = b.ok("realms provision apply --ca-file /etc/realms/registry-ca.pem");
    let state = b.ok("cat /var/lib/realms/provision/state.json");
    assert!(again.contains("nothing changed"), "{again}\nstate: {state}");
}

/// The update flow of update.rs from an OCI registry (docker-registry with TLS and htpasswd
/// auth, every version pushed with `realms provision publish --to oci://`): `latest` in stable
/// at 1; 2 is taken with the service restarted; a 3 that fails within the settle time is
/// rolled back to 2, marked bad and not retried; a good 4 is taken; two versions are kept.
#[test]
fn oci_registry_update_follows_stable_and_rolls_back_a_failing_version() {
    realms_tests::require::tool("openssl", "openssl");
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let (tls, ca_file) = tls_dir(work);
    let (_registry, addr) = registry(work, &tls);
    let p = Publisher::new(work);
    auth_json(&p.keys, &[addr], USER, PASSWORD);
    let repo = format!("oci://{addr}/realms/upd");
    let push = |version: &str, exec: Option<&str>| {
        let pkg = upd_package(work, version, exec).display().to_string();
        realms(
            &p.keys,
            &[
                "provision",
                "publish",
                &pkg,
                "--to",
                &repo,
                "--key",
                "repo",
                "--ca-file",
                &ca_file,
            ],
        );
    };
    push("1", None);
    let manifest = format!(
        "composable:\n  default_repository: {repo}\n  packages:\n\
         \x20   - name: upd\n      version: latest\n      track_stream: stable\n\
         \x20     enable: [upd.service]\n      start: [upd.service]\n\
         \x20     health: {{settle: 3s}}\n"
    );
    let b = boot_provisioned(&p, &manifest, "provision-oci-update");
    auth_json(b.c.root(), &[addr], USER, PASSWORD);
    fs::copy(&ca_file, b.c.root().join("etc/realms/registry-ca.pem")).unwrap();
    let realms_in = |args: &str| {
        b.ok(&format!(
            "realms provision {args} --ca-file /etc/realms/registry-ca.pem"
        ))
    };
    let out = realms_in("apply");
    assert!(out.contains("installed upd 1"), "{out}");
    assert_eq!(b.upd_running_version(), "1");

    push("2", None);
    let out = realms_in("update");
    assert!(out.contains("updated upd 1 -> 2"), "{out}");
    assert_eq!(b.upd_running_version(), "2");

    let bad = "/usr/bin/busybox sh -c 'echo v3 starting; /usr/bin/busybox sleep 1; exit 3'";
    push("3", Some(bad));
    let out = realms_in("update");
    assert!(
        out.contains("failed its health check") && out.contains("rolled back upd to 2"),
        "{out}"
    );
    assert_eq!(b.upd_running_version(), "2");
    let again = realms_in("update --json");
    assert!(again.contains("\"bad\""), "3 was tried again: {again}");

    push("4", None);
    let out = realms_in("update");
    assert!(out.contains("updated upd 2 -> 4"), "{out}");
    assert_eq!(b.upd_running_version(), "4");
    let images = b.ok("ls /var/lib/portables");
    let images: Vec<&str> = images.split_whitespace().collect();
    assert_eq!(images, ["upd_2", "upd_4"]);
    b.c.stop();
}
