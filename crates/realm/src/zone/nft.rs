//! The nftables rules of one zone: a table `inet realms-zone-ZONE` of its own, generated whole
//! from the zone's host-wide record and replaced in one `nft -f` transaction, so that applying
//! it any number of times leaves exactly one copy of each rule.
//!
//! A table per zone (rather than one shared table with a map of zones) gives every zone one
//! owner: a zone's rules are written, replaced and deleted without reading or locking anyone
//! else's, and nothing of one zone survives its removal. Base chains of several tables on one
//! hook compose: a packet any zone's table drops is dropped.
//!
//! What the table says:
//! - **forward**: a zone's realms reach each other and nothing in another zone (`vz-*`); new
//!   connections *into* the zone are dropped unless they are replies or a port forward; the
//!   zone reaches the outside only with NAT on.
//! - **postrouting**: masquerade of the zone's subnet towards the outside (NAT on), and of
//!   loopback clients of a port forward (their 127.0.0.1 source means nothing to the realm).
//! - **prerouting/output**: port forwards, DNAT of `fib daddr type local` (every address of the
//!   host: the host's own address, a bridge address, and 127.0.0.1 for local clients) to the
//!   realm's address. nspawn's own `--port` is not used: it refuses loopback, and it keeps
//!   rules of its own that realms could not see or check. Zones stay apart here too: a realm
//!   of another zone cannot use a forward (its own zone's table drops what it sends towards
//!   `vz-*`), and a realm of the same zone going through the host's address is not hairpinned.
//! - **guard** (raw prerouting): nothing arriving from the zone may be addressed to 127.0.0.0/8.
//!   DNAT of loopback clients needs `route_localnet` on the zone's bridge, which would otherwise
//!   let a realm send to the host's loopback-only services.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use realms_sys::cmd::Cmd;

use super::host::Claim;
use super::{bridge_name, parse_subnet};

/// The zone's table (family `inet`).
pub fn table_name(zone: &str) -> String {
    format!("realms-zone-{zone}")
}

/// The script that replaces the zone's table with the rules of `claim`, as one transaction.
pub fn ruleset(zone: &str, claim: &Claim) -> String {
    let table = table_name(zone);
    let br = bridge_name(zone);
    let subnet = parse_subnet(&claim.subnet).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut s = String::new();
    // Creating the table first makes the delete valid when it does not exist yet.
    let _ = writeln!(s, "table inet {table}");
    let _ = writeln!(s, "delete table inet {table}");
    let _ = writeln!(s, "table inet {table} {{");
    let _ = writeln!(
        s,
        "  chain guard {{\n    type filter hook prerouting priority raw; policy accept;\n    \
         iifname \"{br}\" ip daddr 127.0.0.0/8 drop\n  }}"
    );
    let outside = if claim.nat { "accept" } else { "drop" };
    let _ = writeln!(
        s,
        "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    \
         iifname \"{br}\" oifname \"{br}\" accept\n    \
         iifname \"{br}\" oifname \"vz-*\" drop\n    \
         oifname \"{br}\" ct state established,related accept\n    \
         oifname \"{br}\" ct status dnat accept\n    \
         oifname \"{br}\" drop\n    \
         iifname \"{br}\" {outside}\n  }}"
    );
    if !claim.forwards.is_empty() {
        let mut dnat = String::new();
        for f in &claim.forwards {
            let _ = writeln!(
                dnat,
                "    meta nfproto ipv4 fib daddr type local {proto} dport {hp} dnat ip to {addr}:{rp} \
                 comment \"realm {realm}\"",
                proto = f.proto.as_str(),
                hp = f.host_port,
                addr = f.address,
                rp = f.port,
                realm = f.realm,
            );
        }
        let _ = write!(
            s,
            "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n\
             {dnat}  }}\n  \
             chain output {{\n    type nat hook output priority -100; policy accept;\n\
             {dnat}  }}\n"
        );
    }
    if claim.nat || !claim.forwards.is_empty() {
        let _ = writeln!(
            s,
            "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;"
        );
        if !claim.forwards.is_empty() {
            let _ = writeln!(s, "    oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade");
        }
        if claim.nat {
            let _ = writeln!(s, "    ip saddr {subnet}/24 oifname != \"vz-*\" masquerade");
        }
        let _ = writeln!(s, "  }}");
    }
    let _ = writeln!(s, "}}");
    s
}

/// Takes the zone's bridge out of the shared table `inet realms` of earlier versions of realms
/// (maps `zones` and `nat_zones`), whose rules would otherwise still apply to it. Only the
/// zone's own elements go: that table may still serve zones of older realms on this host.
/// Best effort, run once when a store first records the zone.
pub fn forget_legacy(zone: &str) {
    let bridge = bridge_name(zone);
    for map in ["zones", "nat_zones"] {
        let script = format!("delete element inet realms {map} {{ \"{bridge}\" }}\n");
        if Cmd::new("nft")
            .arg("-f")
            .arg("-")
            .stdin_bytes(script)
            .run()
            .is_ok()
        {
            tracing::info!(
                "zone '{zone}': removed {bridge} from the old table inet realms ({map})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::host::Published;
    use super::*;
    use crate::forward::Proto;

    fn claim(nat: bool, forwards: Vec<Published>) -> Claim {
        Claim {
            store: "/realms".into(),
            subnet: "10.77.3.0/24".into(),
            nat,
            forwards,
        }
    }

    fn web() -> Published {
        Published {
            realm: "web".into(),
            proto: Proto::Tcp,
            host_port: 8080,
            address: Ipv4Addr::new(10, 77, 3, 2),
            port: 80,
        }
    }

    #[test]
    fn the_table_is_replaced_whole() {
        let s = ruleset("work", &claim(true, vec![]));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "table inet realms-zone-work");
        assert_eq!(lines[1], "delete table inet realms-zone-work");
        assert_eq!(lines[2], "table inet realms-zone-work {");
        // Nothing is added to a table outside the definition: no `add rule`, no `add element`.
        assert!(!s.contains("add "), "{s}");
        assert_eq!(s, ruleset("work", &claim(true, vec![])), "a pure function");
    }

    #[test]
    fn zones_are_kept_apart_and_closed_to_new_inbound_connections() {
        let s = ruleset("work", &claim(false, vec![]));
        for rule in [
            "iifname \"vz-work\" oifname \"vz-*\" drop",
            "oifname \"vz-work\" ct state established,related accept",
            "oifname \"vz-work\" drop",
            "iifname \"vz-work\" ip daddr 127.0.0.0/8 drop",
        ] {
            assert!(s.contains(rule), "missing {rule} in\n{s}");
        }
    }

    #[test]
    fn nat_decides_the_way_out() {
        let off = ruleset("work", &claim(false, vec![]));
        assert!(off.contains("iifname \"vz-work\" drop\n"), "{off}");
        assert!(!off.contains("masquerade"), "{off}");
        assert!(!off.contains("type nat"), "{off}");
        let on = ruleset("work", &claim(true, vec![]));
        assert!(on.contains("iifname \"vz-work\" accept\n"), "{on}");
        assert!(
            on.contains("ip saddr 10.77.3.0/24 oifname != \"vz-*\" masquerade"),
            "{on}"
        );
    }

    #[test]
    fn port_forwards_reach_the_realm_from_every_host_address() {
        let s = ruleset("work", &claim(false, vec![web()]));
        let dnat = "meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.77.3.2:80 \
                    comment \"realm web\"";
        assert_eq!(s.matches(dnat).count(), 2, "prerouting and output:\n{s}");
        assert!(s.contains("type nat hook output priority -100"), "{s}");
        assert!(
            s.contains("oifname \"vz-work\" ip saddr 127.0.0.0/8 masquerade"),
            "{s}"
        );
        assert!(
            s.contains("oifname \"vz-work\" ct status dnat accept"),
            "{s}"
        );
        // NAT stays off: no masquerade of the subnet.
        assert!(!s.contains("ip saddr 10.77.3.0/24"), "{s}");
    }
}
