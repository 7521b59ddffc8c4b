//! Disposable realms: `realms launch --disposable -- CMD` leaves nothing behind when CMD (and
//! what it left running) exits, and after its owner is killed with SIGKILL, once the next
//! command has run.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realms_tests::realms::TestRoot;
use realms_tests::require;

/// Every path under the store and under /run/realms of this root (the published desktop set
/// aside), to compare before and after.
fn traces(t: &TestRoot) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for top in [t.realms_dir(), t.path().join("run/realms")] {
        let list = Command::new("find").arg(&top).output().unwrap();
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            if !line.contains("/run/realms/desktop") && !line.contains("/run/realms/.desktop") {
                out.insert(line.to_string());
            }
        }
    }
    out
}

fn launch(t: &TestRoot, args: &[&str]) -> Command {
    let mut argv = vec!["launch", "--disposable", "--"];
    argv.extend(args);
    let mut cmd = t.command(&argv);
    cmd.stdin(Stdio::null());
    cmd
}

fn disposable_realms(t: &TestRoot) -> Vec<String> {
    fs::read_dir(t.realms_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("realm-disposable-"))
        .collect()
}

#[test]
fn disposable_realms_leave_nothing_behind_also_after_their_owner_is_killed() {
    require::root();
    let t = TestRoot::btrfs();
    // A first one makes what the store keeps for every realm (its lock, the zone's lease
    // directory); nothing of the realm itself may remain.
    let out = launch(&t, &["true"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = traces(&t);
    let left: Vec<&String> = before
        .iter()
        .filter(|p| p.contains("disposable-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // The command's exit code comes back; the realm and everything of it go.
    let out = launch(&t, &["sh", "-c", "echo scratch > /home/user/file; exit 7"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("disposable realm"));
    assert_eq!(traces(&t), before, "a disposable realm left traces");

    // What the command left running keeps the realm until it exits too.
    let start = Instant::now();
    let out = launch(&t, &["sh", "-c", "sleep 2 >/dev/null 2>&1 & exit 0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "the realm went before its last process: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(traces(&t), before);

    // Its owner killed: the realm stays until the next command, which removes it.
    let mut owner = launch(&t, &["sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let running = disposable_realms(&t).iter().any(|r| {
            let name = r.trim_start_matches("realm-");
            Path::new(&t.path().join(format!("run/realms/realm-{name}.pid"))).exists()
        });
        let sleeping = Command::new("pgrep")
            .args(["-x", "sleep"])
            .output()
            .unwrap();
        if running && !sleeping.stdout.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the disposable realm did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert_eq!(
        disposable_realms(&t).len(),
        1,
        "the killed owner's realm is still there"
    );
    let said = t.said(&["desktop", "sync"]);
    assert!(said.contains("whose owner is gone"), "{said}");
    assert!(disposable_realms(&t).is_empty());
    assert_eq!(traces(&t), before, "the killed owner's realm left traces");
}
