//! Provisioning: a declarative manifest of portable-service packages, signed repositories
//! (an index per architecture and stream), verified one-pass install into /var/lib/portables,
//! attach through `realms-portable`, and the state of what is installed.
#![warn(missing_docs)]

mod error;
pub mod manifest;

pub use error::{Error, Result};
