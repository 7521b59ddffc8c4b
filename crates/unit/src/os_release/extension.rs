//! extension-release files of system/configuration extensions and portable images, and the
//! rules systemd uses to decide whether an extension matches its host (or base image).

use std::io;

use super::{OsRelease, read_parsed};
use crate::error::{Error, Mismatch, Result};

/// Which kind of extension image: where its release file lives and which keys it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtensionKind {
    /// A system extension (`/usr`): `/usr/lib/extension-release.d`, `SYSEXT_*` keys.
    Sysext,
    /// A configuration extension (`/etc`): `/etc/extension-release.d`, `CONFEXT_*` keys.
    Confext,
}

impl ExtensionKind {
    /// The directory holding `extension-release.NAME`.
    pub fn release_dir(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "/usr/lib/extension-release.d",
            ExtensionKind::Confext => "/etc/extension-release.d",
        }
    }

    /// The key listing the scopes the extension applies to.
    pub fn scope_key(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "SYSEXT_SCOPE",
            ExtensionKind::Confext => "CONFEXT_SCOPE",
        }
    }

    /// The key holding the extension API level.
    pub fn level_key(self) -> &'static str {
        match self {
            ExtensionKind::Sysext => "SYSEXT_LEVEL",
            ExtensionKind::Confext => "CONFEXT_LEVEL",
        }
    }
}

/// The environment an extension is being applied to (`SYSEXT_SCOPE=` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A regular booted system.
    System,
    /// An initrd.
    Initrd,
    /// A portable service image.
    Portable,
}

impl Scope {
    /// The scope as written in `SYSEXT_SCOPE=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Initrd => "initrd",
            Scope::Portable => "portable",
        }
    }
}

/// systemd's name for the architecture this crate was compiled for (`ARCHITECTURE=` values,
/// as in `ConditionArchitecture=`), if known.
pub fn systemd_architecture() -> Option<&'static str> {
    let big = cfg!(target_endian = "big");
    Some(match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" if big => "arm64-be",
        "aarch64" => "arm64",
        "arm" if big => "arm-be",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "riscv32" => "riscv32",
        "powerpc64" if big => "ppc64",
        "powerpc64" => "ppc64-le",
        "powerpc" => "ppc",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        "mips64" if big => "mips64",
        "mips64" => "mips64-le",
        "mips" if big => "mips",
        "mips" => "mips-le",
        "sparc64" => "sparc64",
        _ => return None,
    })
}

fn is_valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255 - "extension-release.".len()
        && !name.starts_with('.')
        && !name.chars().any(|c| c == '/' || c.is_control())
}

/// `/usr/lib/extension-release.d/extension-release.NAME` (or the confext directory).
///
/// `name` is the image name (file name without `.raw`); it must be usable as a file name.
pub fn extension_release_path(kind: ExtensionKind, name: &str) -> Result<String> {
    if !is_valid_image_name(name) {
        return Err(Error::InvalidExtensionName {
            name: name.to_owned(),
        });
    }
    Ok(format!("{}/extension-release.{name}", kind.release_dir()))
}

/// The image name without its version: `app0_1.0` → `app0` (everything before the first `_`).
///
/// systemd also accepts `extension-release.<this>` when the exact name is missing.
pub fn strip_image_version(name: &str) -> &str {
    name.split_once('_').map_or(name, |(stem, _)| stem)
}

/// Load `extension-release.NAME` of an extension through a root-relative `read` (see
/// [`super::load`]); falls back to the name without version, else errors naming the path.
pub fn load_extension_release<F>(read: F, kind: ExtensionKind, name: &str) -> Result<OsRelease>
where
    F: Fn(&str) -> io::Result<Option<String>>,
{
    let path = extension_release_path(kind, name)?;
    if let Some(found) = read_parsed(&read, &path)? {
        return Ok(found);
    }
    let stem = strip_image_version(name);
    if stem != name
        && !stem.is_empty()
        && let Some(found) = read_parsed(&read, &extension_release_path(kind, stem)?)?
    {
        return Ok(found);
    }
    Err(Error::ExtensionReleaseMissing {
        name: name.to_owned(),
        path,
    })
}

/// What an extension is checked against: the host's (or base image's) os-release, the scope,
/// and optionally the host architecture (see [`systemd_architecture`]).
#[derive(Debug, Clone, Copy)]
pub struct ExtensionCheck<'a> {
    /// Sysext or confext keys.
    pub kind: ExtensionKind,
    /// Where the extension is being applied.
    pub scope: Scope,
    /// The host's (or portable base image's) os-release.
    pub host: &'a OsRelease,
    /// The host architecture; `None` skips the `ARCHITECTURE=` check.
    pub architecture: Option<&'a str>,
}

impl ExtensionCheck<'_> {
    /// Check extension `name`'s release file against the host, as systemd does:
    ///
    /// 1. the release file must not be empty;
    /// 2. the scope list (default `system portable`) must contain the scope;
    /// 3. `ARCHITECTURE=`, if set and not `_any`, must equal the host architecture;
    /// 4. `ID=` must be set; `_any` matches every host and ends the check;
    /// 5. `ID=` must equal the host's `ID=` or be listed in its `ID_LIKE=`;
    /// 6. a host with neither `VERSION_ID=` nor an extension level matches any version;
    /// 7. if host and extension both set the level key, they must be equal; otherwise, if
    ///    the host sets `VERSION_ID=`, the extension's `VERSION_ID=` must equal it.
    pub fn check(&self, name: &str, ext: &OsRelease) -> Result<()> {
        let fail = |reason: Mismatch| {
            Err(Error::ExtensionMismatch {
                name: name.to_owned(),
                reason,
            })
        };
        if ext.is_empty() {
            return fail(Mismatch::Empty);
        }
        let scope_key = self.kind.scope_key();
        let scopes: Vec<&str> = match ext.get(scope_key) {
            Some(v) => v.split_whitespace().collect(),
            None => vec!["system", "portable"],
        };
        if !scopes.contains(&self.scope.as_str()) {
            return fail(Mismatch::Scope {
                key: scope_key,
                scopes: scopes.join(" "),
                scope: self.scope.as_str(),
            });
        }
        if let (Some(arch), Some(host_arch)) = (ext.architecture(), self.architecture)
            && arch != "_any"
            && arch != host_arch
        {
            return fail(Mismatch::Architecture {
                architecture: arch.to_owned(),
                host: host_arch.to_owned(),
            });
        }
        let Some(id) = ext.id() else {
            return fail(Mismatch::NoId);
        };
        if id == "_any" {
            return Ok(());
        }
        let host_id = self.host.id().unwrap_or("");
        if id != host_id && !self.host.id_like().contains(&id) {
            return fail(Mismatch::Id {
                id: id.to_owned(),
                host: host_id.to_owned(),
            });
        }
        self.check_version(ext, fail)
    }

    fn check_version(&self, ext: &OsRelease, fail: impl Fn(Mismatch) -> Result<()>) -> Result<()> {
        let level_key = self.kind.level_key();
        let host_level = self.host.get_nonempty(level_key);
        let host_version = self.host.version_id();
        if host_level.is_none() && host_version.is_none() {
            return Ok(());
        }
        if let (Some(host_level), Some(level)) = (host_level, ext.get_nonempty(level_key)) {
            if level != host_level {
                return fail(Mismatch::Level {
                    key: level_key,
                    level: level.to_owned(),
                    host: host_level.to_owned(),
                });
            }
            return Ok(());
        }
        if let Some(host_version) = host_version {
            match ext.version_id() {
                None => {
                    return fail(Mismatch::NoVersion {
                        host: host_version.to_owned(),
                    });
                }
                Some(v) if v != host_version => {
                    return fail(Mismatch::Version {
                        version: v.to_owned(),
                        host: host_version.to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
