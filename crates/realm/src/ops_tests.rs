//! Unit tests of the realm operations on a temporary root (a plain directory, not btrfs): what
//! create, remove, config, default and current do on disk, without starting anything.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use realms_sys::event::{Event, Recorder};

use crate::executor::Executor;
use crate::store::{RealmStore, RootKind};
use crate::{Error, lifecycle, select};

/// A store under a temporary root with a tree image `base` (a plain directory). Realm homes go
/// to whoever runs the test (the owner of the temporary root), so no test needs root.
fn store_with_image() -> (tempfile::TempDir, RealmStore) {
    let root = tempfile::tempdir().unwrap();
    let me = fs::metadata(root.path()).unwrap().uid();
    let store = RealmStore::open(root.path())
        .unwrap()
        .with_executor(Executor::Direct)
        .with_owner(me);
    fs::create_dir_all(root.path().join("storage/appimg/base.appimg/usr/bin")).unwrap();
    (root, store)
}

fn texts(recorder: &Recorder) -> Vec<String> {
    recorder
        .events()
        .iter()
        .map(|e| e.text().to_string())
        .collect()
}

#[test]
fn create_on_a_store_that_is_not_btrfs_makes_an_overlay_realm_without_mounting() {
    let (root, store) = store_with_image();
    let said = Recorder::default();
    fs::create_dir_all(root.path().join("storage/realms/skel")).unwrap();
    fs::write(root.path().join("storage/realms/skel/.bashrc"), "# skel").unwrap();
    lifecycle::create(&store, "work", "base", &said).unwrap();

    let dir = store.realm_dir("work");
    assert_eq!(store.root_kind("work"), RootKind::Overlay);
    assert_eq!(
        fs::read_link(dir.join("lower")).unwrap(),
        Path::new("/storage/appimg/base.appimg")
    );
    for d in ["rootfs", "overlay/upper", "overlay/work", "home"] {
        assert!(dir.join(d).is_dir(), "{d}");
    }
    // Nothing is mounted on the root: it is empty until start.
    assert_eq!(fs::read_dir(dir.join("rootfs")).unwrap().count(), 0);
    assert_eq!(
        fs::read_to_string(dir.join("home/.bashrc")).unwrap(),
        "# skel"
    );
    // The home and what skel put in it belong to the store's owner (the realm user, here the
    // test's own uid), the rest of the realm directory to whoever made it.
    for owned in ["home", "home/.bashrc"] {
        let meta = fs::symlink_metadata(dir.join(owned)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (store.owner(), store.owner()),
            "{owned}"
        );
    }
    // Outside tests the owner is the realm user.
    assert_eq!(
        RealmStore::open(root.path()).unwrap().owner(),
        crate::store::REALM_UID
    );
    assert_eq!(store.config("work").unwrap().appimg(), "base");
    assert_eq!(store.names().unwrap(), ["work"]);
    assert_eq!(
        texts(&said),
        [
            "Populating realm home directory with files from /realms/skel",
            "Realm root is an overlay on '/storage/appimg/base.appimg' (the store is not on btrfs)"
        ]
    );
    assert!(
        said.events()
            .iter()
            .all(|e| matches!(e, Event::Progress(_)))
    );
    // No staging directory is left behind.
    let leftovers: Vec<_> = fs::read_dir(store.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let again = lifecycle::create(&store, "work", "base", &Recorder::default()).unwrap_err();
    assert!(
        matches!(again, Error::RealmExists(ref n) if n == "work"),
        "{again}"
    );
    let missing = lifecycle::create(&store, "other", "nope", &Recorder::default()).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
    assert!(!store.realm_dir("other").exists());
}

#[test]
fn remove_deletes_the_realm_and_refuses_the_default_one() {
    let (_root, store) = store_with_image();
    let quiet = Recorder::default();
    lifecycle::create(&store, "a", "base", &quiet).unwrap();
    lifecycle::create(&store, "b", "base", &quiet).unwrap();
    select::set_default(&store, "a", &quiet).unwrap();

    let err = lifecycle::remove(&store, "a", false, &quiet).unwrap_err();
    assert!(matches!(err, Error::IsDefault(ref n) if n == "a"), "{err}");
    assert!(store.realm_dir("a").exists());

    let said = Recorder::default();
    lifecycle::remove(&store, "b", false, &said).unwrap();
    assert!(!store.realm_dir("b").exists());
    assert_eq!(texts(&said), ["Removed realm 'b'"]);
    assert_eq!(store.names().unwrap(), ["a"]);
    assert!(lifecycle::remove(&store, "b", false, &said).is_err());
}

#[test]
fn config_set_and_get_round_trip_and_check_keys_and_values() {
    let (_root, store) = store_with_image();
    lifecycle::create(&store, "r", "base", &Recorder::default()).unwrap();
    lifecycle::config_set(&store, "r", "use-gpu", "true").unwrap();
    let got = lifecycle::config_get(&store, "r", Some("use-gpu")).unwrap();
    assert_eq!(got, [("use-gpu".to_string(), "true".to_string())]);
    assert!(store.config("r").unwrap().use_gpu());
    lifecycle::config_set(&store, "r", "use-gpu", "false").unwrap();
    assert!(!store.config("r").unwrap().use_gpu());

    let unknown = lifecycle::config_set(&store, "r", "use-nothing", "true").unwrap_err();
    assert!(unknown.to_string().contains("use-nothing"), "{unknown}");
    let bad = lifecycle::config_set(&store, "r", "use-gpu", "maybe").unwrap_err();
    assert!(bad.to_string().contains("maybe"), "{bad}");
    // A refused value leaves the file as it was.
    assert!(!store.config("r").unwrap().use_gpu());
    let all = lifecycle::config_get(&store, "r", None).unwrap();
    assert!(
        all.iter().any(|(k, v)| k == "appimg" && v == "\"base\""),
        "{all:?}"
    );
}

#[test]
fn default_and_current_follow_their_links() {
    let (_root, store) = store_with_image();
    let quiet = Recorder::default();
    lifecycle::create(&store, "a", "base", &quiet).unwrap();
    lifecycle::create(&store, "b", "base", &quiet).unwrap();
    assert_eq!(store.default_realm(), None);

    let said = Recorder::default();
    select::set_default(&store, "a", &said).unwrap();
    select::set_default(&store, "b", &said).unwrap();
    assert_eq!(store.default_realm().as_deref(), Some("b"));
    assert_eq!(
        texts(&said),
        [
            "default realm set to 'a'",
            "default realm changed from 'a' to 'b'"
        ]
    );
    assert!(select::set_default(&store, "nope", &said).is_err());
    assert_eq!(store.default_realm().as_deref(), Some("b"));

    // The current realm: the link under /run/realms, cleared when that realm goes.
    assert_eq!(store.current_realm(), None);
    store.set_current("a").unwrap();
    assert_eq!(store.current_realm().as_deref(), Some("a"));
    store.clear_current("b").unwrap();
    assert_eq!(store.current_realm().as_deref(), Some("a"));
    lifecycle::remove(&store, "a", false, &quiet).unwrap();
    assert_eq!(store.current_realm(), None);
}

/// An update whose container writes `file` into the staged tree and exits with `code`.
fn update(
    store: &RealmStore,
    file: &str,
    code: i32,
    said: &Recorder,
) -> crate::update::UpdateOutcome {
    let command = [std::ffi::OsString::from("true")];
    crate::update::update_appimg_with(store, "base", &command, None, said, &mut |cmd, tree| {
        let line = format!("{cmd:?}");
        assert!(
            line.contains("--register=no") && line.contains("true"),
            "{line}"
        );
        fs::write(tree.join(file), "new").unwrap();
        Ok(code)
    })
    .unwrap()
}

#[test]
fn update_appimg_commits_on_success_discards_on_failure_and_rolls_back() {
    use crate::update::UpdateOutcome;
    let (root, store) = store_with_image();
    let image = root.path().join("storage/appimg/base.appimg");

    let said = Recorder::default();
    assert_eq!(
        update(&store, "failed", 3, &said),
        UpdateOutcome::Discarded(3)
    );
    assert!(!image.join("failed").exists());
    assert_eq!(
        texts(&said).last().unwrap(),
        "The update exited with status 3; base appimg is unchanged"
    );

    let said = Recorder::default();
    assert_eq!(update(&store, "added", 0, &said), UpdateOutcome::Committed);
    assert!(image.join("added").exists());
    assert!(root.path().join("storage/appimg/base.appimg.prev").is_dir());
    assert_eq!(
        texts(&said),
        [
            "Running true on base appimg",
            "Updated base appimg to version 1; the previous version is kept as base.appimg.prev \
             (`realms appimg rollback base` goes back to it)"
        ]
    );

    let said = Recorder::default();
    crate::update::rollback(&store, "base", &said).unwrap();
    assert!(!image.join("added").exists());
    assert!(
        root.path()
            .join("storage/appimg/base.appimg.prev/added")
            .exists()
    );
}

#[test]
fn config_set_on_a_non_utf8_config_replaces_the_whole_file() {
    let (_root, store) = store_with_image();
    lifecycle::create(&store, "r", "base", &Recorder::default()).unwrap();
    let path = store.config_path("r");
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"use-sound = true\n# caf\xe9\n");
    fs::write(&path, &bytes).unwrap();
    for result in [
        lifecycle::config_set(&store, "r", "use-gpu", "true"),
        lifecycle::config_edit(
            &store,
            "r",
            "extra-bindmounts",
            lifecycle::ListEdit::Add("/srv"),
        ),
    ] {
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("UTF-8"),
            "{e}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes, "the config was changed");
    }
}

#[test]
fn realms_list_fails_about_once_in_300_while_a_realm_is_removed() {
    let (_root, store) = store_with_image();
    let quiet = Recorder::default();
    lifecycle::create(&store, "stays", "base", &quiet).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..100 {
                lifecycle::create(&store, "churn", "base", &Recorder::default()).unwrap();
                lifecycle::remove(&store, "churn", false, &Recorder::default()).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut lists = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || lists < 300 {
            let rows = select::list(&store).unwrap();
            for row in &rows {
                assert_eq!(row.error, None, "list {lists}: {}", row.name);
            }
            assert!(rows.iter().any(|r| r.name == "stays"));
            lists += 1;
        }
    });
}

/// The configs and zones files of the hostile corpus: every wrong type, each error naming the
/// file and the key (or zone), `realms list` still listing every realm.
#[test]
fn config_and_zones_corpus_every_wrong_type_names_the_file_and_key() {
    let (_root, store) = store_with_image();
    lifecycle::create(&store, "r", "base", &Recorder::default()).unwrap();
    lifecycle::create(&store, "ok", "base", &Recorder::default()).unwrap();
    let configs: &[(&str, &str)] = &[
        ("use-gpu = \"yes\"\n", "'use-gpu'"),
        ("use-gpu = 1\n", "'use-gpu'"),
        ("network-zone = 5\n", "'network-zone'"),
        ("network-zone = \"Bad!\"\n", "network-zone"),
        ("extra-bindmounts = \"x\"\n", "'extra-bindmounts'"),
        ("extra-bindmounts = [\"relative\"]\n", "extra-bindmounts"),
        ("port-forward = [1]\n", "'port-forward'"),
        ("port-forward = [\"tcp:99999:80\"]\n", "port-forward"),
        ("bogus = 1\n", "`bogus`"),
        ("use-gpu = \n", "'use-gpu'"),
        ("appimg = [\"a\"]\n", "'appimg'"),
        ("[use-gpu]\n", "'use-gpu'"),
        ("autostart = 2020-01-01\n", "'autostart'"),
    ];
    let config = store.config_path("r");
    for (text, key) in configs {
        fs::write(&config, text).unwrap();
        let e = store.config("r").map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains(&config.display().to_string()) && e.contains(key),
            "{text:?}: {e}"
        );
        let rows = select::list(&store).unwrap();
        assert_eq!(rows.len(), 2, "{text:?}");
        assert!(
            rows.iter()
                .any(|r| r.name == "r" && r.error.as_deref().is_some_and(|e| e.contains(key)))
        );
        assert!(rows.iter().any(|r| r.name == "ok" && r.error.is_none()));
        assert!(lifecycle::config_set(&store, "r", "use-sound", "true").is_err());
        assert_eq!(
            fs::read_to_string(&config).unwrap(),
            *text,
            "a refused edit wrote"
        );
    }
    let zones_file = store.dir().join("zones.toml");
    let zones: &[(&str, &str)] = &[
        ("[z]\nsubnet = 5\n", "'subnet'"),
        ("[z]\nsubnet = \"10.1.2.0/24\"\nnat = \"x\"\n", "'nat'"),
        ("[z]\n", "`subnet`"),
        ("[\"Bad!\"]\nsubnet = \"10.1.2.0/24\"\n", "'Bad!'"),
        ("[z]\nsubnet = \"1.2.3.4/16\"\n", "zone 'z'"),
        ("z = 1\n", "'z'"),
        ("[z]\nsubnet = \"10.1.2.0/24\"\ncolour = 1\n", "`colour`"),
        ("[z\n", "line 1"),
    ];
    for (text, key) in zones {
        fs::write(&zones_file, text).unwrap();
        let e = crate::zone::load(&store)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&zones_file.display().to_string()) && e.contains(key),
            "{text:?}: {e}"
        );
        assert!(crate::zone::set(&store, "z", "nat", "on").is_err());
        assert_eq!(
            fs::read_to_string(&zones_file).unwrap(),
            *text,
            "a refused edit wrote"
        );
    }
}
