//! The version-1 dm-verity superblock veritysetup writes at the start of the hash area.
//!
//! 512 bytes, little-endian: signature `verity\0\0`, version, hash type, uuid, algorithm name,
//! data and hash block sizes, data block count, salt size, padding, salt (256 bytes), padding.
//! Parsing is strict: reserved bytes and unused salt bytes must be zero, so any change to the
//! 512 bytes is either a different valid superblock or an error, never a panic.

use crate::hash::HashAlgorithm;

/// The signature at the start of every superblock.
pub const SIGNATURE: [u8; 8] = *b"verity\0\0";
/// The on-disk size of the superblock (the hash area pads it to a whole hash block).
pub const SUPERBLOCK_SIZE: usize = 512;
/// The largest salt a superblock can hold.
pub const MAX_SALT: usize = 256;
/// The highest hash type veritysetup and the kernel know (0 is Chromium OS, 1 the default).
pub const MAX_HASH_TYPE: u32 = 1;

// Field offsets within the 512 bytes.
const VERSION: usize = 8;
const HASH_TYPE: usize = 12;
const UUID: usize = 16;
const ALGORITHM: usize = 32;
const ALGORITHM_LEN: usize = 32;
const DATA_BLOCK_SIZE: usize = 64;
const HASH_BLOCK_SIZE: usize = 68;
const DATA_BLOCKS: usize = 72;
const SALT_SIZE: usize = 80;
const PAD1: usize = 82;
const SALT: usize = 88;
const PAD2: usize = SALT + MAX_SALT;

/// A parsed version-1 superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// The hash type: 1, or 0 for the Chromium OS format.
    pub hash_type: u32,
    /// The device uuid (veritysetup prints it as `UUID:`).
    pub uuid: [u8; 16],
    /// The hash algorithm of the tree.
    pub algorithm: HashAlgorithm,
    /// Size of a data block in bytes.
    pub data_block_size: u32,
    /// Size of a hash block in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks the tree covers.
    pub data_blocks: u64,
    /// The salt (up to 256 bytes, possibly empty).
    pub salt: Vec<u8>,
}

/// Why 512 bytes are not a valid superblock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuperblockError {
    /// Fewer than 512 bytes were given.
    #[error("superblock is truncated: {0} bytes, 512 needed")]
    Truncated(usize),
    /// The first 8 bytes are not `verity\0\0`.
    #[error("no verity superblock signature (found {found:02x?})")]
    BadSignature {
        /// The first 8 bytes.
        found: [u8; 8],
    },
    /// A version other than 1.
    #[error("unsupported superblock version {0} (only 1 is supported)")]
    Version(u32),
    /// A hash type other than 0 (the Chromium OS format) and 1.
    #[error("unsupported hash type {0} (0 and 1 are supported)")]
    HashType(u32),
    /// The algorithm field is not a NUL-terminated supported name.
    #[error("unsupported or malformed hash algorithm {0:?}")]
    Algorithm(String),
    /// A block size that is not a power of two from 512 to 4096.
    #[error("invalid {which} block size {size} (a power of two from 512 to 4096)")]
    BlockSize {
        /// `data` or `hash`.
        which: &'static str,
        /// The size found.
        size: u32,
    },
    /// Zero data blocks.
    #[error("superblock describes zero data blocks")]
    NoDataBlocks,
    /// A salt size over 256 bytes.
    #[error("salt size {0} exceeds 256 bytes")]
    SaltSize(u16),
    /// A reserved or unused byte that must be zero is not.
    #[error("reserved byte {offset} of the superblock is not zero")]
    Reserved {
        /// Its offset in the superblock.
        offset: usize,
    },
}

/// Whether `size` is a block size this crate (and the kernel on 4 KiB pages) supports.
pub fn valid_block_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=4096).contains(&size)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn require_zero(b: &[u8], range: std::ops::Range<usize>) -> Result<(), SuperblockError> {
    match b[range.clone()].iter().position(|&x| x != 0) {
        Some(i) => Err(SuperblockError::Reserved {
            offset: range.start + i,
        }),
        None => Ok(()),
    }
}

impl Superblock {
    /// Parses the first 512 bytes of `bytes`; anything malformed is an error.
    pub fn parse(bytes: &[u8]) -> Result<Self, SuperblockError> {
        let b = bytes
            .get(..SUPERBLOCK_SIZE)
            .ok_or(SuperblockError::Truncated(bytes.len()))?;
        if b[..8] != SIGNATURE {
            let mut found = [0u8; 8];
            found.copy_from_slice(&b[..8]);
            return Err(SuperblockError::BadSignature { found });
        }
        let version = le_u32(b, VERSION);
        if version != 1 {
            return Err(SuperblockError::Version(version));
        }
        let hash_type = le_u32(b, HASH_TYPE);
        if hash_type > MAX_HASH_TYPE {
            return Err(SuperblockError::HashType(hash_type));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[UUID..UUID + 16]);
        let algorithm = parse_algorithm(&b[ALGORITHM..ALGORITHM + ALGORITHM_LEN])?;
        let data_block_size = le_u32(b, DATA_BLOCK_SIZE);
        let hash_block_size = le_u32(b, HASH_BLOCK_SIZE);
        for (which, size) in [("data", data_block_size), ("hash", hash_block_size)] {
            if !valid_block_size(size) {
                return Err(SuperblockError::BlockSize { which, size });
            }
        }
        let data_blocks = le_u64(b, DATA_BLOCKS);
        if data_blocks == 0 {
            return Err(SuperblockError::NoDataBlocks);
        }
        let salt_size = le_u16(b, SALT_SIZE);
        if usize::from(salt_size) > MAX_SALT {
            return Err(SuperblockError::SaltSize(salt_size));
        }
        let salt_end = SALT + usize::from(salt_size);
        require_zero(b, PAD1..SALT)?;
        require_zero(b, salt_end..PAD2)?;
        require_zero(b, PAD2..SUPERBLOCK_SIZE)?;
        Ok(Superblock {
            hash_type,
            uuid,
            algorithm,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: b[SALT..salt_end].to_vec(),
        })
    }

    /// The 512 on-disk bytes. The salt must be at most 256 bytes (longer salts are cut).
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        b[..8].copy_from_slice(&SIGNATURE);
        b[VERSION..VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
        b[HASH_TYPE..HASH_TYPE + 4].copy_from_slice(&self.hash_type.to_le_bytes());
        b[UUID..UUID + 16].copy_from_slice(&self.uuid);
        let name = self.algorithm.name().as_bytes();
        b[ALGORITHM..ALGORITHM + name.len()].copy_from_slice(name);
        b[DATA_BLOCK_SIZE..DATA_BLOCK_SIZE + 4]
            .copy_from_slice(&self.data_block_size.to_le_bytes());
        b[HASH_BLOCK_SIZE..HASH_BLOCK_SIZE + 4]
            .copy_from_slice(&self.hash_block_size.to_le_bytes());
        b[DATA_BLOCKS..DATA_BLOCKS + 8].copy_from_slice(&self.data_blocks.to_le_bytes());
        let salt = &self.salt[..self.salt.len().min(MAX_SALT)];
        // salt.len() <= 256, so it fits in u16.
        let salt_size = u16::try_from(salt.len()).unwrap_or(0);
        b[SALT_SIZE..SALT_SIZE + 2].copy_from_slice(&salt_size.to_le_bytes());
        b[SALT..SALT + salt.len()].copy_from_slice(salt);
        b
    }
}

fn parse_algorithm(field: &[u8]) -> Result<HashAlgorithm, SuperblockError> {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    let name = String::from_utf8_lossy(&field[..end]).into_owned();
    if end == field.len() || field[end..].iter().any(|&c| c != 0) {
        return Err(SuperblockError::Algorithm(name));
    }
    // Exactly as veritysetup writes it (lowercase): the superblock has one spelling per value.
    HashAlgorithm::ALL
        .into_iter()
        .find(|alg| alg.name() == name)
        .ok_or(SuperblockError::Algorithm(name))
}

/// Formats a uuid the usual way: `12345678-1234-1234-1234-123456789abc`.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let h = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Parses `12345678-1234-1234-1234-123456789abc` (hyphens where shown, hex digits in any case).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lengths != [8, 4, 4, 4, 12] {
        return None;
    }
    let mut uuid = [0u8; 16];
    hex::decode_to_slice(groups.concat(), &mut uuid).ok()?;
    Some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Superblock {
        Superblock {
            hash_type: 1,
            uuid: parse_uuid("12345678-1234-1234-1234-123456789abc").unwrap(),
            algorithm: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 1,
            salt: (0u8..32).collect(),
        }
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        assert_eq!(Superblock::parse(&sb.to_bytes()), Ok(sb));
        let empty = Superblock {
            salt: vec![],
            ..sample()
        };
        assert_eq!(Superblock::parse(&empty.to_bytes()), Ok(empty));
        let full = Superblock {
            salt: vec![0xa5; 256],
            algorithm: HashAlgorithm::Sha1,
            ..sample()
        };
        assert_eq!(Superblock::parse(&full.to_bytes()), Ok(full));
        let chromium = Superblock {
            hash_type: 0,
            ..sample()
        };
        assert_eq!(Superblock::parse(&chromium.to_bytes()), Ok(chromium));
    }

    #[test]
    fn uuid_text() {
        let uuid = parse_uuid("12345678-1234-1234-1234-123456789ABC").unwrap();
        assert_eq!(format_uuid(&uuid), "12345678-1234-1234-1234-123456789abc");
        for bad in [
            "",
            "12345678123412341234123456789abc",
            "1234567-81234-1234-1234-123456789abc",
            "g2345678-1234-1234-1234-123456789abc",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_is_an_error() {
        let good = sample().to_bytes();
        let cases: Vec<(usize, u8, SuperblockError)> = vec![
            (
                0,
                b'V',
                SuperblockError::BadSignature {
                    found: *b"Verity\0\0",
                },
            ),
            (VERSION, 2, SuperblockError::Version(2)),
            (HASH_TYPE, 2, SuperblockError::HashType(2)),
            (
                ALGORITHM + 3,
                b'3',
                SuperblockError::Algorithm("sha356".into()),
            ),
            (
                ALGORITHM + 6,
                b'x',
                SuperblockError::Algorithm("sha256x".into()),
            ),
            (ALGORITHM, b'S', SuperblockError::Algorithm("Sha256".into())),
            (
                DATA_BLOCK_SIZE + 1,
                0x11,
                SuperblockError::BlockSize {
                    which: "data",
                    size: 0x1100,
                },
            ),
            (
                HASH_BLOCK_SIZE + 1,
                0x01,
                SuperblockError::BlockSize {
                    which: "hash",
                    size: 0x100,
                },
            ),
            (DATA_BLOCKS, 0, SuperblockError::NoDataBlocks),
            (SALT_SIZE + 1, 1, SuperblockError::SaltSize(0x120)),
            (PAD1 + 2, 1, SuperblockError::Reserved { offset: PAD1 + 2 }),
            (
                SALT + 40,
                1,
                SuperblockError::Reserved { offset: SALT + 40 },
            ),
            (511, 1, SuperblockError::Reserved { offset: 511 }),
        ];
        for (offset, value, want) in cases {
            let mut b = good;
            b[offset] = value;
            assert_eq!(Superblock::parse(&b), Err(want), "byte {offset} = {value}");
        }
        assert_eq!(
            Superblock::parse(&good[..100]),
            Err(SuperblockError::Truncated(100))
        );
        // The algorithm field needs its NUL terminator.
        let mut b = good;
        b[ALGORITHM..ALGORITHM + 32].fill(b'a');
        assert!(matches!(
            Superblock::parse(&b),
            Err(SuperblockError::Algorithm(_))
        ));
    }

    #[test]
    fn matches_veritysetup_bytes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/vectors/verity/superblock-1block-sha256.hex.txt"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("test vector {path} is missing: {e}"));
        let mut want = Vec::new();
        for line in text.lines() {
            // xxd: "00000000: 7665 7269 ...  verity.."
            let hex_part = line.split(':').nth(1).unwrap_or("");
            let hex_part = &hex_part[..hex_part.len().min(40)];
            want.extend(hex::decode(hex_part.replace(' ', "")).unwrap());
        }
        assert!(want.len() >= 192, "vector too short: {} bytes", want.len());
        let got = sample().to_bytes();
        assert_eq!(&got[..want.len()], &want[..]);
        assert!(got[want.len()..].iter().all(|&b| b == 0));
    }
}
