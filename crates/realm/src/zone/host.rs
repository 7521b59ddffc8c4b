//! The host-wide side of zones. Bridges, nftables tables and sysctls belong to the host, not
//! to a store (`--root` makes another store, not another network stack), so each zone in use
//! on the host has a record under the real `/run/realms/net/ZONE.toml`, whatever `--root` is:
//! the store that owns it, its subnet, NAT, and the port forwards in effect. Only the owner
//! changes the zone's bridge and rules; another store asking for the same zone, or another zone
//! asking for the same subnet, is refused with an error naming the owner.
//!
//! A record is written when a store creates the zone (so that its subnet is reserved before
//! any bridge exists: two stores creating zones at once get two subnets), and is in force while
//! the owning store still lists the zone in its zones.toml. When the store is gone or dropped
//! the zone, the next store to use the zone takes it over.

use realms_sys::IoContext;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use realms_sys::{atomic, cmd::Cmd, lock::StoreLock};
use serde::{Deserialize, Serialize};

use crate::forward::Proto;
use crate::{Error, Result};

/// Where the host-wide records live (never under `--root`).
pub const NET_DIR: &str = "/run/realms/net";

/// A zone as set up on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Claim {
    /// The owning store's directory (`/realms` of its root, canonical).
    pub store: PathBuf,
    /// The zone's subnet.
    pub subnet: String,
    /// Masquerade the zone's traffic.
    pub nat: bool,
    /// The port forwards of the zone's running realms.
    #[serde(default, rename = "forward")]
    pub forwards: Vec<Published>,
}

/// One port forward in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Published {
    /// The realm.
    pub realm: String,
    /// The protocol.
    pub proto: Proto,
    /// The port on the host.
    pub host_port: u16,
    /// The realm's address.
    pub address: Ipv4Addr,
    /// The port in the realm.
    pub port: u16,
}

fn claim_path(zone: &str) -> PathBuf {
    Path::new(NET_DIR).join(format!("{zone}.toml"))
}

/// The host-wide network lock; taken after (never before) a store lock.
pub fn lock(store: &crate::RealmStore) -> Result<StoreLock> {
    fs::create_dir_all(NET_DIR).ctx("creating", NET_DIR)?;
    store.acquire(&Path::new(NET_DIR).join(".lock"))
}

/// The zone's record, if it has one (an unreadable record counts as none).
pub fn read_claim(zone: &str) -> Option<Claim> {
    let text = fs::read_to_string(claim_path(zone)).ok()?;
    match toml::from_str(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("ignoring {}: {}", claim_path(zone).display(), e.message());
            None
        }
    }
}

/// Writes the zone's record (staged, then renamed).
pub fn write_claim(zone: &str, claim: &Claim) -> Result<()> {
    let text = toml::to_string(claim).map_err(|source| Error::Serialize {
        path: claim_path(zone),
        source,
    })?;
    fs::create_dir_all(NET_DIR).ctx("creating", NET_DIR)?;
    atomic::write_file(claim_path(zone), text.as_bytes(), 0o644)?;
    Ok(())
}

/// Removes the zone's record, if any.
pub fn remove_claim(zone: &str) {
    let _ = fs::remove_file(claim_path(zone));
}

/// Every zone with a record in force.
pub fn live_claims() -> Vec<(String, Claim)> {
    let Ok(dir) = fs::read_dir(NET_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Claim)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let zone = name.strip_suffix(".toml")?.to_string();
            let claim = read_claim(&zone)?;
            is_live(&zone, &claim).then_some((zone, claim))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A record is in force while its store still lists the zone.
pub fn is_live(zone: &str, claim: &Claim) -> bool {
    let Ok(text) = fs::read_to_string(claim.store.join("zones.toml")) else {
        return false;
    };
    toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key(zone))
}

/// True when the bridge exists on the host.
pub fn bridge_exists(bridge: &str) -> bool {
    Path::new("/sys/class/net").join(bridge).exists()
}

/// The bridge with exactly one IPv4 address, `host/24`, up. Addresses of an earlier subnet
/// (or of another store, before the record check existed) are removed.
pub fn ensure_bridge(bridge: &str, host: Ipv4Addr) -> Result<()> {
    if !bridge_exists(bridge) {
        Cmd::new("ip")
            .args(["link", "add", bridge, "type", "bridge"])
            .run()?;
    }
    let want = format!("{host}/24");
    let out = Cmd::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", bridge])
        .output_string()?;
    let have: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .collect();
    if have != [want.as_str()] {
        if !have.is_empty() {
            Cmd::new("ip")
                .args(["-4", "addr", "flush", "dev", bridge])
                .run()?;
        }
        Cmd::new("ip")
            .args(["addr", "add", &want, "dev", bridge])
            .run()?;
    }
    Cmd::new("ip").args(["link", "set", bridge, "up"]).run()?;
    Ok(())
}

/// Deletes the bridge if it exists.
pub fn delete_bridge(bridge: &str) -> Result<()> {
    if bridge_exists(bridge) {
        Cmd::new("ip").args(["link", "del", bridge]).run()?;
    }
    Ok(())
}

/// `route_localnet` on the bridge: on while the zone has port forwards (loopback clients are
/// DNATed out of it), off otherwise.
pub fn set_route_localnet(bridge: &str, on: bool) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    Ok(fs::write(&path, if on { "1" } else { "0" }).ctx("writing", path)?)
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// True when IPv4 forwarding is on.
pub fn ip_forward_on() -> bool {
    fs::read_to_string(IP_FORWARD).is_ok_and(|v| v.trim() != "0")
}

/// Turns IPv4 forwarding on, recording that Realms did; `true` if it was off.
pub fn enable_ip_forward() -> Result<bool> {
    super::forwarding::enable()
}

/// True when the host has an IPv4 default route.
pub fn has_default_route() -> bool {
    Cmd::new("ip")
        .args(["-4", "route", "show", "default"])
        .output_string()
        .is_ok_and(|s| !s.trim().is_empty())
}

/// True when a socket of the host listens on (TCP) or is bound to (UDP) the port.
pub fn port_in_use(proto: Proto, port: u16) -> bool {
    let (files, state) = match proto {
        Proto::Tcp => (["/proc/net/tcp", "/proc/net/tcp6"], "0A"),
        Proto::Udp => (["/proc/net/udp", "/proc/net/udp6"], "07"),
    };
    files.iter().any(|f| {
        let text = fs::read_to_string(f).unwrap_or_default();
        sockets_on(&text, state).any(|p| p == port)
    })
}

/// The local ports of the sockets in a `/proc/net/{tcp,udp}` table that are in `state`.
fn sockets_on<'a>(table: &'a str, state: &'a str) -> impl Iterator<Item = u16> + 'a {
    table.lines().skip(1).filter_map(move |l| {
        let mut w = l.split_whitespace();
        let local = w.nth(1)?;
        let st = w.nth(1)?;
        let port = local.rsplit_once(':')?.1;
        (st == state).then(|| u16::from_str_radix(port, 16).ok())?
    })
}

/// The IPv4 networks on host interfaces: (interface, network address, prefix length).
pub fn host_networks() -> Vec<(String, Ipv4Addr, u8)> {
    let out = Cmd::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output_string()
        .unwrap_or_default();
    parse_addresses(&out)
}

fn parse_addresses(out: &str) -> Vec<(String, Ipv4Addr, u8)> {
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let dev = words.nth(1)?.trim_end_matches(':').to_string();
            let cidr = words.skip_while(|w| *w != "inet").nth(1)?;
            let (addr, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
            let addr: Ipv4Addr = addr.parse().ok()?;
            let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
            Some((dev, network(addr, len), len))
        })
        .collect()
}

/// The network address of `addr/len`.
pub fn network(addr: Ipv4Addr, len: u8) -> Ipv4Addr {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Ipv4Addr::from(u32::from(addr) & mask)
}

/// True when `a/alen` and `b/blen` share an address.
pub fn overlaps(a: Ipv4Addr, alen: u8, b: Ipv4Addr, blen: u8) -> bool {
    let len = alen.min(blen);
    network(a, len) == network(b, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_parse() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\ x\n\
                   9: vz-work    inet 10.77.3.1/24 scope global vz-work\n";
        assert_eq!(
            parse_addresses(out),
            [
                ("lo".to_string(), Ipv4Addr::new(127, 0, 0, 0), 8),
                ("eth0".to_string(), Ipv4Addr::new(192, 0, 2, 0), 24),
                ("vz-work".to_string(), Ipv4Addr::new(10, 77, 3, 0), 24),
            ]
        );
    }

    #[test]
    fn listening_sockets_are_found() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n   \
            1: 0100007F:0050 0200007F:9C40 01 00000000:00000000 00:00000000 00000000\n";
        assert_eq!(sockets_on(table, "0A").collect::<Vec<_>>(), [8080]);
    }

    #[test]
    fn overlap_respects_prefixes() {
        let z = Ipv4Addr::new(10, 77, 3, 0);
        assert!(overlaps(z, 24, Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(overlaps(Ipv4Addr::new(10, 77, 3, 128), 25, z, 24));
        assert!(!overlaps(z, 24, Ipv4Addr::new(10, 77, 4, 0), 24));
    }

    #[test]
    fn a_record_is_in_force_while_its_store_lists_the_zone() {
        let dir = tempfile::tempdir().unwrap();
        let claim = Claim {
            store: dir.path().to_path_buf(),
            subnet: "10.77.9.0/24".into(),
            nat: true,
            forwards: Vec::new(),
        };
        assert!(!is_live("work", &claim), "no zones.toml");
        fs::write(
            dir.path().join("zones.toml"),
            "[work]\nsubnet = \"10.77.9.0/24\"\n",
        )
        .unwrap();
        assert!(is_live("work", &claim));
        assert!(!is_live("other", &claim));
        let gone = Claim {
            store: dir.path().join("gone"),
            ..claim
        };
        assert!(!is_live("work", &gone), "the store is gone");
    }

    #[test]
    fn records_round_trip() {
        let c = Claim {
            store: "/x/storage/realms".into(),
            subnet: "10.77.0.0/24".into(),
            nat: true,
            forwards: vec![Published {
                realm: "web".into(),
                proto: Proto::Udp,
                host_port: 5353,
                address: Ipv4Addr::new(10, 77, 0, 2),
                port: 53,
            }],
        };
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Claim>(&text).unwrap(), c, "{text}");
    }
}
