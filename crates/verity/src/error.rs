//! The crate's error type, and the integrity failures verification reports.

use std::fmt;
use std::io;

use crate::superblock::SuperblockError;

/// Which of the two devices an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The data device (the filesystem image).
    Data,
    /// The hash device (superblock and hash tree), possibly the data file itself.
    Hash,
    /// The FEC device (the Reed–Solomon parity), possibly the hash or data file itself.
    Fec,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Data => "data",
            Device::Hash => "hash",
            Device::Fec => "FEC",
        })
    }
}

/// What verification found wrong: the first bad block, or the root hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// A data block does not match its hash in the (verified) lowest hash level.
    #[error(
        "verification of the data area failed at data block {block} (byte {offset} of the data device)"
    )]
    DataBlock {
        /// Index of the data block.
        block: u64,
        /// Byte offset of the block in the data device.
        offset: u64,
    },
    /// A hash block does not match its hash in the (verified) level above, or the root hash.
    #[error(
        "verification of the hash area failed at hash block {block} of level {level} (byte {offset} of the hash device)"
    )]
    HashBlock {
        /// Tree level; 0 is the level holding the data blocks' hashes.
        level: usize,
        /// Index of the block within its level.
        block: u64,
        /// Byte offset of the block in the hash device.
        offset: u64,
    },
    /// The top hash block (or the only data block, for a one-block device) does not hash to
    /// the given root hash.
    #[error("verification of the root hash failed: expected {expected}, computed {computed}")]
    RootHash {
        /// The root hash given, in hex.
        expected: String,
        /// The hash computed from the device, in hex.
        computed: String,
    },
}

/// Everything that can go wrong formatting or verifying a dm-verity device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data or hash block size that is not a power of two from 512 to 4096.
    #[error(
        "invalid verity parameters: {device} block size {size} is not a power of two from 512 to 4096"
    )]
    BlockSize {
        /// Which device's block size.
        device: Device,
        /// The size given.
        size: u32,
    },
    /// A salt longer than a superblock can hold.
    #[error("invalid verity parameters: salt is {len} bytes, at most {max} are allowed", max = crate::MAX_SALT)]
    SaltLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A hash offset that is not a multiple of 512.
    #[error("invalid verity parameters: hash offset {offset} is not a multiple of 512")]
    HashOffset {
        /// The offset given, in bytes.
        offset: u64,
    },
    /// A hash type (`--format`) other than 0 and 1.
    #[error("invalid verity parameters: unsupported hash type {hash_type} (0 and 1 are supported)")]
    HashType {
        /// The hash type given.
        hash_type: u32,
    },
    /// A data block count of zero.
    #[error("invalid verity parameters: data blocks must be at least 1")]
    NoDataBlocks,
    /// A size or offset computed from the parameters does not fit in 64 bits.
    #[error("invalid verity parameters: {what} does not fit in 64 bits")]
    TooLarge {
        /// `the data size`, `the hash offset` or `the hash area`.
        what: &'static str,
    },
    /// A salt given as text that is not hex (or `-`).
    #[error("invalid salt '{text}': expected hex digits or '-'")]
    SaltText {
        /// The text given.
        text: String,
        /// Why it is not hex.
        #[source]
        source: hex::FromHexError,
    },
    /// A salt given as text that is longer than a superblock can hold.
    #[error("invalid salt: {len} bytes, at most {max} are allowed", max = crate::MAX_SALT)]
    SaltTextLength {
        /// Its length in bytes.
        len: usize,
    },
    /// A uuid given as text that is not `12345678-1234-1234-1234-123456789abc`.
    #[error("invalid uuid '{text}' (expected 12345678-1234-1234-1234-123456789abc)")]
    UuidText {
        /// The text given.
        text: String,
    },
    /// A root hash given as text that is not hex.
    #[error("invalid root hash '{text}': expected hex digits")]
    RootHashText {
        /// The text given.
        text: String,
        /// Why it is not hex.
        #[source]
        source: hex::FromHexError,
    },
    /// Options given on top of a superblock's parameters are not valid.
    #[error("invalid verity parameters")]
    Options {
        /// Which option, and why.
        #[source]
        source: Box<Error>,
    },
    /// The hash tree came out other than its layout said: a bug, not bad input.
    #[error("invalid verity parameters: internal error: {what}")]
    Internal {
        /// What went wrong.
        what: String,
    },
    /// A device is smaller than the data blocks or the hash area it must hold.
    #[error("the {device} device is too small: {size} bytes, {needed} needed")]
    TooSmall {
        /// Which device.
        device: Device,
        /// Its size.
        size: u64,
        /// The size the parameters require.
        needed: u64,
    },
    /// Data and hash area share a file and overlap.
    #[error(
        "the data area (bytes 0..{data_end}) overlaps the hash area at byte {hash_offset}; use --data-blocks or a larger --hash-offset"
    )]
    Overlap {
        /// End of the data area in bytes.
        data_end: u64,
        /// Start of the hash area (the superblock, if any) in bytes.
        hash_offset: u64,
    },
    /// An I/O error reading or writing a device.
    #[error("{action} the {device} device at byte {offset}")]
    Io {
        /// "reading", "writing" or "sizing".
        action: &'static str,
        /// Which device.
        device: Device,
        /// Where.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The superblock at the start of the hash area is malformed.
    #[error("invalid verity superblock at byte {offset} of the hash device")]
    Superblock {
        /// Where the superblock is.
        offset: u64,
        /// What is wrong with it.
        #[source]
        source: SuperblockError,
    },
    /// The superblock is valid but disagrees with a parameter given explicitly.
    #[error(
        "the superblock disagrees with the given parameters: its {field} is {found}, {expected} was given"
    )]
    SuperblockMismatch {
        /// The parameter (`hash`, `salt`, `uuid`, ...).
        field: &'static str,
        /// The value in the superblock.
        found: String,
        /// The value given.
        expected: String,
    },
    /// The root hash given has the wrong length for the algorithm.
    #[error("the root hash is {len} bytes, but {algorithm} root hashes are {expected} bytes")]
    RootHashLength {
        /// Its length.
        len: usize,
        /// The algorithm.
        algorithm: crate::HashAlgorithm,
        /// The length the algorithm produces.
        expected: usize,
    },
    /// A `--fec-roots` outside 2..=24.
    #[error("invalid FEC parameters: {roots} roots, from 2 to 24 are allowed")]
    FecRoots {
        /// The count given.
        roots: u32,
    },
    /// Data and hash block sizes differ, which FEC does not allow.
    #[error(
        "invalid FEC parameters: data block size {data} and hash block size {hash} must be equal for FEC"
    )]
    FecBlockSizes {
        /// The data block size.
        data: u32,
        /// The hash block size.
        hash: u32,
    },
    /// A `--fec-offset` that is not a multiple of 512.
    #[error("invalid FEC parameters: FEC offset {offset} is not a multiple of 512")]
    FecOffset {
        /// The offset given.
        offset: u64,
    },
    /// The FEC area, in the hash device, starts before the end of the hash tree.
    #[error(
        "the FEC area at byte {offset} overlaps the hash area, which ends at byte {hash_end}; use a larger --fec-offset"
    )]
    FecOverlap {
        /// The FEC offset.
        offset: u64,
        /// The end of the hash tree.
        hash_end: u64,
    },
    /// A codeword has more errors than the parity can correct.
    #[error(
        "too many errors to correct with FEC: codeword {codeword} of round {round} is beyond repair"
    )]
    FecUncorrectable {
        /// The round (a group of blocks spread over the device).
        round: u64,
        /// The codeword in the round (a byte offset within the round's blocks).
        codeword: u64,
    },
    /// FEC corrected bytes, but the corrected device still fails verification.
    #[error("FEC corrected {symbols} bytes, but the device still fails verification")]
    FecUnrepaired {
        /// Bytes corrected.
        symbols: u64,
        /// The failure after correction.
        #[source]
        source: Box<Error>,
    },
    /// The device does not match the tree or the root hash.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

impl Error {
    /// Whether this error means the device failed verification (corrupt data, hash area,
    /// superblock or root hash) rather than a usage or I/O problem.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            Error::Corrupt(_)
                | Error::Superblock { .. }
                | Error::SuperblockMismatch { .. }
                | Error::FecUncorrectable { .. }
                | Error::FecUnrepaired { .. }
        )
    }

    pub(crate) fn read(device: Device, offset: u64) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io {
            action: "reading",
            device,
            offset,
            source,
        }
    }

    pub(crate) fn write(offset: u64) -> impl FnOnce(io::Error) -> Error {
        Error::write_to(Device::Hash, offset)
    }

    pub(crate) fn write_to(device: Device, offset: u64) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io {
            action: "writing",
            device,
            offset,
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HashAlgorithm;

    /// The message and each cause after `: `, as `{:#}` prints them.
    fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    #[test]
    fn every_variant_renders_each_cause_once_and_names_its_subject() {
        let hex_err = hex::decode("zz").unwrap_err();
        let cases: Vec<(Error, &str)> = vec![
            (
                Error::BlockSize {
                    device: Device::Hash,
                    size: 100,
                },
                "hash block size 100",
            ),
            (Error::SaltLength { len: 300 }, "salt is 300 bytes"),
            (Error::HashOffset { offset: 5 }, "hash offset 5"),
            (Error::NoDataBlocks, "data blocks"),
            (Error::HashType { hash_type: 3 }, "hash type 3"),
            (
                Error::TooLarge {
                    what: "the data size",
                },
                "the data size",
            ),
            (
                Error::SaltText {
                    text: "zz".into(),
                    source: hex_err,
                },
                "salt 'zz'",
            ),
            (Error::SaltTextLength { len: 257 }, "salt: 257 bytes"),
            (Error::UuidText { text: "u-1".into() }, "uuid 'u-1'"),
            (
                Error::RootHashText {
                    text: "zz".into(),
                    source: hex_err,
                },
                "root hash 'zz'",
            ),
            (
                Error::Options {
                    source: Box::new(Error::UuidText { text: "u-2".into() }),
                },
                "uuid 'u-2'",
            ),
            (
                Error::Internal {
                    what: "level 3".into(),
                },
                "level 3",
            ),
            (
                Error::TooSmall {
                    device: Device::Data,
                    size: 1,
                    needed: 2,
                },
                "data device",
            ),
            (
                Error::Overlap {
                    data_end: 10,
                    hash_offset: 4,
                },
                "hash area at byte 4",
            ),
            (
                Error::read(Device::Hash, 512)(io::Error::other("eio")),
                "hash device at byte 512",
            ),
            (
                Error::Superblock {
                    offset: 0,
                    source: SuperblockError::Version(9),
                },
                "version 9",
            ),
            (
                Error::SuperblockMismatch {
                    field: "salt",
                    found: "aa".into(),
                    expected: "bb".into(),
                },
                "its salt is aa",
            ),
            (
                Error::RootHashLength {
                    len: 3,
                    algorithm: HashAlgorithm::Sha256,
                    expected: 32,
                },
                "root hash is 3 bytes",
            ),
            (Error::FecRoots { roots: 30 }, "30 roots"),
            (
                Error::FecBlockSizes {
                    data: 4096,
                    hash: 512,
                },
                "hash block size 512",
            ),
            (Error::FecOffset { offset: 3 }, "FEC offset 3"),
            (
                Error::FecOverlap {
                    offset: 4096,
                    hash_end: 8192,
                },
                "ends at byte 8192",
            ),
            (
                Error::FecUncorrectable {
                    round: 4,
                    codeword: 9,
                },
                "codeword 9 of round 4",
            ),
            (
                Error::FecUnrepaired {
                    symbols: 3,
                    source: Box::new(Error::Corrupt(Corruption::DataBlock {
                        block: 5,
                        offset: 20480,
                    })),
                },
                "corrected 3 bytes",
            ),
            (
                Error::Corrupt(Corruption::DataBlock {
                    block: 7,
                    offset: 28672,
                }),
                "data block 7",
            ),
        ];
        for (err, subject) in cases {
            let text = chain(&err);
            assert!(text.contains(subject), "{text:?} does not name {subject:?}");
            let mut level: &dyn std::error::Error = &err;
            while let Some(cause) = level.source() {
                let (outer, inner) = (level.to_string(), cause.to_string());
                assert!(!outer.contains(&inner), "{text:?}: {inner:?} prints twice");
                level = cause;
            }
        }
    }
}
