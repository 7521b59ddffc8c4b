//! Attach: write exactly what portablectl 252 writes — per unit `U.d/20-portable.conf`,
//! `U.d/10-profile.conf` and the unit file in the attach directory, then the image link in
//! `/etc|/run/portables` — planned first and committed through a journal ([`crate::txn`]): an
//! error removes what was written, a kill is finished by the next command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use realms_sys::failpoint;
use serde::Serialize;

use crate::changes::{Change, ChangeKind};
use crate::error::{Error, Result};
use crate::extract::UnitSource;
use crate::image::Image;
use crate::layout::{Host, UNIT_SEARCH_PATH, attached_dir, image_link_path};
use crate::load::{Loaded, load};
use crate::marker::{DropIn, Layer};
use crate::systemd::Systemd;
use crate::txn::{Op, Plan};

/// How unit files, the profile and the image get into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Unit files copied, profile symlinked, image symlinked.
    #[default]
    Auto,
    /// Unit files and profile copied, image symlinked.
    Copy,
    /// Unit files (of directory images) and profile symlinked, image symlinked.
    Symlink,
    /// Unit files copied, profile symlinked, image copied into `/etc|/run/portables`.
    Mixed,
}

impl CopyMode {
    /// The names `--copy=` takes, as `--copy=help` lists them.
    pub const NAMES: [&'static str; 4] = ["auto", "copy", "symlink", "mixed"];
}

impl std::str::FromStr for CopyMode {
    type Err = Error;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "auto" => Ok(CopyMode::Auto),
            "copy" => Ok(CopyMode::Copy),
            "symlink" => Ok(CopyMode::Symlink),
            "mixed" => Ok(CopyMode::Mixed),
            other => Err(Error::BadCopyMode(other.to_owned())),
        }
    }
}

/// The options of one attach.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// The security profile whose drop-in the units get (`default`, `strict`, ...).
    pub profile: String,
    /// How unit files, the profile and the image get into place.
    pub copy: CopyMode,
    /// Attach below `/run` (until the next reboot) instead of `/etc`.
    pub runtime: bool,
    /// Replace existing files and skip portablectl's safety checks.
    pub force: bool,
    /// Extension images (names or in-root paths), in order.
    pub extensions: Vec<String>,
    /// Part of a reattach: no "exists on the host" / "is active" checks.
    pub reattach: bool,
}

/// What attach did: the changes, and a profile Realms installed because the host had none.
#[derive(Debug, Clone, Serialize)]
pub struct Attached {
    /// The in-root path of the image attached.
    pub image: PathBuf,
    /// Every file written, linked or created, in order.
    pub changes: Vec<Change>,
    /// A built-in profile Realms installed because the host had none, if any.
    pub installed_profile: Option<PathBuf>,
    /// What became of the images' root hash signatures (raw images with a `.roothash.p7s`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<crate::raw::SignatureCheck>,
}

/// Whether a unit file `name` (or, for an instance, its template) exists in the host's unit
/// search path.
fn exists_on_host(host: &Host, name: &str) -> bool {
    let template = realms_unit::UnitName::parse(name)
        .ok()
        .and_then(|u| u.template());
    UNIT_SEARCH_PATH.iter().any(|dir| {
        std::iter::once(name).chain(template.as_deref()).any(|n| {
            host.dir()
                .symlink_metadata(Path::new(dir).join(n))
                .ok()
                .flatten()
                .is_some()
        })
    })
}

fn refuse_existing(host: &Host, systemd: &Systemd, loaded: &Loaded) -> Result<()> {
    let names: Vec<String> = loaded.units.keys().cloned().collect();
    if let Some(n) = names.iter().find(|n| exists_on_host(host, n)) {
        return Err(Error::UnitExists(n.clone()));
    }
    if let Some(n) = systemd.active(&names)?.into_iter().next() {
        return Err(Error::UnitActiveOnAttach(n));
    }
    Ok(())
}

/// Attach context shared by the units of one image.
struct Ctx<'a> {
    host: &'a Host,
    opts: &'a AttachOptions,
    root: Layer<'a>,
    exts: Vec<Layer<'a>>,
    where_: &'static str,
    etc_os_release: bool,
    /// Paths the plan removes first (the detach half of a reattach): they count as absent.
    removed: &'a BTreeSet<PathBuf>,
}

impl Ctx<'_> {
    /// Whether `path` is there once the removals planned before have happened.
    fn present(&self, path: &Path) -> Result<bool> {
        Ok(!self.removed.contains(path) && self.host.dir().symlink_metadata(path)?.is_some())
    }

    fn mkdir(&self, path: &Path, plan: &mut Plan, unit: Option<&str>) -> Result<()> {
        let planned = plan
            .steps
            .iter()
            .any(|s| matches!(&s.op, Op::Mkdir { path: p } if p == path));
        if planned || self.present(path)? {
            return Ok(());
        }
        let change = Change::new(ChangeKind::Mkdir, path, None);
        plan.push(Op::Mkdir { path: path.into() }, Some(change), unit);
        Ok(())
    }

    /// Refuses to replace an existing file unless `--force`.
    fn free(&self, path: &Path) -> Result<()> {
        if !self.opts.force && self.present(path)? {
            return Err(Error::io(
                "creating",
                path,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        Ok(())
    }

    fn unit(&self, unit: &UnitSource, plan: &mut Plan) -> Result<()> {
        let name = Some(unit.name.as_str());
        let path = Path::new(self.where_).join(&unit.name);
        let dropin_dir = PathBuf::from(format!("{}.d", path.display()));
        self.mkdir(&dropin_dir, plan, name)?;
        let dropin = DropIn {
            root: self.root,
            extensions: &self.exts,
            unit: &unit.name,
            from: &unit.image,
            host_etc_os_release: self.etc_os_release,
            force: self.opts.force,
        };
        let conf = dropin_dir.join("20-portable.conf");
        plan.push(
            Op::Write {
                path: conf.clone(),
                bytes: dropin.text().into_bytes(),
                mode: 0o644,
            },
            Some(Change::new(ChangeKind::Write, &conf, None)),
            name,
        );
        if let Some(profile) = crate::profile::find(self.host, &self.opts.profile, &unit.name) {
            let link = dropin_dir.join("10-profile.conf");
            self.free(&link)?;
            if self.opts.copy == CopyMode::Copy {
                let bytes = self.host.dir().read(&profile)?;
                let change = Change::new(ChangeKind::Copy, &link, Some(profile));
                let op = Op::Write {
                    path: link,
                    bytes,
                    mode: 0o644,
                };
                plan.push(op, Some(change), name);
            } else {
                let change = Change::new(ChangeKind::Symlink, &link, Some(profile.clone()));
                let op = Op::Symlink {
                    path: link,
                    target: profile,
                };
                plan.push(op, Some(change), name);
            }
        }
        self.free(&path)?;
        match (&unit.source, self.opts.copy) {
            (Some(source), CopyMode::Symlink) => {
                let change = Change::new(ChangeKind::Symlink, &path, Some(source.clone()));
                let op = Op::Symlink {
                    path,
                    target: source.clone(),
                };
                plan.push(op, Some(change), name);
            }
            _ => {
                let change = Change::new(ChangeKind::Copy, &path, unit.source.clone());
                let op = Op::Write {
                    path,
                    bytes: unit.contents.clone(),
                    mode: 0o644,
                };
                plan.push(op, Some(change), name);
            }
        }
        Ok(())
    }

    /// Links (or, in mixed mode, copies) an image into `/etc|/run/portables`, unless something
    /// is there already.
    fn image_link(&self, image: &Path, plan: &mut Plan) -> Result<()> {
        let link = image_link_path(image, self.opts.runtime);
        if link == image || self.present(&link)? {
            return Ok(());
        }
        let parent = link.parent().expect("an image link has a directory");
        if !self.present(parent)? {
            plan.push(
                Op::Mkdir {
                    path: parent.into(),
                },
                None,
                None,
            );
        }
        if self.opts.copy == CopyMode::Mixed {
            let change = Change::new(ChangeKind::Copy, &link, Some(image.to_owned()));
            let op = Op::CopyImage {
                path: link,
                source: image.to_owned(),
            };
            plan.push(op, Some(change), None);
        } else {
            let change = Change::new(ChangeKind::Symlink, &link, Some(image.to_owned()));
            let op = Op::Symlink {
                path: link,
                target: image.to_owned(),
            };
            plan.push(op, Some(change), None);
        }
        Ok(())
    }
}

/// Plans an attach of `image` (a name or in-root path) with the units `matches` selects onto
/// `plan`, counting the paths in `removed` (removed earlier in the same plan) as absent.
/// Returns the image's in-root path, the profile installed because the host had none, and what
/// became of the images' root hash signatures.
pub fn plan_attach(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    matches: &[String],
    opts: &AttachOptions,
    removed: &BTreeSet<PathBuf>,
    plan: &mut Plan,
) -> Result<(PathBuf, Option<PathBuf>, Vec<crate::raw::SignatureCheck>)> {
    let loaded = load(host, image, &opts.extensions, matches, opts.force, true)?;
    loaded.check_matches(matches, &loaded.extension_paths())?;
    if !opts.reattach && !opts.force {
        refuse_existing(host, systemd, &loaded)?;
    }
    let installed_profile = crate::profile::ensure_installed(host, &opts.profile)?;
    let ext_images: Vec<&Image> = loaded.extensions.iter().map(|(i, _)| i).collect();
    let ctx = Ctx {
        host,
        opts,
        root: Layer {
            path: &loaded.image.path,
            kind: loaded.image.kind,
        },
        exts: ext_images
            .iter()
            .map(|i| Layer {
                path: &i.path,
                kind: i.kind,
            })
            .collect(),
        where_: attached_dir(opts.runtime),
        etc_os_release: host.exists("/etc/os-release"),
        removed,
    };
    ctx.mkdir(Path::new(ctx.where_), plan, None)?;
    for unit in loaded.units.values() {
        ctx.unit(unit, plan).map_err(|e| Error::AttachUnit {
            unit: unit.name.clone(),
            source: Box::new(e),
        })?;
    }
    for ext in &ext_images {
        ctx.image_link(&ext.path, plan)?;
    }
    ctx.image_link(&loaded.image.path, plan)?;
    Ok((
        loaded.image.path.clone(),
        installed_profile,
        loaded.signatures(),
    ))
}

/// Attaches `image` (a name or in-root path) with the units `matches` selects: planned, then
/// committed through the journal ([`crate::txn`]), so a killed attach is absent or complete.
pub fn attach(
    host: &Host,
    systemd: &Systemd,
    image: &str,
    matches: &[String],
    opts: &AttachOptions,
) -> Result<Attached> {
    let _lock = crate::txn::lock(host)?;
    crate::txn::recover_locked(host)?;
    let mut plan = Plan::default();
    let (image, installed_profile, signatures) = plan_attach(
        host,
        systemd,
        image,
        matches,
        opts,
        &BTreeSet::new(),
        &mut plan,
    )?;
    failpoint::hit("portable-attach-planned");
    let changes = plan.commit(host, opts.runtime)?;
    Ok(Attached {
        image,
        changes,
        installed_profile,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detach::{DetachOptions, detach};
    use crate::manage::{State, state};

    /// A `--root` with an image `foo` in /var/lib/portables and the default profile.
    fn root() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("var/lib/portables/foo");
        let units = img.join("usr/lib/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::create_dir_all(img.join("etc")).unwrap();
        std::fs::write(img.join("usr/lib/os-release"), "ID=foo\n").unwrap();
        for (name, text) in [
            ("foo.service", "[Service]\nExecStart=/x\n"),
            ("foo.socket", "[Socket]\nListenStream=/run/foo\n"),
            ("foobar.service", "[Service]\nExecStart=/x\n"),
        ] {
            std::fs::write(units.join(name), text).unwrap();
        }
        let profile = tmp.path().join("usr/lib/systemd/portable/profile/default");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::write(profile.join("service.conf"), "[Service]\nDynamicUser=yes\n").unwrap();
        tmp
    }

    #[test]
    fn attach_then_detach_leaves_nothing() {
        let tmp = root();
        let host = Host::open(tmp.path()).unwrap();
        let systemd = Systemd::detect(&host);
        assert!(!systemd.is_running());
        let opts = AttachOptions {
            profile: "default".into(),
            runtime: true,
            ..AttachOptions::default()
        };
        let done = attach(&host, &systemd, "foo", &["foo".into()], &opts).unwrap();
        let attached = tmp.path().join("run/systemd/system.attached");
        assert!(attached.join("foo.service").is_file());
        assert!(attached.join("foo.socket").is_file());
        assert!(!attached.join("foobar.service").exists());
        // Sockets get only the marker; no profile exists for them.
        assert!(!attached.join("foo.socket.d/10-profile.conf").exists());
        let socket_conf = std::fs::read_to_string(attached.join("foo.socket.d/20-portable.conf"));
        assert_eq!(
            socket_conf.unwrap(),
            "# Drop-in created for image '/var/lib/portables/foo', do not edit.\n"
        );
        // /etc/os-release is missing on this "host", so the drop-in binds /usr/lib/os-release.
        let conf =
            std::fs::read_to_string(attached.join("foo.service.d/20-portable.conf")).unwrap();
        assert!(conf.contains("BindReadOnlyPaths=/usr/lib/os-release:/run/host/os-release\n"));
        assert_eq!(done.changes.len(), 1 + 4 + 3 + 1);
        assert_eq!(
            state(&host, &systemd, "foo", &[]).unwrap(),
            State::AttachedRuntime
        );
        assert_eq!(
            state(&host, &systemd, "other", &[]).unwrap(),
            State::Detached
        );
        // Persistent detach finds nothing: it is attached at runtime.
        let persistent = DetachOptions::default();
        assert!(matches!(
            detach(&host, &systemd, "foo", &persistent),
            Err(Error::NotAttached { .. })
        ));
        let runtime = DetachOptions {
            runtime: true,
            ..DetachOptions::default()
        };
        let gone = detach(&host, &systemd, "/somewhere/else/foo", &runtime).unwrap();
        assert_eq!(gone.units, ["foo.service", "foo.socket"]);
        assert!(!attached.exists());
        assert!(std::fs::symlink_metadata(tmp.path().join("run/portables/foo")).is_err());
    }

    #[test]
    fn copy_modes_choose_copies_or_symlinks() {
        for (mode, unit_is_link, profile_is_link) in [
            (CopyMode::Auto, false, true),
            (CopyMode::Copy, false, false),
            (CopyMode::Symlink, true, true),
            (CopyMode::Mixed, false, true),
        ] {
            let tmp = root();
            let host = Host::open(tmp.path()).unwrap();
            let systemd = Systemd::detect(&host);
            let opts = AttachOptions {
                profile: "default".into(),
                copy: mode,
                ..AttachOptions::default()
            };
            attach(&host, &systemd, "foo", &[], &opts).unwrap();
            let dir = tmp.path().join("etc/systemd/system.attached");
            let is_link = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap().is_symlink();
            assert_eq!(is_link("foo.service"), unit_is_link, "{mode:?}");
            assert_eq!(
                is_link("foo.service.d/10-profile.conf"),
                profile_is_link,
                "{mode:?}"
            );
            if mode == CopyMode::Symlink {
                let target = std::fs::read_link(dir.join("foo.service")).unwrap();
                assert_eq!(
                    target,
                    Path::new("/var/lib/portables/foo/usr/lib/systemd/system/foo.service")
                );
            }
            // An empty match list takes every unit type a portable image may have.
            assert!(std::fs::symlink_metadata(dir.join("foobar.service")).is_ok());
        }
    }
}
