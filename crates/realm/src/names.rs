//! Pure naming rules of the network model: what a zone's bridge is called, what a zone's subnet
//! looks like (which zone names are valid is the workspace's one name rule, re-exported here).
//! Nothing here touches the disk.

use std::net::Ipv4Addr;

/// Zone names follow the one naming module of the workspace (`realms_image::validate_zone`).
pub use realms_image::validate_zone;

/// The bridge of a zone.
pub fn bridge_name(zone: &str) -> String {
    format!("vz-{zone}")
}

/// A subnet that is not of the form `A.B.C.0/24`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSubnet {
    /// The subnet as written.
    pub subnet: String,
    /// It is an address and a length, but not a /24 network.
    pub not_a_24: bool,
}

impl std::fmt::Display for BadSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "subnet '{}' is not of the form A.B.C.0/24", self.subnet)?;
        if self.not_a_24 {
            write!(f, " (zones are /24 networks)")?;
        }
        Ok(())
    }
}

/// `A.B.C.0/24` → the network address.
pub fn parse_subnet(s: &str) -> std::result::Result<Ipv4Addr, BadSubnet> {
    let bad = |not_a_24| BadSubnet {
        subnet: s.to_string(),
        not_a_24,
    };
    let (addr, len) = s.split_once('/').ok_or_else(|| bad(false))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad(false))?;
    if len != "24" || addr.octets()[3] != 0 {
        return Err(bad(true));
    }
    Ok(addr)
}
