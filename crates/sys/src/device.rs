//! Opening a block device or image file as a device (the data and hash devices of dm-verity):
//! read-only, or read-write and created if missing, without truncating; errors name the role.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Opens `path` read-only as the `role` device ("data", "hash"): an error reads
/// "opening data device PATH".
pub fn open_read(path: &Path, role: &str) -> Result<File> {
    File::open(path).ctx(&format!("opening {role} device"), path)
}

/// Opens `path` read-write as the `role` device, creating it with `mode` if it does not
/// exist; an existing file is neither truncated nor changed in mode.
pub fn open_write(path: &Path, role: &str, mode: u32) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
        .ctx(&format!("opening {role} device"), path)
}

/// Opens an existing `path` read-write as the `role` device, to correct it in place.
pub fn open_update(path: &Path, role: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(&format!("opening {role} device"), path)
}

/// Flushes what was written to `file` (at `path`) to stable storage.
pub fn sync(file: &File, path: &Path) -> Result<()> {
    file.sync_all().ctx("syncing", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_name_the_role() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = open_read(&missing, "data").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("opening data device {}", missing.display())
        );
        let hash = dir.path().join("hash");
        std::fs::write(&hash, b"keep").unwrap();
        let f = open_write(&hash, "hash", 0o600).unwrap();
        sync(&f, &hash).unwrap();
        assert_eq!(std::fs::read(&hash).unwrap(), b"keep");
    }
}
