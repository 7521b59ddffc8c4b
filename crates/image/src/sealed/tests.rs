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
    sealed_image_with(root, name, blocks, "1", None)
}

/// [`sealed_image`] of version `version` (the key `builder` is made once per root).
fn sealed_image_version(root: &Path, name: &str, blocks: usize, version: &str) -> ImageInfo {
    sealed_image_with(root, name, blocks, version, None)
}

/// [`sealed_image`] with FEC (`image.fec`) when `fec_roots` is given.
fn sealed_image_fec(root: &Path, name: &str, blocks: usize, fec_roots: Option<u32>) -> ImageInfo {
    sealed_image_with(root, name, blocks, "1", fec_roots)
}

fn sealed_image_with(
    root: &Path,
    name: &str,
    blocks: usize,
    version: &str,
    fec_roots: Option<u32>,
) -> ImageInfo {
    let private = root.join(keys::PRIVATE_DIR).join("builder.key");
    if !private.exists() {
        keys::generate(root, "builder").unwrap();
    }
    let store = ImageStore::open(root).unwrap();
    let dir = store.path(name);
    fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let data: Vec<u8> = (0..blocks * 4096).map(|_| rng.next() as u8).collect();
    fs::write(dir.join("image.raw"), data).unwrap();
    let verity = format_verity(&dir, fec_roots).unwrap();
    let meta = Meta {
        name: name.into(),
        version: version.into(),
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
        (hash.clone(), 0, 4096, &["superblock"]),
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

#[test]
fn superblock_padding_bytes_512_to_4095_are_covered_by_nothing() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 8);
    let hash = info.path.join("image.verity");
    let original = fs::read(&hash).unwrap();
    assert!(original[512..4096].iter().all(|b| *b == 0));
    for at in [512usize, 513, 1000, 2048, 4095] {
        let mut bytes = original.clone();
        bytes[at] = 0xff;
        fs::write(&hash, &bytes).unwrap();
        for err in [
            check_signature(root.path(), &info).unwrap_err().to_string(),
            verify(root.path(), &info).unwrap_err().to_string(),
        ] {
            assert!(
                err.contains("tampered") && err.contains(&format!("byte {at} of image.verity")),
                "{at}: {err}"
            );
        }
    }
    fs::write(&hash, &original).unwrap();
    verify(root.path(), &info).unwrap();
}

#[test]
fn stripping_the_seal_turns_a_sealed_image_into_a_plain_block_image() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 8);
    // The store learns the seal at the first check (a build records it as it installs).
    check_signature(root.path(), &info).unwrap();
    for f in ["image.sig", "image.verity", "image.roothash"] {
        fs::remove_file(info.path.join(f)).unwrap();
    }
    let store = ImageStore::open(root.path()).unwrap();
    let stripped = store.get("img").unwrap();
    assert_eq!(stripped.kind, ImageKind::Sealed);
    let err = check_signature(root.path(), &stripped)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("was sealed") && err.contains("appimg unseal img"),
        "{err}"
    );
    assert!(crate::seals::unseal(store.dir(), "img").unwrap());
    assert_eq!(store.get("img").unwrap().kind, ImageKind::Block);
}

#[test]
fn an_older_signed_version_copied_over_the_installed_one_passes_verify() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let old = sealed_image(root.path(), "img", 8);
    let aside = root.path().join("v1");
    copy_dir(&old.path, &aside);
    fs::remove_dir_all(&old.path).unwrap();
    // Version 2, signed with the same key, installed and accepted.
    let newer = sealed_image_version(root.path(), "img", 8, "2");
    verify(root.path(), &newer).unwrap();
    fs::remove_dir_all(&newer.path).unwrap();
    copy_dir(&aside, &store.path("img"));
    let copied = store.get("img").unwrap();
    let err = verify(root.path(), &copied).unwrap_err().to_string();
    assert!(
        err.contains("version 1 is older than version 2") && err.contains(".seals"),
        "{err}"
    );
    // The kept versions of realms made before an update are older by design.
    let prev = store.prev_path("img");
    fs::rename(store.path("img"), &prev).unwrap();
    let kept = store.info_at(&prev).unwrap();
    verify(root.path(), &kept).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn verity_superblock_with_absurd_numbers_is_refused_quickly_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let info = sealed_image(root.path(), "img", 8);
    let hash = info.path.join("image.verity");
    let original = fs::read(&hash).unwrap();
    // (offset, bytes): data block size, hash block size, data blocks, salt size, version.
    let absurd: [(usize, &[u8]); 6] = [
        (64, &u32::MAX.to_le_bytes()),
        (68, &0u32.to_le_bytes()),
        (72, &u64::MAX.to_le_bytes()),
        (72, &(1u64 << 62).to_le_bytes()),
        (80, &u16::MAX.to_le_bytes()),
        (8, &u32::MAX.to_le_bytes()),
    ];
    for (at, bytes) in absurd {
        let mut b = original.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        fs::write(&hash, &b).unwrap();
        let started = std::time::Instant::now();
        let err = verify(root.path(), &info).unwrap_err().to_string();
        assert!(started.elapsed().as_secs() < 5, "{at}: slow");
        assert!(err.contains("superblock"), "{at}: {err}");
    }
    fs::write(&hash, &original).unwrap();
    verify(root.path(), &info).unwrap();
}
