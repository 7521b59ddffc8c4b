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
use realms_sys::event::{Event, Report};

use crate::Result;
use crate::launch::LaunchOptions;

pub use crate::reap::{PREFIX, reap};
use crate::reap::{dispose, identity, owners};

/// How often the end of the realm user's last process is checked once CMD has exited.
const LINGER_CHECK: Duration = Duration::from_millis(100);

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
    // Not canonicalized: read from the host's mount namespace, the link says "/" for a root
    // that is a mount of the realm's own namespace, and every host process would count.
    let root = PathBuf::from(format!("/proc/{leader}/root"));
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
