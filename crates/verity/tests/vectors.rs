//! Every row of veritysetup 2.6.1's vectors: same root hash, and the same hash file, byte for byte.

mod common;

use std::collections::BTreeMap;

use common::{device, gen_data, sha256_hex, vectors_dir};
use realms_verity::{HashAlgorithm, Params, format, parse_uuid, verify};

const UUID: &str = "12345678-1234-1234-1234-123456789abc";

#[derive(Debug)]
struct Row {
    line: usize,
    nblocks: u64,
    data_sha256: String,
    params: Params,
    root_hash: String,
    hash_file_bytes: u64,
    hash_file_sha256: String,
}

fn parse_rows() -> Vec<Row> {
    let path = vectors_dir().join("vectors.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            f.len(),
            10,
            "{}:{}: expected 10 columns",
            path.display(),
            i + 1
        );
        let salt = if f[2] == "-" {
            Vec::new()
        } else {
            hex::decode(f[2]).unwrap()
        };
        let params = Params {
            hash: f[3].parse::<HashAlgorithm>().unwrap(),
            data_block_size: f[4].parse().unwrap(),
            hash_block_size: f[5].parse().unwrap(),
            salt,
            uuid: parse_uuid(UUID),
            superblock: match f[6] {
                "sb" => true,
                "nosb" => false,
                other => panic!("{}:{}: superblock column {other:?}", path.display(), i + 1),
            },
            ..Params::default()
        };
        rows.push(Row {
            line: i + 1,
            nblocks: f[0].parse().unwrap(),
            data_sha256: f[1].to_string(),
            params,
            root_hash: f[7].to_string(),
            hash_file_bytes: f[8].parse().unwrap(),
            hash_file_sha256: f[9].to_string(),
        });
    }
    rows
}

#[test]
fn every_vector_matches_veritysetup() {
    let rows = parse_rows();
    assert_eq!(rows.len(), 40, "vectors.tsv should have 40 rows");
    let mut by_size: BTreeMap<u64, Vec<&Row>> = BTreeMap::new();
    for row in &rows {
        by_size.entry(row.nblocks).or_default().push(row);
    }
    let dir = tempfile::tempdir().unwrap();
    for (nblocks, rows) in by_size {
        let bytes = gen_data(nblocks);
        assert_eq!(
            sha256_hex(&bytes),
            rows[0].data_sha256,
            "generated data for {nblocks} blocks"
        );
        let data = device(&dir.path().join(format!("data-{nblocks}")), &bytes);
        for row in rows {
            let hash_path = dir.path().join(format!("hash-{}", row.line));
            let hash = device(&hash_path, &[]);
            let out = format(&data, &hash, &row.params).unwrap();
            let label = format!("vectors.tsv line {}: {:?}", row.line, row.params);
            assert_eq!(hex::encode(&out.root_hash), row.root_hash, "{label}");
            let written = std::fs::read(&hash_path).unwrap();
            assert_eq!(written.len() as u64, row.hash_file_bytes, "{label}");
            assert_eq!(sha256_hex(&written), row.hash_file_sha256, "{label}");
            // Verification of the large rows adds nothing but time in debug builds.
            if nblocks <= 1000 {
                verify(&data, &hash, &row.params, &out.root_hash).unwrap();
            }
        }
    }
}

/// The hash area at an offset inside the data file equals the one in a separate file.
#[test]
fn hash_offset_in_the_data_file() {
    let bytes = gen_data(300);
    let dir = tempfile::tempdir().unwrap();
    for (superblock, hash_offset, hbs) in [
        (true, 300 * 4096, 4096),
        (false, 300 * 4096 + 8192, 1024),
        (true, 300 * 4096 + 512, 512),
    ] {
        let params = Params {
            salt: vec![7; 19],
            uuid: parse_uuid(UUID),
            superblock,
            hash_offset,
            hash_block_size: hbs,
            data_blocks: Some(300),
            ..Params::default()
        };
        let separate = Params {
            hash_offset: 0,
            ..params.clone()
        };
        let hash = device(&dir.path().join("hash"), &[]);
        let data = device(&dir.path().join("data"), &bytes);
        let a = format(&data, &hash, &separate).unwrap();
        let combined = device(&dir.path().join("combined"), &bytes);
        let b = format(&combined, &combined, &params).unwrap();
        assert_eq!(a.root_hash, b.root_hash);
        let hash_bytes = std::fs::read(dir.path().join("hash")).unwrap();
        let combined_bytes = std::fs::read(dir.path().join("combined")).unwrap();
        assert_eq!(
            &combined_bytes[..bytes.len()],
            &bytes[..],
            "data must stay untouched"
        );
        let start = if superblock {
            hash_offset as usize
        } else {
            hash_offset as usize / hbs as usize * hbs as usize
        };
        assert_eq!(
            &combined_bytes[start..],
            &hash_bytes[..],
            "sb={superblock} offset={hash_offset}"
        );
        verify(&combined, &combined, &params, &b.root_hash).unwrap();
    }
}

/// Without --data-blocks, a hash area inside the data it would cover is refused.
#[test]
fn overlapping_hash_area_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = device(&dir.path().join("img"), &gen_data(4));
    let params = Params {
        hash_offset: 8192,
        ..Params::default()
    };
    let err = format(&file, &file, &params).unwrap_err();
    assert!(err.to_string().contains("overlaps"), "{err}");
}

/// Like veritysetup: a single data block without a superblock has no tree, so nothing is
/// written and the hash file keeps its size; with a superblock it grows to the padded block.
#[test]
fn single_block_hash_file_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let data = device(&dir.path().join("data"), &gen_data(1));
    let cases = [
        (false, 5632, 1024, 0),
        (false, 0, 4096, 0),
        (true, 4096, 1024, 5120),
        (true, 0, 1024, 1024),
    ];
    for (superblock, hash_offset, hbs, size) in cases {
        let path = dir
            .path()
            .join(format!("hash-{superblock}-{hash_offset}-{hbs}"));
        let hash = device(&path, &[]);
        let params = Params {
            superblock,
            hash_offset,
            hash_block_size: hbs,
            ..Params::default()
        };
        let out = format(&data, &hash, &params).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "{params:?}");
        verify(&data, &hash, &params, &out.root_hash).unwrap();
    }
}
