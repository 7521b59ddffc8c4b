//! Raw images (`.raw`): a bare squashfs/erofs/ext4/btrfs filesystem or a GPT disk with
//! Discoverable Partitions, mounted read-only through a loop device (offset and size for a
//! partition) on a private temporary directory, after a userspace dm-verity check when the image
//! carries a root hash (`.roothash` sidecar or verity-sig partition) and verity data. A
//! `.roothash.p7s` beside the image is checked against the keyring of trusted certificates
//! (`/etc/realms/verity-certs.d`) when there is one; otherwise, and for the signature inside a
//! verity-sig partition, the result says it was not checked.

use realms_sys::IoContext;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use realms_sys::loopdev::{LoopDevice, LoopOptions};
use realms_sys::mount::{MountFlags, MountGuard};
use realms_sys::root::RootDir;
use realms_verity::{Params, ReadAt, read_superblock, verify_root_hash_signature};

use crate::error::{Error, ImageProblem, Result};
use crate::gpt::{self, Partition};

/// Where the filesystem of a raw image is, and how it is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Byte range of the root filesystem in the file (size 0: to the end).
    pub offset: u64,
    /// Byte length of the root filesystem (0: to the end of the file).
    pub size: u64,
    /// `squashfs`, `erofs`, `ext4`, `btrfs` or `xfs`.
    pub fstype: &'static str,
    /// The GPT partition it is, if the image has a partition table.
    pub partition: Option<Partition>,
    /// The verity hash partition of a GPT image.
    pub verity: Option<Partition>,
    /// The root hash (from the sidecar or the verity-sig partition), hex.
    pub root_hash: Option<String>,
    /// Where the root hash's signature is, if the image has one.
    pub signature: Option<SignatureSource>,
}

/// Where a raw image's root hash signature is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureSource {
    /// The `.roothash.p7s` sidecar (a detached PKCS#7 over the hex root hash).
    Sidecar(PathBuf),
    /// The verity-sig partition (its `signature` member, which Realms does not check).
    Partition,
}

/// What became of a raw image's root hash signature.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum SignatureCheck {
    /// The signature verified: the root hash is signed by this certificate of the keyring.
    Verified {
        /// The signer's subject (`CN=...`).
        signer: String,
    },
    /// There is a signature but it was not checked.
    NotChecked {
        /// The signature (the `.roothash.p7s` path, or the verity-sig partition).
        signature: String,
        /// Why not: no keyring, or a verity-sig partition.
        reason: &'static str,
    },
}

impl std::fmt::Display for SignatureCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureCheck::Verified { signer } => write!(f, "root hash signed by {signer}"),
            SignatureCheck::NotChecked { signature, reason } => {
                write!(f, "root hash signature {signature} not checked: {reason}")
            }
        }
    }
}

/// The filesystem whose superblock starts at `offset` of `file`, if one is recognised.
pub fn probe_fs(file: &File, offset: u64) -> io::Result<Option<&'static str>> {
    let mut head = vec![0u8; 65536 + 128];
    let n = read_upto(file, &mut head, offset)?;
    let head = &head[..n];
    let at = |pos: usize, magic: &[u8]| head.get(pos..pos + magic.len()) == Some(magic);
    Ok(if at(0, b"hsqs") {
        Some("squashfs")
    } else if at(1024, &0xE0F5_E1E2u32.to_le_bytes()) {
        Some("erofs")
    } else if at(1080, &0xEF53u16.to_le_bytes()) {
        Some("ext4")
    } else if at(0, b"XFSB") {
        Some("xfs")
    } else if at(65536 + 64, b"_BHRfS_M") {
        Some("btrfs")
    } else {
        None
    })
}

fn read_upto(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset
            .checked_add(done as u64)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        match file.read_at(&mut buf[done..], at)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// The sidecar next to `image` with `.raw` replaced by `suffix` (e.g. `.roothash`).
pub fn sidecar(image: &Path, suffix: &str) -> PathBuf {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".raw").unwrap_or(&name);
    image.with_file_name(format!("{stem}{suffix}"))
}

fn read_root_hash(host_image: &Path) -> Result<Option<String>> {
    let path = sidecar(host_image, ".roothash");
    // A root hash is 64 to 128 hex digits; the file comes with the image, so it is bounded.
    match realms_sys::untrusted::read_to_string(&path, 4096) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Works out where the root filesystem of the raw image at host path `image` is.
pub fn layout(image: &Path) -> Result<Layout> {
    let file = File::open(image).ctx("opening image", image)?;
    let mut head = vec![0u8; 8192];
    let n = read_upto(&file, &mut head, 0).ctx("reading", image)?;
    let mut root_hash = read_root_hash(image)?;
    let Some(sector) = gpt::sector_size(&head[..n]) else {
        let fstype = probe_fs(&file, 0)
            .ctx("reading", image)?
            .ok_or_else(|| Error::image(image, ImageProblem::NoPartitionTable))?;
        let signature = sidecar_signature(image, root_hash.is_some());
        return Ok(Layout {
            offset: 0,
            size: 0,
            fstype,
            partition: None,
            verity: None,
            root_hash,
            signature,
        });
    };
    let bad = |source: gpt::GptError| Error::Partition {
        path: image.to_owned(),
        source,
    };
    let header = gpt::parse_header(&head[sector as usize..2 * sector as usize]).map_err(bad)?;
    let (offset, len) = header.entries_range(sector).map_err(bad)?;
    let mut array = vec![0u8; len];
    FileExt::read_exact_at(&file, &mut array, offset)
        .ctx("reading the partition table of", image)?;
    let parts = gpt::parse_entries(
        &array,
        header.count,
        header.entry_size,
        header.entries_crc,
        sector,
    )
    .map_err(bad)?;
    let types = gpt::host_root_types();
    let of_type = |t: Option<gpt::Guid>| -> Vec<&Partition> {
        t.map(|t| parts.iter().filter(|p| p.type_guid == t).collect())
            .unwrap_or_default()
    };
    let roots = of_type(types.map(|t| t.root));
    let root = match roots.as_slice() {
        [one] => (*one).clone(),
        [] => match parts.as_slice() {
            [only] if only.type_guid == gpt::LINUX_DATA => only.clone(),
            _ => return Err(Error::image(image, ImageProblem::NoRootPartition)),
        },
        _ => {
            return Err(Error::image(image, ImageProblem::SeveralRootPartitions));
        }
    };
    let verity = of_type(types.map(|t| t.verity))
        .first()
        .map(|p| (*p).clone());
    let mut signature = sidecar_signature(image, root_hash.is_some());
    if root_hash.is_none()
        && let Some(sig) = of_type(types.map(|t| t.verity_sig)).first()
    {
        root_hash = root_hash_from_sig(&file, sig).ctx("reading", image)?;
        signature = root_hash.as_ref().map(|_| SignatureSource::Partition);
    }
    let fstype = probe_fs(&file, root.offset)
        .ctx("reading", image)?
        .ok_or_else(|| Error::image(image, ImageProblem::NoFilesystem))?;
    Ok(Layout {
        offset: root.offset,
        size: root.size,
        fstype,
        partition: Some(root),
        verity,
        root_hash,
        signature,
    })
}

/// The `.roothash.p7s` beside `image`, when there is one and a `.roothash` it signs.
fn sidecar_signature(image: &Path, has_root_hash: bool) -> Option<SignatureSource> {
    let path = sidecar(image, ".roothash.p7s");
    (has_root_hash && path.exists()).then_some(SignatureSource::Sidecar(path))
}

/// Checks the root hash signature of `lay` against the certificates in `keyring` (a host path;
/// `None` when the host has no keyring directory). A signature that does not verify is an error;
/// one that cannot be checked is reported as such.
pub fn check_signature(lay: &Layout, keyring: Option<&Path>) -> Result<Option<SignatureCheck>> {
    let (Some(source), Some(hex_hash)) = (&lay.signature, &lay.root_hash) else {
        return Ok(None);
    };
    let path = match source {
        SignatureSource::Partition => {
            return Ok(Some(SignatureCheck::NotChecked {
                signature: "in the verity-sig partition".into(),
                reason: "Realms checks only .roothash.p7s signatures",
            }));
        }
        SignatureSource::Sidecar(path) => path,
    };
    let Some(keyring) = keyring else {
        return Ok(Some(SignatureCheck::NotChecked {
            signature: path.display().to_string(),
            reason: "no keyring of trusted certificates (/etc/realms/verity-certs.d)",
        }));
    };
    let root_hash = decode_hex(hex_hash)
        .ok_or_else(|| Error::image(path, ImageProblem::RootHashNotHex(hex_hash.to_string())))?;
    let signer = verify_root_hash_signature(&root_hash, path, keyring)?;
    Ok(Some(SignatureCheck::Verified {
        signer: signer.subject,
    }))
}

/// The `rootHash` of a verity-sig partition's JSON (NUL-padded).
fn root_hash_from_sig(file: &File, sig: &Partition) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; sig.size.min(1 << 20) as usize];
    let n = read_upto(file, &mut buf, sig.offset)?;
    let end = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    let value: serde_json::Value = serde_json::from_slice(&buf[..end]).unwrap_or_default();
    Ok(value
        .get("rootHash")
        .and_then(|v| v.as_str())
        .map(str::to_owned))
}

/// A byte range of a file, read as a device of its own.
struct Slice<'a> {
    file: &'a File,
    offset: u64,
    size: u64,
}

impl ReadAt for Slice<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        let at = self.offset.checked_add(offset);
        match (end, at) {
            (Some(end), Some(at)) if end <= self.size => FileExt::read_exact_at(self.file, buf, at),
            _ => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        }
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }
}

/// Checks the root filesystem against its root hash in userspace (no device-mapper needed):
/// the hash tree comes from the verity partition, or the `.verity` sidecar of a bare image.
/// Returns whether there was anything to check.
pub fn verify(image: &Path, lay: &Layout) -> Result<bool> {
    let Some(hex_hash) = &lay.root_hash else {
        return Ok(false);
    };
    let root_hash = decode_hex(hex_hash)
        .ok_or_else(|| Error::image(image, ImageProblem::RootHashNotHex(hex_hash.to_string())))?;
    let file = File::open(image).ctx("opening image", image)?;
    let size = file.metadata().ctx("inspecting", image)?.len();
    let data = Slice {
        file: &file,
        offset: lay.offset,
        size: if lay.size == 0 { size } else { lay.size },
    };
    let sidecar_path = sidecar(image, ".verity");
    let sidecar_file;
    let hash: Box<dyn ReadAt + '_> = match &lay.verity {
        Some(p) => Box::new(Slice {
            file: &file,
            offset: p.offset,
            size: p.size,
        }),
        None => match File::open(&sidecar_path) {
            Ok(f) => {
                sidecar_file = f;
                let size = sidecar_file
                    .metadata()
                    .ctx("inspecting", &sidecar_path)?
                    .len();
                Box::new(Slice {
                    file: &sidecar_file,
                    offset: 0,
                    size,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("opening", sidecar_path, e)),
        },
    };
    let sb = read_superblock(&*hash, 0)?;
    let params = Params {
        hash: sb.algorithm,
        data_block_size: sb.data_block_size,
        hash_block_size: sb.hash_block_size,
        salt: sb.salt.clone(),
        ..Params::default()
    };
    realms_verity::verify(&data, &*hash, &params, &root_hash)?;
    Ok(true)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A raw image mounted read-only on a temporary directory; unmounted and removed on drop.
#[derive(Debug)]
pub struct Mounted {
    /// What became of the root hash signature, if the image has one.
    pub signature: Option<SignatureCheck>,
    root: Option<RootDir>,
    guard: Option<MountGuard>,
    dir: PathBuf,
}

impl Mounted {
    /// Mounts the root filesystem of the raw image at host path `image` (verified first when it
    /// has a root hash and verity data, and its `.roothash.p7s` against `keyring`).
    pub fn mount(image: &Path, keyring: Option<&Path>) -> Result<Mounted> {
        crate::private_mounts();
        let lay = layout(image)?;
        let signature = check_signature(&lay, keyring)?;
        verify(image, &lay)?;
        let tag = u64::from_ne_bytes(realms_sys::random::bytes::<8>()?);
        let dir = std::env::temp_dir().join(format!("realms-portable-{tag:016x}"));
        std::fs::create_dir(&dir).ctx("creating", &dir)?;
        let mounted = (|| {
            let opts = LoopOptions {
                read_only: true,
                autoclear: true,
                offset: lay.offset,
                size_limit: lay.size,
                ..LoopOptions::default()
            };
            let dev = LoopDevice::attach(image, &opts)?;
            let flags = MountFlags::RDONLY | MountFlags::NODEV | MountFlags::NOSUID;
            let guard = realms_sys::mount::mount_fs(dev.path(), &dir, lay.fstype, flags, "")?;
            drop(dev);
            Ok::<_, Error>(guard)
        })();
        let guard = match mounted {
            Ok(g) => g,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        let root = RootDir::open(&dir)?;
        Ok(Mounted {
            signature,
            root: Some(root),
            guard: Some(guard),
            dir,
        })
    }

    /// The mounted tree, as a root for in-image paths.
    pub fn root(&self) -> &RootDir {
        self.root
            .as_ref()
            .expect("a mounted image has its root until dropped")
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // Our descriptor inside the mount would keep it busy.
        drop(self.root.take());
        drop(self.guard.take());
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "could not remove the mount point: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_replace_raw() {
        assert_eq!(
            sidecar(Path::new("/a/foo_2.raw"), ".roothash"),
            Path::new("/a/foo_2.roothash")
        );
        assert_eq!(decode_hex("0aff"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0g"), None);
    }

    #[test]
    fn probes_filesystems() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.raw");
        let mut img = vec![0u8; 70000];
        img[1080..1082].copy_from_slice(&0xEF53u16.to_le_bytes());
        std::fs::write(&p, &img).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(probe_fs(&f, 0).unwrap(), Some("ext4"));
        std::fs::write(&p, b"hsqs....").unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(probe_fs(&f, 0).unwrap(), Some("squashfs"));
        let lay = layout(&p).unwrap();
        assert_eq!(
            (lay.fstype, lay.offset, lay.partition),
            ("squashfs", 0, None)
        );
        std::fs::write(&p, b"nothing").unwrap();
        assert!(layout(&p).is_err());
    }
}
