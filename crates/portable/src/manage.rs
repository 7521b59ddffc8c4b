//! The image-level verbs: attachment state (`is-attached`), `list`, `inspect`, `read-only` and
//! `remove`.

use realms_sys::IoContext;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use serde::Serialize;

use crate::detach::scan;
use crate::error::{Error, Result};
use crate::image::{Image, ImageKind};
use crate::layout::{ATTACHED_PERSISTENT, ATTACHED_RUNTIME, Host};
use crate::load::load;
use crate::systemd::Systemd;

/// portablectl's attachment states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No unit is attached from the image.
    Detached,
    /// Units are attached below `/etc`.
    Attached,
    /// Units are attached below `/run`.
    AttachedRuntime,
    /// Attached below `/etc`, and a unit is enabled.
    Enabled,
    /// Attached below `/run`, and a unit is enabled.
    EnabledRuntime,
    /// Attached below `/etc`, and a unit is active.
    Running,
    /// Attached below `/run`, and a unit is active.
    RunningRuntime,
}

impl State {
    /// The name portablectl prints (`attached-runtime`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Detached => "detached",
            State::Attached => "attached",
            State::AttachedRuntime => "attached-runtime",
            State::Enabled => "enabled",
            State::EnabledRuntime => "enabled-runtime",
            State::Running => "running",
            State::RunningRuntime => "running-runtime",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn state_in(host: &Host, systemd: &Systemd, request: &[String], runtime: bool) -> Result<State> {
    let dir = if runtime {
        ATTACHED_RUNTIME
    } else {
        ATTACHED_PERSISTENT
    };
    let units: Vec<String> = scan(host, dir, Some(request))?
        .into_iter()
        .map(|f| f.unit)
        .collect();
    if units.is_empty() {
        return Ok(State::Detached);
    }
    let running = !systemd.active(&units)?.is_empty();
    let enabled = systemd.enablement(&units).is_some_and(|states| {
        states.values().any(|s| {
            !matches!(
                s.as_str(),
                "static" | "disabled" | "linked" | "linked-runtime" | ""
            ) && !s.starts_with("Failed")
        })
    });
    Ok(match (running, enabled, runtime) {
        (true, _, false) => State::Running,
        (true, _, true) => State::RunningRuntime,
        (false, true, false) => State::Enabled,
        (false, true, true) => State::EnabledRuntime,
        (false, false, false) => State::Attached,
        (false, false, true) => State::AttachedRuntime,
    })
}

/// The state of `image` (a name or path) with `extensions`: persistent first, then runtime.
pub fn state(host: &Host, systemd: &Systemd, image: &str, extensions: &[String]) -> Result<State> {
    let request: Vec<String> = std::iter::once(image.to_owned())
        .chain(extensions.iter().cloned())
        .collect();
    match state_in(host, systemd, &request, false)? {
        State::Detached => state_in(host, systemd, &request, true),
        s => Ok(s),
    }
}

/// One row of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The image name.
    pub name: String,
    /// What the image is.
    #[serde(rename = "type")]
    pub kind: ImageKind,
    /// Its in-root path.
    pub path: PathBuf,
    /// Whether the image is read-only.
    pub read_only: bool,
    /// Creation time (seconds since the epoch), if known.
    pub crtime: Option<i64>,
    /// Modification time (seconds since the epoch), if known.
    pub mtime: Option<i64>,
    /// Bytes used (raw images only, like portablectl without quotas).
    pub usage: Option<u64>,
    /// The attachment state.
    pub state: State,
}

/// Every image in the search path with its state.
pub fn list(host: &Host, systemd: &Systemd) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    for image in Image::discover(host)? {
        let meta = host.dir().metadata(&image.path)?;
        let state = state(host, systemd, &image.path.to_string_lossy(), &[])?;
        let crtime = host
            .host_path(&image.path)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.created().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let raw = image.kind == ImageKind::Raw;
        out.push(Listed {
            read_only: image.read_only(host),
            crtime,
            mtime: meta.as_ref().filter(|_| raw).map(|m| m.mtime()),
            usage: meta.as_ref().filter(|_| raw).map(|m| m.blocks() * 512),
            name: image.name,
            kind: image.kind,
            path: image.path,
            state,
        });
    }
    Ok(out)
}

/// What `inspect` shows: the image path, the release files and the matching unit files.
#[derive(Debug, Clone, Serialize)]
pub struct Inspected {
    /// The in-root path of the image.
    pub image: PathBuf,
    /// The image's os-release text.
    pub os_release: String,
    /// `PORTABLE_PRETTY_NAME=` of os-release, if set.
    pub portable_pretty_name: Option<String>,
    /// `PRETTY_NAME=` of os-release, if set.
    pub pretty_name: Option<String>,
    /// `(extension path, extension-release text)` in command-line order.
    pub extensions: Vec<(PathBuf, String)>,
    /// The fields of each extension-release that `inspect` shows, in command-line order.
    pub extension_fields: Vec<ExtensionFields>,
    /// `(unit name, contents)`, sorted by name.
    pub units: Vec<(String, String)>,
}

/// The keys of an extension-release that portablectl 252's `inspect` shows (`None`: unset).
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionFields {
    /// `SYSEXT_SCOPE=`.
    pub scope: Option<String>,
    /// `SYSEXT_LEVEL=`.
    pub level: Option<String>,
    /// `PORTABLE_PRETTY_NAME=`.
    pub portable_pretty_name: Option<String>,
    /// `PORTABLE_PREFIXES=`.
    pub portable_prefixes: Option<String>,
    /// `PRETTY_NAME=`.
    pub pretty_name: Option<String>,
    /// `ID=`.
    pub id: Option<String>,
    /// `VERSION_ID=`.
    pub version_id: Option<String>,
}

impl ExtensionFields {
    fn of(release: &realms_unit::OsRelease) -> ExtensionFields {
        let get = |k: &str| release.get(k).map(str::to_owned);
        ExtensionFields {
            scope: get("SYSEXT_SCOPE"),
            level: get("SYSEXT_LEVEL"),
            portable_pretty_name: get("PORTABLE_PRETTY_NAME"),
            portable_prefixes: get("PORTABLE_PREFIXES"),
            pretty_name: get("PRETTY_NAME"),
            id: get("ID"),
            version_id: get("VERSION_ID"),
        }
    }
}

/// Reads an image for `inspect`.
pub fn inspect(
    host: &Host,
    image: &str,
    extensions: &[String],
    matches: &[String],
    force: bool,
) -> Result<Inspected> {
    let loaded = load(host, image, extensions, matches, force, false)?;
    if loaded.units.is_empty() {
        return Err(Error::NoUnits {
            image: loaded.image.path.display().to_string(),
            exts: crate::error::ext_suffix(&loaded.extension_paths()),
        });
    }
    let release = &loaded.base.release;
    Ok(Inspected {
        image: loaded.image.path.clone(),
        os_release: loaded.base.release_text.clone(),
        portable_pretty_name: release.portable_pretty_name().map(str::to_owned),
        pretty_name: release.pretty_name().map(str::to_owned),
        extensions: loaded
            .extensions
            .iter()
            .map(|(i, m)| (i.path.clone(), m.release_text.clone()))
            .collect(),
        extension_fields: loaded
            .extensions
            .iter()
            .map(|(_, m)| ExtensionFields::of(&m.release))
            .collect(),
        units: loaded
            .units
            .values()
            .map(|u| {
                (
                    u.name.clone(),
                    String::from_utf8_lossy(&u.contents).into_owned(),
                )
            })
            .collect(),
    })
}

/// Marks an image read-only or writable.
pub fn set_read_only(host: &Host, image: &str, read_only: bool) -> Result<()> {
    let image = Image::find(host, image)?;
    if image.is_vendor() {
        return Err(Error::VendorImage(image.path.display().to_string()));
    }
    let real = host.host_path(&image.path)?;
    match image.kind {
        ImageKind::Subvolume => realms_sys::btrfs::set_readonly(&real, read_only)?,
        ImageKind::Directory => realms_sys::fs::set_immutable(&real, read_only)?,
        ImageKind::Raw | ImageKind::Block => {
            let meta = std::fs::metadata(&real).ctx("inspecting", &real)?;
            let mode = (meta.mode() & 0o7555) | if read_only { 0 } else { 0o200 };
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode))
                .ctx("changing the mode of", &real)?;
        }
    }
    Ok(())
}

/// Removes a detached image (a symlink to an image is removed, not its target).
pub fn remove(host: &Host, systemd: &Systemd, image: &str) -> Result<PathBuf> {
    let image = Image::find(host, image)?;
    if image.is_vendor() {
        return Err(Error::VendorImage(image.path.display().to_string()));
    }
    if state(host, systemd, &image.path.to_string_lossy(), &[])? != State::Detached {
        return Err(Error::NotDetached(image.path.display().to_string()));
    }
    let is_link = host
        .dir()
        .symlink_metadata(&image.path)?
        .is_some_and(|m| m.file_type().is_symlink());
    if is_link || !image.kind.is_tree() {
        host.dir().remove_file(&image.path)?;
    } else {
        let real = host.host_path(&image.path)?;
        match image.kind {
            ImageKind::Subvolume => realms_sys::btrfs::delete_subvolume_recursive(&real)?,
            _ => {
                let _ = realms_sys::fs::set_immutable(&real, false);
                realms_sys::fs::remove_dir_all_one_fs(&real)?;
            }
        }
    }
    if image.kind == ImageKind::Raw {
        let roothash = crate::raw::sidecar(&image.path, ".roothash");
        let _ = host.dir().remove_file(roothash);
    }
    Ok(image.path)
}
