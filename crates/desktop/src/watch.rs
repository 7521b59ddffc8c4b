//! `realms desktop watch`: keeps the published entries equal to the current realm's, driven by
//! inotify (no polling) on `/run/realms` (the current symlink, realms starting and stopping)
//! and on the current realm's application directories (a package installed or removed).

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::time::Duration;

use realms_realm::{RealmStore, launch, select};
use realms_sys::event::{Event, Report};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;

use crate::icons::THEME_DIRS;
use crate::publish::{APPLICATION_DIRS, SyncOptions, sync};
use crate::{Error, Result};

/// How long a burst of changes (a package installing many files) is let settle before the set
/// is rebuilt once.
const SETTLE: Duration = Duration::from_millis(15);

/// When replaced sets are removed after a swap (they stay [`crate::publish::REPLACED_FOR`]).
const PRUNE_AFTER: Duration = Duration::from_millis(1100);

/// Publishes the current realm's entries, then again after every change, until an error.
pub fn watch(store: &RealmStore, opts: &SyncOptions, say: &dyn Report) -> Result<()> {
    let run = store.run_dir().to_path_buf();
    std::fs::create_dir_all(&run).map_err(|e| realms_sys::Error::io("creating", &run, e))?;
    let mut last: Option<Vec<String>> = None;
    loop {
        let fd = inotify::init(CreateFlags::CLOEXEC).map_err(|e| watch_error(&run, e))?;
        let store_wd = inotify::add_watch(
            &fd,
            &run,
            WatchFlags::CREATE | WatchFlags::DELETE | WatchFlags::MOVED_TO | WatchFlags::MOVED_FROM,
        )
        .map_err(|e| watch_error(&run, e))?;
        for dir in watched_dirs(store, opts.all) {
            let flags = WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_TO
                | WatchFlags::MOVED_FROM
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::ATTRIB
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR;
            // A realm that stops while its directories are being watched: the next event
            // (its pid file going) rebuilds the watches.
            if let Err(e) = inotify::add_watch(&fd, &dir, flags) {
                tracing::debug!("not watching {}: {e}", dir.display());
            }
        }
        let published = sync(store, opts, say)?;
        if published.changed || last.as_ref() != Some(&published.realms) {
            let what = match published.realms.as_slice() {
                [] => "no realm is current".to_string(),
                realms => format!("realm(s) {}", realms.join(", ")),
            };
            say.report(Event::progress(format!(
                "published {} entries and {} icons of {what} at {}",
                published.entries,
                published.icons,
                published.dir.display()
            )));
            last = Some(published.realms);
            let run = run.clone();
            std::thread::spawn(move || {
                std::thread::sleep(PRUNE_AFTER);
                if let Err(e) = crate::publish::prune(&run, crate::publish::REPLACED_FOR) {
                    tracing::warn!("removing old published sets: {e}");
                }
            });
        }
        wait(&fd, store_wd, &run)?;
    }
}

/// The directories to watch: each application directory and icon theme (with its sizes' `apps`
/// directories) of the watched realms, or the nearest existing parent of one that does not
/// exist yet (it is created when a package ships one).
fn watched_dirs(store: &RealmStore, all: bool) -> Vec<PathBuf> {
    let realms: Vec<String> = if all {
        store
            .names()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| launch::is_running(store, n))
            .collect()
    } else {
        select::current(store).into_iter().collect()
    };
    let mut dirs = Vec::new();
    for realm in realms {
        let Ok(leader) = launch::leader(store, &realm) else {
            continue;
        };
        let root = PathBuf::from(format!("/proc/{leader}/root"));
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        for dir in APPLICATION_DIRS.iter().chain(THEME_DIRS) {
            let mut path = Path::new(dir);
            while !inside(path).is_dir() {
                match path.parent() {
                    Some(parent) => path = parent,
                    None => break,
                }
            }
            let mut add = |p: PathBuf| {
                if !dirs.contains(&p) {
                    dirs.push(p);
                }
            };
            add(inside(path));
            // An icon theme: each size's apps directory too (icons arrive after entries).
            if THEME_DIRS.contains(dir) && path == Path::new(dir) {
                for size in std::fs::read_dir(inside(path))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let apps = size.path().join("apps");
                    if size.path().is_dir() {
                        add(size.path());
                    }
                    if apps.is_dir() {
                        add(apps);
                    }
                }
            }
        }
    }
    dirs
}

/// Blocks until a change that matters, then lets a burst settle and drains it.
fn wait(fd: &rustix::fd::OwnedFd, store_wd: i32, run: &Path) -> Result<()> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    loop {
        let event = match reader.next() {
            Ok(event) => event,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(watch_error(run, e)),
        };
        if event.wd() != store_wd || matters_in_run_dir(event.file_name()) {
            break;
        }
    }
    rustix::io::ioctl_fionbio(fd, true).map_err(|e| watch_error(run, e))?;
    std::thread::sleep(SETTLE);
    loop {
        match reader.next() {
            Ok(_) | Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => break,
            Err(e) => return Err(watch_error(run, e)),
        }
    }
    Ok(())
}

/// In `/run/realms`: the current symlink and the realms' pid files (a realm started or
/// stopped); not the published set itself, nor temporary names.
fn matters_in_run_dir(name: Option<&std::ffi::CStr>) -> bool {
    let Some(name) = name.and_then(|n| n.to_str().ok()) else {
        return false;
    };
    name == "current.realm" || (name.starts_with("realm-") && name.ends_with(".pid"))
}

fn watch_error(path: &Path, e: Errno) -> Error {
    Error::Watch {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_link_and_pid_files_matter_in_the_run_dir() {
        let m = |s: &str| matters_in_run_dir(Some(&std::ffi::CString::new(s).unwrap()));
        assert!(m("current.realm"));
        assert!(m("realm-work.pid"));
        assert!(!m("desktop"));
        assert!(!m(".#desktop.tmp123"));
        assert!(!m("realm-work.log"));
        assert!(!matters_in_run_dir(None));
    }
}
