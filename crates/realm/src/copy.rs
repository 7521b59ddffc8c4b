//! Assembling a realm directory from parts (a config, a home and a root) in a staging
//! directory: what `clone`, `snapshot` and `snapshot restore` share. A btrfs root is a snapshot
//! (read-only inside a realm snapshot); an overlay root is a copy of its upper layer and the same
//! `lower` link, so it stays on the image version it was made on.

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::btrfs;

use crate::Result;
use crate::store::{RealmStore, RootKind, chown, mkdir};

/// Where the parts of a realm (or of a snapshot of one) are.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub config: PathBuf,
    pub home: PathBuf,
    pub root: Root,
}

/// A realm's root: a btrfs subvolume, or an overlay's upper layer on an image.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    Subvolume(PathBuf),
    Overlay {
        upper: PathBuf,
        /// The `lower` link's target (`/storage/appimg/IMG.appimg[.prev|.old-N]`).
        lower: PathBuf,
    },
}

impl Parts {
    /// The parts of realm `name`.
    pub fn of_realm(store: &RealmStore, name: &str) -> Result<Parts> {
        let dir = store.realm_dir(name);
        let root = match store.root_kind(name) {
            RootKind::Snapshot => Root::Subvolume(dir.join("rootfs")),
            RootKind::Overlay => Root::Overlay {
                upper: dir.join("overlay/upper"),
                lower: read_link(&dir.join("lower"))?,
            },
        };
        Ok(Parts {
            config: dir.join("config"),
            home: dir.join("home"),
            root,
        })
    }

    /// The parts kept in a snapshot directory (see [`Parts::write_to`]).
    pub fn of_snapshot(dir: &Path) -> Result<Parts> {
        let root = if dir.join("rootfs").exists() {
            Root::Subvolume(dir.join("rootfs"))
        } else {
            Root::Overlay {
                upper: dir.join("upper"),
                lower: read_link(&dir.join("lower"))?,
            }
        };
        Ok(Parts {
            config: dir.join("config"),
            home: dir.join("home"),
            root,
        })
    }

    /// Copies the parts into `dest` as a realm directory (`config`, `home`, and `rootfs` or
    /// `overlay/{upper,work}` + `lower` + `rootfs`). The lower image must still exist.
    pub fn assemble_realm(&self, store: &RealmStore, dest: &Path) -> Result<()> {
        self.copy_common(dest, store.owner())?;
        match &self.root {
            Root::Subvolume(src) => btrfs::snapshot(src, dest.join("rootfs"), false)?,
            Root::Overlay { upper, lower } => {
                let image = store.root().join(lower.strip_prefix("/").unwrap_or(lower));
                if !image.is_dir() {
                    return Err(realms_sys::Error::io(
                        "finding the image version the realm was made on,",
                        image,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    )
                    .into());
                }
                mkdir(&dest.join("rootfs"))?;
                mkdir(&dest.join("overlay"))?;
                realms_image::copy_tree(upper, &dest.join("overlay/upper"))?;
                mkdir(&dest.join("overlay/work"))?;
                if image.join("image.raw").exists() {
                    mkdir(&dest.join("image"))?;
                }
                symlink(lower, &dest.join("lower"))?;
            }
        }
        Ok(())
    }

    /// Copies the parts into `dest` as a snapshot (`config`, `home`, and a read-only `rootfs`
    /// or `upper` + `lower`); a missing home is made for `owner`.
    pub fn write_snapshot(&self, dest: &Path, owner: u32) -> Result<()> {
        self.copy_common(dest, owner)?;
        match &self.root {
            Root::Subvolume(src) => btrfs::snapshot(src, dest.join("rootfs"), true)?,
            Root::Overlay { upper, lower } => {
                realms_image::copy_tree(upper, &dest.join("upper"))?;
                symlink(lower, &dest.join("lower"))?;
            }
        }
        Ok(())
    }

    fn copy_common(&self, dest: &Path, owner: u32) -> Result<()> {
        mkdir(dest)?;
        fs::copy(&self.config, dest.join("config")).ctx("copying", &self.config)?;
        if self.home.is_dir() {
            realms_image::copy_tree(&self.home, &dest.join("home"))?;
        } else {
            mkdir(&dest.join("home"))?;
            chown(&dest.join("home"), owner)?;
        }
        Ok(())
    }
}

fn read_link(link: &Path) -> Result<PathBuf> {
    Ok(fs::read_link(link).ctx("reading the symlink", link)?)
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    Ok(std::os::unix::fs::symlink(target, link).ctx("creating the symlink", link)?)
}

/// A staging directory deleted on drop unless it was committed (renamed into place).
#[derive(Debug)]
pub(crate) struct Staging(Option<PathBuf>);

impl Staging {
    pub fn new(path: PathBuf) -> Staging {
        Staging(Some(path))
    }

    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("used only until committed")
    }

    /// The work was renamed into place: nothing to delete.
    pub fn committed(mut self) {
        self.0 = None;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(err) = crate::store::delete_realm_tree(&path)
        {
            tracing::warn!("could not remove {}: {err}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_realm_round_trips_through_a_snapshot() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        fs::create_dir_all(root.path().join("storage/appimg/base.appimg.old-1/usr")).unwrap();
        let realm = store.realm_dir("r");
        fs::create_dir_all(realm.join("overlay/upper/etc")).unwrap();
        fs::create_dir_all(realm.join("home")).unwrap();
        fs::write(realm.join("overlay/upper/etc/changed"), "mine").unwrap();
        fs::write(realm.join("home/file"), "home").unwrap();
        fs::write(realm.join("config"), "use-gpu = true\n").unwrap();
        std::os::unix::fs::symlink("/storage/appimg/base.appimg.old-1", realm.join("lower"))
            .unwrap();

        let snap = root.path().join("snap");
        Parts::of_realm(&store, "r")
            .unwrap()
            .write_snapshot(&snap, store.owner())
            .unwrap();
        assert_eq!(
            fs::read_to_string(snap.join("upper/etc/changed")).unwrap(),
            "mine"
        );
        let back = root.path().join("back");
        Parts::of_snapshot(&snap)
            .unwrap()
            .assemble_realm(&store, &back)
            .unwrap();
        for (file, text) in [
            ("overlay/upper/etc/changed", "mine"),
            ("home/file", "home"),
            ("config", "use-gpu = true\n"),
        ] {
            assert_eq!(fs::read_to_string(back.join(file)).unwrap(), text, "{file}");
        }
        assert!(back.join("overlay/work").is_dir() && back.join("rootfs").is_dir());
        assert_eq!(
            fs::read_link(back.join("lower")).unwrap(),
            Path::new("/storage/appimg/base.appimg.old-1")
        );

        // A snapshot whose image version is gone cannot be restored, and says which.
        fs::remove_dir_all(root.path().join("storage/appimg/base.appimg.old-1")).unwrap();
        let err = Parts::of_snapshot(&snap)
            .unwrap()
            .assemble_realm(&store, &root.path().join("again"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("base.appimg.old-1"), "{err}");
    }
}
