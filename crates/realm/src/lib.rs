//! Realms: isolated OS containers booted with systemd-nspawn from snapshots of an application
//! image, with a default realm started at boot and a current realm that owns the desktop.

#![warn(missing_docs)]

pub mod autostart;
pub mod config;
mod copy;
pub mod doctor;
mod error;
pub mod exec;
pub mod executor;
pub mod forward;
pub mod launch;
pub mod lifecycle;
pub mod names;
#[cfg(test)]
mod ops_tests;
pub mod pins;
pub mod plan;
pub mod rebase;
mod recover;
pub mod rename;
pub mod runtime;
pub mod select;
pub mod snapshot;
mod starting;
pub mod status;
pub mod store;
mod tree;
pub mod update;
pub mod value;
pub mod xauth;
pub mod zone;

pub use error::{Error, ExecProblem, Result, StartFailure};
pub use store::RealmStore;
