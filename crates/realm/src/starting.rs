//! The intent of a start in progress (`/run/realms/realm-NAME.starting`): written before a
//! realm's container is started and removed once the command that started it is done (for
//! `realms current NAME`, once the realm is current). A command killed in between leaves it,
//! naming its PID and the realm that was current before; the next command that takes the store
//! lock rolls the start back. This module only keeps the record; stopping is the launcher's.

use realms_sys::IoContext;
use std::fs;
use std::path::PathBuf;

use realms_image::validate_name;

use crate::Result;
use crate::store::RealmStore;

const SUFFIX: &str = ".starting";

fn marker(store: &RealmStore, name: &str) -> PathBuf {
    store.run_dir().join(format!("realm-{name}{SUFFIX}"))
}

/// A start in progress, recorded on disk until [`Intent::done`] or [`remove`].
#[derive(Debug)]
#[must_use = "a start intent stays on disk until it is done"]
pub(crate) struct Intent {
    path: PathBuf,
    /// The current realm when the start began (empty: none).
    pub(crate) previous: String,
}

impl Intent {
    /// Records that this process starts realm `name`, and which realm was current before.
    /// Call with the store lock held.
    pub(crate) fn begin(store: &RealmStore, name: &str) -> Result<Intent> {
        let previous = store.current_realm().unwrap_or_default();
        let text = format!("{}\n{previous}\n", std::process::id());
        fs::create_dir_all(store.run_dir()).ctx("creating", store.run_dir())?;
        let path = marker(store, name);
        realms_sys::atomic::write_file(&path, text.as_bytes(), 0o644)?;
        Ok(Intent { path, previous })
    }

    /// The start is complete (or rolled back): the record goes.
    pub(crate) fn done(self) -> Result<()> {
        fs::remove_file(&self.path).ctx("removing", &self.path)?;
        Ok(())
    }
}

/// Drops the record of realm `name` (a removed realm, a rolled-back start).
pub(crate) fn remove(store: &RealmStore, name: &str) {
    let _ = fs::remove_file(marker(store, name));
}

/// The starts whose command died: each realm's name and the realm current before it.
pub(crate) fn interrupted(store: &RealmStore) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(store.run_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file
            .strip_prefix("realm-")
            .and_then(|rest| rest.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if validate_name("realm", name).is_err() {
            continue;
        }
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        let mut lines = text.lines();
        let pid = lines.next().and_then(|l| l.trim().parse::<u32>().ok());
        let previous = lines.next().unwrap_or_default().trim().to_string();
        match pid {
            Some(pid) if pid == std::process::id() || realms_sys::proc::pid_alive(pid) => {}
            _ => out.push((name.to_string(), previous)),
        }
    }
    out
}
