//! Permissions that keep the store's privileges in the store: its top directories reachable by
//! root only (as `/var/lib/machines`), and image roots that no archive can make world-writable.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{IoContext, Result};

/// Creates `path` (and its missing parents, with the usual mode) with mode 0700 from the
/// start, so that it is never, even for a moment, reachable by other users; an existing one is
/// made private.
pub fn create_private_dir(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ctx("creating the directory", parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).ctx("creating the directory", path);
        }
        _ => {}
    }
    make_private_dir(path)
}

/// Makes the directory `path` mode 0700 (it must exist), unless it is so already: whatever is
/// below (setuid binaries, device nodes of images) is then out of reach of other users.
pub fn make_private_dir(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).ctx("inspecting", path)?;
    if meta.mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .ctx("making private", path)?;
    }
    Ok(())
}

/// Gives an image's root directory the mode and owner of a system's `/` (0755, root:root),
/// whatever the archive or tree it came from said (a `.` entry of mode 0777 must not make every
/// realm's root world-writable).
pub fn settle_image_root(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).ctx("inspecting", path)?;
    if meta.uid() != 0 || meta.gid() != 0 {
        std::os::unix::fs::lchown(path, Some(0), Some(0)).ctx("changing the owner of", path)?;
    }
    if meta.mode() & 0o7777 != 0o755 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .ctx("setting the mode of", path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_and_image_root_get_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o4777)).unwrap();
        make_private_dir(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o700);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        settle_image_root(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o755);
    }
}
