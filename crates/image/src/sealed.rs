//! Block and sealed images: `image.raw` (erofs, squashfs or ext4) and `image.meta`; sealed ones
//! add the dm-verity hash area `image.verity`, systemd's `image.roothash` sidecar and `image.sig`,
//! an ed25519 signature over `image.meta` (which holds the root hash).

use realms_sys::IoContext;
use std::fs;
use std::path::{Path, PathBuf};

use realms_sys::cmd::Cmd;
use realms_sys::untrusted;
use realms_verity::{FecLayout, FecParams, HashAlgorithm, Params};
use serde::Serialize;

use crate::keys::{self, GoodSignature};
use crate::meta::{Meta, VerityMeta};
use crate::store::{ImageInfo, ImageKind, ImageStore, Staged};
use crate::{Error, Result, Tamper};
use realms_sys::event::{Event, Report};

/// The filesystem inside `image.raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// EROFS.
    Erofs,
    /// SquashFS.
    Squashfs,
    /// ext4.
    Ext4,
}

impl Filesystem {
    /// The name `mount -t` and image.meta use.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Erofs => "erofs",
            Filesystem::Squashfs => "squashfs",
            Filesystem::Ext4 => "ext4",
        }
    }

    /// The filesystem of that name, if realms knows it.
    pub fn parse(s: &str) -> Option<Filesystem> {
        [Filesystem::Erofs, Filesystem::Squashfs, Filesystem::Ext4]
            .into_iter()
            .find(|f| f.name() == s)
    }
}

/// What `realms appimg build` is asked for.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The image to make.
    pub name: String,
    /// The tree to put in the image.
    pub tree: PathBuf,
    /// The filesystem of `image.raw`.
    pub filesystem: Filesystem,
    /// Seal with this private key file.
    pub key: Option<PathBuf>,
    /// The version; by default one more than the installed image's, or 1.
    pub version: Option<String>,
    /// Sealed: add forward error correction (`image.fec`) with this many parity bytes.
    pub fec_roots: Option<u32>,
}

/// Builds `image.raw`, `image.meta` and (sealed) `image.verity`, `image.roothash`, `image.sig`
/// in a staging directory; the caller commits it.
pub fn build(
    store: &ImageStore,
    opts: &BuildOptions,
    progress: &dyn Report,
) -> Result<(Staged, Meta)> {
    crate::validate_name("image", &opts.name)?;
    if !opts.tree.join("usr").is_dir() {
        return Err(Error::NotAnOsTree {
            path: opts.tree.clone(),
            reason: crate::OsTreeProblem::NoUsr,
        });
    }
    let signing = opts.key.as_deref().map(keys::load_private).transpose()?;
    if opts.filesystem == Filesystem::Erofs {
        // mkfs.erofs writes holes out: bounded by the space there is.
        crate::bound::check_fits(&opts.name, "erofs", &opts.tree, store.dir())?;
    }
    let staged = store.stage_plain(&opts.name)?;
    let dir = staged.path().to_path_buf();
    let raw = dir.join("image.raw");
    progress.report(Event::progress(format!(
        "making the {} filesystem",
        opts.filesystem.name()
    )));
    realms_sys::failpoint::hit("image-build-staging");
    mkfs(opts.filesystem, &opts.tree, &raw, &opts.name)?;
    pad_to_block(&raw)?;
    realms_sys::failpoint::hit("image-build-filesystem");
    let version = match &opts.version {
        Some(v) => v.clone(),
        None => installed_meta(store, &opts.name)
            .map(|m| crate::meta::next_version(&m.version))
            .unwrap_or_else(|| "1".into()),
    };
    let mut meta = Meta {
        name: opts.name.clone(),
        version,
        filesystem: opts.filesystem.name().into(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        signed_by: None,
        verity: None,
    };
    if let Some(signing) = &signing {
        progress.report(Event::progress("computing the dm-verity hash tree"));
        meta.verity = Some(format_verity(&dir, opts.fec_roots)?);
        realms_sys::failpoint::hit("image-build-verity");
        meta.signed_by = opts
            .key
            .as_deref()
            .and_then(|k| k.file_stem())
            .map(|s| s.to_string_lossy().into_owned());
        let text = meta.to_text();
        realms_sys::atomic::write_file(dir.join("image.meta"), text.as_bytes(), 0o644)?;
        realms_sys::atomic::write_file(
            dir.join("image.sig"),
            keys::sign(signing, text.as_bytes()).as_bytes(),
            0o644,
        )?;
    } else {
        realms_sys::atomic::write_file(dir.join("image.meta"), meta.to_text().as_bytes(), 0o644)?;
    }
    Ok((staged, meta))
}

/// The metadata of the installed image `name`, if it is a block or sealed image.
pub fn installed_meta(store: &ImageStore, name: &str) -> Option<Meta> {
    Meta::load(&store.path(name).join("image.meta"))
        .ok()
        .map(|(m, _)| m)
}

fn mkfs(fs_type: Filesystem, tree: &Path, raw: &Path, label: &str) -> Result<()> {
    match fs_type {
        Filesystem::Erofs => Cmd::new("mkfs.erofs")
            .arg("--quiet")
            .arg(raw)
            .arg(tree)
            .run()?,
        Filesystem::Squashfs => Cmd::new("mksquashfs")
            .arg(tree)
            .arg(raw)
            .args(["-noappend", "-quiet", "-no-progress"])
            .run()?,
        Filesystem::Ext4 => {
            let used: u64 = Cmd::new("du")
                .args(["-sb", "--"])
                .arg(tree)
                .output_string()?
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let size = (used + used / 4 + (64 << 20)).next_multiple_of(4 << 20);
            fs::File::create(raw)
                .and_then(|f| f.set_len(size))
                .ctx("creating", raw)?;
            Cmd::new("mkfs.ext4")
                .args(["-q", "-O", "^has_journal", "-L", label, "-d"])
                .arg(tree)
                .arg(raw)
                .run()?
        }
    }
    Ok(())
}

/// dm-verity wants whole data blocks.
fn pad_to_block(raw: &Path) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .ctx("opening", raw)?;
    let len = f.metadata().ctx("reading", raw)?.len();
    f.set_len(len.next_multiple_of(4096)).ctx("padding", raw)?;
    Ok(())
}

/// Formats `image.verity` (and with `fec_roots`, `image.fec`) for `image.raw` with a fresh salt;
/// writes `image.roothash`.
fn format_verity(dir: &Path, fec_roots: Option<u32>) -> Result<VerityMeta> {
    let raw = dir.join("image.raw");
    let hash_path = dir.join("image.verity");
    let data = fs::File::open(&raw).ctx("opening", &raw)?;
    let hash = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&hash_path)
        .ctx("creating", &hash_path)?;
    let params = Params {
        salt: realms_sys::random::bytes::<32>()?.to_vec(),
        uuid: Some(realms_sys::random::bytes::<16>()?),
        ..Params::default()
    };
    let verity_err = |source| Error::Verity {
        path: dir.to_path_buf(),
        source,
    };
    let out = match fec_roots {
        Some(roots) => {
            let fec_path = dir.join("image.fec");
            let fec = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&fec_path)
                .ctx("creating", &fec_path)?;
            let fec_params = FecParams { roots, offset: 0 };
            let out = realms_verity::format_with_fec(&data, &hash, &fec, &params, &fec_params)
                .map_err(verity_err)?;
            fec.sync_all().ctx("writing", &fec_path)?;
            out.tree
        }
        None => realms_verity::format(&data, &hash, &params).map_err(verity_err)?,
    };
    hash.sync_all().ctx("writing", &hash_path)?;
    let root_hash = hex::encode(&out.root_hash);
    realms_sys::atomic::write_file(
        dir.join("image.roothash"),
        format!("{root_hash}\n").as_bytes(),
        0o644,
    )?;
    Ok(VerityMeta {
        hash: out.params.hash.name().into(),
        data_block_size: out.params.data_block_size,
        hash_block_size: out.params.hash_block_size,
        data_blocks: out.data_blocks,
        salt: hex::encode(&out.params.salt),
        uuid: out
            .uuid
            .map(|u| realms_verity::format_uuid(&u))
            .unwrap_or_default(),
        root_hash,
        fec_roots,
    })
}

/// A sealed image whose signature checked out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Checked {
    /// Its metadata.
    pub meta: Meta,
    /// The key that signed it.
    pub signature: GoodSignature,
}

/// Checks a sealed image's signature against the trusted keys under `root`, and that its
/// metadata belongs to this image and agrees with its sidecar. Nothing is mounted.
pub fn check_signature(root: &Path, info: &ImageInfo) -> Result<Checked> {
    let meta_path = info.path.join("image.meta");
    let store_dir = ImageStore::open(root)?.dir().to_path_buf();
    // A name the store knows as sealed that is no longer signed had its seal stripped.
    let stripped = |e: Error| match e {
        Error::Unsigned { name } if crate::seals::is_sealed(&store_dir, &name) => {
            Error::SealStripped {
                record: crate::seals::path(&store_dir, &name),
                name,
            }
        }
        e => e,
    };
    let bytes = untrusted::read(&meta_path, untrusted::TEXT_CAP)
        .map_err(|e| {
            if e.is_not_found() {
                Error::Unsigned {
                    name: info.name.clone(),
                }
            } else {
                Error::Sys(e)
            }
        })
        .map_err(stripped)?;
    let trusted = keys::trusted(root)?;
    let signature = keys::check(&info.name, &info.path.join("image.sig"), &bytes, &trusted)
        .map_err(stripped)?;
    let text = String::from_utf8(bytes).map_err(|_| tampered(info, Tamper::MetaNotUtf8))?;
    let meta = Meta::parse(&text, &meta_path)?;
    if meta.name != info.name {
        return Err(tampered(info, Tamper::OtherImage(meta.name)));
    }
    let verity = meta
        .verity
        .as_ref()
        .ok_or_else(|| tampered(info, Tamper::NoVerity))?;
    let sidecar = untrusted::read_to_string(&info.path.join("image.roothash"), untrusted::TEXT_CAP)
        .unwrap_or_default();
    if sidecar != format!("{}\n", verity.root_hash) {
        return Err(tampered(info, Tamper::RootHashSidecar));
    }
    check_superblock_padding(info, verity.hash_block_size)?;
    // The current version may not go below the highest accepted; the versions kept for realms
    // made before an update (`.prev`, `.old-N`) are older by design.
    if info.path == ImageStore::open(root)?.path(&info.name) {
        crate::seals::accept(&store_dir, &info.name, &meta.version, false)?;
    }
    Ok(Checked { meta, signature })
}

/// Bytes 512 up to the hash block size of `image.verity`'s first block (the superblock's
/// padding) are read by no one, the kernel and veritysetup included; our format writes zeros
/// there, and anything else is refused, so that no byte of a sealed image is outside what is
/// checked (docs/sealed.md).
fn check_superblock_padding(info: &ImageInfo, hash_block_size: u32) -> Result<()> {
    use std::io::Read;
    let path = info.path.join("image.verity");
    let size = usize::try_from(hash_block_size)
        .ok()
        .filter(|s| (512..=1 << 20).contains(s))
        .ok_or_else(|| tampered(info, Tamper::BadParameter("hash block size")))?;
    let mut block = vec![0u8; size];
    fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut block))
        .ctx("reading the superblock of", &path)?;
    if let Some(at) = block[512..].iter().position(|b| *b != 0) {
        return Err(tampered(info, Tamper::Padding(512 + at)));
    }
    Ok(())
}

fn tampered(info: &ImageInfo, reason: Tamper) -> Error {
    Error::Tampered {
        name: info.name.clone(),
        reason,
    }
}

/// The verity parameters of checked metadata.
pub fn verity_params(info: &ImageInfo, v: &VerityMeta) -> Result<(Params, Vec<u8>)> {
    let bad = |what: &'static str| tampered(info, Tamper::BadParameter(what));
    let hash: HashAlgorithm = v.hash.parse().map_err(|_| bad("hash algorithm"))?;
    let params = Params {
        hash,
        data_block_size: v.data_block_size,
        hash_block_size: v.hash_block_size,
        salt: hex::decode(&v.salt).map_err(|_| bad("salt"))?,
        uuid: realms_verity::parse_uuid(&v.uuid),
        superblock: true,
        hash_offset: 0,
        data_blocks: Some(v.data_blocks),
        hash_type: 1,
    };
    Ok((
        params,
        hex::decode(&v.root_hash).map_err(|_| bad("root hash"))?,
    ))
}

/// What `realms appimg verify` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Verified {
    /// The image.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The key that signed it.
    pub signed_by: GoodSignature,
    /// The number of data blocks checked against the hash tree.
    pub data_blocks: u64,
    /// The root hash, in hex.
    pub root_hash: String,
    /// With FEC: the bytes it would correct (0 when the image is intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fec_corrected: Option<u64>,
}

/// The FEC area of a sealed image with FEC (`image.fec`): its layout for the dm table.
pub fn fec_layout(info: &ImageInfo, params: &Params, v: &VerityMeta) -> Result<Option<FecLayout>> {
    let Some(roots) = v.fec_roots else {
        return Ok(None);
    };
    let hash_path = info.path.join("image.verity");
    let hash_size = fs::metadata(&hash_path).ctx("reading", &hash_path)?.len();
    let verity_err = |source| Error::Verity {
        path: info.path.clone(),
        source,
    };
    let tree = realms_verity::tree_layout(params, v.data_blocks).map_err(verity_err)?;
    let fec = FecParams { roots, offset: 0 };
    realms_verity::fec_layout(params, &tree, hash_size, false, &fec)
        .map(Some)
        .map_err(verity_err)
}

/// Checks the signature and then the whole hash tree in userspace; names the first bad block.
/// An image with FEC passes when FEC corrects what is damaged (the kernel would too).
pub fn verify(root: &Path, info: &ImageInfo) -> Result<Verified> {
    if info.kind != ImageKind::Sealed {
        return Err(Error::Unsigned {
            name: info.name.clone(),
        });
    }
    let checked = check_signature(root, info)?;
    let v = checked.meta.verity.as_ref().expect("checked above");
    let (params, root_hash) = verity_params(info, v)?;
    let open =
        |name: &str| fs::File::open(info.path.join(name)).ctx("opening", info.path.join(name));
    let (data, hash) = (open("image.raw")?, open("image.verity")?);
    let fec_corrected = match v.fec_roots {
        Some(roots) => {
            let fec = open("image.fec")?;
            let fec_params = FecParams { roots, offset: 0 };
            let outcome = realms_verity::verify_with_fec(
                &data,
                &hash,
                &fec,
                &params,
                &fec_params,
                &root_hash,
            )
            .map_err(|e| tampered(info, Tamper::Verity(e)))?;
            Some(outcome.corrections.symbols)
        }
        None => {
            realms_verity::verify(&data, &hash, &params, &root_hash)
                .map_err(|e| tampered(info, Tamper::Verity(e)))?;
            None
        }
    };
    Ok(Verified {
        name: info.name.clone(),
        version: checked.meta.version.clone(),
        signed_by: checked.signature,
        data_blocks: v.data_blocks,
        root_hash: v.root_hash.clone(),
        fec_corrected,
    })
}

#[cfg(test)]
mod tests;
