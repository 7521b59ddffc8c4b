//! Errors of the image store: each names the image or path it is about and what to do.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name '{name}': {rule}")]
    InvalidName {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("application image '{name}' not found at {}; `realms appimg list` shows the images there are", path.display())]
    NotFound { name: String, path: PathBuf },
    #[error("application image '{name}' already exists at {}; remove it first with `realms appimg remove {name}`", path.display())]
    Exists { name: String, path: PathBuf },
    #[error("application image '{name}' has no previous version to roll back to ({} is missing)", path.display())]
    NoPrevious { name: String, path: PathBuf },
    #[error(
        "application image '{name}' is already rolled back: its current version {current} is older than {name}.appimg.prev (version {newer}), and there is no older version to go back to; `realms update-appimg {name}` makes a new version"
    )]
    AlreadyRolledBack {
        name: String,
        current: String,
        newer: String,
    },
    #[error(
        "no application image or directory named '{name}' to build from; `realms appimg list` shows the images there are"
    )]
    NoBuildSource { name: String },
    #[error(
        "no private key named '{name}' at {}; `realms appimg key list` shows the keys there are, or pass the path of a key file",
        path.display()
    )]
    NoSuchKey { name: String, path: PathBuf },
    #[error("bad image source '{source_spec}': {reason}")]
    BadSource { source_spec: String, reason: String },
    #[error("{} is not an operating system tree: {reason}", path.display())]
    NotAnOsTree { path: PathBuf, reason: String },
    #[error("key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("application image '{name}' is not signed, so it cannot be trusted as a sealed image")]
    Unsigned { name: String },
    #[error(
        "application image '{name}' is signed by key {fingerprint}, which is not trusted; add its public key to /etc/realms/keys.d/"
    )]
    Untrusted { name: String, fingerprint: String },
    #[error("application image '{name}' has a bad signature: {reason}")]
    BadSignature { name: String, reason: String },
    #[error("application image '{name}' has been tampered with: {reason}")]
    Tampered { name: String, reason: String },
    #[error(
        "application image '{name}': version {new} is older than the installed {installed}; pass --allow-downgrade to install it anyway"
    )]
    Downgrade {
        name: String,
        installed: String,
        new: String,
    },
    #[error(
        "application image '{name}' was sealed (recorded in {}) but is not signed now; `realms appimg unseal {name}` first if it is meant to be unsealed",
        record.display()
    )]
    SealStripped { name: String, record: PathBuf },
    #[error(
        "application image '{name}': signed version {version} is older than version {highest}, the highest accepted (recorded in {}); `realms appimg build --allow-downgrade` installs an older version on purpose",
        record.display()
    )]
    SealedDowngrade {
        name: String,
        version: String,
        highest: String,
        record: PathBuf,
    },
    #[error(
        "application image '{name}': the tree's files hold {total} bytes, which {format} writes out in full (holes included), and the store has {free} bytes free; the largest is {} ({largest_size} bytes); build with --format squashfs, which keeps holes, or leave it out",
        largest.display()
    )]
    BuildTooBig {
        name: String,
        format: String,
        total: u64,
        free: u64,
        largest: PathBuf,
        largest_size: u64,
    },
    #[error("archive {archive}: entry '{entry}' {reason}")]
    HostileEntry {
        archive: String,
        entry: String,
        reason: String,
    },
    #[error("archive {archive} is truncated or corrupt{}: {reason}", entry.as_ref().map(|e| format!(" (in entry '{e}')")).unwrap_or_default())]
    BadArchive {
        archive: String,
        entry: Option<String>,
        reason: String,
    },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    BadMeta {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("application image '{name}' is a tree image, which is used in place and never mounted")]
    TreeNotMounted { name: String },
    #[error("computing the dm-verity hash tree of {}", path.display())]
    Verity {
        path: PathBuf,
        #[source]
        source: realms_verity::Error,
    },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The 1-based line a TOML parse error points at in `text` (`None` when it points nowhere).
/// The realm crate's config errors use it too, so every TOML file is reported the same way.
pub fn toml_line(text: &str, err: &toml::de::Error) -> Option<usize> {
    let offset = err.span()?.start.min(text.len());
    Some(
        text.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1,
    )
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        text.to_string()
    }

    /// Every variant, with the text that names its subject.
    fn every_variant() -> Vec<(Error, &'static str)> {
        let p = |path: &str| PathBuf::from(path);
        vec![
            (
                Error::InvalidName {
                    kind: "image",
                    name: s("Bad"),
                    rule: "lowercase",
                },
                "'Bad'",
            ),
            (
                Error::NotFound {
                    name: s("a"),
                    path: p("/s/a.appimg"),
                },
                "'a'",
            ),
            (
                Error::Exists {
                    name: s("b"),
                    path: p("/s/b.appimg"),
                },
                "'b'",
            ),
            (
                Error::NoPrevious {
                    name: s("c"),
                    path: p("/s/c.appimg.prev"),
                },
                "'c'",
            ),
            (
                Error::AlreadyRolledBack {
                    name: s("d"),
                    current: s("1"),
                    newer: s("2"),
                },
                "'d'",
            ),
            (Error::NoBuildSource { name: s("e") }, "'e'"),
            (
                Error::NoSuchKey {
                    name: s("k"),
                    path: p("/keys/k"),
                },
                "'k'",
            ),
            (
                Error::BadSource {
                    source_spec: s("ftp:x"),
                    reason: s("unknown"),
                },
                "'ftp:x'",
            ),
            (
                Error::NotAnOsTree {
                    path: p("/t"),
                    reason: s("no /usr"),
                },
                "/t",
            ),
            (
                Error::Key {
                    path: p("/keys/x.pub"),
                    message: s("bad"),
                },
                "/keys/x.pub",
            ),
            (Error::Unsigned { name: s("f") }, "'f'"),
            (
                Error::Untrusted {
                    name: s("g"),
                    fingerprint: s("ab12"),
                },
                "'g'",
            ),
            (
                Error::BadSignature {
                    name: s("h"),
                    reason: s("does not match"),
                },
                "'h'",
            ),
            (
                Error::Tampered {
                    name: s("i"),
                    reason: s("block 3"),
                },
                "'i'",
            ),
            (
                Error::Downgrade {
                    name: s("j"),
                    installed: s("2"),
                    new: s("1"),
                },
                "'j'",
            ),
            (
                Error::SealStripped {
                    name: s("m"),
                    record: p("/s/.seals/m"),
                },
                "'m'",
            ),
            (
                Error::BuildTooBig {
                    name: s("o"),
                    format: s("erofs"),
                    total: 1 << 40,
                    free: 1 << 30,
                    largest: p("/t/usr/sparse"),
                    largest_size: 1 << 40,
                },
                "'o'",
            ),
            (
                Error::HostileEntry {
                    archive: s("x.tar"),
                    entry: s("etc/evil"),
                    reason: s("is a device node"),
                },
                "etc/evil",
            ),
            (
                Error::BadArchive {
                    archive: s("y.tar"),
                    entry: Some(s("usr/big")),
                    reason: s("unexpected EOF"),
                },
                "usr/big",
            ),
            (
                Error::SealedDowngrade {
                    name: s("n"),
                    version: s("1"),
                    highest: s("2"),
                    record: p("/s/.seals/n"),
                },
                "'n'",
            ),
            (
                Error::BadMeta {
                    path: p("/s/l.appimg/image.meta"),
                    line: Some(2),
                    message: s("missing field"),
                },
                "image.meta: line 2",
            ),
            (Error::TreeNotMounted { name: s("m") }, "'m'"),
            (
                Error::Verity {
                    path: p("/s/.staging-n"),
                    source: realms_verity::Error::HashOffset { offset: 7 },
                },
                "/s/.staging-n",
            ),
            (
                Error::io("reading", "/s/o", std::io::Error::from_raw_os_error(13)),
                "/s/o",
            ),
            (
                Error::Sys(realms_sys::Error::io(
                    "opening",
                    "/s/q",
                    std::io::Error::from_raw_os_error(2),
                )),
                "/s/q",
            ),
        ]
    }

    #[test]
    fn every_variant_renders_each_cause_once_and_names_its_subject() {
        for (err, subject) in every_variant() {
            // What `main` prints: each level of the chain once, as `{:#}` does.
            let mut text = err.to_string();
            let mut level: &dyn std::error::Error = &err;
            while let Some(cause) = level.source() {
                let inner = cause.to_string();
                assert!(
                    !level.to_string().contains(&inner),
                    "{text:?}: {inner:?} prints twice"
                );
                text.push_str(&format!(": {inner}"));
                level = cause;
            }
            assert!(text.contains(subject), "{text:?} does not name {subject:?}");
        }
    }

    #[test]
    fn toml_errors_name_their_line() {
        let text = "name = \"a\"\nversion = \n";
        let err = toml::from_str::<toml::Value>(text).unwrap_err();
        assert_eq!(toml_line(text, &err), Some(2));
    }
}
