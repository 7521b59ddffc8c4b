//! The signed repository index: per architecture and stream, every package's versions with the
//! hash, size and unpacked size of each file, a serial that never goes down and an expiry.
//!
//! The layout is documented in `docs/repository.md`. The index is `ARCH/index.STREAM.json`; its
//! signature (made with a key of the image trust store) is `ARCH/index.STREAM.SERIAL.sig`, named
//! by the serial so that a publisher can write it before it renames the index into place: a
//! reader always finds the signature of the index it read.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::IndexSignatureProblem;
use crate::manifest::Stream;
use crate::{Error, IndexProblem, Result};

/// The `format` every index carries.
pub const FORMAT: &str = "realms-provision-index v1";
/// The most an index file may weigh.
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// One file of one version of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Entry {
    /// The version (`_@v` in systemd-sysupdate's patterns).
    pub version: String,
    /// The file name under `ARCH/`: `NAME_VERSION.EXT`.
    pub file: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// Its size in bytes: a download is bounded by it.
    pub size: u64,
    /// The bytes of its unpacked regular files: unpacking is bounded by it.
    pub installed_size: u64,
}

/// The index of one architecture and stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Index {
    /// Always [`FORMAT`].
    pub format: String,
    /// The Debian architecture name (`amd64`, `arm64`, ...).
    pub arch: String,
    /// The stream.
    pub stream: Stream,
    /// Goes up with every publish; a machine refuses an index with a lower serial than it saw.
    pub serial: u64,
    /// When it was published, seconds since the epoch.
    pub published: u64,
    /// When it stops being trusted, seconds since the epoch.
    pub expires: u64,
    /// Package name → its versions, oldest first.
    pub packages: BTreeMap<String, Vec<Entry>>,
}

/// The Debian architecture name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The index file name of `stream`.
pub fn index_name(stream: Stream) -> String {
    format!("index.{stream}.json")
}

/// The signature file name of `stream`'s index with `serial`.
pub fn sig_name(stream: Stream, serial: u64) -> String {
    format!("index.{stream}.{serial}.sig")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The domain-separated bytes the signature covers.
fn signed_bytes(index: &[u8]) -> Vec<u8> {
    let mut m = FORMAT.as_bytes().to_vec();
    m.push(b'\n');
    m.extend_from_slice(index);
    m
}

/// The text of the signature file of `index_bytes`.
pub fn sign(key: &SigningKey, index_bytes: &[u8]) -> String {
    realms_image::keys::sign(key, &signed_bytes(index_bytes))
}

/// Parses an index (no signature check: see [`verify`]).
pub fn parse(url: &str, bytes: &[u8]) -> Result<Index> {
    let bad = |reason: IndexProblem| Error::BadIndex {
        url: url.to_string(),
        reason,
    };
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        return Err(bad(IndexProblem::TooLarge {
            limit: MAX_INDEX_BYTES,
        }));
    }
    let index: Index = serde_json::from_slice(bytes).map_err(|e| bad(IndexProblem::Json(e)))?;
    if index.format != FORMAT {
        return Err(bad(IndexProblem::Format {
            format: index.format.clone(),
            expected: FORMAT,
        }));
    }
    for (name, entries) in &index.packages {
        for e in entries {
            let ok = crate::manifest::valid_version(&e.version)
                && Ext::of(&e.file, name, &e.version).is_some()
                && e.sha256.len() == 64
                && e.sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !ok {
                return Err(bad(IndexProblem::Entry {
                    package: name.clone(),
                    version: e.version.clone(),
                    file: e.file.clone(),
                    sha256: e.sha256.clone(),
                }));
            }
        }
    }
    Ok(index)
}

/// Checks an index read from `url` against its signature file `sig`, the trusted keys, the
/// highest serial seen before for it and the clock; returns it parsed.
pub fn verify(
    url: &str,
    bytes: &[u8],
    sig: &Path,
    keys: &[realms_image::keys::TrustedKey],
    seen: Option<u64>,
    now: u64,
) -> Result<Index> {
    realms_image::keys::check(url, sig, &signed_bytes(bytes), keys).map_err(|e| match e {
        realms_image::Error::Unsigned { .. } => Error::Unsigned {
            url: url.to_string(),
        },
        realms_image::Error::Untrusted { fingerprint, .. } => Error::BadSignature {
            url: url.to_string(),
            reason: IndexSignatureProblem::Untrusted(fingerprint),
        },
        realms_image::Error::BadSignature { reason, .. } => Error::BadSignature {
            url: url.to_string(),
            reason: IndexSignatureProblem::Bad(reason),
        },
        realms_image::Error::Sys(e) => Error::Sys(e),
        other => Error::BadSignature {
            url: url.to_string(),
            reason: IndexSignatureProblem::Other(Box::new(other)),
        },
    })?;
    let index = parse(url, bytes)?;
    if let Some(seen) = seen
        && index.serial < seen
    {
        return Err(Error::OlderIndex {
            url: url.to_string(),
            serial: index.serial,
            seen,
        });
    }
    if index.expires <= now {
        return Err(Error::Expired {
            url: url.to_string(),
            expires: index.expires,
            now,
        });
    }
    Ok(index)
}

impl Index {
    /// An index with no packages, before its first publish.
    pub fn empty(arch: &str, stream: Stream) -> Index {
        Index {
            format: FORMAT.into(),
            arch: arch.to_string(),
            stream,
            serial: 0,
            published: 0,
            expires: 0,
            packages: BTreeMap::new(),
        }
    }

    /// Lists `entry` as a version of `name`, replacing the same version, oldest first.
    pub fn add(&mut self, name: String, entry: Entry) {
        let versions = self.packages.entry(name).or_default();
        versions.retain(|e| e.version != entry.version);
        versions.push(entry);
        versions.sort_by(|a, b| vercmp(&a.version, &b.version));
    }

    /// Stamps a new publish at `now`: the serial given, or one more than before; trusted for
    /// `valid_for` seconds. `location` names the index in errors.
    pub fn stamp(
        &mut self,
        serial: Option<u64>,
        now: u64,
        valid_for: u64,
        location: &str,
    ) -> Result<()> {
        let exhausted = |what| Error::IndexExhausted {
            index: location.to_string(),
            what,
        };
        let serial = match serial {
            Some(s) => s,
            None => self
                .serial
                .checked_add(1)
                .ok_or_else(|| exhausted("serial"))?,
        };
        self.expires = now
            .checked_add(valid_for)
            .ok_or_else(|| exhausted("expiry"))?;
        self.serial = serial;
        self.published = now;
        Ok(())
    }

    /// The entry for `name` at `version` (`latest`: the highest version listed).
    pub fn find(&self, name: &str, version: &str) -> Option<&Entry> {
        let entries = self.packages.get(name)?;
        if version == "latest" {
            entries.iter().max_by(|a, b| vercmp(&a.version, &b.version))
        } else {
            entries.iter().find(|e| e.version == version)
        }
    }

    /// The newest entry for `name` whose version is not in `skip`.
    pub fn find_newest_except(&self, name: &str, skip: &[String]) -> Option<&Entry> {
        self.packages
            .get(name)?
            .iter()
            .filter(|e| !skip.contains(&e.version))
            .max_by(|a, b| vercmp(&a.version, &b.version))
    }

    /// The versions listed for `name`, for error messages.
    pub fn listed(&self, name: &str) -> String {
        match self.packages.get(name) {
            Some(e) if !e.is_empty() => e
                .iter()
                .map(|e| e.version.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            _ => "no version of it".into(),
        }
    }
}

/// The kinds of package file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ext {
    /// `.tar`
    Tar,
    /// `.tar.gz`
    TarGz,
    /// `.tar.zst`
    TarZst,
    /// `.tar.xz`
    TarXz,
    /// `.raw`
    Raw,
}

impl Ext {
    const ALL: [(Ext, &'static str); 5] = [
        (Ext::TarGz, "tar.gz"),
        (Ext::TarZst, "tar.zst"),
        (Ext::TarXz, "tar.xz"),
        (Ext::Tar, "tar"),
        (Ext::Raw, "raw"),
    ];

    /// The extension of `file` when it is exactly `NAME_VERSION.EXT`.
    pub fn of(file: &str, name: &str, version: &str) -> Option<Ext> {
        let rest = file.strip_prefix(name)?.strip_prefix('_')?;
        let ext = rest.strip_prefix(version)?.strip_prefix('.')?;
        Ext::ALL.iter().find(|(_, s)| *s == ext).map(|(e, _)| *e)
    }

    /// `NAME`, `VERSION` and the extension of a package file name `NAME_VERSION.EXT`.
    pub fn split(file: &str) -> Option<(&str, &str, Ext)> {
        let (name, rest) = file.split_once('_')?;
        Ext::ALL.iter().find_map(|(e, s)| {
            let version = rest.strip_suffix(s)?.strip_suffix('.')?;
            crate::manifest::valid_version(version).then_some((name, version, *e))
        })
    }
}

/// Compares versions as systemd does: [`crate::version::compare`].
pub fn vercmp(a: &str, b: &str) -> Ordering {
    crate::version::compare(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    pub(crate) fn sample(serial: u64, expires: u64) -> Index {
        let mut packages = BTreeMap::new();
        packages.insert(
            "foo".to_string(),
            vec![
                Entry {
                    version: "1.2".into(),
                    file: "foo_1.2.tar.gz".into(),
                    sha256: "a".repeat(64),
                    size: 10,
                    installed_size: 20,
                },
                Entry {
                    version: "1.10".into(),
                    file: "foo_1.10.tar.zst".into(),
                    sha256: "b".repeat(64),
                    size: 10,
                    installed_size: 20,
                },
            ],
        );
        Index {
            format: FORMAT.into(),
            arch: "amd64".into(),
            stream: Stream::Stable,
            serial,
            published: 0,
            expires,
            packages,
        }
    }

    #[test]
    fn versions_compare_like_systemd() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.10", "1.9", Greater),
            ("v0.0.1", "v0.0.2", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0", Equal),
            ("1.01", "1.1", Equal),
            ("2", "10", Less),
            ("1.0a", "1.0", Greater),
        ] {
            assert_eq!(vercmp(a, b), o, "{a} vs {b}");
        }
    }

    #[test]
    fn stamping_bumps_the_serial_and_refuses_to_wrap() {
        let mut i = Index::empty("amd64", Stream::Stable);
        i.stamp(None, 100, 50, "idx").unwrap();
        assert_eq!((i.serial, i.published, i.expires), (1, 100, 150));
        i.stamp(Some(7), 200, 50, "idx").unwrap();
        assert_eq!(i.serial, 7);
        // An index read from a repository may carry any number.
        i.serial = u64::MAX;
        let e = i.stamp(None, 300, 50, "/r/idx").unwrap_err();
        assert!(e.to_string().contains("/r/idx: its serial"), "{e}");
        assert_eq!(i.serial, u64::MAX, "nothing changed");
        let e = i.stamp(Some(1), u64::MAX, 1, "/r/idx").unwrap_err();
        assert!(e.to_string().contains("expiry"), "{e}");
    }

    #[test]
    fn names_split_and_latest_is_the_highest() {
        assert_eq!(
            Ext::split("foo_1.2.tar.gz"),
            Some(("foo", "1.2", Ext::TarGz))
        );
        assert_eq!(Ext::split("foo_1.2.raw"), Some(("foo", "1.2", Ext::Raw)));
        assert_eq!(Ext::split("foo.tar"), None);
        assert_eq!(Ext::of("foo_1.2.tar", "foo", "1.2"), Some(Ext::Tar));
        assert_eq!(Ext::of("../foo_1.2.tar", "foo", "1.2"), None);
        let i = sample(1, u64::MAX);
        assert_eq!(i.find("foo", "latest").unwrap().version, "1.10");
        assert_eq!(i.find("foo", "1.2").unwrap().file, "foo_1.2.tar.gz");
        assert!(i.find("foo", "9").is_none());
        assert_eq!(i.listed("foo"), "1.2, 1.10");
        let skip = ["1.10".to_string()];
        assert_eq!(i.find_newest_except("foo", &skip).unwrap().version, "1.2");
        assert!(
            i.find_newest_except("foo", &["1.2".into(), "1.10".into()])
                .is_none()
        );
    }

    fn signed(
        dir: &Path,
        index: &Index,
    ) -> (
        Vec<u8>,
        std::path::PathBuf,
        Vec<realms_image::keys::TrustedKey>,
    ) {
        let (private, _) = realms_image::keys::generate(dir, "repo").unwrap();
        let key = realms_image::keys::load_private(&private).unwrap();
        let bytes = serde_json::to_vec_pretty(index).unwrap();
        let sig = dir.join("index.sig");
        fs::write(&sig, sign(&key, &bytes)).unwrap();
        (bytes, sig, realms_image::keys::trusted(dir).unwrap())
    }

    #[test]
    fn a_signed_index_verifies_and_every_fault_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, sig, keys) = signed(dir.path(), &sample(5, 1000));
        let i = verify("u", &bytes, &sig, &keys, Some(5), 999).unwrap();
        assert_eq!(i.serial, 5);
        let e = verify("u", &bytes, &sig, &keys, Some(6), 999).unwrap_err();
        assert!(
            matches!(
                e,
                Error::OlderIndex {
                    serial: 5,
                    seen: 6,
                    ..
                }
            ),
            "{e}"
        );
        let e = verify("u", &bytes, &sig, &keys, None, 1000).unwrap_err();
        assert!(matches!(e, Error::Expired { .. }), "{e}");
        let mut tampered = bytes.clone();
        let at = tampered.len() - 3;
        tampered[at] ^= 1;
        let e = verify("u", &tampered, &sig, &keys, None, 0).unwrap_err();
        assert!(matches!(e, Error::BadSignature { .. }), "{e}");
        let e = verify("u", &bytes, &dir.path().join("none"), &keys, None, 0).unwrap_err();
        assert!(matches!(e, Error::Unsigned { .. }), "{e}");
        let e = verify("u", &bytes, &sig, &[], None, 0).unwrap_err();
        assert!(e.to_string().contains("not trusted"), "{e}");
    }

    #[test]
    fn a_bad_entry_is_refused() {
        let mut i = sample(1, 1);
        i.packages.get_mut("foo").unwrap()[0].file = "../../etc/passwd".into();
        let e = parse("u", &serde_json::to_vec(&i).unwrap()).unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        let e = parse("u", b"{\"format\": 1}").unwrap_err();
        assert!(e.to_string().starts_with("repository index u:"), "{e}");
    }
}
