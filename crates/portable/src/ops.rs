//! The verbs as portablectl runs them: attach/detach/reattach followed by the daemon reload and
//! the `--enable`/`--now` steps through systemd, reporting each line as portablectl does.

use serde::Serialize;

use realms_sys::failpoint;

use crate::attach::{AttachOptions, Attached, attach, plan_attach};
use crate::changes::{Change, ChangeKind};
use crate::detach::{DetachOptions, Detached, detach, plan_detach};
use crate::error::{Error, Result};
use crate::layout::Host;
use crate::load::load;
use crate::systemd::{Job, Systemd};
use crate::txn::Plan;

/// What to do around the file operations.
#[derive(Debug, Clone, Default)]
pub struct Steps {
    /// Reload PID 1 afterwards (portablectl's default; `--no-reload` turns it off).
    pub reload: bool,
    /// Enable the units after attach (disable them before detach).
    pub enable: bool,
    /// Start the units after attach (stop them before detach).
    pub now: bool,
    /// Do not wait for the queued jobs.
    pub no_block: bool,
}

/// The outcome of attach, detach or reattach, for `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Reattach only: the changes of units that are gone for good.
    pub removed: Vec<Change>,
    /// The changes of this attach or detach.
    pub changes: Vec<Change>,
    /// A built-in profile Realms installed because the host had none, if any.
    pub installed_profile: Option<std::path::PathBuf>,
    /// Jobs queued on PID 1 (job object paths).
    pub jobs: Vec<String>,
    /// Whether systemd was there to reload/enable/start.
    pub systemd: bool,
}

/// Where informational lines go (portablectl prints them on stderr).
pub type Say<'a> = &'a mut dyn FnMut(&str);

fn queue(systemd: &Systemd, method: &'static str, unit: &str, jobs: &mut Vec<Job>, say: Say<'_>) {
    match systemd.queue(method, unit) {
        Ok(job) => {
            say(&format!(
                "Queued {} to call {method} on portable service {unit}.",
                job.path
            ));
            jobs.push(job);
        }
        Err(e) => say(&e.summary()),
    }
}

fn enable(systemd: &Systemd, unit: &str, runtime: bool, on: bool, say: Say<'_>) {
    match systemd.enable(unit, runtime, on) {
        Ok(lines) => lines.iter().for_each(|l| say(l)),
        Err(e) => say(&e.summary()),
    }
}

/// Waits for `jobs`, saying each failed one as systemctl does; the failed units are returned.
fn wait(systemd: &Systemd, jobs: &[Job], say: Say<'_>) -> Vec<String> {
    match systemd.wait(jobs) {
        Ok(failed) => {
            for u in &failed {
                say(&format!(
                    "Job for {u} failed. See \"systemctl status {u}\" and \"journalctl -xeu {u}\" for details."
                ));
            }
            failed
        }
        Err(e) => {
            say(&e.summary());
            Vec::new()
        }
    }
}

/// Waits for start jobs: as portablectl 252, a failed one fails the verb (the files stay).
fn wait_started(systemd: &Systemd, jobs: &[Job], say: Say<'_>) -> Result<()> {
    let failed = wait(systemd, jobs, say);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::JobsFailed { units: failed })
    }
}

fn say_no_systemd(steps: &Steps, say: Say<'_>) {
    if steps.reload || steps.enable || steps.now {
        say(
            "systemd is not running as PID 1 here (or --root is used): nothing was reloaded, enabled, started or stopped.",
        );
    }
}

/// Enables and starts the unit files an attach put in place (portablectl's order: per unit,
/// enable then start).
fn enable_start(
    systemd: &Systemd,
    changes: &[Change],
    method: &'static str,
    runtime: bool,
    steps: &Steps,
    say: Say<'_>,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for unit in changes
        .iter()
        .filter(|c| c.is_managed_unit())
        .filter_map(Change::unit_name)
    {
        if steps.enable {
            enable(systemd, &unit, runtime, true, say);
        }
        if steps.now {
            queue(systemd, method, &unit, &mut jobs, say);
        }
    }
    if !steps.no_block {
        wait_started(systemd, &jobs, say)?;
    }
    Ok(jobs)
}

/// `attach`.
pub fn attach_verb(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    matches: &[String],
    opts: &AttachOptions,
    steps: &Steps,
    say: Say<'_>,
) -> Result<Outcome> {
    let Attached {
        changes,
        installed_profile,
        signatures,
        ..
    } = attach(host, systemd, image, matches, opts)?;
    signatures
        .iter()
        .for_each(|s| say(&format!("{image}: {s}.")));
    if let Some(p) = &installed_profile {
        say(&format!(
            "Installed Realms' copy of profile '{}' as {}.",
            opts.profile,
            p.display()
        ));
    }
    let mut out = Outcome {
        installed_profile,
        systemd: systemd.is_running(),
        ..Outcome::default()
    };
    if !systemd.is_running() {
        changes.iter().for_each(|c| say(&c.to_string()));
        say_no_systemd(steps, say);
        out.changes = changes;
        return Ok(out);
    }
    if steps.reload {
        systemd.reload()?;
    }
    changes.iter().for_each(|c| say(&c.to_string()));
    if steps.enable || steps.now {
        let jobs = enable_start(systemd, &changes, "StartUnit", opts.runtime, steps, say)?;
        out.jobs = jobs.into_iter().map(|j| j.path).collect();
    }
    out.changes = changes;
    Ok(out)
}

/// Stops (and with `--enable` disables) the units of the image before a detach; stopping
/// always blocks, or the detach would find them still running.
fn stop_disable(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    matches: &[String],
    opts: &DetachOptions,
    steps: &Steps,
    say: Say<'_>,
) -> Vec<Job> {
    let units: Vec<String> = match load(host, image, &opts.extensions, matches, opts.force, false) {
        Ok(l) => l.units.into_keys().collect(),
        Err(e) => {
            // Like portablectl: an image that cannot be read any more is still detached.
            say(&format!(
                "Failed to inspect image metadata: {}",
                e.summary()
            ));
            // Fall back to the units attached from it.
            crate::detach::scan(
                host,
                crate::layout::attached_dir(opts.runtime),
                Some(&[image.to_owned()]),
            )
            .map(|f| f.into_iter().map(|f| f.unit).collect())
            .unwrap_or_default()
        }
    };
    let mut jobs = Vec::new();
    for unit in &units {
        if steps.now {
            queue(systemd, "StopUnit", unit, &mut jobs, say);
        }
        if steps.enable {
            enable(systemd, unit, opts.runtime, false, say);
        }
    }
    wait(systemd, &jobs, say);
    jobs
}

/// `detach`.
pub fn detach_verb(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    matches: &[String],
    opts: &DetachOptions,
    steps: &Steps,
    say: Say<'_>,
) -> Result<Outcome> {
    crate::txn::recover(host)?;
    let mut out = Outcome {
        systemd: systemd.is_running(),
        ..Outcome::default()
    };
    if systemd.is_running() && (steps.enable || steps.now) {
        let jobs = stop_disable(host, systemd, image, matches, opts, steps, say);
        out.jobs = jobs.into_iter().map(|j| j.path).collect();
    }
    let Detached { changes, .. } = detach(host, systemd, image, opts)?;
    if systemd.is_running() && steps.reload {
        systemd.reload()?;
    }
    changes.iter().for_each(|c| say(&c.to_string()));
    if !systemd.is_running() {
        say_no_systemd(steps, say);
    }
    out.changes = changes;
    Ok(out)
}

/// The detach half of a reattach without the removals of paths the attach half creates again
/// (a unit file, a drop-in, their directories): those are replaced in place.
fn keep_replaced(
    detach: Vec<crate::txn::Step>,
    attach: &[crate::txn::Step],
) -> Vec<crate::txn::Step> {
    use crate::txn::Op;
    let created: std::collections::BTreeSet<&std::path::Path> = attach
        .iter()
        .filter_map(|s| match &s.op {
            Op::Write { path, .. } | Op::Symlink { path, .. } | Op::Mkdir { path } => {
                Some(path.as_path())
            }
            _ => None,
        })
        .collect();
    detach
        .into_iter()
        .filter(|s| match &s.op {
            Op::Remove { path } | Op::RemoveDir { path } => !created.contains(path.as_path()),
            _ => true,
        })
        .collect()
}

/// `reattach`: detach and attach again in one go (units may stay running); with `--now`, units
/// that are gone are stopped and the others restarted.
pub fn reattach_verb(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    matches: &[String],
    opts: &AttachOptions,
    steps: &Steps,
    say: Say<'_>,
) -> Result<Outcome> {
    // A killed command's journal is finished first: it may add or remove the image links
    // that the image name is looked up by.
    let _lock = crate::txn::lock(host)?;
    crate::txn::recover_locked(host)?;
    // The new image must be there before anything is detached.
    let found = crate::image::Image::find(host, image)?;
    let detach_opts = DetachOptions {
        runtime: opts.runtime,
        force: opts.force,
        extensions: opts.extensions.clone(),
        reattach: true,
    };
    let image_path = found.path.to_string_lossy().into_owned();
    // One plan, one journal: a killed reattach is finished by the next command, so the units
    // end up attached from the new image, never detached from both.
    let mut plan = Plan::default();
    let (_, removed_paths) = plan_detach(host, systemd, &image_path, &detach_opts, &mut plan)?;
    let detach_steps = plan.steps.len();
    let attach_opts = AttachOptions {
        reattach: true,
        ..opts.clone()
    };
    let (_, installed_profile, signatures) = plan_attach(
        host,
        systemd,
        &image_path,
        matches,
        &attach_opts,
        &removed_paths,
        &mut plan,
    )?;
    signatures
        .iter()
        .for_each(|s| say(&format!("{image}: {s}.")));
    // Files the attach half writes again are replaced in place (atomically), not removed
    // first: the units stay attached the whole time, as portablectl's reattach promises.
    let attach_half = plan.steps.split_off(detach_steps);
    plan.steps = keep_replaced(plan.steps, &attach_half);
    let detach_changes = plan.steps.iter().filter(|s| s.change.is_some()).count();
    plan.steps.extend(attach_half);
    failpoint::hit("portable-reattach-planned");
    let mut all = plan.commit(host, opts.runtime)?;
    let attached_changes = all.split_off(detach_changes.min(all.len()));
    let detached = Detached {
        units: Vec::new(),
        changes: all,
    };
    let attached = Attached {
        image: found.path.clone(),
        changes: attached_changes,
        installed_profile,
        signatures,
    };
    let names = |c: &Change| c.path.file_name().map(|n| n.to_owned());
    let kept: Vec<_> = attached.changes.iter().filter_map(names).collect();
    let removed: Vec<Change> = detached
        .changes
        .into_iter()
        .filter(|c| names(c).is_none_or(|n| !kept.contains(&n)))
        .collect();
    let mut out = Outcome {
        installed_profile: attached.installed_profile,
        systemd: systemd.is_running(),
        ..Outcome::default()
    };
    if systemd.is_running() && steps.reload {
        systemd.reload()?;
    }
    removed.iter().for_each(|c| say(&c.to_string()));
    attached.changes.iter().for_each(|c| say(&c.to_string()));
    if !systemd.is_running() {
        say_no_systemd(steps, say);
    } else if steps.enable || steps.now {
        let mut jobs = Vec::new();
        for unit in removed
            .iter()
            .filter(|c| c.kind == ChangeKind::Unlink)
            .filter_map(Change::unit_name)
        {
            if steps.now {
                queue(systemd, "StopUnit", &unit, &mut jobs, say);
            }
        }
        let later = Steps {
            no_block: true,
            ..steps.clone()
        };
        jobs.extend(enable_start(
            systemd,
            &attached.changes,
            "RestartUnit",
            opts.runtime,
            &later,
            say,
        )?);
        if !steps.no_block {
            wait_started(systemd, &jobs, say)?;
        }
        out.jobs = jobs.into_iter().map(|j| j.path).collect();
    }
    out.removed = removed;
    out.changes = attached.changes;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{Op, Step};
    use std::path::PathBuf;

    fn step(op: Op) -> Step {
        Step {
            op,
            change: None,
            unit: None,
        }
    }

    fn remove(p: &str) -> Step {
        step(Op::Remove { path: p.into() })
    }

    /// Regression: a reattach removed the unit files and wrote them again, so for a moment the
    /// units were not attached (the update host test's watcher saw the unit file missing).
    #[test]
    fn reattach_replaces_rewritten_files_instead_of_removing_them() {
        let d = "/etc/systemd/system.attached";
        let detach = vec![
            remove(&format!("{d}/a.service")),
            remove(&format!("{d}/a.service.d/20-portable.conf")),
            step(Op::RemoveDir {
                path: format!("{d}/a.service.d").into(),
            }),
            remove(&format!("{d}/gone.service")),
            remove("/etc/portables/a_1"),
        ];
        let attach = vec![
            step(Op::Mkdir { path: d.into() }),
            step(Op::Write {
                path: format!("{d}/a.service").into(),
                bytes: Vec::new(),
                mode: 0o644,
            }),
            step(Op::Mkdir {
                path: format!("{d}/a.service.d").into(),
            }),
            step(Op::Symlink {
                path: format!("{d}/a.service.d/20-portable.conf").into(),
                target: PathBuf::from("/x"),
            }),
        ];
        let kept: Vec<Op> = keep_replaced(detach, &attach)
            .into_iter()
            .map(|s| s.op)
            .collect();
        assert_eq!(
            kept,
            [
                Op::Remove {
                    path: format!("{d}/gone.service").into()
                },
                Op::Remove {
                    path: "/etc/portables/a_1".into()
                },
            ]
        );
    }
}
