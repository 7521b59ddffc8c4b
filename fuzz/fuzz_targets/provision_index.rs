//! A repository's signed index (JSON) and its entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| realms_provision::fuzz::fuzz_index(data));
