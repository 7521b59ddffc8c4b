//! `realms update-appimg` and the image operations that must know about realms: a container
//! on a writable copy of the image; on success the copy atomically replaces the image (the old
//! one kept as `IMG.appimg.prev`), otherwise it is discarded. Realms made before are unaffected:
//! snapshots are independent, and overlay realms are re-pointed at the version they were made on.

use realms_sys::IoContext;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use realms_image::meta::{Meta, compare_versions};
use realms_image::sealed::{self, BuildOptions, Filesystem};
use realms_image::{ImageInfo, ImageKind, ImageStore, Users, keys};
use realms_sys::cmd::Cmd;

use crate::pins::{overlay_pins, owners_of};
use crate::store::RealmStore;
use crate::{Error, Result, launch::Executor};
use realms_sys::event::{Event, Report};

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The command exited 0 and the image was replaced.
    Committed,
    /// The command failed with this exit code; the image is unchanged.
    Discarded(i32),
}

/// Updates image `image` by running `command` (a root shell when empty) in a container on a
/// writable copy of it. A block or sealed image is unpacked into a tree first and rebuilt (and
/// resealed with a fresh salt, with `key` or the key that signed it) afterwards.
pub fn update_appimg(
    store: &RealmStore,
    image: &str,
    command: &[OsString],
    key: Option<&Path>,
    say: &dyn Report,
) -> Result<UpdateOutcome> {
    update_appimg_with(store, image, command, key, say, &mut |cmd, _| {
        let status = cmd.status_inherit()?;
        Ok(if status.success() {
            0
        } else {
            status.code().unwrap_or(1)
        })
    })
}

/// Runs the update's container: gets its nspawn command line and the staged tree it works
/// on, returns the exit status that decides (0 commits, anything else discards).
pub type RunContainer<'a> = &'a mut dyn FnMut(Cmd, &Path) -> Result<i32>;

/// [`update_appimg`] with the container run by `run` (tests change the staged tree instead):
/// everything around it (staging, the decision to commit or discard, rebuilding, installing
/// and keeping the previous version) is the same.
pub fn update_appimg_with(
    store: &RealmStore,
    image: &str,
    command: &[OsString],
    key: Option<&Path>,
    say: &dyn Report,
    run: RunContainer<'_>,
) -> Result<UpdateOutcome> {
    let _lock = store.lock()?;
    let images = store.images();
    let info = images.get(image)?;
    let rebuild = match info.kind {
        ImageKind::Tree => None,
        _ => Some(rebuild_options(store, &info, key)?),
    };
    let staged = match info.kind {
        ImageKind::Tree => images.stage_copy(image)?,
        _ => unpack(store, &info)?,
    };
    let machine = format!("{image}-appimg-update");
    if command.is_empty() {
        say.report(Event::progress(format!(
            "Entering root shell on {image} appimg"
        )));
        say.report(Event::progress(
            "The shell's exit status decides: `exit 0` commits the changes to the image, \
             `exit 1` discards them (a plain `exit` passes on the status of the last command)",
        ));
    } else {
        say.report(Event::progress(format!(
            "Running {} on {image} appimg",
            command_line(command)
        )));
    }
    let cmd = container_command(store, &machine, staged.path(), command);
    let code = run(cmd, staged.path())?;
    realms_sys::failpoint::hit("realm-update-ran");
    if code != 0 {
        say.report(Event::progress(format!(
            "The update exited with status {code}; {image} appimg is unchanged"
        )));
        return Ok(UpdateOutcome::Discarded(code));
    }
    let staged = match rebuild {
        None => staged,
        Some(mut opts) => {
            say.report(Event::progress(format!(
                "Rebuilding {image} appimg as {}",
                opts.filesystem.name()
            )));
            opts.tree = staged.path().to_path_buf();
            let (built, _) = sealed::build(images, &opts, &realms_sys::event::Silent)?;
            realms_sys::failpoint::hit("realm-update-rebuilt");
            drop(staged);
            built
        }
    };
    install(store, image, staged)?;
    let version = realms_image::record::Record::read(&images.path(image)).version;
    say.report(Event::progress(format!(
        "Updated {image} appimg{}; the previous version is kept as {image}.appimg.prev \
         (`realms appimg rollback {image}` goes back to it)",
        version
            .map(|v| format!(" to version {v}"))
            .unwrap_or_default()
    )));
    Ok(UpdateOutcome::Committed)
}

/// The nspawn command line of an update: `command` in a container on `tree`, or a login shell.
fn container_command(store: &RealmStore, machine: &str, tree: &Path, command: &[OsString]) -> Cmd {
    let mut cmd = Cmd::new("systemd-nspawn");
    // Killed, we take the container with us: nspawn answers SIGTERM by killing its payload
    // (SIGKILL would leave the payload running on a tree the next command deletes).
    cmd.parent_death_signal(realms_sys::proc::Signal::TERM);
    cmd.args([
        "--quiet",
        "--resolv-conf=bind-host",
        "--timezone=off",
        "--link-journal=no",
    ])
    .arg(format!("--machine={machine}"))
    .arg("--directory")
    .arg(tree);
    if store.executor() == Executor::Direct {
        cmd.args(["--register=no", "--keep-unit"]);
    }
    if command.is_empty() {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            // Without a terminal nspawn would give the shell a pty that nothing writes to.
            cmd.arg("--console=pipe");
        }
        cmd.args(["/bin/bash", "-l"]);
    } else {
        cmd.arg("--").args(command);
    }
    cmd
}

/// How to rebuild a block or sealed image after an update: same filesystem, next version,
/// resealed with `key` or with the private key of the key that signed it.
fn rebuild_options(
    store: &RealmStore,
    info: &ImageInfo,
    key: Option<&Path>,
) -> Result<BuildOptions> {
    let (meta, _) = Meta::load(&info.path.join("image.meta"))?;
    let filesystem =
        Filesystem::parse(&meta.filesystem).ok_or_else(|| Error::UnknownFilesystem {
            image: info.name.clone(),
            filesystem: meta.filesystem.clone(),
        })?;
    let key = match (info.kind, key) {
        (ImageKind::Sealed, Some(k)) => Some(keys::resolve_private(store.root(), k)?),
        (ImageKind::Sealed, None) => {
            let signer = meta.signed_by.clone().unwrap_or_default();
            let default = store
                .root()
                .join(keys::PRIVATE_DIR)
                .join(format!("{signer}.key"));
            if signer.is_empty() || !default.exists() {
                return Err(Error::NeedsPrivateKey {
                    image: info.name.clone(),
                    looked_for: default.clone(),
                });
            }
            Some(default)
        }
        _ => None,
    };
    Ok(BuildOptions {
        name: info.name.clone(),
        tree: PathBuf::new(),
        filesystem,
        key,
        version: Some(realms_image::meta::next_version(&meta.version)),
        fec_roots: meta.verity.as_ref().and_then(|v| v.fec_roots),
    })
}

/// A writable tree with the content of a block or sealed image (verified first if sealed).
fn unpack(store: &RealmStore, info: &ImageInfo) -> Result<realms_image::Staged> {
    if info.kind == ImageKind::Sealed {
        sealed::verify(store.root(), info)?;
    }
    let (meta, _) = Meta::load(&info.path.join("image.meta"))?;
    let tree = store.images().stage_empty(&format!("{}-tree", info.name))?;
    let mnt = store
        .images()
        .dir()
        .join(format!(".mount-{}-{}", info.name, std::process::id()));
    fs::create_dir_all(&mnt).ctx("creating", &mnt)?;
    let copied = (|| {
        let guard = realms_sys::mount::mount_image(
            info.path.join("image.raw"),
            &mnt,
            &meta.filesystem,
            true,
        )?;
        realms_sys::fs::copy_tree(&mnt, tree.path())?;
        guard.unmount()
    })();
    let _ = fs::remove_dir(&mnt);
    copied?;
    Ok(tree)
}

/// What `realms appimg build` is asked for.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The image to build (installed as `NAME.appimg`).
    pub name: String,
    /// A tree image of the store, or else a directory: what goes into the image.
    pub from: String,
    /// The filesystem of the image.
    pub filesystem: Filesystem,
    /// Seal it: dm-verity and a signature with `key`.
    pub seal: bool,
    /// The signing key: a key name, or a private key file (used only when sealing).
    pub key: Option<PathBuf>,
    /// The version to record; the next one after the installed image's when `None`.
    pub version: Option<String>,
    /// Replace an installed newer version.
    pub allow_downgrade: bool,
    /// Sealed: carry forward error correction with this many parity bytes (2 to 24).
    pub fec_roots: Option<u32>,
}

/// `realms appimg build`, whole: resolves `--from` and the key, then [`build_image`].
pub fn build(store: &RealmStore, request: &BuildRequest, progress: &dyn Report) -> Result<Meta> {
    let tree = build_source(store, &request.from)?;
    let key = request
        .key
        .as_deref()
        .filter(|_| request.seal)
        .map(|k| keys::resolve_private(store.root(), k))
        .transpose()?;
    let opts = BuildOptions {
        name: request.name.clone(),
        tree,
        filesystem: request.filesystem,
        key,
        version: request.version.clone(),
        fec_roots: request.fec_roots,
    };
    build_image(store, &opts, request.allow_downgrade, progress)
}

/// `realms appimg build`: builds a block or sealed image and installs it as NAME. An installed
/// image is replaced (kept as NAME.appimg.prev) only by a newer version, unless
/// `allow_downgrade`; that is checked before anything is built.
pub fn build_image(
    store: &RealmStore,
    opts: &BuildOptions,
    allow_downgrade: bool,
    progress: &dyn Report,
) -> Result<Meta> {
    let _lock = store.lock()?;
    let images = store.images();
    let installed = images
        .path(&opts.name)
        .exists()
        .then(|| realms_image::record::Record::read(&images.path(&opts.name)).version)
        .flatten();
    let mut opts = opts.clone();
    let version = match &opts.version {
        Some(v) => v.clone(),
        None => realms_image::record::next_after([installed.as_deref()]),
    };
    if let Some(installed) = installed
        && compare_versions(&version, &installed).is_lt()
        && !allow_downgrade
    {
        return Err(realms_image::Error::Downgrade {
            name: opts.name.clone(),
            installed,
            new: version,
        }
        .into());
    }
    if opts.key.is_some() {
        realms_image::seals::check_build(images.dir(), &opts.name, &version, allow_downgrade)?;
    } else if realms_image::seals::is_sealed(images.dir(), &opts.name) {
        return Err(realms_image::Error::SealStripped {
            record: realms_image::seals::path(images.dir(), &opts.name),
            name: opts.name.clone(),
        }
        .into());
    }
    opts.version = Some(version);
    let (staged, meta) = sealed::build(images, &opts, progress)?;
    if images.path(&opts.name).exists() {
        install(store, &opts.name, staged)?;
    } else {
        images.commit_new(staged, &opts.name)?;
    }
    Ok(meta)
}

/// The tree `realms appimg build --from FROM` builds from: the tree image FROM of the store,
/// or else the directory FROM.
pub fn build_source(store: &RealmStore, from: &str) -> Result<PathBuf> {
    if realms_image::validate_name("image", from).is_ok()
        && let Ok(info) = store.images().get(from)
    {
        if info.kind != ImageKind::Tree {
            return Err(Error::NotTreeImage {
                image: from.to_string(),
                kind: if info.kind == ImageKind::Sealed {
                    "sealed"
                } else {
                    "block"
                },
            });
        }
        return Ok(info.path);
    }
    let dir = PathBuf::from(from);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(realms_image::Error::NoBuildSource {
            name: from.to_string(),
        }
        .into())
    }
}

/// Makes a staged image the current `image`, keeping the old one for realms still on it.
fn install(store: &RealmStore, image: &str, staged: realms_image::Staged) -> Result<()> {
    let images = store.images();
    let users = overlay_users(store, images, image)?;
    images.commit_update(staged, image, &users)?;
    Ok(())
}

/// `realms appimg rollback IMG`: swaps the image and its previous version (refused when it
/// was rolled back already); returns the version now current.
pub fn rollback(store: &RealmStore, image: &str, say: &dyn Report) -> Result<Option<String>> {
    let _lock = store.lock()?;
    let images = store.images();
    let users = overlay_users(store, images, image)?;
    let (from, to) = images.rollback(image, &users)?;
    match (&from, &to) {
        (Some(from), Some(to)) => say.report(Event::progress(format!(
            "Rolled {image} appimg back from version {from} to version {to} (now current); \
             version {from} is kept as {image}.appimg.prev"
        ))),
        (Some(from), None) => say.report(Event::progress(format!(
            "Rolled {image} appimg back from version {from} to its previous version \
             (made before versions were recorded); version {from} is kept as {image}.appimg.prev"
        ))),
        _ => say.report(Event::progress(format!(
            "Rolled {image} appimg back to its previous version"
        ))),
    }
    Ok(to)
}

/// `realms appimg unseal IMG`: forgets that the image name was sealed and its highest accepted
/// version ([`realms_image::seals`]); returns false when there was no such record.
pub fn unseal(store: &RealmStore, image: &str, say: &dyn Report) -> Result<bool> {
    let _lock = store.lock()?;
    let forgot = realms_image::seals::unseal(store.images().dir(), image)?;
    say.report(Event::progress(if forgot {
        format!("Forgot that appimg '{image}' was sealed: an unsealed or older image may now take its name")
    } else {
        format!("appimg '{image}' was not recorded as sealed; nothing changed")
    }));
    Ok(forgot)
}

/// `realms appimg remove IMG`: refused while an overlay realm sits on it.
pub fn remove_image(store: &RealmStore, image: &str, say: &dyn Report) -> Result<()> {
    let _lock = store.lock()?;
    store.images().get(image)?;
    let (_, snapshots) = store.image_users(image)?;
    let kept = store.images().kept_versions(image);
    let versions: Vec<PathBuf> = [store.images().path(image), store.images().prev_path(image)]
        .into_iter()
        .chain(kept.iter().cloned())
        .collect();
    let pins = overlay_pins(store)?;
    let blocking: Vec<String> = versions.iter().flat_map(|v| owners_of(&pins, v)).collect();
    if !blocking.is_empty() {
        return Err(Error::ImageInUse {
            image: image.to_string(),
            realms: quote_list(&blocking),
        });
    }
    store.images().remove(image, &kept)?;
    say.report(Event::progress(format!("Removed {image} appimg")));
    if !snapshots.is_empty() {
        say.report(Event::progress(format!(
            "Realm(s) {} were made from it; they are independent btrfs snapshots and keep working",
            quote_list(&snapshots)
        )));
    }
    Ok(())
}

/// An older version of an image kept for the overlay realms made on it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kept {
    /// Its directory.
    pub path: PathBuf,
    /// Its version.
    pub version: Option<String>,
    /// The overlay realms on it (`realms rebase NAME` moves them to the current version).
    pub realms: Vec<String>,
}

/// The versions of `image` before `.prev` that are kept, and who uses them.
pub fn kept(store: &RealmStore, image: &str) -> Result<Vec<Kept>> {
    let pins = overlay_pins(store)?;
    Ok(store
        .images()
        .kept_versions(image)
        .into_iter()
        .map(|path| Kept {
            version: realms_image::record::Record::read(&path).version,
            realms: owners_of(&pins, &path),
            path,
        })
        .collect())
}

/// The `lower` links (of overlay realms and their snapshots) on the current and on the
/// previous version of an image.
fn overlay_users(store: &RealmStore, images: &ImageStore, image: &str) -> Result<Users> {
    let (current_path, prev_path) = (images.path(image), images.prev_path(image));
    let pins = overlay_pins(store)?;
    let on = |version: &Path| -> Vec<PathBuf> {
        pins.iter()
            .filter(|p| p.lower == version)
            .map(|p| p.link.clone())
            .collect()
    };
    Ok(Users {
        current: on(&current_path),
        prev: on(&prev_path),
    })
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn command_line(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
