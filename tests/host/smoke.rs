//! Host-tier smoke tests: each proves one capability of the tier is real on this machine.

use std::process::Command;

use realms_tests::container::{Container, nspawn_prerequisites};
use realms_tests::fixtures::debian_base;
use realms_tests::run::run;
use realms_tests::scratch::{Scratch, unique};

#[test]
fn nspawn_runs_true_in_the_debian_base() {
    nspawn_prerequisites();
    let base = debian_base();
    let out = run(Command::new("systemd-nspawn")
        .args(["-q", "--register=no", "--keep-unit", "--read-only", "-D"])
        .arg(base)
        .args([
            "/bin/sh",
            "-c",
            "/bin/true && . /etc/os-release && echo $ID $VERSION_CODENAME",
        ]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "debian bookworm"
    );
}

#[test]
fn debian_base_boots_in_a_container() {
    let tree = Scratch::snapshot(debian_base(), "boot");
    let c = Container::boot(tree.path(), &unique("smoke"), &[]);
    let state = c.exec(&["systemctl", "is-system-running"]);
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    assert!(
        state == "running" || state == "degraded",
        "is-system-running said {state:?}"
    );
    assert_eq!(c.sh("systemd-detect-virt").trim(), "systemd-nspawn");
    c.stop();
}
