//! Network zones: one bridge `vz-ZONE` per zone on the host with a /24 of its own, static
//! addresses for the realms in it (no DHCP daemon is needed), nftables rules that keep zones
//! apart, and outbound NAT for the zones a user turns it on for.
//!
//! Zones live in `/realms/zones.toml`:
//! ```toml
//! [clear]
//! subnet = "10.77.0.0/24"
//! nat = false
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use realms_sys::{atomic, cmd::Cmd};
use serde::{Deserialize, Serialize};

use crate::store::RealmStore;
use crate::{Error, Result};

/// One zone's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Zone {
    /// The zone's IPv4 network, `A.B.C.0/24`; the host is `.1` on the bridge.
    pub subnet: String,
    /// Masquerade the zone's traffic to the outside (off unless a user turns it on).
    #[serde(default)]
    pub nat: bool,
}

/// Zone names become interface names (`vz-` + name, 15 bytes at most).
pub fn validate_zone(zone: &str) -> std::result::Result<(), String> {
    let mut chars = zone.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && zone.len() <= 12
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
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

fn zones_path(store: &RealmStore) -> PathBuf {
    store.dir().join("zones.toml")
}

/// Reads `/realms/zones.toml` (missing: no zones yet).
pub fn load(store: &RealmStore) -> Result<BTreeMap<String, Zone>> {
    let path = zones_path(store);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    let zones: BTreeMap<String, Zone> =
        toml::from_str(&text).map_err(|e| crate::config::bad_file(&path, &text, &e))?;
    for (name, zone) in &zones {
        validate_zone(name).map_err(|m| Error::Zone {
            zone: name.clone(),
            message: m,
        })?;
        parse_subnet(&zone.subnet).map_err(|m| Error::BadConfig {
            path: path.clone(),
            line: None,
            message: format!("zone '{name}': {m}"),
        })?;
    }
    Ok(zones)
}

fn save(store: &RealmStore, zones: &BTreeMap<String, Zone>) -> Result<()> {
    let text = toml::to_string(zones).map_err(|e| Error::Zone {
        zone: String::new(),
        message: e.to_string(),
    })?;
    atomic::write_file(zones_path(store), text.as_bytes(), 0o644)?;
    Ok(())
}

/// `A.B.C.0/24` → the network address.
pub fn parse_subnet(s: &str) -> std::result::Result<Ipv4Addr, String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("subnet '{s}' is not of the form A.B.C.0/24"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("subnet '{s}' is not of the form A.B.C.0/24"))?;
    if len != "24" || addr.octets()[3] != 0 {
        return Err(format!(
            "subnet '{s}' is not of the form A.B.C.0/24 (zones are /24 networks)"
        ));
    }
    Ok(addr)
}

/// The zone's settings, creating it (with a free subnet) on first use. Call with the lock held.
pub fn ensure(store: &RealmStore, zone: &str) -> Result<Zone> {
    let mut zones = load(store)?;
    if let Some(z) = zones.get(zone) {
        return Ok(z.clone());
    }
    let taken: Vec<Ipv4Addr> = zones
        .values()
        .filter_map(|z| parse_subnet(&z.subnet).ok())
        .collect();
    let host_nets = host_networks();
    let subnet = (0..=255u8)
        .map(|n| Ipv4Addr::new(10, 77, n, 0))
        .find(|net| !taken.contains(net) && !host_nets.contains(net))
        .ok_or_else(|| Error::Zone {
            zone: zone.to_string(),
            message: "no free 10.77.N.0/24 subnet; set one in /realms/zones.toml".into(),
        })?;
    let z = Zone {
        subnet: format!("{subnet}/24"),
        nat: false,
    };
    zones.insert(zone.to_string(), z.clone());
    save(store, &zones)?;
    Ok(z)
}

/// `realms zone ZONE nat on|off` and friends: sets one key of a zone.
pub fn set(store: &RealmStore, zone: &str, key: &str, value: &str) -> Result<Zone> {
    validate_zone(zone).map_err(|m| Error::Zone {
        zone: zone.to_string(),
        message: m,
    })?;
    let _lock = store.lock()?;
    ensure(store, zone)?;
    let mut zones = load(store)?;
    let z = zones.get_mut(zone).expect("ensured above");
    let bad = |allowed: &str| Error::BadValue {
        key: key.into(),
        value: value.into(),
        allowed: allowed.into(),
    };
    match key {
        "nat" => {
            z.nat = match value {
                "true" | "on" | "yes" | "1" => true,
                "false" | "off" | "no" | "0" => false,
                _ => return Err(bad("true or false")),
            }
        }
        "subnet" => {
            parse_subnet(value).map_err(|m| bad(&m))?;
            z.subnet = value.to_string();
        }
        _ => {
            return Err(Error::UnknownKey {
                key: key.into(),
                known: "nat, subnet".into(),
            });
        }
    }
    let z = z.clone();
    save(store, &zones)?;
    if bridge_exists(&bridge_name(zone)) {
        apply_rules(zone, &z)?;
    }
    Ok(z)
}

/// The networks (as /24 network addresses) already on host interfaces.
fn host_networks() -> Vec<Ipv4Addr> {
    let out = Cmd::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output_string()
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|cidr| cidr.split('/').next()?.parse::<Ipv4Addr>().ok())
        .map(|a| {
            let o = a.octets();
            Ipv4Addr::new(o[0], o[1], o[2], 0)
        })
        .collect()
}

fn bridge_exists(bridge: &str) -> bool {
    Path::new("/sys/class/net").join(bridge).exists()
}

fn host_address(zone: &Zone) -> Ipv4Addr {
    let o = parse_subnet(&zone.subnet)
        .map(|a| a.octets())
        .unwrap_or([10, 77, 0, 0]);
    Ipv4Addr::new(o[0], o[1], o[2], 1)
}

/// Creates the zone's bridge if it is missing, gives the host `.1` on it, and installs the
/// zone's nftables rules.
pub fn setup_bridge(zone_name: &str, zone: &Zone) -> Result<()> {
    let bridge = bridge_name(zone_name);
    if !bridge_exists(&bridge) {
        Cmd::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .run()?;
    }
    let addr = format!("{}/24", host_address(zone));
    let has = Cmd::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", &bridge])
        .output_string()?;
    if !has.contains(&format!("inet {addr}")) {
        Cmd::new("ip")
            .args(["addr", "add", &addr, "dev", &bridge])
            .run()?;
    }
    Cmd::new("ip").args(["link", "set", &bridge, "up"]).run()?;
    apply_rules(zone_name, zone)
}

/// The zone's nftables rules: nothing crosses from this zone into another zone; traffic to the
/// outside is forwarded (and masqueraded) only when NAT is on.
fn apply_rules(zone_name: &str, zone: &Zone) -> Result<()> {
    let bridge = bridge_name(zone_name);
    let chain = format!("zone-{zone_name}");
    let outside = if zone.nat { "accept" } else { "drop" };
    let mut script = format!(
        "table inet realms {{\n\
         \x20 map zones {{ type ifname : verdict; }}\n\
         \x20 map nat_zones {{ type ifname : verdict; }}\n\
         \x20 chain forward {{ type filter hook forward priority 0; policy accept; iifname vmap @zones; }}\n\
         \x20 chain postrouting {{ type nat hook postrouting priority 100; policy accept; iifname vmap @nat_zones; }}\n\
         \x20 chain {chain} {{ }}\n\
         \x20 chain nat-{zone_name} {{ }}\n\
         }}\n\
         flush chain inet realms {chain}\n\
         flush chain inet realms nat-{zone_name}\n\
         add rule inet realms {chain} oifname \"{bridge}\" accept\n\
         add rule inet realms {chain} oifname \"vz-*\" drop\n\
         add rule inet realms {chain} {outside}\n\
         add element inet realms zones {{ \"{bridge}\" : jump {chain} }}\n",
    );
    if zone.nat {
        script.push_str(&format!(
            "add rule inet realms nat-{zone_name} oifname != \"vz-*\" masquerade\n\
             add element inet realms nat_zones {{ \"{bridge}\" : jump nat-{zone_name} }}\n"
        ));
    }
    let forwarding =
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() != "0");
    if !zone.nat
        && !forwarding
        && realms_sys::cmd::Cmd::new("nft")
            .arg("--version")
            .output()
            .is_err()
    {
        // The host routes nothing between interfaces, so the zones are apart without rules.
        tracing::warn!(
            "nft is not installed: zone '{zone_name}' relies on IP forwarding being off; install \
             nftables so that zones stay apart even when it is turned on"
        );
        return Ok(());
    }
    Cmd::new("nft").arg("-f").arg("-").stdin_bytes(script).run().map_err(|e| Error::Zone {
        zone: zone_name.to_string(),
        message: format!("installing the nftables rules that isolate the zone failed (is the `nftables` package installed?): {e}"),
    })?;
    if zone.nat {
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| Error::io("enabling", "/proc/sys/net/ipv4/ip_forward", e))?;
    }
    Ok(())
}

/// The realm's address in its zone: a lease under `/run/realms/leases/ZONE/` kept while the
/// realm runs. Call with the store lock held.
pub fn lease(store: &RealmStore, zone_name: &str, zone: &Zone, realm: &str) -> Result<Ipv4Addr> {
    let dir = store.run_dir().join("leases").join(zone_name);
    fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let net = parse_subnet(&zone.subnet)
        .map_err(|m| Error::Zone {
            zone: zone_name.into(),
            message: m,
        })?
        .octets();
    let mut free = None;
    for host in 2..=254u8 {
        let file = dir.join(host.to_string());
        match fs::read_to_string(&file) {
            Ok(owner) if owner.trim() == realm => {
                return Ok(Ipv4Addr::new(net[0], net[1], net[2], host));
            }
            Ok(owner) if crate::launch::is_running(store, owner.trim()) => {}
            _ => {
                if free.is_none() {
                    free = Some(host);
                }
            }
        }
    }
    let host = free.ok_or_else(|| Error::Zone {
        zone: zone_name.into(),
        message: "no free address left".into(),
    })?;
    atomic::write_file(dir.join(host.to_string()), realm.as_bytes(), 0o644)?;
    Ok(Ipv4Addr::new(net[0], net[1], net[2], host))
}

/// Drops every lease of realm `realm`.
pub fn release(store: &RealmStore, realm: &str) {
    let Ok(zones) = fs::read_dir(store.run_dir().join("leases")) else {
        return;
    };
    for zone in zones.flatten() {
        for lease in fs::read_dir(zone.path()).into_iter().flatten().flatten() {
            if fs::read_to_string(lease.path()).is_ok_and(|o| o.trim() == realm) {
                let _ = fs::remove_file(lease.path());
            }
        }
    }
}

/// Configures `host0` inside the realm (entered through its leader's network namespace).
pub fn configure_host0(leader: u32, address: Ipv4Addr, zone: &Zone) -> Result<()> {
    let pid = leader.to_string();
    let ip = |args: &[&str]| {
        Cmd::new("nsenter")
            .args(["-t", &pid, "-n", "ip"])
            .args(args)
            .run()
    };
    ip(&["addr", "replace", &format!("{address}/24"), "dev", "host0"])?;
    ip(&["link", "set", "host0", "up"])?;
    ip(&[
        "route",
        "replace",
        "default",
        "via",
        &host_address(zone).to_string(),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_fit_interface_names() {
        assert!(validate_zone("clear").is_ok());
        assert!(validate_zone("abcdefghijkl").is_ok());
        assert!(validate_zone("abcdefghijklm").is_err());
        assert!(validate_zone("Work").is_err());
        assert_eq!(bridge_name("abcdefghijkl").len(), 15);
    }

    #[test]
    fn subnets_are_slash_24() {
        assert_eq!(
            parse_subnet("10.77.3.0/24").unwrap(),
            Ipv4Addr::new(10, 77, 3, 0)
        );
        assert!(parse_subnet("10.77.3.1/24").is_err());
        assert!(parse_subnet("10.77.3.0/16").is_err());
        assert!(parse_subnet("x").is_err());
    }
}
