//! The hash algorithms of dm-verity, and hashing one block the way hash format 1 does.
//!
//! Format 1 hashes `salt || block` and stores every digest padded with zeros to the next power of
//! two (a sha1 digest takes 32 bytes in a hash block). Format 0 (Chromium OS) hashes
//! `block || salt` and packs the digests without padding.

use std::fmt;
use std::str::FromStr;

use sha1::Digest as _;
use sha2::Digest as _;

/// A hash algorithm veritysetup and the kernel both support for dm-verity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgorithm {
    /// SHA-1 (20-byte digests, stored in 32-byte entries).
    Sha1,
    /// SHA-256, veritysetup's default.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [HashAlgorithm; 3] = [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
    ];

    /// The name veritysetup and the superblock use (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// Length of one digest (and of the root hash) in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
        }
    }

    /// Space one digest takes in a hash block: the digest size rounded up to a power of two.
    pub fn entry_size(self) -> usize {
        self.digest_size().next_power_of_two()
    }

    /// A hasher for hash type `hash_type`: type 1 hashes `salt || block`, type 0 (the Chromium
    /// OS format) `block || salt`.
    pub(crate) fn salted(self, salt: &[u8], hash_type: u32) -> SaltedHasher {
        let prefix: &[u8] = if hash_type == 0 { &[] } else { salt };
        let state = match self {
            HashAlgorithm::Sha1 => State::Sha1(sha1::Sha1::new_with_prefix(prefix)),
            HashAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new_with_prefix(prefix)),
            HashAlgorithm::Sha512 => State::Sha512(sha2::Sha512::new_with_prefix(prefix)),
        };
        SaltedHasher {
            algorithm: self,
            state,
            suffix: if hash_type == 0 {
                salt.to_vec()
            } else {
                Vec::new()
            },
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name given is not an algorithm this crate supports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported hash algorithm '{0}' (supported: sha1, sha256, sha512)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for HashAlgorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// The hash state after the salt, cloned for every block.
#[derive(Debug, Clone)]
enum State {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// Hashes blocks as `H(salt || block)` (or `H(block || salt)` for hash type 0); shared by all
/// threads (each hash clones the salted state).
#[derive(Debug, Clone)]
pub(crate) struct SaltedHasher {
    algorithm: HashAlgorithm,
    state: State,
    /// The salt for hash type 0, hashed after the block; empty for type 1.
    suffix: Vec<u8>,
}

impl SaltedHasher {
    /// Writes the digest of `block` into the first bytes of `entry` and zeros into the rest.
    pub(crate) fn hash_into(&self, block: &[u8], entry: &mut [u8]) {
        let n = self.algorithm.digest_size();
        match &self.state {
            State::Sha1(s) => {
                let mut h = s.clone();
                h.update(block);
                h.update(&self.suffix);
                entry[..n].copy_from_slice(&h.finalize());
            }
            State::Sha256(s) => {
                let mut h = s.clone();
                h.update(block);
                h.update(&self.suffix);
                entry[..n].copy_from_slice(&h.finalize());
            }
            State::Sha512(s) => {
                let mut h = s.clone();
                h.update(block);
                h.update(&self.suffix);
                entry[..n].copy_from_slice(&h.finalize());
            }
        }
        entry[n..].fill(0);
    }

    /// Length of the digests this hasher produces.
    pub(crate) fn digest_size(&self) -> usize {
        self.algorithm.digest_size()
    }

    /// The digest of `block` (the root hash when `block` is the top hash block).
    pub(crate) fn digest(&self, block: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.algorithm.digest_size()];
        self.hash_into(block, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let table = [
            (HashAlgorithm::Sha1, 20, 32),
            (HashAlgorithm::Sha256, 32, 32),
            (HashAlgorithm::Sha512, 64, 64),
        ];
        for (alg, digest, entry) in table {
            assert_eq!(alg.digest_size(), digest, "{alg}");
            assert_eq!(alg.entry_size(), entry, "{alg}");
            assert_eq!(alg.name().parse::<HashAlgorithm>(), Ok(alg));
        }
        assert!("md5".parse::<HashAlgorithm>().is_err());
        assert_eq!("SHA256".parse::<HashAlgorithm>(), Ok(HashAlgorithm::Sha256));
    }

    #[test]
    fn salt_is_prepended() {
        // sha256("ab" || "c") == sha256("abc")
        let digest = HashAlgorithm::Sha256.salted(b"ab", 1).digest(b"c");
        assert_eq!(
            hex::encode(digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut entry = [0xffu8; 32];
        HashAlgorithm::Sha1
            .salted(b"", 1)
            .hash_into(b"abc", &mut entry);
        assert_eq!(
            hex::encode(&entry[..20]),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(entry[20..], [0; 12]);
        // Hash type 0: sha256("a" || "bc") == sha256("abc").
        let digest = HashAlgorithm::Sha256.salted(b"bc", 0).digest(b"a");
        assert_eq!(
            hex::encode(digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
