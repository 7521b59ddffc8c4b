//! Starting and stopping realms. One launch plan, two executors: under a systemd PID 1 a realm
//! is the unit `realm-NAME.service` (registered with machined); elsewhere realms runs the same
//! nspawn command line itself with `--register=no --keep-unit`, detached in its own session,
//! with a pid file under `/run/realms`. Either way `realms nspawn-exec NAME` is what execs nspawn,
//! after mounting the realm's overlay root in a mount namespace of its own.

use realms_sys::IoContext;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use realms_image::{ImageKind, activate};
use realms_sys::{cmd::Cmd, mount, proc};

use crate::error::StartFailure;
pub use crate::executor::Executor;
use crate::plan::{Network, RealHost, RootSetup, plan};
pub(crate) use crate::runtime::{SETTLE, leader_file, nspawn_pid, pid_file, unit_name, unit_path};
pub use crate::runtime::{State, is_running, leader, log_file, state};
use crate::starting::{self, Intent};
use crate::store::RealmStore;
use crate::{Error, Result, tree, zone};
use realms_sys::event::{Event, Report};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// `realms start NAME`.
pub fn start(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    start_locked(store, name, say)
}

/// Starts a realm with the store lock held; a running realm is left as it is. Killed or
/// failed half-way, the start is rolled back (at once, or by the next command).
pub(crate) fn start_locked(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    if state(store, name) == State::Running {
        say.report(Event::progress(format!(
            "Realm '{name}' is already running"
        )));
        return Ok(());
    }
    as_one_start(store, name, || start_unmarked(store, name, say))
}

/// Runs `start` (which starts realm `name`, and perhaps more) under a recorded intent: if it
/// fails, what it started is stopped and the current realm put back; if the command is killed,
/// the next command that takes the store lock does the same ([`roll_back_interrupted`]).
pub(crate) fn as_one_start(
    store: &RealmStore,
    name: &str,
    start: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let intent = Intent::begin(store, name)?;
    match start() {
        Ok(()) => intent.done(),
        Err(err) => {
            roll_back(store, name, &intent.previous);
            Err(err)
        }
    }
}

/// Stops what runs of realm `name`, points the current-realm link back at `previous` (none if
/// empty), as it was before the start, and drops the intent.
fn roll_back(store: &RealmStore, name: &str, previous: &str) {
    if is_running(store, name) {
        if let Err(err) = stop_locked(store, name) {
            tracing::warn!("realm '{name}': stopping an interrupted start: {err}");
        }
    } else {
        forget_runtime(store, name);
    }
    let now = store.current_realm();
    let put_back = if previous.is_empty() {
        now.map_or(Ok(()), |n| store.clear_current(&n))
    } else if now.as_deref() != Some(previous) {
        store.set_current(previous)
    } else {
        Ok(())
    };
    if let Err(err) = put_back {
        tracing::warn!("putting back the current realm: {err}");
    }
    starting::remove(store, name);
}

/// Rolls back the starts whose command was killed (called with the store lock held).
pub(crate) fn roll_back_interrupted(store: &RealmStore) {
    for (name, previous) in starting::interrupted(store) {
        tracing::info!("rolling back the interrupted start of realm '{name}'");
        roll_back(store, &name, &previous);
    }
}

/// Starts a realm that is not running, with the store lock held, inside [`as_one_start`]
/// (whose intent lets the next command roll it back if we are killed).
pub(crate) fn start_unmarked(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    let mut settle = Duration::ZERO;
    match state(store, name) {
        State::Running => {
            say.report(Event::progress(format!(
                "Realm '{name}' is already running"
            )));
            return Ok(());
        }
        State::Orphaned => {
            say.report(Event::warning(format!(
                "Realm '{name}' lost its systemd-nspawn (was it killed?); stopping what is left of it first"
            )));
            stop_locked(store, name)?;
            settle = SETTLE;
        }
        State::Stopped => {}
    }
    // Something that escaped every executor (say, a container of an older realms) must not
    // get a second container booted on the same root.
    check_unused(store, name, settle)?;
    // A realm that died without a stop left its X cookies: each start gets fresh ones.
    for warning in crate::xauth::revoke(store, name) {
        say.report(Event::warning(warning));
    }
    let config = store.config(name)?;
    let plan = plan(store, name, &config, &RealHost)?;
    // What the config asks for and this host cannot give is said, not only logged.
    for note in &plan.notes {
        say.report(Event::warning(format!("realm '{name}': {note}")));
    }
    if let RootSetup::Overlay {
        image: Some(image), ..
    } = &plan.root
    {
        let info = store.images().info_at(image)?;
        if info.kind == ImageKind::Sealed
            && activate::sealed_protection() == activate::Protection::VerifiedOnce
        {
            say.report(Event::warning(format!(
                "this kernel has no device-mapper, so sealed image '{}' is verified in userspace before it is \
                 mounted read-only; this gives no protection against tampering after that",
                info.name
            )));
        }
    }
    let net = match &plan.network {
        Network::Zone { zone, forwards, .. } => {
            let attached = zone::attach(store, zone, name, forwards)?;
            for warning in &attached.warnings {
                say.report(Event::warning(warning.to_string()));
            }
            Some(attached)
        }
        Network::LoopbackOnly => None,
    };
    let started = match store.executor() {
        Executor::Direct => start_direct(store, name),
        Executor::Systemd => start_unit(store, name),
    };
    if let Err(e) = started {
        // Its address and port forwards go back to the zone.
        zone::release(store, name);
        return Err(e);
    }
    realms_sys::failpoint::hit("realm-start-ready");
    // For the desktop's user (`realms desktop titles`): the realm's label, and its leader with
    // its PID namespace.
    crate::runtime::record_label(store, name)?;
    let _ = leader(store, name);
    if let Some(net) = net {
        zone::configure_host0(leader(store, name)?, net.address, &net.zone)?;
    }
    if plan.ephemeral_home.is_some() {
        // nspawn's temporary upper layer belongs to root; the home belongs to the realm user.
        let pid = leader(store, name)?.to_string();
        Cmd::new("nsenter")
            .args(["-t", &pid, "-m", "chown", "1000:1000", "/home/user"])
            .run()?;
    }
    say.report(Event::progress(format!("Started realm '{name}'")));
    Ok(())
}

fn realms_exe() -> Result<PathBuf> {
    Ok(std::env::current_exe().ctx("finding the realms binary", "/proc/self/exe")?)
}

fn start_direct(store: &RealmStore, name: &str) -> Result<()> {
    nspawn_prerequisites()?;
    tree::prepare_start(store, name)?;
    let log_path = log_file(store, name);
    let log = fs::File::create(&log_path).ctx("creating", &log_path)?;
    let log2 = log.try_clone().ctx("opening", &log_path)?;
    let socket_name = format!("realms-notify-{}-{name}", std::process::id());
    let socket = notify_socket(&socket_name)?;
    // The launcher is in the realm's group from its first instruction: killed right after
    // the spawn, we leave nothing the next command cannot find and stop.
    let group = tree::group(store, name)?;
    group.create()?;
    let mut launcher = Cmd::new(realms_exe()?);
    for dir in group.dirs() {
        launcher.join_cgroup(dir);
    }
    let mut child = launcher
        .arg("--root")
        .arg(store.root())
        .args(["nspawn-exec", name])
        .env("NOTIFY_SOCKET", format!("@{socket_name}"))
        .new_session()
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()?;
    realms_sys::failpoint::hit("realm-start-spawned");
    realms_sys::atomic::write_file(
        pid_file(store, name),
        child.id().to_string().as_bytes(),
        0o644,
    )?;
    let failed = |reason: StartFailure| Error::StartFailed {
        name: name.to_string(),
        reason,
        log: fs::read_to_string(&log_path).unwrap_or_default(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(n) = socket.recv(&mut buf)
            && buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1")
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let _ = fs::remove_file(pid_file(store, name));
            let _ = tree::reap(store, name);
            return Err(failed(StartFailure::NspawnExited {
                status,
                log: log_path.clone(),
            }));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(pid_file(store, name));
            let _ = tree::reap(store, name);
            return Err(failed(StartFailure::NotReady {
                seconds: START_TIMEOUT.as_secs(),
            }));
        }
    }
}

fn notify_socket(name: &str) -> Result<UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .ctx("creating the notify socket", name)?;
    let socket = UnixDatagram::bind_addr(&addr).ctx("binding the notify socket", name)?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .ctx("configuring the notify socket", name)?;
    Ok(socket)
}

/// nspawn without a systemd PID 1 wants a tmpfs at /run/systemd/nspawn (else it warns about
/// removing a disk file system when it cleans up its propagation directory).
fn nspawn_prerequisites() -> Result<()> {
    let dir = Path::new("/run/systemd/nspawn");
    if !mount::is_mountpoint(dir).unwrap_or(false) {
        fs::create_dir_all(dir).ctx("creating", dir)?;
        mount::tmpfs(dir, "mode=0755")?.leak();
    }
    Ok(())
}

fn start_unit(store: &RealmStore, name: &str) -> Result<()> {
    let exe = realms_exe()?;
    let unit = format!(
        "# Written by realms; started and stopped with `realms start|stop {name}`.\n\
         [Unit]\nDescription=Realm {name}\nAfter=network.target\n\n\
         [Service]\nType=notify\nNotifyAccess=main\n\
         ExecStart={} --root {} nspawn-exec {name}\n\
         KillMode=mixed\nDelegate=yes\nSlice=machine.slice\nTimeoutStartSec={}\n",
        exe.display(),
        store.root().display(),
        START_TIMEOUT.as_secs()
    );
    realms_sys::atomic::write_file(unit_path(name), unit.as_bytes(), 0o644)?;
    Cmd::new("systemctl").arg("daemon-reload").run()?;
    Cmd::new("systemctl")
        .args(["start", &unit_name(name)])
        .run()
        .map_err(|e| Error::StartFailed {
            name: name.to_string(),
            reason: StartFailure::Unit(Box::new(e)),
            log: Cmd::new("journalctl")
                .args(["--no-pager", "-n", "20", "-u", &unit_name(name)])
                .output_string()
                .unwrap_or_default(),
        })?;
    Ok(())
}

/// `realms nspawn-exec NAME` (internal): mounts the realm's root if it is an overlay, in a mount
/// namespace of its own that dies with the container, then becomes systemd-nspawn.
pub fn exec_launcher(store: &RealmStore, name: &str) -> Result<std::convert::Infallible> {
    let registered = store.executor() == Executor::Systemd;
    if !registered {
        // Everything nspawn will ever fork stays in this group, even re-parented to PID 1.
        tree::group(store, name)?.join()?;
    }
    let config = store.config(name)?;
    let plan = plan(store, name, &config, &RealHost)?;
    if let RootSetup::Overlay {
        lower,
        upper,
        work,
        image,
    } = &plan.root
    {
        realms_sys::ns::unshare_mount_namespace()?;
        if let Some(image) = image {
            let info = store.images().info_at(image)?;
            let dm_name = format!("realms-{name}-{}", std::process::id());
            let protection = activate::mount_image(store.root(), &info, lower, &dm_name)?;
            eprintln!(
                "realms: image '{}' mounted read-only ({protection:?})",
                info.name
            );
        }
        mount::overlay(
            &[lower.as_path()],
            Some((upper.as_path(), work.as_path())),
            &plan.directory,
        )?
        .leak();
    }
    let err = std::process::Command::new("systemd-nspawn")
        .args(plan.nspawn_args(registered))
        .exec();
    Err(realms_sys::Error::io("running", "systemd-nspawn", err).into())
}

/// `realms stop NAME`.
pub fn stop(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    match state(store, name) {
        State::Stopped => {
            say.report(Event::progress(format!("Realm '{name}' is not running")));
            return Ok(());
        }
        State::Orphaned => say.report(Event::warning(format!(
            "Realm '{name}' lost its systemd-nspawn (was it killed?); stopping what is left of it"
        ))),
        State::Running => {}
    }
    stop_locked(store, name)?;
    say.report(Event::progress(format!("Stopped realm '{name}'")));
    Ok(())
}

/// `realms restart NAME`: one operation under one lock. The config and the plan (bind mount
/// sources, image) are checked before the realm is stopped, so a bad config leaves it running.
pub fn restart(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    let _lock = store.lock()?;
    let config = store.config(name)?;
    plan(store, name, &config, &RealHost)?;
    if is_running(store, name) {
        stop_locked(store, name)?;
        say.report(Event::progress(format!("Stopped realm '{name}'")));
    }
    start_locked(store, name, say)
}

/// Stops a running realm with the store lock held.
pub(crate) fn stop_locked(store: &RealmStore, name: &str) -> Result<()> {
    match store.executor() {
        Executor::Systemd => Cmd::new("systemctl")
            .args(["stop", &unit_name(name)])
            .run()?,
        Executor::Direct => {
            if let Some(pid) = nspawn_pid(store, name) {
                // SIGTERM makes nspawn power the container off cleanly.
                proc::kill(pid, proc::Signal::TERM)?;
                realms_sys::failpoint::hit("realm-stop-signalled");
                let deadline = Instant::now() + STOP_TIMEOUT;
                while proc::pid_alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if proc::pid_alive(pid) {
                    tracing::warn!(
                        "realm '{name}' did not power off within {}s; killing it",
                        STOP_TIMEOUT.as_secs()
                    );
                    proc::kill(pid, proc::Signal::KILL)?;
                }
            }
            // What nspawn did not take with it (all of it, when nspawn had been killed).
            tree::reap(store, name)?;
            // A killed nspawn leaves its image lock beside the root; no one holds it now.
            let lock = store.realm_dir(name).join(".#rootfs.lck");
            if fs::symlink_metadata(&lock).is_ok() {
                fs::remove_file(&lock).ctx("removing", &lock)?;
            }
        }
    }
    realms_sys::failpoint::hit("realm-stop-exited");
    forget_runtime(store, name);
    // The desktop always has a running current realm while there is one.
    if store.current_realm().as_deref() == Some(name) {
        match store
            .names()?
            .into_iter()
            .find(|n| n != name && is_running(store, n))
        {
            Some(next) => store.set_current(&next)?,
            None => store.clear_current(name)?,
        }
    }
    Ok(())
}

/// Fails, naming them, when processes still run in the realm (in its control group, or with
/// its root directory as theirs): its root must not be deleted under them. `settle` is how long
/// they get to go away (the rest of a PID namespace dies just after its init).
pub(crate) fn check_unused(store: &RealmStore, name: &str, settle: Duration) -> Result<()> {
    let deadline = Instant::now() + settle;
    let users = loop {
        let users = root_users(store, name)?;
        if users.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            break users;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Err(Error::RootInUse {
        name: name.to_string(),
        users: tree::describe(&users),
    })
}

fn root_users(store: &RealmStore, name: &str) -> Result<Vec<u32>> {
    let mut users = if store.executor() == Executor::Direct {
        tree::group(store, name)?.pids()
    } else {
        Vec::new()
    };
    let rootfs = store.realm_dir(name).join("rootfs");
    if rootfs.is_dir() {
        users.extend(proc::rooted_at(&rootfs)?);
    }
    users.sort_unstable();
    users.dedup();
    Ok(users)
}

/// Drops the runtime state of a stopped realm (pid file, address leases, its X cookies:
/// revoked on the X server, a failure to revoke only a warning).
pub(crate) fn forget_runtime(store: &RealmStore, name: &str) {
    for warning in crate::xauth::revoke(store, name) {
        tracing::warn!("{warning}");
    }
    let _ = fs::remove_file(pid_file(store, name));
    let _ = fs::remove_file(leader_file(store, name));
    let _ = fs::remove_file(crate::runtime::label_file(store, name));
    zone::release(store, name);
}

/// Drops the runtime state of every realm whose container is gone without a `realms stop`
/// (powered off from inside, nspawn killed, or a stop killed half-way): its X cookies are
/// revoked, its pid, leader and label files removed. Run under the store lock by every
/// mutating command, so a dead realm's cookie does not outlive the next command.
pub(crate) fn forget_dead(store: &RealmStore) {
    let Ok(run) = fs::read_dir(store.run_dir()) else {
        return;
    };
    let files: Vec<String> = run
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in store.names().unwrap_or_default() {
        let prefix = format!("realm-{name}.");
        let recorded = files.iter().any(|f| {
            f.strip_prefix(&prefix).is_some_and(|rest| {
                ["pid", "leader", "label"].contains(&rest) || rest.starts_with("x11-")
            })
        });
        // A live container init is a running realm: no need to ask its executor.
        let alive = crate::runtime::read_leader_file(&leader_file(store, &name))
            .is_some_and(|(leader, _)| proc::pid_in_namespace(leader) == Some(1));
        if recorded && !alive && state(store, &name) == State::Stopped {
            tracing::info!(
                "realm '{name}' stopped without `realms stop`: dropping its runtime state"
            );
            forget_runtime(store, &name);
        }
    }
}

/// Drops everything a removed realm left under /run (pid file, log, leases, its unit file).
pub(crate) fn forget(store: &RealmStore, name: &str) {
    forget_runtime(store, name);
    let _ = fs::remove_file(log_file(store, name));
    starting::remove(store, name);
    if let Ok(group) = tree::group(store, name) {
        let _ = group.remove();
    }
    if store.executor() == Executor::Systemd && unit_path(name).exists() {
        let _ = fs::remove_file(unit_path(name));
        let _ = Cmd::new("systemctl").arg("daemon-reload").run();
    }
}
