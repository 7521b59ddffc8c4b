//! Portable images: finding one by name in the search path or by path, telling its kind, and
//! listing every image the search path holds.

use realms_sys::IoContext;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::layout::{Host, IMAGE_SEARCH_PATH};
use crate::name::{image_name_of, is_valid_image_name};

/// What an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageKind {
    /// A plain directory tree.
    Directory,
    /// A btrfs subvolume.
    Subvolume,
    /// A `.raw` disk image file.
    Raw,
    /// A block device.
    Block,
}

impl ImageKind {
    /// The name portablectl shows in `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Directory => "directory",
            ImageKind::Subvolume => "subvolume",
            ImageKind::Raw => "raw",
            ImageKind::Block => "block",
        }
    }

    /// Whether the image is a directory tree (read in place, `RootDirectory=`).
    pub fn is_tree(self) -> bool {
        matches!(self, ImageKind::Directory | ImageKind::Subvolume)
    }
}

/// One image: its name, in-root path and kind.
#[derive(Debug, Clone, Serialize)]
pub struct Image {
    /// The image name (the file name without `.raw`).
    pub name: String,
    /// The in-root path of the image.
    pub path: PathBuf,
    /// What the image is.
    pub kind: ImageKind,
}

/// Makes `arg` an absolute, normalized path (relative to the working directory), lexically.
fn absolute(arg: &str) -> Result<PathBuf> {
    let p = Path::new(arg);
    let joined = if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .ctx("finding the working directory for", p)?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Ok(out)
}

/// How an image argument is passed on: a bare name stays a name (looked up in the search path);
/// anything else is made an absolute in-root path with symlinks resolved, as portablectl does on
/// its side. With `permit_missing`, a path that does not exist is kept as written (detach works
/// for images already deleted).
pub fn normalize_arg(host: &Host, arg: &str, permit_missing: bool) -> Result<String> {
    if is_valid_image_name(arg) {
        return Ok(arg.to_owned());
    }
    let mut abs = absolute(arg)?;
    // A host path into the --root directory is taken as the in-root path it names.
    if let Ok(root) = std::fs::canonicalize(host.root())
        && root != Path::new("/")
        && let Ok(rel) = abs.strip_prefix(&root)
    {
        abs = Path::new("/").join(rel);
    }
    match host.canonical(&abs) {
        Ok(p) => Ok(p.to_string_lossy().into_owned()),
        Err(e) if permit_missing && e.is_not_found() => Ok(abs.to_string_lossy().into_owned()),
        Err(e) if e.is_not_found() => Err(Error::NoSuchPath(arg.to_owned())),
        Err(e) => Err(e),
    }
}

/// The kind of the object at in-root `path` (symlinks followed inside the root).
fn kind_at(host: &Host, path: &Path) -> Result<Option<ImageKind>> {
    let Some(meta) = host.dir().metadata(path)? else {
        return Ok(None);
    };
    let ft = meta.file_type();
    Ok(if ft.is_dir() {
        let real = host.host_path(path)?;
        if realms_sys::btrfs::is_subvolume(&real).unwrap_or(false) {
            Some(ImageKind::Subvolume)
        } else {
            Some(ImageKind::Directory)
        }
    } else if ft.is_file() && path.extension().is_some_and(|e| e == "raw") {
        Some(ImageKind::Raw)
    } else if ft.is_block_device() {
        Some(ImageKind::Block)
    } else {
        None
    })
}

impl Image {
    /// Finds an image by name in the search path, or opens the image at an in-root path.
    pub fn find(host: &Host, name_or_path: &str) -> Result<Image> {
        if is_valid_image_name(name_or_path) {
            return Image::find_by_name(host, name_or_path)?
                .ok_or_else(|| Error::NoSuchImage(name_or_path.to_owned()));
        }
        let path = Path::new(name_or_path);
        if !path.is_absolute() {
            return Err(Error::BadImageName(name_or_path.to_owned()));
        }
        if host.dir().symlink_metadata(path)?.is_none() {
            return Err(Error::io(
                "opening image",
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let kind =
            kind_at(host, path)?.ok_or_else(|| Error::BadImageType(name_or_path.to_owned()))?;
        Ok(Image {
            name: image_name_of(path),
            path: path.to_owned(),
            kind,
        })
    }

    /// Looks `name` up in the search path: `DIR/NAME` (a tree or block device) or `DIR/NAME.raw`.
    pub fn find_by_name(host: &Host, name: &str) -> Result<Option<Image>> {
        for dir in IMAGE_SEARCH_PATH {
            for (entry, raw) in [(name.to_owned(), false), (format!("{name}.raw"), true)] {
                let path = Path::new(dir).join(&entry);
                match kind_at(host, &path)? {
                    Some(kind) if raw == (kind == ImageKind::Raw) => {
                        return Ok(Some(Image {
                            name: name.to_owned(),
                            path,
                            kind,
                        }));
                    }
                    _ => {}
                }
            }
        }
        Ok(None)
    }

    /// Every image in the search path, by name (the first of a name wins).
    pub fn discover(host: &Host) -> Result<Vec<Image>> {
        let mut found = BTreeMap::new();
        for dir in IMAGE_SEARCH_PATH {
            let entries = match host.dir().read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for (entry, _) in entries {
                let entry = entry.to_string_lossy().into_owned();
                let path = Path::new(dir).join(&entry);
                let Some(kind) = kind_at(host, &path)? else {
                    continue;
                };
                let name = image_name_of(&path);
                if !is_valid_image_name(&name) || found.contains_key(&name) {
                    continue;
                }
                found.insert(name.clone(), Image { name, path, kind });
            }
        }
        Ok(found.into_values().collect())
    }

    /// Whether the image is a vendor image (below `/usr`), which is never changed.
    pub fn is_vendor(&self) -> bool {
        self.path.starts_with("/usr")
    }

    /// Whether the image is marked read-only (subvolume flag, immutable directory, raw file
    /// without write bits).
    pub fn read_only(&self, host: &Host) -> bool {
        let Ok(real) = host.host_path(&self.path) else {
            return false;
        };
        match self.kind {
            ImageKind::Subvolume => realms_sys::btrfs::is_readonly(&real).unwrap_or(false),
            ImageKind::Directory => realms_sys::fs::is_immutable(&real).unwrap_or(false),
            ImageKind::Raw | ImageKind::Block => std::fs::metadata(&real)
                .map(|m| m.mode() & 0o222 == 0)
                .unwrap_or(false),
        }
    }
}
