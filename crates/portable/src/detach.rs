//! Detach and the attachment state: finding the units an image attached (by the marker line of
//! their `20-portable.conf`, also when only a drop-in directory is left, systemd #23481) and
//! removing exactly what attach created.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use realms_sys::failpoint;
use realms_sys::root::FileType;
use serde::Serialize;

use crate::changes::{Change, ChangeKind};
use crate::error::{Error, Result, ext_suffix};
use crate::layout::{Host, attached_dir, image_link_path};
use crate::marker::{parse_marker, unescape_path};
use crate::name::marker_matches;
use crate::systemd::Systemd;
use crate::txn::{Op, Plan};

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

/// Plans removing `path` (a file or symlink) if it is there.
fn remove(host: &Host, path: &Path, plan: &mut Plan) -> Result<bool> {
    let there = host.dir().symlink_metadata(path)?.is_some();
    let change = there.then(|| Change::new(ChangeKind::Unlink, path, None));
    plan.push(Op::Remove { path: path.into() }, change, None);
    Ok(there)
}

/// Plans removing the image link (or mixed-mode copy) attach made for `image` in
/// `/etc|/run/portables`.
fn remove_image_link(
    host: &Host,
    image: &Path,
    runtime: bool,
    plan: &mut Plan,
    removed: &mut BTreeSet<PathBuf>,
) {
    let link = image_link_path(image, runtime);
    if link == image {
        return;
    }
    let op = match host.dir().symlink_metadata(&link) {
        Ok(Some(m)) if m.file_type().is_symlink() => {
            if !host.dir().read_link(&link).is_ok_and(|t| t == image) {
                return;
            }
            Op::Remove { path: link.clone() }
        }
        // A copy made by --copy=mixed.
        Ok(Some(_)) => Op::RemoveImage { path: link.clone() },
        _ => return,
    };
    plan.push(op, Some(Change::new(ChangeKind::Unlink, &link, None)), None);
    removed.insert(link);
}

/// Plans detaching the units attached from `image` (a name or path; it need not exist any
/// more) onto `plan`; returns the units and every path the plan removes.
pub fn plan_detach(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    opts: &DetachOptions,
    plan: &mut Plan,
) -> Result<(Vec<String>, BTreeSet<PathBuf>)> {
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
    let mut removed = BTreeSet::new();
    let mut images: Vec<PathBuf> = Vec::new();
    for f in &found {
        let unit = Path::new(where_).join(&f.unit);
        let dropins = PathBuf::from(format!("{}.d", unit.display()));
        for path in [
            unit.clone(),
            dropins.join("10-profile.conf"),
            dropins.join("20-portable.conf"),
        ] {
            remove(host, &path, plan)?;
            removed.insert(path);
        }
        plan.push(
            Op::RemoveTemps {
                dir: dropins.clone(),
            },
            None,
            None,
        );
        // The drop-in directory goes if nothing but ours (and temporary files) is in it.
        let left = host.dir().read_dir(&dropins).map(|entries| {
            entries.into_iter().any(|(n, _)| {
                let p = dropins.join(&n);
                !removed.contains(&p) && !realms_sys::atomic::is_temp_name(&n)
            })
        });
        let change =
            matches!(left, Ok(false)).then(|| Change::new(ChangeKind::Unlink, &dropins, None));
        if change.is_some() {
            removed.insert(dropins.clone());
        }
        plan.push(Op::RemoveDir { path: dropins }, change, None);
        for img in &f.images {
            let p = PathBuf::from(img);
            if p.is_absolute() && !images.contains(&p) {
                images.push(p);
            }
        }
    }
    for img in &images {
        remove_image_link(host, img, opts.runtime, plan, &mut removed);
    }
    let emptied = host.dir().read_dir(where_).is_ok_and(|entries| {
        entries
            .iter()
            .all(|(n, _)| removed.contains(&Path::new(where_).join(n)))
    });
    let change = emptied.then(|| Change::new(ChangeKind::Unlink, where_, None));
    if emptied {
        removed.insert(where_.into());
    }
    plan.push(
        Op::RemoveDir {
            path: where_.into(),
        },
        change,
        None,
    );
    Ok((found.into_iter().map(|f| f.unit).collect(), removed))
}

/// Detaches the units attached from `image` (a name or path; it need not exist any more):
/// planned, then committed through the journal ([`crate::txn`]), so a killed detach is finished
/// by the next command.
pub fn detach(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    opts: &DetachOptions,
) -> Result<Detached> {
    let _lock = crate::txn::lock(host)?;
    crate::txn::recover_locked(host)?;
    let mut plan = Plan::default();
    let (units, _) = plan_detach(host, systemd, image, opts, &mut plan)?;
    failpoint::hit("portable-detach-planned");
    let changes = plan.commit(host, opts.runtime)?;
    Ok(Detached { units, changes })
}
