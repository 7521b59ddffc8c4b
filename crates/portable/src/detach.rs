//! Detach and the attachment state: finding the units an image attached (by the marker line of
//! their `20-portable.conf`, also when only a drop-in directory is left, systemd #23481) and
//! removing exactly what attach created.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use realms_sys::root::FileType;
use serde::Serialize;

use crate::changes::{Change, ChangeKind};
use crate::error::{Error, Result, ext_suffix};
use crate::layout::{Host, attached_dir, image_link_path};
use crate::marker::{parse_marker, unescape_path};
use crate::name::marker_matches;
use crate::systemd::Systemd;

/// A unit attached from an image, found in an attach directory.
#[derive(Debug, Clone)]
pub struct Found {
    /// The unit's name.
    pub unit: String,
    /// The images its marker names (unescaped).
    pub images: Vec<String>,
    /// Whether the unit file itself exists (not only its drop-in directory).
    pub has_unit_file: bool,
}

/// The units in attach directory `where_` whose marker names `request` (image first, then its
/// extensions); `None` as request finds every attached unit.
pub fn scan(host: &Host, where_: &str, request: Option<&[String]>) -> Result<Vec<Found>> {
    let entries = match host.dir().read_dir(where_) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let names: BTreeSet<String> = entries
        .iter()
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .collect();
    for (entry, ty) in &entries {
        let entry = entry.to_string_lossy();
        let (unit, is_dropin_dir) = match entry.strip_suffix(".d") {
            Some(u) => (u.to_owned(), true),
            None => (entry.clone().into_owned(), false),
        };
        if !realms_unit::name::is_valid(&unit) || seen.contains(&unit) {
            continue;
        }
        let type_ok = if is_dropin_dir {
            matches!(ty, FileType::Directory | FileType::Symlink)
        } else {
            matches!(ty, FileType::RegularFile | FileType::Symlink)
        };
        if !type_ok {
            continue;
        }
        let conf = Path::new(where_).join(format!("{unit}.d/20-portable.conf"));
        let text = match host.dir().read(&conf) {
            Ok(t) => String::from_utf8_lossy(&t).into_owned(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let Some(marked) = parse_marker(text.lines().next().unwrap_or("")) else {
            continue;
        };
        if request.is_some_and(|r| !marker_matches(&marked, r)) {
            continue;
        }
        seen.insert(unit.clone());
        out.push(Found {
            has_unit_file: names.contains(&unit),
            unit,
            images: marked.iter().map(|m| unescape_path(m)).collect(),
        });
    }
    out.sort_by(|a, b| a.unit.cmp(&b.unit));
    Ok(out)
}

/// The options of one detach.
#[derive(Debug, Clone, Default)]
pub struct DetachOptions {
    /// Detach from `/run` instead of `/etc`.
    pub runtime: bool,
    /// Skip the "is active" check.
    pub force: bool,
    /// The extension images the units were attached with (names or in-root paths).
    pub extensions: Vec<String>,
    /// Part of a reattach: units may stay active.
    pub reattach: bool,
}

/// What detach removed.
#[derive(Debug, Clone, Serialize)]
pub struct Detached {
    /// The units detached.
    pub units: Vec<String>,
    /// Every file removed, in order.
    pub changes: Vec<Change>,
}

fn remove(host: &Host, path: &Path, changes: &mut Vec<Change>, first_err: &mut Option<Error>) {
    match host.dir().remove_file(path) {
        Ok(()) => changes.push(Change::new(ChangeKind::Unlink, path, None)),
        Err(e) if e.is_not_found() => {}
        Err(e) => {
            first_err.get_or_insert(e.into());
        }
    }
}

/// Removes the leftovers of an interrupted atomic write (`.#NAME.xxxx`) in a drop-in directory.
fn remove_temp_files(host: &Host, dir: &Path) {
    if let Ok(entries) = host.dir().read_dir(dir) {
        for (name, ty) in entries {
            if ty != FileType::Directory && realms_sys::atomic::is_temp_name(&name) {
                let _ = host.dir().remove_file(dir.join(name));
            }
        }
    }
}

/// Removes the image link (or mixed-mode copy) attach made for `image` in `/etc|/run/portables`.
fn remove_image_link(host: &Host, image: &Path, runtime: bool, changes: &mut Vec<Change>) {
    let link = image_link_path(image, runtime);
    if link == image {
        return;
    }
    match host.dir().symlink_metadata(&link) {
        Ok(Some(m)) if m.file_type().is_symlink() => {
            let ours = host.dir().read_link(&link).is_ok_and(|t| t == image);
            if ours {
                remove(host, &link, changes, &mut None);
            }
        }
        Ok(Some(m)) => {
            // A copy made by --copy=mixed.
            let removed = if m.is_dir() {
                host.host_path(&link)
                    .ok()
                    .is_some_and(|p| realms_sys::fs::remove_dir_all_one_fs(p).is_ok())
            } else {
                host.dir().remove_file(&link).is_ok()
            };
            if removed {
                changes.push(Change::new(ChangeKind::Unlink, &link, None));
            }
        }
        _ => {}
    }
}

/// Detaches the units attached from `image` (a name or path; it need not exist any more).
pub fn detach(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    opts: &DetachOptions,
) -> Result<Detached> {
    let where_ = attached_dir(opts.runtime);
    let request: Vec<String> = std::iter::once(image.to_owned())
        .chain(opts.extensions.iter().cloned())
        .collect();
    let found = scan(host, where_, Some(&request))?;
    if found.is_empty() {
        return Err(Error::NotAttached {
            image: image.to_owned(),
            exts: ext_suffix(&opts.extensions),
        });
    }
    if !opts.reattach && !opts.force {
        let units: Vec<String> = found.iter().map(|f| f.unit.clone()).collect();
        if let Some(u) = systemd.active(&units)?.into_iter().next() {
            return Err(Error::UnitActive(u));
        }
    }
    let mut changes = Vec::new();
    let mut first_err = None;
    let mut images: Vec<PathBuf> = Vec::new();
    for f in &found {
        let unit = Path::new(where_).join(&f.unit);
        let dropins = PathBuf::from(format!("{}.d", unit.display()));
        remove(host, &unit, &mut changes, &mut first_err);
        for conf in ["10-profile.conf", "20-portable.conf"] {
            remove(host, &dropins.join(conf), &mut changes, &mut first_err);
        }
        remove_temp_files(host, &dropins);
        match host.dir().remove_dir(&dropins) {
            Ok(()) => changes.push(Change::new(ChangeKind::Unlink, &dropins, None)),
            Err(e) if e.is_not_found() || e.raw_os_error() == Some(libc_enotempty()) => {}
            Err(e) => {
                first_err.get_or_insert(e.into());
            }
        }
        for img in &f.images {
            let p = PathBuf::from(img);
            if p.is_absolute() && !images.contains(&p) {
                images.push(p);
            }
        }
    }
    for img in &images {
        remove_image_link(host, img, opts.runtime, &mut changes);
    }
    if host.dir().remove_dir(where_).is_ok() {
        changes.push(Change::new(ChangeKind::Unlink, where_, None));
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Detached {
        units: found.into_iter().map(|f| f.unit).collect(),
        changes,
    })
}

const fn libc_enotempty() -> i32 {
    39
}
