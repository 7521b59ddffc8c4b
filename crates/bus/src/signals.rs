//! The API's signals, driven by inotify on the store (realms created and removed) and on
//! `/run/realms` (realms started and stopped, the current symlink): after each change the
//! store's state is compared with the last one and the differences are signalled.

use std::collections::BTreeSet;
use std::mem::MaybeUninit;

use realms_realm::{RealmStore, launch, select};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;

use crate::{Manager, PATH};

/// Why the signal loop stopped.
#[derive(Debug)]
pub enum Failed {
    /// Emitting failed.
    Bus(zbus::Error),
    /// Watching failed.
    Watch(realms_desktop::Error),
}

#[derive(Debug, Default, PartialEq, Eq)]
struct State {
    realms: BTreeSet<String>,
    running: BTreeSet<String>,
    current: Option<String>,
}

fn state(store: &RealmStore) -> State {
    let realms: BTreeSet<String> = store.names().unwrap_or_default().into_iter().collect();
    let running = realms
        .iter()
        .filter(|n| launch::is_running(store, n))
        .cloned()
        .collect();
    State {
        realms,
        running,
        current: select::current(store),
    }
}

/// Watches the store and emits signals until an error.
pub fn run(store: &RealmStore, conn: &zbus::blocking::Connection) -> Result<(), Failed> {
    let watch_err = |path: &std::path::Path, e: Errno| {
        Failed::Watch(realms_desktop::Error::Watch {
            path: path.to_path_buf(),
            source: e.into(),
        })
    };
    for dir in [store.dir(), store.run_dir()] {
        std::fs::create_dir_all(dir)
            .map_err(|e| watch_err(dir, Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
    }
    let fd = inotify::init(CreateFlags::CLOEXEC).map_err(|e| watch_err(store.dir(), e))?;
    let flags =
        WatchFlags::CREATE | WatchFlags::DELETE | WatchFlags::MOVED_TO | WatchFlags::MOVED_FROM;
    for dir in [store.dir(), store.run_dir()] {
        inotify::add_watch(&fd, dir, flags).map_err(|e| watch_err(dir, e))?;
    }
    let iface = conn
        .object_server()
        .interface::<_, Manager>(PATH)
        .map_err(Failed::Bus)?;
    let emitter = iface.signal_emitter();
    let mut last = state(store);
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = inotify::Reader::new(&fd, &mut buf);
    loop {
        match reader.next() {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(watch_err(store.dir(), e)),
        }
        let now = state(store);
        if now == last {
            continue;
        }
        let emit = |r: zbus::Result<()>| r.map_err(Failed::Bus);
        for n in now.realms.difference(&last.realms) {
            emit(zbus::block_on(Manager::realm_new(emitter, n)))?;
        }
        for n in now.running.difference(&last.running) {
            emit(zbus::block_on(Manager::realm_started(emitter, n)))?;
        }
        for n in last.running.difference(&now.running) {
            emit(zbus::block_on(Manager::realm_stopped(emitter, n)))?;
        }
        for n in last.realms.difference(&now.realms) {
            emit(zbus::block_on(Manager::realm_removed(emitter, n)))?;
        }
        if now.current != last.current {
            let name = now.current.clone().unwrap_or_default();
            emit(zbus::block_on(Manager::current_changed(emitter, &name)))?;
        }
        last = now;
    }
}
