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
        let out = t.ok(&["appimg", "rollback", "base"]);
        assert!(out.contains("Rolled base appimg back"), "{out}");
        assert!(!t.path().join("storage/appimg/base.appimg/etc/v").exists());
        let err = t.fails(&["appimg", "rollback", "base"]);
        assert!(err.contains("already rolled back"), "{err}");
        assert!(
            !t.path().join("storage/appimg/base.appimg/etc/v").exists(),
            "the second rollback rolled forward"
        );
        // The next update is a new version past both.
        let out = t.ok(&["update-appimg", "base", "--", "true"]);
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
        let out = t.ok(&["rebase", &r]);
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
    let out = t.ok(&[
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
    let stdout = String::from_utf8_lossy(&out.stdout);
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
