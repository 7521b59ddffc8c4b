//! Host-tier smoke tests: each proves one capability of the tier is real on this machine.

use std::process::Command;

use realms_tests::container::{Container, nspawn_prerequisites};
use realms_tests::fixtures::debian_base;
use realms_tests::run::run;
use realms_tests::scratch::{Scratch, unique};

#[test]
fn btrfs_snapshots_through_crates_sys_hold_the_files() {
    let src = Scratch::empty("sysbtrfs");
    std::fs::write(src.path().join("hello"), "from the source\n").unwrap();
    let snap = src.path().with_file_name(unique("sysbtrfs-snap"));
    realms_sys::btrfs::snapshot(src.path(), &snap, true).unwrap();
    let seen = std::fs::read_to_string(snap.join("hello"));
    let read_only = realms_sys::btrfs::is_readonly(&snap);
    realms_sys::btrfs::delete_subvolume(&snap).unwrap();
    assert_eq!(seen.unwrap(), "from the source\n");
    assert!(read_only.unwrap());
    assert!(!snap.exists());
}

/// Issue 2: parsing and writing back every unit file of the Debian base is byte-identical.
#[test]
fn unit_files_of_the_debian_base_round_trip_byte_for_byte() {
    let dir = debian_base().join("usr/lib/systemd/system");
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                files.push(e.path());
            }
        }
    }
    assert!(
        files.len() > 100,
        "only {} unit files under {}",
        files.len(),
        dir.display()
    );
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let unit =
            realms_unit::UnitFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(unit.to_text(), text, "{} does not round-trip", f.display());
    }
}

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
