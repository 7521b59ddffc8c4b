//! Errors of the realm store: each names the realm, file, line or key it is about.

use std::path::{Path, PathBuf};

/// Everything that can go wrong managing realms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{} does not exist; check the --root (or REALMS_ROOT) directory, or create it first",
        .0.display()
    )]
    NoRoot(PathBuf),
    #[error("realm '{0}' does not exist; `realms list` shows the realms there are")]
    NoSuchRealm(String),
    #[error("realm '{0}' already exists")]
    RealmExists(String),
    #[error("realm '{0}' is running; stop it first or pass --stop")]
    Running(String),
    #[error(
        "realm '{0}' is the default realm; make another realm the default first (`realms default OTHER`)"
    )]
    IsDefault(String),
    #[error(
        "application image '{image}' is used by realm(s) {realms}, which are overlays on it; remove them first"
    )]
    ImageInUse { image: String, realms: String },
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    BadConfig {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("unknown config key '{key}'; the keys are {known}")]
    UnknownKey { key: String, known: String },
    #[error("bad value '{value}' for '{key}': {allowed}")]
    BadValue {
        key: String,
        value: String,
        allowed: String,
    },
    #[error("no default realm is set; set one with `realms default NAME`")]
    NoDefault,
    #[error("realm '{name}' failed to start: {reason}{}", log_tail(log))]
    StartFailed {
        name: String,
        reason: String,
        log: String,
    },
    #[error("realm '{name}': {message}")]
    Realm { name: String, message: String },
    #[error("realm '{name}': it is not running")]
    NotRunning { name: String },
    #[error("realm '{name}': it is running{because}; stop it first (`realms stop {name}`)")]
    MustBeStopped { name: String, because: String },
    #[error(
        "realm '{realm}': it has a snapshot '{snapshot}' already; `realms snapshot remove {realm} {snapshot}` removes it"
    )]
    SnapshotExists { realm: String, snapshot: String },
    #[error(
        "realm '{realm}': it has no snapshot '{snapshot}'; `realms snapshot list {realm}` shows its snapshots"
    )]
    NoSuchSnapshot { realm: String, snapshot: String },
    #[error(
        "realm '{name}': its root is still in use by {users}; stop them first (`realms stop {name}` stops \
         everything that runs in the realm)"
    )]
    RootInUse { name: String, users: String },
    #[error("realm '{image}': image.meta names an unknown filesystem '{filesystem}'")]
    UnknownFilesystem { image: String, filesystem: String },
    #[error("realm '{image}': resealing needs the private key; pass --key (looked for {})", looked_for.display())]
    NeedsPrivateKey { image: String, looked_for: PathBuf },
    #[error("realm '{name}': {command}: command not found in the realm")]
    CommandNotFound { name: String, command: String },
    #[error("realm '{name}': {command}: cannot execute: {reason}")]
    NotExecutable {
        name: String,
        command: String,
        reason: String,
    },
    #[error("network zone '{zone}': {message}")]
    Zone { zone: String, message: String },
    #[error("network zone '{zone}': {rule}")]
    InvalidZoneName { zone: String, rule: String },
    #[error(
        "network zone '{zone}': no free 10.77.N.0/24 subnet; set one with `realms zone ZONE subnet A.B.C.0/24`"
    )]
    NoFreeSubnet { zone: String },
    #[error("writing {} (its settings do not serialise as TOML)", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: toml::ser::Error,
    },
    #[error(
        "network zone '{zone}' is used by realm(s) {realms}; move them to another zone \
         (`realms config NAME network-zone OTHER`) or remove them first"
    )]
    ZoneInUse { zone: String, realms: String },
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] realms_image::Error),
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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

    pub(crate) fn realm(name: &str, message: impl Into<String>) -> Error {
        Error::Realm {
            name: name.to_string(),
            message: message.into(),
        }
    }
}

impl Error {
    /// The exit status a shell gives this error: 127 for a missing command, 126 for one that
    /// cannot be executed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::CommandNotFound { .. } => 127,
            Error::NotExecutable { .. } => 126,
            _ => 1,
        }
    }
}

/// A TOML parse error as a config error naming the file and line.
pub(crate) fn bad_file(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let line = realms_image::toml_line(text, err);
    let message = err.message().trim();
    // The key the error is about, read off its line (`key = ...` or `[key]`), unless the
    // message names it already.
    let key = line
        .and_then(|l| text.lines().nth(l - 1))
        .and_then(crate::config::line_key)
        .filter(|k| !message.contains(&format!("`{k}`")));
    Error::BadConfig {
        path: path.to_path_buf(),
        line,
        message: match key {
            Some(key) => format!("'{key}': {message}"),
            None => message.to_string(),
        },
    }
}

fn log_tail(log: &str) -> String {
    if log.trim().is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = log.lines().collect();
    format!(
        "\n  {}",
        lines[lines.len().saturating_sub(15)..].join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        text.to_string()
    }

    fn io_err() -> std::io::Error {
        std::io::Error::from_raw_os_error(13)
    }

    /// Every variant, with the text that names its subject.
    fn every_variant() -> Vec<(Error, &'static str)> {
        vec![
            (Error::NoRoot("/tpyo".into()), "/tpyo"),
            (Error::NoSuchRealm(s("a")), "'a'"),
            (Error::RealmExists(s("b")), "'b'"),
            (Error::Running(s("c")), "'c'"),
            (Error::IsDefault(s("d")), "'d'"),
            (
                Error::ImageInUse {
                    image: s("base"),
                    realms: s("'e'"),
                },
                "'base'",
            ),
            (
                Error::BadConfig {
                    path: "/realms/realm-f/config".into(),
                    line: Some(3),
                    message: s("expected a boolean"),
                },
                "/realms/realm-f/config: line 3",
            ),
            (
                Error::UnknownKey {
                    key: s("use-nothing"),
                    known: s("use-gpu"),
                },
                "'use-nothing'",
            ),
            (
                Error::BadValue {
                    key: s("use-gpu"),
                    value: s("maybe"),
                    allowed: s("true or false"),
                },
                "'use-gpu'",
            ),
            (Error::NoDefault, "default realm"),
            (
                Error::StartFailed {
                    name: s("g"),
                    reason: s("nspawn exited"),
                    log: s("last line"),
                },
                "'g'",
            ),
            (Error::realm("h", "something"), "'h'"),
            (Error::NotRunning { name: s("i") }, "'i'"),
            (
                Error::MustBeStopped {
                    name: s("j"),
                    because: s(" and rebase replaces its root"),
                },
                "'j'",
            ),
            (
                Error::SnapshotExists {
                    realm: s("k"),
                    snapshot: s("s1"),
                },
                "'s1'",
            ),
            (
                Error::NoSuchSnapshot {
                    realm: s("l"),
                    snapshot: s("s2"),
                },
                "'s2'",
            ),
            (
                Error::RootInUse {
                    name: s("m"),
                    users: s("PID 7 (bash)"),
                },
                "'m'",
            ),
            (
                Error::UnknownFilesystem {
                    image: s("n"),
                    filesystem: s("zfs"),
                },
                "'n'",
            ),
            (
                Error::NeedsPrivateKey {
                    image: s("o"),
                    looked_for: "/keys/o.key".into(),
                },
                "/keys/o.key",
            ),
            (
                Error::CommandNotFound {
                    name: s("p"),
                    command: s("vim"),
                },
                "vim",
            ),
            (
                Error::NotExecutable {
                    name: s("q"),
                    command: s("/x"),
                    reason: s("permission denied"),
                },
                "/x",
            ),
            (
                Error::Zone {
                    zone: s("work"),
                    message: s("no free subnet"),
                },
                "'work'",
            ),
            (
                Error::InvalidZoneName {
                    zone: s("Bad"),
                    rule: s("lowercase"),
                },
                "'Bad'",
            ),
            (Error::NoFreeSubnet { zone: s("full") }, "'full'"),
            (
                Error::Serialize {
                    path: "/realms/zones.toml".into(),
                    source: <toml::ser::Error as serde::ser::Error>::custom("bad"),
                },
                "/realms/zones.toml",
            ),
            (
                Error::ZoneInUse {
                    zone: s("lab"),
                    realms: s("'r'"),
                },
                "'lab'",
            ),
            (
                Error::io("reading", "/realms/zones.toml", io_err()),
                "/realms/zones.toml",
            ),
            (
                Error::Image(realms_image::Error::NotFound {
                    name: s("img"),
                    path: "/storage/appimg/img.appimg".into(),
                }),
                "'img'",
            ),
            (
                Error::Sys(realms_sys::Error::io("opening", "/s/k", io_err())),
                "/s/k",
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
                text.push_str(&format!(": {cause}"));
                level = cause;
            }
            assert!(text.contains(subject), "{text:?} does not name {subject:?}");
        }
        for (err, _) in every_variant() {
            let mut level: &dyn std::error::Error = &err;
            while let Some(cause) = level.source() {
                let (outer, inner) = (level.to_string(), cause.to_string());
                assert!(
                    !outer.contains(&inner),
                    "{outer:?}: the cause {inner:?} prints twice"
                );
                level = cause;
            }
        }
    }
}
