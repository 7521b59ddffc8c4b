//! Mounting a block or sealed image read-only as a realm's lower layer. A sealed image goes
//! through a kernel dm-verity device where the kernel has device-mapper; where it has not, the
//! whole image is verified in userspace first (which cannot catch later tampering).

use std::fs;
use std::path::Path;

use realms_sys::loopdev::{LoopDevice, LoopOptions};
use realms_sys::{dm, mount};
use serde::Serialize;

use crate::meta::Meta;
use crate::sealed::{check_signature, verify, verity_params};
use crate::store::{ImageInfo, ImageKind};
use crate::{Error, Result};

/// How the mounted image is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// A plain block image: read-only, not verified.
    None,
    /// Every read is checked by the kernel's dm-verity against the signed root hash.
    DmVerity,
    /// Verified once in userspace before the mount; later changes go unnoticed.
    VerifiedOnce,
}

/// How a sealed image would be protected on this machine.
pub fn sealed_protection() -> Protection {
    if dm::available() {
        Protection::DmVerity
    } else {
        Protection::VerifiedOnce
    }
}

/// Mounts image `info` read-only at `target` and leaves it mounted (call this in a mount
/// namespace that goes away with its user). `dm_name` names the dm-verity device.
pub fn mount_image(
    root: &Path,
    info: &ImageInfo,
    target: &Path,
    dm_name: &str,
) -> Result<Protection> {
    match info.kind {
        ImageKind::Tree => Err(Error::TreeNotMounted {
            name: info.name.clone(),
        }),
        ImageKind::Block => {
            let (meta, _) = Meta::load(&info.path.join("image.meta"))?;
            mount::mount_image(info.path.join("image.raw"), target, &meta.filesystem, true)?.leak();
            Ok(Protection::None)
        }
        ImageKind::Sealed if dm::available() => {
            mount_dm_verity(root, info, target, dm_name)?;
            Ok(Protection::DmVerity)
        }
        ImageKind::Sealed => {
            let checked = verify(root, info)?;
            let (meta, _) = Meta::load(&info.path.join("image.meta"))?;
            if meta.verity.as_ref().map(|v| &v.root_hash) != Some(&checked.root_hash) {
                return Err(Error::Tampered {
                    name: info.name.clone(),
                    reason: crate::Tamper::MetaChanged,
                });
            }
            mount::mount_image(info.path.join("image.raw"), target, &meta.filesystem, true)?.leak();
            Ok(Protection::VerifiedOnce)
        }
    }
}

fn mount_dm_verity(root: &Path, info: &ImageInfo, target: &Path, dm_name: &str) -> Result<()> {
    let checked = check_signature(root, info)?;
    let v = checked
        .meta
        .verity
        .as_ref()
        .expect("check_signature requires verity parameters");
    let (params, _) = verity_params(info, v)?;
    let ro = LoopOptions {
        read_only: true,
        autoclear: true,
        ..LoopOptions::default()
    };
    let data = LoopDevice::attach(info.path.join("image.raw"), &ro)?;
    let hash = LoopDevice::attach(info.path.join("image.verity"), &ro)?;
    let fec = match crate::sealed::fec_layout(info, &params, v)? {
        Some(layout) => Some((
            LoopDevice::attach(info.path.join("image.fec"), &ro)?,
            layout,
        )),
        None => None,
    };
    let table = dm::VerityTable {
        data_device: data.path().to_path_buf(),
        hash_device: hash.path().to_path_buf(),
        data_block_size: params.data_block_size,
        hash_block_size: params.hash_block_size,
        data_blocks: v.data_blocks,
        // The superblock takes the first hash block.
        hash_start_block: 1,
        algorithm: v.hash.clone(),
        root_hash_hex: v.root_hash.clone(),
        salt_hex: if v.salt.is_empty() {
            "-".into()
        } else {
            v.salt.clone()
        },
        fec: fec.as_ref().map(|(device, layout)| dm::VerityFec {
            device: device.path().to_path_buf(),
            roots: layout.roots,
            blocks: layout.blocks(),
            start_block: layout.start_block(),
        }),
    };
    let node_dir = root.join("run/realms/dm");
    if dm_exists(dm_name) {
        dm::remove(dm_name)?;
    }
    let node = dm::create_verity(dm_name, &table, &node_dir)?;
    let mounted = mount::mount_fs(
        &node,
        target,
        &checked.meta.filesystem,
        mount::MountFlags::RDONLY,
        "",
    );
    // From here the kernel removes the device once the mount (its last user) is gone, and the
    // autoclear loop devices follow it.
    let removal = dm::remove_deferred(dm_name);
    let _ = fs::remove_file(&node);
    mounted?.leak();
    removal?;
    drop((data, hash, fec));
    Ok(())
}

fn dm_exists(name: &str) -> bool {
    fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| fs::read_to_string(e.path().join("dm/name")).is_ok_and(|n| n.trim() == name))
}
