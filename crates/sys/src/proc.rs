//! Process helpers: liveness, signals, and finding a process's children (e.g. the nspawn leader).

use crate::error::Invalidity;
use std::path::Path;

use rustix::io::Errno;
use rustix::process::Pid;

pub use rustix::process::Signal;

use crate::error::{Error, IoContext, Result};

/// Whether a process with this PID exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let Some(p) = to_pid(pid) else { return false };
    match rustix::process::test_kill_process(p) {
        Ok(()) | Err(Errno::PERM) => {}
        Err(_) => return false,
    }
    !matches!(read_stat(pid), Some(stat) if stat.state == 'Z')
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: Signal) -> Result<()> {
    let p = to_pid(pid)
        .ok_or_else(|| Error::invalid("sending a signal to", pid_path(pid), Invalidity::BadPid))?;
    rustix::process::kill_process(p, signal).map_err(|e| {
        Error::io(
            format!("sending signal {} to", signal.as_raw()),
            pid_path(pid),
            e,
        )
    })
}

/// Sends the real-time signal `SIGRTMIN + offset` to process `pid` (systemd powers off on
/// SIGRTMIN+4).
pub fn kill_realtime(pid: u32, offset: i32) -> Result<()> {
    let p = to_pid(pid)
        .ok_or_else(|| Error::invalid("sending a signal to", pid_path(pid), Invalidity::BadPid))?;
    // SAFETY: kill(2) has no memory effects.
    let r = unsafe { libc::kill(p.as_raw_nonzero().get(), libc::SIGRTMIN() + offset) };
    if r != 0 {
        return Err(Error::io(
            format!("sending signal SIGRTMIN+{offset} to"),
            pid_path(pid),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// The PIDs whose parent is `pid`, in ascending order.
///
/// Reads `/proc/PID/task/*/children` where the kernel has it, else scans `/proc/*/stat`.
pub fn children_of(pid: u32) -> Result<Vec<u32>> {
    let tasks = pid_path(pid).join("task");
    let mut out = Vec::new();
    let mut have_children_files = false;
    if let Ok(entries) = std::fs::read_dir(&tasks) {
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("children")) {
                have_children_files = true;
                out.extend(
                    text.split_whitespace()
                        .filter_map(|s| s.parse::<u32>().ok()),
                );
            }
        }
    } else if !pid_path(pid).exists() {
        return Err(Error::invalid(
            "listing the children of",
            pid_path(pid),
            Invalidity::NoSuchProcess,
        ));
    }
    if !have_children_files {
        out = scan_children(pid)?;
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The parent PID of `pid`, if the process exists.
pub fn parent_of(pid: u32) -> Option<u32> {
    read_stat(pid).map(|s| s.ppid)
}

/// The PIDs of the processes whose root directory is `dir` itself (the same inode on the same
/// device): what still runs in a directory that is about to be deleted.
pub fn rooted_at(dir: &Path) -> Result<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::metadata(dir).ctx("reading", dir)?;
    let proc = Path::new("/proc");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(proc).ctx("listing", proc)?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::metadata(pid_path(pid).join("root"))
            .is_ok_and(|m| m.dev() == target.dev() && m.ino() == target.ino())
        {
            out.push(pid);
        }
    }
    Ok(out)
}

/// The command name of a process (`/proc/PID/comm`).
pub fn name_of(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(pid_path(pid).join("comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// The PID of `pid` in its own (innermost) PID namespace: 1 for a container's init.
pub fn pid_in_namespace(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(pid_path(pid).join("status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The inode of the PID namespace `pid` is in (`/proc/PID/ns/pid`): readable for root and for
/// processes of the caller's own user.
pub fn pid_namespace(pid: u32) -> Option<u64> {
    let link = std::fs::read_link(pid_path(pid).join("ns/pid")).ok()?;
    link.to_str()?
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn scan_children(parent: u32) -> Result<Vec<u32>> {
    let proc = Path::new("/proc");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(proc).ctx("listing", proc)? {
        let entry = entry.ctx("listing", proc)?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if read_stat(pid).is_some_and(|s| s.ppid == parent) {
            out.push(pid);
        }
    }
    Ok(out)
}

struct Stat {
    state: char,
    ppid: u32,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(pid_path(pid).join("stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid ...`, where comm may contain spaces and `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

fn pid_path(pid: u32) -> std::path::PathBuf {
    Path::new("/proc").join(pid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = parse_stat("42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((s.state, s.ppid), ('S', 7));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn finds_own_children_and_liveness() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(pid_alive(child.id()));
        assert!(children_of(me).unwrap().contains(&child.id()));
        assert_eq!(parent_of(child.id()), Some(me));
        kill(child.id(), Signal::TERM).unwrap();
        child.wait().unwrap();
        assert!(!pid_alive(child.id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }

    #[test]
    fn names_roots_and_namespace_pids() {
        let me = std::process::id();
        assert!(name_of(me).is_some_and(|n| !n.is_empty()));
        assert_eq!(pid_in_namespace(me).map(|p| p > 0), Some(true));
        assert!(rooted_at(Path::new("/")).unwrap().contains(&me));
        let dir = tempfile::tempdir().unwrap();
        assert!(rooted_at(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_alive(pid) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
    }
}
