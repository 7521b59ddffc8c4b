//! IPv4 forwarding, a host-wide sysctl that NAT zones need: Realms turns it on when a NAT zone
//! needs it and records that it did (`/run/realms/net/ip_forward.realms`); when no zone with NAT
//! is left on the host it turns it back off. Forwarding the administrator turned on is never
//! touched (there is no record of ours then).

use realms_sys::IoContext;
use std::fs;
use std::path::Path;

use crate::Result;

/// The sysctl.
pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The record that Realms turned forwarding on.
pub const CHANGED: &str = "/run/realms/net/ip_forward.realms";

fn is_on(sysctl: &Path) -> bool {
    fs::read_to_string(sysctl).is_ok_and(|v| v.trim() != "0")
}

/// Turns forwarding on at `sysctl` if it is off, recording at `record` that we did; `true` if
/// it was off.
pub fn enable_at(sysctl: &Path, record: &Path) -> Result<bool> {
    if is_on(sysctl) {
        return Ok(false);
    }
    // The record first: a crash between the two leaves a record of a change not made, which
    // restoring turns into a harmless write of "0" to a sysctl that is 0.
    if let Some(dir) = record.parent() {
        fs::create_dir_all(dir).ctx("creating", dir)?;
    }
    realms_sys::atomic::write_file(record, b"1\n", 0o644)?;
    fs::write(sysctl, "1").ctx("enabling", sysctl)?;
    Ok(true)
}

/// Turns forwarding back off at `sysctl` when we turned it on (`record` exists) and no zone
/// with NAT needs it any more (`needed` false); `true` if it did.
pub fn restore_at(sysctl: &Path, record: &Path, needed: bool) -> Result<bool> {
    if needed || !record.exists() {
        return Ok(false);
    }
    fs::write(sysctl, "0").ctx("restoring", sysctl)?;
    fs::remove_file(record).ctx("removing", record)?;
    Ok(true)
}

/// [`enable_at`] on the host.
pub fn enable() -> Result<bool> {
    enable_at(Path::new(IP_FORWARD), Path::new(CHANGED))
}

/// [`restore_at`] on the host, `needed` when a zone on the host (of any store) has NAT on.
/// Call with the host network lock held.
pub fn restore_if_unneeded() -> Result<bool> {
    let needed = super::host::live_claims().iter().any(|(_, c)| c.nat);
    let restored = restore_at(Path::new(IP_FORWARD), Path::new(CHANGED), needed)?;
    if restored {
        tracing::info!("turned IPv4 forwarding back off: no zone with NAT is left on this host");
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_nat_on_turns_on_ip_forward_and_nothing_turns_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let sysctl = dir.path().join("ip_forward");
        let record = dir.path().join("net/ip_forward.realms");
        fs::write(&sysctl, "0\n").unwrap();
        assert!(enable_at(&sysctl, &record).unwrap());
        assert!(is_on(&sysctl) && record.exists());
        assert!(!enable_at(&sysctl, &record).unwrap());
        // Still needed by a NAT zone: left on.
        assert!(!restore_at(&sysctl, &record, true).unwrap());
        assert!(is_on(&sysctl));
        assert!(restore_at(&sysctl, &record, false).unwrap());
        assert!(!is_on(&sysctl) && !record.exists());

        // Turned on by the administrator: never turned off by us.
        fs::write(&sysctl, "1\n").unwrap();
        assert!(!enable_at(&sysctl, &record).unwrap());
        assert!(!restore_at(&sysctl, &record, false).unwrap());
        assert!(is_on(&sysctl));
    }
}
