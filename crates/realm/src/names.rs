//! Pure naming rules of the network model: which zone names are valid and what a zone's
//! bridge is called. Nothing here touches the disk.

/// Words of `realms zone` that cannot be zone names.
pub(crate) const RESERVED: &[&str] = &["remove"];

/// Zone names become interface names (`vz-` + name, 15 bytes at most).
pub fn validate_zone(zone: &str) -> std::result::Result<(), String> {
    let mut chars = zone.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && zone.len() <= 12
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
    if RESERVED.contains(&zone) {
        return Err(format!(
            "'{zone}' is a word of `realms zone`, not a zone name"
        ));
    }
    if ok {
        Ok(())
    } else {
        Err("zone names are a lowercase letter followed by up to 11 lowercase letters, digits or dashes \
             ([a-z][a-z0-9-]{0,11}), so that the bridge name vz-ZONE fits in an interface name"
            .to_string())
    }
}

/// The bridge of a zone.
pub fn bridge_name(zone: &str) -> String {
    format!("vz-{zone}")
}
