//! Loading an image and its extensions for attach and inspect: the images, the merged matching
//! units, the release files, the accepted prefixes, and the checks portablectl makes on them.

use std::collections::BTreeMap;

use realms_unit::os_release::{ExtensionCheck, ExtensionKind, Scope, systemd_architecture};

use crate::error::{Error, Result, ext_suffix};
use crate::extract::{Metadata, UnitSource, extract};
use crate::image::Image;
use crate::layout::Host;

/// An image with its extensions, read.
#[derive(Debug)]
pub struct Loaded {
    /// The base image.
    pub image: Image,
    /// What the base image holds.
    pub base: Metadata,
    /// The extension images, in order, with what each holds.
    pub extensions: Vec<(Image, Metadata)>,
    /// The matching units of the base and all extensions (the base wins a name clash).
    pub units: BTreeMap<String, UnitSource>,
    /// `PORTABLE_PREFIXES=` of the base and extensions, sorted (empty: any prefix).
    pub valid_prefixes: Vec<String>,
}

impl Loaded {
    /// What became of the root hash signatures of the base and extension images that have one.
    pub fn signatures(&self) -> Vec<crate::raw::SignatureCheck> {
        std::iter::once(&self.base)
            .chain(self.extensions.iter().map(|(_, m)| m))
            .filter_map(|m| m.signature.clone())
            .collect()
    }
}

/// Reads `image` and `extensions` (names or in-root paths). With `validate` (attach), the base
/// must have an `ID=` and every extension must match it.
pub fn load(
    host: &Host,
    image: &str,
    extensions: &[String],
    matches: &[String],
    relax: bool,
    validate: bool,
) -> Result<Loaded> {
    let image = Image::find(host, image)?;
    let ext_images = extensions
        .iter()
        .map(|e| Image::find(host, e))
        .collect::<Result<Vec<_>>>()?;
    let base = extract(host, &image, matches, false, false)?;
    if validate && base.release.id().is_none_or(str::is_empty) {
        return Err(Error::NoOsId(image.path.display().to_string()));
    }
    let mut prefixes: Vec<String> = base
        .release
        .portable_prefixes()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut units = base.units.clone();
    let mut exts = Vec::new();
    for ext in ext_images {
        let meta = extract(host, &ext, matches, true, relax)?;
        for (name, unit) in &meta.units {
            units.entry(name.clone()).or_insert_with(|| unit.clone());
        }
        if validate {
            let kind = if meta.release_path.starts_with("/etc/") {
                ExtensionKind::Confext
            } else {
                ExtensionKind::Sysext
            };
            let check = ExtensionCheck {
                kind,
                scope: Scope::Portable,
                host: &base.release,
                architecture: systemd_architecture(),
            };
            check.check(&ext.name, &meta.release).map_err(|e| match e {
                realms_unit::Error::ExtensionMismatch { reason, .. } => Error::ExtensionMismatch {
                    image: ext.path.display().to_string(),
                    reason,
                },
                other => other.into(),
            })?;
        }
        prefixes.extend(
            meta.release
                .portable_prefixes()
                .into_iter()
                .map(str::to_owned),
        );
        exts.push((ext, meta));
    }
    prefixes.sort();
    prefixes.dedup();
    Ok(Loaded {
        image,
        base,
        extensions: exts,
        units,
        valid_prefixes: prefixes,
    })
}

impl Loaded {
    /// The extension paths as given to portablectl's messages.
    pub fn extension_paths(&self) -> Vec<String> {
        self.extensions
            .iter()
            .map(|(i, _)| i.path.display().to_string())
            .collect()
    }

    /// Refuses matches the image does not allow, and an image without matching units.
    pub fn check_matches(&self, matches: &[String], extensions: &[String]) -> Result<()> {
        if !self.valid_prefixes.is_empty()
            && !matches.iter().all(|m| self.valid_prefixes.contains(m))
        {
            return Err(Error::IncompatiblePrefixes {
                matches: matches.join("', '"),
                image: self.image.path.display().to_string(),
                exts: ext_suffix(extensions),
                valid: self.valid_prefixes.join(", "),
            });
        }
        if self.units.is_empty() {
            return Err(Error::NoUnits {
                image: self.image.path.display().to_string(),
                exts: ext_suffix(extensions),
            });
        }
        Ok(())
    }
}
