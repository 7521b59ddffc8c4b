//! systemd's formats, pure: systemd-escape, os-release, unit files and drop-ins.
//!
//! Nothing here touches the file system: loaders take a reading closure, parsers take text.

pub mod error;
pub mod escape;
pub mod name;

pub use error::{Error, Problem, Result};
pub use name::{NameKind, UnitName, UnitType};
