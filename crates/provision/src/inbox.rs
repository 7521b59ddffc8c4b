//! `realms provision inbox`: archives dropped at `/opt/inbox/PROFILE/USER/NAME_VERSION.EXT`
//! (by Ignition's `storage.files` or by hand) are unpacked with the same hostile-input checks,
//! attached with PROFILE, their services given `User=USER`, enabled and started; a processed
//! archive moves to `/opt/inbox/.done/`, a refused one to `/opt/inbox/.failed/` beside a
//! `.error` file saying why. The inbox is root's: it is trusted as a local source (no index).

use realms_sys::IoContext;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::InboxProblem;
use crate::index::Ext;
use crate::install::{PORTABLES, STAGING_PREFIX};
use crate::manifest::InstallMethod;
use crate::state::{Installed, State};
use crate::unpack::{Limits, decoder, unpack_tar};
use crate::{Error, Result};
use realms_sys::event::{Event, Report};

/// The inbox, under the root.
pub const INBOX: &str = "opt/inbox";
/// The most an inbox archive may unpack to.
const MAX_UNPACKED: u64 = 64 << 30;

/// What happened to one archive.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Processed {
    /// The archive, where it was dropped.
    pub archive: PathBuf,
    /// The package name.
    pub package: String,
    /// Installed, or the error.
    pub installed: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The archives waiting: `(profile, user, path)`.
fn waiting(inbox: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(p)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        v.sort();
        v
    };
    for profile in dirs(inbox).into_iter().filter(|p| p.is_dir()) {
        for user in dirs(&profile).into_iter().filter(|p| p.is_dir()) {
            for file in dirs(&user).into_iter().filter(|p| p.is_file()) {
                let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name(&profile), name(&user), file));
            }
        }
    }
    out
}

/// Whether `user` has an account in the root's /etc/passwd.
fn user_exists(root: &Path, user: &str) -> bool {
    fs::read_to_string(root.join("etc/passwd"))
        .map(|t| t.lines().any(|l| l.split(':').next() == Some(user)))
        .unwrap_or(false)
}

/// Processes every archive waiting in the inbox once.
pub fn process(root: &Path, report: &dyn Report) -> Result<Vec<Processed>> {
    let inbox = root.join(INBOX);
    let dir = root.join(crate::state::DIR);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let _lock = realms_sys::lock::StoreLock::acquire(dir.join(".lock"))?;
    let mut done = Vec::new();
    for (profile, user, archive) in waiting(&inbox) {
        let file = archive.file_name().unwrap().to_string_lossy().into_owned();
        let package = Ext::split(&file)
            .map(|(n, _, _)| n.to_string())
            .unwrap_or_default();
        let result = one(root, &profile, &user, &archive, &file);
        let (to, error) = match &result {
            Ok(()) => (".done", None),
            Err(e) => (".failed", Some(crate::error::chain_text(e))),
        };
        let dest = inbox.join(to);
        fs::create_dir_all(&dest).ctx("creating", &dest)?;
        let moved = dest.join(&file);
        realms_sys::atomic::rename(&archive, &moved)?;
        if let Some(e) = &error {
            realms_sys::atomic::write_file(
                dest.join(format!("{file}.error")),
                format!("{e}\n").as_bytes(),
                0o644,
            )?;
            report.report(Event::warning(format!("{}: {e}", archive.display())));
        } else {
            report.report(Event::progress(format!(
                "installed {file} with profile {profile} as user {user}"
            )));
        }
        done.push(Processed {
            archive,
            package,
            installed: error.is_none(),
            error,
        });
    }
    Ok(done)
}

fn one(root: &Path, profile: &str, user: &str, archive: &Path, file: &str) -> Result<()> {
    let bad = |problem| Error::Inbox {
        archive: archive.to_path_buf(),
        problem,
    };
    let (name, version, ext) = Ext::split(file).ok_or_else(|| bad(InboxProblem::Name))?;
    if ext == Ext::Raw {
        return Err(bad(InboxProblem::Raw));
    }
    if user == "root" && profile != "trusted" {
        return Err(bad(InboxProblem::RootUntrusted));
    }
    if !user_exists(root, user) {
        return Err(bad(InboxProblem::NoUser(user.to_string())));
    }
    let mut state = State::load(root)?;
    let target = root.join(PORTABLES).join(format!("{name}_{version}"));
    if let Some(old) = state.packages.get(name).cloned() {
        let image = root.join(old.image.strip_prefix("/").unwrap_or(&old.image));
        crate::portable::detach(root, name, &image)?;
        crate::portable::remove_image(&image)?;
    }
    let portables = root.join(PORTABLES);
    fs::create_dir_all(&portables).ctx("creating", &portables)?;
    let staging = portables.join(format!(
        "{STAGING_PREFIX}inbox-{name}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging).ctx("creating", &staging)?;
    let unpacked = (|| -> Result<()> {
        let f = fs::File::open(archive).ctx("reading", archive)?;
        let dec = decoder(ext, BufReader::new(f)).ctx("decompressing", archive)?;
        let limits = Limits {
            installed_size: MAX_UNPACKED,
            allow_setuid: profile == "trusted",
        };
        unpack_tar(file, dec, &staging, &limits)?;
        crate::portable::remove_image(&target)?;
        realms_sys::atomic::rename_noreplace(&staging, &target)?;
        Ok(())
    })();
    if unpacked.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    unpacked?;
    let dropin = format!("[Service]\nUser={user}\n");
    let req = crate::portable::Request {
        profile,
        method: InstallMethod::Auto,
        enable: &[],
        start: &[],
        service_dropin: Some((crate::portable::USER_DROPIN, dropin)),
    };
    let attached = crate::portable::attach(root, name, &target, &req);
    let attached = match attached {
        Ok(a) => a,
        Err(e) => {
            let _ = crate::portable::remove_image(&target);
            return Err(e);
        }
    };
    // Every unit of the image that can be enabled (has an [Install] section) is enabled and
    // started.
    let started = crate::portable::enable_start(root, name, &attached.units, None)?;
    state.packages.insert(
        name.to_string(),
        Installed {
            version: version.to_string(),
            file: file.to_string(),
            sha256: String::new(),
            repository: format!("inbox:{}", archive.display()),
            stream: crate::manifest::Stream::Stable,
            arch: crate::index::host_arch().to_string(),
            image: PathBuf::from("/").join(target.strip_prefix(root).unwrap_or(&target)),
            profile: profile.to_string(),
            install_method: InstallMethod::Auto,
            enabled: started.enabled,
            started: started.started,
            exports: Vec::new(),
        },
    );
    state.save(root)
}
