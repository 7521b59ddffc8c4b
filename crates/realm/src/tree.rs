//! The direct executor's hold on a realm's whole process tree: a control group of its own that
//! the launcher joins before it execs nspawn, so that the realm's processes can be seen and
//! stopped even after nspawn itself was killed (its container's init then lives on, re-parented
//! to PID 1, holding the veth). Commands `realms run` starts are in the container's PID
//! namespace: they end with its init.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use realms_sys::cgroup::Cgroup;
use realms_sys::cmd::Cmd;
use realms_sys::proc;

use crate::store::RealmStore;
use crate::{Error, Result};

/// Where realms' groups live, in every hierarchy.
const PARENT: &str = "realms";
/// How long an orphaned init gets to power off before everything left is killed.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);
/// How long the kernel gets to drop a dead container's network namespace (and its veth).
const VETH_GONE: Duration = Duration::from_secs(5);

/// The realm's control group, `realms/realm-NAME.STORE`: groups are host-wide, and realms of
/// two stores may share a name.
pub(crate) fn group(store: &RealmStore, name: &str) -> Result<Cgroup> {
    Ok(Cgroup::new(
        Path::new(PARENT).join(format!("realm-{name}.{}", store_tag(store))),
    )?)
}

/// Whether anything of the realm still runs (its nspawn, its container, commands run in it).
pub(crate) fn is_populated(store: &RealmStore, name: &str) -> bool {
    group(store, name).is_ok_and(|g| g.is_populated())
}

/// A short, stable name for the store: FNV-1a of its real path.
fn store_tag(store: &RealmStore) -> String {
    let dir = std::fs::canonicalize(store.dir()).unwrap_or_else(|_| store.dir().to_path_buf());
    format!("{:08x}", fnv1a(dir.as_os_str().as_encoded_bytes()) as u32)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Stops whatever is left in the realm's group: the container's init is asked to power off
/// (SIGRTMIN+4), everything still there after a grace period is killed, and the group removed.
pub(crate) fn reap(store: &RealmStore, name: &str) -> Result<()> {
    let g = group(store, name)?;
    let init = g
        .pids()
        .into_iter()
        .find(|p| proc::pid_in_namespace(*p) == Some(1));
    if let Some(init) = init {
        tracing::info!("realm '{name}': asking its orphaned init (pid {init}) to power off");
        let _ = proc::kill_realtime(init, 4);
        let deadline = Instant::now() + ORPHAN_GRACE;
        while g.is_populated() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let left = g.kill_all(Duration::from_secs(5))?;
    if !left.is_empty() {
        return Err(Error::Unkillable {
            name: name.to_string(),
            pids: describe(&left),
            cgroup: g.dirs().next().unwrap_or(Path::new("?")).to_path_buf(),
        });
    }
    g.remove()?;
    Ok(())
}

/// `1234 (systemd), 1240 (sleep)`.
pub(crate) fn describe(pids: &[u32]) -> String {
    let mut shown: Vec<String> = pids
        .iter()
        .take(8)
        .map(|p| format!("{p} ({})", proc::name_of(*p).unwrap_or_else(|| "?".into())))
        .collect();
    if pids.len() > 8 {
        shown.push(format!("and {} more", pids.len() - 8));
    }
    shown.join(", ")
}

/// Before a start: nothing of an earlier run is left (in our group, or as the host end of its
/// veth), and no realm of the same name from another store runs (veth names are host-wide).
pub(crate) fn prepare_start(store: &RealmStore, name: &str) -> Result<()> {
    let g = group(store, name)?;
    if g.is_populated() {
        reap(store, name)?;
    } else {
        g.remove()?;
    }
    let others = others_running(name, &g);
    if let Some(other) = others.first() {
        return Err(Error::SameNameRunning {
            name: name.to_string(),
            other: other.clone(),
        });
    }
    clear_stale_veth(name)
}

/// The populated groups of realms named `name` in other stores.
fn others_running(name: &str, own: &Cgroup) -> Vec<PathBuf> {
    let Some(own_dir) = own.dirs().next() else {
        return Vec::new();
    };
    let Some(parent) = own_dir.parent() else {
        return Vec::new();
    };
    let prefix = format!("realm-{name}.");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != own_dir)
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter(|p| {
            std::fs::read_to_string(p.join("cgroup.events"))
                .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
        })
        .collect()
}

/// The host end nspawn gives the realm's veth (`vb-NAME`, when that fits an interface name).
fn veth_name(name: &str) -> Option<String> {
    let n = format!("vb-{name}");
    (n.len() <= 15).then_some(n)
}

/// A veth whose container is gone goes away with its network namespace, which the kernel
/// drops shortly after the last process in it died; one still there after that is deleted.
fn clear_stale_veth(name: &str) -> Result<()> {
    let Some(veth) = veth_name(name) else {
        return Ok(());
    };
    let sys = Path::new("/sys/class/net").join(&veth);
    let deadline = Instant::now() + VETH_GONE;
    while sys.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if sys.exists() {
        tracing::info!("realm '{name}': deleting the stale network interface {veth}");
        Cmd::new("ip").args(["link", "del", &veth]).run()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn veth_names_fit_interface_names() {
        assert_eq!(veth_name("work").as_deref(), Some("vb-work"));
        assert_eq!(
            veth_name("abcdefghijkl").as_deref(),
            Some("vb-abcdefghijkl")
        );
        assert_eq!(veth_name("abcdefghijklm"), None);
    }
}
