//! Provisioning: a declarative manifest of portable-service packages, signed repositories
//! (an index per architecture and stream), verified one-pass install into /var/lib/portables,
//! attach through `realms-portable`, and the state of what is installed.
#![warn(missing_docs)]

pub mod apply;
mod error;
pub mod export;
pub mod fetch;
pub mod fleetlock;
pub mod fuzz;
pub mod health;
pub mod ignition;
pub mod inbox;
pub mod index;
pub mod install;
pub mod manifest;
pub mod oci;
pub mod portable;
pub mod publish;
pub mod state;
pub mod unpack;
pub mod update;
pub mod version;
pub mod window;

pub use error::{
    AuthProblem, CaProblem, CredentialsProblem, Error, FetchProblem, InboxProblem, IndexProblem,
    IndexSignatureProblem, IntegrityProblem, ManifestProblem, NoRollback, OciReferenceProblem,
    PushProblem, Result, Transfer, chain_text,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_http;
#[cfg(test)]
mod tests_update;
