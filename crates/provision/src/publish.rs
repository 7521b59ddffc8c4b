//! `realms provision publish` (a repository's index built or updated atomically, packages
//! copied in, `SHA256SUMS` kept for systemd-sysupdate) and `realms provision pack` (a package
//! tarball from a portable-service directory image).

use realms_sys::IoContext;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::index::{self, Entry, Ext, Index};
use crate::manifest::Stream;
use crate::unpack::{decoder, installed_size};
use crate::{Error, Result};

/// What `publish` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Published {
    /// The index written.
    pub index: PathBuf,
    /// Its new serial.
    pub serial: u64,
    /// Its expiry, seconds since the epoch.
    pub expires: u64,
    /// The package files added.
    pub added: Vec<String>,
}

/// The publish request.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The repository directory (or `file://` url).
    pub repo: &'a str,
    /// The architecture directory.
    pub arch: &'a str,
    /// The stream.
    pub stream: Stream,
    /// How long the index stays valid, in seconds.
    pub valid_for: u64,
    /// The serial to write (default: one more than the index there).
    pub serial: Option<u64>,
}

fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = fs::File::open(path).ctx("reading", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).ctx("reading", path)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

pub(crate) fn entry_of(path: &Path) -> Result<(String, Entry)> {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((name, version, ext)) = Ext::split(&file) else {
        return Err(Error::PackageName {
            path: path.to_path_buf(),
        });
    };
    let (sha256, size) = sha256_file(path)?;
    let installed = if ext == Ext::Raw {
        size
    } else {
        let f = fs::File::open(path).ctx("reading", path)?;
        decoder(ext, io::BufReader::new(f))
            .and_then(installed_size)
            .map_err(|source| Error::NotAPackage {
                path: path.to_path_buf(),
                source,
            })?
    };
    Ok((
        name.to_string(),
        Entry {
            version: version.to_string(),
            file: file.clone(),
            sha256,
            size,
            installed_size: installed,
        },
    ))
}

/// Publishes `packages` into the repository with `key`.
pub fn publish(req: &Publish<'_>, packages: &[PathBuf], key: &SigningKey) -> Result<Published> {
    let repo = Path::new(req.repo.strip_prefix("file://").unwrap_or(req.repo));
    let dir = repo.join(req.arch);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let _lock = realms_sys::lock::StoreLock::acquire(dir.join(".lock"))?;
    let index_path = dir.join(index::index_name(req.stream));
    let location = index_path.display().to_string();
    let mut idx = match fs::read(&index_path) {
        Ok(bytes) => index::parse(&location, &bytes)?,
        Err(_) => Index::empty(req.arch, req.stream),
    };
    let mut added = Vec::new();
    for p in packages {
        let (name, entry) = entry_of(p)?;
        let dest = dir.join(&entry.file);
        if dest.exists() {
            let (sha, _) = sha256_file(&dest)?;
            if sha != entry.sha256 {
                return Err(Error::PackageChanged { path: dest });
            }
        } else {
            let tmp = dir.join(format!(".{}.tmp", entry.file));
            fs::copy(p, &tmp).ctx("copying", p)?;
            realms_sys::atomic::rename(&tmp, &dest)?;
        }
        added.push(entry.file.clone());
        idx.add(name, entry);
    }
    idx.stamp(req.serial, index::now(), req.valid_for, &location)?;
    let bytes = serde_json::to_vec_pretty(&idx).map_err(|source| Error::SerializeIndex {
        path: index_path.clone(),
        source,
    })?;
    write_sha256sums(&dir)?;
    let sig = dir.join(index::sig_name(req.stream, idx.serial));
    realms_sys::atomic::write_file(&sig, index::sign(key, &bytes).as_bytes(), 0o644)?;
    realms_sys::atomic::write_file(&index_path, &bytes, 0o644)?;
    Ok(Published {
        index: index_path,
        serial: idx.serial,
        expires: idx.expires,
        added,
    })
}

/// Rewrites `SHA256SUMS` (systemd-sysupdate's listing) with every package file of `dir`.
fn write_sha256sums(dir: &Path) -> Result<()> {
    let mut files: Vec<String> = fs::read_dir(dir)
        .ctx("reading", dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| Ext::split(f).is_some())
        .collect();
    files.sort();
    let mut text = String::new();
    for f in files {
        let (sha, _) = sha256_file(&dir.join(&f))?;
        text.push_str(&format!("{sha}  {f}\n"));
    }
    realms_sys::atomic::write_file(dir.join("SHA256SUMS"), text.as_bytes(), 0o644)?;
    Ok(())
}

/// `realms provision pack DIR`: writes `OUT/NAME_VERSION.EXT` (`ext` one of the tar kinds)
/// from directory image `dir` (absolute symlinks made relative, so the install-side checks
/// accept them).
pub fn pack(dir: &Path, name: &str, version: &str, ext: Ext, out: &Path) -> Result<PathBuf> {
    let suffix = match ext {
        Ext::Tar => "tar",
        Ext::TarGz => "tar.gz",
        Ext::TarZst => "tar.zst",
        Ext::TarXz => "tar.xz",
        Ext::Raw => return Err(Error::PackRaw),
    };
    let file = out.join(format!("{name}_{version}.{suffix}"));
    let tmp = out.join(format!(".{name}_{version}.{suffix}.tmp"));
    let f = io::BufWriter::new(fs::File::create(&tmp).ctx("creating", &tmp)?);
    let w: Box<dyn io::Write> = match ext {
        Ext::TarGz => Box::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::default(),
        )),
        Ext::TarZst => Box::new(
            zstd::stream::write::Encoder::new(f, 3)
                .ctx("compressing", &tmp)?
                .auto_finish(),
        ),
        Ext::TarXz => Box::new(liblzma::write::XzEncoder::new(f, 6)),
        _ => Box::new(f),
    };
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    append_tree(&mut b, dir, Path::new(""))
        .and_then(|()| b.into_inner())
        .and_then(|mut w| w.flush())
        .ctx("packing", dir)?;
    realms_sys::atomic::rename(&tmp, &file)?;
    Ok(file)
}

fn append_tree<W: io::Write>(b: &mut tar::Builder<W>, base: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(base.join(rel))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let meta = e.path().symlink_metadata()?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(e.path())?;
            let target = if target.is_absolute() {
                relative_to(&r, &target)
            } else {
                target
            };
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&meta);
            h.set_size(0);
            b.append_link(&mut h, &r, &target)?;
        } else {
            b.append_path_with_name(e.path(), &r)?;
            if meta.is_dir() {
                append_tree(b, base, &r)?;
            }
        }
    }
    Ok(())
}

/// The relative form of absolute link `target` from link `link` (both image paths).
fn relative_to(link: &Path, target: &Path) -> PathBuf {
    let depth = link.components().count().saturating_sub(1);
    let mut out = PathBuf::new();
    for _ in 0..depth {
        out.push("..");
    }
    out.push(target.strip_prefix("/").unwrap_or(target));
    out
}
