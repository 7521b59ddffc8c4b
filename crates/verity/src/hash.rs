//! The hash algorithms of dm-verity, and hashing one block the way hash format 1 does.
//!
//! Format 1 hashes `salt || block` and stores every digest padded with zeros to the next power of
//! two (a sha1 digest takes 32 bytes in a hash block). Format 0 (Chromium OS) hashes
//! `block || salt` and packs the digests without padding.

use std::fmt;
use std::str::FromStr;

use sha1::Digest as _;
use sha2::Digest as _;

/// A hash algorithm veritysetup (through OpenSSL) and the kernel crypto API both offer for
/// dm-verity. Older, weak or kernel-less ones veritysetup would also take (md5, ripemd160,
/// whirlpool, sm3, blake2s-256) are refused: the kernel could not open such a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgorithm {
    /// SHA-1 (20-byte digests, stored in 32-byte entries).
    Sha1,
    /// SHA-224 (28-byte digests, stored in 32-byte entries).
    Sha224,
    /// SHA-256, veritysetup's default.
    #[default]
    Sha256,
    /// SHA-384 (48-byte digests, stored in 64-byte entries).
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
    /// BLAKE2b with a 64-byte digest (unkeyed), the only BLAKE2b size OpenSSL has.
    Blake2b512,
}

impl HashAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [HashAlgorithm; 10] = [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha224,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
        HashAlgorithm::Sha3_224,
        HashAlgorithm::Sha3_256,
        HashAlgorithm::Sha3_384,
        HashAlgorithm::Sha3_512,
        HashAlgorithm::Blake2b512,
    ];

    /// The name veritysetup, the kernel and the superblock use (`sha256`, `sha3-256`,
    /// `blake2b-512`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha224 => "sha224",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
            HashAlgorithm::Sha3_224 => "sha3-224",
            HashAlgorithm::Sha3_256 => "sha3-256",
            HashAlgorithm::Sha3_384 => "sha3-384",
            HashAlgorithm::Sha3_512 => "sha3-512",
            HashAlgorithm::Blake2b512 => "blake2b-512",
        }
    }

    /// Length of one digest (and of the root hash) in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha224 | HashAlgorithm::Sha3_224 => 28,
            HashAlgorithm::Sha256 | HashAlgorithm::Sha3_256 => 32,
            HashAlgorithm::Sha384 | HashAlgorithm::Sha3_384 => 48,
            HashAlgorithm::Sha512 | HashAlgorithm::Sha3_512 | HashAlgorithm::Blake2b512 => 64,
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
            HashAlgorithm::Sha224 => State::Sha224(sha2::Sha224::new_with_prefix(prefix)),
            HashAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new_with_prefix(prefix)),
            HashAlgorithm::Sha384 => State::Sha384(sha2::Sha384::new_with_prefix(prefix)),
            HashAlgorithm::Sha512 => State::Sha512(sha2::Sha512::new_with_prefix(prefix)),
            HashAlgorithm::Sha3_224 => State::Sha3_224(sha3::Sha3_224::new_with_prefix(prefix)),
            HashAlgorithm::Sha3_256 => State::Sha3_256(sha3::Sha3_256::new_with_prefix(prefix)),
            HashAlgorithm::Sha3_384 => State::Sha3_384(sha3::Sha3_384::new_with_prefix(prefix)),
            HashAlgorithm::Sha3_512 => State::Sha3_512(sha3::Sha3_512::new_with_prefix(prefix)),
            HashAlgorithm::Blake2b512 => {
                State::Blake2b512(blake2::Blake2b512::new_with_prefix(prefix))
            }
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
#[error(
    "unsupported hash algorithm '{0}' (supported: sha1, sha224, sha256, sha384, sha512, sha3-224, sha3-256, sha3-384, sha3-512, blake2b-512)"
)]
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
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Sha3_224(sha3::Sha3_224),
    Sha3_256(sha3::Sha3_256),
    Sha3_384(sha3::Sha3_384),
    Sha3_512(sha3::Sha3_512),
    Blake2b512(blake2::Blake2b512),
}

/// Hashes `block || suffix` from a cloned salted state into `entry`.
fn finish<D: sha2::Digest + Clone>(state: &D, block: &[u8], suffix: &[u8], entry: &mut [u8]) {
    let mut h = state.clone();
    h.update(block);
    h.update(suffix);
    let digest = h.finalize();
    entry[..digest.len()].copy_from_slice(&digest);
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
        let (block, suffix) = (block, self.suffix.as_slice());
        match &self.state {
            State::Sha1(s) => {
                let mut h = s.clone();
                sha1::Digest::update(&mut h, block);
                sha1::Digest::update(&mut h, suffix);
                entry[..n].copy_from_slice(&sha1::Digest::finalize(h));
            }
            State::Sha224(s) => finish(s, block, suffix, entry),
            State::Sha256(s) => finish(s, block, suffix, entry),
            State::Sha384(s) => finish(s, block, suffix, entry),
            State::Sha512(s) => finish(s, block, suffix, entry),
            State::Sha3_224(s) => finish(s, block, suffix, entry),
            State::Sha3_256(s) => finish(s, block, suffix, entry),
            State::Sha3_384(s) => finish(s, block, suffix, entry),
            State::Sha3_512(s) => finish(s, block, suffix, entry),
            State::Blake2b512(s) => finish(s, block, suffix, entry),
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
            (HashAlgorithm::Sha224, 28, 32),
            (HashAlgorithm::Sha256, 32, 32),
            (HashAlgorithm::Sha384, 48, 64),
            (HashAlgorithm::Sha512, 64, 64),
            (HashAlgorithm::Sha3_224, 28, 32),
            (HashAlgorithm::Sha3_256, 32, 32),
            (HashAlgorithm::Sha3_384, 48, 64),
            (HashAlgorithm::Sha3_512, 64, 64),
            (HashAlgorithm::Blake2b512, 64, 64),
        ];
        assert_eq!(table.len(), HashAlgorithm::ALL.len());
        for (alg, digest, entry) in table {
            assert_eq!(alg.digest_size(), digest, "{alg}");
            assert_eq!(alg.entry_size(), entry, "{alg}");
            assert_eq!(alg.name().parse::<HashAlgorithm>(), Ok(alg));
            // The digest really has that size (the salted hasher writes all of it).
            let mut entry = vec![0xffu8; alg.entry_size()];
            alg.salted(b"", 1).hash_into(b"abc", &mut entry);
            assert!(entry[digest..].iter().all(|&b| b == 0), "{alg}");
            assert!(entry[..digest].iter().any(|&b| b != 0), "{alg}");
        }
        assert!("blake2b-256".parse::<HashAlgorithm>().is_err());
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
        // Known answers for "abc" of the algorithms beyond SHA-1/SHA-2 (FIPS 202, RFC 7693).
        let digest = HashAlgorithm::Sha3_256.salted(b"a", 1).digest(b"bc");
        assert_eq!(
            hex::encode(digest),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
        let digest = HashAlgorithm::Blake2b512.salted(b"", 1).digest(b"abc");
        assert_eq!(
            hex::encode(digest),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
             7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        );
        // Hash type 0: sha256("a" || "bc") == sha256("abc").
        let digest = HashAlgorithm::Sha256.salted(b"bc", 0).digest(b"a");
        assert_eq!(
            hex::encode(digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
