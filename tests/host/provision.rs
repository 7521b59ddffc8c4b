//! Provisioning for real: inside a booted systemd container (sharing this machine's loopback),
//! `realms provision apply` fetches a signed repository of two packages in two versions each
//! from a real nginx on 127.0.0.1, attaches them with their profiles, enables and starts the
//! listed units; a second apply changes nothing; and every refusal (corrupted package, wrong
//! hash, bad or missing signature, lower serial, expired index, hostile tarballs, manifest
//! errors) leaves nothing in /var/lib/portables and nothing attached.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use realms_tests::container::Container;
use realms_tests::fixtures::{debian_base, portable_image, write_portable_tree};
use realms_tests::http::HttpServer;
use realms_tests::run::run;
use realms_tests::scratch::{Scratch, unique};

mod export;
mod fleetlock;
mod https;
mod ignition;
mod kill;
mod oci;
mod resume;
mod update;

/// Runs the host's realms with `--root root`; panics on failure.
fn realms(root: &Path, args: &[&str]) -> String {
    let out = Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "realms {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Publisher {
    keys: PathBuf,
    serve: PathBuf,
}

impl Publisher {
    /// A signing key `repo` in `work`/keys, publishing into `work`/serve.
    fn new(work: &Path) -> Publisher {
        let p = Publisher {
            keys: work.join("keys"),
            serve: work.join("serve"),
        };
        fs::create_dir_all(&p.keys).unwrap();
        fs::create_dir_all(&p.serve).unwrap();
        realms(&p.keys, &["appimg", "key", "generate", "repo"]);
        p
    }

    /// Makes `root` trust the repository's key (its /etc/realms/keys.d/repo.pub).
    fn trust_in(&self, root: &Path) {
        fs::create_dir_all(root.join("etc/realms/keys.d")).unwrap();
        fs::copy(
            self.keys.join("etc/realms/keys.d/repo.pub"),
            root.join("etc/realms/keys.d/repo.pub"),
        )
        .unwrap();
    }

    fn publish(&self, repo: &str, files: &[&Path], extra: &[&str]) {
        let to = self.serve.join(repo);
        let mut args = vec!["provision", "publish"];
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        args.extend(files.iter().map(String::as_str));
        let to = to.display().to_string();
        args.extend(["--to", &to, "--key", "repo"]);
        args.extend(extra);
        realms(&self.keys, &args);
    }

    fn arch_dir(&self, repo: &str) -> PathBuf {
        let arch = if cfg!(target_arch = "x86_64") {
            "amd64"
        } else {
            "arm64"
        };
        self.serve.join(repo).join(arch)
    }
}

/// `dir/NAME_VERSION.tar.zst` packed from the busybox image with units prefixed `name`.
fn package(work: &Path, name: &str, version: &str) -> PathBuf {
    package_as(work, name, version, "tar.zst")
}

/// [`package`] in another format (`tar`: versions of equal length give packages of equal size).
fn package_as(work: &Path, name: &str, version: &str, format: &str) -> PathBuf {
    let src = work.join(format!("src-{name}-{version}-{format}"));
    if name == "foo-test" {
        run(Command::new("cp").arg("-a").arg(portable_image()).arg(&src));
    } else {
        let busybox = fs::read("/bin/busybox").unwrap();
        write_portable_tree(&src, &busybox, name);
    }
    fs::write(src.join("etc/version"), version).unwrap();
    // The fixture's unit has no [Install] section; enabling needs one.
    let unit = src.join(format!("usr/lib/systemd/system/{name}.service"));
    let text = fs::read_to_string(&unit).unwrap();
    fs::write(
        &unit,
        format!("{text}\n[Install]\nWantedBy=multi-user.target\n"),
    )
    .unwrap();
    let out = work.join("packages");
    fs::create_dir_all(&out).unwrap();
    realms(
        work,
        &[
            "provision",
            "pack",
            src.to_str().unwrap(),
            "--name",
            name,
            "--pkg-version",
            version,
            "--format",
            format,
            "-o",
            out.to_str().unwrap(),
        ],
    );
    out.join(format!("{name}_{version}.{format}"))
}

/// A tar entry: path, type, contents or link target, mode.
type TarEntry<'a> = (&'a str, tar::EntryType, &'a str, u32);

fn hostile(work: &Path, case: &str, entries: &[TarEntry]) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        let body: &[u8] = if *kind == tar::EntryType::Regular {
            data.as_bytes()
        } else {
            h.as_old_mut().linkname[..data.len()].copy_from_slice(data.as_bytes());
            b""
        };
        h.set_entry_type(*kind);
        h.set_size(body.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    let dir = work.join(format!("hostile-{case}"));
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("evil_1.tar");
    fs::write(&file, b.into_inner().unwrap()).unwrap();
    file
}

struct Booted {
    c: Container,
    _tree: Scratch,
}

impl Booted {
    fn sh(&self, script: &str) -> (bool, String) {
        let out = self.c.exec(&["sh", "-c", script]);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    #[track_caller]
    fn ok(&self, script: &str) -> String {
        let (ok, out) = self.sh(script);
        assert!(ok, "`{script}` failed:\n{out}");
        out
    }

    /// Applies a manifest for package `evil` (or `name`) from `repo`; it must fail saying
    /// `says`, with nothing of it installed or attached.
    #[track_caller]
    fn refused(&self, server: &str, repo: &str, name: &str, version: &str, says: &str) {
        let manifest = format!(
            "composable:\n  packages:\n    - name: {name}\n      repository: {server}/{repo}\n      version: '{version}'\n"
        );
        fs::write(self.c.root().join("root/refused.yaml"), manifest).unwrap();
        let (ok, out) = self.sh("realms provision apply /root/refused.yaml");
        assert!(
            !ok && out.contains(says),
            "{repo}: expected '{says}':\n{out}"
        );
        let left = self.ok("ls -A /var/lib/portables; portablectl list --no-legend || true");
        assert!(
            !left.contains(&format!("{name}_")) && !left.contains(".realms-provision"),
            "{repo}: left behind:\n{left}"
        );
        let attached = self.ok("ls /etc/systemd/system.attached/ 2>/dev/null || true");
        assert!(!attached.contains(name), "{repo}: attached:\n{attached}");
    }
}

#[test]
fn apply_in_a_booted_container_from_nginx_and_every_refusal() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let serve = p.serve.clone();
    let foo1 = package(work, "foo-test", "1");
    let foo2 = package(work, "foo-test", "2");
    let bar1 = package(work, "bar", "1.0");
    let bar2 = package(work, "bar", "1.1");
    // The refusals use a package of their own, so the applied manifest stays as it is.
    let lone1 = package(work, "lone", "1.0");
    let lone2 = package(work, "lone", "2.0");
    p.publish("main", &[&foo1, &foo2, &bar1, &bar2], &[]);
    let sums = fs::read_to_string(p.arch_dir("main").join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 4, "{sums}");

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _server = HttpServer::serve(&serve, addr);
    let server = format!("http://{addr}");

    let tree = provision_root("provision");
    let root = tree.path();
    let portables = root.join("var/lib/portables");
    p.trust_in(root);
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: {server}/main\n  packages:\n\
             \x20   - name: foo-test\n      version: '1'\n      profile: nonetwork\n\
             \x20     enable: [foo-test.service]\n      start: [foo-test.service]\n\
             \x20   - name: bar\n      version: latest\n      install_method: copy\n\
             \x20     start: [bar.service]\n"
        ),
    )
    .unwrap();
    // The container shares this machine's network namespace, so it reaches nginx on 127.0.0.1.
    let b = Booted {
        c: Container::boot(root, &unique("provision"), &[]),
        _tree: tree,
    };

    let out = b.ok("realms provision apply");
    assert!(
        out.contains("installed foo-test 1") && out.contains("installed bar 1.1"),
        "{out}"
    );
    for unit in ["foo-test.service", "bar.service"] {
        assert_eq!(
            b.ok(&format!("systemctl is-active {unit} || true")).trim(),
            "active",
            "{unit}"
        );
    }
    let families = b.ok("systemctl show -p RestrictAddressFamilies --value foo-test.service");
    assert!(
        !families.contains("AF_INET") && families.contains("AF_UNIX"),
        "nonetwork: {families}"
    );
    // Enabled the portable way (as portablectl --enable): the [Install] link is in the attach
    // directory, and PID 1 has multi-user.target want the unit (systemd 252's is-enabled does
    // not look there).
    let wants = b.ok("systemctl show -p Wants --value multi-user.target");
    assert!(
        wants.contains("foo-test.service"),
        "foo-test.service is not enabled: {wants}"
    );
    let list = b.ok("portablectl list --no-legend");
    assert!(
        list.contains("foo-test_1") && list.contains("bar_1.1"),
        "{list}"
    );
    let again = b.ok("realms provision apply");
    assert!(again.contains("nothing changed"), "{again}");
    let json = b.ok("realms provision plan --json");
    assert_eq!(json.matches("\"unchanged\"").count(), 2, "{json}");

    // Corrupted package: a flipped byte in the middle.
    p.publish("corrupt", &[&lone2], &[]);
    let f = p.arch_dir("corrupt").join("lone_2.0.tar.zst");
    let mut bytes = fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&f, bytes).unwrap();
    b.refused(&server, "corrupt", "lone", "2.0", "SHA-256");
    // Wrong hash: another valid package of the same size under the listed name (uncompressed,
    // so that the size is equal and only the hash tells them apart).
    let (tar1, tar2) = (
        package_as(work, "lone", "1.0", "tar"),
        package_as(work, "lone", "2.0", "tar"),
    );
    assert_eq!(
        fs::metadata(&tar1).unwrap().len(),
        fs::metadata(&tar2).unwrap().len()
    );
    p.publish("wronghash", &[&tar1], &[]);
    fs::copy(&tar2, p.arch_dir("wronghash").join("lone_1.0.tar")).unwrap();
    b.refused(&server, "wronghash", "lone", "1.0", "the index states");
    // Unsigned index.
    p.publish("unsigned", &[&lone1], &[]);
    fs::remove_file(p.arch_dir("unsigned").join("index.stable.1.sig")).unwrap();
    b.refused(&server, "unsigned", "lone", "1.0", "is not signed");
    // Bad signature: the index changed after signing.
    p.publish("badsig", &[&lone1], &[]);
    let idx = p.arch_dir("badsig").join("index.stable.json");
    let text = fs::read_to_string(&idx)
        .unwrap()
        .replace("\"1.0\"", "\"1.00\"");
    fs::write(&idx, text).unwrap();
    b.refused(&server, "badsig", "lone", "1.00", "bad signature");
    // Expired index.
    p.publish("expired", &[&lone1], &["--valid-days", "0"]);
    b.refused(&server, "expired", "lone", "1.0", "expired");
    // Lower serial: serial 5 is seen (the apply fails on an unlisted version), then 3 comes.
    p.publish("serial", &[&lone1], &["--serial", "5"]);
    b.refused(&server, "serial", "lone", "9", "is not listed");
    p.publish("serial", &[&lone1], &["--serial", "3"]);
    b.refused(&server, "serial", "lone", "1.0", "lower than serial 5");
    // Hostile tarballs.
    use tar::EntryType::*;
    let cases: &[(&str, &[TarEntry], &str)] = &[
        ("traversal", &[("../evil", Regular, "x", 0o644)], "'..'"),
        (
            "abs-symlink",
            &[("etc", Symlink, "/etc", 0o777)],
            "absolute path",
        ),
        (
            "symlink-write",
            &[("d", Symlink, "usr", 0o777), ("d/x", Regular, "x", 0o644)],
            "written through the symlink",
        ),
        (
            "hardlink",
            &[("h", Link, "../../etc/passwd", 0o644)],
            "hardlink",
        ),
        ("device", &[("dev/sda", Block, "", 0o600)], "device node"),
        ("setuid", &[("su", Regular, "x", 0o4755)], "setuid"),
    ];
    for (case, entries, says) in cases {
        let file = hostile(work, case, entries);
        p.publish(case, &[&file], &[]);
        b.refused(&server, case, "evil", "1", says);
    }
    assert!(!b.c.root().join("evil").exists() && !portables.join("../evil").exists());

    // Manifest errors name file:line:column.
    for (text, at) in [
        (
            "composable:\n  packages:\n    - name: x\n      colour: red\n",
            "/root/m.yaml:4:7:",
        ),
        (
            "composable:\n  packages:\n    - name: x\n      start: x.service\n",
            "/root/m.yaml:4:14:",
        ),
        (
            "composable:\n  packages:\n    - name: [x\n",
            "/root/m.yaml:",
        ),
    ] {
        fs::write(b.c.root().join("root/m.yaml"), text).unwrap();
        let (ok, out) = b.sh("realms provision apply /root/m.yaml");
        assert!(!ok && out.contains(at), "expected {at}:\n{out}");
    }
    // Everything still as it was.
    let again = b.ok("realms provision apply");
    assert!(again.contains("nothing changed"), "{again}");
    b.c.stop();
}

/// What a reboot must not change: the provisioning state, the images, what is attached and
/// enabled (attach directories), and which of the packages' units run.
fn reboot_view(b: &Booted) -> String {
    b.ok("cat /var/lib/realms/provision/state.json; ls -A /var/lib/portables; \
          find /etc/systemd/system.attached /etc/portables -printf '%p %l\\n' 2>/dev/null | sort; \
          portablectl list --no-legend; \
          for u in boot.service web.service inb.service; do echo $u $(systemctl is-enabled $u) $(systemctl is-active $u); done")
}

/// Powers the container off and boots it again (a new PID 1, a new /run).
fn reboot(b: Booted, root: &Path, label: &str) -> Booted {
    let Booted { c, _tree } = b;
    c.stop();
    Booted {
        c: Container::boot(root, &unique(label), &[]),
        _tree,
    }
}

/// Waits up to a minute for `script` to succeed inside.
#[track_caller]
fn wait_for(b: &Booted, script: &str) {
    for _ in 0..120 {
        if b.sh(script).0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (_, out) = b.sh("systemctl status --no-pager realms-provision.service realms-provision-inbox.path realms-provision-inbox.service; ls -laR /opt/inbox");
    panic!("`{script}` never succeeded:\n{out}");
}

#[test]
fn first_boot_applies_the_manifest_once_and_the_inbox_installs_as_its_user() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let serve = p.serve.clone();
    // The repository: two packages, each in two versions.
    let boot1 = package(work, "boot", "1");
    let boot2 = package(work, "boot", "2");
    let web1 = package(work, "web", "1.0");
    let web2 = package(work, "web", "1.1");
    let inb = package(work, "inb", "1");
    p.publish("main", &[&boot1, &boot2, &web1, &web2], &[]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let server = HttpServer::serve(&serve, addr);

    let tree = Scratch::snapshot(debian_base(), "provision-boot");
    let root = tree.path().to_path_buf();
    fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms")).unwrap();
    let portables = root.join("var/lib/portables");
    if fs::create_dir_all(portables.join(".probe")).is_err() {
        let _ = fs::remove_dir(&portables);
    }
    let _ = fs::remove_dir(portables.join(".probe"));
    p.trust_in(&root);
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: http://{addr}/main\n  packages:\n\
             \x20   - name: boot\n      version: '1'\n      profile: nonetwork\n\
             \x20     enable: [boot.service]\n      start: [boot.service]\n\
             \x20   - name: web\n      version: latest\n\
             \x20     enable: [web.service]\n      start: [web.service]\n"
        ),
    )
    .unwrap();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd");
    let units = root.join("etc/systemd/system");
    for (unit, wants) in [
        ("realms-provision.service", Some("multi-user.target.wants")),
        ("realms-provision-inbox.path", Some("paths.target.wants")),
        ("realms-provision-inbox.timer", Some("timers.target.wants")),
        ("realms-provision-inbox.service", None),
    ] {
        fs::copy(dist.join(unit), units.join(unit)).unwrap();
        if let Some(w) = wants {
            fs::create_dir_all(units.join(w)).unwrap();
            std::os::unix::fs::symlink(format!("../{unit}"), units.join(w).join(unit)).unwrap();
        }
    }
    let b = Booted {
        c: Container::boot(&root, &unique("provision-boot"), &[]),
        _tree: tree,
    };
    // First boot: the unit applied the manifest and left its stamp. The exact version and the
    // stream's latest are installed, the units in `start` run, the `enable` one is enabled, the
    // profile's sandbox is on the unit, and portablectl sees both images attached.
    wait_for(&b, "test -e /var/lib/realms/provision/first-boot.done");
    let result = b.ok("systemctl show -p Result --value realms-provision.service");
    assert_eq!(result.trim(), "success");
    for unit in ["boot.service", "web.service"] {
        assert_eq!(
            b.ok(&format!("systemctl is-active {unit} || true")).trim(),
            "active",
            "{unit}"
        );
    }
    let families = b.ok("systemctl show -p RestrictAddressFamilies --value boot.service");
    assert!(
        !families.contains("AF_INET") && families.contains("AF_UNIX"),
        "nonetwork: {families}"
    );
    let wants = b.ok("systemctl show -p Wants --value multi-user.target");
    assert!(
        wants.contains("boot.service"),
        "boot.service not enabled: {wants}"
    );
    let list = b.ok("portablectl list --no-legend");
    assert!(
        list.contains("boot_1") && list.contains("web_1.1") && !list.contains("boot_2"),
        "{list}"
    );
    // Again: the condition skips it, and an apply changes nothing.
    b.ok("systemctl restart realms-provision.service");
    let cond = b.ok("systemctl show -p ConditionResult --value realms-provision.service");
    assert_eq!(cond.trim(), "no", "the first-boot unit ran twice");
    assert!(b.ok("realms provision apply").contains("nothing changed"));

    // The inbox: a tarball dropped for user svc with the strict profile.
    b.ok("useradd --system --no-create-home svc");
    b.ok("mkdir -p /opt/inbox/strict/svc");
    fs::copy(&inb, root.join("opt/inbox/strict/svc/.inb_1.tar.zst.tmp")).unwrap();
    b.ok("mv /opt/inbox/strict/svc/.inb_1.tar.zst.tmp /opt/inbox/strict/svc/inb_1.tar.zst");
    wait_for(&b, "test -e /opt/inbox/.done/inb_1.tar.zst");
    wait_for(&b, "systemctl is-active inb.service");
    assert_eq!(
        b.ok("systemctl show -p User --value inb.service").trim(),
        "svc"
    );
    let pid = b.ok("systemctl show -p MainPID --value inb.service");
    let owner = b.ok(&format!("stat -c %U /proc/{}", pid.trim()));
    assert_eq!(owner.trim(), "svc", "inb.service does not run as svc");
    let status = b.ok("realms provision status");
    assert!(
        status.contains("inb") && status.contains("strict"),
        "{status}"
    );

    // A reboot (the container powered off and booted again: a new PID 1, a new /run) changes
    // nothing: the first-boot unit does not run, the enabled services come back, the state and
    // the images are as they were, and an apply reports everything unchanged.
    let before = reboot_view(&b);
    assert!(
        before.contains("boot_1") && before.contains("inb_1"),
        "{before}"
    );
    let b = reboot(b, &root, "provision-reboot");
    wait_for(&b, "systemctl is-active boot.service");
    wait_for(&b, "systemctl is-active web.service");
    wait_for(&b, "systemctl is-active inb.service");
    assert_eq!(
        b.ok("systemctl show -p ExecMainStartTimestampMonotonic --value realms-provision.service")
            .trim(),
        "0",
        "the first-boot unit ran again after the reboot"
    );
    assert_eq!(
        b.ok("systemctl show -p ConditionResult --value realms-provision.service")
            .trim(),
        "no",
        "the first-boot unit's condition did not skip it"
    );
    assert_eq!(reboot_view(&b), before, "the reboot changed something");
    let again = b.ok("realms provision apply");
    assert!(again.contains("nothing changed"), "{again}");
    let json = b.ok("realms provision plan --json");
    assert_eq!(json.matches("\"unchanged\"").count(), 2, "{json}");
    assert_eq!(
        reboot_view(&b),
        before,
        "the apply after the reboot changed something"
    );

    // A network outage: the repository is gone. With the index and the package in the cache,
    // a machine provisioning again gets its services from there.
    drop(server);
    fs::write(
        root.join("root/empty.yaml"),
        format!("composable:\n  default_repository: http://{addr}/main\n  packages: []\n"),
    )
    .unwrap();
    b.ok("realms provision apply --prune /root/empty.yaml");
    assert_ne!(
        b.ok("systemctl is-active boot.service || true").trim(),
        "active"
    );
    // The next boot is a first boot again (its stamp removed) while the network is out: the
    // unit installs from the cache and the service runs.
    b.ok("rm /var/lib/realms/provision/first-boot.done");
    let b = reboot(b, &root, "provision-outage");
    wait_for(&b, "test -e /var/lib/realms/provision/first-boot.done");
    let out =
        b.ok("journalctl --sync; journalctl -b -u realms-provision.service -o cat --no-pager");
    assert_eq!(
        b.ok("systemctl is-active boot.service || true").trim(),
        "active",
        "{out}"
    );
    assert!(out.contains("using the cached index"), "{out}");
    // Without the cache either, the first boot's unit fails and is restarted later, not given
    // up, and the boot is not blocked: the machine reaches multi-user.target.
    b.ok("realms provision apply --prune /root/empty.yaml && rm -rf /var/cache/realms/provision /var/lib/realms/provision/first-boot.done");
    let b = reboot(b, &root, "provision-outage2");
    wait_for(
        &b,
        "systemctl show -p SubState --value realms-provision.service | grep -qx auto-restart",
    );
    assert_eq!(
        b.ok("systemctl is-active multi-user.target || true").trim(),
        "active"
    );
    assert!(
        !b.c.root()
            .join("var/lib/realms/provision/first-boot.done")
            .exists()
    );
    b.c.stop();
}

/// A snapshot of the Debian base for a booted container that provisions: this build's realms in
/// /usr/bin and an empty /var/lib/portables (a plain directory).
pub(super) fn provision_root(label: &str) -> Scratch {
    let tree = Scratch::snapshot(debian_base(), label);
    let root = tree.path();
    fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms")).unwrap();
    let portables = root.join("var/lib/portables");
    if fs::create_dir_all(portables.join(".probe")).is_err() {
        let _ = fs::remove_dir(&portables);
    }
    let _ = fs::remove_dir(portables.join(".probe"));
    fs::create_dir_all(&portables).unwrap();
    tree
}
