//! `/var/lib/realms/provision/state.json`: what is installed, from where, its hash, which units
//! were enabled and started, and the highest index serial seen per repository, arch and stream.
//! Written atomically (staged and renamed) after every package.

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
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
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
}
