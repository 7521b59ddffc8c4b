//! Unit files: the parser, and what it writes back must parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use realms_unit::UnitFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut unit) = UnitFile::parse(text) else {
        return;
    };
    let names: Vec<String> = unit.section_names().iter().map(|s| s.to_string()).collect();
    for name in &names {
        let _ = unit.get_all(name, "ExecStart");
    }
    let _ = unit.set("Service", "Type", "oneshot");
    let _ = unit.remove("Unit", "Description");
    UnitFile::parse(&unit.to_text()).expect("a unit file written by UnitFile parses");
});
