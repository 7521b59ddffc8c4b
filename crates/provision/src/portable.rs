//! Every call into `realms-portable` in one place: attach with a profile and copy mode, enable
//! and start the listed units through PID 1, stop/disable and detach, remove an image.

use realms_sys::IoContext;
use std::fs;
use std::path::Path;

use realms_portable::ops::{Steps, attach_verb, detach_verb, reattach_verb};
use realms_portable::{AttachOptions, CopyMode, DetachOptions, Host, Systemd};

use crate::manifest::InstallMethod;
use crate::{Error, Result};

fn portable_error(package: &str) -> impl Fn(realms_portable::Error) -> Error + '_ {
    move |e| Error::Portable {
        package: package.to_string(),
        source: Box::new(e),
    }
}

/// What PID 1 did with the units.
#[derive(Debug, Default, Clone)]
pub struct Activated {
    /// Whether systemd runs as PID 1 (nothing is enabled or started otherwise).
    pub systemd: bool,
    /// The units enabled.
    pub enabled: Vec<String>,
    /// The units started.
    pub started: Vec<String>,
    /// Lines worth telling (failed jobs, errors of PID 1).
    pub notes: Vec<String>,
    /// Every unit the attach put in place.
    pub units: Vec<String>,
}

/// How to attach and what to do then.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The portable profile.
    pub profile: &'a str,
    /// How the image is attached.
    pub method: InstallMethod,
    /// Units to enable.
    pub enable: &'a [String],
    /// Units to start.
    pub start: &'a [String],
    /// A drop-in (`NAME.conf`, text) for every attached `.service`, written before anything starts.
    pub service_dropin: Option<(&'a str, String)>,
}

/// Attaches the image at `image` (a host path under the root) as package `package`, then
/// enables and starts the units `req` lists.
pub fn attach(root: &Path, package: &str, image: &Path, req: &Request<'_>) -> Result<Activated> {
    let err = portable_error(package);
    let host = Host::open(root).map_err(&err)?;
    let systemd = Systemd::detect(&host);
    let inner = Path::new("/").join(image.strip_prefix(root).unwrap_or(image));
    let opts = attach_options(req);
    let steps = Steps {
        reload: true,
        ..Steps::default()
    };
    let outcome = attach_verb(
        &host,
        &systemd,
        &inner.to_string_lossy(),
        &[],
        &opts,
        &steps,
        &mut |l: &str| tracing::debug!("{l}"),
    )
    .map_err(&err)?;
    let units: Vec<String> = outcome
        .changes
        .iter()
        .filter(|c| c.is_managed_unit())
        .filter_map(|c| c.unit_name())
        .collect();
    if let Some((name, text)) = &req.service_dropin {
        for unit in units.iter().filter(|u| u.ends_with(".service")) {
            let dir = root
                .join("etc/systemd/system.attached")
                .join(format!("{unit}.d"));
            fs::create_dir_all(&dir).ctx("creating", &dir)?;
            realms_sys::atomic::write_file(dir.join(name), text.as_bytes(), 0o644)?;
        }
        if systemd.is_running() {
            systemd.reload().map_err(&err)?;
        }
    }
    let mut done = activate(&systemd, req.enable, Some(req.start), "StartUnit");
    done.units = units;
    Ok(done)
}

fn attach_options(req: &Request<'_>) -> AttachOptions {
    AttachOptions {
        profile: req.profile.to_string(),
        copy: match req.method {
            InstallMethod::Auto => CopyMode::Auto,
            InstallMethod::Copy => CopyMode::Copy,
            InstallMethod::Symlink => CopyMode::Symlink,
        },
        ..AttachOptions::default()
    }
}

/// Reattaches package `package` onto the image at `image` (portablectl's `reattach`: the units
/// of the image attached before are replaced by the new image's in one journal commit, so
/// there is no moment with the package detached), then restarts the units `req` starts (and
/// enables those it enables) through PID 1.
pub fn reattach(root: &Path, package: &str, image: &Path, req: &Request<'_>) -> Result<Activated> {
    let err = portable_error(package);
    let host = Host::open(root).map_err(&err)?;
    let systemd = Systemd::detect(&host);
    let inner = Path::new("/").join(image.strip_prefix(root).unwrap_or(image));
    let steps = Steps {
        reload: true,
        ..Steps::default()
    };
    let outcome = reattach_verb(
        &host,
        &systemd,
        &inner.to_string_lossy(),
        &[],
        &attach_options(req),
        &steps,
        &mut |l: &str| tracing::debug!("{l}"),
    )
    .map_err(&err)?;
    realms_sys::failpoint::hit("provision-reattached");
    let mut done = activate(&systemd, req.enable, Some(req.start), "RestartUnit");
    done.units = outcome
        .changes
        .iter()
        .filter(|c| c.is_managed_unit())
        .filter_map(|c| c.unit_name())
        .collect();
    Ok(done)
}

/// Stops `units` through PID 1 (a failed rollback leaves the package stopped).
pub fn stop(root: &Path, package: &str, units: &[String]) -> Result<()> {
    let err = portable_error(package);
    let host = Host::open(root).map_err(&err)?;
    let systemd = Systemd::detect(&host);
    if !systemd.is_running() {
        return Ok(());
    }
    let mut jobs = Vec::new();
    for u in units {
        jobs.push(systemd.queue("StopUnit", u).map_err(&err)?);
    }
    systemd.wait(&jobs).map_err(&err)?;
    Ok(())
}

/// The states of `units` as PID 1 sees them (empty without systemd).
pub fn unit_states(
    root: &Path,
    package: &str,
    units: &[String],
) -> Result<Vec<realms_portable::systemd::UnitState>> {
    let err = portable_error(package);
    let host = Host::open(root).map_err(&err)?;
    Systemd::detect(&host).states(units).map_err(&err)
}

/// Whether systemd runs as PID 1 for `root`.
pub fn systemd_running(root: &Path) -> bool {
    Host::open(root).is_ok_and(|h| Systemd::detect(&h).is_running())
}

/// Enables `enable` and starts `start` (`None`: the units that were enabled) through PID 1.
pub fn enable_start(
    root: &Path,
    package: &str,
    enable: &[String],
    start: Option<&[String]>,
) -> Result<Activated> {
    let host = Host::open(root).map_err(portable_error(package))?;
    Ok(activate(
        &Systemd::detect(&host),
        enable,
        start,
        "StartUnit",
    ))
}

fn activate(
    systemd: &Systemd,
    enable: &[String],
    start: Option<&[String]>,
    method: &'static str,
) -> Activated {
    let mut done = Activated {
        systemd: systemd.is_running(),
        ..Activated::default()
    };
    if !systemd.is_running() {
        return done;
    }
    let mut notes = Vec::new();
    for unit in enable {
        match systemd.enable(unit, false, true) {
            Ok(_) => done.enabled.push(unit.clone()),
            Err(e) => notes.push(format!("enabling {unit}: {e}")),
        }
    }
    // As `systemctl enable` does: PID 1 learns the new [Install] links (multi-user.target's
    // Wants=) only on a reload; without it only a later attach's reload would tell it.
    if !done.enabled.is_empty()
        && let Err(e) = systemd.reload()
    {
        notes.push(format!("reloading systemd after enabling: {e}"));
    }
    let start = start
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| done.enabled.clone());
    let mut jobs = Vec::new();
    for unit in &start {
        match systemd.queue(method, unit) {
            Ok(job) => {
                jobs.push(job);
                done.started.push(unit.clone());
            }
            Err(e) => notes.push(format!("starting {unit}: {e}")),
        }
    }
    match systemd.wait(&jobs) {
        Ok(failed) => {
            for u in failed {
                done.started.retain(|s| *s != u);
                notes.push(format!(
                    "{u} failed to start; see `systemctl status {u}` and `journalctl -u {u}`"
                ));
            }
        }
        Err(e) => notes.push(e.to_string()),
    }
    done.notes = notes;
    done
}

/// Stops, disables and detaches the image at `image`; an image not attached is fine.
pub fn detach(root: &Path, package: &str, image: &Path) -> Result<()> {
    let err = portable_error(package);
    let host = Host::open(root).map_err(&err)?;
    let systemd = Systemd::detect(&host);
    let inner = Path::new("/").join(image.strip_prefix(root).unwrap_or(image));
    remove_dropins(root, package);
    let steps = Steps {
        reload: true,
        enable: true,
        now: true,
        no_block: false,
    };
    match detach_verb(
        &host,
        &systemd,
        &inner.to_string_lossy(),
        &[],
        &DetachOptions::default(),
        &steps,
        &mut |l: &str| tracing::debug!("{l}"),
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("not attached") => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// The name of the `User=` drop-in the inbox writes.
pub const USER_DROPIN: &str = "30-realms-provision-user.conf";

/// Removes the inbox's `User=` drop-ins of `package`'s units (portable detach removes only what
/// attach wrote).
fn remove_dropins(root: &Path, package: &str) {
    let dir = root.join("etc/systemd/system.attached");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(package) && name.ends_with(".service.d") {
            let _ = fs::remove_file(e.path().join(USER_DROPIN));
        }
    }
}

/// Finishes an attach or detach a killed apply committed (portable's journal), so what is
/// attached is known before anything is planned.
pub fn recover(root: &Path) -> Result<()> {
    let err = portable_error("(journal)");
    let host = Host::open(root).map_err(&err)?;
    realms_portable::txn::recover(&host).map_err(&err)
}

/// Whether the image at `image` is attached (a unit file of it is in the attach directory).
pub fn is_attached(root: &Path, image: &Path) -> bool {
    let Ok(host) = Host::open(root) else {
        return false;
    };
    let inner = Path::new("/").join(image.strip_prefix(root).unwrap_or(image));
    let same = |i: &String| Path::new(i) == inner || Path::new(i).file_name() == inner.file_name();
    realms_portable::detach::scan(&host, realms_portable::layout::attached_dir(false), None)
        .map(|found| found.iter().any(|f| f.images.iter().any(same)))
        .unwrap_or(false)
}

/// Removes an image directory or raw file.
pub fn remove_image(image: &Path) -> Result<()> {
    let r = match fs::symlink_metadata(image) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(image),
        Ok(_) => fs::remove_file(image),
        Err(_) => return Ok(()),
    };
    r.map_err(|e| Error::io("removing", image, e))
}

/// The checks of `realms portable validate` that `dir` (a directory image for units prefixed
/// `name`) fails; empty when it is a valid portable image.
pub fn validate(dir: &Path, name: &str) -> Result<Vec<String>> {
    let err = portable_error(name);
    let host = Host::open("/").map_err(&err)?;
    let dir = fs::canonicalize(dir).ctx("reading", dir)?;
    let checks =
        realms_portable::validate::validate(&host, &dir.to_string_lossy(), &[name.to_string()])
            .map_err(&err)?;
    Ok(checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.to_string())
        .collect())
}
