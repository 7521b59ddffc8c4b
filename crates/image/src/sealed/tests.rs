//! Sealed images without a filesystem tool: signatures, verification, and the tamper test of
//! issue 5 (1,000 single-byte flips over data, hash tree, superblock, signature and metadata).

use super::*;
use crate::keys;
use crate::store::ImageStore;

/// A deterministic byte stream (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A sealed image of `blocks` data blocks of noise, signed with a trusted key.
fn sealed_image(root: &Path, name: &str, blocks: usize) -> ImageInfo {
    sealed_image_fec(root, name, blocks, None)
}

/// The same with FEC (`image.fec`) when `fec_roots` is given.
fn sealed_image_fec(root: &Path, name: &str, blocks: usize, fec_roots: Option<u32>) -> ImageInfo {
    let (private, _) = keys::generate(root, "builder").unwrap();
    let store = ImageStore::open(root).unwrap();
    let dir = store.path(name);
    fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let data: Vec<u8> = (0..blocks * 4096).map(|_| rng.next() as u8).collect();
    fs::write(dir.join("image.raw"), data).unwrap();
    let verity = format_verity(&dir, fec_roots).unwrap();
    let meta = Meta {
        name: name.into(),
        version: "1".into(),
        filesystem: "erofs".into(),
        created: 1,
        signed_by: Some("builder".into()),
        verity: Some(verity),
    };
    let text = meta.to_text();
    fs::write(dir.join("image.meta"), &text).unwrap();
    let key = keys::load_private(&private).unwrap();
    fs::write(dir.join("image.sig"), keys::sign(&key, text.as_bytes())).unwrap();
    store.get(name).unwrap()
}

#[test]
fn a_sealed_image_verifies_and_reports_its_signer() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 64);
    assert_eq!(info.kind, ImageKind::Sealed);
    let v = verify(root.path(), &info).unwrap();
    assert_eq!((v.signed_by.key.as_str(), v.data_blocks), ("builder", 64));
}

#[test]
fn a_sealed_image_with_fec_verifies_through_damaged_blocks() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image_fec(root.path(), "img", 500, Some(4));
    let v = verify(root.path(), &info).unwrap();
    assert_eq!(v.fec_corrected, Some(0));
    let checked = check_signature(root.path(), &info).unwrap();
    let meta = checked.meta.verity.unwrap();
    assert_eq!(meta.fec_roots, Some(4));
    let (params, _) = verity_params(&info, &meta).unwrap();
    let layout = fec_layout(&info, &params, &meta).unwrap().unwrap();
    // 500 data blocks and the tree (4 + 1 blocks), not the superblock.
    assert_eq!(layout.blocks(), 505);
    assert_eq!(
        fs::metadata(info.path.join("image.fec")).unwrap().len(),
        layout.size
    );
    // Two damaged blocks in different rounds: corrected, and the image still verifies.
    let raw = info.path.join("image.raw");
    let mut bytes = fs::read(&raw).unwrap();
    for b in &mut bytes[4096 * 10..4096 * 10 + 300] {
        *b ^= 0x55;
    }
    bytes[4096 * 11 + 7] ^= 1;
    fs::write(&raw, &bytes).unwrap();
    let v = verify(root.path(), &info).unwrap();
    assert_eq!(v.fec_corrected, Some(301));
    // Without FEC the same damage fails.
    let root = tempfile::tempdir().unwrap();
    let plain = sealed_image(root.path(), "plain", 500);
    let raw = plain.path.join("image.raw");
    let mut bytes = fs::read(&raw).unwrap();
    bytes[4096 * 11 + 7] ^= 1;
    fs::write(&raw, &bytes).unwrap();
    let err = verify(root.path(), &plain).unwrap_err().to_string();
    assert!(err.contains("data block 11"), "{err}");
}

#[test]
fn unsigned_untrusted_and_misnamed_images_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 8);
    fs::remove_file(info.path.join("image.sig")).unwrap();
    let err = check_signature(root.path(), &info).unwrap_err().to_string();
    assert!(err.contains("not signed"), "{err}");

    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 8);
    fs::remove_dir_all(root.path().join("etc/realms/keys.d")).unwrap();
    let err = check_signature(root.path(), &info).unwrap_err().to_string();
    assert!(err.contains("not trusted"), "{err}");

    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 8);
    let other = ImageStore::open(root.path()).unwrap().path("other");
    fs::rename(&info.path, &other).unwrap();
    let moved = ImageStore::open(root.path()).unwrap().get("other").unwrap();
    let err = check_signature(root.path(), &moved)
        .unwrap_err()
        .to_string();
    assert!(err.contains("names image 'img'"), "{err}");
}

#[test]
fn every_single_byte_flip_is_detected_and_named() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 300);
    let raw = info.path.join("image.raw");
    let hash = info.path.join("image.verity");
    let v = check_signature(root.path(), &info)
        .unwrap()
        .meta
        .verity
        .unwrap();
    let (params, _) = verity_params(&info, &v).unwrap();
    let layout = realms_verity::tree_layout(&params, v.data_blocks).unwrap();
    // (file, start, end, words one of which the error must contain)
    let regions: [(PathBuf, u64, u64, &[&str]); 5] = [
        (
            raw.clone(),
            0,
            fs::metadata(&raw).unwrap().len(),
            &["data block"],
        ),
        (
            hash.clone(),
            layout.tree_offset,
            layout.hash_end,
            &["hash block", "root hash"],
        ),
        (hash.clone(), 0, 512, &["superblock"]),
        (
            info.path.join("image.sig"),
            0,
            fs::metadata(info.path.join("image.sig")).unwrap().len(),
            &["signature", "not trusted", "signed by key"],
        ),
        (
            info.path.join("image.meta"),
            0,
            fs::metadata(info.path.join("image.meta")).unwrap().len(),
            &["signature", "UTF-8"],
        ),
    ];
    let mut rng = Rng(42);
    for i in 0..1000 {
        let (file, start, end, words) = &regions[i % regions.len()];
        let offset = start + rng.below(end - start);
        let mut bytes = fs::read(file).unwrap();
        let original = bytes[offset as usize];
        bytes[offset as usize] ^= (1 + rng.below(255)) as u8;
        fs::write(file, &bytes).unwrap();
        let result = verify(root.path(), &info);
        bytes[offset as usize] = original;
        fs::write(file, &bytes).unwrap();
        let err = match result {
            Ok(_) => panic!(
                "flip {i}: byte {offset} of {} was changed unnoticed",
                file.display()
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            words.iter().any(|w| err.contains(w)),
            "flip {i}: byte {offset} of {}: the error does not say what failed: {err}",
            file.display()
        );
    }
    verify(root.path(), &info).expect("the image is whole again");
}
