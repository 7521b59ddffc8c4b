//! Verifying a device against its hash area and root hash, naming the first bad block.
//!
//! The tree is checked top down, the way the kernel trusts it: the top hash block against the
//! root hash, each upper level against the verified level above (all in memory, they are
//! small), then level 0 and the data in streamed chunks, each level-0 block against level 1
//! before the data blocks it covers are checked against it. So a failure is pinned on the block
//! that changed, in the data or the hash area, not on the blocks that merely depend on it.

use crate::error::{Corruption, Device, Error, Result};
use crate::format::data_block_count;
use crate::hash::SaltedHasher;
use crate::io::ReadAt;
use crate::layout::{TreeLayout, tree_layout};
use crate::params::Params;
use crate::superblock::{SUPERBLOCK_SIZE, Superblock};
use crate::tree::{Chunking, hash_blocks, hash_data, read_hash_blocks};

/// Reads and parses the superblock at `offset` of the hash device.
pub fn read_superblock<H: ReadAt + ?Sized>(hash: &H, offset: u64) -> Result<Superblock> {
    let size = hash.size().map_err(Error::read(Device::Hash, 0))?;
    let needed = offset.saturating_add(SUPERBLOCK_SIZE as u64);
    if size < needed {
        return Err(Error::TooSmall {
            device: Device::Hash,
            size,
            needed,
        });
    }
    let mut buf = [0u8; SUPERBLOCK_SIZE];
    hash.read_exact_at(&mut buf, offset)
        .map_err(Error::read(Device::Hash, offset))?;
    Superblock::parse(&buf).map_err(|source| Error::Superblock { offset, source })
}

/// Checks the data device against the hash area and `root_hash`, like `veritysetup verify`.
///
/// With `params.superblock`, the superblock is read and must agree with `params` (hash, block
/// sizes and salt always; uuid and data block count when given); its data block count is used.
/// The first failure is returned: a malformed superblock, a mismatching hash or data block
/// ([`Corruption`]), or the root hash.
pub fn verify<D, H>(data: &D, hash: &H, params: &Params, root_hash: &[u8]) -> Result<()>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
{
    let params = resolve(hash, params)?;
    if root_hash.len() != params.hash.digest_size() {
        return Err(Error::RootHashLength {
            len: root_hash.len(),
            algorithm: params.hash,
            expected: params.hash.digest_size(),
        });
    }
    let data_size = data.size().map_err(Error::read(Device::Data, 0))?;
    let data_blocks = data_block_count(&params, data_size)?;
    let layout = tree_layout(&params, data_blocks)?;
    let hash_size = hash.size().map_err(Error::read(Device::Hash, 0))?;
    // Without levels nothing past the superblock is read (a one-block device).
    if hash_size < layout.hash_end && !layout.levels.is_empty() {
        return Err(Error::TooSmall {
            device: Device::Hash,
            size: hash_size,
            needed: layout.hash_end,
        });
    }
    let hasher = params.hasher();
    let chunking = Chunking::new(&layout);

    if layout.levels.is_empty() {
        let mut entry = Vec::new();
        hash_data(data, &layout, &chunking, &hasher, 0, 1, &mut entry)?;
        return check_root(&entry[..hasher.digest_size()], root_hash);
    }
    let level1 = verify_upper_levels(hash, &layout, &hasher, root_hash)?;
    verify_level0_and_data(data, hash, &layout, &chunking, &hasher, level1.as_deref())
}

/// The parameters with the superblock's data block count, after checking that the superblock
/// (if there is one) agrees with them.
pub(crate) fn resolve<H: ReadAt + ?Sized>(hash: &H, params: &Params) -> Result<Params> {
    params.validate()?;
    let mut params = params.clone();
    if params.superblock {
        let sb = read_superblock(hash, params.hash_offset)?;
        params.check_superblock(&sb)?;
        params.data_blocks = Some(sb.data_blocks);
    }
    Ok(params)
}

fn check_root(computed: &[u8], expected: &[u8]) -> Result<()> {
    if computed != expected {
        return Err(Corruption::RootHash {
            expected: hex::encode(expected),
            computed: hex::encode(computed),
        }
        .into());
    }
    Ok(())
}

/// Verifies the top block against the root hash and every level above 0 against the level above
/// it; returns level 1's blocks (the parents of level 0), or `None` when level 0 is the top.
fn verify_upper_levels<H: ReadAt + ?Sized>(
    hash: &H,
    layout: &TreeLayout,
    hasher: &SaltedHasher,
    root_hash: &[u8],
) -> Result<Option<Vec<u8>>> {
    let top = layout.levels.len() - 1;
    let mut above = read_hash_blocks(hash, layout, top, 0, 1)?;
    check_root(&hasher.digest(&above), root_hash)?;
    if top == 0 {
        return Ok(None);
    }
    for level in (1..top).rev() {
        let blocks = read_hash_blocks(hash, layout, level, 0, layout.levels[level].blocks)?;
        check_hash_blocks(layout, hasher, level, 0, &blocks, &above)?;
        above = blocks;
    }
    Ok(Some(above))
}

/// Checks hash blocks `first..` of `level` against their entries in the level above.
fn check_hash_blocks(
    layout: &TreeLayout,
    hasher: &SaltedHasher,
    level: usize,
    first: u64,
    blocks: &[u8],
    above: &[u8],
) -> Result<()> {
    let computed = hash_blocks(layout, hasher, blocks);
    let bad = first_mismatch(layout, hasher, &computed, above, first);
    match bad {
        Some(i) => {
            let block = first + i;
            let offset = layout.hash_block_offset(level, block);
            Err(Corruption::HashBlock {
                level,
                block,
                offset,
            }
            .into())
        }
        None => Ok(()),
    }
}

/// Index (from 0) of the first of `computed`'s entries whose digest differs from the entry
/// `first + i` of `stored`.
fn first_mismatch(
    layout: &TreeLayout,
    hasher: &SaltedHasher,
    computed: &[u8],
    stored: &[u8],
    first: u64,
) -> Option<u64> {
    let entry = layout.entry_size as usize;
    let digest = hasher.digest_size();
    computed
        .chunks_exact(entry)
        .enumerate()
        .position(|(i, c)| {
            let at = layout.entry_offset(first + i as u64) as usize;
            stored.get(at..at + digest) != Some(&c[..digest])
        })
        .map(|i| i as u64)
}

/// Streams level 0 and the data: each chunk's level-0 blocks are checked against level 1 (when
/// there is a level 1), then the chunk's data blocks against them.
fn verify_level0_and_data<D, H>(
    data: &D,
    hash: &H,
    layout: &TreeLayout,
    chunking: &Chunking,
    hasher: &SaltedHasher,
    level1: Option<&[u8]>,
) -> Result<()>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
{
    let per = layout.hashes_per_block;
    let chunk_l0 = chunking.chunk_blocks / per;
    let total = layout.levels[0].blocks;
    let mut computed = Vec::new();
    let mut b0 = 0;
    while b0 < total {
        let count = chunk_l0.min(total - b0);
        let stored = read_hash_blocks(hash, layout, 0, b0, count)?;
        if let Some(above) = level1 {
            check_hash_blocks(layout, hasher, 0, b0, &stored, above)?;
        }
        let first = b0 * per;
        let blocks = (count * per).min(layout.data_blocks - first);
        hash_data(data, layout, chunking, hasher, first, blocks, &mut computed)?;
        if let Some(i) = first_mismatch(layout, hasher, &computed, &stored, 0) {
            let block = first + i;
            let offset = block * layout.data_block_size;
            return Err(Corruption::DataBlock { block, offset }.into());
        }
        b0 += count;
    }
    Ok(())
}
