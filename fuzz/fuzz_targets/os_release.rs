//! os-release and extension-release files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use realms_unit::OsRelease;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(release) = OsRelease::parse(text) {
        for (key, value) in release.entries() {
            assert!(!key.is_empty(), "empty key from {value:?}");
        }
    }
});
