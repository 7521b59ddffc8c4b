//! dm-verity hash trees and superblocks, byte-identical to veritysetup, hashed in parallel.
//!
//! [`format()`] writes the hash area (a version-1 superblock and the hash tree of hash type 1, or 0)
//! for a data device and returns the root hash; [`verify`] checks a data device against a hash
//! area and a root hash and names the first bad block. Both stream the data through positioned
//! reads ([`ReadAt`]) in bounded chunks hashed on all cores. Nothing here touches the system
//! beyond the devices the caller passes in.
//!
//! Forward error correction: [`format_with_fec`] adds the Reed–Solomon FEC area the kernel reads
//! (byte-identical to `veritysetup format --fec-device`), [`verify_with_fec`] decodes it when the
//! tree fails and checks the result against the root hash, and [`repair`] writes it back.
//!
//! Root hash signatures: [`verify_root_hash_signature`] checks a detached PKCS#7 over the hex
//! root hash (`veritysetup --root-hash-signature`, systemd's `.roothash.p7s`) against a directory
//! of trusted X.509 certificates.
//!
//! ```no_run
//! use realms_verity::{Params, format, verify};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = std::fs::File::open("image.raw")?;
//! let hash = std::fs::OpenOptions::new().read(true).write(true).create(true).open("image.verity")?;
//! let params = Params { salt: vec![0x5a; 32], ..Params::default() };
//! let out = format(&data, &hash, &params)?;
//! verify(&data, &hash, &params, &out.root_hash)?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod error;
mod fec;
mod format;
mod hash;
mod io;
mod layout;
mod options;
mod params;
mod repair;
mod rs;
mod signature;
mod superblock;
mod tree;
mod verify;

pub use error::{Corruption, Device, Error, Result};
pub use fec::{Corrections, DEFAULT_ROOTS, FecLayout, FecParams, MAX_ROOTS, MIN_ROOTS, fec_layout};
pub use format::{FormatOutput, format};
pub use hash::{HashAlgorithm, UnknownAlgorithm};
pub use io::{ReadAt, WriteAt};
pub use layout::{Level, TreeLayout, level_sizes, tree_layout};
pub use options::{FailureSite, Options, parse_root_hash, parse_salt};
pub use params::{Params, salt_text};
pub use repair::{FecFormatOutput, FecOutcome, format_with_fec, repair, verify_with_fec};
pub use signature::{DEFAULT_KEYRING, SignatureError, Signer, verify_root_hash_signature};
pub use superblock::{
    MAX_SALT, SIGNATURE, SUPERBLOCK_SIZE, Superblock, SuperblockError, format_uuid, parse_uuid,
    valid_block_size,
};
pub use verify::{read_superblock, verify};
