//! Bounds on what a build may write: mkfs.erofs (1.5) writes every hole of a sparse file out, so
//! a 272-byte tarball holding a 1 TiB sparse file would fill the disk. The tree's apparent size
//! is checked against the space free for the store before the filesystem is made.

use realms_sys::IoContext;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The apparent bytes of the regular files below `tree` (symlinks not followed, one
/// filesystem), and the largest file.
pub fn apparent_size(tree: &Path) -> Result<(u64, Option<(PathBuf, u64)>)> {
    let dev = fs::symlink_metadata(tree).ctx("inspecting", tree)?.dev();
    let mut total: u64 = 0;
    let mut largest: Option<(PathBuf, u64)> = None;
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = fs::read_dir(&dir).ctx("reading", &dir)?;
        for entry in entries {
            let entry = entry.ctx("reading", &dir)?;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() && meta.dev() == dev {
                dirs.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
                if largest.as_ref().is_none_or(|(_, l)| meta.len() > *l) {
                    largest = Some((entry.path(), meta.len()));
                }
            }
        }
    }
    Ok((total, largest))
}

/// Refuses to build image `name` in `format` from `tree` when its files, holes written out,
/// would not fit in the space free at `store_dir`.
pub fn check_fits(name: &str, format: &str, tree: &Path, store_dir: &Path) -> Result<()> {
    let (total, largest) = apparent_size(tree)?;
    let free = rustix::fs::statvfs(store_dir)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .ctx("inspecting the filesystem of", store_dir)?;
    if total > free {
        let (path, size) = largest.unwrap_or_default();
        return Err(Error::BuildTooBig {
            name: name.to_string(),
            format: format.to_string(),
            total,
            free,
            largest: path,
            largest_size: size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erofs_build_of_a_1tib_sparse_file_fills_the_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("usr")).unwrap();
        fs::write(tree.join("usr/small"), "x").unwrap();
        fs::File::create(tree.join("usr/sparse"))
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        let started = std::time::Instant::now();
        let e = check_fits("img", "erofs", &tree, tmp.path())
            .unwrap_err()
            .to_string();
        assert!(started.elapsed().as_secs() < 5);
        assert!(
            e.contains("'img'") && e.contains("usr/sparse") && e.contains("squashfs"),
            "{e}"
        );
        fs::remove_file(tree.join("usr/sparse")).unwrap();
        check_fits("img", "erofs", &tree, tmp.path()).unwrap();
    }
}
