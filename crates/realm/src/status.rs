//! `realms status NAME` and `realms logs NAME`: what a realm is doing, read from the host. The
//! logs are the realm's own journal (its `/var/log/journal`, read with `journalctl
//! --directory`), or else what its nspawn printed (the log file of the direct executor, or the
//! unit's journal under systemd).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use realms_sys::cmd::Cmd;
use serde::Serialize;

use crate::config::KEYS;
use crate::launch::{self, Executor};
use crate::rebase::on_image;
use crate::store::{RealmStore, RootKind};
use crate::{Result, plan, zone};

/// Everything `realms status NAME` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    /// The realm.
    pub name: String,
    /// True when it runs.
    pub running: bool,
    /// Who runs its nspawn (`systemd` or `direct`).
    pub executor: &'static str,
    /// The systemd unit (systemd executor).
    pub unit: Option<String>,
    /// The realm's init on the host (its namespaces are the realm's).
    pub leader: Option<u32>,
    /// The systemd-nspawn process.
    pub pid: Option<u32>,
    /// Seconds since the realm's init started.
    pub uptime: Option<u64>,
    /// Its network zone (`None`: loopback only).
    pub zone: Option<String>,
    /// Its address in the zone, while it runs.
    pub address: Option<String>,
    /// Its application image.
    pub appimg: String,
    /// The version of the image the realm is on.
    pub image_version: Option<String>,
    /// The image's current version.
    pub current_image_version: Option<String>,
    /// True when the realm is not on the current version (`realms rebase NAME`).
    pub behind: bool,
    /// How its root is made.
    pub root: RootKind,
    /// True for the default realm.
    pub default: bool,
    /// True for the current realm.
    pub current: bool,
    /// True when it starts at boot.
    pub autostart: bool,
    /// Every option with its effective value.
    pub options: BTreeMap<String, toml::Value>,
    /// Options that cannot take effect on this host, and why.
    pub notes: Vec<String>,
    /// The last lines of its log.
    pub log: Vec<String>,
}

/// `realms status NAME`.
pub fn status(store: &RealmStore, name: &str, log_lines: usize) -> Result<Status> {
    store.check_exists(name)?;
    let config = store.config(name)?;
    let running = launch::is_running(store, name);
    let on = on_image(store, name, config.appimg());
    let leader = running.then(|| launch::leader(store, name).ok()).flatten();
    let pid = leader.and_then(realms_sys::proc::parent_of);
    let executor = store.executor();
    let notes = plan::plan(store, name, &config, &plan::RealHost)
        .map(|p| p.notes)
        .unwrap_or_else(|e| vec![e.to_string()]);
    let (zone, address) = match lease_of(store, name) {
        Some((z, a)) if running => (Some(z), Some(a)),
        _ => (
            config
                .use_network()
                .then(|| config.network_zone().to_string()),
            None,
        ),
    };
    let log = match log_source(store, name) {
        Some(source) => source.tail(log_lines).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Status {
        name: name.to_string(),
        running,
        executor: match executor {
            Executor::Direct => "direct",
            Executor::Systemd => "systemd",
        },
        unit: (executor == Executor::Systemd).then(|| format!("realm-{name}.service")),
        leader,
        pid,
        uptime: leader.and_then(uptime_of),
        zone,
        address,
        appimg: config.appimg().to_string(),
        image_version: on.version,
        current_image_version: on.current_version,
        behind: on.behind,
        root: store.root_kind(name),
        default: store.default_realm().as_deref() == Some(name),
        current: crate::select::current(store).as_deref() == Some(name),
        autostart: config.autostart(),
        options: options(&config),
        notes,
        log,
    })
}

/// Every key's effective value (the file's, or the default).
fn options(config: &crate::config::RealmConfig) -> BTreeMap<String, toml::Value> {
    let set = toml::Value::try_from(config)
        .ok()
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    KEYS.iter()
        .filter_map(|(k, _, default, _)| {
            let value = set.get(*k).cloned().or_else(|| {
                toml::from_str::<toml::Table>(&format!("v = {default}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
            })?;
            Some((k.to_string(), value))
        })
        .collect()
}

/// The zone and address the realm holds a lease on.
fn lease_of(store: &RealmStore, name: &str) -> Option<(String, String)> {
    let zones = zone::load(store).ok()?;
    for dir in fs::read_dir(store.run_dir().join("leases")).ok()?.flatten() {
        let zone_name = dir.file_name().to_string_lossy().into_owned();
        for lease in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            if fs::read_to_string(lease.path()).is_ok_and(|o| o.trim() == name) {
                let net = zone::parse_subnet(&zones.get(&zone_name)?.subnet).ok()?;
                let o = net.octets();
                let host = lease.file_name().to_string_lossy().into_owned();
                return Some((zone_name, format!("{}.{}.{}.{host}", o[0], o[1], o[2])));
            }
        }
    }
    None
}

/// Seconds since process `pid` started.
fn uptime_of(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')')? + 2..];
    let start_ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot_uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((boot_uptime as u64).saturating_sub(start_ticks / USER_HZ))
}

/// Clock ticks per second in /proc (USER_HZ, 100 on every architecture Linux runs on today).
const USER_HZ: u64 = 100;

/// Where a realm's log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// The realm's persistent journal directory.
    Journal(PathBuf),
    /// The output of its nspawn (direct executor).
    File(PathBuf),
    /// The unit's journal on the host (systemd executor).
    Unit(String),
}

/// The realm's journal if it has one, else its nspawn's output; `None` before its first start.
pub fn log_source(store: &RealmStore, name: &str) -> Option<LogSource> {
    let dir = store.realm_dir(name);
    let journal = match store.root_kind(name) {
        RootKind::Snapshot => dir.join("rootfs/var/log/journal"),
        RootKind::Overlay => dir.join("overlay/upper/var/log/journal"),
    };
    if has_journal_files(&journal) {
        return Some(LogSource::Journal(journal));
    }
    let file = launch::log_file(store, name);
    if file.exists() {
        return Some(LogSource::File(file));
    }
    (store.executor() == Executor::Systemd)
        .then(|| LogSource::Unit(format!("realm-{name}.service")))
}

fn has_journal_files(dir: &Path) -> bool {
    let journal = |p: &Path| p.extension().is_some_and(|e| e == "journal");
    fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        journal(&e.path())
            || fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| journal(&f.path()))
    })
}

impl LogSource {
    /// The command that shows the last `lines` lines (and with `follow`, what comes after);
    /// `json` asks journalctl for one JSON object per entry.
    pub fn command(&self, lines: usize, follow: bool, json: bool) -> Cmd {
        let mut cmd = match self {
            LogSource::Journal(_) | LogSource::Unit(_) => {
                let mut c = Cmd::new("journalctl");
                c.args(["--no-pager", "--quiet"])
                    .arg(format!("--lines={lines}"));
                if json {
                    c.arg("--output=json");
                }
                c
            }
            LogSource::File(_) => {
                let mut c = Cmd::new("tail");
                c.arg(format!("--lines={lines}"));
                c
            }
        };
        if follow {
            cmd.arg("--follow");
        }
        match self {
            LogSource::Journal(dir) => cmd.arg("--directory").arg(dir),
            LogSource::Unit(unit) => cmd.arg("--unit").arg(unit),
            LogSource::File(file) => cmd.arg("--").arg(file),
        };
        cmd
    }

    /// The last `lines` lines.
    pub fn tail(&self, lines: usize) -> Result<Vec<String>> {
        let out = self.command(lines, false, false).output_string()?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Shows the log on our stdout (following it with `follow`); returns the tool's status.
    pub fn show(&self, lines: usize, follow: bool, json: bool) -> Result<ExitStatus> {
        Ok(self.command(lines, follow, json).status_inherit()?)
    }

    /// Where the log is, for "Showing ...".
    pub fn describe(&self) -> String {
        match self {
            LogSource::Journal(dir) => format!("the realm's journal in {}", dir.display()),
            LogSource::File(file) => {
                format!("the output of its systemd-nspawn in {}", file.display())
            }
            LogSource::Unit(unit) => format!("the journal of {unit}"),
        }
    }
}
