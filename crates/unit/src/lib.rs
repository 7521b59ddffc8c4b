//! systemd's formats, pure: systemd-escape, os-release, unit files and drop-ins.
//!
//! Nothing here touches the file system: parsers take text, loaders take a closure that
//! reads a root-relative path.
//!
//! ```
//! use realms_unit::{UnitFile, UnitType, escape};
//!
//! assert_eq!(escape::from_path("/var/lib/my-app", UnitType::Mount)?, "var-lib-my\\x2dapp.mount");
//! assert_eq!(escape::unescape_path("var-lib-my\\x2dapp")?, b"/var/lib/my-app");
//!
//! let mut unit = UnitFile::parse("[Service]\nExecStart=/bin/true\n")?;
//! unit.set("Service", "Type", "oneshot")?;
//! assert_eq!(unit.get("Service", "Type"), Some("oneshot"));
//! assert_eq!(unit.to_text(), "[Service]\nExecStart=/bin/true\nType=oneshot\n");
//! # Ok::<(), realms_unit::Error>(())
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod escape;
pub mod name;
pub mod os_release;
pub mod unit_file;

pub use error::{Error, Mismatch, Problem, Result};
pub use name::{NameKind, UnitName, UnitType};
pub use os_release::OsRelease;
pub use unit_file::UnitFile;
