//! Positioned reads and writes, so several threads can read one device at once.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// A device (file) read at byte offsets from several threads at once.
pub trait ReadAt: Sync {
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Identifies the underlying file (device and inode), to detect a hash area placed in the
    /// data file itself; `None` when unknown.
    fn identity(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A device the hash area is written to.
pub trait WriteAt: ReadAt {
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Grows the file to `size` bytes (with zeros); never called to shrink it.
    fn grow_to(&self, size: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        let meta = self.metadata()?;
        if meta.file_type().is_file() {
            return Ok(meta.len());
        }
        // A block device: its size is where seeking to the end lands.
        let mut file = self;
        io::Seek::seek(&mut file, io::SeekFrom::End(0))
    }

    fn identity(&self) -> Option<(u64, u64)> {
        self.metadata().ok().map(|m| (m.dev(), m.ino()))
    }
}

impl WriteAt for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn grow_to(&self, size: u64) -> io::Result<()> {
        if self.metadata()?.file_type().is_file() && self.size()? < size {
            self.set_len(size)?;
        }
        Ok(())
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the buffer",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_read_in_bounds_only() {
        let data: Vec<u8> = (0u8..10).collect();
        let mut buf = [0u8; 3];
        data.read_exact_at(&mut buf, 7).unwrap();
        assert_eq!(buf, [7, 8, 9]);
        assert!(data.read_exact_at(&mut buf, 8).is_err());
        assert!(data.read_exact_at(&mut buf, u64::MAX).is_err());
        assert_eq!(ReadAt::size(&data).unwrap(), 10);
    }
}
