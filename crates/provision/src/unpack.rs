//! Unpacking a package stream into a staging directory, through the one safe unpacker that
//! `realms appimg import` uses too ([`realms_image::unpack`]): no absolute paths or `..`,
//! nothing written through a symlink, no symlink with an absolute target or one leading outside
//! the image, hardlinks only to regular files unpacked before, no device nodes, FIFOs or sockets,
//! no setuid/setgid files unless allowed, and no more file bytes than the index states.

use std::io::{self, Read};
use std::path::Path;

use realms_image::unpack::{Allow, Policy};
use tar::EntryType;

use crate::index::Ext;
use crate::{Error, IntegrityProblem, Result};

/// What an unpack may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most bytes of regular files (the index's `installed-size`).
    pub installed_size: u64,
    /// Whether setuid/setgid files are allowed (the `trusted` profile).
    pub allow_setuid: bool,
}

/// A decompressing reader over `r` for a package of kind `ext` (`.raw` and `.tar` pass through).
pub fn decoder<'a>(ext: Ext, r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match ext {
        Ext::Tar | Ext::Raw => Box::new(r),
        Ext::TarGz => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Ext::TarZst => Box::new(zstd::stream::read::Decoder::new(r)?),
        Ext::TarXz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(r)),
    })
}

/// Unpacks the tar stream `r` of package `file` into the empty directory `dest`; returns the
/// bytes of regular files written.
pub fn unpack_tar(file: &str, r: impl Read, dest: &Path, limits: &Limits) -> Result<u64> {
    let policy = Policy {
        max_bytes: limits.installed_size,
        setuid: if limits.allow_setuid {
            Allow::Keep
        } else {
            Allow::Refuse
        },
        devices: Allow::Refuse,
        fifos: Allow::Refuse,
        absolute_symlinks: false,
        xattrs: false,
    };
    realms_image::unpack::unpack_tar(file, r, dest, &policy)
        .map(|done| done.bytes)
        .map_err(|e| match e {
            realms_image::Error::HostileEntry {
                archive,
                entry,
                reason,
            } => Error::Hostile {
                file: archive,
                entry,
                reason,
            },
            realms_image::Error::BadArchive {
                archive,
                entry,
                reason,
            } => Error::Integrity {
                file: archive,
                url: String::new(),
                reason: IntegrityProblem::Tar { entry, reason },
            },
            realms_image::Error::Sys(e) => Error::Sys(e),
            // The unpacker returns none other; should it one day, the package is still named.
            other => Error::Integrity {
                file: file.to_string(),
                url: String::new(),
                reason: IntegrityProblem::Unpacker(Box::new(other)),
            },
        })
}

/// The bytes of regular files in a tar stream (what `publish` records as `installed-size`).
pub fn installed_size(r: impl Read) -> io::Result<u64> {
    let mut archive = tar::Archive::new(r);
    let mut total = 0u64;
    for e in archive.entries()? {
        let e = e?;
        if matches!(
            e.header().entry_type(),
            EntryType::Regular | EntryType::Continuous
        ) {
            total += e.header().size()?;
        }
    }
    Ok(total)
}
