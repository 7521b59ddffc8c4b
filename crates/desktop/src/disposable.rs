//! Disposable realms: `realms launch --disposable [--appimg IMG] -- CMD` makes a realm from the
//! image (a btrfs snapshot or an overlay), runs CMD in it, and when CMD and every process the
//! realm user started in it have exited, stops and removes the realm with everything it left
//! under `/run/realms`. The owner (this process, by pid and start time) is recorded in the store
//! before the realm is made, so after a crash the next command removes the realm.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use realms_realm::{RealmStore, launch, lifecycle};
use realms_sys::IoContext;
use realms_sys::event::{Event, Report, Silent};

use crate::Result;
use crate::launch::LaunchOptions;

/// The names of disposable realms start with this.
pub const PREFIX: &str = "disposable-";

/// How often the end of the realm user's last process is checked once CMD has exited.
const LINGER_CHECK: Duration = Duration::from_millis(100);

fn owners(store: &RealmStore) -> PathBuf {
    store.dir().join(".disposable")
}

/// A process's identity that survives pid reuse: `PID STARTTIME`.
fn identity(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are counted from ')'.
    let after = stat.rsplit_once(')')?.1;
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

fn owner_alive(record: &str) -> bool {
    let Some(pid) = record
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
    else {
        return false;
    };
    identity(pid).as_deref() == Some(record.trim())
}

/// Removes disposable realms whose owner is gone (crashed or killed); returns their names.
pub fn reap(store: &RealmStore, say: &dyn Report) -> Result<Vec<String>> {
    let dir = owners(store);
    let mut reaped = Vec::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) {
            continue;
        }
        let record = fs::read_to_string(entry.path()).unwrap_or_default();
        if owner_alive(&record) {
            continue;
        }
        dispose(store, &name)?;
        say.report(Event::note(format!(
            "removed disposable realm '{name}', whose owner is gone"
        )));
        reaped.push(name);
    }
    Ok(reaped)
}

/// Stops and removes disposable realm `name` and everything it left.
fn dispose(store: &RealmStore, name: &str) -> Result<()> {
    if store.realm_dir(name).exists() {
        lifecycle::remove(store, name, true, &Silent)?;
    }
    for leftover in [
        crate::launch::log_file(store, name),
        owners(store).join(name),
    ] {
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(realms_sys::Error::io("removing", &leftover, e).into()),
        }
    }
    let prefix = format!("realm-{name}.");
    for entry in fs::read_dir(store.run_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Makes a disposable realm from `image`, runs `argv` in it, waits for the realm user's last
/// process, and removes the realm; returns CMD's exit code.
pub fn launch_disposable(
    store: &RealmStore,
    image: &str,
    argv: &[OsString],
    opts: &LaunchOptions,
    say: &dyn Report,
) -> Result<i32> {
    reap(store, say)?;
    let suffix = hex(&realms_sys::random::bytes::<4>()?);
    let name = format!("{PREFIX}{suffix}");
    let record = identity(std::process::id()).unwrap_or_default();
    let dir = owners(store);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    realms_sys::atomic::write_file(dir.join(&name), record.as_bytes(), 0o644)?;
    let result = lifecycle::create(store, &name, image, say).map_err(crate::Error::from);
    let result = result.and_then(|()| {
        say.report(Event::progress(format!(
            "Created disposable realm '{name}' from image '{image}'"
        )));
        let code = launch_child(store, &name, argv, opts)?;
        wait_for_user_processes(store, &name);
        Ok(code)
    });
    let cleaned = dispose(store, &name);
    let code = result?;
    cleaned?;
    Ok(code)
}

/// Runs `realms launch NAME -- ARGV` as a child: entering the realm's namespaces is for good,
/// and this process still has to remove the realm afterwards.
fn launch_child(
    store: &RealmStore,
    name: &str,
    argv: &[OsString],
    opts: &LaunchOptions,
) -> Result<i32> {
    let exe = std::env::current_exe()
        .map_err(|e| realms_sys::Error::io("finding the realms binary", "/proc/self/exe", e))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--root").arg(store.root()).arg("launch");
    if let Some(cwd) = &opts.cwd {
        cmd.arg("--cwd").arg(cwd);
    }
    for (k, v) in &opts.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    cmd.arg(name).arg("--").args(argv);
    if let Some(display) = &opts.display {
        cmd.env("DISPLAY", display);
    }
    if let Some(auth) = &opts.xauthority {
        cmd.env("XAUTHORITY", auth);
    }
    let status = cmd
        .status()
        .map_err(|e| realms_sys::Error::io("running", &exe, e))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Waits until no process of the realm user runs in the realm (an app that `xdg-open` started
/// and left running keeps the realm).
fn wait_for_user_processes(store: &RealmStore, name: &str) {
    let Ok(leader) = launch::leader(store, name) else {
        return;
    };
    let root = PathBuf::from(format!("/proc/{leader}/root"));
    let Ok(root) = fs::canonicalize(&root) else {
        return;
    };
    loop {
        let users = realms_sys::proc::rooted_at(&root)
            .unwrap_or_default()
            .into_iter()
            .filter(|pid| uid_of(*pid) == Some(realms_realm::store::REALM_UID))
            .count();
        if users == 0 || !launch::is_running(store, name) {
            return;
        }
        std::thread::sleep(LINGER_CHECK);
    }
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when realm `name` is a disposable one (made by [`launch_disposable`]).
pub fn is_disposable(store: &RealmStore, name: &str) -> bool {
    name.starts_with(PREFIX) && owners(store).join(name).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_known_by_pid_and_start_time() {
        let me = identity(std::process::id()).unwrap();
        assert!(owner_alive(&me));
        let (pid, start) = me.split_once(' ').unwrap();
        assert!(!owner_alive(&format!(
            "{pid} {}",
            start.parse::<u64>().unwrap() + 1
        )));
        assert!(!owner_alive(""));
        assert!(!owner_alive("4194304 1"));
    }

    #[test]
    fn reaping_removes_records_of_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let store = RealmStore::open(dir.path()).unwrap();
        fs::create_dir_all(owners(&store)).unwrap();
        fs::write(owners(&store).join("disposable-dead"), "4194304 1").unwrap();
        let me = identity(std::process::id()).unwrap();
        fs::write(owners(&store).join("disposable-live"), &me).unwrap();
        let reaped = reap(&store, &Silent).unwrap();
        assert_eq!(reaped, ["disposable-dead"]);
        assert!(!owners(&store).join("disposable-dead").exists());
        assert!(owners(&store).join("disposable-live").exists());
    }
}
