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
    #[error("realm '{name}': no command given; use `realms run NAME -- COMMAND [ARGS...]`")]
    NoCommand { name: String },
    #[error("realm '{name}': --cwd {} is not an absolute path inside the realm", cwd.display())]
    RelativeCwd { name: String, cwd: PathBuf },
    #[error("realm '{name}': there is no directory {} in the realm (--cwd)", cwd.display())]
    NoCwd { name: String, cwd: PathBuf },
    #[error("realm '{name}': there is no user '{user}' in the realm's /etc/passwd{hint}")]
    NoSuchUser {
        name: String,
        user: String,
        /// What to do instead, with its leading "; " (or nothing).
        hint: &'static str,
    },
    #[error("realm '{name}': nspawn (pid {pid}) has no single container process")]
    NoContainerProcess { name: String, pid: u32 },
    #[error(
        "realm '{name}': its root is {has} and image '{image}' needs {needs}; make a new realm on it instead (`realms new NEW --appimg {image}`)"
    )]
    RootKindMismatch {
        name: String,
        image: String,
        has: &'static str,
        needs: &'static str,
    },
    #[error(
        "realm '{name}': snapshots of an earlier realm of that name remain in {}; remove them first",
        dir.display()
    )]
    OrphanSnapshots { name: String, dir: PathBuf },
    #[error("realm '{name}': flushing the config failed")]
    ConfigNotFlushed { name: String },
    #[error(
        "realm '{name}': port-forward needs a network zone, and use-network is false; set `use-network true` \
         or remove the port forwards"
    )]
    ForwardsWithoutNetwork { name: String },
    #[error(
        "realm '{name}': extra bind mount source {} does not exist on the host",
        path.display()
    )]
    NoBindSource { name: String, path: PathBuf },
    #[error("realm '{name}': could not kill what is left of it: {pids} (in {})", cgroup.display())]
    Unkillable {
        name: String,
        pids: String,
        cgroup: PathBuf,
    },
    #[error(
        "realm '{name}': a realm of the same name from another store runs on this host ({}); network \
         interface names are host-wide, so stop it first or rename this realm",
        other.display()
    )]
    SameNameRunning { name: String, other: PathBuf },
    #[error(
        "realm '{image}': application image '{image}' is a {kind} image; build from a tree image or a directory"
    )]
    NotTreeImage { image: String, kind: &'static str },
    #[error(
        "realm '{name}': port-forward '{forward}': host port {proto} {port} is already forwarded to realm '{holder}' \
         (zone '{zone}'); pick another host port"
    )]
    PortTaken {
        name: String,
        forward: String,
        proto: &'static str,
        port: u16,
        holder: String,
        zone: String,
    },
    #[error(
        "realm '{name}': it has no log yet; it gets one when it starts (`realms start {name}`)"
    )]
    NoLog { name: String },
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
    #[error(
        "network zone '{zone}': realm(s) {realms} run in it; stop them before changing its subnet"
    )]
    ZoneBusy { zone: String, realms: String },
    #[error("network zone '{zone}': subnet {subnet} is already the subnet of zone '{other}'")]
    SubnetOfZone {
        zone: String,
        subnet: String,
        other: String,
    },
    #[error(
        "network zone '{zone}': on this host the zone (bridge {bridge}, subnet {subnet}) belongs to the realm store {}; put \
         this store's realms in another zone (`realms config NAME network-zone OTHER`), \
         or remove the zone from that store first (`realms zone remove {zone}` there)",
        owner.display()
    )]
    ZoneOwnedElsewhere {
        zone: String,
        bridge: String,
        subnet: String,
        owner: PathBuf,
    },
    #[error("network zone '{zone}': {problem}")]
    InvalidSubnet {
        zone: String,
        problem: crate::names::BadSubnet,
    },
    #[error(
        "network zone '{zone}': subnet {subnet} is in use by zone '{other}' of {whose}; give this zone another with `realms zone {zone} subnet A.B.C.0/24`"
    )]
    SubnetInUse {
        zone: String,
        subnet: String,
        other: String,
        /// "this store" or "the realm store PATH".
        whose: String,
    },
    #[error(
        "network zone '{zone}': subnet {subnet} overlaps {network}/{len} on host interface {dev}; give this zone another with `realms zone {zone} subnet A.B.C.0/24`"
    )]
    SubnetOverlaps {
        zone: String,
        subnet: String,
        network: std::net::Ipv4Addr,
        len: u8,
        dev: String,
    },
    #[error(
        "network zone '{zone}': there is no such zone in this store; `realms zone` lists its zones"
    )]
    NoSuchZone { zone: String },
    #[error("network zone '{zone}': no free address left")]
    NoFreeAddress { zone: String },
    #[error(
        "network zone '{zone}': installing the nftables rules of the zone failed (is the `nftables` package \
         installed?)"
    )]
    NftApply {
        zone: String,
        #[source]
        source: Box<realms_sys::Error>,
    },
    #[error("network zone '{zone}': deleting the nftables table {table} failed")]
    NftDelete {
        zone: String,
        table: String,
        #[source]
        source: Box<realms_sys::Error>,
    },
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
    #[error(transparent)]
    Image(#[from] realms_image::Error),
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    Error::BadConfig {
        path: path.to_path_buf(),
        line,
        message: err.message().trim().to_string(),
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
            (Error::NoCommand { name: s("h") }, "'h'"),
            (
                Error::RelativeCwd {
                    name: s("h"),
                    cwd: "tmp".into(),
                },
                "--cwd tmp",
            ),
            (
                Error::NoCwd {
                    name: s("h"),
                    cwd: "/nope".into(),
                },
                "/nope",
            ),
            (
                Error::NoSuchUser {
                    name: s("h"),
                    user: s("user"),
                    hint: "; use `realms shell --root`",
                },
                "'user'",
            ),
            (
                Error::NoContainerProcess {
                    name: s("h"),
                    pid: 42,
                },
                "'h'",
            ),
            (
                Error::RootKindMismatch {
                    name: s("h"),
                    image: s("img"),
                    has: "an overlay",
                    needs: "a btrfs snapshot",
                },
                "'img'",
            ),
            (
                Error::OrphanSnapshots {
                    name: s("h"),
                    dir: "/realms/.snapshots/h".into(),
                },
                "/realms/.snapshots/h",
            ),
            (Error::ConfigNotFlushed { name: s("h") }, "'h'"),
            (Error::ForwardsWithoutNetwork { name: s("h") }, "'h'"),
            (
                Error::NoBindSource {
                    name: s("h"),
                    path: "/srv/data".into(),
                },
                "/srv/data",
            ),
            (
                Error::Unkillable {
                    name: s("h"),
                    pids: s("7 (sleep)"),
                    cgroup: "/sys/fs/cgroup/x".into(),
                },
                "/sys/fs/cgroup/x",
            ),
            (
                Error::SameNameRunning {
                    name: s("h"),
                    other: "/other/store".into(),
                },
                "/other/store",
            ),
            (
                Error::NotTreeImage {
                    image: s("sealedimg"),
                    kind: "sealed",
                },
                "'sealedimg'",
            ),
            (
                Error::PortTaken {
                    name: s("h"),
                    forward: s("tcp:8080:80"),
                    proto: "tcp",
                    port: 8080,
                    holder: s("other"),
                    zone: s("clear"),
                },
                "'other'",
            ),
            (Error::NoLog { name: s("h") }, "'h'"),
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
                Error::ZoneBusy {
                    zone: s("work"),
                    realms: s("'a'"),
                },
                "'work'",
            ),
            (
                Error::SubnetOfZone {
                    zone: s("work"),
                    subnet: s("10.77.1.0/24"),
                    other: s("lab"),
                },
                "'lab'",
            ),
            (
                Error::ZoneOwnedElsewhere {
                    zone: s("work"),
                    bridge: s("vz-work"),
                    subnet: s("10.77.1.0/24"),
                    owner: "/other/store".into(),
                },
                "/other/store",
            ),
            (
                Error::InvalidSubnet {
                    zone: s("work"),
                    problem: crate::names::parse_subnet("10.1.2.3/16").unwrap_err(),
                },
                "'10.1.2.3/16'",
            ),
            (
                Error::SubnetInUse {
                    zone: s("work"),
                    subnet: s("10.77.1.0/24"),
                    other: s("lab"),
                    whose: s("this store"),
                },
                "'lab'",
            ),
            (
                Error::SubnetOverlaps {
                    zone: s("work"),
                    subnet: s("10.77.1.0/24"),
                    network: std::net::Ipv4Addr::new(10, 77, 1, 0),
                    len: 16,
                    dev: s("eth0"),
                },
                "eth0",
            ),
            (Error::NoSuchZone { zone: s("work") }, "'work'"),
            (Error::NoFreeAddress { zone: s("work") }, "'work'"),
            (
                Error::NftApply {
                    zone: s("work"),
                    source: Box::new(realms_sys::Error::io(
                        "running nft",
                        "/usr/sbin/nft",
                        io_err(),
                    )),
                },
                "'work'",
            ),
            (
                Error::NftDelete {
                    zone: s("work"),
                    table: s("realms_work"),
                    source: Box::new(realms_sys::Error::io(
                        "running nft",
                        "/usr/sbin/nft",
                        io_err(),
                    )),
                },
                "realms_work",
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
