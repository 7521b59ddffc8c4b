//! Commands run through `session` (exit status, a pty) and control groups that own a process
//! tree even after its parent is gone.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use realms_sys::cgroup::Cgroup;
use realms_sys::ns::Credentials;
use realms_sys::session::{self, Job, Pty};

fn job(script: &str) -> Job {
    Job {
        program: PathBuf::from("/bin/sh"),
        argv: vec!["sh".into(), "-c".into(), OsString::from(script)],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: PathBuf::from("/"),
        creds: Credentials {
            uid: 0,
            gid: 0,
            groups: vec![0],
        },
        cgroup: None,
        cgroup_ns: None,
        pty: None,
    }
}

#[test]
fn session_passes_the_exit_status_and_gives_a_pty() {
    let status = session::run(job("exit 5")).unwrap();
    assert_eq!(status.code(), Some(5));
    let status = session::run(job("test -t 0 && exit 0 || exit 9")).unwrap();
    assert_eq!(status.code(), Some(9), "no pty unless asked for");
    let mut j = job("test -t 0 && test -t 1 && tty >/dev/null && exit 0 || exit 9");
    j.pty = Some(Pty::open(0).unwrap());
    assert_eq!(session::run(j).unwrap().code(), Some(0));
}

#[test]
fn cgroup_kill_all_ends_a_tree_that_outlived_its_parent() {
    let g = Cgroup::new(format!("realms-test/session-{}", std::process::id())).unwrap();
    g.create().unwrap();
    let mut j = job("sleep 60 & sleep 60 & exit 0");
    j.cgroup = Some(g.open_procs().unwrap());
    assert_eq!(session::run(j).unwrap().code(), Some(0));
    // Both sleeps live on, re-parented, and the group still holds them.
    let pids = g.pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(g.is_populated());
    assert!(
        g.remove().is_err(),
        "a group with processes cannot be removed"
    );
    assert!(g.kill_all(Duration::from_secs(5)).unwrap().is_empty());
    assert!(!g.is_populated());
    g.remove().unwrap();
    assert!(g.dirs().all(|d| !d.exists()));
    let parent = Cgroup::new("realms-test").unwrap();
    let _ = parent.remove();
}
