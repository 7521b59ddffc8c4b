//! Creating and removing realms, and reading and writing one config option.

use realms_sys::IoContext;
use std::fs;
use std::path::Path;

use realms_image::validate_name;
use realms_sys::{atomic, btrfs};

use crate::config::{KEYS, RealmConfig, parse_value, set_line, unknown_key};
use crate::store::{RealmStore, RootKind, delete_realm_tree, mkdir};
use crate::value::ValueProblem;
use crate::{Error, Result};
use realms_sys::event::{Event, Report};

/// `realms new NAME [--appimg IMG]`: stages the realm directory (config from the template, home
/// from skel, rootfs a snapshot of the image or overlay directories) and renames it into place.
pub fn create(store: &RealmStore, name: &str, image: &str, say: &dyn Report) -> Result<()> {
    validate_name("realm", name)?;
    let _lock = store.lock()?;
    let dest = store.realm_dir(name);
    if dest.exists() {
        return Err(Error::RealmExists(name.to_string()));
    }
    let info = store.images().get(image)?;
    if info.kind == realms_image::ImageKind::Sealed {
        // Refuse an unsigned, untrusted or tampered image before anything is made of it.
        realms_image::sealed::check_signature(store.root(), &info)?;
    }
    let staging = store
        .dir()
        .join(format!(".staging-realm-{name}-{}", std::process::id()));
    let guard = RemoveOnDrop(&staging);
    mkdir(&staging)?;
    realms_sys::failpoint::hit("realm-new-staging");

    let template = fs::read_to_string(store.dir().join("config")).unwrap_or_default();
    let config = set_line(&template, "appimg", &toml::Value::String(image.to_string()));
    RealmConfig::parse(&config, &store.dir().join("config"))?;
    // Inside the staging directory a plain write will do: the rename below publishes it. Its
    // flush to disk runs beside the home copy and the snapshot, and is awaited before the rename.
    let config_path = staging.join("config");
    fs::write(&config_path, config.as_bytes()).ctx("writing", &config_path)?;
    std::thread::scope(|scope| {
        let flushed = scope.spawn(|| {
            fs::File::open(&config_path)
                .and_then(|f| f.sync_data())
                .ctx("writing", &config_path)
                .map_err(Error::from)
        });
        let populated = populate(store, name, image, &info, &staging, say);
        let flushed = flushed.join().unwrap_or_else(|_| {
            Err(Error::ConfigNotFlushed {
                name: name.to_string(),
            })
        });
        populated.and(flushed)
    })?;
    realms_sys::failpoint::hit("realm-new-populated");
    atomic::rename_noreplace(&staging, &dest)?;
    guard.disarm();
    Ok(())
}

/// Fills a staging realm directory: the home from skel, the root from the image.
fn populate(
    store: &RealmStore,
    name: &str,
    image: &str,
    info: &realms_image::ImageInfo,
    staging: &Path,
    say: &dyn Report,
) -> Result<()> {
    say.report(Event::progress(
        "Populating realm home directory with files from /realms/skel",
    ));
    let home = staging.join("home");
    mkdir(&home)?;
    realms_sys::fs::copy_tree(store.dir().join("skel"), &home)?;
    chown_tree(store, &home)?;

    let image_rel = Path::new("/storage/appimg").join(format!("{image}.appimg"));
    let snapshot = store.root_kind_for(info) == RootKind::Snapshot
        && snapshot_or_cross_fs(&info.path, staging)?;
    if snapshot {
        say.report(Event::progress(format!(
            "Create a snapshot of '{}' in '/realms/realm-{name}/rootfs'",
            image_rel.display()
        )));
    } else {
        for d in ["rootfs", "overlay/upper", "overlay/work"] {
            mkdir(&staging.join(d))?;
        }
        if info.kind != realms_image::ImageKind::Tree {
            mkdir(&staging.join("image"))?;
        }
        std::os::unix::fs::symlink(&image_rel, staging.join("lower"))
            .ctx("creating the symlink", staging.join("lower"))?;
        let why = match info.kind {
            realms_image::ImageKind::Tree => "the store is not on btrfs",
            realms_image::ImageKind::Block => "a block image, mounted read-only",
            realms_image::ImageKind::Sealed => "a sealed image, verified and mounted read-only",
        };
        say.report(Event::progress(format!(
            "Realm root is an overlay on '{}' ({why})",
            image_rel.display()
        )));
    }
    Ok(())
}

/// `realms remove NAME`: refused for the default realm and (without `stop`) a running one.
pub fn remove(store: &RealmStore, name: &str, stop: bool, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    if store.default_realm().as_deref() == Some(name) {
        return Err(Error::IsDefault(name.to_string()));
    }
    let mut settle = std::time::Duration::ZERO;
    if crate::launch::is_running(store, name) {
        if !stop {
            return Err(Error::Running(name.to_string()));
        }
        crate::launch::stop_locked(store, name)?;
        say.report(Event::progress(format!("Stopped realm '{name}'")));
        settle = crate::launch::SETTLE;
    }
    // Never delete a root that something still runs in.
    crate::launch::check_unused(store, name, settle)?;
    let aside = store
        .dir()
        .join(format!(".removing-realm-{name}-{}", std::process::id()));
    let snapshots = crate::snapshot::list(store, name).map_or(0, |s| s.len());
    realms_sys::failpoint::hit("realm-remove-checked");
    // The one step that decides: from here on the next command finishes the removal
    // (`recover::finish_removals`) if this one is killed.
    atomic::rename(store.realm_dir(name), &aside)?;
    realms_sys::failpoint::hit("realm-remove-aside");
    crate::recover::finish_removal(store, name, &aside)?;
    match snapshots {
        0 => say.report(Event::progress(format!("Removed realm '{name}'"))),
        n => say.report(Event::progress(format!(
            "Removed realm '{name}' and its {n} snapshot(s)"
        ))),
    }
    Ok(())
}

/// `realms config NAME [KEY]`: one key's effective value, or every key's.
pub fn config_get(
    store: &RealmStore,
    name: &str,
    key: Option<&str>,
) -> Result<Vec<(String, String)>> {
    let config = store.config(name)?;
    let value = toml::Value::try_from(&config).map_err(|source| Error::Serialize {
        path: store.realm_dir(name).join("config"),
        source,
    })?;
    let table = value.as_table().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (k, _, default, _) in KEYS {
        if key.is_some_and(|wanted| wanted != *k) {
            continue;
        }
        let shown = table
            .get(*k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| match *k {
                "label" => toml::Value::String(config.label_or(name).into()).to_string(),
                "color" => toml::Value::String(config.color_or(name)).to_string(),
                _ => default.to_string(),
            });
        out.push((k.to_string(), shown));
    }
    if let Some(k) = key
        && out.is_empty()
    {
        return Err(unknown_key(k));
    }
    Ok(out)
}

/// `realms config NAME KEY VALUE`: validates and writes one key (stage, then rename).
pub fn config_set(store: &RealmStore, name: &str, key: &str, value: &str) -> Result<()> {
    store.check_exists(name)?;
    let parsed = parse_value(key, value)?;
    let _lock = store.lock()?;
    let path = store.config_path(name);
    let text = crate::config::read_text(&path)?;
    let new = set_line(&text, key, &parsed);
    RealmConfig::parse(&new, &path)?;
    realms_sys::failpoint::hit("realm-config-checked");
    atomic::write_file(&path, new.as_bytes(), 0o644)?;
    if key == "label" && crate::runtime::is_running(store, name) {
        crate::runtime::record_label(store, name)?;
    }
    Ok(())
}

/// One entry added to or removed from a list option (`realms config NAME KEY --add|--remove`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListEdit<'a> {
    /// Adds the entry (refused if it is there already).
    Add(&'a str),
    /// Removes the entry (refused if it is not there).
    Remove(&'a str),
}

/// `realms config NAME KEY --add ENTRY` / `--remove ENTRY`: edits one entry of a list option,
/// keeping the others (adding an entry already there, or removing one that is not, is an error
/// that says so).
pub fn config_edit(store: &RealmStore, name: &str, key: &str, edit: ListEdit) -> Result<()> {
    store.check_exists(name)?;
    if !crate::config::is_list(key) {
        if !KEYS.iter().any(|(k, ..)| *k == key) {
            return Err(unknown_key(key));
        }
        return Err(Error::BadValue {
            key: key.to_string(),
            value: format!("{edit:?}"),
            problem: ValueProblem::NotAListKey,
        });
    }
    let _lock = store.lock()?;
    let path = store.config_path(name);
    let text = crate::config::read_text(&path)?;
    let current = config_get(store, name, Some(key))?;
    let shown = current.first().map(|(_, v)| v.as_str()).unwrap_or("[]");
    let mut items: Vec<String> = parse_value(key, shown)?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let not = |problem: ValueProblem| Error::BadValue {
        key: key.to_string(),
        value: match edit {
            ListEdit::Add(e) | ListEdit::Remove(e) => e.to_string(),
        },
        problem,
    };
    match edit {
        ListEdit::Add(entry) if items.iter().any(|i| i == entry) => {
            return Err(not(ValueProblem::Listed));
        }
        ListEdit::Add(entry) => items.push(entry.to_string()),
        ListEdit::Remove(entry) => {
            let before = items.len();
            items.retain(|i| i != entry);
            if items.len() == before {
                return Err(not(ValueProblem::NotListed));
            }
        }
    }
    let list = toml::Value::Array(items.into_iter().map(toml::Value::String).collect());
    let parsed = parse_value(key, &list.to_string())?;
    let new = set_line(&text, key, &parsed);
    RealmConfig::parse(&new, &path)?;
    realms_sys::failpoint::hit("realm-config-checked");
    atomic::write_file(&path, new.as_bytes(), 0o644)?;
    Ok(())
}

/// Snapshots the image as the realm's rootfs; `false` when the image is on another btrfs
/// filesystem (EXDEV), so the realm must be an overlay instead.
fn snapshot_or_cross_fs(image: &Path, staging: &Path) -> Result<bool> {
    match btrfs::snapshot(image, staging.join("rootfs"), false) {
        Ok(()) => Ok(true),
        Err(e)
            if e.io_error()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::CrossesDevices) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Gives a new home and everything in it to the realm user (symlinks themselves, not targets).
fn chown_tree(store: &RealmStore, dir: &Path) -> Result<()> {
    store.chown(dir)?;
    for entry in fs::read_dir(dir).ctx("reading", dir)? {
        let entry = entry.ctx("reading", dir)?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            chown_tree(store, &path)?;
        } else {
            store.chown(&path)?;
        }
    }
    Ok(())
}

/// Removes a staging directory unless the work it holds was committed.
struct RemoveOnDrop<'a>(&'a Path);

impl RemoveOnDrop<'_> {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(err) = delete_realm_tree(self.0) {
            tracing::warn!("could not remove {}: {err}", self.0.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_realm(name: &str) -> (tempfile::TempDir, RealmStore) {
        let dir = tempfile::tempdir().unwrap();
        // Skel and Shared (made by the first change) go to the test's own uid: no root needed.
        let me = std::os::unix::fs::MetadataExt::uid(&fs::metadata(dir.path()).unwrap());
        let store = RealmStore::open(dir.path()).unwrap().with_owner(me);
        fs::create_dir_all(store.realm_dir(name).join("rootfs")).unwrap();
        (dir, store)
    }

    fn binds(store: &RealmStore, name: &str) -> String {
        config_get(store, name, Some("extra-bindmounts")).unwrap()[0]
            .1
            .clone()
    }

    /// Regression: a list option did not accept the TOML form `realms config` shows it in.
    #[test]
    fn list_options_take_the_toml_form_they_are_shown_in() {
        let (_dir, store) = store_with_realm("r");
        config_set(&store, "r", "extra-bindmounts", "/a /b:/c").unwrap();
        let shown = binds(&store, "r");
        assert_eq!(shown, r#"["/a", "/b:/c"]"#);
        config_set(&store, "r", "extra-bindmounts", &shown).unwrap();
        assert_eq!(binds(&store, "r"), shown);
        config_set(&store, "r", "port-forward", r#"["tcp:8080:80"]"#).unwrap();
        let err = config_set(&store, "r", "extra-bindmounts", "[1]").unwrap_err();
        assert!(err.to_string().contains("not a string"), "{err}");
        let err = config_set(&store, "r", "extra-bindmounts", r#"["/a""#).unwrap_err();
        assert!(err.to_string().contains("not a TOML list"), "{err}");
    }

    #[test]
    fn add_and_remove_edit_one_entry_of_a_list() {
        let (_dir, store) = store_with_realm("r");
        config_edit(&store, "r", "extra-bindmounts", ListEdit::Add("/a")).unwrap();
        config_edit(&store, "r", "extra-bindmounts", ListEdit::Add("/b:/c")).unwrap();
        assert_eq!(binds(&store, "r"), r#"["/a", "/b:/c"]"#);
        let err = config_edit(&store, "r", "extra-bindmounts", ListEdit::Add("/a")).unwrap_err();
        assert!(err.to_string().contains("already"), "{err}");
        config_edit(&store, "r", "extra-bindmounts", ListEdit::Remove("/a")).unwrap();
        assert_eq!(binds(&store, "r"), r#"["/b:/c"]"#);
        let err = config_edit(&store, "r", "extra-bindmounts", ListEdit::Remove("/x")).unwrap_err();
        assert!(err.to_string().contains("not in the list"), "{err}");
        let err = config_edit(&store, "r", "extra-bindmounts", ListEdit::Add("rel")).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let err = config_edit(&store, "r", "use-gpu", ListEdit::Add("x")).unwrap_err();
        assert!(err.to_string().contains("list options only"), "{err}");
    }
}
