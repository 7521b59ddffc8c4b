//! The default realm (started at boot) and the current realm (owns the desktop), and the list.

use serde::Serialize;

use crate::store::{RealmStore, RootKind};
use crate::{Error, Result, launch};
use realms_sys::event::{Event, Report};

/// `realms default NAME`: prints the seed's line.
pub fn set_default(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    match store.set_default(name)? {
        Some(old) => say.report(Event::progress(format!(
            "default realm changed from '{old}' to '{name}'"
        ))),
        None => say.report(Event::progress(format!("default realm set to '{name}'"))),
    }
    Ok(())
}

/// `realms start [NAME]`: starts realm `name`, or the default realm when none is named
/// (refused when there is none); returns the realm's name.
pub fn start(store: &RealmStore, name: Option<&str>, say: &dyn Report) -> Result<String> {
    let name = match name {
        Some(n) => n.to_string(),
        None => store.default_realm().ok_or(crate::Error::NoDefault)?,
    };
    launch::start(store, &name, say)?;
    Ok(name)
}

/// `realms current NAME`: starts the realm if it is stopped, then makes it current.
pub fn set_current(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    if launch::state(store, name) == launch::State::Running {
        store.set_current(name)?;
    } else {
        // Started and made current as one: killed before it is current, the start is rolled back.
        launch::as_one_start(store, name, || {
            launch::start_unmarked(store, name, say)?;
            store.set_current(name)?;
            realms_sys::failpoint::hit("realm-current-set");
            Ok(())
        })?;
    }
    say.report(Event::progress(format!(
        "Realm '{name}' set as current realm"
    )));
    Ok(())
}

/// The current realm, if it is still running.
pub fn current(store: &RealmStore) -> Option<String> {
    store
        .current_realm()
        .filter(|n| launch::is_running(store, n))
}

/// One row of `realms list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RealmStatus {
    /// The realm.
    pub name: String,
    /// True when it runs.
    pub running: bool,
    /// Running without its nspawn (killed): `realms stop` or `start` cleans it up.
    pub orphaned: bool,
    /// True for the default realm.
    pub default: bool,
    /// True for the current realm.
    pub current: bool,
    /// Its application image.
    pub appimg: String,
    /// How its root is made.
    pub root: RootKind,
    /// The network zone, or `None` when the realm has only a loopback interface.
    pub zone: Option<String>,
    /// The version of the image the realm is on.
    pub image_version: Option<String>,
    /// True when the image has a newer version (`realms rebase NAME` moves the realm to it).
    pub behind: bool,
    /// True when the realm starts at boot.
    pub autostart: bool,
    /// Shown after the names of its apps on the desktop (`label`, default its name).
    pub label: String,
    /// Its colour on the desktop, `#rrggbb` (`color`, default derived from its name).
    pub color: String,
    /// Why the realm's config cannot be read (the other fields are then its defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `realms list`. A realm whose config is broken is listed with its error; the others are not
/// affected by it. It takes no lock: a realm removed while it lists is left out.
pub fn list(store: &RealmStore) -> Result<Vec<RealmStatus>> {
    let default = store.default_realm();
    let current = current(store);
    let mut rows = Vec::new();
    for name in store.names()? {
        let (config, error) = match store.config(&name) {
            Ok(config) => (config, None),
            Err(Error::NoSuchRealm(_)) => continue,
            Err(err) => (Default::default(), Some(err.to_string())),
        };

        let state = launch::state(store, &name);
        let on = crate::rebase::on_image(store, &name, config.appimg());
        if !store.realm_dir(&name).is_dir() {
            // Removed while we read it: what was read may be half of it.
            continue;
        }
        rows.push(RealmStatus {
            error,
            image_version: on.version,
            behind: on.behind,
            autostart: config.autostart(),
            label: config.label_or(&name).to_string(),
            color: config.color_or(&name),
            running: state != launch::State::Stopped,
            orphaned: state == launch::State::Orphaned,
            default: default.as_deref() == Some(name.as_str()),
            current: current.as_deref() == Some(name.as_str()),
            appimg: config.appimg().to_string(),
            root: store.root_kind(&name),
            zone: config
                .use_network()
                .then(|| config.network_zone().to_string()),
            name,
        });
    }
    Ok(rows)
}
