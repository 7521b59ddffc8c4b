//! What the store remembers about sealed images, outside their directories
//! (`/storage/appimg/.seals/NAME`): that the name was sealed, and the highest signed version it
//! accepted. Deleting an image's signature files, or copying an older signed version over it,
//! is then refused; only `realms appimg unseal NAME` forgets the record.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::meta::compare_versions;
use crate::{Error, Result};

/// The directory of the records, in the image store.
pub const DIR: &str = ".seals";

/// The record of one sealed image name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Seal {
    /// The highest version of the image that was accepted.
    pub highest_version: String,
}

/// The record file of image `name` in the image store `store_dir`.
pub fn path(store_dir: &Path, name: &str) -> PathBuf {
    store_dir.join(DIR).join(name)
}

/// The record of image `name`, if it was ever sealed.
pub fn read(store_dir: &Path, name: &str) -> Result<Option<Seal>> {
    let file = path(store_dir, name);
    let bytes = match realms_sys::untrusted::read(&file, 64 << 10) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::BadMeta {
        path: file.clone(),
        line: None,
        message: "not UTF-8".into(),
    })?;
    toml::from_str(&text).map(Some).map_err(|e| Error::BadMeta {
        line: crate::error::toml_line(&text, &e),
        path: file,
        message: e.message().trim().to_string(),
    })
}

/// True when image `name` was sealed (its record exists).
pub fn is_sealed(store_dir: &Path, name: &str) -> bool {
    path(store_dir, name).exists()
}

/// Checks that signed version `version` of `name` is not older than the highest accepted, and
/// raises the record to it. With `allow_downgrade` an older version is accepted and recorded as
/// the highest (the user chose to go back).
pub fn accept(store_dir: &Path, name: &str, version: &str, allow_downgrade: bool) -> Result<()> {
    let record = read(store_dir, name)?;
    if let Some(seal) = &record {
        match compare_versions(version, &seal.highest_version) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Less if !allow_downgrade => {
                return Err(Error::SealedDowngrade {
                    name: name.to_string(),
                    version: version.to_string(),
                    highest: seal.highest_version.clone(),
                    record: path(store_dir, name),
                });
            }
            _ => {}
        }
    }
    write(store_dir, name, version)
}

/// Checks, without recording anything, that a build of version `version` may be installed.
pub fn check_build(
    store_dir: &Path,
    name: &str,
    version: &str,
    allow_downgrade: bool,
) -> Result<()> {
    match read(store_dir, name)? {
        Some(seal)
            if !allow_downgrade && compare_versions(version, &seal.highest_version).is_lt() =>
        {
            Err(Error::Downgrade {
                name: name.to_string(),
                installed: seal.highest_version,
                new: version.to_string(),
            })
        }
        _ => Ok(()),
    }
}

fn write(store_dir: &Path, name: &str, version: &str) -> Result<()> {
    let dir = store_dir.join(DIR);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let text = toml::to_string(&Seal {
        highest_version: version.to_string(),
    })
    .expect("a string field serialises");
    realms_sys::atomic::write_file(path(store_dir, name), text.as_bytes(), 0o600)?;
    Ok(())
}

/// `realms appimg unseal NAME`: forgets that `name` was sealed and its highest version.
/// Returns false when there was nothing to forget.
pub fn unseal(store_dir: &Path, name: &str) -> Result<bool> {
    crate::validate_name("image", name)?;
    let file = path(store_dir, name);
    match fs::remove_file(&file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(realms_sys::Error::io("removing", &file, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_version_only_rises_unless_a_downgrade_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!is_sealed(d, "img"));
        accept(d, "img", "2", false).unwrap();
        assert!(is_sealed(d, "img"));
        accept(d, "img", "10", false).unwrap();
        let e = accept(d, "img", "9", false).unwrap_err().to_string();
        assert!(
            e.contains("'img'") && e.contains("10") && e.contains("9"),
            "{e}"
        );
        assert!(check_build(d, "img", "3", false).is_err());
        check_build(d, "img", "3", true).unwrap();
        accept(d, "img", "3", true).unwrap();
        assert_eq!(read(d, "img").unwrap().unwrap().highest_version, "3");
        assert!(unseal(d, "img").unwrap());
        assert!(!unseal(d, "img").unwrap());
        assert!(!is_sealed(d, "img"));
    }
}
