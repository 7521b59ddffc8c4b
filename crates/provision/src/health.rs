//! The health check after an update: every unit the package starts stays active (not failed,
//! not waiting to restart, not restarted) for the settle time, then the package's probe command
//! (if any) exits 0 when run inside its image.

use std::path::Path;
use std::time::{Duration, Instant};

use realms_portable::systemd::UnitState;

use crate::Result;
use crate::manifest::Health;

/// How often the units are looked at during the settle time.
const POLL: Duration = Duration::from_millis(250);

/// What is wrong with a unit in `now` compared with `first` (its state when the check began);
/// `None` while it is healthy. `end` asks for the final verdict: only `active` passes then.
pub fn judge(first: &UnitState, now: &UnitState, end: bool) -> Option<String> {
    let u = &now.unit;
    if now.active == "failed" {
        return Some(format!("{u} failed"));
    }
    if now.sub == "auto-restart" {
        return Some(format!("{u} exited and is waiting to be restarted"));
    }
    if now.restarts > first.restarts {
        return Some(format!(
            "{u} was restarted {} time(s) by systemd",
            now.restarts - first.restarts
        ));
    }
    if !first.invocation.is_empty() && now.invocation != first.invocation {
        return Some(format!("{u} stopped and started again"));
    }
    let settling = !end && now.active == "activating";
    if !(now.active == "active" || now.active == "reloading" || settling) {
        return Some(format!("{u} is {} ({})", now.active, now.sub));
    }
    None
}

/// Checks `units` of `package` for `health.settle`, then runs `health.command` inside `image`
/// (a host path under the root). `Ok(Err(why))` is a failed check; `Err` a failure to check.
pub fn check(
    root: &Path,
    package: &str,
    units: &[String],
    health: &Health,
    image: &Path,
) -> Result<std::result::Result<(), String>> {
    if !crate::portable::systemd_running(root) {
        tracing::info!("{package}: systemd is not running here: no health check");
        return Ok(Ok(()));
    }
    let first = crate::portable::unit_states(root, package, units)?;
    let deadline = Instant::now() + health.settle;
    loop {
        realms_sys::failpoint::hit("provision-health-poll");
        let end = Instant::now() >= deadline;
        let now = crate::portable::unit_states(root, package, units)?;
        for (f, n) in first.iter().zip(&now) {
            if let Some(why) = judge(f, n, end) {
                return Ok(Err(why));
            }
        }
        if end {
            break;
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
    if health.command.is_empty() {
        return Ok(Ok(()));
    }
    Ok(probe(root, image, &health.command))
}

/// Runs `command` inside the image (`systemd-run --wait --pipe` with `RootDirectory=` or
/// `RootImage=`), as the package's services see it.
fn probe(root: &Path, image: &Path, command: &[String]) -> std::result::Result<(), String> {
    let inner = Path::new("/").join(image.strip_prefix(root).unwrap_or(image));
    let root_prop = if inner.extension().is_some_and(|e| e == "raw") {
        format!("RootImage={}", inner.display())
    } else {
        format!("RootDirectory={}", inner.display())
    };
    let mut cmd = realms_sys::cmd::Cmd::new("systemd-run");
    cmd.args(["--wait", "--pipe", "--quiet", "--collect"])
        .args(["-p", &root_prop, "-p", "MountAPIVFS=yes"])
        .args(["-p", "RuntimeMaxSec=120", "--"])
        .args(command);
    cmd.run()
        .map_err(|e| format!("the probe `{}` failed: {e}", command.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(active: &str, sub: &str, restarts: u64, invocation: &str) -> UnitState {
        UnitState {
            unit: "web.service".into(),
            active: active.into(),
            sub: sub.into(),
            restarts,
            invocation: invocation.into(),
            main_pid: 1,
        }
    }

    #[test]
    fn a_unit_is_judged_by_state_restarts_and_invocation() {
        let first = st("active", "running", 0, "a");
        assert_eq!(judge(&first, &first, false), None);
        assert_eq!(judge(&first, &first, true), None);
        let failed = judge(&first, &st("failed", "failed", 0, "a"), false).unwrap();
        assert!(failed.contains("web.service failed"), "{failed}");
        let waiting = judge(&first, &st("activating", "auto-restart", 0, "a"), false).unwrap();
        assert!(waiting.contains("waiting to be restarted"), "{waiting}");
        let restarted = judge(&first, &st("active", "running", 2, "b"), false).unwrap();
        assert!(restarted.contains("restarted 2 time(s)"), "{restarted}");
        let again = judge(&first, &st("active", "running", 0, "b"), false).unwrap();
        assert!(again.contains("started again"), "{again}");
        let slow = st("activating", "start", 0, "a");
        assert_eq!(judge(&first, &slow, false), None);
        assert!(
            judge(&first, &slow, true)
                .unwrap()
                .contains("is activating")
        );
        assert!(judge(&first, &st("inactive", "dead", 0, "a"), false).is_some());
    }
}
