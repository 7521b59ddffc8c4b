//! Store locks: `flock` on a lock file that records the holder's PID, released on drop.
//!
//! Never delete a lock file: a process waiting on the old inode would then hold a lock nobody
//! else sees. [`StoreLock`] re-checks after acquiring that the file it locked is still the one
//! at the path, and retries if it is not.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

/// A held lock on a store; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    path: PathBuf,
    exclusive: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    Block,
    NoWait,
}

/// What taking a lock reports to its caller, who decides how (or whether) to show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockEvent<'a> {
    /// Someone else holds the lock; the caller is now waiting for it (reported once per lock).
    Waiting {
        /// The lock file.
        path: &'a Path,
        /// The PID recorded by the exclusive holder, when that process is alive.
        holder: Option<u32>,
    },
}

impl std::fmt::Display for LockEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockEvent::Waiting {
                path,
                holder: Some(pid),
            } => write!(
                f,
                "waiting for lock on {} held by PID {pid}",
                path.display()
            ),
            LockEvent::Waiting { path, holder: None } => {
                write!(f, "waiting for lock on {}", path.display())
            }
        }
    }
}

/// Where lock events go.
pub type OnLockEvent<'a> = &'a mut dyn FnMut(LockEvent<'_>);

/// The reporter of [`StoreLock::acquire`] and [`StoreLock::acquire_shared`]: a warning in the log.
fn log_event(event: LockEvent<'_>) {
    tracing::warn!("{event}");
}

impl StoreLock {
    /// Takes the exclusive lock on `path` (creating the file), waiting for other holders.
    ///
    /// When it has to wait it logs a warning `waiting for lock on PATH held by PID N`; use
    /// [`StoreLock::acquire_with`] to report that yourself.
    pub fn acquire(path: impl AsRef<Path>) -> Result<StoreLock> {
        Self::acquire_with(path, &mut log_event)
    }

    /// Takes the exclusive lock on `path` (creating the file), waiting for other holders;
    /// `on_event` hears once that it waits, and for whom.
    pub fn acquire_with(path: impl AsRef<Path>, on_event: OnLockEvent<'_>) -> Result<StoreLock> {
        Self::lock(path.as_ref(), true, Wait::Block, on_event)
            .map(|l| l.expect("blocking lock always returns one"))
    }

    /// Takes a shared lock on `path` (creating the file), waiting for an exclusive holder
    /// (logging a warning when it has to wait).
    pub fn acquire_shared(path: impl AsRef<Path>) -> Result<StoreLock> {
        Self::acquire_shared_with(path, &mut log_event)
    }

    /// Takes a shared lock on `path` (creating the file), waiting for an exclusive holder;
    /// `on_event` hears once that it waits, and for whom.
    pub fn acquire_shared_with(
        path: impl AsRef<Path>,
        on_event: OnLockEvent<'_>,
    ) -> Result<StoreLock> {
        Self::lock(path.as_ref(), false, Wait::Block, on_event)
            .map(|l| l.expect("blocking lock always returns one"))
    }

    /// Takes the exclusive lock if it is free right now; `None` if someone else holds it.
    pub fn try_acquire(path: impl AsRef<Path>) -> Result<Option<StoreLock>> {
        Self::lock(path.as_ref(), true, Wait::NoWait, &mut |_| {})
    }

    /// Takes a shared lock if no exclusive holder has it right now.
    pub fn try_acquire_shared(path: impl AsRef<Path>) -> Result<Option<StoreLock>> {
        Self::lock(path.as_ref(), false, Wait::NoWait, &mut |_| {})
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the exclusive lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    fn lock(
        path: &Path,
        exclusive: bool,
        wait: Wait,
        on_event: OnLockEvent<'_>,
    ) -> Result<Option<StoreLock>> {
        let (try_op, block_op) = if exclusive {
            (
                FlockOperation::NonBlockingLockExclusive,
                FlockOperation::LockExclusive,
            )
        } else {
            (
                FlockOperation::NonBlockingLockShared,
                FlockOperation::LockShared,
            )
        };
        let mut announced = false;
        loop {
            let fd = rustix::fs::open(
                path,
                OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )
            .ctx("opening lock file", path)?;
            let mut file = File::from(fd);
            match rustix::fs::flock(&file, try_op) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) if wait == Wait::NoWait => return Ok(None),
                Err(Errno::WOULDBLOCK) => {
                    if !announced {
                        on_event(LockEvent::Waiting {
                            path,
                            holder: holder(&mut file),
                        });
                        announced = true;
                    }
                    flock_retrying(&file, block_op).ctx("waiting for lock", path)?;
                }
                Err(e) => return Err(Error::io("locking", path, e)),
            }
            if !still_at_path(&file, path)? {
                continue;
            }
            if exclusive {
                write_pid(&mut file).ctx("writing the holder's pid to lock file", path)?;
            }
            tracing::debug!(path = %path.display(), exclusive, "lock acquired");
            return Ok(Some(StoreLock {
                file,
                path: path.to_owned(),
                exclusive,
            }));
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if self.exclusive {
            // Clear our PID so nobody is told to wait for a process that no longer holds the lock.
            if let Err(e) = self.file.set_len(0) {
                tracing::warn!(path = %self.path.display(), error = %e, "clearing lock file");
            }
        }
        // Closing the file (the only reference to this open file description) releases the flock.
    }
}

fn flock_retrying(file: &File, op: FlockOperation) -> rustix::io::Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Err(Errno::INTR) => continue,
            other => return other,
        }
    }
}

/// The live process whose PID the lock file records, if any.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|&pid| crate::proc::pid_alive(pid))
}

fn still_at_path(file: &File, path: &Path) -> Result<bool> {
    let ours = file.metadata().ctx("checking lock file", path)?;
    match std::fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("checking lock file", path, e)),
    }
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn exclusive_lock_records_pid_and_blocks_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = StoreLock::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        assert!(StoreLock::try_acquire(&path).unwrap().is_none());
        assert!(StoreLock::try_acquire_shared(&path).unwrap().is_none());

        let (tx, rx) = mpsc::channel();
        let p2 = path.clone();
        let waiter = std::thread::spawn(move || {
            let l = StoreLock::acquire(&p2).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "second lock taken while held"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("second lock never acquired");
        waiter.join().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn shared_locks_coexist_and_exclude_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let a = StoreLock::acquire_shared(&path).unwrap();
        let b = StoreLock::try_acquire_shared(&path)
            .unwrap()
            .expect("second shared lock");
        assert!(!a.is_exclusive());
        assert!(StoreLock::try_acquire(&path).unwrap().is_none());
        drop((a, b));
        let c = StoreLock::try_acquire(&path)
            .unwrap()
            .expect("exclusive after shared released");
        assert_eq!(c.path(), path);
    }

    #[test]
    fn contention_across_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // `flock` the same file from a child process for a short while.
        let mut child = std::process::Command::new("flock")
            .arg(&path)
            .args(["-c", "sleep 0.5"])
            .spawn()
            .expect("flock(1) from util-linux");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while StoreLock::try_acquire(&path).unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "child never took the lock"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = std::time::Instant::now();
        let lock = StoreLock::acquire(&path).unwrap();
        assert!(start.elapsed() > Duration::from_millis(50));
        assert!(lock.is_exclusive());
        child.wait().unwrap();
    }

    #[test]
    fn deleted_lock_file_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let l = StoreLock::acquire(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        // A new lock on the path is a different inode, so it is free; that is why we never delete.
        let l2 = StoreLock::try_acquire(&path).unwrap().expect("fresh file");
        drop((l, l2));
    }

    #[test]
    fn waiting_is_reported_to_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = StoreLock::acquire(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                StoreLock::acquire_with(&path, &mut |e| tx.send(e.to_string()).unwrap())
                    .map(|l| l.is_exclusive())
                    .ok()
            })
        };
        // The waiter reports before it blocks; only then is the lock released.
        let event = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(true));
        let pid = std::process::id();
        assert_eq!(
            event,
            format!("waiting for lock on {} held by PID {pid}", path.display())
        );
        assert!(rx.try_recv().is_err(), "reported once");
    }
}
