//! Talking to the service manager: reload, which units are active or enabled, enable/disable
//! with the portable flag, and start/stop/restart jobs — on PID 1's D-Bus API, over the system
//! bus as portablectl calls it (or PID 1's private socket), without a process per call; the
//! `systemctl` and `busctl` tools are the fallback when neither socket can be used.

use realms_sys::IoContext;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use realms_sys::cmd::Cmd;

use crate::dbus::{Conn, SIGNAL, Value};
use crate::error::{Error, Result};
use crate::layout::Host;

const DEST: &str = "org.freedesktop.systemd1";
const OBJECT: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// `UNIT_FILE_RUNTIME` and `UNIT_FILE_PORTABLE` of EnableUnitFilesWithFlags.
const FLAG_RUNTIME: u64 = 1;
const FLAG_PORTABLE: u64 = 1 << 2;
const ACTIVE_STATES: [&str; 4] = ["activating", "active", "reloading", "deactivating"];

/// The service manager of the host, if it is running (a live root with systemd as PID 1).
#[derive(Debug)]
pub struct Systemd {
    running: bool,
    root: std::path::PathBuf,
    /// The private-socket connection, once made (`None` inside: the tools are used instead).
    bus: RefCell<Option<Option<Conn>>>,
}

/// What PID 1 says about a unit (for health checks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// The unit.
    pub unit: String,
    /// `active`, `activating`, `failed`, `inactive`, ...
    pub active: String,
    /// `running`, `auto-restart`, `exited`, `dead`, ...
    pub sub: String,
    /// How often PID 1 restarted it (`NRestarts`, services only).
    pub restarts: u64,
    /// Its current invocation (`InvocationID`): a new one on every start.
    pub invocation: String,
    /// Its main process (`MainPID`, 0 when none).
    pub main_pid: u32,
}

/// A job queued on PID 1.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's D-Bus object path.
    pub path: String,
    /// The method that queued it (`StartUnit`, ...).
    pub method: &'static str,
    /// The unit it is for.
    pub unit: String,
}

fn run_capture(mut cmd: Cmd) -> Result<(bool, String)> {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let out = child
        .wait_with_output()
        .ctx("waiting for", cmd.argv_string())?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn enable_error(unit: &str, enable: bool, source: Error) -> Error {
    Error::Enable {
        verb: if enable { "enable" } else { "disable" },
        unit: unit.to_owned(),
        source: Box::new(source),
    }
}

fn queue_error(method: &'static str, unit: &str, source: Error) -> Error {
    Error::Queue {
        method,
        unit: unit.to_owned(),
        source: Box::new(source),
    }
}

fn busctl_json(args: &[&str]) -> Result<serde_json::Value> {
    let mut cmd = Cmd::new("busctl");
    cmd.arg("--json=short").args(args);
    Ok(cmd.json::<serde_json::Value>()?)
}

impl Systemd {
    /// Detects whether the manager of `host` can be asked: only for the live root (`/`) of a
    /// system booted with systemd (`/run/systemd/system` exists).
    pub fn detect(host: &Host) -> Systemd {
        let running = host.is_live() && Path::new("/run/systemd/system").is_dir();
        Systemd {
            running,
            root: host.root().to_owned(),
            bus: RefCell::new(None),
        }
    }

    /// Runs `f` on the D-Bus connection to PID 1 (made on first use); `None` when there is
    /// none, so the caller falls back to the command-line tools.
    fn with_bus<T>(&self, f: impl FnOnce(&mut Conn) -> std::io::Result<T>) -> Option<Result<T>> {
        if !self.running {
            return None;
        }
        let mut slot = self.bus.borrow_mut();
        let conn = slot.get_or_insert_with(|| {
            Conn::connect(Path::new("/run/dbus/system_bus_socket"), true)
                .or_else(|_| Conn::connect(Path::new("/run/systemd/private"), false))
                .ok()
        });
        let conn = conn.as_mut()?;
        Some(f(conn).map_err(Error::Bus))
    }

    /// Whether systemd is running for this host.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// `systemctl daemon-reload`.
    pub fn reload(&self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        if let Some(r) = self.with_bus(|c| c.call(OBJECT, MANAGER, "Reload", "", &[]).map(drop)) {
            return r.map_err(|e| Error::Reload {
                source: Box::new(e),
            });
        }
        Cmd::new("systemctl")
            .arg("daemon-reload")
            .run()
            .map_err(|e| Error::Reload {
                source: Box::new(e.into()),
            })
    }

    /// The units of `units` that are active (activating, active, reloading, deactivating); a
    /// template counts as active when any of its instances is.
    pub fn active(&self, units: &[String]) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        if !self.running || units.is_empty() {
            return Ok(out);
        }
        if let Some(r) = self.with_bus(|c| bus_active(c, units)) {
            return r;
        }
        let (templates, plain): (Vec<&String>, Vec<&String>) =
            units.iter().partition(|u| u.contains("@."));
        if !plain.is_empty() {
            let mut cmd = Cmd::new("systemctl");
            cmd.args(["show", "--property=Id,ActiveState", "--"])
                .args(&plain);
            let text = cmd.output_string()?;
            for (unit, block) in plain.iter().zip(text.split("\n\n")) {
                let state = block
                    .lines()
                    .find_map(|l| l.strip_prefix("ActiveState="))
                    .unwrap_or("");
                if ACTIVE_STATES.contains(&state) {
                    out.insert((*unit).clone());
                }
            }
        }
        for t in templates {
            let (prefix, suffix) = t.split_once('@').expect("a template has an @");
            let pattern = format!("{prefix}@*{suffix}");
            let mut cmd = Cmd::new("systemctl");
            cmd.args(["list-units", "--all", "--plain", "--no-legend"])
                .arg(format!("--state={}", ACTIVE_STATES.join(",")))
                .args(["--", &pattern]);
            if !cmd.output_string()?.trim().is_empty() {
                out.insert(t.clone());
            }
        }
        Ok(out)
    }

    /// `systemctl is-enabled` of each unit (works offline too, with `--root`); `None` when
    /// systemctl is not available.
    pub fn enablement(&self, units: &[String]) -> Option<BTreeMap<String, String>> {
        if units.is_empty() {
            return Some(BTreeMap::new());
        }
        if let Some(Ok(states)) = self.with_bus(|c| {
            units
                .iter()
                .map(|u| {
                    let s = c
                        .call(OBJECT, MANAGER, "GetUnitFileState", "s", &[str_value(u)])
                        .ok()
                        .and_then(|b| b.first().and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    Ok((u.clone(), s))
                })
                .collect()
        }) {
            return Some(states);
        }
        let mut cmd = Cmd::new("systemctl");
        if !self.running {
            cmd.arg(format!("--root={}", self.root.display()));
        }
        cmd.args(["is-enabled", "--"]).args(units);
        let (_, text) = run_capture(cmd).ok()?;
        let states: Vec<&str> = text.lines().collect();
        (states.len() == units.len()).then(|| {
            units
                .iter()
                .cloned()
                .zip(states.iter().map(|s| s.trim().to_owned()))
                .collect()
        })
    }

    /// Enables (or disables) `unit` with the portable flag, so `[Install]` symlinks go into the
    /// attach directory; returns systemd's change lines as systemctl prints them.
    pub fn enable(&self, unit: &str, runtime: bool, enable: bool) -> Result<Vec<String>> {
        let flags = FLAG_PORTABLE | if runtime { FLAG_RUNTIME } else { 0 };
        let method = if enable {
            "EnableUnitFilesWithFlags"
        } else {
            "DisableUnitFilesWithFlags"
        };
        if let Some(r) = self.with_bus(|c| {
            let names = Value::Array(vec![str_value(unit)]);
            let body = c.call(OBJECT, MANAGER, method, "ast", &[names, Value::U64(flags)])?;
            let changes = if enable { body.get(1) } else { body.first() };
            Ok(changes.map(change_lines).unwrap_or_default())
        }) {
            return r.map_err(|e| enable_error(unit, enable, e));
        }
        let flags = flags.to_string();
        let reply = busctl_json(&[
            "call", DEST, OBJECT, MANAGER, method, "ast", "1", unit, &flags,
        ])
        .map_err(|e| enable_error(unit, enable, e))?;
        let data = &reply["data"];
        let changes = if enable { &data[1] } else { &data[0] };
        let mut lines = Vec::new();
        for c in changes.as_array().into_iter().flatten() {
            let (kind, path, source) = (c[0].as_str(), c[1].as_str(), c[2].as_str());
            match (kind, path) {
                (Some("symlink"), Some(p)) => lines.push(format!(
                    "Created symlink {p} \u{2192} {}.",
                    source.unwrap_or("")
                )),
                (Some("unlink"), Some(p)) => lines.push(format!("Removed \"{p}\".")),
                _ => {}
            }
        }
        Ok(lines)
    }

    /// Queues `method` (StartUnit, StopUnit, RestartUnit) for `unit` with mode "replace".
    pub fn queue(&self, method: &'static str, unit: &str) -> Result<Job> {
        let bus = self.with_bus(|c| {
            c.subscribe()?;
            let body = c.call(
                OBJECT,
                MANAGER,
                method,
                "ss",
                &[str_value(unit), str_value("replace")],
            )?;
            Ok(body
                .first()
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned())
        });
        if let Some(r) = bus {
            let path = r.map_err(|e| queue_error(method, unit, e))?;
            return Ok(Job {
                path,
                method,
                unit: unit.to_owned(),
            });
        }
        let reply = busctl_json(&["call", DEST, OBJECT, MANAGER, method, "ss", unit, "replace"])
            .map_err(|e| queue_error(method, unit, e))?;
        let path = reply["data"][0].as_str().ok_or_else(|| Error::NoJob {
            method,
            unit: unit.to_owned(),
        })?;
        Ok(Job {
            path: path.to_owned(),
            method,
            unit: unit.to_owned(),
        })
    }

    /// Waits until every job is finished; returns the units of start jobs that ended failed.
    pub fn wait(&self, jobs: &[Job]) -> Result<Vec<String>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(r) = self.with_bus(|c| bus_wait(c, jobs)) {
            return r;
        }
        let ids: BTreeSet<&str> = jobs
            .iter()
            .filter_map(|j| j.path.rsplit('/').next())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut pause = Duration::from_millis(2);
        loop {
            let listing = Cmd::new("systemctl")
                .args(["list-jobs", "--plain", "--no-legend"])
                .output_string()
                .unwrap_or_default();
            let pending = listing
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .any(|id| ids.contains(id));
            if !pending {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::JobTimeout {
                    units: jobs.iter().map(|j| j.unit.clone()).collect(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        let started: Vec<String> = jobs
            .iter()
            .filter(|j| j.method != "StopUnit")
            .map(|j| j.unit.clone())
            .collect();
        self.failed(&started)
    }

    /// The states of `units` (empty when systemd is not running).
    pub fn states(&self, units: &[String]) -> Result<Vec<UnitState>> {
        if !self.running || units.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = Cmd::new("systemctl");
        cmd.args([
            "show",
            "--property=Id,ActiveState,SubState,NRestarts,InvocationID,MainPID",
            "--",
        ])
        .args(units);
        Ok(parse_states(units, &cmd.output_string()?))
    }

    fn failed(&self, units: &[String]) -> Result<Vec<String>> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = Cmd::new("systemctl");
        cmd.args(["show", "--property=ActiveState", "--"])
            .args(units);
        let text = cmd.output_string()?;
        Ok(units
            .iter()
            .zip(text.split("\n\n"))
            .filter(|(_, b)| b.contains("ActiveState=failed"))
            .map(|(u, _)| u.clone())
            .collect())
    }
}

/// `systemctl show` output (one block per unit, in the order asked) as states.
fn parse_states(units: &[String], text: &str) -> Vec<UnitState> {
    units
        .iter()
        .zip(text.split("\n\n"))
        .map(|(unit, block)| {
            let mut st = UnitState {
                unit: unit.clone(),
                ..UnitState::default()
            };
            for line in block.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                match k {
                    "ActiveState" => st.active = v.to_owned(),
                    "SubState" => st.sub = v.to_owned(),
                    "NRestarts" => st.restarts = v.parse().unwrap_or(0),
                    "InvocationID" => st.invocation = v.to_owned(),
                    "MainPID" => st.main_pid = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
            st
        })
        .collect()
}

fn str_value(s: &str) -> Value {
    Value::Str(s.to_owned())
}

/// systemctl's lines for the `a(sss)` changes of Enable/DisableUnitFilesWithFlags.
fn change_lines(changes: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    for c in changes.items() {
        let f = c.items();
        let get = |i: usize| f.get(i).and_then(Value::as_str);
        match (get(0), get(1)) {
            (Some("symlink"), Some(p)) => lines.push(format!(
                "Created symlink {p} \u{2192} {}.",
                get(2).unwrap_or("")
            )),
            (Some("unlink"), Some(p)) => lines.push(format!("Removed \"{p}\".")),
            _ => {}
        }
    }
    lines
}

fn bus_active(c: &mut Conn, units: &[String]) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let (templates, plain): (Vec<&String>, Vec<&String>) =
        units.iter().partition(|u| u.contains("@."));
    if !plain.is_empty() {
        // One call for all of them: (name, description, load, active, ...) per unit.
        let names = Value::Array(plain.iter().map(|u| str_value(u)).collect());
        let body = c.call(OBJECT, MANAGER, "ListUnitsByNames", "as", &[names])?;
        for entry in body.first().map(Value::items).unwrap_or_default() {
            let f = entry.items();
            let (Some(name), Some(state)) = (
                f.first().and_then(Value::as_str),
                f.get(3).and_then(Value::as_str),
            ) else {
                continue;
            };
            if ACTIVE_STATES.contains(&state) {
                out.insert(name.to_owned());
            }
        }
    }
    for unit in templates {
        let (prefix, suffix) = unit.split_once("@.").expect("a template has @.");
        let states = Value::Array(ACTIVE_STATES.iter().map(|s| str_value(s)).collect());
        let patterns = Value::Array(vec![str_value(&format!("{prefix}@*.{suffix}"))]);
        let body = c.call(
            OBJECT,
            MANAGER,
            "ListUnitsByPatterns",
            "asas",
            &[states, patterns],
        )?;
        if body.first().is_some_and(|v| !v.items().is_empty()) {
            out.insert(unit.clone());
        }
    }
    Ok(out)
}

/// Waits for the JobRemoved signals of `jobs`; returns the units whose start/restart failed.
fn bus_wait(c: &mut Conn, jobs: &[Job]) -> std::io::Result<Vec<String>> {
    let mut left: BTreeSet<&str> = jobs.iter().map(|j| j.path.as_str()).collect();
    let mut failed = Vec::new();
    let mut pending = std::mem::take(&mut c.pending).into_iter();
    while !left.is_empty() {
        let m = match pending.next() {
            Some(m) => m,
            None => c.read()?,
        };
        if m.kind != SIGNAL || m.member.as_deref() != Some("JobRemoved") {
            continue;
        }
        let get = |i: usize| m.body.get(i).and_then(Value::as_str).unwrap_or("");
        if left.remove(get(1)) {
            let job = jobs
                .iter()
                .find(|j| j.path == get(1))
                .expect("a job of ours");
            if job.method != "StopUnit" && get(3) != "done" {
                failed.push(get(2).to_owned());
            }
        }
    }
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_blocks_parse_in_the_order_asked() {
        let text = "MainPID=42\nNRestarts=0\nId=a.service\nActiveState=active\nSubState=running\nInvocationID=abc\n\nMainPID=0\nNRestarts=3\nId=b.service\nActiveState=activating\nSubState=auto-restart\nInvocationID=\n";
        let units = ["a.service".to_string(), "b.service".to_string()];
        let s = parse_states(&units, text);
        assert_eq!(
            (s[0].active.as_str(), s[0].sub.as_str(), s[0].main_pid),
            ("active", "running", 42)
        );
        assert_eq!(s[0].invocation, "abc");
        assert_eq!(
            (s[1].sub.as_str(), s[1].restarts, s[1].unit.as_str()),
            ("auto-restart", 3, "b.service")
        );
    }
}
