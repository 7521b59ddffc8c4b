//! Scratch directories for mounts and keys while a command runs.

use std::path::{Path, PathBuf};

use crate::error::Result;
use realms_sys::IoContext;

/// A fresh private directory under /run/realms.
pub(crate) fn tempdir_in_run(what: &str) -> Result<PathBuf> {
    let base = Path::new("/run/realms");
    std::fs::create_dir_all(base).ctx("creating", base)?;
    let tag: [u8; 6] = realms_sys::random::bytes()?;
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let dir = base.join(format!("state-{what}-{hex}"));
    std::fs::create_dir(&dir).ctx("creating", &dir)?;
    Ok(dir)
}
