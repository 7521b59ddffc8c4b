//! `realms provision update`, `rollback NAME` and `vacuum`: packages with `version: latest`
//! follow their stream. The newest version of the stream's index (systemd's version order) is
//! fetched, verified and unpacked beside the running one, the package is reattached onto it
//! (portablectl's reattach: one journal commit, never detached) and its units restarted, then
//! health-checked; a failed check reattaches the previous version and marks the new one bad,
//! so it is not tried again until a newer one appears. N versions are kept for rollback.
//!
//! Crash safety: the state names the new version (with the previous one as `trial`) before the
//! reattach; a killed update is finished by the next one (reattach again, health check, then
//! keep it or roll back), so the package is never left detached or half switched.

use realms_sys::IoContext;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::event::Event;
use serde::Serialize;

use crate::apply::fetch_index;
use crate::error::NoRollback;
use crate::fetch::Fetcher;
use crate::index::{self, Entry, Index};
use crate::install::{self, image_path};
use crate::manifest::{Manifest, Package};
use crate::portable::Request;
use crate::state::{self, EventKind, History, Installed, State, UpdateEvent, serial_key};
use crate::version::compare;
use crate::{Error, Result};

/// How many versions of a package are kept by default (the one in use included), as
/// systemd-sysupdate's `InstancesMax=2`.
pub const DEFAULT_KEEP: usize = 2;

/// The options of update.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only say what would be done.
    pub dry_run: bool,
    /// The architecture (default: this machine's).
    pub arch: Option<String>,
    /// How many versions to keep per package (the one in use included; at least 1).
    pub keep: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            arch: None,
            keep: DEFAULT_KEEP,
        }
    }
}

/// What update did (or would do) with one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// At the stream's newest version already.
    Current,
    /// Updated; the health check passed.
    Updated,
    /// Would be updated (`--dry-run`).
    WouldUpdate,
    /// The health check failed: back at the previous version, the new one marked bad.
    RolledBack,
    /// The health check failed and so did the rollback: the previous version is attached and
    /// stopped.
    RollbackFailed,
    /// The stream's newest version failed before: waiting for a newer one.
    Bad,
    /// The stream's newest is lower than the installed version and `allow_downgrade` is off.
    DowngradeRefused,
    /// An exact version: `realms provision apply` moves it.
    Pinned,
    /// Not installed yet: `realms provision apply` installs it.
    NotInstalled,
    /// A killed update was finished (health check passed).
    Finished,
    /// Rolled back by hand.
    ManualRollback,
    /// Outside the manifest's maintenance windows (`updates: {strategy: periodic}`).
    Waiting,
}

/// One package's line of the update report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// The package.
    pub package: String,
    /// What happened.
    pub outcome: Outcome,
    /// The version before.
    pub from: Option<String>,
    /// The version updated to, tried, or found.
    pub to: Option<String>,
    /// Why (failures, refusals).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The versions vacuumed afterwards.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl Report {
    fn new(package: &str, outcome: Outcome, from: Option<&str>, to: Option<&str>) -> Report {
        Report {
            package: package.to_string(),
            outcome,
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            message: String::new(),
            removed: Vec::new(),
        }
    }
}

/// The image of `rec`, as a host path under `root`.
fn host_image(root: &Path, rec: &Installed) -> PathBuf {
    root.join(rec.image.strip_prefix("/").unwrap_or(&rec.image))
}

/// Takes the provisioning lock and finishes what a killed command left (staging directories,
/// portable's journal).
fn begin(root: &Path) -> Result<realms_sys::lock::StoreLock> {
    let dir = root.join(state::DIR);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let lock = realms_sys::lock::StoreLock::acquire(dir.join(".lock"))?;
    install::clean_staging(root);
    crate::portable::recover(root)?;
    Ok(lock)
}

/// Updates every `version: latest` package of `manifest` to its stream's newest version.
pub fn update(
    root: &Path,
    manifest: &Manifest,
    fetcher: &Fetcher,
    opts: &Options,
    say: &mut dyn FnMut(Event),
) -> Result<Vec<Report>> {
    let _lock = begin(root)?;
    let mut state = State::load(root)?;
    let arch = opts
        .arch
        .clone()
        .unwrap_or_else(|| index::host_arch().to_string());
    let mut reports = Vec::new();
    let mut indexes: BTreeMap<String, Index> = BTreeMap::new();
    let now = index::now();
    let open = manifest.updates.allows(now);
    // The fleet lock's slot, taken before the first switch and given back when this returns.
    let mut held: Option<crate::fleetlock::Held> = None;
    for p in &manifest.packages {
        let trial = state.history.get(&p.name).and_then(|h| h.trial.clone());
        if let Some(previous) = trial {
            if opts.dry_run {
                let to = state.packages.get(&p.name).map(|i| i.version.clone());
                let mut r = Report::new(
                    &p.name,
                    Outcome::WouldUpdate,
                    Some(&previous.version),
                    to.as_deref(),
                );
                r.message = "an update was interrupted: it is finished or rolled back".into();
                reports.push(r);
                continue;
            }
            reports.push(finish_trial(root, p, previous, &mut state, opts, say)?);
            continue;
        }
        let Some(installed) = state.packages.get(&p.name).cloned() else {
            let outcome = Outcome::NotInstalled;
            reports.push(Report::new(&p.name, outcome, None, None));
            continue;
        };
        if p.version == "latest" && !open {
            let mut r = Report::new(&p.name, Outcome::Waiting, Some(&installed.version), None);
            r.message = match manifest.updates.next_opening(now) {
                Some(t) => format!(
                    "outside the maintenance windows; the next opens {}",
                    crate::window::utc(t)
                ),
                None => "outside the maintenance windows (none is listed)".into(),
            };
            reports.push(r);
            continue;
        }
        if p.version != "latest" {
            reports.push(Report::new(
                &p.name,
                Outcome::Pinned,
                Some(&installed.version),
                None,
            ));
            continue;
        }
        let repo = p.repository.clone().unwrap_or_default();
        let key = serial_key(&repo, &arch, p.track_stream);
        if !indexes.contains_key(&key) {
            let idx = fetch_index(root, fetcher, &repo, &arch, p.track_stream, &mut state);
            state.save(root)?;
            indexes.insert(key.clone(), idx?);
        }
        let idx = &indexes[&key];
        let Some(newest) = idx.find(&p.name, "latest").cloned() else {
            return Err(Error::NotListed {
                package: p.name.clone(),
                version: "latest".into(),
                url: crate::fetch::join(&repo, &arch, &index::index_name(p.track_stream)),
                stream: p.track_stream.to_string(),
                listed: idx.listed(&p.name),
            });
        };
        let (from, to) = (installed.version.as_str(), newest.version.as_str());
        let hist = state.history.get(&p.name).cloned().unwrap_or_default();
        let decided = match decide(&installed, &newest, &hist, p.allow_downgrade) {
            None if opts.dry_run => Some(Outcome::WouldUpdate),
            other => other,
        };
        let Some(outcome) = decided else {
            let r = match fleet_slot(root, manifest, fetcher, &mut held)? {
                Some(why) => {
                    let mut r = Report::new(&p.name, Outcome::Waiting, Some(from), Some(to));
                    r.message = why;
                    r
                }
                None => switch(root, fetcher, p, &arch, &newest, &mut state, opts, say)?,
            };
            reports.push(r);
            continue;
        };
        let mut r = Report::new(&p.name, outcome, Some(from), Some(to));
        r.message = match outcome {
            Outcome::Bad => format!(
                "{to} is marked bad (a failed health check or a rollback); waiting for a version newer than {to}"
            ),
            Outcome::DowngradeRefused => format!(
                "the newest version of stream {} is {to}, lower than {from}: set allow_downgrade: true to move down",
                p.track_stream
            ),
            _ => String::new(),
        };
        reports.push(r);
    }
    Ok(reports)
}

/// What to do with a package at `installed` whose stream's newest entry is `newest`: `None`
/// to switch to it.
pub fn decide(
    installed: &Installed,
    newest: &Entry,
    hist: &History,
    allow_downgrade: bool,
) -> Option<Outcome> {
    let order = compare(&newest.version, &installed.version);
    if newest.version == installed.version && newest.sha256 == installed.sha256 {
        Some(Outcome::Current)
    } else if hist.is_bad(&newest.version) {
        Some(Outcome::Bad)
    } else if order.is_lt() && !allow_downgrade {
        Some(Outcome::DowngradeRefused)
    } else if order.is_eq() {
        Some(Outcome::Current)
    } else {
        None
    }
}

/// Takes a slot of the manifest's fleet lock into `held` when its strategy is `fleet_lock`
/// and none is held yet; returns why not when every slot is taken.
fn fleet_slot(
    root: &Path,
    manifest: &Manifest,
    fetcher: &Fetcher,
    held: &mut Option<crate::fleetlock::Held>,
) -> Result<Option<String>> {
    if manifest.updates.strategy != crate::window::Strategy::FleetLock || held.is_some() {
        return Ok(None);
    }
    let Some(lock) = &manifest.updates.fleet_lock else {
        return Ok(Some(
            "strategy fleet_lock without a fleet_lock: {base_url}".into(),
        ));
    };
    let id = crate::fleetlock::machine_id(root);
    match crate::fleetlock::acquire(lock, &id, fetcher)? {
        Some(h) => {
            *held = Some(h);
            Ok(None)
        }
        None => Ok(Some(format!(
            "every slot of the fleet lock {} (group {}) is taken; the next run tries again",
            lock.base_url, lock.group
        ))),
    }
}

/// The request that attaches `rec` as it was recorded.
fn request_of(rec: &Installed) -> Request<'_> {
    Request {
        profile: &rec.profile,
        method: rec.install_method,
        enable: &rec.enabled,
        start: &rec.started,
        service_dropin: None,
    }
}

/// Installs `entry` beside the running version, reattaches, health-checks, and keeps it or
/// rolls back.
#[allow(clippy::too_many_arguments)]
fn switch(
    root: &Path,
    fetcher: &Fetcher,
    p: &Package,
    arch: &str,
    entry: &Entry,
    state: &mut State,
    opts: &Options,
    say: &mut dyn FnMut(Event),
) -> Result<Report> {
    let old = state.packages[&p.name].clone();
    let repo = p.repository.clone().unwrap_or_default();
    let mut hist = state.history.get(&p.name).cloned().unwrap_or_default();
    let target = image_path(root, &p.name, entry);
    say(Event::progress(format!(
        "updating {} {} -> {}",
        p.name, old.version, entry.version
    )));
    // A kept copy of that version (an earlier rollback) is used again.
    let kept = hist
        .kept
        .iter()
        .position(|k| k.sha256 == entry.sha256 && host_image(root, k) == target && target.exists());
    match kept {
        Some(i) => {
            hist.kept.remove(i);
        }
        None => {
            install::install(
                root,
                install::Origin {
                    fetcher,
                    repo: &repo,
                    arch,
                },
                &p.name,
                entry,
                p.profile == "trusted",
                say,
            )?;
        }
    }
    let new = Installed {
        version: entry.version.clone(),
        file: entry.file.clone(),
        sha256: entry.sha256.clone(),
        repository: repo,
        stream: p.track_stream,
        arch: arch.to_string(),
        image: PathBuf::from("/").join(target.strip_prefix(root).unwrap_or(&target)),
        profile: p.profile.clone(),
        install_method: p.install_method,
        enabled: p.enable.clone(),
        started: p.start.clone(),
        exports: p.export.clone(),
    };
    hist.trial = Some(old.clone());
    state.packages.insert(p.name.clone(), new);
    state.history.insert(p.name.clone(), hist);
    state.save(root)?;
    realms_sys::failpoint::hit("provision-update-saved");
    finish_trial(root, p, old, state, opts, say).map(|mut r| {
        if r.outcome == Outcome::Finished {
            r.outcome = Outcome::Updated;
        }
        r
    })
}

/// Reattaches the package onto the version the state names (its previous one is `previous`),
/// runs the health check, and keeps it or rolls back; clears the trial.
fn finish_trial(
    root: &Path,
    p: &Package,
    previous: Installed,
    state: &mut State,
    opts: &Options,
    say: &mut dyn FnMut(Event),
) -> Result<Report> {
    let new = state.packages[&p.name].clone();
    let image = host_image(root, &new);
    let started = std::time::Instant::now();
    let verdict = if !image.exists() {
        Err(format!("its image {} is missing", image.display()))
    } else {
        match crate::portable::reattach(root, &p.name, &image, &request_of(&new))
            .and_then(|done| commands(root, &p.name, &new, &previous).map(|()| done))
        {
            Err(e) => Err(format!("reattaching: {}", crate::error::chain_text(&e))),
            Ok(done) => {
                done.notes
                    .iter()
                    .for_each(|n| tracing::warn!("{}: {n}", p.name));
                crate::health::check(root, &p.name, &new.started, &p.health, &image)?
            }
        }
    };
    realms_sys::failpoint::hit("provision-health-checked");
    let mut hist = state.history.get(&p.name).cloned().unwrap_or_default();
    hist.trial = None;
    let mut report = Report::new(
        &p.name,
        Outcome::Finished,
        Some(&previous.version),
        Some(&new.version),
    );
    let event = |kind, message: String| UpdateEvent {
        time: index::now(),
        kind,
        from: previous.version.clone(),
        to: new.version.clone(),
        message,
    };
    match verdict {
        Ok(()) => {
            tracing::info!(
                "{}: updated {} -> {}; healthy for {:.1}s",
                p.name,
                previous.version,
                new.version,
                started.elapsed().as_secs_f32()
            );
            say(Event::progress(format!(
                "updated {} {} -> {} (health check passed)",
                p.name, previous.version, new.version
            )));
            hist.good = Some(new.version.clone());
            if previous.version != new.version {
                hist.kept.retain(|k| k.version != previous.version);
                hist.kept.push(previous.clone());
            }
            hist.record(event(EventKind::Updated, String::new()));
            state.history.insert(p.name.clone(), hist);
            report.removed = vacuum_package(root, &p.name, state, opts.keep);
            state.save(root)?;
        }
        Err(why) => {
            tracing::info!(
                "{}: {} failed its health check: {why}; rolling back to {}",
                p.name,
                new.version,
                previous.version
            );
            say(Event::warning(format!(
                "{} {} failed its health check: {why}; rolling back to {}",
                p.name, new.version, previous.version
            )));
            hist.mark_bad(&new.version);
            if hist.good.as_deref() == Some(new.version.as_str()) {
                hist.good = Some(previous.version.clone());
            }
            let (kind, outcome, message) = match back_to(root, p, &previous, &new) {
                Ok(()) => (EventKind::RolledBack, Outcome::RolledBack, why),
                Err(rb) => {
                    let message = format!("{why}; the rollback failed too: {rb}");
                    (EventKind::RollbackFailed, Outcome::RollbackFailed, message)
                }
            };
            if kind == EventKind::RollbackFailed {
                tracing::error!(
                    "{}: ROLLBACK FAILED: {message}; {} is attached and stopped",
                    p.name,
                    previous.version
                );
                say(Event::warning(format!(
                    "ROLLBACK FAILED for {}: {message}; {} is attached and stopped: see `realms provision status` and `journalctl -u {}`",
                    p.name,
                    previous.version,
                    previous.started.first().map_or("", String::as_str)
                )));
            } else {
                say(Event::progress(format!(
                    "rolled back {} to {}; {} is marked bad",
                    p.name, previous.version, new.version
                )));
            }
            hist.kept.retain(|k| k.version != previous.version);
            hist.record(event(kind, message.clone()));
            state.packages.insert(p.name.clone(), previous.clone());
            state.history.insert(p.name.clone(), hist);
            state.save(root)?;
            if image != host_image(root, &previous) {
                crate::portable::remove_image(&image)?;
            }
            report.outcome = outcome;
            report.message = message;
        }
    }
    Ok(report)
}

/// Reattaches `previous`, restarts its units and watches them for the settle time; on failure
/// leaves it attached (when the reattach went through) and its units stopped.
fn back_to(
    root: &Path,
    p: &Package,
    previous: &Installed,
    failed: &Installed,
) -> std::result::Result<(), String> {
    let package = p.name.as_str();
    let image = host_image(root, previous);
    let done = crate::portable::reattach(root, package, &image, &request_of(previous))
        .and_then(|done| commands(root, package, previous, failed).map(|()| done));
    let why = match done {
        Ok(d) if d.notes.is_empty() => {
            // The previous version must run again too: its units are watched for the same
            // settle time (a start job of a simple service succeeds before its exec fails).
            let units_only = crate::manifest::Health {
                settle: p.health.settle,
                command: Vec::new(),
            };
            match crate::health::check(root, package, &previous.started, &units_only, &image) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(why)) => why,
                Err(e) => crate::error::chain_text(&e),
            }
        }
        Ok(d) => d.notes.join("; "),
        Err(e) => crate::error::chain_text(&e),
    };
    let mut units = previous.started.clone();
    units.extend(failed.started.iter().cloned());
    units.sort();
    units.dedup();
    if let Err(e) = crate::portable::stop(root, package, &units) {
        tracing::error!("{package}: stopping {units:?}: {e}");
    }
    Err(why)
}

/// Points the package's exported commands at the image of `now` (the version just
/// reattached) and removes those only `before` had.
fn commands(root: &Path, package: &str, now: &Installed, before: &Installed) -> Result<()> {
    crate::export::write(
        root,
        package,
        &now.version,
        &host_image(root, now),
        &now.profile,
        &now.exports,
        &before.exports,
    )
}

/// The kept versions to remove so that at most `keep` versions remain (the one in use
/// counted), never `current` nor `good`; the oldest go first.
pub fn vacuum_choice(
    current: &str,
    good: Option<&str>,
    kept: &[String],
    keep: usize,
) -> Vec<String> {
    let mut sorted: Vec<&String> = kept.iter().collect();
    sorted.sort_by(|a, b| compare(b, a));
    let mut slots = keep.saturating_sub(1);
    // The last known good one takes its slot first.
    if good.is_some_and(|g| g != current && kept.iter().any(|k| k == g)) {
        slots = slots.saturating_sub(1);
    }
    let mut out = Vec::new();
    for v in sorted {
        if v == current || Some(v.as_str()) == good {
            continue;
        }
        if slots > 0 {
            slots -= 1;
        } else {
            out.push(v.clone());
        }
    }
    out
}

/// Removes the kept versions of `name` beyond `keep` (images and state entries); returns them.
fn vacuum_package(root: &Path, name: &str, state: &mut State, keep: usize) -> Vec<String> {
    let Some(current) = state.packages.get(name).map(|i| i.version.clone()) else {
        return Vec::new();
    };
    let Some(hist) = state.history.get_mut(name) else {
        return Vec::new();
    };
    let versions: Vec<String> = hist.kept.iter().map(|k| k.version.clone()).collect();
    let gone = vacuum_choice(&current, hist.good.as_deref(), &versions, keep);
    let mut removed = Vec::new();
    for v in gone {
        let Some(i) = hist.kept.iter().position(|k| k.version == v) else {
            continue;
        };
        let image = host_image(root, &hist.kept[i]);
        if image != host_image(root, &state.packages[name])
            && let Err(e) = crate::portable::remove_image(&image)
        {
            tracing::warn!("{name}: vacuuming {v}: {e}");
            continue;
        }
        hist.kept.remove(i);
        removed.push(v);
    }
    removed
}

/// `realms provision vacuum`: keeps at most `keep` versions of every package; returns
/// `(package, version)` of what was removed.
pub fn vacuum(root: &Path, keep: usize) -> Result<Vec<(String, String)>> {
    let _lock = begin(root)?;
    let mut state = State::load(root)?;
    let names: Vec<String> = state.history.keys().cloned().collect();
    let mut out = Vec::new();
    for name in names {
        for v in vacuum_package(root, &name, &mut state, keep) {
            out.push((name.clone(), v));
        }
    }
    state.save(root)?;
    Ok(out)
}

/// `realms provision rollback NAME`: reattaches the newest kept version older than the current
/// one (and not marked bad), restarts its units, and marks the version it leaves bad (update
/// does not move back to it until a newer one appears); that version stays kept until vacuumed.
pub fn rollback(root: &Path, name: &str, say: &mut dyn FnMut(Event)) -> Result<Report> {
    let _lock = begin(root)?;
    let mut state = State::load(root)?;
    let current = state
        .packages
        .get(name)
        .cloned()
        .ok_or_else(|| Error::NothingToRollBack {
            package: name.to_string(),
            reason: NoRollback::NotInstalled,
        })?;
    let mut hist: History = state.history.get(name).cloned().unwrap_or_default();
    // The newest kept version older than the current one and not marked bad.
    let pick = hist
        .kept
        .iter()
        .enumerate()
        .filter(|(_, k)| compare(&k.version, &current.version).is_lt() && !hist.is_bad(&k.version))
        .max_by(|(_, a), (_, b)| compare(&a.version, &b.version))
        .map(|(i, _)| i);
    let Some(i) = pick else {
        return Err(Error::NothingToRollBack {
            package: name.to_string(),
            reason: NoRollback::NoEarlier {
                kept: std::iter::once(current.version.clone())
                    .chain(hist.kept.iter().map(|k| k.version.clone()))
                    .collect(),
            },
        });
    };
    let previous = hist.kept.remove(i);
    let image = host_image(root, &previous);
    let done = crate::portable::reattach(root, name, &image, &request_of(&previous))?;
    commands(root, name, &previous, &current)?;
    hist.mark_bad(&current.version);
    hist.good = Some(previous.version.clone());
    hist.kept.push(current.clone());
    let message = done.notes.join("; ");
    hist.record(UpdateEvent {
        time: index::now(),
        kind: EventKind::ManualRollback,
        from: current.version.clone(),
        to: previous.version.clone(),
        message: message.clone(),
    });
    state.packages.insert(name.to_string(), previous.clone());
    state.history.insert(name.to_string(), hist);
    state.save(root)?;
    say(Event::progress(format!(
        "rolled back {name} {} -> {}; {} is marked bad until a newer version appears",
        current.version, previous.version, current.version
    )));
    for n in &done.notes {
        say(Event::warning(format!("{name}: {n}")));
    }
    let mut r = Report::new(
        name,
        Outcome::ManualRollback,
        Some(&current.version),
        Some(&previous.version),
    );
    r.message = message;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vacuum_keeps_n_versions_the_newest_first_and_never_current_or_good() {
        // Two kept (the one in use plus the newest other one): 1 and 2 go.
        assert_eq!(
            vacuum_choice("4", Some("4"), &v(&["1", "2", "3"]), 2),
            v(&["2", "1"])
        );
        // Last known good is never removed, and takes a slot.
        assert_eq!(
            vacuum_choice("4", Some("1"), &v(&["1", "2", "3"]), 2),
            v(&["3", "2"])
        );
        // Order by version, not by position.
        assert_eq!(
            vacuum_choice("10", None, &v(&["9", "1.10", "1.9"]), 2),
            v(&["1.10", "1.9"])
        );
        // keep 1: only the one in use (and good).
        assert_eq!(
            vacuum_choice("3", Some("3"), &v(&["1", "2"]), 1),
            v(&["2", "1"])
        );
        assert!(vacuum_choice("3", None, &v(&["1", "2"]), 3).is_empty());
        assert!(vacuum_choice("3", None, &v(&["3"]), 1).is_empty());
    }
}
