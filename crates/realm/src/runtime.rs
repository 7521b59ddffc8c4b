//! The runtime state of a realm: its pid and leader files under `/run/realms`, its unit, its
//! log, whether its container runs and which process leads it. Reads only.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use realms_sys::{cmd::Cmd, proc};

use crate::executor::Executor;
use crate::store::RealmStore;
use crate::{Error, Result, tree};

/// How long the rest of a just-stopped realm's PID namespace gets to die after its init.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);

pub(crate) fn pid_file(store: &RealmStore, name: &str) -> PathBuf {
    store.run_dir().join(format!("realm-{name}.pid"))
}

pub(crate) fn leader_file(store: &RealmStore, name: &str) -> PathBuf {
    store.run_dir().join(format!("realm-{name}.leader"))
}

/// A leader file: the leader's PID on its first line, the inode of its PID namespace on the
/// second (empty when it could not be read).
pub(crate) fn read_leader_file(path: &Path) -> Option<(u32, Option<u64>)> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    Some((pid, lines.next().and_then(|l| l.trim().parse().ok())))
}

/// The running realms by the inode of their PID namespace, as recorded when they started: how
/// a process of the host is told to be one of a realm's (its `/proc/PID/ns/pid`). Reads only
/// the runtime directory, which every user may.
pub fn pid_namespaces(store: &RealmStore) -> Vec<(u64, String)> {
    let Ok(entries) = fs::read_dir(store.run_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name();
            let name = file
                .to_str()?
                .strip_prefix("realm-")?
                .strip_suffix(".leader")?;
            let (leader, ns) = read_leader_file(&entry.path())?;
            // A leader gone or replaced: its record is stale.
            if proc::pid_in_namespace(leader) != Some(1) {
                return None;
            }
            // Started before the record had it: root can still look it up.
            let ns = ns.or_else(|| proc::pid_namespace(leader))?;
            Some((ns, name.to_string()))
        })
        .collect()
}

/// The label of a running realm, kept under the runtime directory for the desktop's user
/// (the store itself is root's only).
pub(crate) fn label_file(store: &RealmStore, name: &str) -> PathBuf {
    store.run_dir().join(format!("realm-{name}.label"))
}

/// Records the label of realm `name` (its `label`, else its name) for the desktop's user.
pub(crate) fn record_label(store: &RealmStore, name: &str) -> Result<()> {
    let config = store.config(name)?;
    realms_sys::atomic::write_file(
        label_file(store, name),
        config.label_or(name).as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// The label recorded for running realm `name`, for readers without access to its config.
pub fn recorded_label(store: &RealmStore, name: &str) -> Option<String> {
    fs::read_to_string(label_file(store, name)).ok()
}

/// The log of the realm's nspawn (direct executor).
pub fn log_file(store: &RealmStore, name: &str) -> PathBuf {
    store.run_dir().join(format!("realm-{name}.log"))
}

pub(crate) fn unit_name(name: &str) -> String {
    format!("realm-{name}.service")
}

pub(crate) fn unit_path(name: &str) -> PathBuf {
    Path::new("/run/systemd/system").join(unit_name(name))
}

/// The nspawn process of a running realm (direct executor: from the pid file, checked).
pub(crate) fn nspawn_pid(store: &RealmStore, name: &str) -> Option<u32> {
    match store.executor() {
        Executor::Systemd => {
            let out = Cmd::new("systemctl")
                .args(["show", "--property=MainPID", "--value", &unit_name(name)])
                .output_string()
                .ok()?;
            out.trim().parse().ok().filter(|p| *p != 0)
        }
        Executor::Direct => {
            let pid: u32 = fs::read_to_string(pid_file(store, name))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let dir = store.realm_dir(name).join("rootfs");
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            // nspawn, or the launcher that is about to become it.
            let is_ours = args.contains(&format!("--directory={}", dir.display()).as_bytes())
                || args.ends_with(&[b"nspawn-exec".as_slice(), name.as_bytes(), b""])
                // The launcher's name before `realms launch` ran apps.
                || args.ends_with(&[b"launch".as_slice(), name.as_bytes(), b""]);
            (proc::pid_alive(pid) && is_ours).then_some(pid)
        }
    }
}

/// Whether a realm runs, and how well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running.
    Stopped,
    /// Running under its nspawn.
    Running,
    /// Its nspawn is gone (killed) but processes of its container live on (direct executor);
    /// `stop` ends them, `start` ends them and boots the realm afresh.
    Orphaned,
}

/// The state of the realm's container.
pub fn state(store: &RealmStore, name: &str) -> State {
    if nspawn_pid(store, name).is_some() {
        State::Running
    } else if store.executor() == Executor::Direct && tree::is_populated(store, name) {
        State::Orphaned
    } else {
        State::Stopped
    }
}

/// True when anything of the realm's container runs (also when it is orphaned).
pub fn is_running(store: &RealmStore, name: &str) -> bool {
    state(store, name) != State::Stopped
}

/// The PID (on the host) of the realm's init, the process whose namespaces are the realm's.
pub fn leader(store: &RealmStore, name: &str) -> Result<u32> {
    let pid = nspawn_pid(store, name).ok_or_else(|| Error::NotRunning {
        name: name.to_string(),
    })?;
    // Remembered at start; still right if that process is still nspawn's child.
    if let Some((leader, _)) = read_leader_file(&leader_file(store, name))
        && proc::parent_of(leader) == Some(pid)
    {
        return Ok(leader);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // nspawn's intermediate child exits once the container's init runs; one child remains.
        let children = proc::children_of(pid)?;
        if let [leader] = children.as_slice() {
            // Its PID namespace beside it, for readers without the right to look it up
            // (`realms desktop titles`, run by the desktop's user).
            let ns = proc::pid_namespace(*leader).map_or(String::new(), |n| n.to_string());
            let _ = realms_sys::atomic::write_file(
                leader_file(store, name),
                format!("{leader}\n{ns}\n").as_bytes(),
                0o644,
            );
            return Ok(*leader);
        }
        if Instant::now() > deadline {
            return Err(Error::NoContainerProcess {
                name: name.to_string(),
                pid,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_files_hold_the_pid_then_the_pid_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("realm-a.leader");
        for (text, want) in [
            ("4242\n4026532186\n", Some((4242, Some(4026532186)))),
            // Written before the namespace was recorded, or when it could not be read.
            ("4242", Some((4242, None))),
            ("4242\n\n", Some((4242, None))),
            ("garbage", None),
            ("", None),
        ] {
            fs::write(&path, text).unwrap();
            assert_eq!(read_leader_file(&path), want, "{text:?}");
        }
    }
}
