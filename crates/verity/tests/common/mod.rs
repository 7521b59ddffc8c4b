//! Helpers shared by the integration tests: the vectors' data generator and temp devices.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directory of veritysetup's test vectors (in the shared reference tree).
pub fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/vectors/verity"
    ));
    assert!(
        dir.join("vectors.tsv").is_file(),
        "the dm-verity test vectors are missing: {} has no vectors.tsv",
        dir.display()
    );
    dir
}

/// The vectors' deterministic data (gen.py): block `i` of 4096 bytes is the concatenation of
/// `sha256("verity-vector" || i as u64 LE || j as u16 LE)` for `j` in 0..128.
pub fn gen_data(nblocks: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(nblocks as usize * 4096);
    for i in 0..nblocks {
        for j in 0u16..128 {
            let mut h = Sha256::new();
            h.update(b"verity-vector");
            h.update(i.to_le_bytes());
            h.update(j.to_le_bytes());
            out.extend_from_slice(&h.finalize());
        }
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Creates `path` with `contents` and opens it read-write.
pub fn device(path: &Path, contents: &[u8]) -> File {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// A deterministic pseudo-random generator (splitmix64), so failures reproduce from the seed.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
