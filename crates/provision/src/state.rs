//! `/var/lib/realms/provision/state.json`: what is installed, from where, its hash, which units
//! were enabled and started, and the highest index serial seen per repository, arch and stream.
//! Written atomically (staged and renamed) after every package.

use realms_sys::IoContext;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{InstallMethod, Stream};
use crate::{Error, Result};

/// The state directory, under the root.
pub const DIR: &str = "var/lib/realms/provision";

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Installed {
    /// Its version.
    pub version: String,
    /// The package file it came from.
    pub file: String,
    /// The SHA-256 of that file.
    pub sha256: String,
    /// The repository.
    pub repository: String,
    /// The stream followed.
    pub stream: Stream,
    /// The architecture.
    pub arch: String,
    /// The image, as a path inside the root.
    pub image: PathBuf,
    /// The profile it is attached with.
    pub profile: String,
    /// How it is attached.
    pub install_method: InstallMethod,
    /// The units enabled.
    pub enabled: Vec<String>,
    /// The units started.
    pub started: Vec<String>,
    /// The commands exported to /usr/local/bin.
    #[serde(default)]
    pub exports: Vec<String>,
}

/// The whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct State {
    /// Package name → what is installed.
    pub packages: BTreeMap<String, Installed>,
    /// `REPOSITORY ARCH STREAM` → the highest index serial seen.
    pub serials: BTreeMap<String, u64>,
    /// Package name → its update history: versions kept for rollback, bad versions, events.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub history: BTreeMap<String, History>,
}

/// What `realms provision update` keeps per package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct History {
    /// Versions installed before and still on disk (for rollback), oldest first.
    #[serde(default)]
    pub kept: Vec<Installed>,
    /// The last version that passed its health check (or was installed by apply).
    #[serde(default)]
    pub good: Option<String>,
    /// Versions that failed their health check (or were rolled back by hand): not installed
    /// again by update until a newer version appears.
    #[serde(default)]
    pub bad: Vec<String>,
    /// An update in progress: the version it came from (attached again on rollback). Set
    /// before the reattach, cleared when the health check has passed or the rollback is done,
    /// so a killed update is finished or rolled back by the next one.
    #[serde(default)]
    pub trial: Option<Installed>,
    /// The last events, oldest first (at most [`MAX_EVENTS`]).
    #[serde(default)]
    pub events: Vec<UpdateEvent>,
}

/// How many events [`History`] keeps per package.
pub const MAX_EVENTS: usize = 20;

/// One update, rollback or failure, as `realms provision status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpdateEvent {
    /// Seconds since the epoch.
    pub time: u64,
    /// What happened.
    pub kind: EventKind,
    /// The version it came from.
    pub from: String,
    /// The version it went to (or tried).
    pub to: String,
    /// Why (for failures).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The kinds of [`UpdateEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Updated, health check passed.
    Updated,
    /// The health check failed: rolled back to `from`.
    RolledBack,
    /// The health check failed and so did the rollback: `from` is attached and stopped.
    RollbackFailed,
    /// `realms provision rollback` by hand.
    ManualRollback,
}

impl History {
    /// Records `event`, dropping the oldest beyond [`MAX_EVENTS`].
    pub fn record(&mut self, event: UpdateEvent) {
        self.events.push(event);
        let over = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..over);
    }

    /// Marks `version` bad (once).
    pub fn mark_bad(&mut self, version: &str) {
        if !self.bad.iter().any(|b| b == version) {
            self.bad.push(version.to_string());
        }
    }

    /// Whether `version` is marked bad.
    pub fn is_bad(&self, version: &str) -> bool {
        self.bad.iter().any(|b| b == version)
    }
}

/// The key of [`State::serials`].
pub fn serial_key(repo: &str, arch: &str, stream: Stream) -> String {
    format!("{} {arch} {stream}", repo.trim_end_matches('/'))
}

/// The state file under `root`.
pub fn path(root: &Path) -> PathBuf {
    root.join(DIR).join("state.json")
}

impl State {
    /// Reads the state (empty when there is none).
    pub fn load(root: &Path) -> Result<State> {
        let p = path(root);
        match fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::State {
                path: p,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::io("reading", p, e)),
        }
    }

    /// Writes it atomically.
    pub fn save(&self, root: &Path) -> Result<()> {
        let p = path(root);
        let dir = root.join(DIR);
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::State {
            path: p.clone(),
            message: e.to_string(),
        })?;
        bytes.push(b'\n');
        realms_sys::atomic::write_file(&p, &bytes, 0o644)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_broken_file_says_what_to_do() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(State::load(root.path()).unwrap(), State::default());
        let mut s = State::default();
        s.serials
            .insert(serial_key("http://x/", "amd64", Stream::Stable), 3);
        s.save(root.path()).unwrap();
        assert_eq!(State::load(root.path()).unwrap(), s);
        assert!(s.serials.contains_key("http://x amd64 stable"));
        fs::write(path(root.path()), "{").unwrap();
        let e = State::load(root.path()).unwrap_err().to_string();
        assert!(e.contains("move it away"), "{e}");
    }

    #[test]
    fn a_state_without_history_still_loads_and_events_are_bounded() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join(DIR)).unwrap();
        fs::write(path(root.path()), r#"{"packages": {}, "serials": {}}"#).unwrap();
        assert!(State::load(root.path()).unwrap().history.is_empty());
        let mut h = History::default();
        for i in 0..30 {
            h.record(UpdateEvent {
                time: i,
                kind: EventKind::Updated,
                from: i.to_string(),
                to: (i + 1).to_string(),
                message: String::new(),
            });
        }
        assert_eq!(h.events.len(), MAX_EVENTS);
        assert_eq!(h.events[0].time, 10);
        h.mark_bad("3");
        h.mark_bad("3");
        assert_eq!(h.bad, ["3"]);
        assert!(h.is_bad("3") && !h.is_bad("4"));
    }
}
