//! The records of disposable realms' owners, and the removal of realms whose owner is gone
//! (crashed or killed), run by every command that launches or publishes.

use std::fs;
use std::path::PathBuf;

use realms_realm::{RealmStore, lifecycle};
use realms_sys::event::{Event, Report, Silent};

use crate::Result;

/// The names of disposable realms start with this.
pub const PREFIX: &str = "disposable-";

pub(crate) fn owners(store: &RealmStore) -> PathBuf {
    store.dir().join(".disposable")
}

/// A process's identity that survives pid reuse: `PID STARTTIME`.
pub(crate) fn identity(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are counted from ')'.
    let after = stat.rsplit_once(')')?.1;
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

fn owner_alive(record: &str) -> bool {
    let Some(pid) = record
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
    else {
        return false;
    };
    identity(pid).as_deref() == Some(record.trim())
}

/// Removes disposable realms whose owner is gone (crashed or killed); returns their names.
pub fn reap(store: &RealmStore, say: &dyn Report) -> Result<Vec<String>> {
    let dir = owners(store);
    let mut reaped = Vec::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) {
            continue;
        }
        let record = fs::read_to_string(entry.path()).unwrap_or_default();
        if owner_alive(&record) {
            continue;
        }
        dispose(store, &name)?;
        say.report(Event::note(format!(
            "removed disposable realm '{name}', whose owner is gone"
        )));
        reaped.push(name);
    }
    Ok(reaped)
}

/// Stops and removes disposable realm `name` and everything it left.
pub(crate) fn dispose(store: &RealmStore, name: &str) -> Result<()> {
    if store.realm_dir(name).exists() {
        lifecycle::remove(store, name, true, &Silent)?;
    }
    // The apps' log (`realm-NAME.apps.log`) goes with the other run files below.
    for leftover in [owners(store).join(name)] {
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(realms_sys::Error::io("removing", &leftover, e).into()),
        }
    }
    let prefix = format!("realm-{name}.");
    for entry in fs::read_dir(store.run_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_known_by_pid_and_start_time() {
        let me = identity(std::process::id()).unwrap();
        assert!(owner_alive(&me));
        let (pid, start) = me.split_once(' ').unwrap();
        assert!(!owner_alive(&format!(
            "{pid} {}",
            start.parse::<u64>().unwrap() + 1
        )));
        assert!(!owner_alive(""));
        assert!(!owner_alive("4194304 1"));
    }

    #[test]
    fn reaping_removes_records_of_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let store = RealmStore::open(dir.path()).unwrap();
        fs::create_dir_all(owners(&store)).unwrap();
        fs::write(owners(&store).join("disposable-dead"), "4194304 1").unwrap();
        let me = identity(std::process::id()).unwrap();
        fs::write(owners(&store).join("disposable-live"), &me).unwrap();
        let reaped = reap(&store, &Silent).unwrap();
        assert_eq!(reaped, ["disposable-dead"]);
        assert!(!owners(&store).join("disposable-dead").exists());
        assert!(owners(&store).join("disposable-live").exists());
    }
}
