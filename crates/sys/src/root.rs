//! A directory handle whose paths resolve inside it (openat2 `RESOLVE_IN_ROOT`), so a symlink in
//! an image or realm can never lead to a host file.
//!
//! Every inner path is resolved by the kernel as if the directory were `/`: absolute symlinks,
//! `..` and absolute inner paths all stay inside, and `/proc` magic links are refused.

use crate::error::Invalidity;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

pub use rustix::fs::FileType;

use crate::error::{Error, IoContext, Result};
use crate::util::split_parent;

/// An open directory that serves as the root for the paths given to its methods.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    /// Opens `path` (a trusted host path; symlinks in it are followed) as a root.
    pub fn open(path: impl AsRef<Path>) -> Result<RootDir> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("opening root directory", path)?;
        Ok(RootDir {
            fd,
            path: path.to_owned(),
        })
    }

    /// The host path this root was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path that `inner` would have if it were joined naively (for messages only).
    pub fn display_path(&self, inner: impl AsRef<Path>) -> PathBuf {
        let inner = inner.as_ref();
        self.path.join(inner.strip_prefix("/").unwrap_or(inner))
    }

    /// Resolves `inner` inside the root with the given open flags.
    fn resolve(&self, inner: &Path, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let inner: &Path = if inner.as_os_str().is_empty() {
            Path::new(".")
        } else {
            inner
        };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let mut tries = 0;
        loop {
            // EAGAIN: a concurrent rename raced with the lookup; the kernel asks us to retry.
            match rustix::fs::openat2(&self.fd, inner, flags | OFlags::CLOEXEC, mode, resolve) {
                Err(Errno::AGAIN) if tries < 64 => tries += 1,
                other => return other,
            }
        }
    }

    fn resolve_ctx(&self, inner: &Path, flags: OFlags, action: &str) -> Result<OwnedFd> {
        self.resolve(inner, flags, Mode::empty())
            .map_err(|e| Error::io(action, self.display_path(inner), e))
    }

    /// An `O_PATH` descriptor for `inner` (final symlink followed, inside the root).
    pub fn open_path(&self, inner: impl AsRef<Path>) -> Result<OwnedFd> {
        self.resolve_ctx(inner.as_ref(), OFlags::PATH, "resolving")
    }

    /// Opens `inner` as another root (a subdirectory, resolved inside this root).
    pub fn open_dir(&self, inner: impl AsRef<Path>) -> Result<RootDir> {
        let inner = inner.as_ref();
        let fd = self.resolve_ctx(inner, OFlags::PATH | OFlags::DIRECTORY, "opening directory")?;
        Ok(RootDir {
            fd,
            path: self.display_path(inner),
        })
    }

    /// Opens the file `inner` for reading.
    pub fn open_file(&self, inner: impl AsRef<Path>) -> Result<File> {
        self.resolve_ctx(inner.as_ref(), OFlags::RDONLY, "opening")
            .map(File::from)
    }

    /// Reads the whole file `inner`.
    pub fn read(&self, inner: impl AsRef<Path>) -> Result<Vec<u8>> {
        let inner = inner.as_ref();
        let mut buf = Vec::new();
        self.open_file(inner)?
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading", self.display_path(inner), e))?;
        Ok(buf)
    }

    /// Reads the whole file `inner` as UTF-8.
    pub fn read_to_string(&self, inner: impl AsRef<Path>) -> Result<String> {
        let inner = inner.as_ref();
        String::from_utf8(self.read(inner)?).map_err(|_| {
            Error::invalid("reading", self.display_path(inner), Invalidity::FileNotUtf8)
        })
    }

    /// Reads the regular file `inner` (symlinks followed, inside the root) whole, refusing anything
    /// but a regular file and more than `cap` bytes, without ever blocking on a FIFO: the bounded
    /// read for files that come from an image ([`crate::untrusted::read_file`]).
    pub fn read_capped(&self, inner: impl AsRef<Path>, cap: u64) -> Result<Vec<u8>> {
        let inner = inner.as_ref();
        let fd = self.resolve_ctx(
            inner,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            "opening",
        )?;
        crate::untrusted::read_file(File::from(fd), &self.display_path(inner), cap)
    }

    /// [`RootDir::read_capped`] as UTF-8 text.
    pub fn read_capped_to_string(&self, inner: impl AsRef<Path>, cap: u64) -> Result<String> {
        let inner = inner.as_ref();
        String::from_utf8(self.read_capped(inner, cap)?).map_err(|_| {
            Error::invalid("reading", self.display_path(inner), Invalidity::FileNotUtf8)
        })
    }

    /// Whether `inner` exists (following a final symlink inside the root; a dangling one is `false`).
    pub fn exists(&self, inner: impl AsRef<Path>) -> Result<bool> {
        let inner = inner.as_ref();
        match self.resolve(inner, OFlags::PATH, Mode::empty()) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(false),
            Err(e) => Err(Error::io("checking", self.display_path(inner), e)),
        }
    }

    /// The metadata of `inner` itself (a final symlink is not followed); `None` if it does not exist.
    pub fn symlink_metadata(&self, inner: impl AsRef<Path>) -> Result<Option<Metadata>> {
        self.metadata_with(inner.as_ref(), OFlags::PATH | OFlags::NOFOLLOW)
    }

    /// The metadata of `inner`, following a final symlink inside the root; `None` if it does not exist.
    pub fn metadata(&self, inner: impl AsRef<Path>) -> Result<Option<Metadata>> {
        self.metadata_with(inner.as_ref(), OFlags::PATH)
    }

    fn metadata_with(&self, inner: &Path, flags: OFlags) -> Result<Option<Metadata>> {
        let fd = match self.resolve(inner, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(Error::io("inspecting", self.display_path(inner), e)),
        };
        File::from(fd)
            .metadata()
            .map(Some)
            .map_err(|e| Error::io("inspecting", self.display_path(inner), e))
    }

    /// The target of the symlink `inner`, as written in it.
    pub fn read_link(&self, inner: impl AsRef<Path>) -> Result<PathBuf> {
        let inner = inner.as_ref();
        let fd = self.resolve_ctx(inner, OFlags::PATH | OFlags::NOFOLLOW, "reading symlink")?;
        let target = rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(|e| match e {
            Errno::NOENT => Error::invalid(
                "reading symlink",
                self.display_path(inner),
                Invalidity::NotASymlink,
            ),
            e => Error::io("reading symlink", self.display_path(inner), e),
        })?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// The entries of directory `inner` (without `.` and `..`), sorted by name.
    pub fn read_dir(&self, inner: impl AsRef<Path>) -> Result<Vec<(OsString, FileType)>> {
        let inner = inner.as_ref();
        let shown = self.display_path(inner);
        let fd = self.resolve_ctx(inner, OFlags::RDONLY | OFlags::DIRECTORY, "listing")?;
        read_dir_fd(fd, &shown)
    }

    /// Creates directory `inner` and its missing parents with `mode` (exactly; no umask).
    ///
    /// Existing directories (and symlinks to directories inside the root) are accepted as they are.
    pub fn create_dir_all(&self, inner: impl AsRef<Path>, mode: u32) -> Result<()> {
        let inner = inner.as_ref();
        let mut prefix = PathBuf::new();
        for comp in inner.components() {
            let name = match comp {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
                Component::ParentDir => {
                    prefix.push("..");
                    continue;
                }
                Component::Normal(name) => name,
            };
            let parent = self.resolve_ctx(
                &prefix,
                OFlags::PATH | OFlags::DIRECTORY,
                "creating directory",
            )?;
            prefix.push(name);
            self.mkdir_in(parent.as_fd(), name, mode, &prefix)?;
        }
        // The final result must be a directory (not, say, a file or a dangling symlink).
        self.resolve_ctx(
            inner,
            OFlags::PATH | OFlags::DIRECTORY,
            "creating directory",
        )
        .map(drop)
    }

    fn mkdir_in(
        &self,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        mode: u32,
        inner: &Path,
    ) -> Result<()> {
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
            Ok(()) => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let dir = rustix::fs::openat(parent, name, flags, Mode::empty());
                dir.and_then(|d| rustix::fs::fchmod(&d, Mode::from_raw_mode(mode)))
                    .map_err(|e| Error::io("setting the mode of", self.display_path(inner), e))
            }
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(Error::io("creating directory", self.display_path(inner), e)),
        }
    }

    /// Replaces the file `inner` atomically with `bytes` and `mode` (see [`crate::atomic::write_file`]).
    ///
    /// A symlink at `inner` is replaced, not followed; symlinks in the parent path resolve inside the root.
    pub fn write_atomic(&self, inner: impl AsRef<Path>, bytes: &[u8], mode: u32) -> Result<()> {
        let inner = inner.as_ref();
        let (parent, name) = split_parent(inner, "writing")?;
        let dir = self.resolve_ctx(parent, OFlags::RDONLY | OFlags::DIRECTORY, "writing")?;
        crate::atomic::write_file_at(dir.as_fd(), name, bytes, mode, &self.display_path(inner))
    }

    /// Makes `inner` a symlink to `target`, atomically replacing whatever non-directory was there.
    pub fn symlink(&self, target: impl AsRef<Path>, inner: impl AsRef<Path>) -> Result<()> {
        let inner = inner.as_ref();
        let (parent, name) = split_parent(inner, "creating symlink")?;
        let dir = self.resolve_ctx(
            parent,
            OFlags::RDONLY | OFlags::DIRECTORY,
            "creating symlink",
        )?;
        crate::atomic::replace_symlink_at(
            dir.as_fd(),
            name,
            target.as_ref(),
            &self.display_path(inner),
        )
    }

    /// Removes the file or symlink `inner` (a final symlink itself is removed, not its target).
    pub fn remove_file(&self, inner: impl AsRef<Path>) -> Result<()> {
        self.unlink(inner.as_ref(), AtFlags::empty(), "removing")
    }

    /// Removes the empty directory `inner`.
    pub fn remove_dir(&self, inner: impl AsRef<Path>) -> Result<()> {
        self.unlink(inner.as_ref(), AtFlags::REMOVEDIR, "removing directory")
    }

    fn unlink(&self, inner: &Path, flags: AtFlags, action: &str) -> Result<()> {
        let (parent, name) = split_parent(inner, action)?;
        let dir = self.resolve_ctx(parent, OFlags::PATH | OFlags::DIRECTORY, action)?;
        rustix::fs::unlinkat(&dir, name, flags)
            .map_err(|e| Error::io(action, self.display_path(inner), e))
    }

    /// The real host path of the object `inner` resolves to, for handing to external tools.
    ///
    /// It is read from `/proc/self/fd`, so it names what the kernel resolved, not a string join.
    /// The object must exist; for a new file, take the host path of its parent.
    pub fn host_path(&self, inner: impl AsRef<Path>) -> Result<PathBuf> {
        let inner = inner.as_ref();
        let fd = self.open_path(inner)?;
        fd_path(fd.as_fd())
            .map_err(|e| Error::io("finding the host path of", self.display_path(inner), e))
    }
}

impl AsFd for RootDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The path of an open descriptor, as the kernel reports it in `/proc/self/fd`.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Lists an open directory (consumed), filling in unknown entry types with `fstatat`.
pub(crate) fn read_dir_fd(fd: OwnedFd, shown: &Path) -> Result<Vec<(OsString, FileType)>> {
    let mut dir = rustix::fs::Dir::new(fd).ctx("listing", shown)?;
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry.ctx("listing", shown)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_owned();
        let mut ty = entry.file_type();
        if ty == FileType::Unknown {
            let dfd = dir.fd().ctx("listing", shown)?;
            let st =
                rustix::fs::statat(dfd, &*name, AtFlags::SYMLINK_NOFOLLOW).ctx("listing", shown)?;
            ty = FileType::from_raw_mode(st.st_mode);
        }
        out.push((name, ty));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A root with hostile symlinks, next to a "host" file the symlinks try to reach.
    fn hostile() -> (tempfile::TempDir, RootDir) {
        let tmp = tempfile::tempdir().unwrap();
        let host_secret = tmp.path().join("secret");
        std::fs::write(&host_secret, "host").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside").unwrap();
        std::fs::write(root.join("secret"), "inside-secret").unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("../../../../../secret", root.join("etc/up")).unwrap();
        symlink(&host_secret, root.join("hostabs")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
        symlink("/etc", root.join("etcdir")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        let r = RootDir::open(&root).unwrap();
        (tmp, r)
    }

    #[test]
    fn os_release_fifo_zero_and_sparse_are_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=x\n").unwrap();
        symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        symlink("/dev/zero", root.join("etc/hostzero")).unwrap();
        std::fs::File::create(root.join("etc/sparse"))
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        let r = RootDir::open(root).unwrap();
        let cap = crate::untrusted::TEXT_CAP;
        assert_eq!(
            r.read_capped_to_string("etc/os-release", cap).unwrap(),
            "ID=x\n"
        );
        let e = r.read_capped("etc/fifo", cap).unwrap_err().to_string();
        assert!(e.contains("etc/fifo") && e.contains("FIFO"), "{e}");
        // The host's /dev/zero is not reachable: the link resolves inside the root.
        assert!(r.read_capped("etc/hostzero", cap).is_err());
        let e = r.read_capped("etc/sparse", cap).unwrap_err().to_string();
        assert!(e.contains("etc/sparse") && e.contains("longer than"), "{e}");
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn symlinks_stay_inside() {
        let (_t, r) = hostile();
        assert_eq!(r.read_to_string("abs").unwrap(), "inside");
        assert_eq!(r.read_to_string("/abs").unwrap(), "inside");
        assert_eq!(r.read_to_string("etc/up").unwrap(), "inside-secret");
        assert_eq!(
            r.read_to_string("../../../../secret").unwrap(),
            "inside-secret"
        );
        assert_eq!(r.read_to_string("etcdir/passwd").unwrap(), "inside");
        // An absolute host path in a symlink is read as a path inside the root, which is missing.
        assert!(r.read("hostabs").unwrap_err().is_not_found());
        assert_eq!(
            r.read("loop1").unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        assert!(r.read("magic").is_err());
    }

    #[test]
    fn host_path_names_the_resolved_object() {
        let (t, r) = hostile();
        let real = std::fs::canonicalize(t.path()).unwrap();
        assert_eq!(r.host_path("abs").unwrap(), real.join("root/etc/passwd"));
        assert_eq!(r.host_path("etc/up").unwrap(), real.join("root/secret"));
        assert_eq!(r.host_path("/").unwrap(), real.join("root"));
    }

    #[test]
    fn metadata_exists_and_links() {
        let (_t, r) = hostile();
        assert!(
            r.symlink_metadata("abs")
                .unwrap()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(r.metadata("abs").unwrap().unwrap().is_file());
        assert!(r.symlink_metadata("missing").unwrap().is_none());
        assert!(r.metadata("dangling").unwrap().is_none());
        assert!(r.exists("abs").unwrap());
        assert!(!r.exists("dangling").unwrap());
        assert!(!r.exists("etc/passwd/x").unwrap());
        assert!(r.exists("loop1").is_err());
        assert_eq!(r.read_link("abs").unwrap(), Path::new("/etc/passwd"));
        assert!(r.read_link("etc/passwd").is_err());
    }

    #[test]
    fn read_dir_lists_sorted_with_types() {
        let (_t, r) = hostile();
        let entries = r.read_dir("/").unwrap();
        let names: Vec<_> = entries.iter().map(|(n, _)| n.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "abs", "dangling", "etc", "etcdir", "hostabs", "loop1", "loop2", "magic", "secret"
            ]
        );
        assert_eq!(entries[0].1, FileType::Symlink);
        assert_eq!(entries[2].1, FileType::Directory);
        assert_eq!(r.read_dir("etcdir").unwrap().len(), 2);
    }

    #[test]
    fn writes_and_dirs_stay_inside() {
        let (t, r) = hostile();
        r.create_dir_all("/etcdir/a/b", 0o750).unwrap();
        let made = t.path().join("root/etc/a/b");
        assert!(made.is_dir());
        assert_eq!(
            std::fs::metadata(&made).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        r.create_dir_all("etc/a/b", 0o755).unwrap(); // existing is fine
        assert!(r.create_dir_all("etc/passwd/x", 0o755).is_err());
        assert!(r.create_dir_all("dangling", 0o755).is_err());

        r.write_atomic("etcdir/a/f", b"data", 0o600).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("root/etc/a/f")).unwrap(),
            b"data"
        );
        // Writing over a symlink replaces the link; the host file it names is untouched.
        r.write_atomic("hostabs", b"evil", 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("secret")).unwrap(),
            "host"
        );
        assert_eq!(r.read_to_string("hostabs").unwrap(), "evil");

        r.symlink("/etc/passwd", "etc/a/l").unwrap();
        assert_eq!(r.read_to_string("etc/a/l").unwrap(), "inside");
        r.remove_file("etc/a/l").unwrap();
        r.remove_file("abs").unwrap();
        assert!(t.path().join("root/etc/passwd").exists());
        r.remove_dir("etc/a/b").unwrap();
        assert!(!made.exists());
    }

    #[test]
    fn sub_root_is_its_own_root() {
        let (_t, r) = hostile();
        let etc = r.open_dir("etcdir").unwrap();
        assert_eq!(etc.read_to_string("passwd").unwrap(), "inside");
        assert!(etc.read("../secret").unwrap_err().is_not_found());
        assert!(etc.path().ends_with("root/etcdir"));
    }
}
