//! Building the hash area: the data is streamed in chunks hashed on all cores, and every hash
//! level is written as soon as its blocks are complete, so memory stays bounded whatever the
//! image size. The superblock is written last.

use crate::error::{Device, Error, Result};
use crate::hash::SaltedHasher;
use crate::io::{ReadAt, WriteAt};
use crate::layout::{TreeLayout, tree_layout};
use crate::params::Params;
use crate::superblock::Superblock;
use crate::tree::{Chunking, hash_blocks, hash_data};

/// What `format` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOutput {
    /// The root hash (digest size bytes).
    pub root_hash: Vec<u8>,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// Number of hash blocks in the tree (veritysetup's "Hash blocks").
    pub hash_blocks: u64,
    /// Bytes from the superblock (or the tree, without one) to the end of the tree.
    pub hash_area_size: u64,
    /// The superblock's uuid (`None` without a superblock).
    pub uuid: Option<[u8; 16]>,
    /// The parameters used, with `data_blocks` and (with a superblock) `uuid` filled in.
    pub params: Params,
    /// Where the tree lies in the hash device.
    pub layout: TreeLayout,
}

/// Number of data blocks the parameters cover on a data device of `data_size` bytes.
pub(crate) fn data_block_count(params: &Params, data_size: u64) -> Result<u64> {
    let dbs = u64::from(params.data_block_size);
    let blocks = params.data_blocks.unwrap_or(data_size / dbs);
    let needed = blocks.max(1).saturating_mul(dbs);
    if blocks == 0 || data_size < needed {
        return Err(Error::TooSmall {
            device: Device::Data,
            size: data_size,
            needed,
        });
    }
    Ok(blocks)
}

/// Hashes the data device and writes the hash area (superblock and tree) to `hash`, exactly as
/// `veritysetup format` does for the same parameters. `hash` may be the data file itself with
/// the hash area at `params.hash_offset`; it grows as needed and is never truncated.
pub fn format<D, H>(data: &D, hash: &H, params: &Params) -> Result<FormatOutput>
where
    D: ReadAt + ?Sized,
    H: WriteAt + ?Sized,
{
    params.validate()?;
    let data_size = data.size().map_err(Error::read(Device::Data, 0))?;
    let data_blocks = data_block_count(params, data_size)?;
    let layout = tree_layout(params, data_blocks)?;
    check_overlap(data, hash, &layout)?;

    let uuid = params
        .superblock
        .then(|| params.uuid.unwrap_or_else(random_uuid));
    let hasher = params.hasher();
    let root_hash = build_tree(data, hash, &layout, &hasher)?;

    if let Some(offset) = layout.superblock_offset {
        let sb = Superblock {
            hash_type: params.hash_type,
            uuid: uuid.unwrap_or_default(),
            algorithm: params.hash,
            data_block_size: params.data_block_size,
            hash_block_size: params.hash_block_size,
            data_blocks,
            salt: params.salt.clone(),
        };
        hash.write_all_at(&sb.to_bytes(), offset)
            .map_err(Error::write(offset))?;
    }
    // Like veritysetup: the file grows to the end of the hash area, except when nothing at all
    // is written (no superblock and a single data block, so no tree).
    if layout.superblock_offset.is_some() || !layout.levels.is_empty() {
        hash.grow_to(layout.hash_end)
            .map_err(Error::write(layout.hash_end))?;
    }

    let start = layout.superblock_offset.unwrap_or(layout.tree_offset);
    Ok(FormatOutput {
        root_hash,
        data_blocks,
        hash_blocks: layout.hash_blocks(),
        hash_area_size: layout.hash_end.saturating_sub(start),
        uuid,
        params: Params {
            uuid,
            data_blocks: Some(data_blocks),
            ..params.clone()
        },
        layout,
    })
}

/// A random version-4 uuid, as veritysetup generates when none is given.
fn random_uuid() -> [u8; 16] {
    let mut uuid: [u8; 16] = rand::random();
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    uuid
}

/// Refuses a hash area that would overwrite the data it covers in the same file.
fn check_overlap<D, H>(data: &D, hash: &H, layout: &TreeLayout) -> Result<()>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
{
    let same = matches!((data.identity(), hash.identity()), (Some(a), Some(b)) if a == b);
    let start = layout.superblock_offset.unwrap_or(layout.tree_offset);
    if same && layout.hash_end > start && start < layout.data_size() {
        return Err(Error::Overlap {
            data_end: layout.data_size(),
            hash_offset: start,
        });
    }
    Ok(())
}

/// Streams the data through the tree and returns the root hash.
fn build_tree<D, H>(
    data: &D,
    hash: &H,
    layout: &TreeLayout,
    hasher: &SaltedHasher,
) -> Result<Vec<u8>>
where
    D: ReadAt + ?Sized,
    H: WriteAt + ?Sized,
{
    let chunking = Chunking::new(layout);
    let mut entries = Vec::new();
    if layout.levels.is_empty() {
        // One data block: its hash is the root hash.
        hash_data(data, layout, &chunking, hasher, 0, 1, &mut entries)?;
        return Ok(entries[..hasher.digest_size()].to_vec());
    }
    let mut cascade = Cascade::new(hash, layout, hasher);
    let mut first = 0;
    while first < layout.data_blocks {
        let count = chunking.chunk_blocks.min(layout.data_blocks - first);
        hash_data(data, layout, &chunking, hasher, first, count, &mut entries)?;
        cascade.push(0, &entries)?;
        first += count;
    }
    cascade.finish()
}

/// The levels under construction: each keeps the entries of its incomplete last block; a
/// complete block is written at once and its hash pushed into the level above.
#[derive(Debug)]
struct Cascade<'a, H: ?Sized> {
    hash: &'a H,
    layout: &'a TreeLayout,
    hasher: &'a SaltedHasher,
    pending: Vec<Vec<u8>>,
    written: Vec<u64>,
    root: Option<Vec<u8>>,
}

impl<'a, H: WriteAt + ?Sized> Cascade<'a, H> {
    fn new(hash: &'a H, layout: &'a TreeLayout, hasher: &'a SaltedHasher) -> Self {
        let n = layout.levels.len();
        Cascade {
            hash,
            layout,
            hasher,
            pending: vec![Vec::new(); n],
            written: vec![0; n],
            root: None,
        }
    }

    /// Appends entries to `level`, emitting every block they complete.
    fn push(&mut self, level: usize, entries: &[u8]) -> Result<()> {
        let per_block = self.layout.entries_bytes() as usize;
        let pending = &mut self.pending[level];
        pending.extend_from_slice(entries);
        let full = pending.len() / per_block * per_block;
        if full == 0 {
            return Ok(());
        }
        let rest = pending.split_off(full);
        let entries = std::mem::replace(pending, rest);
        let blocks = self.pad(entries);
        self.emit(level, blocks)
    }

    /// Whole hash blocks from entries: each block's entries, then zeros to the block size
    /// (nothing to add unless hash type 0 packs digests that are not a power of two).
    fn pad(&self, entries: Vec<u8>) -> Vec<u8> {
        let per_block = self.layout.entries_bytes() as usize;
        let hbs = self.layout.hash_block_size as usize;
        if per_block == hbs && entries.len().is_multiple_of(hbs) {
            return entries;
        }
        let mut blocks = Vec::with_capacity(entries.len().div_ceil(per_block) * hbs);
        for chunk in entries.chunks(per_block) {
            blocks.extend_from_slice(chunk);
            blocks.resize(blocks.len() + hbs - chunk.len(), 0);
        }
        blocks
    }

    /// Writes whole blocks of `level` and pushes their hashes one level up.
    fn emit(&mut self, level: usize, blocks: Vec<u8>) -> Result<()> {
        let count = blocks.len() as u64 / self.layout.hash_block_size;
        if self.written[level] + count > self.layout.levels[level].blocks {
            return Err(Error::Internal {
                what: format!(
                    "level {level} grew past {} blocks",
                    self.layout.levels[level].blocks
                ),
            });
        }
        let offset = self.layout.hash_block_offset(level, self.written[level]);
        self.hash
            .write_all_at(&blocks, offset)
            .map_err(Error::write(offset))?;
        self.written[level] += count;
        let entries = hash_blocks(self.layout, self.hasher, &blocks);
        if level + 1 == self.layout.levels.len() {
            self.root = Some(entries[..self.hasher.digest_size()].to_vec());
            Ok(())
        } else {
            self.push(level + 1, &entries)
        }
    }

    /// Pads and emits every level's last block, bottom up, and returns the root hash.
    fn finish(mut self) -> Result<Vec<u8>> {
        for level in 0..self.layout.levels.len() {
            if !self.pending[level].is_empty() {
                let entries = std::mem::take(&mut self.pending[level]);
                let block = self.pad(entries);
                self.emit(level, block)?;
            }
        }
        match self.root {
            Some(root) => Ok(root),
            None => Err(Error::Internal {
                what: "the tree has no top block".into(),
            }),
        }
    }
}
