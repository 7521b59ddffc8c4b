//! Entering a running container's namespaces (like `nsenter -a`, without the extra process)
//! and giving a launcher a mount namespace of its own.

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

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

/// Moves this process into the namespaces and root directory of process `pid`.
///
/// Must be called while the process has a single thread (the mount namespace demands it). The
/// process itself stays in its PID namespace; the children it spawns afterwards are inside.
pub fn enter(pid: u32) -> Result<()> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let open = |rel: &str| {
        let path = proc_dir.join(rel);
        File::open(&path).map_err(|e| Error::io("opening", &path, e))
    };
    // Open everything first: once in the new mount namespace, /proc/PID may not be reachable.
    let kinds = [
        ("ns/cgroup", LinkNameSpaceType::ControlGroup),
        ("ns/ipc", LinkNameSpaceType::InterProcessCommunication),
        ("ns/uts", LinkNameSpaceType::HostNameAndNISDomainName),
        ("ns/net", LinkNameSpaceType::Network),
        ("ns/pid", LinkNameSpaceType::ProcessID),
        ("ns/mnt", LinkNameSpaceType::Mount),
    ];
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
    Ok(())
}

/// Runs a command (after [`enter`]) as `creds`, in `cwd`, with exactly `env`; stdio is
/// inherited. Returns its exit status whatever it is.
pub fn run_as(
    argv: &[OsString],
    env: &[(OsString, OsString)],
    cwd: &Path,
    creds: &Credentials,
) -> Result<ExitStatus> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::invalid(
            "running a command in",
            cwd,
            "no command given",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd);
    let (uid, gid, groups) = (creds.uid, creds.gid, creds.groups.clone());
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // No allocation here (the child of a multi-threaded fork): use the Vec made before.
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let display = program.to_string_lossy().into_owned();
    cmd.status().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::invalid(
                "running",
                Path::new(&display),
                "no such command in the container",
            )
        } else {
            Error::io("running", Path::new(&display), e)
        }
    })
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
