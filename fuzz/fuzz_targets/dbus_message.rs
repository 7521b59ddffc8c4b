//! The D-Bus message decoder the portable crate reads PID 1's replies and signals with.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|msg: &[u8]| {
    let _ = realms_portable::dbus::decode(msg);
});
