//! Per-test scratch space in the btrfs pool: unique names, removed on drop even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixtures::{delete_subvolume_tree, pool};
use crate::run::run;

/// A subvolume in the pool that belongs to one test; it and any mounts below it go on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

/// A name no other test thread or process uses: `LABEL-PID-N`.
pub fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Scratch {
    /// A writable btrfs snapshot of `src` (a subvolume in the pool).
    pub fn snapshot(src: &Path, label: &str) -> Scratch {
        let path = scratch_root().join(unique(label));
        run(Command::new("btrfs")
            .args(["subvolume", "snapshot"])
            .arg(src)
            .arg(&path));
        Scratch { path }
    }

    /// An empty subvolume.
    pub fn empty(label: &str) -> Scratch {
        let path = scratch_root().join(unique(label));
        run(Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&path));
        Scratch { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn scratch_root() -> PathBuf {
    let dir = pool().join("scratch");
    std::fs::create_dir_all(&dir).expect("create the pool's scratch directory");
    dir
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(&self.path);
        delete_subvolume_tree(&self.path);
    }
}

/// Unmounts everything mounted at or below `path`, deepest first (lazily if busy).
pub fn unmount_below(path: &Path) {
    let Ok(canon) = path.canonicalize() else {
        return;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut targets: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| Path::new(m).starts_with(&canon))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let ok = Command::new("umount")
            .arg(&t)
            .output()
            .map(|o| o.status.success());
        if !matches!(ok, Ok(true)) {
            let _ = Command::new("umount").arg("-l").arg(&t).output();
        }
    }
}
