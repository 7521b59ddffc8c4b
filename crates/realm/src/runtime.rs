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
    let cached = fs::read_to_string(leader_file(store, name))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if let Some(leader) = cached
        && proc::parent_of(leader) == Some(pid)
    {
        return Ok(leader);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // nspawn's intermediate child exits once the container's init runs; one child remains.
        let children = proc::children_of(pid)?;
        if let [leader] = children.as_slice() {
            let _ = realms_sys::atomic::write_file(
                leader_file(store, name),
                leader.to_string().as_bytes(),
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
