//! Shared fixtures: root check, unique names, a scratch directory guard, a btrfs filesystem on a loop file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use realms_sys::cmd::Cmd;
use realms_sys::loopdev::{LoopDevice, LoopOptions};
use realms_sys::mount::{self, MountFlags, MountGuard};

/// Fails (never skips) when not root.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "privileged tests need root: run `cargo test -p realms-sys --features privileged-tests` as root"
    );
}

/// A name unique to this process and call, so parallel test threads never collide.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory under /tmp that is unmounted (everything below it) and removed on drop.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        require_root();
        let path = std::env::temp_dir().join(unique(&format!("realms-sys-{name}")));
        std::fs::create_dir_all(&path).unwrap();
        Scratch {
            path: std::fs::canonicalize(&path).unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates directory `rel` below the scratch dir and returns its path.
    pub fn dir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Creates a sparse file of `size` bytes below the scratch dir.
    pub fn sparse_file(&self, rel: &str, size: u64) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::File::create(&p).unwrap().set_len(size).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = mount::umount_recursive(&self.path) {
            eprintln!("cleanup: {e:#?}");
        }
        if let Err(e) = realms_sys::fs::remove_dir_all_one_fs(&self.path) {
            eprintln!("cleanup: {e:#?}");
        }
    }
}

/// A fresh 256 MiB btrfs on a loop file, mounted; unmounted and detached on drop.
pub struct Btrfs {
    // Fields drop in order: unmount, then detach, then remove the scratch dir.
    pub mnt: Option<MountGuard>,
    pub dev: Option<LoopDevice>,
    _scratch: Scratch,
}

impl Btrfs {
    pub fn new(name: &str) -> Btrfs {
        let scratch = Scratch::new(name);
        let img = scratch.sparse_file("btrfs.img", 256 << 20);
        Cmd::new("mkfs.btrfs").arg("-q").arg(&img).run().unwrap();
        let dev = LoopDevice::attach(&img, &LoopOptions::default()).unwrap();
        let target = scratch.dir("mnt");
        let mnt = mount::mount_fs(dev.path(), &target, "btrfs", MountFlags::empty(), "").unwrap();
        Btrfs {
            mnt: Some(mnt),
            dev: Some(dev),
            _scratch: scratch,
        }
    }

    pub fn root(&self) -> &Path {
        self.mnt.as_ref().unwrap().target()
    }

    /// Unmounts and detaches explicitly, checking both succeed.
    pub fn finish(mut self) {
        self.mnt.take().unwrap().unmount().unwrap();
        self.dev.take().unwrap().detach().unwrap();
    }
}

/// Polls `cond` for up to five seconds.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The errno of a std I/O result's error.
pub fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    r.unwrap_err().raw_os_error().unwrap()
}
