//! What the store records about each version of an image: its version, when it was made and
//! its size. Block and sealed images keep this in `image.meta`; a tree image (which is itself
//! the root filesystem) keeps it in the extended attribute `user.realms.image` of its top
//! directory, so it moves with the tree in every atomic rename and exchange, and a btrfs
//! snapshot of the image (a realm's root) carries the version it was made from.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::meta::{Meta, compare_versions, next_version};
use crate::{Error, Result};

/// The extended attribute holding a tree's record.
pub const XATTR: &str = "user.realms.image";

/// One version of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    /// The version, if the image has one.
    pub version: Option<String>,
    /// Seconds since the epoch.
    pub created: Option<u64>,
    /// Bytes: the apparent size of the tree, or of the image files.
    pub size: Option<u64>,
}

impl Record {
    /// The record of the image version at `path` (a tree, or a block/sealed image directory).
    /// What is unknown (a tree imported before versions were recorded) is `None`.
    pub fn read(path: &Path) -> Record {
        let meta = path.join("image.meta");
        if meta.exists() {
            let Ok((m, _)) = Meta::load(&meta) else {
                return Record::default();
            };
            return Record {
                version: Some(m.version),
                created: Some(m.created),
                size: Some(files_size(path)),
            };
        }
        read_xattr(path).unwrap_or_default()
    }

    /// A new record for the tree at `path`: `version`, now, its size.
    pub fn new_for_tree(path: &Path, version: String) -> Record {
        Record {
            version: Some(version),
            created: Some(now()),
            size: Some(tree_size(path)),
        }
    }

    /// Writes the record onto the tree at `path` (before it is made read-only).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).map_err(|e| Error::BadMeta {
            line: None,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        realms_sys::fs::set_xattr(path, XATTR, text.as_bytes())?;
        Ok(())
    }
}

/// The record a tree carries in its extended attribute (also a realm's btrfs root, which
/// inherits it from the image it was snapshotted from).
pub fn read_xattr(path: &Path) -> Option<Record> {
    let bytes = realms_sys::fs::xattr(path, XATTR).ok()??;
    toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()
}

/// The version after every version in `versions` (`1` when none is known).
pub fn next_after<'a>(versions: impl IntoIterator<Item = Option<&'a str>>) -> String {
    versions
        .into_iter()
        .flatten()
        .max_by(|a, b| compare_versions(a, b))
        .map(next_version)
        .unwrap_or_else(|| "1".to_string())
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The apparent size of the files directly in `dir` (a block or sealed image).
fn files_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The apparent size of every file in a tree (symlinks not followed, other filesystems not
/// entered).
pub fn tree_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.is_dir() {
                if m.dev() == top.dev() {
                    stack.push(entry.path());
                }
            } else {
                total += m.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_after_is_past_the_highest_known_version() {
        assert_eq!(next_after([None, None]), "1");
        assert_eq!(next_after([Some("2"), Some("10"), None]), "11");
        assert_eq!(next_after([Some("1.9")]), "1.10");
    }

    #[test]
    fn a_tree_record_round_trips_through_the_xattr() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"12345").unwrap();
        let record = Record::new_for_tree(dir.path(), "3".into());
        assert_eq!(record.size, Some(5));
        if record.write(dir.path()).is_ok() {
            assert_eq!(Record::read(dir.path()), record);
        }
        assert_eq!(Record::read(&dir.path().join("missing")), Record::default());
    }
}
