//! veritysetup's options as text (`--salt=HEX|-`, `--uuid=...`, a root hash in hex) and how
//! they combine with a superblock's parameters; what a failure is about, for reports.

use crate::error::{Corruption, Error, Result};
use crate::hash::HashAlgorithm;
use crate::io::ReadAt;
use crate::params::Params;
use crate::superblock::{MAX_SALT, parse_uuid};
use crate::verify::read_superblock;

/// The options veritysetup takes, as given: each one set overrides the base parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--hash`.
    pub hash: Option<HashAlgorithm>,
    /// `--data-block-size`.
    pub data_block_size: Option<u32>,
    /// `--hash-block-size`.
    pub hash_block_size: Option<u32>,
    /// `--salt`: hex, or `-` for none.
    pub salt: Option<String>,
    /// `--uuid`.
    pub uuid: Option<String>,
    /// `--no-superblock`.
    pub no_superblock: bool,
    /// `--hash-offset`, in bytes.
    pub hash_offset: u64,
    /// `--data-blocks`.
    pub data_blocks: Option<u64>,
    /// `--format`: the hash type.
    pub hash_type: Option<u32>,
}

/// Parses a salt given as text: hex digits, or `-` for an empty salt.
pub fn parse_salt(text: &str) -> Result<Vec<u8>> {
    if text == "-" {
        return Ok(Vec::new());
    }
    let salt = hex::decode(text).map_err(|source| Error::SaltText {
        text: text.to_owned(),
        source,
    })?;
    if salt.len() > MAX_SALT {
        return Err(Error::SaltTextLength { len: salt.len() });
    }
    Ok(salt)
}

/// Parses a root hash given as hex digits.
pub fn parse_root_hash(text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|source| Error::RootHashText {
        text: text.to_owned(),
        source,
    })
}

impl Options {
    /// Applies the options given onto `base`.
    pub fn apply(&self, mut base: Params) -> Result<Params> {
        if let Some(hash) = self.hash {
            base.hash = hash;
        }
        if let Some(size) = self.data_block_size {
            base.data_block_size = size;
        }
        if let Some(size) = self.hash_block_size {
            base.hash_block_size = size;
        }
        if let Some(salt) = &self.salt {
            base.salt = parse_salt(salt)?;
        }
        if let Some(uuid) = &self.uuid {
            let parsed = parse_uuid(uuid).ok_or_else(|| Error::UuidText { text: uuid.clone() })?;
            base.uuid = Some(parsed);
        }
        if self.data_blocks.is_some() {
            base.data_blocks = self.data_blocks;
        }
        if let Some(hash_type) = self.hash_type {
            base.hash_type = hash_type;
        }
        base.superblock = !self.no_superblock;
        base.hash_offset = self.hash_offset;
        Ok(base)
    }

    /// The parameters for `format`: the defaults with the options applied, a random 32-byte
    /// salt when none was given, checked before anything is written.
    pub fn for_format(&self) -> Result<Params> {
        let mut params = self.apply(Params::default())?;
        if self.salt.is_none() {
            params.salt = rand::random::<[u8; 32]>().to_vec();
        }
        params.validate()?;
        Ok(params)
    }

    /// The parameters for `verify`: with a superblock, those not given come from it (and
    /// those given must agree with it, which [`crate::verify`] checks).
    pub fn for_verify<H: ReadAt + ?Sized>(&self, hash: &H) -> Result<Params> {
        let base = if self.no_superblock {
            Params::default()
        } else {
            let sb = read_superblock(hash, self.hash_offset)?;
            Params::from_superblock(&sb, self.hash_offset)
        };
        self.apply(base).map_err(|e| Error::Options {
            source: Box::new(e),
        })
    }
}

/// Where a failed verification went wrong, for reports: the area (`data`, `hash`, `root-hash`
/// or `superblock`), the tree level, the block and its byte offset, where known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureSite {
    /// `data`, `hash`, `root-hash` or `superblock`.
    pub area: &'static str,
    /// The tree level of a bad hash block.
    pub level: Option<usize>,
    /// The index of the bad block.
    pub block: Option<u64>,
    /// The byte offset of the bad block in its device.
    pub offset: Option<u64>,
}

impl Error {
    /// Where an integrity failure ([`Error::is_integrity_failure`]) is.
    pub fn failure_site(&self) -> FailureSite {
        let site = |area, level, block, offset| FailureSite {
            area,
            level,
            block,
            offset,
        };
        match self {
            Error::Corrupt(Corruption::DataBlock { block, offset }) => {
                site("data", None, Some(*block), Some(*offset))
            }
            Error::Corrupt(Corruption::HashBlock {
                level,
                block,
                offset,
            }) => site("hash", Some(*level), Some(*block), Some(*offset)),
            Error::Corrupt(Corruption::RootHash { .. }) => site("root-hash", None, None, None),
            _ => site("superblock", None, None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_map_to_params() {
        let opts = Options {
            hash: Some(HashAlgorithm::Sha512),
            data_block_size: Some(1024),
            hash_block_size: Some(512),
            salt: Some("-".into()),
            uuid: Some("12345678-1234-1234-1234-123456789ABC".into()),
            no_superblock: true,
            hash_offset: 4096,
            data_blocks: Some(3),
            hash_type: Some(0),
        };
        assert_eq!(
            opts.apply(Params::default()).unwrap(),
            Params {
                hash: HashAlgorithm::Sha512,
                data_block_size: 1024,
                hash_block_size: 512,
                salt: vec![],
                uuid: parse_uuid("12345678-1234-1234-1234-123456789abc"),
                superblock: false,
                hash_offset: 4096,
                data_blocks: Some(3),
                hash_type: 0,
            }
        );
        // Options not given keep the base's values.
        let base = Params {
            hash: HashAlgorithm::Sha1,
            salt: vec![1],
            ..Params::default()
        };
        assert_eq!(Options::default().apply(base.clone()).unwrap(), base);
        let bad_uuid = Options {
            uuid: Some("nope".into()),
            ..Options::default()
        };
        assert!(matches!(
            bad_uuid.apply(Params::default()),
            Err(Error::UuidText { .. })
        ));
        assert_eq!(Options::default().for_format().unwrap().salt.len(), 32);
    }

    #[test]
    fn salts() {
        assert_eq!(parse_salt("-").unwrap(), Vec::<u8>::new());
        assert_eq!(parse_salt("00ff").unwrap(), vec![0, 255]);
        assert!(parse_salt("abc").is_err());
        assert!(parse_salt("zz").is_err());
        assert!(parse_salt(&"ab".repeat(257)).is_err());
        assert_eq!(parse_salt(&"ab".repeat(256)).unwrap().len(), 256);
        assert_eq!(parse_root_hash("0aff").unwrap(), vec![0x0a, 0xff]);
        assert!(parse_root_hash("0g").is_err());
    }
}
