//! A realm joining its zone at start and leaving it at stop, and the zone's host side kept in
//! step: the bridge, the host-wide record, the nftables table, `route_localnet` and IPv4
//! forwarding. Every change rewrites the zone's whole table from its record.

use realms_sys::IoContext;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use realms_sys::{atomic, cmd::Cmd};

use super::host::{self, Claim, Published};
use super::port::PortForward;
use super::stack::{NetStack, System};
use super::{Zone, bridge_name, ensure_locked, host_address, nft, parse_subnet, store_id};
use crate::store::RealmStore;
use crate::{Error, Result};

/// A realm's place in its zone, from [`attach`].
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The zone.
    pub zone: Zone,
    /// The realm's address in it.
    pub address: Ipv4Addr,
    /// What the user should hear about (the zone has no way out, forwarding was turned on).
    pub warnings: Vec<String>,
}

fn bad_subnet(zone: &str) -> impl FnOnce(super::BadSubnet) -> Error + '_ {
    move |problem| Error::InvalidSubnet {
        zone: zone.to_string(),
        problem,
    }
}

/// Joins realm `realm` to its zone before it boots: creates the zone if need be, checks that
/// this store owns the zone on the host, leases an address, and installs the zone's rules with
/// the realm's port forwards. Call with the store lock held.
pub fn attach(
    store: &RealmStore,
    zone_name: &str,
    realm: &str,
    forwards: &[PortForward],
) -> Result<Attachment> {
    let _net = host::lock(store)?;
    let zone = ensure_locked(store, zone_name)?;
    let mut claim = claim_for(store, zone_name, &zone)?;
    let address = lease(store, zone_name, &zone, realm)?;
    claim
        .forwards
        .retain(|f| f.realm != realm && crate::runtime::is_running(store, &f.realm));
    let mut warnings = Vec::new();
    for f in forwards {
        check_port_free(zone_name, realm, f, &claim)?;
        if host::port_in_use(f.proto, f.host_port) {
            warnings.push(format!(
                "port-forward '{f}': a program on the host listens on {} port {}; connections \
                 to it now reach realm '{realm}' instead",
                f.proto.as_str(),
                f.host_port
            ));
        }
        claim.forwards.push(Published {
            realm: realm.to_string(),
            proto: f.proto,
            host_port: f.host_port,
            address,
            port: f.realm_port,
        });
    }
    host::ensure_bridge(&bridge_name(zone_name), host_address(&zone))?;
    install(zone_name, &claim)?;
    warnings.extend(way_out(zone_name, &zone, realm, &System));
    Ok(Attachment {
        zone,
        address,
        warnings,
    })
}

/// The record this store will hold for the zone: refused when another store owns the zone on
/// the host, or when its subnet is another zone's or on a host interface.
fn claim_for(store: &RealmStore, zone_name: &str, zone: &Zone) -> Result<Claim> {
    let id = store_id(store);
    let existing = host::read_claim(zone_name);
    if existing.is_none() {
        nft::forget_legacy(zone_name);
    }
    if let Some(c) = &existing
        && c.store != id
        && host::is_live(zone_name, c)
    {
        return Err(Error::ZoneOwnedElsewhere {
            zone: zone_name.to_string(),
            bridge: bridge_name(zone_name),
            subnet: c.subnet.clone(),
            owner: c.store.clone(),
        });
    }
    check_subnet_free(zone_name, &zone.subnet, &id)?;
    let forwards = existing
        .filter(|c| c.store == id && c.subnet == zone.subnet)
        .map(|c| c.forwards)
        .unwrap_or_default();
    Ok(Claim {
        store: id,
        subnet: zone.subnet.clone(),
        nat: zone.nat,
        forwards,
    })
}

/// Refuses a subnet that another zone holds on the host or that overlaps a host interface's
/// network (other than the zone's own bridge).
pub(super) fn check_subnet_free(zone_name: &str, subnet: &str, id: &Path) -> Result<()> {
    let net = parse_subnet(subnet).map_err(bad_subnet(zone_name))?;
    for (other, c) in host::live_claims() {
        if other != zone_name && c.subnet == subnet {
            let whose = if c.store == id {
                "this store".to_string()
            } else {
                format!("the realm store {}", c.store.display())
            };
            return Err(Error::SubnetInUse {
                zone: zone_name.to_string(),
                subnet: subnet.to_string(),
                other,
                whose,
            });
        }
    }
    let bridge = bridge_name(zone_name);
    for (dev, hnet, len) in host::host_networks() {
        if dev != bridge && host::overlaps(net, 24, hnet, len) {
            return Err(Error::SubnetOverlaps {
                zone: zone_name.to_string(),
                subnet: subnet.to_string(),
                network: hnet,
                len,
                dev,
            });
        }
    }
    Ok(())
}

/// One host port goes to one realm: refused when a running realm already has it.
fn check_port_free(zone_name: &str, realm: &str, f: &PortForward, claim: &Claim) -> Result<()> {
    let taken = |p: &Published| p.proto == f.proto && p.host_port == f.host_port;
    let mut holders: Vec<(String, String)> = claim
        .forwards
        .iter()
        .filter(|p| taken(p))
        .map(|p| (p.realm.clone(), zone_name.to_string()))
        .collect();
    for (other, c) in host::live_claims() {
        if other != zone_name {
            holders.extend(
                c.forwards
                    .iter()
                    .filter(|p| taken(p))
                    .map(|p| (p.realm.clone(), other.clone())),
            );
        }
    }
    match holders.first() {
        None => Ok(()),
        Some((holder, zone)) => Err(Error::PortTaken {
            name: realm.to_string(),
            forward: f.to_string(),
            proto: f.proto.as_str(),
            port: f.host_port,
            holder: holder.clone(),
            zone: zone.clone(),
        }),
    }
}

/// Replaces the zone's table from the record, then records it.
fn install(zone_name: &str, claim: &Claim) -> Result<()> {
    apply(zone_name, claim, &System)?;
    host::write_claim(zone_name, claim)
}

/// The zone's rules on the network stack: its table from the record, and `route_localnet`
/// on its bridge while it has port forwards.
fn apply(zone_name: &str, claim: &Claim, net: &dyn NetStack) -> Result<()> {
    net.apply_rules(zone_name, nft::ruleset(zone_name, claim))?;
    net.set_route_localnet(&bridge_name(zone_name), !claim.forwards.is_empty())
}

/// What the realm should be told about its way out of the zone (turning IPv4 forwarding on
/// for the zone's NAT if need be).
fn way_out(zone_name: &str, zone: &Zone, realm: &str, net: &dyn NetStack) -> Vec<String> {
    let mut warnings = Vec::new();
    if !zone.nat {
        warnings.push(format!(
            "zone '{zone_name}' has no way out: its NAT is off, so realm '{realm}' reaches only \
             its zone and the host; `realms zone {zone_name} nat on` gives it outbound access"
        ));
        return warnings;
    }
    match net.enable_ip_forward() {
        Ok(true) => warnings.push(format!(
            "turned on IPv4 forwarding on this host (net.ipv4.ip_forward = 1) for the NAT of \
             zone '{zone_name}'; `realms zone {zone_name} nat off` isolates the zone instead"
        )),
        Ok(false) => {}
        Err(e) => warnings.push(format!(
            "zone '{zone_name}' has no way out: IPv4 forwarding is off on this host and could not \
             be turned on ({e}); `sysctl -w net.ipv4.ip_forward=1` turns it on"
        )),
    }
    if !net.has_default_route() {
        warnings.push(format!(
            "zone '{zone_name}' has no way out: this host has no IPv4 default route for its NAT \
             to use"
        ));
    }
    warnings
}

/// After `realms zone ZONE KEY VALUE`: the zone's record and, if its bridge is up, its host
/// side follow the new settings, when this store owns the zone. Call with the store lock and
/// the host network lock held.
pub(super) fn resync_locked(store: &RealmStore, zone_name: &str, zone: &Zone) -> Result<()> {
    let Some(mut claim) = host::read_claim(zone_name) else {
        return Ok(());
    };
    if claim.store != store_id(store) {
        return Ok(());
    }
    let bridge = bridge_name(zone_name);
    if claim.subnet != zone.subnet {
        // No realm of the zone runs (set refuses otherwise): nothing is forwarded any more.
        claim.forwards.clear();
        claim.subnet = zone.subnet.clone();
        if host::bridge_exists(&bridge) {
            host::ensure_bridge(&bridge, host_address(zone))?;
        }
    }
    claim.nat = zone.nat;
    if !host::bridge_exists(&bridge) {
        return host::write_claim(zone_name, &claim);
    }
    install(zone_name, &claim)?;
    if zone.nat {
        System.enable_ip_forward()?;
    } else {
        super::forwarding::restore_if_unneeded()?;
    }
    Ok(())
}

/// The host side of `realms zone remove`: the table, the bridge and the record, unless another
/// store owns the zone there (its bridge is then left alone). `known`: the zone is in this
/// store's zones.toml. Call with the store lock and the host network lock held.
pub(super) fn remove_from_host_locked(
    store: &RealmStore,
    zone_name: &str,
    known: bool,
) -> Result<()> {
    let claim = host::read_claim(zone_name);
    let id = store_id(store);
    let ours = claim.as_ref().is_some_and(|c| c.store == id);
    let theirs = claim
        .as_ref()
        .is_some_and(|c| c.store != id && host::is_live(zone_name, c));
    if !known && !ours {
        return Err(Error::NoSuchZone {
            zone: zone_name.to_string(),
        });
    }
    if theirs {
        return Ok(());
    }
    // Each step is undone-or-done: killed between them, the zone is still in zones.toml
    // (written last by `remove`), and `zone remove` run again finishes the rest.
    System.delete_rules(zone_name, &nft::table_name(zone_name))?;
    realms_sys::failpoint::hit("zone-remove-rules");
    host::delete_bridge(&bridge_name(zone_name))?;
    realms_sys::failpoint::hit("zone-remove-bridge");
    host::remove_claim(zone_name);
    realms_sys::failpoint::hit("zone-remove-claim");
    super::forwarding::restore_if_unneeded()?;
    Ok(())
}

/// The realm's address in its zone: a lease under `/run/realms/leases/ZONE/` kept while the
/// realm runs (a stopped realm's lease is taken by the next realm that needs one). Call with
/// the store lock held.
fn lease(store: &RealmStore, zone_name: &str, zone: &Zone, realm: &str) -> Result<Ipv4Addr> {
    let dir = store.run_dir().join("leases").join(zone_name);
    fs::create_dir_all(&dir).ctx("creating", &dir)?;
    let net = parse_subnet(&zone.subnet)
        .map_err(bad_subnet(zone_name))?
        .octets();
    let mut free = None;
    for host in 2..=254u8 {
        let file = dir.join(host.to_string());
        match fs::read_to_string(&file) {
            Ok(owner) if owner.trim() == realm => {
                return Ok(Ipv4Addr::new(net[0], net[1], net[2], host));
            }
            Ok(owner) if crate::runtime::is_running(store, owner.trim()) => {}
            _ => {
                if free.is_none() {
                    free = Some(host);
                }
            }
        }
    }
    let host = free.ok_or_else(|| Error::NoFreeAddress {
        zone: zone_name.to_string(),
    })?;
    atomic::write_file(dir.join(host.to_string()), realm.as_bytes(), 0o644)?;
    Ok(Ipv4Addr::new(net[0], net[1], net[2], host))
}

/// A realm left its zone (stopped or removed): drops its leases and its port forwards, and
/// rewrites the rules of the zones it had forwards in. Failures are logged, not returned: the
/// realm is gone either way.
pub fn release(store: &RealmStore, realm: &str) {
    if let Ok(zones) = fs::read_dir(store.run_dir().join("leases")) {
        for zone in zones.flatten() {
            for lease in fs::read_dir(zone.path()).into_iter().flatten().flatten() {
                if fs::read_to_string(lease.path()).is_ok_and(|o| o.trim() == realm) {
                    let _ = fs::remove_file(lease.path());
                }
            }
        }
    }
    let id = store_id(store);
    let Ok(dir) = fs::read_dir(host::NET_DIR) else {
        return;
    };
    let zones: Vec<String> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".toml").map(str::to_string)
        })
        .collect();
    let _net = match host::lock(store) {
        Ok(l) => l,
        Err(e) => return tracing::warn!("realm '{realm}': releasing its port forwards: {e}"),
    };
    for zone in zones {
        let Some(mut claim) = host::read_claim(&zone) else {
            continue;
        };
        if claim.store != id || !claim.forwards.iter().any(|f| f.realm == realm) {
            continue;
        }
        claim.forwards.retain(|f| f.realm != realm);
        let done = if host::bridge_exists(&bridge_name(&zone)) {
            install(&zone, &claim)
        } else {
            host::write_claim(&zone, &claim)
        };
        if let Err(e) = done {
            tracing::warn!("realm '{realm}': removing its port forwards from zone '{zone}': {e}");
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
    use crate::forward::Proto;
    use crate::zone::stack::Recorder;

    fn claim(forwards: Vec<Published>) -> Claim {
        Claim {
            store: "/realms".into(),
            subnet: "10.77.3.0/24".into(),
            nat: true,
            forwards,
        }
    }

    fn zone(nat: bool) -> Zone {
        Zone {
            subnet: "10.77.3.0/24".into(),
            nat,
        }
    }

    #[test]
    fn a_zone_with_port_forwards_gets_its_ruleset_and_route_localnet_on() {
        let net = Recorder::default();
        let forward = Published {
            realm: "web".into(),
            proto: Proto::Tcp,
            host_port: 8080,
            address: Ipv4Addr::new(10, 77, 3, 2),
            port: 80,
        };
        apply("work", &claim(vec![forward.clone()]), &net).unwrap();
        assert_eq!(
            *net.calls.borrow(),
            ["apply work", "route_localnet vz-work on"]
        );
        let rules = net.rulesets.borrow();
        assert_eq!(rules[0], nft::ruleset("work", &claim(vec![forward])));
        assert!(rules[0].contains("dnat ip to 10.77.3.2:80"), "{}", rules[0]);

        let net = Recorder::default();
        apply("work", &claim(Vec::new()), &net).unwrap();
        assert_eq!(
            *net.calls.borrow(),
            ["apply work", "route_localnet vz-work off"]
        );
        assert!(!net.rulesets.borrow()[0].contains("dnat ip to"));
    }

    #[test]
    fn a_zone_without_nat_has_no_way_out_and_forwarding_is_left_alone() {
        let net = Recorder {
            default_route: true,
            ..Recorder::default()
        };
        let warnings = way_out("lab", &zone(false), "r", &net);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("its NAT is off"), "{warnings:?}");
        assert!(net.calls.borrow().is_empty(), "{:?}", net.calls.borrow());
    }

    #[test]
    fn nat_turns_forwarding_on_once_and_says_so() {
        let off = Recorder {
            default_route: true,
            ..Recorder::default()
        };
        let warnings = way_out("clear", &zone(true), "r", &off);
        assert_eq!(*off.calls.borrow(), ["ip_forward"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("turned on IPv4 forwarding"),
            "{warnings:?}"
        );

        let on = Recorder {
            forwarding: true,
            default_route: true,
            ..Recorder::default()
        };
        assert!(way_out("clear", &zone(true), "r", &on).is_empty());
    }

    #[test]
    fn nat_without_forwarding_or_a_default_route_is_a_zone_without_a_way_out() {
        let net = Recorder {
            forwarding_fails: true,
            default_route: false,
            ..Recorder::default()
        };
        let warnings = way_out("clear", &zone(true), "r", &net);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("could not be turned on (enabling /proc/sys/net/ipv4/ip_forward)"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("no IPv4 default route"),
            "{warnings:?}"
        );
    }
}
