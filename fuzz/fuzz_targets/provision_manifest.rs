//! The provisioning manifest (YAML), parsed with its strict schema.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| realms_provision::fuzz::fuzz_manifest(data));
