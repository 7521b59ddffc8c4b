//! `realms doctor` on a temporary root: each store condition is made by hand, found, and
//! fixed (the host conditions, which need loop devices, mounts and bridges, are in the host
//! tier, tests/host/doctor.rs).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use realms_sys::doctor::{Finding, Kind, Options, Outcome};

use super::{check, run};
use crate::executor::Executor;
use crate::lifecycle;
use crate::store::RealmStore;

/// A pid no process has (above the default pid_max of 4194304).
const DEAD_PID: u32 = 4_194_999;

fn store_with_images() -> (tempfile::TempDir, RealmStore) {
    let root = tempfile::tempdir().unwrap();
    let store = RealmStore::open(root.path())
        .unwrap()
        .with_executor(Executor::Direct);
    for image in ["base", "spare"] {
        fs::create_dir_all(
            root.path()
                .join(format!("storage/appimg/{image}.appimg/usr/bin")),
        )
        .unwrap();
    }
    (root, store)
}

fn kinds(found: &[Finding]) -> Vec<(Kind, String)> {
    found
        .iter()
        .map(|f| {
            (
                f.kind,
                f.path.file_name().unwrap().to_string_lossy().into_owned(),
            )
        })
        .collect()
}

const FIX: Options = Options {
    fix: true,
    force: false,
};
const FORCE: Options = Options {
    fix: true,
    force: true,
};

#[test]
fn a_healthy_store_has_no_findings() {
    let (_root, store) = store_with_images();
    lifecycle::create(&store, "work", "base", &|_| {}).unwrap();
    lifecycle::create(&store, "play", "spare", &|_| {}).unwrap();
    store.set_default("work").unwrap();
    store.set_current("play").unwrap();
    assert_eq!(check(&store).unwrap(), []);
}

#[test]
fn every_store_condition_is_found_and_fixed() {
    let (root, store) = store_with_images();
    let noop = |_| {};
    for name in ["work", "noconfig", "noroot", "orphan", "lowerless"] {
        lifecycle::create(&store, name, "base", &noop).unwrap();
    }
    let dir = store.dir().to_path_buf();
    // A staging directory of a dead process, a half-removed realm, a dead rebase's new root,
    // an image update's retired version.
    fs::create_dir_all(dir.join(format!(".staging-realm-x-{DEAD_PID}/home"))).unwrap();
    fs::create_dir_all(dir.join(".removing-realm-y/home")).unwrap();
    fs::create_dir_all(dir.join(format!("realm-work/.overlay-new-{DEAD_PID}/upper"))).unwrap();
    let images = root.path().join("storage/appimg");
    fs::create_dir_all(images.join(".retired-base-1/usr")).unwrap();
    // A kept older version no realm is on.
    fs::create_dir_all(images.join("base.appimg.old-1/usr")).unwrap();
    // Dangling default and current links.
    symlink("realm-ghost", dir.join("default.realm")).unwrap();
    symlink("/realms/realm-ghost", store.run_dir().join("current.realm")).unwrap();
    // A realm without config, one without root, one whose image is gone too.
    fs::remove_file(store.config_path("noconfig")).unwrap();
    fs::remove_dir_all(store.realm_dir("noroot").join("overlay")).unwrap();
    fs::remove_file(store.realm_dir("noroot").join("lower")).unwrap();
    fs::remove_dir_all(store.realm_dir("orphan").join("overlay")).unwrap();
    fs::write(store.config_path("orphan"), "appimg = \"deleted\"\n").unwrap();
    fs::write(store.realm_dir("orphan").join("home/notes"), "mine").unwrap();
    // An overlay realm whose lower version is gone.
    let lower = store.realm_dir("lowerless").join("lower");
    fs::remove_file(&lower).unwrap();
    symlink("/storage/appimg/base.appimg.old-7", &lower).unwrap();
    // Stale pid files: a dead process, and a live one of a realm that does not exist.
    fs::write(store.run_dir().join("realm-work.pid"), DEAD_PID.to_string()).unwrap();
    fs::write(store.run_dir().join("realm-work.leader"), "garbage").unwrap();
    fs::write(
        store.run_dir().join("realm-ghost.pid"),
        std::process::id().to_string(),
    )
    .unwrap();

    let found = check(&store).unwrap();
    let expected = [
        (Kind::StaleStaging, ".removing-realm-y".to_string()),
        (Kind::StaleStaging, format!(".staging-realm-x-{DEAD_PID}")),
        (Kind::StaleStaging, format!(".overlay-new-{DEAD_PID}")),
        (Kind::StaleStaging, ".retired-base-1".to_string()),
        (Kind::DanglingDefault, "default.realm".to_string()),
        (Kind::DanglingCurrent, "current.realm".to_string()),
        (Kind::RealmWithoutRoot, "realm-noroot".to_string()),
        (Kind::RealmWithoutRoot, "realm-orphan".to_string()),
        (Kind::RealmWithoutConfig, "config".to_string()),
        (Kind::UnusedImage, "base.appimg.old-1".to_string()),
        (Kind::UnusedImage, "spare.appimg".to_string()),
        (Kind::MissingLower, "lower".to_string()),
        (Kind::StalePidFile, "realm-ghost.pid".to_string()),
        (Kind::StalePidFile, "realm-work.leader".to_string()),
        (Kind::StalePidFile, "realm-work.pid".to_string()),
    ];
    let mut got = kinds(&found);
    got.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(got, want, "{found:#?}");
    assert!(found.iter().all(|f| f.outcome == Outcome::Found));
    assert!(
        found
            .iter()
            .all(|f| !f.fix.is_empty() && !f.problem.is_empty())
    );

    // --fix repairs everything but what deletes user data.
    let fixed = run(&store, FIX, &noop).unwrap();
    for f in &fixed {
        let want = if f.needs_force {
            Outcome::NeedsForce
        } else {
            Outcome::Fixed
        };
        assert_eq!(f.outcome, want, "{f:#?}");
    }
    let forced: Vec<(Kind, String)> = kinds(&check(&store).unwrap());
    assert_eq!(
        forced,
        [
            (Kind::RealmWithoutRoot, "realm-orphan".to_string()),
            (Kind::UnusedImage, "spare.appimg".to_string()),
            (Kind::MissingLower, "lower".to_string()),
        ]
    );
    assert_eq!(
        fs::read_to_string(store.realm_dir("orphan").join("home/notes")).unwrap(),
        "mine",
        "a home was deleted without --force"
    );
    assert!(store.images().get("spare").is_ok());
    // What the fixes made is right: a config, a new root.
    assert!(store.config("noconfig").is_ok());
    assert_eq!(
        fs::read_link(store.realm_dir("noroot").join("lower")).unwrap(),
        Path::new("/storage/appimg/base.appimg")
    );
    assert_eq!(store.default_realm(), None);
    assert_eq!(store.current_realm(), None);

    // --fix --force does the rest.
    let all = run(&store, FORCE, &noop).unwrap();
    assert!(all.iter().all(|f| f.outcome == Outcome::Fixed), "{all:#?}");
    assert_eq!(check(&store).unwrap(), []);
    assert!(!store.realm_dir("orphan").exists());
    assert!(store.images().get("spare").is_err());
    assert_eq!(
        fs::read_link(&lower).unwrap(),
        Path::new("/storage/appimg/base.appimg")
    );
}

#[test]
fn a_live_staging_directory_is_not_a_leftover() {
    let (_root, store) = store_with_images();
    lifecycle::create(&store, "work", "base", &|_| {}).unwrap();
    lifecycle::create(&store, "play", "spare", &|_| {}).unwrap();
    let live = store
        .dir()
        .join(format!(".staging-realm-z-{}", std::process::id()));
    fs::create_dir_all(&live).unwrap();
    assert_eq!(check(&store).unwrap(), []);
}
