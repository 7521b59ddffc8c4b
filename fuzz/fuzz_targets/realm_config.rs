//! A realm's config file (TOML), parsed and validated.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use realms_realm::config::RealmConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RealmConfig::parse(text, Path::new("/realms/realm-fuzz/config"));
});
