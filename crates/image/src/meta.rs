//! The metadata of block and sealed images (`image.meta`, TOML) and version ordering.
//!
//! A sealed image's signature (`image.sig`) covers the exact bytes of `image.meta`, which hold
//! the name, version, filesystem, creation time and every verity parameter with the root hash.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `image.meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Meta {
    /// The image.
    pub name: String,
    /// Its version.
    pub version: String,
    /// erofs, squashfs or ext4.
    pub filesystem: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// The name of the key that signed it (for reseal on update), if sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The dm-verity parameters, if sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verity: Option<VerityMeta>,
}

/// The dm-verity parameters of a sealed image (hash area in `image.verity`, superblock first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VerityMeta {
    /// The hash algorithm (`sha256`).
    pub hash: String,
    /// The data block size in bytes.
    pub data_block_size: u32,
    /// The hash block size in bytes.
    pub hash_block_size: u32,
    /// The number of data blocks the hash tree covers.
    pub data_blocks: u64,
    /// The salt, in hex.
    pub salt: String,
    /// The UUID of the verity superblock.
    pub uuid: String,
    /// The root hash, in hex.
    pub root_hash: String,
    /// Reed–Solomon parity bytes per codeword of the FEC area in `image.fec`, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fec_roots: Option<u32>,
}

impl Meta {
    /// The metadata as TOML text.
    pub fn to_text(&self) -> String {
        toml::to_string(self).expect("image metadata always serializes")
    }

    /// Parses `text`, read from `path` (named in the error, with the line).
    pub fn parse(text: &str, path: &Path) -> Result<Meta> {
        toml::from_str(text).map_err(|e| Error::BadMeta {
            path: path.to_path_buf(),
            line: crate::error::toml_line(text, &e),
            message: e.message().trim().to_string(),
        })
    }

    /// Reads and parses `path`; returns the bytes too (they are what is signed).
    pub fn load(path: &Path) -> Result<(Meta, Vec<u8>)> {
        let bytes = realms_sys::untrusted::read(path, realms_sys::untrusted::TEXT_CAP)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::BadMeta {
            path: path.to_path_buf(),
            line: None,
            message: "not UTF-8".into(),
        })?;
        Ok((Meta::parse(text, path)?, bytes))
    }
}

/// Compares versions the way package managers do: digit runs as numbers, other runs as text.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then(x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The next version after `v`: its last number plus one (`1.9` → `1.10`), or `v.1`.
pub fn next_version(v: &str) -> String {
    let digits_at = v
        .rfind(|c: char| !c.is_ascii_digit())
        .map(|i| i + 1)
        .unwrap_or(0);
    match v[digits_at..].parse::<u64>() {
        Ok(n) if digits_at < v.len() => format!("{}{}", &v[..digits_at], n + 1),
        _ => format!("{v}.1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_order_numerically() {
        assert_eq!(compare_versions("1.10", "1.9"), Greater);
        assert_eq!(compare_versions("2", "10"), Less);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
        assert_eq!(compare_versions("1.0.1", "1.0"), Greater);
        assert_eq!(compare_versions("2024.1", "2023.12"), Greater);
        assert_eq!(next_version("1.9"), "1.10");
        assert_eq!(next_version("7"), "8");
        assert_eq!(next_version("beta"), "beta.1");
    }

    #[test]
    fn meta_round_trips_and_rejects_unknown_keys() {
        let m = Meta {
            name: "base".into(),
            version: "1".into(),
            filesystem: "erofs".into(),
            created: 1,
            signed_by: None,
            verity: None,
        };
        assert_eq!(Meta::parse(&m.to_text(), Path::new("m")).unwrap(), m);
        let err = Meta::parse("name = \"x\"\nextra = 1\n", Path::new("/i/image.meta"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/i/image.meta"), "{err}");
    }
}
