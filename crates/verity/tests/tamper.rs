//! Tamper tests: 1,000 single-byte changes over the data area, the hash tree and the superblock,
//! each detected with an error that names what failed (the block, its level, the superblock).

mod common;

use common::{Rng, device, gen_data};
use realms_verity::{
    Corruption, Error, HashAlgorithm, Params, SUPERBLOCK_SIZE, TreeLayout, format, verify,
};

/// One formatted device, kept in memory so a byte can be changed and changed back cheaply.
struct Image {
    params: Params,
    data: Vec<u8>,
    hash: Vec<u8>,
    root: Vec<u8>,
    layout: TreeLayout,
}

fn image(data_bytes: usize, params: Params) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let mut data = gen_data(data_bytes.div_ceil(4096) as u64);
    data.truncate(data_bytes);
    let data_file = device(&dir.path().join("data"), &data);
    let hash_file = device(&dir.path().join("hash"), &[]);
    let out = format(&data_file, &hash_file, &params).unwrap();
    let hash = std::fs::read(dir.path().join("hash")).unwrap();
    Image {
        params: out.params,
        data,
        hash,
        root: out.root_hash,
        layout: out.layout,
    }
}

/// Where a byte lies, and the error verification must give for a change there.
#[derive(Debug, Clone, Copy)]
enum Region {
    Data { offset: u64 },
    Tree { offset: u64 },
    Superblock { offset: u64 },
}

fn pick(rng: &mut Rng, img: &Image) -> Region {
    let data_size = img.layout.data_size();
    let tree = img.layout.hash_end - img.layout.tree_offset;
    let sb = img
        .layout
        .superblock_offset
        .map_or(0, |_| SUPERBLOCK_SIZE as u64);
    let r = rng.below(data_size + tree + sb);
    if r < data_size {
        Region::Data { offset: r }
    } else if r < data_size + tree {
        Region::Tree {
            offset: img.layout.tree_offset + r - data_size,
        }
    } else {
        Region::Superblock {
            offset: img.layout.superblock_offset.unwrap_or(0) + r - data_size - tree,
        }
    }
}

/// Checks that the error is the one a change in `region` must cause.
fn check(img: &Image, region: Region, err: &Error) {
    let text = err.to_string();
    match region {
        Region::Data { offset } => {
            let block = offset / img.layout.data_block_size;
            let want = Corruption::DataBlock {
                block,
                offset: block * img.layout.data_block_size,
            };
            assert!(
                matches!(err, Error::Corrupt(c) if *c == want),
                "{region:?}: {text}"
            );
            assert!(text.contains(&format!("data block {block} ")), "{text}");
        }
        Region::Tree { offset } => {
            let top = img.layout.levels.len() - 1;
            let (level, l) = img
                .layout
                .levels
                .iter()
                .enumerate()
                .find(|(_, l)| {
                    (l.offset..l.offset + l.blocks * img.layout.hash_block_size).contains(&offset)
                })
                .expect("offset lies in a level");
            if level == top {
                assert!(
                    matches!(err, Error::Corrupt(Corruption::RootHash { .. })),
                    "{region:?}: {text}"
                );
                assert!(text.contains("root hash"), "{text}");
            } else {
                let block = (offset - l.offset) / img.layout.hash_block_size;
                let want = Corruption::HashBlock {
                    level,
                    block,
                    offset: l.offset + block * img.layout.hash_block_size,
                };
                assert!(
                    matches!(err, Error::Corrupt(c) if *c == want),
                    "{region:?}: {text}"
                );
                assert!(
                    text.contains(&format!("hash block {block} of level {level}")),
                    "{text}"
                );
            }
        }
        Region::Superblock { .. } => {
            assert!(
                matches!(
                    err,
                    Error::Superblock { .. } | Error::SuperblockMismatch { .. }
                ),
                "{region:?}: {text}"
            );
            assert!(text.contains("superblock"), "{text}");
            assert!(err.is_integrity_failure());
        }
    }
}

fn flip_and_verify(img: &mut Image, rng: &mut Rng) {
    let region = pick(rng, img);
    let mask = (rng.below(255) + 1) as u8;
    let (buf, offset) = match region {
        Region::Data { offset } => (&mut img.data, offset),
        Region::Tree { offset } | Region::Superblock { offset } => (&mut img.hash, offset),
    };
    buf[offset as usize] ^= mask;
    let result = verify(&img.data, &img.hash, &img.params, &img.root);
    match result {
        Ok(()) => panic!("change at {region:?} (xor {mask:#04x}) went undetected"),
        Err(err) => check(img, region, &err),
    }
    let buf = match region {
        Region::Data { .. } => &mut img.data,
        _ => &mut img.hash,
    };
    buf[offset as usize] ^= mask;
}

#[test]
fn thousand_single_byte_changes_are_detected() {
    let seed = 0x5eed_7a3e_u64;
    println!("tamper seed {seed:#x}");
    let mut rng = Rng(seed);
    // Small images (debug builds hash slowly), each with at least two levels.
    let mut images = vec![
        // Two levels, superblock in its own 4 KiB block.
        image(
            130 * 4096,
            Params {
                salt: vec![0xab; 32],
                ..Params::default()
            },
        ),
        // Three levels of 1 KiB blocks, sha1 (padded entries), an odd salt.
        image(
            1100 * 512,
            Params {
                hash: HashAlgorithm::Sha1,
                data_block_size: 512,
                hash_block_size: 1024,
                salt: vec![1, 2, 3],
                ..Params::default()
            },
        ),
        // sha512, empty salt, 512-byte hash blocks right after the superblock: three levels.
        image(
            100 * 1024,
            Params {
                hash: HashAlgorithm::Sha512,
                data_block_size: 1024,
                hash_block_size: 512,
                ..Params::default()
            },
        ),
        // No superblock: only data and tree.
        image(
            130 * 4096 + 100,
            Params {
                superblock: false,
                salt: vec![9; 256],
                ..Params::default()
            },
        ),
    ];
    for img in &images {
        verify(&img.data, &img.hash, &img.params, &img.root).expect("untouched image verifies");
        assert!(img.layout.levels.len() >= 2, "{:?}", img.layout);
    }
    for i in 0..1000 {
        let n = images.len();
        flip_and_verify(&mut images[i % n], &mut rng);
    }
    for img in &images {
        verify(&img.data, &img.hash, &img.params, &img.root).expect("restored image verifies");
    }
}

#[test]
fn wrong_root_hash_and_truncated_devices() {
    let img = image(
        40 * 4096,
        Params {
            salt: vec![5; 8],
            ..Params::default()
        },
    );
    let mut root = img.root.clone();
    root[31] ^= 1;
    let err = verify(&img.data, &img.hash, &img.params, &root).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(Corruption::RootHash { .. })),
        "{err}"
    );
    let err = verify(&img.data, &img.hash, &img.params, &root[..20]).unwrap_err();
    assert!(matches!(err, Error::RootHashLength { .. }), "{err}");
    let err = verify(&img.data[..4096 * 39], &img.hash, &img.params, &img.root).unwrap_err();
    assert!(
        err.to_string().contains("data device is too small"),
        "{err}"
    );
    let err = verify(
        &img.data,
        &img.hash[..img.hash.len() - 1],
        &img.params,
        &img.root,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("hash device is too small"),
        "{err}"
    );
    let err = verify(&img.data, &img.hash[..100], &img.params, &img.root).unwrap_err();
    assert!(
        err.to_string().contains("hash device is too small"),
        "{err}"
    );
}

#[test]
fn one_block_device_has_no_tree() {
    let img = image(4096, Params::default());
    assert!(img.layout.levels.is_empty());
    let mut data = img.data.clone();
    data[17] ^= 0x40;
    let err = verify(&data, &img.hash, &img.params, &img.root).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(Corruption::RootHash { .. })),
        "{err}"
    );
}
