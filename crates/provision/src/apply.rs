//! `plan`, `apply [--prune]` and `status`: the manifest against the state, each package's
//! index fetched and verified, then install, upgrade, repair or remove, the state written after
//! every package. A second apply finds everything unchanged.

use realms_sys::IoContext;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::event::Event;
use serde::Serialize;

use crate::fetch::{Fetcher, join};
use crate::index::{self, Entry, Index, MAX_INDEX_BYTES};
use crate::install::{self, CACHE, image_path};
use crate::manifest::{Manifest, Package};
use crate::state::{self, Installed, State, serial_key};
use crate::{Error, FetchProblem, IndexProblem, Result};

/// What apply does (or did) with one package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Not installed yet.
    Install,
    /// Installed in another version or with other settings.
    Upgrade,
    /// Installed as listed, but its image or attachment is missing.
    Repair,
    /// No longer listed: removed with `--prune`.
    Remove,
    /// No longer listed, kept (no `--prune`).
    Keep,
    /// As listed.
    Unchanged,
}

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Step {
    /// The package.
    pub package: String,
    /// What happens to it.
    pub action: Action,
    /// The version it gets (none for remove/keep).
    pub version: Option<String>,
    /// The version installed before.
    pub from: Option<String>,
    /// Notes of PID 1 (failed starts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip)]
    entry: Option<Entry>,
    #[serde(skip)]
    package_spec: Option<Package>,
    #[serde(skip)]
    arch: String,
}

/// The options of plan and apply.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Remove packages no longer listed.
    pub prune: bool,
    /// The architecture (default: this machine's).
    pub arch: Option<String>,
}

/// The verified index of `repo`/`arch`/`stream`, fetched (or, when the repository cannot be
/// reached, the cached copy, checked again); records the serial in `state`.
pub fn fetch_index(
    root: &Path,
    fetcher: &Fetcher,
    repo: &str,
    arch: &str,
    stream: crate::manifest::Stream,
    state: &mut State,
) -> Result<Index> {
    let url = if crate::oci::is_oci(repo) {
        let r = crate::oci::Reference::parse(repo)?;
        format!("{}/manifests/{}", r.base(), r.index_reference(arch, stream))
    } else {
        join(repo, arch, &index::index_name(stream))
    };
    let key = serial_key(repo, arch, stream);
    let cache = root
        .join(CACHE)
        .join("index")
        .join(hex::encode(&sha2_of(&key)[..8]));
    fs::create_dir_all(&cache).ctx("creating", &cache)?;
    let (bytes, sig_bytes) = match fetch_pair(root, fetcher, repo, arch, stream, &url) {
        Ok(pair) => pair,
        Err(e @ Error::Fetch { .. }) => match (
            fs::read(cache.join("index.json")),
            fs::read(cache.join("index.sig")),
        ) {
            (Ok(b), Ok(s)) => {
                tracing::warn!("{e}; using the cached index");
                (b, Some(s))
            }
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let sig_path = cache.join("index.sig.new");
    match &sig_bytes {
        Some(s) => realms_sys::atomic::write_file(&sig_path, s, 0o644)?,
        None => {
            let _ = fs::remove_file(&sig_path);
        }
    }
    let keys = realms_image::keys::trusted(root).map_err(|e| Error::Key {
        key: "/etc/realms/keys.d".into(),
        source: Box::new(e),
    })?;
    let seen = state.serials.get(&key).copied();
    let idx = index::verify(&url, &bytes, &sig_path, &keys, seen, index::now())?;
    realms_sys::atomic::write_file(cache.join("index.json"), &bytes, 0o644)?;
    realms_sys::atomic::rename(&sig_path, cache.join("index.sig"))?;
    state.serials.insert(key, idx.serial);
    Ok(idx)
}

fn sha2_of(s: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

fn fetch_pair(
    root: &Path,
    fetcher: &Fetcher,
    repo: &str,
    arch: &str,
    stream: crate::manifest::Stream,
    url: &str,
) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    if crate::oci::is_oci(repo) {
        return crate::oci::fetch_index(root, fetcher, repo, arch, stream)?.ok_or_else(|| {
            Error::Fetch {
                url: url.to_string(),
                reason: FetchProblem::NoIndex {
                    arch: arch.to_string(),
                    stream: stream.to_string(),
                    to: Some(repo.to_string()),
                },
            }
        });
    }
    let bytes = fetcher
        .get(url, MAX_INDEX_BYTES)?
        .ok_or_else(|| Error::Fetch {
            url: url.to_string(),
            reason: FetchProblem::NoIndex {
                arch: arch.to_string(),
                stream: stream.to_string(),
                to: None,
            },
        })?;
    // Only the serial is read before the signature is checked: it names the signature file.
    #[derive(serde::Deserialize)]
    struct Serial {
        serial: u64,
    }
    let serial = serde_json::from_slice::<Serial>(&bytes)
        .map_err(|e| Error::BadIndex {
            url: url.to_string(),
            reason: IndexProblem::NoSerial(e),
        })?
        .serial;
    let sig = fetcher.get(&join(repo, arch, &index::sig_name(stream, serial)), 4096)?;
    Ok((bytes, sig))
}

/// What apply would do.
pub fn plan(
    root: &Path,
    manifest: &Manifest,
    fetcher: &Fetcher,
    opts: &Options,
    state: &mut State,
) -> Result<Vec<Step>> {
    let arch = opts
        .arch
        .clone()
        .unwrap_or_else(|| index::host_arch().to_string());
    let mut indexes: BTreeMap<String, Index> = BTreeMap::new();
    let mut steps = Vec::new();
    for p in &manifest.packages {
        let repo = p.repository.clone().unwrap_or_default();
        let key = serial_key(&repo, &arch, p.track_stream);
        if !indexes.contains_key(&key) {
            let idx = fetch_index(root, fetcher, &repo, &arch, p.track_stream, state)?;
            indexes.insert(key.clone(), idx);
        }
        let idx = &indexes[&key];
        // `latest` skips the versions an update marked bad (failed health checks).
        let bad = state.history.get(&p.name).map(|h| h.bad.as_slice());
        let entry = match bad {
            Some(bad) if p.version == "latest" => idx.find_newest_except(&p.name, bad),
            _ => idx.find(&p.name, &p.version),
        };
        let entry = entry.ok_or_else(|| Error::NotListed {
            package: p.name.clone(),
            version: p.version.clone(),
            url: join(&repo, &arch, &index::index_name(p.track_stream)),
            stream: p.track_stream.to_string(),
            listed: idx.listed(&p.name),
        })?;
        let old = state.packages.get(&p.name);
        let action = match old {
            None => Action::Install,
            Some(o) if !same(o, p, entry) => Action::Upgrade,
            Some(o) => {
                let image = root.join(o.image.strip_prefix("/").unwrap_or(&o.image));
                if image.exists()
                    && crate::portable::is_attached(root, &image)
                    && crate::export::present(root, &p.name, &o.exports)
                {
                    Action::Unchanged
                } else {
                    Action::Repair
                }
            }
        };
        steps.push(Step {
            package: p.name.clone(),
            action,
            version: Some(entry.version.clone()),
            from: old.map(|o| o.version.clone()),
            notes: Vec::new(),
            entry: Some(entry.clone()),
            package_spec: Some(p.clone()),
            arch: arch.clone(),
        });
    }
    for (name, o) in &state.packages {
        // Inbox packages are the inbox's: apply neither lists nor prunes them.
        if o.repository.starts_with("inbox:") {
            continue;
        }
        if !manifest.packages.iter().any(|p| p.name == *name) {
            steps.push(Step {
                package: name.clone(),
                action: if opts.prune {
                    Action::Remove
                } else {
                    Action::Keep
                },
                version: None,
                from: Some(o.version.clone()),
                notes: Vec::new(),
                entry: None,
                package_spec: None,
                arch: o.arch.clone(),
            });
        }
    }
    Ok(steps)
}

fn same(o: &Installed, p: &Package, e: &Entry) -> bool {
    o.version == e.version
        && o.sha256 == e.sha256
        && o.profile == p.profile
        && o.install_method == p.install_method
        && o.enabled == p.enable
        && o.started == p.start
        && Some(&o.repository) == p.repository.as_ref()
        && o.exports == p.export
}

/// Applies the manifest; returns the steps done.
pub fn apply(
    root: &Path,
    manifest: &Manifest,
    fetcher: &Fetcher,
    opts: &Options,
    say: &mut dyn FnMut(Event),
) -> Result<Vec<Step>> {
    let dir = root.join(state::DIR);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let _lock = realms_sys::lock::StoreLock::acquire(dir.join(".lock"))?;
    install::clean_staging(root);
    crate::portable::recover(root)?;
    let mut state = State::load(root)?;
    // The serials of verified indexes are kept even when the plan fails later.
    let planned = plan(root, manifest, fetcher, opts, &mut state);
    state.save(root)?;
    let mut steps = planned?;
    for step in &mut steps {
        match step.action {
            Action::Unchanged | Action::Keep => {}
            Action::Remove => {
                if let Some(o) = state.packages.get(&step.package).cloned() {
                    let image = root.join(o.image.strip_prefix("/").unwrap_or(&o.image));
                    crate::export::remove(root, &step.package, &o.exports)?;
                    crate::portable::detach(root, &step.package, &image)?;
                    crate::portable::remove_image(&image)?;
                    // The versions an update kept for rollback go too.
                    if let Some(h) = state.history.remove(&step.package) {
                        for k in &h.kept {
                            let kept = root.join(k.image.strip_prefix("/").unwrap_or(&k.image));
                            crate::portable::remove_image(&kept)?;
                        }
                    }
                    state.packages.remove(&step.package);
                    state.save(root)?;
                    say(Event::progress(format!(
                        "removed {} {}",
                        step.package, o.version
                    )));
                }
            }
            Action::Install | Action::Upgrade | Action::Repair => {
                put(root, fetcher, step, &mut state, say)?;
                state.save(root)?;
                say(Event::progress(format!(
                    "{} {} {}",
                    match step.action {
                        Action::Install => "installed",
                        Action::Upgrade => "upgraded",
                        _ => "repaired",
                    },
                    step.package,
                    step.version.as_deref().unwrap_or("")
                )));
            }
        }
    }
    Ok(steps)
}

/// Installs (when needed), detaches the old image, attaches the new one and records it.
fn put(
    root: &Path,
    fetcher: &Fetcher,
    step: &mut Step,
    state: &mut State,
    say: &mut dyn FnMut(Event),
) -> Result<()> {
    let (Some(p), Some(entry)) = (step.package_spec.clone(), step.entry.clone()) else {
        return Ok(());
    };
    let repo = p.repository.clone().unwrap_or_default();
    let old = state.packages.get(&p.name).cloned();
    let target = image_path(root, &p.name, &entry);
    let have = old.as_ref().is_some_and(|o| {
        o.sha256 == entry.sha256
            && root.join(o.image.strip_prefix("/").unwrap_or(&o.image)) == target
    }) && target.exists();
    // A command in the way of an export is refused before anything changes.
    crate::export::check_free(root, &p.name, &p.export)?;
    if let Some(o) = &old {
        let image = root.join(o.image.strip_prefix("/").unwrap_or(&o.image));
        crate::portable::detach(root, &p.name, &image)?;
        realms_sys::failpoint::hit("provision-detached");
        if image != target {
            crate::portable::remove_image(&image)?;
        }
    }
    // Killed after the attach and before the state was saved, the last apply left this image
    // attached but unrecorded: detach it, so it is attached once, as the manifest says.
    if crate::portable::is_attached(root, &target) {
        crate::portable::detach(root, &p.name, &target)?;
    }
    if !have {
        install::install(
            root,
            install::Origin {
                fetcher,
                repo: &repo,
                arch: &step.arch,
            },
            &p.name,
            &entry,
            p.profile == "trusted",
            say,
        )?;
    }
    let req = crate::portable::Request {
        profile: &p.profile,
        method: p.install_method,
        enable: &p.enable,
        start: &p.start,
        service_dropin: None,
    };
    let done = crate::portable::attach(root, &p.name, &target, &req).and_then(|done| {
        let previous = old.as_ref().map(|o| o.exports.as_slice()).unwrap_or(&[]);
        crate::export::write(
            root,
            &p.name,
            &entry.version,
            &target,
            &p.profile,
            &p.export,
            previous,
        )?;
        Ok(done)
    });
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            let _ = crate::portable::detach(root, &p.name, &target);
            let _ = crate::portable::remove_image(&target);
            let previous = old.as_ref().map(|o| o.exports.as_slice()).unwrap_or(&[]);
            let _ = crate::export::remove(root, &p.name, previous);
            let _ = crate::export::remove(root, &p.name, &p.export);
            state.packages.remove(&p.name);
            return Err(e);
        }
    };
    realms_sys::failpoint::hit("provision-attached");
    step.notes = done.notes;
    // What apply attached is what the manifest says: an interrupted update of it is over.
    if let Some(h) = state.history.get_mut(&p.name) {
        h.trial = None;
    }
    state.packages.insert(
        p.name.clone(),
        Installed {
            version: entry.version.clone(),
            file: entry.file.clone(),
            sha256: entry.sha256.clone(),
            repository: repo,
            stream: p.track_stream,
            arch: step.arch.clone(),
            image: PathBuf::from("/").join(target.strip_prefix(root).unwrap_or(&target)),
            profile: p.profile.clone(),
            install_method: p.install_method,
            enabled: p.enable.clone(),
            started: p.start.clone(),
            exports: p.export.clone(),
        },
    );
    Ok(())
}
