//! The dm-verity superblock parser, and the tree layout a parsed superblock leads to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use realms_verity::{Params, Superblock};

fuzz_target!(|data: &[u8]| {
    let Ok(sb) = Superblock::parse(data) else {
        return;
    };
    // A valid superblock is exactly what it serialises back to.
    assert_eq!(&sb.to_bytes()[..], &data[..512]);
    let offset = data
        .get(512..520)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let params = Params::from_superblock(&sb, offset);
    let _ = realms_verity::tree_layout(&params, sb.data_blocks);
});
