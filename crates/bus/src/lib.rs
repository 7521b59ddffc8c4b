//! `realms dbus`: the D-Bus API for a desktop UI, `org.realms.Manager1` at
//! `/org/realms/Manager1` on the system bus, over the same library operations as the CLI.
//! Everyone may read (List, GetConfig); only root and members of the admin group may change
//! anything. Errors come back as D-Bus errors carrying the text the CLI prints. Signals
//! (RealmStarted, RealmStopped, RealmNew, RealmRemoved, CurrentChanged) are driven by inotify
//! on the store.
#![warn(missing_docs)]

mod access;
mod manager;
mod signals;

pub use manager::{BusError, Manager};

use realms_realm::RealmStore;

/// The bus name.
pub const NAME: &str = "org.realms.Manager1";
/// The object path.
pub const PATH: &str = "/org/realms/Manager1";

/// Everything that can stop the service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, owning the name or serving failed.
    #[error("serving {NAME} on the bus{}", address.as_deref().map(|a| format!(" at {a}")).unwrap_or_default())]
    Bus {
        /// The bus address, when not the system bus.
        address: Option<String>,
        /// The error.
        source: Box<zbus::Error>,
    },
    /// Watching the store failed.
    #[error(transparent)]
    Desktop(#[from] realms_desktop::Error),
}

/// How the service runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// A bus address instead of the system bus (tests, a session of one's own).
    pub address: Option<String>,
    /// The group whose members may call mutating methods besides root.
    pub admin_group: Option<String>,
}

/// Serves the API until the connection ends or watching the store fails.
pub fn serve(store: RealmStore, opts: &ServeOptions) -> Result<(), Error> {
    let bus = |source| Error::Bus {
        address: opts.address.clone(),
        source: Box::new(source),
    };
    let manager = Manager::new(store.clone(), opts.admin_group.clone());
    let builder = match &opts.address {
        Some(a) => zbus::blocking::connection::Builder::address(a.as_str()).map_err(bus)?,
        None => zbus::blocking::connection::Builder::system().map_err(bus)?,
    };
    let conn = builder
        .name(NAME)
        .map_err(bus)?
        .serve_at(PATH, manager)
        .map_err(bus)?
        .build()
        .map_err(bus)?;
    signals::run(&store, &conn).map_err(|e| match e {
        signals::Failed::Bus(e) => bus(e),
        signals::Failed::Watch(e) => Error::Desktop(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_error_prints_its_cause_once() {
        let err = Error::Bus {
            address: Some("unix:path=/run/x".into()),
            source: Box::new(zbus::Error::Failure("no such bus".into())),
        };
        let outer = err.to_string();
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(outer.contains("at unix:path=/run/x"), "{outer}");
        assert!(cause.contains("no such bus"), "{cause}");
        assert!(!outer.contains(&cause), "{outer:?} repeats its cause");
    }
}
