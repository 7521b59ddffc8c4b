//! Network zones: one bridge `vz-ZONE` per zone on the host with a /24 of its own, static
//! addresses for the realms in it (no DHCP daemon is needed), nftables rules that keep zones
//! apart, outbound NAT (on unless a user turns it off), and port forwards into realms.
//!
//! A store's zones live in `/realms/zones.toml`:
//! ```toml
//! [clear]
//! subnet = "10.77.0.0/24"
//! nat = true
//! ```
//! What a zone is on the host (its bridge, its nftables table, the forwards in effect) is
//! host-wide state with one owner store per zone, recorded under `/run/realms/net` ([`host`]).
//!
//! Lifetimes: a realm's address lease and port forwards last while it runs (stop and remove
//! release them and rewrite the zone's rules). A zone, its bridge and its rules stay when its
//! last realm goes, so its settings are kept, until `realms zone remove ZONE`, which refuses
//! while any realm of the store is configured for the zone.

mod attach;
mod forwarding;
pub mod host;
pub mod nft;
pub mod stack;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use realms_sys::atomic;
use serde::{Deserialize, Serialize};

pub use crate::forward::{self as port, PortForward, Proto};
pub use crate::names::{BadSubnet, bridge_name, parse_subnet, validate_zone};
pub use attach::{Attachment, attach, configure_host0, release};

use crate::store::RealmStore;
use crate::value::ValueProblem;
use crate::{Error, Result};

/// One zone's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Zone {
    /// The zone's IPv4 network, `A.B.C.0/24`; the host is `.1` on the bridge.
    pub subnet: String,
    /// Masquerade the zone's traffic to the outside: on unless a user turns it off, as users
    /// of Incus' managed bridges and of Citadel's zone expect (`apt-get` works in a new realm).
    #[serde(default = "nat_default")]
    pub nat: bool,
}

fn nat_default() -> bool {
    true
}

fn checked(zone: &str) -> Result<()> {
    validate_zone(zone).map_err(|rule| Error::InvalidZoneName {
        zone: zone.to_string(),
        rule,
    })
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
        Err(e) => return Err(realms_sys::Error::io("reading", &path, e).into()),
    };
    let zones: BTreeMap<String, Zone> =
        toml::from_str(&text).map_err(|e| crate::error::bad_file(&path, &text, &e))?;
    for (name, zone) in &zones {
        checked(name).map_err(|e| Error::BadZoneEntry {
            path: path.clone(),
            problem: Box::new(e),
        })?;
        parse_subnet(&zone.subnet).map_err(|problem| Error::BadZoneEntry {
            path: path.clone(),
            problem: Box::new(Error::InvalidSubnet {
                zone: name.clone(),
                problem,
            }),
        })?;
    }
    Ok(zones)
}

fn save(store: &RealmStore, zones: &BTreeMap<String, Zone>) -> Result<()> {
    let text = toml::to_string(zones).map_err(|source| Error::Serialize {
        path: zones_path(store),
        source,
    })?;
    atomic::write_file(zones_path(store), text.as_bytes(), 0o644)?;
    Ok(())
}

/// The host's address on the zone's bridge, `.1`.
pub fn host_address(zone: &Zone) -> Ipv4Addr {
    let o = parse_subnet(&zone.subnet)
        .map(|a| a.octets())
        .unwrap_or([10, 77, 0, 0]);
    Ipv4Addr::new(o[0], o[1], o[2], 1)
}

/// The identity of a store in host-wide records: its directory, canonical.
fn store_id(store: &RealmStore) -> PathBuf {
    store
        .dir()
        .canonicalize()
        .unwrap_or_else(|_| store.dir().to_path_buf())
}

/// A free `10.77.N.0/24`: not another zone's of this store, not reserved on the host for
/// another zone, not overlapping a network on a host interface. The search starts at an N
/// drawn from the zone's name and store (then goes up, wrapping), so that tools which take
/// subnets without asking (or older realms) rarely pick the same one at the same moment.
fn free_subnet(zones: &BTreeMap<String, Zone>, seed: &str) -> Option<Ipv4Addr> {
    let mut taken: Vec<Ipv4Addr> = zones
        .values()
        .filter_map(|z| parse_subnet(&z.subnet).ok())
        .collect();
    taken.extend(
        host::live_claims()
            .iter()
            .filter_map(|(_, c)| parse_subnet(&c.subnet).ok()),
    );
    let host_nets = host::host_networks();
    subnet_candidates(seed).find(|net| {
        !taken.contains(net)
            && !host_nets
                .iter()
                .any(|(_, h, len)| host::overlaps(*net, 24, *h, *len))
    })
}

/// Every `10.77.N.0/24`, starting from an N that is a (stable, FNV-1a) hash of `seed`.
fn subnet_candidates(seed: &str) -> impl Iterator<Item = Ipv4Addr> {
    let hash = seed.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let start = (hash % 256) as u8;
    (0..=255u8).map(move |i| Ipv4Addr::new(10, 77, start.wrapping_add(i), 0))
}

/// The zone's settings, creating it (with a free subnet, NAT on) on first use and reserving
/// its subnet on the host. Call with the store lock and the host network lock held.
fn ensure_locked(store: &RealmStore, zone: &str) -> Result<Zone> {
    let mut zones = load(store)?;
    if let Some(z) = zones.get(zone) {
        return Ok(z.clone());
    }
    let seed = format!("{}\0{zone}", store_id(store).display());
    let subnet = free_subnet(&zones, &seed).ok_or_else(|| Error::NoFreeSubnet {
        zone: zone.to_string(),
    })?;
    let z = Zone {
        subnet: format!("{subnet}/24"),
        nat: true,
    };
    zones.insert(zone.to_string(), z.clone());
    save(store, &zones)?;
    let owned_elsewhere = host::read_claim(zone).is_some_and(|c| host::is_live(zone, &c));
    if !owned_elsewhere {
        host::write_claim(
            zone,
            &host::Claim {
                store: store_id(store),
                subnet: z.subnet.clone(),
                nat: z.nat,
                forwards: Vec::new(),
            },
        )?;
    }
    Ok(z)
}

/// The realms of the store configured for the zone, and whether each runs.
pub fn realms_in_zone(store: &RealmStore, zone: &str) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for name in store.names()? {
        // A realm whose config does not parse is in no zone anyone can tell.
        let Ok(config) = store.config(&name) else {
            continue;
        };
        if config.use_network() && config.network_zone() == zone {
            let running = crate::runtime::is_running(store, &name);
            out.push((name, running));
        }
    }
    Ok(out)
}

fn join_names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `realms zone ZONE nat on|off` and `realms zone ZONE subnet A.B.C.0/24`: sets one key of a
/// zone (creating it), and rewrites its rules on the host if it is set up there.
pub fn set(store: &RealmStore, zone: &str, key: &str, value: &str) -> Result<Zone> {
    checked(zone)?;
    // The key and value first: a refused one must not have created the zone.
    let bad = |problem: ValueProblem| Error::BadValue {
        key: key.into(),
        value: value.into(),
        problem,
    };
    let nat = match key {
        "nat" => Some(crate::config::parse_bool(value).ok_or_else(|| bad(ValueProblem::NotOnOff))?),
        "subnet" => {
            parse_subnet(value).map_err(|m| bad(ValueProblem::Subnet(m)))?;
            None
        }
        _ => {
            return Err(Error::UnknownKey {
                key: key.into(),
                known: "nat, subnet".into(),
            });
        }
    };
    let _lock = store.lock()?;
    let _net = host::lock(store)?;
    ensure_locked(store, zone)?;
    let mut zones = load(store)?;
    let mut z = zones[zone].clone();
    match nat {
        Some(nat) => z.nat = nat,
        None => {
            if value != z.subnet {
                subnet_change_allowed(store, &zones, zone, value)?;
            }
            z.subnet = value.to_string();
        }
    }
    zones.insert(zone.to_string(), z.clone());
    save(store, &zones)?;
    attach::resync_locked(store, zone, &z)?;
    Ok(z)
}

fn subnet_change_allowed(
    store: &RealmStore,
    zones: &BTreeMap<String, Zone>,
    zone: &str,
    subnet: &str,
) -> Result<()> {
    let running: Vec<String> = realms_in_zone(store, zone)?
        .into_iter()
        .filter_map(|(n, running)| running.then_some(n))
        .collect();
    if !running.is_empty() {
        return Err(Error::ZoneBusy {
            zone: zone.to_string(),
            realms: join_names(&running),
        });
    }
    if let Some((other, _)) = zones
        .iter()
        .find(|(n, z)| n.as_str() != zone && z.subnet == subnet)
    {
        return Err(Error::SubnetOfZone {
            zone: zone.to_string(),
            subnet: subnet.to_string(),
            other: other.clone(),
        });
    }
    attach::check_subnet_free(zone, subnet, &store_id(store))
}

/// `realms zone remove ZONE`: its bridge, its nftables table, its host record, its leases and
/// its entry in zones.toml. Refused while a realm of the store is configured for it.
pub fn remove(store: &RealmStore, zone: &str) -> Result<()> {
    checked(zone)?;
    let _lock = store.lock()?;
    let mut zones = load(store)?;
    let users = realms_in_zone(store, zone)?;
    if !users.is_empty() {
        let names: Vec<String> = users
            .iter()
            .map(|(n, running)| {
                if *running {
                    format!("{n} (running)")
                } else {
                    n.clone()
                }
            })
            .collect();
        return Err(Error::ZoneInUse {
            zone: zone.to_string(),
            realms: names.join(", "),
        });
    }
    let known = zones.contains_key(zone);
    let _net = host::lock(store)?;
    attach::remove_from_host_locked(store, zone, known)?;
    let leases = store.run_dir().join("leases").join(zone);
    let _ = fs::remove_dir_all(leases);
    if zones.remove(zone).is_some() {
        save(store, &zones)?;
    }
    Ok(())
}

/// Takes zone `zone`'s bridge, nftables table and host record away (for `realms doctor --fix`
/// when no realm is in it); its settings stay in zones.toml.
pub(crate) fn remove_from_host(store: &RealmStore, zone: &str) -> Result<()> {
    checked(zone)?;
    let _lock = store.lock()?;
    let _net = host::lock(store)?;
    attach::remove_from_host_locked(store, zone, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_the_zones_of_a_new_store_creates_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        assert!(load(&store).unwrap().is_empty());
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            0,
            "reading wrote"
        );
    }

    #[test]
    fn zone_set_with_a_bad_value_has_already_created_the_zone() {
        let root = tempfile::tempdir().unwrap();
        let store = RealmStore::open(root.path()).unwrap();
        for (key, value) in [
            ("nat", "maybe"),
            ("subnet", "10.77.3.7/16"),
            ("colour", "blue"),
        ] {
            let e = set(&store, "storebadval", key, value)
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) || e.contains(value), "{e}");
            assert!(load(&store).unwrap().is_empty(), "{key} {value}");
            assert!(!zones_path(&store).exists());
        }
    }

    #[test]
    fn zone_names_fit_interface_names() {
        assert!(validate_zone("clear").is_ok());
        assert!(validate_zone("abcdefghijkl").is_ok());
        assert!(validate_zone("abcdefghijklm").is_err());
        assert!(validate_zone("Work").is_err());
        assert!(validate_zone("remove").is_err());
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

    #[test]
    fn subnet_search_covers_every_slash_24_once_from_a_stable_start() {
        let all: std::collections::BTreeSet<Ipv4Addr> = subnet_candidates("x").collect();
        assert_eq!(all.len(), 256);
        assert!(
            all.iter()
                .all(|a| a.octets()[..2] == [10, 77] && a.octets()[3] == 0)
        );
        let first = |s: &str| subnet_candidates(s).next().unwrap();
        assert_eq!(first("/realms\0clear"), first("/realms\0clear"));
        assert_ne!(first("/realms\0clear"), first("/realms\0work"));
    }

    #[test]
    fn nat_is_on_unless_the_file_says_otherwise() {
        let zones: BTreeMap<String, Zone> = toml::from_str(
            "[a]\nsubnet = \"10.77.0.0/24\"\n[b]\nsubnet = \"10.77.1.0/24\"\nnat = false\n",
        )
        .unwrap();
        assert!(zones["a"].nat);
        assert!(!zones["b"].nat);
    }
}
