//! The GPT reader on a whole disk image: header, entry array, partition offsets and sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use realms_portable::gpt;

fuzz_target!(|image: &[u8]| {
    if let Ok(Some((sector, parts))) = gpt::read_image(image) {
        for p in parts {
            // Every partition the reader accepts has a range that fits in 64 bits.
            assert!(p.offset.checked_add(p.size).is_some());
            assert!(p.offset % sector == 0 && p.size % sector == 0);
            let _ = p.type_guid.to_string();
        }
    }
});
