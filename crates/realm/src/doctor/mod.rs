//! `realms doctor`: finds what a crash or a manual intervention left in the realm store and on
//! the host (leftovers, dangling links, broken realms, unused images and zones, stale runtime
//! state), and with `fix` repairs it. Every finding names its path and what the fix does; fixes
//! that delete user data (a home, an image) are applied only with `force`.
//!
//! [`check`] only looks; the crash-safety tests assert that it finds nothing after recovery.

mod host;
mod store;

use realms_sys::IoContext;
use std::path::PathBuf;

use realms_sys::doctor::{Finding, Options};
use realms_sys::event::Report;

use crate::Result;
use crate::store::RealmStore;

pub use realms_sys::doctor::{Kind, Outcome};

/// How one finding is repaired.
#[derive(Debug, Clone)]
enum Action {
    /// The store's own recovery (taking the store lock runs it): staging trees of dead
    /// processes, half-removed trees, unfinished rebases and renames.
    Recover,
    /// Delete a tree (an image's retired version, a kept version no realm uses).
    DeleteImageTree(PathBuf),
    /// Remove one file or symlink.
    RemoveFile(PathBuf),
    /// Give a realm the template config.
    WriteConfig(String),
    /// Make a realm's missing root afresh from its image.
    NewRoot(String),
    /// Remove a realm directory entirely (home too).
    RemoveRealm(String),
    /// Remove an application image.
    RemoveImage(String),
    /// Rebase an overlay realm whose lower version is gone.
    Rebase(String),
    /// Stop what is left of a realm whose nspawn was killed.
    Stop(String),
    /// Kill a stray nspawn process.
    Kill(u32),
    /// Detach a loop device.
    DetachLoop(PathBuf),
    /// Unmount a mount (and what is mounted below it).
    Unmount(PathBuf),
    /// Take a zone's bridge, table and host record away.
    ZoneOffHost(String),
}

/// Looks at the store of `store` and at the host, changing nothing.
pub fn check(store: &RealmStore) -> Result<Vec<Finding>> {
    run(store, Options::default(), &|_| {})
}

/// Checks, and with `opts.fix` repairs what was found; returns every finding with its outcome.
/// Progress of the fixes goes to `say`.
pub fn run(store: &RealmStore, opts: Options, say: &dyn Report) -> Result<Vec<Finding>> {
    let mut found = store::check(store)?;
    found.extend(host::check(store)?);
    found.sort_by(|a, b| (a.0.kind, &a.0.path).cmp(&(b.0.kind, &b.0.path)));
    let mut out = Vec::with_capacity(found.len());
    let mut recovered: Option<std::result::Result<(), String>> = None;
    for (mut finding, action) in found {
        if opts.should_fix(&mut finding) {
            let result = match (&action, &recovered) {
                // One run of the recovery repairs every leftover it knows.
                (Action::Recover, Some(done)) => done.clone(),
                (Action::Recover, None) => {
                    let r = store.lock().map(drop).map_err(|e| e.to_string());
                    recovered = Some(r.clone());
                    r
                }
                _ => apply(store, &action, say).map_err(|e| e.to_string()),
            };
            Options::record(&mut finding, result);
        }
        out.push(finding);
    }
    Ok(out)
}

fn apply(store: &RealmStore, action: &Action, say: &dyn Report) -> Result<()> {
    match action {
        Action::Recover => store.lock().map(drop),
        Action::DeleteImageTree(path) => Ok(realms_image::delete_tree(path)?),
        // Gone already (the store lock's own recovery drops a dead realm's records): fixed.
        Action::RemoveFile(path) => match std::fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => Ok(r.ctx("removing", path)?),
        },
        Action::WriteConfig(name) => store::write_config(store, name),
        Action::NewRoot(name) => store::new_root(store, name),
        Action::RemoveRealm(name) => store::remove_realm(store, name),
        Action::RemoveImage(name) => {
            let _lock = store.lock()?;
            Ok(store.images().remove(name, &[])?)
        }
        Action::Rebase(name) => crate::rebase::rebase(store, name, None, say).map(drop),
        Action::Stop(name) => crate::launch::stop(store, name, say),
        Action::Kill(pid) => host::kill(*pid),
        Action::DetachLoop(dev) => Ok(realms_sys::loopdev::detach_device(dev)?),
        Action::Unmount(path) => Ok(realms_sys::mount::umount_recursive(path)?),
        Action::ZoneOffHost(zone) => crate::zone::remove_from_host(store, zone),
    }
}

#[cfg(test)]
mod tests;
