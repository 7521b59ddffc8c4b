//! `realms provision ignition`: the config it prints passes Ignition's published spec 3.4.0
//! schema, and a machine given its files and units (applied by the harness' stand-in for
//! Ignition's files stage, tests/src/ignition.rs: Ignition is not in Debian) provisions itself on
//! its first boot from a repository served by nginx.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use realms_tests::container::Container;
use realms_tests::http::HttpServer;
use realms_tests::scratch::unique;

use super::{Booted, Publisher, free_port, package, provision_root, realms, wait_for};

const SCHEMA: &str = include_str!("../../../crates/provision/testdata/ignition-3.4.0.schema.json");

#[test]
fn a_machine_given_the_ignition_config_provisions_itself_on_first_boot() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let ign1 = package(work, "ign", "1");
    p.publish("main", &[&ign1], &[]);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let _server = HttpServer::serve(&p.serve, addr);

    // The operator's side: a manifest, a drop-in and the repository's public key.
    let manifest = work.join("fleet.yaml");
    fs::write(
        &manifest,
        format!("composable:\n  default_repository: http://{addr}/main\n  packages: []\n"),
    )
    .unwrap();
    let dropin = work.join("50-ign.yaml");
    fs::write(
        &dropin,
        "composable:\n  packages:\n    - name: ign\n      profile: nonetwork\n      enable: [ign.service]\n      start: [ign.service]\n",
    )
    .unwrap();
    let key = p.keys.join("etc/realms/keys.d/repo.pub");
    let (m, d, k) = (
        manifest.to_str().unwrap(),
        dropin.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let config = realms(
        &p.keys,
        &["provision", "ignition", m, "--dropin", d, "--key", k],
    );
    let doc: serde_json::Value = serde_json::from_str(&config).unwrap();
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    let errors: Vec<String> = jsonschema::validator_for(&schema)
        .unwrap()
        .iter_errors(&doc)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{config}");
    assert_eq!(doc["ignition"]["version"], "3.4.0");
    let butane = realms(
        &p.keys,
        &[
            "provision",
            "ignition",
            m,
            "--dropin",
            d,
            "--key",
            k,
            "--butane",
        ],
    );
    assert!(
        butane.contains("variant: fcos\nversion: 1.5.0\n"),
        "{butane}"
    );

    // The machine: an OS image with realms and its units (as the .deb installs them), no
    // manifest, no key, nothing enabled; then Ignition's files stage.
    let tree = provision_root("provision-ign");
    let root = tree.path().to_path_buf();
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd");
    let units = root.join("usr/lib/systemd/system");
    for e in fs::read_dir(&dist).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("realms-provision") {
            fs::copy(e.path(), units.join(&name)).unwrap();
        }
    }
    assert!(!root.join("etc/realms/provision.yaml").exists());
    let enabled = realms_tests::ignition::apply(&root, &config);
    assert!(
        enabled.contains(&"realms-provision.service".to_string()),
        "{enabled:?}"
    );
    assert_eq!(
        fs::read(root.join("etc/realms/provision.yaml")).unwrap(),
        fs::read(&manifest).unwrap()
    );
    assert_eq!(
        fs::read(root.join("etc/realms/provision.d/50-ign.yaml")).unwrap(),
        fs::read(&dropin).unwrap()
    );
    assert_eq!(
        fs::read(root.join("etc/realms/keys.d/repo.pub")).unwrap(),
        fs::read(&key).unwrap()
    );
    // The wants link, as PID 1's preset-all makes it (its target is a path inside the root).
    let link = root.join("etc/systemd/system/multi-user.target.wants/realms-provision.service");
    let target = fs::read_link(&link).expect("the preset did not enable realms-provision.service");
    assert!(
        target.ends_with("systemd/system/realms-provision.service"),
        "{}",
        target.display()
    );

    let b = Booted {
        c: Container::boot(&root, &unique("provision-ign"), &[]),
        _tree: tree,
    };
    wait_for(&b, "test -e /var/lib/realms/provision/first-boot.done");
    assert_eq!(
        b.ok("systemctl is-enabled realms-provision.service").trim(),
        "enabled"
    );
    wait_for(&b, "systemctl is-active ign.service");
    let families = b.ok("systemctl show -p RestrictAddressFamilies --value ign.service");
    assert!(
        !families.contains("AF_INET") && families.contains("AF_UNIX"),
        "nonetwork: {families}"
    );
    assert!(b.ok("portablectl list --no-legend").contains("ign_1"));
    assert!(b.ok("realms provision apply").contains("nothing changed"));
    b.c.stop();
}
