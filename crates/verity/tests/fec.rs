//! Forward error correction through the public API: corrupted data and hash blocks are found
//! and repaired up to what the parity allows, beyond it verification fails, and the FEC area can
//! live in its own file, the hash file or the data file. (Byte-identity with veritysetup's FEC
//! area is checked against the real tool in tests/host/verity.rs.)

mod common;

use std::fs::File;

use common::{Rng, device};
use realms_verity::{
    Error, FecParams, Params, format, format_with_fec, repair, verify, verify_with_fec,
};

struct Image {
    _dir: tempfile::TempDir,
    data: File,
    hash: File,
    fec: File,
    original: Vec<u8>,
    params: Params,
    fec_params: FecParams,
    root: Vec<u8>,
    rounds: u64,
}

fn image(blocks: usize, block_size: u32, roots: u32, seed: u64) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let original = rng.bytes(blocks * block_size as usize);
    let data = device(&dir.path().join("data"), &original);
    let hash = device(&dir.path().join("hash"), &[]);
    let fec = device(&dir.path().join("fec"), &[]);
    let params = Params {
        data_block_size: block_size,
        hash_block_size: block_size,
        salt: vec![0x5a; 32],
        uuid: Some([7; 16]),
        ..Params::default()
    };
    let fec_params = FecParams { roots, offset: 0 };
    let out = format_with_fec(&data, &hash, &fec, &params, &fec_params).unwrap();
    assert_eq!(out.fec.roots, roots);
    assert_eq!(
        out.fec.size,
        out.fec.rounds * u64::from(block_size) * u64::from(roots)
    );
    Image {
        _dir: dir,
        data,
        hash,
        fec,
        original,
        root: out.tree.root_hash.clone(),
        params: out.tree.params,
        fec_params,
        rounds: out.fec.rounds,
    }
}

fn corrupt_block(file: &File, offset: u64, len: usize, rng: &mut Rng) {
    use std::os::unix::fs::FileExt;
    let junk = rng.bytes(len);
    file.write_all_at(&junk, offset).unwrap();
}

fn contents(file: &File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut f = file.try_clone().unwrap();
    f.rewind().unwrap();
    let mut out = Vec::new();
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn intact_device_needs_no_correction() {
    let img = image(300, 4096, 2, 1);
    let outcome = verify_with_fec(
        &img.data,
        &img.hash,
        &img.fec,
        &img.params,
        &img.fec_params,
        &img.root,
    )
    .unwrap();
    assert!(outcome.failure.is_none());
    assert!(outcome.corrections.is_empty());
    assert_eq!(outcome.layout.data_blocks, 300);
    // 300 data blocks, the tree starts after the superblock's block: 3 + 1 hash blocks.
    assert_eq!(outcome.layout.hash_blocks, 4);
    assert_eq!(outcome.layout.rounds, 304u64.div_ceil(253));
}

#[test]
fn corrupted_blocks_are_repaired_up_to_half_the_roots_per_round() {
    for roots in [2u32, 4, 10, 24] {
        let img = image(2000, 1024, roots, 10 + u64::from(roots));
        let rounds = img.rounds;
        let mut rng = Rng(u64::from(roots));
        // Blocks n, rounds + n, ... share round n: corrupt roots/2 of them (and a few bytes
        // each, partial blocks), all in round 3.
        let mut hit = Vec::new();
        for i in 0..u64::from(roots / 2) {
            let block = i * rounds + 3;
            if block < 2000 {
                corrupt_block(&img.data, block * 1024 + 17 * i, 100, &mut rng);
                hit.push(block);
            }
        }
        let err = verify(&img.data, &img.hash, &img.params, &img.root).unwrap_err();
        assert!(err.is_integrity_failure(), "{err}");
        let found = verify_with_fec(
            &img.data,
            &img.hash,
            &img.fec,
            &img.params,
            &img.fec_params,
            &img.root,
        )
        .unwrap();
        assert!(found.failure.is_some());
        let blocks: Vec<u64> = found.corrections.data.keys().map(|o| o / 1024).collect();
        assert_eq!(blocks, hit, "roots {roots}");
        // Nothing was written by verify.
        assert_ne!(contents(&img.data), img.original);
        repair(
            &img.data,
            &img.hash,
            &img.fec,
            &img.params,
            &img.fec_params,
            &img.root,
        )
        .unwrap();
        assert_eq!(contents(&img.data), img.original, "roots {roots}");
        verify(&img.data, &img.hash, &img.params, &img.root).unwrap();
    }
}

#[test]
fn a_burst_of_consecutive_blocks_spreads_over_rounds() {
    // With 2 roots, one bad block per round is correctable: consecutive blocks are in
    // consecutive rounds, so a burst as long as the number of rounds is repaired.
    let img = image(5000, 512, 2, 3);
    let rounds = img.rounds;
    let mut rng = Rng(3);
    corrupt_block(&img.data, 1000 * 512, (rounds as usize - 2) * 512, &mut rng);
    repair(
        &img.data,
        &img.hash,
        &img.fec,
        &img.params,
        &img.fec_params,
        &img.root,
    )
    .unwrap();
    assert_eq!(contents(&img.data), img.original);
}

#[test]
fn corrupted_hash_blocks_and_parity_are_repaired_too() {
    let img = image(3000, 4096, 8, 4);
    let hash_before = contents(&img.hash);
    let fec_before = contents(&img.fec);
    let mut rng = Rng(4);
    // A level-0 hash block (the tree starts at block 1, after the superblock).
    corrupt_block(&img.hash, 4096 * 5 + 300, 64, &mut rng);
    corrupt_block(&img.fec, 1000, 3, &mut rng);
    corrupt_block(&img.data, 4096 * 77, 4096, &mut rng);
    let outcome = repair(
        &img.data,
        &img.hash,
        &img.fec,
        &img.params,
        &img.fec_params,
        &img.root,
    )
    .unwrap();
    assert_eq!(
        outcome.corrections.hash.keys().collect::<Vec<_>>(),
        [&(4096 * 5)]
    );
    assert!(!outcome.corrections.parity.is_empty());
    assert_eq!(contents(&img.hash), hash_before);
    assert_eq!(contents(&img.fec), fec_before);
    assert_eq!(contents(&img.data), img.original);
}

#[test]
fn too_many_errors_fail_verification() {
    let img = image(1000, 4096, 2, 5);
    let rounds = img.rounds;
    let mut rng = Rng(5);
    // Two blocks in one round are beyond 2 roots.
    corrupt_block(&img.data, 4096 * 2, 4096, &mut rng);
    corrupt_block(&img.data, 4096 * (rounds + 2), 4096, &mut rng);
    let err = verify_with_fec(
        &img.data,
        &img.hash,
        &img.fec,
        &img.params,
        &img.fec_params,
        &img.root,
    )
    .unwrap_err();
    assert!(err.is_integrity_failure(), "{err}");
    assert!(
        matches!(
            err,
            Error::FecUncorrectable { .. } | Error::FecUnrepaired { .. }
        ),
        "{err}"
    );
    let before = contents(&img.data);
    assert!(
        repair(
            &img.data,
            &img.hash,
            &img.fec,
            &img.params,
            &img.fec_params,
            &img.root
        )
        .is_err()
    );
    assert_eq!(
        contents(&img.data),
        before,
        "a failed repair wrote to the data"
    );
}

#[test]
fn fec_in_the_hash_file_and_in_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(6);
    let original = rng.bytes(700 * 4096);
    let params = Params {
        salt: vec![1; 16],
        ..Params::default()
    };
    // FEC after the tree, in the hash file.
    let data = device(&dir.path().join("data"), &original);
    let hash = device(&dir.path().join("hash"), &[]);
    let fec = FecParams {
        roots: 6,
        offset: 64 * 4096,
    };
    let out = format_with_fec(&data, &hash, &hash, &params, &fec).unwrap();
    // The hash blocks covered end at the FEC offset.
    assert_eq!(out.fec.hash_blocks, 63);
    corrupt_block(&data, 4096 * 9, 10, &mut rng);
    repair(
        &data,
        &hash,
        &hash,
        &out.tree.params,
        &fec,
        &out.tree.root_hash,
    )
    .unwrap();
    assert_eq!(contents(&data), original);

    // FEC in the data file, after the data; the hash area there too.
    let mut image = original.clone();
    image.resize(original.len() + 8 * 4096, 0);
    let one = device(&dir.path().join("one"), &image);
    let params = Params {
        hash_offset: original.len() as u64,
        data_blocks: Some(700),
        ..params
    };
    let fec = FecParams {
        roots: 4,
        offset: original.len() as u64 + 16 * 4096,
    };
    let out = format_with_fec(&one, &one, &one, &params, &fec).unwrap();
    let before = contents(&one);
    corrupt_block(&one, 4096 * 100 + 5, 7, &mut rng);
    repair(
        &one,
        &one,
        &one,
        &out.tree.params,
        &fec,
        &out.tree.root_hash,
    )
    .unwrap();
    assert_eq!(contents(&one), before);

    // An FEC area over the tree, or over the data, is refused before anything is written.
    let overlap = FecParams {
        roots: 2,
        offset: 4096,
    };
    let err = format_with_fec(&data, &hash, &hash, &out.tree.params, &overlap).unwrap_err();
    assert!(matches!(err, Error::FecOverlap { .. }), "{err}");
}

#[test]
fn bad_fec_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = device(&dir.path().join("data"), &[3u8; 8192]);
    let hash = device(&dir.path().join("hash"), &[]);
    let fec = device(&dir.path().join("fec"), &[]);
    let params = Params::default();
    for (fec_params, params) in [
        (
            FecParams {
                roots: 1,
                offset: 0,
            },
            params.clone(),
        ),
        (
            FecParams {
                roots: 25,
                offset: 0,
            },
            params.clone(),
        ),
        (
            FecParams {
                roots: 2,
                offset: 100,
            },
            params.clone(),
        ),
        (
            FecParams::default(),
            Params {
                hash_block_size: 512,
                ..params.clone()
            },
        ),
    ] {
        let err = format_with_fec(&data, &hash, &fec, &params, &fec_params).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FecRoots { .. } | Error::FecOffset { .. } | Error::FecBlockSizes { .. }
            ),
            "{err}"
        );
        assert_eq!(std::fs::metadata(dir.path().join("hash")).unwrap().len(), 0);
    }
    // Without FEC the same data formats.
    format(&data, &hash, &params).unwrap();
}
