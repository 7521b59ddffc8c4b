//! Errors of the realm store: each names the realm, file, line or key it is about.

use std::path::{Path, PathBuf};

use crate::value::ValueProblem;

/// Everything that can go wrong managing realms.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--root` directory does not exist.
    #[error(
        "{} does not exist; check the --root (or REALMS_ROOT) directory, or create it first",
        .0.display()
    )]
    NoRoot(PathBuf),
    /// No realm of that name.
    #[error("realm '{0}' does not exist; `realms list` shows the realms there are")]
    NoSuchRealm(String),
    /// A realm of that name exists already.
    #[error("realm '{0}' already exists")]
    RealmExists(String),
    /// The realm runs and the operation needs it stopped (`--stop` stops it).
    #[error("realm '{0}' is running; stop it first or pass --stop")]
    Running(String),
    /// The default realm cannot be removed.
    #[error(
        "realm '{0}' is the default realm; make another realm the default first (`realms default OTHER`)"
    )]
    IsDefault(String),
    /// An image that overlay realms are made on cannot be removed.
    #[error(
        "application image '{image}' is used by realm(s) {realms}, which are overlays on it; remove them first"
    )]
    ImageInUse {
        /// The image.
        image: String,
        /// The overlay realms, quoted and comma-separated.
        realms: String,
    },
    /// A config file (a realm config, zones.toml, a snapshot's record) that is not valid TOML
    /// or not of the expected shape: `message` is the TOML parser's own text (prefixed with the
    /// key its line sets), `line` the line it points at.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when the error is about one.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A config file that is not UTF-8 text.
    #[error("{}: line {line}: not valid UTF-8; fix or remove the file, nothing was changed", path.display())]
    ConfigNotUtf8 {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the first bad byte.
        line: usize,
    },
    /// A value in a config file that its key does not take.
    #[error("{}: bad value '{value}' for key '{key}': {problem}", path.display())]
    BadConfigValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value (or the list entry) as written.
        value: String,
        /// Why it is refused.
        problem: Box<ValueProblem>,
    },
    /// An entry of zones.toml that breaks a rule (shown inline: listings show the error on one
    /// line without its causes).
    #[error("{}: {problem}", path.display())]
    BadZoneEntry {
        /// zones.toml.
        path: PathBuf,
        /// What is wrong with the entry: an invalid zone name or subnet, naming the zone.
        problem: Box<Error>,
    },
    /// A config key that does not exist.
    #[error("unknown config key '{key}'; the keys are {known}")]
    UnknownKey {
        /// The key.
        key: String,
        /// The keys there are.
        known: String,
    },
    /// A value a config key does not take.
    #[error("bad value '{value}' for '{key}': {problem}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused (what the key takes).
        problem: ValueProblem,
    },
    /// No default realm is set.
    #[error("no default realm is set; set one with `realms default NAME`")]
    NoDefault,
    /// The realm did not come up; the tail of its log says why.
    #[error("realm '{name}' failed to start: {reason}{}", log_tail(log))]
    StartFailed {
        /// The realm.
        name: String,
        /// Why.
        reason: StartFailure,
        /// The realm's log (its tail is shown).
        log: String,
    },
    /// `realms run` without a command.
    #[error("realm '{name}': no command given; use `realms run NAME -- COMMAND [ARGS...]`")]
    NoCommand {
        /// The realm.
        name: String,
    },
    /// `--cwd` is not an absolute path.
    #[error("realm '{name}': --cwd {} is not an absolute path inside the realm", cwd.display())]
    RelativeCwd {
        /// The realm.
        name: String,
        /// The directory given.
        cwd: PathBuf,
    },
    /// The `--cwd` directory does not exist in the realm.
    #[error("realm '{name}': there is no directory {} in the realm (--cwd)", cwd.display())]
    NoCwd {
        /// The realm.
        name: String,
        /// The directory given.
        cwd: PathBuf,
    },
    /// The user to run as is not in the realm's /etc/passwd.
    #[error("realm '{name}': there is no user '{user}' in the realm's /etc/passwd{hint}")]
    NoSuchUser {
        /// The realm.
        name: String,
        /// The user.
        user: String,
        /// What to do instead, with its leading "; " (or nothing).
        hint: &'static str,
    },
    /// nspawn did not start exactly one container process in time.
    #[error("realm '{name}': nspawn (pid {pid}) has no single container process")]
    NoContainerProcess {
        /// The realm.
        name: String,
        /// nspawn's pid.
        pid: u32,
    },
    /// A rebase onto an image that needs another kind of root than the realm's.
    #[error(
        "realm '{name}': its root is {has} and image '{image}' needs {needs}; make a new realm on it instead (`realms new NEW --appimg {image}`)"
    )]
    RootKindMismatch {
        /// The realm.
        name: String,
        /// The image.
        image: String,
        /// The realm's root kind.
        has: &'static str,
        /// The root kind the image needs.
        needs: &'static str,
    },
    /// A rename onto a name whose earlier realm left snapshots.
    #[error(
        "realm '{name}': snapshots of an earlier realm of that name remain in {}; remove them first",
        dir.display()
    )]
    OrphanSnapshots {
        /// The realm.
        name: String,
        /// Where the snapshots are.
        dir: PathBuf,
    },
    /// The thread flushing a new realm's config panicked.
    #[error("realm '{name}': flushing the config failed")]
    ConfigNotFlushed {
        /// The realm.
        name: String,
    },
    /// Port forwards on a realm without a network zone.
    #[error(
        "realm '{name}': port-forward needs a network zone, and use-network is false; set `use-network true` \
         or remove the port forwards"
    )]
    ForwardsWithoutNetwork {
        /// The realm.
        name: String,
    },
    /// The host side of an extra bind mount does not exist.
    #[error(
        "realm '{name}': extra bind mount source {} does not exist on the host",
        path.display()
    )]
    NoBindSource {
        /// The realm.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// Processes of the realm's control group survive SIGKILL.
    #[error("realm '{name}': could not kill what is left of it: {pids} (in {})", cgroup.display())]
    Unkillable {
        /// The realm.
        name: String,
        /// The processes left, with their names.
        pids: String,
        /// The control group.
        cgroup: PathBuf,
    },
    /// A realm of the same name from another store runs on this host.
    #[error(
        "realm '{name}': a realm of the same name from another store runs on this host ({}); network \
         interface names are host-wide, so stop it first or rename this realm",
        other.display()
    )]
    SameNameRunning {
        /// The realm.
        name: String,
        /// The other realm's control group.
        other: PathBuf,
    },
    /// `appimg build --from` names a block or sealed image.
    #[error(
        "realm '{image}': application image '{image}' is a {kind} image; build from a tree image or a directory"
    )]
    NotTreeImage {
        /// The image.
        image: String,
        /// The image's kind (`block` or `sealed`).
        kind: &'static str,
    },
    /// A host port forwarded to another running realm.
    #[error(
        "realm '{name}': port-forward '{forward}': host port {proto} {port} is already forwarded to realm '{holder}' \
         (zone '{zone}'); pick another host port"
    )]
    PortTaken {
        /// The realm.
        name: String,
        /// The port forward as configured.
        forward: String,
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The host port.
        port: u16,
        /// The realm the port goes to.
        holder: String,
        /// The holder's zone.
        zone: String,
    },
    /// A realm that has never started has no log.
    #[error(
        "realm '{name}': it has no log yet; it gets one when it starts (`realms start {name}`)"
    )]
    NoLog {
        /// The realm.
        name: String,
    },
    /// The realm is not running.
    #[error("realm '{name}': it is not running")]
    NotRunning {
        /// The realm.
        name: String,
    },
    /// The operation needs the realm stopped.
    #[error("realm '{name}': it is running{because}; stop it first (`realms stop {name}`)")]
    MustBeStopped {
        /// The realm.
        name: String,
        /// Why, with its leading ", " (or nothing).
        because: String,
    },
    /// A snapshot of that name exists already.
    #[error(
        "realm '{realm}': it has a snapshot '{snapshot}' already; `realms snapshot remove {realm} {snapshot}` removes it"
    )]
    SnapshotExists {
        /// The realm.
        realm: String,
        /// The snapshot.
        snapshot: String,
    },
    /// No snapshot of that name.
    #[error(
        "realm '{realm}': it has no snapshot '{snapshot}'; `realms snapshot list {realm}` shows its snapshots"
    )]
    NoSuchSnapshot {
        /// The realm.
        realm: String,
        /// The snapshot.
        snapshot: String,
    },
    /// Processes outside the realm still use its root.
    #[error(
        "realm '{name}': its root is still in use by {users}; stop them first (`realms stop {name}` stops \
         everything that runs in the realm)"
    )]
    RootInUse {
        /// The realm.
        name: String,
        /// The processes, with their names.
        users: String,
    },
    /// image.meta names a filesystem realms cannot mount.
    #[error("realm '{image}': image.meta names an unknown filesystem '{filesystem}'")]
    UnknownFilesystem {
        /// The image.
        image: String,
        /// The filesystem named.
        filesystem: String,
    },
    /// Resealing an image needs its private key.
    #[error("realm '{image}': resealing needs the private key; pass --key (looked for {})", looked_for.display())]
    NeedsPrivateKey {
        /// The image.
        image: String,
        /// Where the key was looked for.
        looked_for: PathBuf,
    },
    /// The command to run is not in the realm (exit status 127).
    #[error("realm '{name}': {command}: command not found in the realm")]
    CommandNotFound {
        /// The realm.
        name: String,
        /// The command.
        command: String,
    },
    /// The command to run cannot be executed (exit status 126).
    #[error("realm '{name}': {command}: cannot execute: {reason}")]
    NotExecutable {
        /// The realm.
        name: String,
        /// The command.
        command: String,
        /// Why.
        reason: ExecProblem,
    },
    /// A zone's subnet cannot change while its realms run.
    #[error(
        "network zone '{zone}': realm(s) {realms} run in it; stop them before changing its subnet"
    )]
    ZoneBusy {
        /// The zone.
        zone: String,
        /// The running realms, quoted and comma-separated.
        realms: String,
    },
    /// The subnet is another zone's of this store.
    #[error("network zone '{zone}': subnet {subnet} is already the subnet of zone '{other}'")]
    SubnetOfZone {
        /// The zone.
        zone: String,
        /// The subnet.
        subnet: String,
        /// The zone that has it.
        other: String,
    },
    /// Another realm store owns the zone on this host.
    #[error(
        "network zone '{zone}': on this host the zone (bridge {bridge}, subnet {subnet}) belongs to the realm store {}; put \
         this store's realms in another zone (`realms config NAME network-zone OTHER`), \
         or remove the zone from that store first (`realms zone remove {zone}` there)",
        owner.display()
    )]
    ZoneOwnedElsewhere {
        /// The zone.
        zone: String,
        /// The zone's bridge.
        bridge: String,
        /// The subnet.
        subnet: String,
        /// The owning store's directory.
        owner: PathBuf,
    },
    /// A subnet that is not of the form A.B.C.0/24.
    #[error("network zone '{zone}': {problem}")]
    InvalidSubnet {
        /// The zone.
        zone: String,
        /// What is wrong with it.
        problem: crate::names::BadSubnet,
    },
    /// The subnet is another zone's on this host.
    #[error(
        "network zone '{zone}': subnet {subnet} is in use by zone '{other}' of {whose}; give this zone another with `realms zone {zone} subnet A.B.C.0/24`"
    )]
    SubnetInUse {
        /// The zone.
        zone: String,
        /// The subnet.
        subnet: String,
        /// The zone that has it.
        other: String,
        /// "this store" or "the realm store PATH".
        whose: String,
    },
    /// The subnet overlaps a host interface's network.
    #[error(
        "network zone '{zone}': subnet {subnet} overlaps {network}/{len} on host interface {dev}; give this zone another with `realms zone {zone} subnet A.B.C.0/24`"
    )]
    SubnetOverlaps {
        /// The zone.
        zone: String,
        /// The subnet.
        subnet: String,
        /// The interface's network address.
        network: std::net::Ipv4Addr,
        /// The network's prefix length.
        len: u8,
        /// The host interface.
        dev: String,
    },
    /// No zone of that name in this store.
    #[error(
        "network zone '{zone}': there is no such zone in this store; `realms zone` lists its zones"
    )]
    NoSuchZone {
        /// The zone.
        zone: String,
    },
    /// Every address of the zone's subnet is leased.
    #[error("network zone '{zone}': no free address left")]
    NoFreeAddress {
        /// The zone.
        zone: String,
    },
    /// The zone's nftables rules could not be installed.
    #[error(
        "network zone '{zone}': installing the nftables rules of the zone failed (is the `nftables` package \
         installed?)"
    )]
    NftApply {
        /// The zone.
        zone: String,
        /// The cause.
        #[source]
        source: Box<realms_sys::Error>,
    },
    /// The zone's nftables table could not be deleted.
    #[error("network zone '{zone}': deleting the nftables table {table} failed")]
    NftDelete {
        /// The zone.
        zone: String,
        /// The nftables table.
        table: String,
        /// The cause.
        #[source]
        source: Box<realms_sys::Error>,
    },
    /// A zone name that breaks the zone name rule.
    #[error("network zone '{zone}': {rule}")]
    InvalidZoneName {
        /// The zone.
        zone: String,
        /// The rule it breaks.
        rule: realms_image::ZoneNameProblem,
    },
    /// No 10.77.N.0/24 subnet is free for a new zone.
    #[error(
        "network zone '{zone}': no free 10.77.N.0/24 subnet; set one with `realms zone ZONE subnet A.B.C.0/24`"
    )]
    NoFreeSubnet {
        /// The zone.
        zone: String,
    },
    /// Settings that do not serialise as TOML.
    #[error("writing {} (its settings do not serialise as TOML)", path.display())]
    Serialize {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::ser::Error,
    },
    /// A zone that realms are configured for cannot be removed.
    #[error(
        "network zone '{zone}' is used by realm(s) {realms}; move them to another zone \
         (`realms config NAME network-zone OTHER`) or remove them first"
    )]
    ZoneInUse {
        /// The zone.
        zone: String,
        /// The realms configured for the zone.
        realms: String,
    },
    /// An error of the image store.
    #[error(transparent)]
    Image(#[from] realms_image::Error),
    /// A system call, command or I/O error (it names its path).
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

/// The result of this crate's operations.
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

/// The key a TOML line is about: `key = ...`, or the table `[key]`.
fn line_key(line: &str) -> Option<&str> {
    let line = line.trim();
    let key = match line.strip_prefix('[') {
        Some(rest) => rest.trim_end_matches(']').trim_start_matches('['),
        None => line.split_once('=')?.0,
    }
    .trim()
    .trim_matches('"');
    (!key.is_empty() && key.len() <= 64).then_some(key)
}

/// A TOML parse error as a config error naming the file and line.
pub(crate) fn bad_file(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let line = realms_image::toml_line(text, err);
    let message = err.message().trim();
    // The key the error is about, read off its line (`key = ...` or `[key]`), unless the
    // message names it already.
    let key = line
        .and_then(|l| text.lines().nth(l - 1))
        .and_then(line_key)
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

/// Why a realm did not come up.
#[derive(Debug, thiserror::Error)]
pub enum StartFailure {
    /// systemd-nspawn exited before the realm's init reported ready.
    #[error("systemd-nspawn exited with {status} (log: {})", log.display())]
    NspawnExited {
        /// How it exited.
        status: std::process::ExitStatus,
        /// The realm's log file.
        log: PathBuf,
    },
    /// The realm's init did not report ready in time (it was killed).
    #[error("its init did not report ready within {seconds}s")]
    NotReady {
        /// The time it had.
        seconds: u64,
    },
    /// `systemctl start` of the realm's unit failed; the command's own error, shown inline
    /// because the unit's journal follows it.
    #[error("{0}")]
    Unit(Box<realms_sys::Error>),
}

/// Why a command in a realm cannot be executed (a shell's exit status 126).
#[derive(Debug, thiserror::Error)]
pub enum ExecProblem {
    /// The path is a directory.
    #[error("it is a directory")]
    Directory,
    /// The file has no execute permission.
    #[error("it is not executable")]
    NotExecutable,
    /// The kernel refused to execute it (the OS error, e.g. a bad interpreter).
    #[error("{0}")]
    Os(std::io::Error),
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
mod tests;
