//! Scratch directories for mounts and keys while a command runs.

use std::path::{Path, PathBuf};

use crate::error::{IoCtx, Result};

/// A fresh private directory under /run/realms.
pub(crate) fn tempdir_in_run(what: &str) -> Result<PathBuf> {
    let base = Path::new("/run/realms");
    std::fs::create_dir_all(base).io_ctx("creating", base)?;
    let tag: [u8; 6] = realms_sys::random::bytes()?;
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let dir = base.join(format!("state-{what}-{hex}"));
    std::fs::create_dir(&dir).io_ctx("creating", &dir)?;
    Ok(dir)
}
