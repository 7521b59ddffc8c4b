//! The geometry of the hash area: superblock, then the hash levels, top level first.
//!
//! Level 0 holds the hashes of the data blocks, level 1 the hashes of level 0's blocks, and so
//! on up to a level of one block, whose hash is the root hash. A device of one data block has
//! no levels at all: its root hash is the hash of that block. On disk the levels are stored
//! top level first. With a superblock, the tree starts at the first hash block after the 512
//! superblock bytes at the hash offset; without one, at the hash block the hash offset falls in
//! (veritysetup rounds down there).

use crate::error::{Error, Result};
use crate::params::Params;
use crate::superblock::SUPERBLOCK_SIZE;

/// One level of the hash tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Byte offset of the level's first block in the hash device.
    pub offset: u64,
    /// Number of hash blocks in the level.
    pub blocks: u64,
}

/// Where everything lies for given parameters and data block count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// Data block size in bytes.
    pub data_block_size: u64,
    /// Hash block size in bytes.
    pub hash_block_size: u64,
    /// Bytes one hash takes in a hash block (the digest size rounded up to a power of two; for
    /// hash type 0 the digest size, packed).
    pub entry_size: u64,
    /// Hashes per hash block.
    pub hashes_per_block: u64,
    /// Byte offset of the superblock in the hash device, if there is one.
    pub superblock_offset: Option<u64>,
    /// The levels, index 0 the lowest; the last has exactly one block.
    pub levels: Vec<Level>,
    /// Byte offset where the tree (its top level) starts.
    pub tree_offset: u64,
    /// Byte offset just past the tree: the hash device is at least this long.
    pub hash_end: u64,
}

impl TreeLayout {
    /// Total number of hash blocks in all levels (veritysetup's "Hash blocks").
    pub fn hash_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// Bytes of the data device the tree covers.
    pub fn data_size(&self) -> u64 {
        // Checked when the layout was built.
        self.data_blocks * self.data_block_size
    }

    /// Bytes of a hash block that hold hashes; the rest of the block is zeros (only hash type 0
    /// with a digest size that is not a power of two leaves such a rest).
    pub fn entries_bytes(&self) -> u64 {
        self.hashes_per_block * self.entry_size
    }

    /// Byte offset of hash entry `index` in a run of whole hash blocks.
    pub fn entry_offset(&self, index: u64) -> u64 {
        index / self.hashes_per_block * self.hash_block_size
            + index % self.hashes_per_block * self.entry_size
    }

    /// Byte offset of block `block` of level `level`.
    pub fn hash_block_offset(&self, level: usize, block: u64) -> u64 {
        self.levels[level].offset + block * self.hash_block_size
    }
}

fn too_large(what: &'static str) -> Error {
    Error::TooLarge { what }
}

/// Number of blocks in each level for `data_blocks` data blocks, lowest level first.
pub fn level_sizes(data_blocks: u64, hashes_per_block: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut n = data_blocks;
    while n > 1 {
        n = n.div_ceil(hashes_per_block);
        sizes.push(n);
    }
    sizes
}

/// The layout for `params` covering `data_blocks` data blocks (parameters must be valid).
pub fn tree_layout(params: &Params, data_blocks: u64) -> Result<TreeLayout> {
    params.validate()?;
    if data_blocks == 0 {
        return Err(Error::NoDataBlocks);
    }
    let hbs = u64::from(params.hash_block_size);
    let dbs = u64::from(params.data_block_size);
    // Both hash types fit a power of two of hashes in a block: the digest size rounded up.
    let hashes_per_block = hbs / params.hash.entry_size() as u64;
    let entry_size = if params.hash_type == 0 {
        params.hash.digest_size() as u64
    } else {
        params.hash.entry_size() as u64
    };
    data_blocks
        .checked_mul(dbs)
        .ok_or_else(|| too_large("the data size"))?;

    let (superblock_offset, first_block) = if params.superblock {
        let end = params
            .hash_offset
            .checked_add(SUPERBLOCK_SIZE as u64)
            .ok_or_else(|| too_large("the hash offset"))?;
        (Some(params.hash_offset), end.div_ceil(hbs))
    } else {
        (None, params.hash_offset / hbs)
    };

    let sizes = level_sizes(data_blocks, hashes_per_block);
    let mut levels = vec![
        Level {
            offset: 0,
            blocks: 0
        };
        sizes.len()
    ];
    let mut position = first_block;
    for (i, &blocks) in sizes.iter().enumerate().rev() {
        let offset = position
            .checked_mul(hbs)
            .ok_or_else(|| too_large("the hash area"))?;
        levels[i] = Level { offset, blocks };
        position = position
            .checked_add(blocks)
            .ok_or_else(|| too_large("the hash area"))?;
    }
    let tree_offset = first_block
        .checked_mul(hbs)
        .ok_or_else(|| too_large("the hash offset"))?;
    let hash_end = position
        .checked_mul(hbs)
        .ok_or_else(|| too_large("the hash area"))?;
    Ok(TreeLayout {
        data_blocks,
        data_block_size: dbs,
        hash_block_size: hbs,
        entry_size,
        hashes_per_block,
        superblock_offset,
        levels,
        tree_offset,
        hash_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashAlgorithm;

    /// data blocks, hash, data/hash block size, superblock, hash offset,
    /// (offset, blocks) per level lowest first, hash end.
    type Case = (
        u64,
        HashAlgorithm,
        u32,
        u32,
        bool,
        u64,
        &'static [(u64, u64)],
        u64,
    );

    use HashAlgorithm::{Sha1, Sha256, Sha512};

    /// Sizes match the hash files veritysetup 2.6.1 wrote (vectors.tsv and by hand).
    const CASES: &[Case] = &[
        (1, Sha256, 4096, 4096, true, 0, &[], 4096),
        (1, Sha256, 4096, 4096, false, 0, &[], 0),
        (2, Sha256, 4096, 4096, true, 0, &[(4096, 1)], 8192),
        (2, Sha256, 4096, 4096, false, 0, &[(0, 1)], 4096),
        (8, Sha256, 512, 1024, true, 0, &[(1024, 1)], 2048),
        (128, Sha256, 4096, 4096, true, 0, &[(4096, 1)], 8192),
        (
            129,
            Sha256,
            4096,
            4096,
            true,
            0,
            &[(8192, 2), (4096, 1)],
            16384,
        ),
        (
            129,
            Sha512,
            4096,
            4096,
            true,
            0,
            &[(8192, 3), (4096, 1)],
            20480,
        ),
        (
            300,
            Sha256,
            4096,
            4096,
            true,
            0,
            &[(8192, 3), (4096, 1)],
            20480,
        ),
        (
            1000,
            Sha256,
            4096,
            4096,
            false,
            0,
            &[(4096, 8), (0, 1)],
            36864,
        ),
        (
            8000,
            Sha256,
            512,
            1024,
            true,
            0,
            &[(10240, 250), (2048, 8), (1024, 1)],
            266240,
        ),
        (
            16384,
            Sha256,
            4096,
            4096,
            true,
            0,
            &[(8192, 128), (4096, 1)],
            532480,
        ),
        (
            16385,
            Sha256,
            4096,
            4096,
            true,
            0,
            &[(16384, 129), (8192, 2), (4096, 1)],
            544768,
        ),
        (3, Sha1, 4096, 512, true, 0, &[(512, 1)], 1024),
        (17, Sha1, 4096, 512, true, 0, &[(1024, 2), (512, 1)], 2048),
        (3, Sha256, 4096, 4096, true, 512, &[(4096, 1)], 8192),
        (3, Sha256, 4096, 4096, true, 1536, &[(4096, 1)], 8192),
        (3, Sha256, 4096, 4096, true, 4096, &[(8192, 1)], 12288),
        (3, Sha256, 4096, 4096, false, 512, &[(0, 1)], 4096),
        (3, Sha256, 4096, 4096, false, 4096, &[(4096, 1)], 8192),
        (1, Sha256, 1024, 1024, true, 0, &[], 1024),
    ];

    #[test]
    fn geometry_table() {
        for &(data_blocks, hash, dbs, hbs, superblock, hash_offset, levels, hash_end) in CASES {
            let params = Params {
                hash,
                data_block_size: dbs,
                hash_block_size: hbs,
                superblock,
                hash_offset,
                ..Params::default()
            };
            let layout = tree_layout(&params, data_blocks).unwrap();
            let got: Vec<(u64, u64)> = layout.levels.iter().map(|l| (l.offset, l.blocks)).collect();
            let label = format!(
                "{data_blocks} blocks {hash} {dbs}/{hbs} sb={superblock} off={hash_offset}"
            );
            assert_eq!(got, levels, "{label}");
            assert_eq!(layout.hash_end, hash_end, "{label}");
            assert_eq!(
                layout.superblock_offset,
                superblock.then_some(hash_offset),
                "{label}"
            );
            assert_eq!(
                layout.hash_blocks(),
                levels.iter().map(|l| l.1).sum::<u64>(),
                "{label}"
            );
        }
    }

    #[test]
    fn level_counts() {
        assert_eq!(level_sizes(1, 128), Vec::<u64>::new());
        assert_eq!(level_sizes(128, 128), vec![1]);
        assert_eq!(level_sizes(129, 128), vec![2, 1]);
        assert_eq!(level_sizes(128 * 128 + 1, 128), vec![129, 2, 1]);
        assert_eq!(level_sizes(u64::MAX, 2).len(), 64);
    }

    #[test]
    fn huge_counts_are_errors_not_panics() {
        let params = Params::default();
        assert!(tree_layout(&params, u64::MAX).is_err());
        assert!(tree_layout(&params, u64::MAX / 4096).is_ok());
        let far = Params {
            hash_offset: u64::MAX - 511,
            ..Params::default()
        };
        assert!(tree_layout(&far, 1).is_err());
        assert!(tree_layout(&params, 0).is_err());
    }

    /// Regression (fuzz artifact crash-43193e8a): a superblock read at a hash offset near
    /// u64::MAX made the tree's offset overflow (a panic in debug builds, a wrap in release).
    #[test]
    fn crash_43193e8a_hash_offset_near_the_end_of_u64_is_an_error() {
        let params = Params {
            hash: Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            salt: vec![0; 32],
            uuid: None,
            superblock: true,
            hash_offset: 0xffff_ffff_ffff_fc00,
            data_blocks: Some(1),
            hash_type: 1,
        };
        for data_blocks in [1, 2, 1 << 20] {
            let err = tree_layout(&params, data_blocks).unwrap_err();
            assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        }
        let no_superblock = Params {
            superblock: false,
            hash_offset: u64::MAX - 4095,
            ..params
        };
        assert!(tree_layout(&no_superblock, 2).is_err());
    }
}
