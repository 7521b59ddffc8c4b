//! `realms provision ignition`: one Ignition config (spec 3.4.0) or Butane config (variant fcos
//! 1.5.0, which Butane turns into Ignition 3.4.0) that a fleet operator passes to every machine.
//! It writes the manifest to /etc/realms/provision.yaml (its drop-ins to
//! /etc/realms/provision.d/), the trusted keys to /etc/realms/keys.d/NAME.pub (the trust store's
//! naming) and enables the first-boot and update units; the machine provisions itself on boot.
//!
//! Every file is embedded (a `data:` URL in Ignition, `contents.inline` in Butane), so the config
//! needs nothing but itself. Enabling goes through `systemd.units[].enabled`: Ignition writes
//! presets that PID 1 applies on first boot, so the units themselves come with the OS image.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;

use crate::manifest::{self, DEFAULT_PATH, DROPIN_DIR};
use crate::{Error, ManifestProblem, Result};

/// The Ignition config spec version written.
pub const IGNITION_VERSION: &str = "3.4.0";
/// The Butane fcos spec version written (it translates to Ignition 3.4.0).
pub const BUTANE_VERSION: &str = "1.5.0";
/// The units the config enables: the first-boot apply and the update timer (shipped in dist/).
pub const UNITS: [&str; 2] = ["realms-provision.service", "realms-provision-update.timer"];
/// Where the trusted keys go on the machine.
pub const KEYS_DIR: &str = "/etc/realms/keys.d";

/// One file the config writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The absolute path on the machine.
    pub path: String,
    /// Its mode.
    pub mode: u32,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// What the config does: the files it writes and the units it enables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The files, manifest first.
    pub files: Vec<File>,
    /// The units enabled.
    pub units: Vec<String>,
}

/// What goes in: the manifest, its drop-ins and the keys.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The manifest, written to /etc/realms/provision.yaml.
    pub manifest: PathBuf,
    /// Drop-ins, written to /etc/realms/provision.d/ under their file names.
    pub dropins: Vec<PathBuf>,
    /// Trusted public keys: a key file (`NAME.pub`), or the name of a key trusted under the root.
    /// None: every key the root trusts.
    pub keys: Vec<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::io("reading", path, e))
}

/// Builds the config: the manifest and drop-ins are parsed (a broken one is refused here, not
/// at the machine's first boot) and every package must have a repository; every key must be a
/// valid public key.
pub fn config(root: &Path, input: &Input) -> Result<Config> {
    let mut files = Vec::new();
    let dropins = input.dropins.iter().map(|d| {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (d, format!("/{DROPIN_DIR}/{name}"))
    });
    let all = std::iter::once((&input.manifest, format!("/{DEFAULT_PATH}"))).chain(dropins);
    for (source, path) in all {
        if path.starts_with(&format!("/{DROPIN_DIR}/"))
            && !(path.ends_with(".yaml") || path.ends_with(".yml"))
        {
            return Err(Error::ManifestValue {
                file: source.clone(),
                package: "-".into(),
                reason: ManifestProblem::DropInName,
            });
        }
        files.push(File {
            path,
            mode: 0o644,
            contents: read(source)?,
        });
    }
    // Merged as the machine will merge them: what would fail there fails here.
    let mut sources = vec![input.manifest.clone()];
    sources.extend(input.dropins.iter().cloned());
    manifest::merge(sources)?;
    for (name, contents) in keys(root, &input.keys)? {
        files.push(File {
            path: format!("{KEYS_DIR}/{name}.pub"),
            mode: 0o644,
            contents,
        });
    }
    Ok(Config {
        files,
        units: UNITS.iter().map(|u| u.to_string()).collect(),
    })
}

/// The keys as `(name, file contents)`: the named ones, or every key the root trusts.
fn keys(root: &Path, wanted: &[PathBuf]) -> Result<Vec<(String, Vec<u8>)>> {
    let key_error = |key: &Path, e| Error::Key {
        key: key.display().to_string(),
        source: Box::new(e),
    };
    let trusted =
        realms_image::keys::trusted(root).map_err(|e| key_error(Path::new(KEYS_DIR), e))?;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    if wanted.is_empty() {
        if trusted.is_empty() {
            return Err(Error::NoKeys {
                dir: root.join(&KEYS_DIR[1..]),
            });
        }
        for k in &trusted {
            out.push((k.name.clone(), read(&k.path)?));
        }
        return Ok(out);
    }
    for spec in wanted {
        let text = spec.to_string_lossy();
        let (name, path) = match trusted
            .iter()
            .find(|k| !text.contains('/') && k.name == text)
        {
            Some(k) => (k.name.clone(), k.path.clone()),
            None => {
                let file = spec
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = file.strip_suffix(".pub").unwrap_or(&file).to_string();
                realms_image::validate_name("key", &name).map_err(|e| key_error(spec, e))?;
                let key =
                    realms_image::keys::load_public(&name, spec).map_err(|e| key_error(spec, e))?;
                (name, key.path)
            }
        };
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, read(&path)?));
        }
    }
    Ok(out)
}

/// `data:;base64,...` (RFC 2397), the form Ignition embeds files in.
pub fn data_url(bytes: &[u8]) -> String {
    format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[derive(Serialize)]
struct IgnitionDoc<'a> {
    ignition: Meta,
    storage: Storage<'a, Resource>,
    systemd: Systemd<'a>,
}

#[derive(Serialize)]
struct Meta {
    version: &'static str,
}

#[derive(Serialize)]
struct Storage<'a, C> {
    files: Vec<FileNode<'a, C>>,
}

#[derive(Serialize)]
struct FileNode<'a, C> {
    path: &'a str,
    overwrite: bool,
    mode: u32,
    contents: C,
}

#[derive(Serialize)]
struct Resource {
    source: String,
}

#[derive(Serialize)]
struct Systemd<'a> {
    units: Vec<UnitNode<'a>>,
}

#[derive(Serialize)]
struct UnitNode<'a> {
    name: &'a str,
    enabled: bool,
}

#[derive(Serialize)]
struct ButaneDoc<'a> {
    variant: &'static str,
    version: &'static str,
    storage: Storage<'a, Inline>,
    systemd: Systemd<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Inline {
    Text { inline: String },
    Source { source: String },
}

fn units(c: &Config) -> Systemd<'_> {
    Systemd {
        units: c
            .units
            .iter()
            .map(|u| UnitNode {
                name: u,
                enabled: true,
            })
            .collect(),
    }
}

impl Config {
    /// The Ignition config (spec 3.4.0), as pretty JSON.
    pub fn to_ignition(&self) -> Result<String> {
        let doc = IgnitionDoc {
            ignition: Meta {
                version: IGNITION_VERSION,
            },
            storage: Storage {
                files: self
                    .files
                    .iter()
                    .map(|f| FileNode {
                        path: &f.path,
                        overwrite: true,
                        mode: f.mode,
                        contents: Resource {
                            source: data_url(&f.contents),
                        },
                    })
                    .collect(),
            },
            systemd: units(self),
        };
        let mut text = serde_json::to_string_pretty(&doc).map_err(|e| Error::Render {
            format: "Ignition JSON",
            message: e.to_string(),
        })?;
        text.push('\n');
        Ok(text)
    }

    /// The Butane config (variant fcos, version 1.5.0), as YAML; text files inline.
    pub fn to_butane(&self) -> Result<String> {
        let doc = ButaneDoc {
            variant: "fcos",
            version: BUTANE_VERSION,
            storage: Storage {
                files: self
                    .files
                    .iter()
                    .map(|f| FileNode {
                        path: &f.path,
                        overwrite: true,
                        mode: f.mode,
                        contents: match String::from_utf8(f.contents.clone()) {
                            Ok(inline) => Inline::Text { inline },
                            Err(_) => Inline::Source {
                                source: data_url(&f.contents),
                            },
                        },
                    })
                    .collect(),
            },
            systemd: units(self),
        };
        let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| Error::Render {
            format: "Butane YAML",
            message: e.to_string(),
        })?;
        let end = if yaml.ends_with('\n') { "" } else { "\n" };
        Ok(format!(
            "# Butane config (modes in decimal: 420 is 0644); `butane` turns it into Ignition {IGNITION_VERSION}.\n{yaml}{end}"
        ))
    }
}

#[cfg(test)]
mod tests;
