//! Bounded reads of files that come from images, archives and other people: never a FIFO, a
//! device or a symlink, never more than a cap, so a hostile file cannot hang or exhaust us.

use crate::error::Invalidity;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustix::fd::AsFd;
use rustix::fs::{FileType, Mode, OFlags};

use crate::error::{Error, IoContext, Result};

/// The cap for small text files of an image (os-release, unit files, extension-release): 4 MiB,
/// as systemd reads them.
pub const TEXT_CAP: u64 = 4 << 20;

/// Reads the regular file at `path` whole, refusing a symlink in its last component, anything but
/// a regular file, and a file longer than `cap` bytes. Opening never blocks (`O_NONBLOCK`), so a
/// FIFO is refused rather than waited on.
pub fn read(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ctx("opening", path)?;
    read_file(File::from(fd), path, cap)
}

/// Like [`read`], but a symlink is followed (for files whose path the user or the administrator
/// chose, such as keys): what it leads to must still be a regular file under the cap.
pub fn read_following(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ctx("opening", path)?;
    read_file(File::from(fd), path, cap)
}

/// Reads the regular file at `path` whole as UTF-8; see [`read`].
pub fn read_to_string(path: &Path, cap: u64) -> Result<String> {
    let bytes = read(path, cap)?;
    String::from_utf8(bytes).map_err(|_| Error::invalid("reading", path, Invalidity::NotUtf8))
}

/// Reads an already opened `file` (named `path` in errors) whole, with the checks of [`read`].
pub fn read_file(mut file: File, path: &Path, cap: u64) -> Result<Vec<u8>> {
    let st = rustix::fs::fstat(file.as_fd()).ctx("inspecting", path)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile {
        return Err(Error::invalid(
            "reading",
            path,
            Invalidity::NotRegularFile(describe(kind)),
        ));
    }
    let mut out = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "longer".
    (&mut file)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .ctx("reading", path)?;
    if out.len() as u64 > cap {
        return Err(Error::invalid("reading", path, Invalidity::TooLong { cap }));
    }
    Ok(out)
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "an unknown kind of file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_file_under_the_cap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("os-release");
        std::fs::write(&p, "ID=x\n").unwrap();
        assert_eq!(read_to_string(&p, 5).unwrap(), "ID=x\n");
    }

    #[test]
    fn file_over_the_cap_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, "123456").unwrap();
        let e = read(&p, 5).unwrap_err().to_string();
        assert!(
            e.contains("big") && e.contains("longer than 5 bytes"),
            "{e}"
        );
    }

    #[test]
    fn sparse_huge_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        File::create(&p).unwrap().set_len(3 << 30).unwrap();
        let e = read(&p, TEXT_CAP).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn fifo_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = read(&p, TEXT_CAP).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
    }

    #[test]
    fn symlink_and_device_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        assert!(read(&p, TEXT_CAP).is_err());
        let e = read(Path::new("/dev/zero"), TEXT_CAP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a character device"), "{e}");
    }
}
