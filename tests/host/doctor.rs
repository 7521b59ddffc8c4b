//! `realms doctor` on the host conditions it must find and fix for real: a leftover loop device
//! on a file of the store, a mount inside a stopped realm, a process running a realm's
//! container that no pid file knows, and a zone's bridge and nftables table that no realm is
//! in. (The store conditions are made and fixed in crates/realm/src/doctor/tests.rs, the
//! orphaned portable services in crates/portable/src/doctor.rs.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use realms_tests::fixtures::fixtures_dir;
use realms_tests::realms::{forget_zone, name};
use realms_tests::require;
use realms_tests::run::{output, run};
use realms_tests::scratch::{unique, unmount_below};

/// What the test made on the host, taken away again whatever happens.
struct Made {
    root: PathBuf,
    loop_dev: Option<String>,
    child: Option<Child>,
    zone: String,
}

impl Drop for Made {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dev) = &self.loop_dev
            && Path::new(dev).exists()
        {
            let _ = Command::new("losetup").args(["-d", dev]).output();
        }
        forget_zone(&self.root, &self.zone);
        unmount_below(&self.root);
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn realms(root: &Path, args: &[&str]) -> std::process::Output {
    output(
        Command::new(realms_tests::realms_bin())
            .arg("--root")
            .arg(root)
            .args(args),
    )
}

fn doctor(root: &Path, args: &[&str]) -> (bool, serde_json::Value) {
    let mut all = vec!["--json", "doctor"];
    all.extend_from_slice(args);
    let out = realms(root, &all);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

fn kinds(report: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn doctor_finds_and_fixes_leftover_loops_mounts_processes_and_zones() {
    require::root();
    require::tool("nft", "nftables");
    let root = fixtures_dir().join("plain").join(unique("doctor"));
    let zone = name("dz");
    let mut made = Made {
        root: root.clone(),
        loop_dev: None,
        child: None,
        zone: zone.clone(),
    };
    // A store on a plain filesystem with one overlay realm on a tiny tree image.
    fs::create_dir_all(root.join("storage/appimg/base.appimg/usr/bin")).unwrap();
    let new = realms(&root, &["new", "work"]);
    assert!(new.status.success(), "{new:?}");
    let store = root.join("storage/realms");
    assert_eq!(
        doctor(&root, &[]),
        (true, serde_json::json!({"findings": []}))
    );

    // A loop device on a file of the store that nothing mounts.
    let raw = store.join("realm-work/image/leftover.raw");
    fs::create_dir_all(raw.parent().unwrap()).unwrap();
    run(Command::new("truncate").args(["-s", "1M"]).arg(&raw));
    let raw = fs::canonicalize(&raw).unwrap(); // as the kernel names the backing file
    let dev = output(Command::new("losetup").args(["-f", "--show"]).arg(&raw));
    assert!(dev.status.success(), "{dev:?}");
    let dev = String::from_utf8_lossy(&dev.stdout).trim().to_string();
    made.loop_dev = Some(dev.clone());
    // A mount on the root of the stopped realm.
    let rootfs = store.join("realm-work/rootfs");
    run(Command::new("mount")
        .args(["-t", "tmpfs", "doctor-test"])
        .arg(&rootfs));
    // A process running the realm's container that no pid file knows (its arguments are what
    // nspawn is given).
    let child = Command::new("sh")
        .args(["-c", "while sleep 1; do :; done", "systemd-nspawn"])
        .arg(format!("--directory={}", rootfs.display()))
        .spawn()
        .unwrap();
    let pid = child.id();
    made.child = Some(child);
    // A zone of the store set up on the host (record, bridge, table) that no realm is in.
    let set = realms(&root, &["zone", &zone, "nat", "on"]);
    assert!(set.status.success(), "{set:?}");
    let bridge = format!("vz-{zone}");
    let table = format!("realms-zone-{zone}");
    run(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]));
    run(Command::new("nft").args(["add", "table", "inet", &table]));

    let (healthy, found) = doctor(&root, &[]);
    assert!(
        !healthy,
        "doctor exits non-zero while there is something to fix"
    );
    assert_eq!(
        kinds(&found),
        [
            "leftover-loop",
            "leftover-mount",
            "orphaned-nspawn",
            "unused-zone"
        ],
        "{found:#}"
    );
    let text = String::from_utf8_lossy(&realms(&root, &["doctor"]).stdout).into_owned();
    for what in [dev.as_str(), &rootfs.display().to_string(), &bridge] {
        assert!(text.contains(what), "{what} not named in:\n{text}");
    }

    let (ok, fixed) = doctor(&root, &["--fix"]);
    assert!(ok, "{fixed:#}");
    for f in fixed["findings"].as_array().unwrap() {
        assert_eq!(f["outcome"]["state"], "fixed", "{f:#}");
    }
    // Attached to our file, that is: another test may take the freed number at once.
    let n = dev.trim_start_matches("/dev/loop");
    let backing = fs::read_to_string(format!("/sys/block/loop{n}/loop/backing_file"));
    assert!(
        !backing.is_ok_and(|b| Path::new(b.trim_end()) == raw),
        "{dev} is still attached"
    );
    assert!(!realms_sys::mount::is_mountpoint(&rootfs).unwrap());
    let mut child = made.child.take().unwrap();
    assert!(child.try_wait().unwrap().is_some() || !Path::new(&format!("/proc/{pid}")).exists());
    let _ = child.wait();
    assert!(!Path::new("/sys/class/net").join(&bridge).exists());
    let tables = output(Command::new("nft").args(["list", "tables"]));
    assert!(!String::from_utf8_lossy(&tables.stdout).contains(&table));
    // The zone's settings stay; the realm is untouched.
    assert!(
        fs::read_to_string(store.join("zones.toml"))
            .unwrap()
            .contains(&zone)
    );
    assert!(store.join("realm-work/home").is_dir());
    assert_eq!(
        doctor(&root, &[]),
        (true, serde_json::json!({"findings": []}))
    );
}

#[test]
fn doctor_stops_what_is_left_of_a_realm_whose_nspawn_was_killed() {
    let t = realms_tests::realms::TestRoot::btrfs();
    let r = name("dk");
    t.ok(&["new", &r]);
    let init = crate::run::start_and_kill_nspawn(&t, &r);
    let (healthy, found) = doctor(t.path(), &[]);
    assert!(!healthy);
    let orphan = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "orphaned-nspawn")
        .unwrap_or_else(|| panic!("the orphan is not found: {found:#}"));
    assert!(
        orphan["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("realm-{r}")),
        "{orphan}"
    );
    let (ok, fixed) = doctor(t.path(), &["--fix"]);
    assert!(ok, "{fixed:#}");
    assert!(
        !realms_sys::proc::pid_alive(init),
        "doctor --fix left the orphaned init running"
    );
    assert_eq!(
        doctor(t.path(), &[]),
        (true, serde_json::json!({"findings": []}))
    );
}
