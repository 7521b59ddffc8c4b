//! Entering a running container's namespaces (like `nsenter -a`, without the extra process)
//! and giving a launcher a mount namespace of its own.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::error::{Error, Result};

/// Who a command entered into a container runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The supplementary group ids.
    pub groups: Vec<u32>,
}

/// The namespace a command entered with [`enter`] still has to join itself.
#[derive(Debug)]
pub struct Entered {
    /// The container's cgroup namespace: a forked command joins its control group first and
    /// then this namespace (a session job does); the caller stays outside both.
    pub cgroup_ns: OwnedFd,
}

/// Moves this process into the namespaces (but the cgroup namespace) and root directory of
/// process `pid`.
///
/// Must be called while the process has a single thread (the mount namespace demands it). The
/// process itself stays in its PID namespace; the children it spawns afterwards are inside.
pub fn enter(pid: u32) -> Result<Entered> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let open = |rel: &str| {
        let path = proc_dir.join(rel);
        File::open(&path).map_err(|e| Error::io("opening", &path, e))
    };
    // Open everything first: once in the new mount namespace, /proc/PID may not be reachable.
    let kinds = [
        ("ns/ipc", LinkNameSpaceType::InterProcessCommunication),
        ("ns/uts", LinkNameSpaceType::HostNameAndNISDomainName),
        ("ns/net", LinkNameSpaceType::Network),
        ("ns/pid", LinkNameSpaceType::ProcessID),
        ("ns/mnt", LinkNameSpaceType::Mount),
    ];
    let cgroup_ns = OwnedFd::from(open("ns/cgroup")?);
    let mut fds = Vec::new();
    for (rel, kind) in kinds {
        fds.push((rel, kind, open(rel)?));
    }
    let root = open("root")?;
    for (rel, kind, fd) in &fds {
        // Sharing a namespace we are already in is fine; setns then is a no-op.
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind))
            .map_err(|e| Error::io("entering the namespace", proc_dir.join(rel), e))?;
    }
    rustix::process::fchdir(root.as_fd())
        .map_err(|e| Error::io("entering the root of", proc_dir.join("root"), e))?;
    rustix::process::chroot(".")
        .map_err(|e| Error::io("entering the root of", proc_dir.join("root"), e))?;
    std::env::set_current_dir("/").map_err(|e| Error::io("changing to", "/", e))?;
    Ok(Entered { cgroup_ns })
}

/// Gives this process a mount namespace of its own whose mounts do not propagate back to the
/// host; everything mounted afterwards disappears when the last process in it exits.
pub fn unshare_mount_namespace() -> Result<()> {
    // SAFETY: CLONE_NEWNS only gives this thread its own mount namespace; it does not unshare
    // the file descriptor table, which is what makes unshare unsafe for other callers.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }
        .map_err(|e| Error::io("creating a mount namespace for", "/", e))?;
    crate::mount::make_private("/", true)
}
