//! The host side of `realms doctor`: nspawn processes of the store's realms that nothing knows
//! any more, loop devices on the store's images and mounts inside the store that no running
//! realm uses, and zones set up on the host (bridge, nftables table) that no realm is in.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use realms_sys::doctor::{Finding, Kind};
use realms_sys::proc::{self, Signal};

use super::Action;
use crate::Result;
use crate::runtime::{self, State};
use crate::store::RealmStore;
use crate::zone::{self, bridge_name, host as zhost, nft};

type Found = Vec<(Finding, Action)>;

pub(super) fn check(store: &RealmStore) -> Result<Found> {
    let mut out = Vec::new();
    let running: Vec<String> = store
        .names()?
        .into_iter()
        .filter(|n| runtime::is_running(store, n))
        .collect();
    processes(store, &mut out)?;
    loops(store, &running, &mut out)?;
    mounts(store, &running, &mut out)?;
    zones(store, &mut out)?;
    Ok(out)
}

/// The argument nspawn is given for a realm's root: `--directory=STORE/realm-NAME/rootfs`.
fn realm_of_cmdline(store: &RealmStore, args: &[&str]) -> Option<String> {
    let prefix = format!("--directory={}/realm-", store.dir().display());
    args.iter().find_map(|a| {
        a.strip_prefix(&prefix)?
            .strip_suffix("/rootfs")
            .map(str::to_string)
    })
}

fn processes(store: &RealmStore, out: &mut Found) -> Result<()> {
    for name in store.names()? {
        if runtime::state(store, &name) == State::Orphaned {
            out.push((
                Finding::new(
                    Kind::OrphanedNspawn,
                    store.realm_dir(&name),
                    format!(
                        "realm '{name}' lost its systemd-nspawn, but processes of its container live on"
                    ),
                    format!("stops what is left of it (`realms stop {name}`)"),
                ),
                Action::Stop(name),
            ));
        }
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return Ok(());
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        let args: Vec<&str> = text.split('\0').collect();
        let Some(realm) = realm_of_cmdline(store, &args) else {
            continue;
        };
        let known =
            store.realm_dir(&realm).is_dir() && runtime::nspawn_pid(store, &realm) == Some(pid);
        if known {
            continue;
        }
        out.push((
            Finding::new(
                Kind::OrphanedNspawn,
                format!("/proc/{pid}"),
                format!(
                    "process {pid} runs a container of realm '{realm}' that no pid file or unit knows"
                ),
                format!("kills process {pid} (SIGTERM, then SIGKILL after 5 s)"),
            ),
            Action::Kill(pid),
        ));
    }
    Ok(())
}

pub(super) fn kill(pid: u32) -> Result<()> {
    proc::kill(pid, Signal::TERM)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while proc::pid_alive(pid) {
        if Instant::now() > deadline {
            proc::kill(pid, Signal::KILL)?;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Where the store's files really are (a store under a symlinked root is found by its real path).
fn real(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The image (`NAME` of `NAME.appimg...`) a path inside the image store belongs to.
fn image_of(images: &Path, path: &Path) -> Option<String> {
    let first = path.strip_prefix(images).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.split(".appimg").next()?.to_string())
}

fn loops(store: &RealmStore, running: &[String], out: &mut Found) -> Result<()> {
    let images = real(store.images().dir());
    let realms = real(store.dir());
    let Ok(dir) = fs::read_dir("/sys/block") else {
        return Ok(());
    };
    let mounted: Vec<String> = realms_sys::mount::mounts_under("/")?
        .into_iter()
        .map(|m| m.source)
        .collect();
    let in_use: Vec<String> = running
        .iter()
        .filter_map(|n| store.config(n).ok().map(|c| c.appimg().to_string()))
        .collect();
    let mut devices: Vec<(u32, PathBuf)> = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(number) = name
            .strip_prefix("loop")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let text = text.trim_end_matches('\n');
        let backing = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(text));
        if !(backing.starts_with(&images) || backing.starts_with(&realms)) {
            continue;
        }
        let dev = format!("/dev/loop{number}");
        let held = fs::read_dir(entry.path().join("holders")).is_ok_and(|mut d| d.next().is_some());
        let used = mounted.contains(&dev)
            || held
            || image_of(&images, &backing).is_some_and(|i| in_use.contains(&i));
        if !used {
            devices.push((number, backing));
        }
    }
    devices.sort();
    for (number, backing) in devices {
        let dev = PathBuf::from(format!("/dev/loop{number}"));
        out.push((
            Finding::new(
                Kind::LeftoverLoop,
                &dev,
                format!(
                    "loop device on {} that nothing mounts and no running realm uses",
                    backing.display()
                ),
                "detaches it",
            ),
            Action::DetachLoop(dev),
        ));
    }
    Ok(())
}

fn mounts(store: &RealmStore, running: &[String], out: &mut Found) -> Result<()> {
    let mut seen: Vec<PathBuf> = Vec::new();
    for top in [real(store.dir()), real(store.images().dir())] {
        if !top.is_dir() {
            continue;
        }
        let mut found: Vec<PathBuf> = realms_sys::mount::mounts_under(&top)?
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| *p != top)
            .collect();
        found.sort();
        for point in found {
            if seen.iter().any(|s| point.starts_with(s)) {
                continue;
            }
            let realm = point
                .strip_prefix(&top)
                .ok()
                .and_then(|r| r.components().next())
                .and_then(|c| c.as_os_str().to_str()?.strip_prefix("realm-"))
                .map(str::to_string);
            if realm.is_some_and(|r| running.contains(&r)) {
                continue;
            }
            seen.push(point.clone());
            out.push((
                Finding::new(
                    Kind::LeftoverMount,
                    &point,
                    "a mount inside the store that no running realm uses",
                    "unmounts it (and what is mounted below it)",
                ),
                Action::Unmount(point),
            ));
        }
    }
    Ok(())
}

/// Zones whose host record is this store's, set up on the host, with no realm of the store in
/// them (also zones the store no longer lists).
fn zones(store: &RealmStore, out: &mut Found) -> Result<()> {
    let id = real(store.dir());
    let Ok(dir) = fs::read_dir(zhost::NET_DIR) else {
        return Ok(());
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| Some(e.file_name().to_str()?.strip_suffix(".toml")?.to_string()))
        .collect();
    names.sort();
    for name in names {
        let Some(claim) = zhost::read_claim(&name) else {
            continue;
        };
        if claim.store != id
            || !zone::realms_in_zone(store, &name)?.is_empty()
            || !zhost::bridge_exists(&bridge_name(&name))
        {
            continue;
        }
        out.push((
            Finding::new(
                Kind::UnusedZone,
                Path::new("/sys/class/net").join(bridge_name(&name)),
                format!(
                    "zone '{name}' is set up on the host (bridge {}, nftables table inet {}) but no realm is in it",
                    bridge_name(&name),
                    nft::table_name(&name)
                ),
                "removes the bridge, the table and the host record (the zone's settings stay in zones.toml)",
            ),
            Action::ZoneOffHost(name),
        ));
    }
    Ok(())
}
