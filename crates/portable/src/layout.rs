//! Where portable services live on a host: the attach directories, the image search path, the
//! profile directories and the unit search paths, all relative to a root (`--root`, default `/`).

use realms_sys::IoContext;
use std::path::{Path, PathBuf};

use realms_sys::root::RootDir;

use crate::error::{Error, ImageProblem, Result};

/// Unit files attached persistently.
pub const ATTACHED_PERSISTENT: &str = "/etc/systemd/system.attached";
/// Unit files attached until the next reboot (`--runtime`).
pub const ATTACHED_RUNTIME: &str = "/run/systemd/system.attached";
/// Where attach links (or copies) images from outside the search path, persistently.
pub const PORTABLES_PERSISTENT: &str = "/etc/portables";
/// ... and with `--runtime`.
pub const PORTABLES_RUNTIME: &str = "/run/portables";

/// The portable image search path, in order (the first hit of a name wins).
pub const IMAGE_SEARCH_PATH: [&str; 5] = [
    "/etc/portables",
    "/run/portables",
    "/var/lib/portables",
    "/usr/local/lib/portables",
    "/usr/lib/portables",
];

/// Where profiles are looked up, in order: `DIR/NAME/<unit type>.conf`.
pub const PROFILE_DIRS: [&str; 4] = [
    "/etc/systemd/portable/profile",
    "/run/systemd/portable/profile",
    "/usr/local/lib/systemd/portable/profile",
    "/usr/lib/systemd/portable/profile",
];

/// systemd's system unit search path (with the split-usr `/lib` directory), in priority order.
/// Inside an image it is where unit files are found; on the host it decides whether a unit
/// "exists on the host already".
pub const UNIT_SEARCH_PATH: [&str; 13] = [
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// The host (or `--root` directory) portable services are attached to.
#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    dir: RootDir,
}

impl Host {
    /// Opens `root` (`/` for the running system).
    pub fn open(root: impl AsRef<Path>) -> Result<Host> {
        let root = root.as_ref();
        let dir = RootDir::open(root)?;
        Ok(Host {
            root: root.to_owned(),
            dir,
        })
    }

    /// The root directory as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the running system (`/`), so systemd can be asked about units.
    pub fn is_live(&self) -> bool {
        std::fs::canonicalize(&self.root).is_ok_and(|p| p == Path::new("/"))
    }

    /// The root as a directory handle: every path given to it resolves inside the root.
    pub fn dir(&self) -> &RootDir {
        &self.dir
    }

    /// The real host path of `inner` (which must exist), for mounting and external tools.
    pub fn host_path(&self, inner: &Path) -> Result<PathBuf> {
        Ok(self.dir.host_path(inner)?)
    }

    /// Whether `inner` exists (a dangling symlink does not).
    pub fn exists(&self, inner: impl AsRef<Path>) -> bool {
        self.dir.exists(inner).unwrap_or(false)
    }

    /// The canonical in-root form of an existing `inner` path (symlinks resolved inside the root).
    pub fn canonical(&self, inner: &Path) -> Result<PathBuf> {
        let host = self.dir.host_path(inner)?;
        let root = std::fs::canonicalize(&self.root).ctx("resolving", &self.root)?;
        let rel = host
            .strip_prefix(&root)
            .map_err(|_| Error::image(inner, ImageProblem::OutsideRoot))?;
        Ok(Path::new("/").join(rel))
    }
}

/// The attach directory for persistent or runtime attachment.
pub fn attached_dir(runtime: bool) -> &'static str {
    if runtime {
        ATTACHED_RUNTIME
    } else {
        ATTACHED_PERSISTENT
    }
}

/// `/etc/portables/<file name>` (or `/run/portables/...`): where an image gets linked or copied.
pub fn image_link_path(image: &Path, runtime: bool) -> PathBuf {
    let dir = if runtime {
        PORTABLES_RUNTIME
    } else {
        PORTABLES_PERSISTENT
    };
    let name = image.file_name().unwrap_or(image.as_os_str());
    Path::new(dir).join(name)
}

/// Whether `path` is directly inside one of the image search path directories.
pub fn in_search_path(path: &Path) -> bool {
    path.parent()
        .is_some_and(|dir| IMAGE_SEARCH_PATH.iter().any(|s| dir == Path::new(s)))
}
