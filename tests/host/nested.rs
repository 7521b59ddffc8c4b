//! Realms under a systemd PID 1: inside a booted systemd container (nested nspawn works there),
//! a realm is the unit realm-NAME.service registered with machined, and the shipped
//! realms-default.service starts the default realm at boot.

use std::fs;
use std::process::Command;

use realms_tests::container::Container;
use realms_tests::fixtures::debian_base;
use realms_tests::realms::name;
use realms_tests::run::run;
use realms_tests::scratch::{Scratch, unique};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../dist/systemd/realms-default.service"
);

#[test]
fn realms_are_systemd_units_and_the_default_realm_starts_at_boot() {
    let tree = Scratch::snapshot(debian_base(), "nested");
    let root = tree.path();
    // The container's own realm store: the base image and a default realm, made from the host.
    fs::create_dir_all(root.join("storage/appimg")).unwrap();
    run(Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(debian_base())
        .arg(root.join("storage/appimg/base.appimg")));
    fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms")).unwrap();
    let realms = |args: &[&str]| {
        run(Command::new(realms_tests::realms_bin())
            .arg("--root")
            .arg(root)
            .args(args))
    };
    let (boot_realm, other) = (name("boot"), name("unit"));
    realms(&["new", &boot_realm]);
    realms(&["new", &other]);
    realms(&["default", &boot_realm]);
    fs::copy(UNIT, root.join("etc/systemd/system/realms-default.service")).unwrap();
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/realms-default.service",
        wants.join("realms-default.service"),
    )
    .unwrap();

    let c = Container::boot(root, &unique("outer"), &["--private-network"]);
    c.sh("systemd-analyze verify /etc/systemd/system/realms-default.service");
    // The default realm was started at boot, as a unit, registered with machined.
    let state = c.exec(&["systemctl", "is-active", "realms-default.service"]);
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "active",
        "the default-realm unit did not start:\n{}",
        String::from_utf8_lossy(
            &c.exec(&[
                "journalctl",
                "--no-pager",
                "-n",
                "60",
                "-o",
                "cat",
                "-u",
                "realms-default.service",
                "-u",
                "realm-*"
            ])
            .stdout
        )
    );
    assert_eq!(
        c.sh(&format!("systemctl is-active realm-{boot_realm}.service"))
            .trim(),
        "active"
    );
    assert!(c.sh("machinectl list --no-legend").contains(&boot_realm));

    c.sh(&format!("realms start {other}"));
    assert_eq!(
        c.sh(&format!("systemctl is-active realm-{other}.service"))
            .trim(),
        "active"
    );
    let machines = c.sh("machinectl list --no-legend");
    assert!(machines.contains(&other), "{machines}");
    let os = c.sh(&format!("realms run {other} -- cat /etc/os-release"));
    assert!(os.contains("ID=debian"), "{os}");
    let list = c.sh("realms list");
    assert!(
        list.lines()
            .any(|l| l.contains(&other) && l.contains("running")),
        "{list}"
    );
    c.sh(&format!("realms stop {other}"));
    let state = c.exec(&["systemctl", "is-active", &format!("realm-{other}.service")]);
    assert_ne!(String::from_utf8_lossy(&state.stdout).trim(), "active");
    assert!(!c.sh("machinectl list --no-legend").contains(&other));
    c.stop();
}
