//! The verbs users of Incus, machinectl and distrobox expect (status, logs, snapshot, clone,
//! rename, rebase, autostart), on btrfs and on a store that is not, and the regression tests of
//! the image-lifecycle and store-creation surprises of issue 8 (items 9 and 10).

use std::fs;
use std::process::{Command, Stdio};
use std::time::Instant;

use realms_tests::realms::{TestRoot, name};

fn both() -> [TestRoot; 2] {
    [TestRoot::btrfs(), TestRoot::plain()]
}

fn json(t: &TestRoot, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = t.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn list_row(t: &TestRoot, realm: &str) -> serde_json::Value {
    json(t, &["list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == realm)
        .cloned()
        .unwrap_or_else(|| panic!("realm {realm} is not listed"))
}

// ---- item 9: reading never creates -------------------------------------------------------

#[test]
fn read_only_commands_never_create_the_store() {
    let scratch = realms_tests::fixtures::fixtures_dir()
        .join("plain")
        .join(realms_tests::scratch::unique("ro"));
    fs::create_dir_all(&scratch).unwrap();
    let bin = realms_tests::realms_bin();
    let realms = |args: &[&str]| {
        Command::new(&bin)
            .arg("--root")
            .arg(&scratch)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["list"][..],
        &["appimg", "list"],
        &["appimg", "key", "list"],
        &["zone"],
        &["default"],
        &["current"],
    ] {
        let out = realms(args);
        assert!(out.status.success(), "realms {args:?}: {out:?}");
    }
    let left: Vec<_> = fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "reading created {left:?}");

    // A --root with a typo is an error naming it, and nothing is created.
    let typo = scratch.join("tpyo");
    let out = Command::new(&bin)
        .arg("--root")
        .arg(&typo)
        .args(["new", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tpyo"), "{err}");
    assert!(!typo.exists());

    // The first mutating command creates the store and says so on stderr.
    let out = realms(&["init"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Created the realm store"), "{err}");
    assert!(scratch.join("storage/realms/config").exists());

    // On a read-only root, reading works.
    let ro = Command::new("mount")
        .arg("--bind")
        .arg(&scratch)
        .arg(&scratch)
        .status()
        .unwrap()
        .success()
        && Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(&scratch)
            .status()
            .unwrap()
            .success();
    assert!(ro, "could not make {} read-only", scratch.display());
    let listed = realms(&["list"]);
    let images = realms(&["appimg", "list"]);
    let _ = Command::new("umount").arg(&scratch).status();
    assert!(listed.status.success(), "{listed:?}");
    assert!(images.status.success(), "{images:?}");
    let _ = fs::remove_dir_all(&scratch);
}

// ---- item 10: image lifecycle surprises ---------------------------------------------------

#[test]
fn appimg_rollback_twice_does_not_roll_forward() {
    for t in both() {
        t.ok(&[
            "update-appimg",
            "base",
            "--",
            "sh",
            "-c",
            "echo v2 > /etc/v",
        ]);
        let out = t.said(&["appimg", "rollback", "base"]);
        assert!(out.contains("Rolled base appimg back"), "{out}");
        assert!(!t.path().join("storage/appimg/base.appimg/etc/v").exists());
        let err = t.fails(&["appimg", "rollback", "base"]);
        assert!(err.contains("already rolled back"), "{err}");
        assert!(
            !t.path().join("storage/appimg/base.appimg/etc/v").exists(),
            "the second rollback rolled forward"
        );
        // The next update is a new version past both.
        let out = t.said(&["update-appimg", "base", "--", "true"]);
        assert!(out.contains("to version"), "{out}");
    }
}

#[test]
fn overlay_realms_on_an_old_version_are_listed_and_rebase_moves_them() {
    let t = TestRoot::plain();
    let r = name("pin");
    t.ok(&["new", &r]);
    t.ok(&["update-appimg", "base", "--", "sh", "-c", "echo 2 > /etc/v"]);
    t.ok(&["update-appimg", "base", "--", "sh", "-c", "echo 3 > /etc/v"]);
    let row = list_row(&t, &r);
    assert_eq!(row["behind"], true, "{row}");
    let images = t.ok(&["appimg", "list"]);
    assert!(
        images.contains("kept: base.appimg.old-1") && images.contains(&format!("'{r}'")),
        "{images}"
    );
    let listed = t.ok(&["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&r) && l.contains("(old)")),
        "{listed}"
    );
    fs::write(t.realms_dir().join(format!("realm-{r}/home/kept")), "mine").unwrap();
    let out = json(&t, &["rebase", &r]);
    assert_eq!(out["version"], "3", "{out}");
    assert_eq!(list_row(&t, &r)["behind"], false);
    assert!(
        !t.path().join("storage/appimg/base.appimg.old-1").exists(),
        "the kept version nobody uses any more remains"
    );
    assert_eq!(
        t.ok(&["run", &r, "--", "cat", "/etc/v", "/home/user/kept"]),
        "3\nmine"
    );
    t.ok(&["stop", &r]);
}

#[test]
fn rebase_moves_a_snapshot_realm_to_the_current_image_keeping_home_and_config() {
    for t in both() {
        let r = name("rb");
        t.ok(&["new", &r]);
        t.ok(&["config", &r, "use-gpu", "true"]);
        fs::write(t.realms_dir().join(format!("realm-{r}/home/kept")), "mine").unwrap();
        t.ok(&[
            "update-appimg",
            "base",
            "--",
            "sh",
            "-c",
            "echo new > /etc/v",
        ]);
        assert_eq!(list_row(&t, &r)["behind"], true);
        t.ok(&["start", &r]);
        let err = t.fails(&["rebase", &r]);
        assert!(err.contains("running") && err.contains("stop"), "{err}");
        t.ok(&["stop", &r]);
        let out = t.said(&["rebase", &r]);
        assert!(out.contains("rebased on base appimg"), "{out}");
        assert_eq!(list_row(&t, &r)["behind"], false);
        assert_eq!(t.ok(&["config", &r, "use-gpu"]).trim(), "use-gpu = true");
        assert_eq!(
            t.ok(&["run", &r, "--", "cat", "/etc/v", "/home/user/kept"]),
            "new\nmine"
        );
        t.ok(&["stop", &r]);
    }
}

#[test]
fn build_refuses_a_downgrade_before_building() {
    let t = TestRoot::btrfs();
    t.ok(&[
        "appimg",
        "build",
        "dg",
        "--from",
        "base",
        "--format",
        "squashfs",
        "--version",
        "5",
    ]);
    let started = Instant::now();
    let out = t.realms(&[
        "appimg",
        "build",
        "dg",
        "--from",
        "base",
        "--format",
        "squashfs",
        "--version",
        "3",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("older"), "{err}");
    assert!(!err.contains("making the"), "it built first: {err}");
    assert!(started.elapsed().as_secs() < 5, "it built first");
    let leftovers: Vec<_> = fs::read_dir(t.path().join("storage/appimg"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn build_from_a_missing_image_names_it() {
    let t = TestRoot::btrfs();
    let err = t.fails(&[
        "appimg", "build", "x", "--from", "nosuch", "--format", "erofs",
    ]);
    assert!(
        err.contains("no application image or directory named 'nosuch'"),
        "{err}"
    );
    assert!(!err.contains("operating system tree"), "{err}");
}

#[test]
fn key_option_takes_a_key_name() {
    let t = TestRoot::btrfs();
    t.ok(&["appimg", "key", "generate", "builder"]);
    let out = t.said(&[
        "appimg", "build", "sk", "--from", "base", "--format", "erofs", "--seal", "--key",
        "builder",
    ]);
    assert!(out.contains("Built sealed appimg 'sk'"), "{out}");
    t.ok(&["appimg", "verify", "sk"]);
    let err = t.fails(&[
        "appimg", "build", "sk2", "--from", "base", "--format", "erofs", "--seal", "--key",
        "nobody",
    ]);
    assert!(err.contains("no private key named 'nobody'"), "{err}");
}

#[test]
fn interactive_update_appimg_says_the_exit_status_decides() {
    let t = TestRoot::btrfs();
    let mut child = t
        .command(&["update-appimg", "base"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"touch /etc/tried; exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // What update-appimg says goes to stderr; stdout belongs to the shell.
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let said = stdout.find("exit status decides").expect(&stdout);
    let unchanged = stdout.find("unchanged").expect(&stdout);
    assert!(said < unchanged, "{stdout}");
    assert!(
        !t.path()
            .join("storage/appimg/base.appimg/etc/tried")
            .exists()
    );
}

// ---- snapshot, clone, rename ---------------------------------------------------------------

fn home(t: &TestRoot, realm: &str) -> std::path::PathBuf {
    t.realms_dir().join(format!("realm-{realm}/home"))
}

#[test]
fn snapshot_restore_and_remove_on_both_stores() {
    for t in both() {
        let r = name("sn");
        t.ok(&["new", &r]);
        t.ok(&["run", &r, "--", "sh", "-c", "echo one > /etc/marker"]);
        fs::write(home(&t, &r).join("file"), "one").unwrap();
        let err = t.fails(&["snapshot", &r]);
        assert!(
            err.contains("running") && err.contains("stop it first"),
            "{err}"
        );
        t.ok(&["stop", &r]);
        let snap = json(&t, &["snapshot", &r]);
        assert_eq!(snap["snapshot"]["name"], "snap0", "{snap}");
        t.ok(&["snapshot", "create", &r, "named"]);
        let listed = json(&t, &["snapshot", "list", &r]);
        let names: Vec<_> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["snap0", "named"], "{listed}");

        t.ok(&["run", &r, "--", "sh", "-c", "echo two > /etc/marker"]);
        fs::remove_file(home(&t, &r).join("file")).unwrap();
        t.ok(&["config", &r, "use-gpu", "true"]);
        let err = t.fails(&["snapshot", "restore", &r, "snap0"]);
        assert!(err.contains("running"), "{err}");
        t.ok(&["stop", &r]);
        let out = t.said(&["snapshot", "restore", &r, "snap0"]);
        assert!(out.contains("restored to snapshot 'snap0'"), "{out}");
        assert_eq!(
            fs::read_to_string(home(&t, &r).join("file")).unwrap(),
            "one"
        );
        assert_eq!(t.ok(&["config", &r, "use-gpu"]).trim(), "use-gpu = false");
        assert_eq!(t.ok(&["run", &r, "--", "cat", "/etc/marker"]), "one\n");
        t.ok(&["stop", &r]);

        t.ok(&["snapshot", "remove", &r, "named"]);
        let err = t.fails(&["snapshot", "remove", &r, "named"]);
        assert!(err.contains("no snapshot 'named'"), "{err}");
        t.ok(&["remove", &r]);
        assert!(!t.realms_dir().join("snapshots").join(&r).exists());
        let leftovers: Vec<_> = fs::read_dir(t.realms_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n != ".lock")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn clone_copies_a_stopped_realm_on_both_stores() {
    for (t, root) in both().into_iter().zip(["snapshot", "overlay"]) {
        let (a, b) = (name("ca"), name("cb"));
        t.ok(&["new", &a]);
        t.ok(&["run", &a, "--", "sh", "-c", "echo in-a > /etc/marker"]);
        fs::write(home(&t, &a).join("file"), "a").unwrap();
        let err = t.fails(&["clone", &a, &b]);
        assert!(err.contains("running"), "{err}");
        t.ok(&["stop", &a]);
        let out = json(&t, &["clone", &a, &b]);
        assert_eq!(out["root"], root, "{out}");
        let err = t.fails(&["clone", &a, &b]);
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(fs::read_to_string(home(&t, &b).join("file")).unwrap(), "a");
        assert_eq!(t.ok(&["run", &b, "--", "cat", "/etc/marker"]), "in-a\n");
        t.ok(&["run", &b, "--", "sh", "-c", "echo in-b > /etc/marker"]);
        assert_eq!(t.ok(&["run", &a, "--", "cat", "/etc/marker"]), "in-a\n");
        t.ok(&["stop", &a]);
        t.ok(&["stop", &b]);
    }
}

#[test]
fn rename_moves_links_snapshots_and_leases_on_both_stores() {
    for t in both() {
        let (old, new) = (name("ro"), name("rn"));
        t.ok(&["new", &old]);
        t.ok(&["default", &old]);
        t.ok(&["start", &old]);
        let err = t.fails(&["rename", &old, &new]);
        assert!(
            err.contains("running") && err.contains("stop it first"),
            "{err}"
        );
        t.ok(&["stop", &old]);
        t.ok(&["snapshot", &old]);
        // A stale lease and a current link a crash left behind must follow the realm too.
        let leases = t.path().join("run/realms/leases/zz");
        fs::create_dir_all(&leases).unwrap();
        fs::write(leases.join("99"), &old).unwrap();
        std::os::unix::fs::symlink(
            format!("/realms/realm-{old}"),
            t.path().join("run/realms/current.realm"),
        )
        .unwrap();

        let out = t.said(&["rename", &old, &new]);
        assert!(
            out.contains(&format!("Renamed realm '{old}' to '{new}'")),
            "{out}"
        );
        assert!(!t.realms_dir().join(format!("realm-{old}")).exists());
        assert_eq!(t.ok(&["default"]).trim(), format!("Default Realm: {new}"));
        assert_eq!(
            fs::read_link(t.path().join("run/realms/current.realm")).unwrap(),
            std::path::PathBuf::from(format!("/realms/realm-{new}"))
        );
        assert_eq!(fs::read_to_string(leases.join("99")).unwrap(), new);
        let snaps = json(&t, &["snapshot", "list", &new]);
        assert_eq!(snaps[0]["realm"], new.as_str(), "{snaps}");
        assert!(!t.realms_dir().join("snapshots").join(&old).exists());
        fs::remove_file(leases.join("99")).unwrap();
        t.ok(&["start", &new]);
        assert_eq!(list_row(&t, &new)["running"], true);
        t.ok(&["stop", &new]);
    }
}

// ---- status, logs, autostart ---------------------------------------------------------------

#[test]
fn status_and_logs_on_both_stores() {
    for t in both() {
        let r = name("st");
        t.ok(&["new", &r]);
        let stopped = json(&t, &["status", &r]);
        assert_eq!(stopped["running"], false, "{stopped}");
        let err = t.fails(&["logs", &r]);
        assert!(err.contains("no log yet"), "{err}");

        t.ok(&["start", &r]);
        let s = json(&t, &["status", &r]);
        assert_eq!(s["running"], true, "{s}");
        assert!(s["leader"].as_u64().unwrap() > 1, "{s}");
        assert!(s["uptime"].as_u64().is_some(), "{s}");
        assert!(
            s["address"].as_str().is_some_and(|a| a.starts_with("10.")),
            "{s}"
        );
        assert_eq!(s["appimg"], "base", "{s}");
        assert_eq!(s["options"]["use-gpu"], false, "{s}");
        let text = t.ok(&["status", &r]);
        assert!(
            text.contains("State: running") && text.contains("Image: base"),
            "{text}"
        );

        // The realm's own journal, read from the host.
        t.ok(&[
            "run",
            &r,
            "--",
            "logger",
            "-t",
            "verbs",
            "hello-from-the-realm",
        ]);
        t.ok(&["run", &r, "--", "journalctl", "--flush"]);
        let logs = t.ok(&["logs", &r, "-n", "200"]);
        assert!(logs.contains("hello-from-the-realm"), "{logs}");
        let out = t.ok(&["--json", "logs", &r, "-n", "5"]);
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            assert!(v.is_object(), "{line}");
        }
        t.ok(&["stop", &r]);
    }
}

#[test]
fn autostart_realms_start_with_the_default_one() {
    let t = TestRoot::btrfs();
    let (d, a, other) = (name("ad"), name("aa"), name("ao"));
    for r in [&d, &a, &other] {
        t.ok(&["new", r]);
    }
    t.ok(&["default", &d]);
    let out = t.said(&["autostart", &a, "on"]);
    assert!(out.contains("starts at boot"), "{out}");
    assert_eq!(list_row(&t, &a)["autostart"], true);
    let started = json(&t, &["start", "--autostart"]);
    let names: Vec<_> = started
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["realm"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [d.clone(), a.clone()], "{started}");
    assert_eq!(list_row(&t, &d)["running"], true);
    assert_eq!(list_row(&t, &a)["running"], true);
    assert_eq!(list_row(&t, &other)["running"], false);
    t.ok(&["autostart", &a, "off"]);
    assert_eq!(list_row(&t, &a)["autostart"], false);
    let unit = fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dist/systemd/realms-default.service"),
    )
    .unwrap();
    assert!(unit.contains("start --autostart"), "{unit}");
}

#[test]
fn a_snapshot_of_an_overlay_realm_keeps_its_image_version() {
    let t = TestRoot::plain();
    let r = name("pn");
    t.ok(&["new", &r]);
    t.ok(&["snapshot", &r, "s0"]);
    t.ok(&["update-appimg", "base", "--", "sh", "-c", "echo 2 > /etc/v"]);
    t.ok(&["rebase", &r]);
    t.ok(&["update-appimg", "base", "--", "sh", "-c", "echo 3 > /etc/v"]);
    // The first version is gone from .prev but kept for the snapshot.
    let images = t.ok(&["appimg", "list"]);
    assert!(
        images.contains("kept: base.appimg.old-1") && images.contains("(snapshot s0)"),
        "{images}"
    );
    let err = t.fails(&["appimg", "remove", "base"]);
    assert!(err.contains("(snapshot s0)"), "{err}");
    t.ok(&["snapshot", "restore", &r, "s0"]);
    let out = t.realms(&["run", &r, "--", "cat", "/etc/v"]);
    assert!(
        !out.status.success(),
        "the restored realm is not on the first version"
    );
    t.ok(&["stop", &r]);
    t.ok(&["snapshot", "remove", &r, "s0"]);
    assert!(t.path().join("storage/appimg/base.appimg.old-1").exists());
    t.ok(&["rebase", &r]);
    assert!(
        !t.path().join("storage/appimg/base.appimg.old-1").exists(),
        "a version nothing uses is kept"
    );
}

/// Under a systemd PID 1 (a booted container), the shipped realms-default.service starts the
/// realms with autostart at boot, also when there is no default realm.
#[test]
fn autostart_realms_start_at_boot_under_systemd() {
    use realms_tests::container::Container;
    use realms_tests::fixtures::debian_base;
    use realms_tests::scratch::{Scratch, unique};

    let tree = Scratch::snapshot(debian_base(), "autoboot");
    let root = tree.path();
    fs::create_dir_all(root.join("storage/appimg")).unwrap();
    realms_tests::run::run(
        Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(debian_base())
            .arg(root.join("storage/appimg/base.appimg")),
    );
    fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms")).unwrap();
    let realms = |args: &[&str]| {
        realms_tests::run::run(
            Command::new(realms_tests::realms_bin())
                .arg("--root")
                .arg(root)
                .args(args),
        )
    };
    let (auto, manual) = (name("ab"), name("mb"));
    realms(&["new", &auto]);
    realms(&["new", &manual]);
    realms(&["autostart", &auto, "on"]);
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/systemd/realms-default.service"
    );
    fs::copy(unit, root.join("etc/systemd/system/realms-default.service")).unwrap();
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/realms-default.service",
        wants.join("realms-default.service"),
    )
    .unwrap();

    let c = Container::boot(root, &unique("autoboot"), &["--private-network"]);
    c.sh("systemd-analyze verify /etc/systemd/system/realms-default.service");
    let active = |realm: &str| {
        let out = c.exec(&["systemctl", "is-active", &format!("realm-{realm}.service")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        active(&auto),
        "active",
        "{}",
        c.sh("journalctl --no-pager -n 40 -o cat -u realms-default.service || true")
    );
    assert_ne!(active(&manual), "active");
    let status = c.sh(&format!("realms status {auto}"));
    assert!(
        status.contains("State: running") && status.contains("autostart"),
        "{status}"
    );
    c.sh(&format!("realms stop {auto}"));
    c.stop();
}
