//! The parameters of a dm-verity device, mirroring veritysetup's options, and their validation.

use crate::error::{Device, Error, Result};
use crate::hash::{HashAlgorithm, SaltedHasher};
use crate::superblock::{MAX_HASH_TYPE, MAX_SALT, Superblock, format_uuid, valid_block_size};

/// The parameters of a dm-verity device (veritysetup's options of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `--hash`: the hash algorithm.
    pub hash: HashAlgorithm,
    /// `--data-block-size`: a power of two from 512 to 4096.
    pub data_block_size: u32,
    /// `--hash-block-size`: a power of two from 512 to 4096.
    pub hash_block_size: u32,
    /// `--salt`: up to 256 bytes, may be empty.
    pub salt: Vec<u8>,
    /// `--uuid`: the superblock's uuid; format picks a random one when `None`.
    pub uuid: Option<[u8; 16]>,
    /// `false` for `--no-superblock`.
    pub superblock: bool,
    /// `--hash-offset`: where the hash area (superblock first) starts in the hash device; a
    /// multiple of 512.
    pub hash_offset: u64,
    /// `--data-blocks`: how many data blocks to cover; all whole blocks of the data device when
    /// `None`.
    pub data_blocks: Option<u64>,
    /// `--format`: the hash type, 1 (the default) or 0 (the original Chromium OS format:
    /// `block || salt` hashed, digests packed without padding).
    pub hash_type: u32,
}

impl Default for Params {
    /// veritysetup's defaults, with an empty salt (veritysetup would pick a random one).
    fn default() -> Self {
        Params {
            hash: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            salt: Vec::new(),
            uuid: None,
            superblock: true,
            hash_offset: 0,
            data_blocks: None,
            hash_type: 1,
        }
    }
}

impl Params {
    /// Checks block sizes, salt length, hash offset alignment and the data block count.
    pub fn validate(&self) -> Result<()> {
        for (device, size) in [
            (Device::Data, self.data_block_size),
            (Device::Hash, self.hash_block_size),
        ] {
            if !valid_block_size(size) {
                return Err(Error::BlockSize { device, size });
            }
        }
        if self.salt.len() > MAX_SALT {
            return Err(Error::SaltLength {
                len: self.salt.len(),
            });
        }
        if !self.hash_offset.is_multiple_of(512) {
            return Err(Error::HashOffset {
                offset: self.hash_offset,
            });
        }
        if self.data_blocks == Some(0) {
            return Err(Error::NoDataBlocks);
        }
        if self.hash_type > MAX_HASH_TYPE {
            return Err(Error::HashType {
                hash_type: self.hash_type,
            });
        }
        Ok(())
    }

    /// The hasher these parameters' tree uses.
    pub(crate) fn hasher(&self) -> SaltedHasher {
        self.hash.salted(&self.salt, self.hash_type)
    }

    /// The parameters a superblock records, at `hash_offset`.
    pub fn from_superblock(sb: &Superblock, hash_offset: u64) -> Params {
        Params {
            hash: sb.algorithm,
            data_block_size: sb.data_block_size,
            hash_block_size: sb.hash_block_size,
            salt: sb.salt.clone(),
            uuid: Some(sb.uuid),
            superblock: true,
            hash_offset,
            data_blocks: Some(sb.data_blocks),
            hash_type: sb.hash_type,
        }
    }

    /// The first parameter where `sb` disagrees with these parameters (`uuid` and `data_blocks`
    /// only when given), as an error.
    pub(crate) fn check_superblock(&self, sb: &Superblock) -> Result<()> {
        let mismatch = |field: &'static str, found: String, expected: String| {
            Err(Error::SuperblockMismatch {
                field,
                found,
                expected,
            })
        };
        if sb.hash_type != self.hash_type {
            return mismatch(
                "hash type",
                sb.hash_type.to_string(),
                self.hash_type.to_string(),
            );
        }
        if sb.algorithm != self.hash {
            return mismatch(
                "hash algorithm",
                sb.algorithm.to_string(),
                self.hash.to_string(),
            );
        }
        if sb.data_block_size != self.data_block_size {
            return mismatch(
                "data block size",
                sb.data_block_size.to_string(),
                self.data_block_size.to_string(),
            );
        }
        if sb.hash_block_size != self.hash_block_size {
            return mismatch(
                "hash block size",
                sb.hash_block_size.to_string(),
                self.hash_block_size.to_string(),
            );
        }
        if sb.salt != self.salt {
            return mismatch("salt", salt_text(&sb.salt), salt_text(&self.salt));
        }
        if let Some(blocks) = self.data_blocks.filter(|&b| b != sb.data_blocks) {
            return mismatch(
                "data block count",
                sb.data_blocks.to_string(),
                blocks.to_string(),
            );
        }
        if let Some(uuid) = self.uuid.filter(|u| *u != sb.uuid) {
            return mismatch("uuid", format_uuid(&sb.uuid), format_uuid(&uuid));
        }
        Ok(())
    }
}

/// A salt the way veritysetup prints it: hex, or `-` when empty.
pub fn salt_text(salt: &[u8]) -> String {
    if salt.is_empty() {
        "-".to_string()
    } else {
        hex::encode(salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(Params::default().validate().is_ok());
        let bad = [
            Params {
                data_block_size: 256,
                ..Params::default()
            },
            Params {
                hash_block_size: 8192,
                ..Params::default()
            },
            Params {
                data_block_size: 1536,
                ..Params::default()
            },
            Params {
                salt: vec![0; 257],
                ..Params::default()
            },
            Params {
                hash_offset: 100,
                ..Params::default()
            },
            Params {
                data_blocks: Some(0),
                ..Params::default()
            },
            Params {
                hash_type: 2,
                ..Params::default()
            },
        ];
        for params in bad {
            assert!(
                matches!(
                    params.validate(),
                    Err(Error::BlockSize { .. }
                        | Error::SaltLength { .. }
                        | Error::HashOffset { .. }
                        | Error::NoDataBlocks
                        | Error::HashType { .. })
                ),
                "{params:?}"
            );
        }
        let ok = Params {
            salt: vec![1; 256],
            hash_offset: 1536,
            data_block_size: 512,
            ..Params::default()
        };
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn superblock_agreement() {
        let sb = Superblock {
            uuid: [7; 16],
            algorithm: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 10,
            salt: vec![1, 2],
            hash_type: 1,
        };
        let params = Params::from_superblock(&sb, 0);
        assert!(params.check_superblock(&sb).is_ok());
        let loose = Params {
            uuid: None,
            data_blocks: None,
            ..params.clone()
        };
        assert!(loose.check_superblock(&sb).is_ok());
        let fields = [
            (
                Params {
                    hash_type: 0,
                    ..params.clone()
                },
                "hash type",
            ),
            (
                Params {
                    hash: HashAlgorithm::Sha512,
                    ..params.clone()
                },
                "hash algorithm",
            ),
            (
                Params {
                    data_block_size: 512,
                    ..params.clone()
                },
                "data block size",
            ),
            (
                Params {
                    hash_block_size: 512,
                    ..params.clone()
                },
                "hash block size",
            ),
            (
                Params {
                    salt: vec![],
                    ..params.clone()
                },
                "salt",
            ),
            (
                Params {
                    data_blocks: Some(9),
                    ..params.clone()
                },
                "data block count",
            ),
            (
                Params {
                    uuid: Some([8; 16]),
                    ..params.clone()
                },
                "uuid",
            ),
        ];
        for (p, want) in fields {
            match p.check_superblock(&sb) {
                Err(Error::SuperblockMismatch { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
    }
}
