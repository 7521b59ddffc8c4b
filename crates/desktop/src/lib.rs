//! The desktop side of Realms: the current realm's desktop entries and icons published for the
//! host's desktop (parsed, rewritten to run in the realm, swapped in atomically), the inotify
//! watcher that keeps them current, and `realms launch`, which runs an app in a realm.
#![warn(missing_docs)]

pub mod badge;
pub mod disposable;
pub mod entry;
mod error;
pub mod exec_line;
pub mod icons;
pub mod identity;
pub mod launch;
pub mod publish;
mod reap;
pub mod rewrite;
pub mod session;
pub mod titles;
pub mod watch;
pub mod x11;

pub use error::{EntryProblem, Error, ExecProblem, Result, SkipReason};
