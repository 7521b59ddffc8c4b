//! Native-looking commands: each name a package lists in `export:` becomes an executable in
//! /usr/local/bin that runs the binary inside the package's image with its profile's sandbox:
//! `systemd-run --pipe --wait` with `RootDirectory=` (a directory image) or `RootImage=` (a raw
//! one), the settings portable attach gives its services (`PORTABLE=`, the host's os-release at
//! /run/host/os-release) and every `[Service]` setting of the profile's drop-in. Arguments,
//! stdin/stdout/stderr and the exit status pass through.
//!
//! /usr/local is where the image model keeps commands writable (on an image-based system such as
//! Fedora CoreOS it is a link into /var). A command is written atomically (staged and renamed),
//! carries a marker line naming its package, is recorded in state.json, replaced on upgrade and
//! removed with the package. A file realms did not write for that package is never overwritten
//! nor removed.

use std::path::{Path, PathBuf};

use realms_sys::root::RootDir;

use crate::{Error, ManifestProblem, Result};

/// Where the commands go, under the root.
pub const BIN_DIR: &str = "usr/local/bin";
/// The first words of the marker line (the second line of every command realms writes).
const MARKER: &str = "# realms-provision-export package=";
/// Where a binary is looked for inside a directory image, in order.
const SEARCH: [&str; 6] = [
    "usr/bin",
    "bin",
    "usr/sbin",
    "sbin",
    "usr/local/bin",
    "usr/local/sbin",
];
/// The most of an existing command read to find its marker.
const MAX_SCRIPT: u64 = 1 << 20;

/// Whether `name` can be an exported command: a plain file name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// The command's path inside the root.
fn inner(name: &str) -> PathBuf {
    Path::new("/").join(BIN_DIR).join(name)
}

/// Quotes `s` for sh: in single quotes, each `'` as `'\''`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Who wrote the command at `name`: `None` when there is none, `Some(None)` when it is not a
/// realms command, `Some(Some(package))` when realms wrote it for `package`.
fn owner(root: &RootDir, name: &str) -> Result<Option<Option<String>>> {
    let path = inner(name);
    let Some(meta) = root.symlink_metadata(&path)? else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(Some(None));
    }
    let text = root.read_capped(&path, MAX_SCRIPT)?;
    let text = String::from_utf8_lossy(&text);
    Ok(Some(text.lines().nth(1).and_then(|l| {
        l.strip_prefix(MARKER)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    })))
}

/// Where `name` is inside the image `image` (a directory): the first executable regular file
/// of [`SEARCH`], resolved inside the image.
fn find_binary(image: &Path, package: &str, name: &str) -> Result<String> {
    let missing = || Error::ExportMissing {
        package: package.to_string(),
        name: name.to_string(),
        image: image.to_path_buf(),
    };
    let dir = RootDir::open(image)?;
    for d in SEARCH {
        let p = Path::new("/").join(d).join(name);
        if let Ok(Some(m)) = dir.metadata(&p) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(p.display().to_string());
            }
        }
    }
    Err(missing())
}

/// The `[Service]` settings of profile `profile` (its `service.conf` where systemd looks, or
/// the built-in copy), as `Key=Value` in file order.
pub fn profile_settings(root: &Path, package: &str, profile: &str) -> Result<Vec<String>> {
    let err = |e: realms_portable::Error| Error::Portable {
        package: package.to_string(),
        source: Box::new(e),
    };
    let host = realms_portable::Host::open(root).map_err(err)?;
    let text = match realms_portable::profile::find(&host, profile, "x.service") {
        Some(p) => host.dir().read_capped_to_string(&p, MAX_SCRIPT)?,
        None => realms_portable::profile::BUILTIN
            .iter()
            .find(|(n, _)| *n == profile)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| Error::ManifestValue {
                file: PathBuf::from("/etc/systemd/portable/profile"),
                package: package.to_string(),
                reason: ManifestProblem::NoProfile(profile.to_string()),
            })?,
    };
    let unit = realms_unit::UnitFile::parse(&text).map_err(|e| Error::ManifestValue {
        file: PathBuf::from(format!("(profile {profile})")),
        package: package.to_string(),
        reason: ManifestProblem::ProfileParse(e.to_string()),
    })?;
    Ok(unit
        .entries("Service")
        .map(|e| format!("{}={}", e.key(), e.value()))
        .collect())
}

/// What one command runs.
#[derive(Debug, Clone)]
pub struct Command<'a> {
    /// The package.
    pub package: &'a str,
    /// Its version.
    pub version: &'a str,
    /// The command name.
    pub name: &'a str,
    /// The binary inside the image.
    pub binary: &'a str,
    /// The image, as a path inside the root.
    pub image: &'a Path,
    /// Whether it is a directory image (`RootDirectory=`) or a raw one (`RootImage=`).
    pub directory: bool,
    /// The profile's name.
    pub profile: &'a str,
    /// The profile's `[Service]` settings.
    pub settings: &'a [String],
    /// The host's os-release, bound at /run/host/os-release as portable attach does.
    pub host_os_release: &'a str,
}

impl Command<'_> {
    /// The script.
    pub fn script(&self) -> String {
        let base = self
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let root = if self.directory {
            "RootDirectory"
        } else {
            "RootImage"
        };
        let mut props = vec![
            format!("{root}={}", self.image.display()),
            format!("Environment=PORTABLE={base}"),
            format!(
                "BindReadOnlyPaths={}:/run/host/os-release",
                self.host_os_release
            ),
            format!("LogExtraFields=PORTABLE={base}"),
        ];
        props.extend(self.settings.iter().cloned());
        let mut s = format!(
            "#!/bin/sh\n{MARKER}{package} command={name}\n\
             # Runs {binary} of the portable-service package {package} {version} inside its image\n\
             # {image} with the sandbox of the profile '{profile}'. Written by `realms provision`:\n\
             # replaced on upgrade, removed with the package; edits are lost.\n\
             exec systemd-run --pipe --pty --wait --quiet --collect --service-type=exec \\\n",
            package = self.package,
            name = self.name,
            binary = self.binary,
            version = self.version,
            image = self.image.display(),
            profile = self.profile,
        );
        for p in props {
            s.push_str(&format!("  --property={} \\\n", sh_quote(&p)));
        }
        s.push_str(&format!("  -- {} \"$@\"\n", sh_quote(self.binary)));
        s
    }
}

/// Refuses when a file realms did not write for `package` is where one of `names` goes.
pub fn check_free(root: &Path, package: &str, names: &[String]) -> Result<()> {
    let dir = RootDir::open(root)?;
    for name in names {
        match owner(&dir, name)? {
            None => {}
            Some(Some(o)) if o == package => {}
            Some(o) => {
                return Err(Error::ExportTaken {
                    path: root.join(BIN_DIR).join(name),
                    package: package.to_string(),
                    name: name.to_string(),
                    owner: o,
                });
            }
        }
    }
    Ok(())
}

/// Checks that every name of `names` can be written for `package` ([`check_free`]) and, for a
/// directory image, that the image has it; returns the binary of each.
pub fn check(root: &Path, package: &str, image: &Path, names: &[String]) -> Result<Vec<String>> {
    check_free(root, package, names)?;
    names
        .iter()
        .map(|name| {
            if image.is_dir() {
                find_binary(image, package, name)
            } else {
                Ok(format!("/usr/bin/{name}"))
            }
        })
        .collect()
}

/// Writes the commands `names` of `package` (image `image`, a host path under `root`) and
/// removes those of `previous` no longer listed.
pub fn write(
    root: &Path,
    package: &str,
    version: &str,
    image: &Path,
    profile: &str,
    names: &[String],
    previous: &[String],
) -> Result<()> {
    let binaries = check(root, package, image, names)?;
    let settings = if names.is_empty() {
        Vec::new()
    } else {
        profile_settings(root, package, profile)?
    };
    let dir = RootDir::open(root)?;
    let host_os_release = if dir.exists("/etc/os-release")? {
        "/etc/os-release"
    } else {
        "/usr/lib/os-release"
    };
    let in_root = Path::new("/").join(image.strip_prefix(root).unwrap_or(image));
    if !names.is_empty() {
        dir.create_dir_all(Path::new("/").join(BIN_DIR), 0o755)?;
    }
    for (name, binary) in names.iter().zip(&binaries) {
        let c = Command {
            package,
            version,
            name,
            binary,
            image: &in_root,
            directory: image.is_dir(),
            profile,
            settings: &settings,
            host_os_release,
        };
        dir.write_atomic(inner(name), c.script().as_bytes(), 0o755)?;
    }
    let gone: Vec<String> = previous
        .iter()
        .filter(|p| !names.contains(p))
        .cloned()
        .collect();
    remove(root, package, &gone)
}

/// Removes the commands `names` that realms wrote for `package` (others are left alone).
pub fn remove(root: &Path, package: &str, names: &[String]) -> Result<()> {
    let dir = RootDir::open(root)?;
    for name in names {
        if owner(&dir, name)? == Some(Some(package.to_string())) {
            dir.remove_file(inner(name))?;
        }
    }
    Ok(())
}

/// Whether every command of `names` is in place, written for `package`.
pub fn present(root: &Path, package: &str, names: &[String]) -> bool {
    let Ok(dir) = RootDir::open(root) else {
        return false;
    };
    names
        .iter()
        .all(|n| matches!(owner(&dir, n), Ok(Some(Some(o))) if o == package))
}

#[cfg(test)]
mod tests;
