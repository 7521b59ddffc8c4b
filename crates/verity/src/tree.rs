//! Parallel hashing shared by format and verify: data blocks read and hashed in tasks on all
//! cores, a bounded chunk at a time, and hash blocks hashed into the level above.

use rayon::prelude::*;

use crate::error::{Device, Error, Result};
use crate::hash::SaltedHasher;
use crate::io::ReadAt;
use crate::layout::TreeLayout;

/// Data bytes one task reads and hashes (rounded to whole level-0 hash blocks).
const TASK_BYTES: u64 = 512 * 1024;
/// Tasks per chunk: a chunk is the unit between two sequential steps (tree writes, compares).
const TASKS_PER_CHUNK: u64 = 32;

/// How the data is cut into chunks and tasks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunking {
    /// Data blocks per task; a multiple of the hashes per block.
    pub task_blocks: u64,
    /// Data blocks per chunk; a multiple of `task_blocks`.
    pub chunk_blocks: u64,
}

impl Chunking {
    pub(crate) fn new(layout: &TreeLayout) -> Chunking {
        let per = layout.hashes_per_block;
        let wanted = (TASK_BYTES / layout.data_block_size).max(1);
        let task_blocks = wanted.div_ceil(per) * per;
        Chunking {
            task_blocks,
            chunk_blocks: task_blocks * TASKS_PER_CHUNK,
        }
    }
}

/// Reads data blocks `first..first + count` and writes their padded hashes into `out`
/// (resized to `count` entries), in parallel.
pub(crate) fn hash_data<D: ReadAt + ?Sized>(
    data: &D,
    layout: &TreeLayout,
    chunking: &Chunking,
    hasher: &SaltedHasher,
    first: u64,
    count: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    let entry = layout.entry_size as usize;
    let dbs = layout.data_block_size as usize;
    let task_blocks = chunking.task_blocks as usize;
    out.clear();
    out.resize(count as usize * entry, 0);
    out.par_chunks_mut(task_blocks * entry)
        .enumerate()
        .try_for_each_init(Vec::new, |buf: &mut Vec<u8>, (i, entries)| {
            let blocks = entries.len() / entry;
            let offset = (first + (i * task_blocks) as u64) * layout.data_block_size;
            buf.resize(blocks * dbs, 0);
            data.read_exact_at(buf, offset)
                .map_err(Error::read(Device::Data, offset))?;
            for (block, e) in buf.chunks_exact(dbs).zip(entries.chunks_exact_mut(entry)) {
                hasher.hash_into(block, e);
            }
            Ok(())
        })
}

/// The padded hashes of whole hash blocks, in parallel.
pub(crate) fn hash_blocks(layout: &TreeLayout, hasher: &SaltedHasher, blocks: &[u8]) -> Vec<u8> {
    let entry = layout.entry_size as usize;
    let hbs = layout.hash_block_size as usize;
    let mut out = vec![0u8; blocks.len() / hbs * entry];
    out.par_chunks_mut(entry)
        .zip(blocks.par_chunks_exact(hbs))
        .with_min_len(16)
        .for_each(|(e, block)| hasher.hash_into(block, e));
    out
}

/// Reads `count` hash blocks of `level` starting at block `first`.
pub(crate) fn read_hash_blocks<H: ReadAt + ?Sized>(
    hash: &H,
    layout: &TreeLayout,
    level: usize,
    first: u64,
    count: u64,
) -> Result<Vec<u8>> {
    let offset = layout.hash_block_offset(level, first);
    let mut buf = vec![0u8; (count * layout.hash_block_size) as usize];
    hash.read_exact_at(&mut buf, offset)
        .map_err(Error::read(Device::Hash, offset))?;
    Ok(buf)
}
