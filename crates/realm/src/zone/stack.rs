//! The seam between deciding what a zone needs from the host's network stack and doing it:
//! the zone code works out the nftables ruleset, `route_localnet` and IPv4 forwarding, and
//! asks a [`NetStack`] to apply them. [`System`] runs `nft` and writes `/proc/sys`; unit tests
//! pass a recorder, so what a zone operation would change is testable without root.

use realms_sys::cmd::Cmd;

use crate::{Error, Result};

/// The writes of the zone code to the host's network stack.
pub trait NetStack {
    /// Replaces the zone's nftables table with `ruleset` (an `nft -f` script, one transaction).
    fn apply_rules(&self, zone: &str, ruleset: String) -> Result<()>;
    /// Deletes the zone's nftables table `table` if it exists.
    fn delete_rules(&self, zone: &str, table: &str) -> Result<()>;
    /// Sets `net.ipv4.conf.BRIDGE.route_localnet`.
    fn set_route_localnet(&self, bridge: &str, on: bool) -> Result<()>;
    /// Turns `net.ipv4.ip_forward` on; `true` if it was off.
    fn enable_ip_forward(&self) -> Result<bool>;
    /// True when the host has an IPv4 default route.
    fn has_default_route(&self) -> bool;
}

/// The host's own network stack: `nft` and `/proc/sys`.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl NetStack for System {
    fn apply_rules(&self, zone: &str, ruleset: String) -> Result<()> {
        Cmd::new("nft")
            .arg("-f")
            .arg("-")
            .stdin_bytes(ruleset)
            .run()
            .map_err(|source| Error::NftApply {
                zone: zone.to_string(),
                source: Box::new(source),
            })
    }

    fn delete_rules(&self, zone: &str, table: &str) -> Result<()> {
        let script = format!("table inet {table}\ndelete table inet {table}\n");
        Cmd::new("nft")
            .arg("-f")
            .arg("-")
            .stdin_bytes(script)
            .run()
            .map_err(|source| Error::NftDelete {
                zone: zone.to_string(),
                table: table.to_string(),
                source: Box::new(source),
            })
    }

    fn set_route_localnet(&self, bridge: &str, on: bool) -> Result<()> {
        super::host::set_route_localnet(bridge, on)
    }

    fn enable_ip_forward(&self) -> Result<bool> {
        super::host::enable_ip_forward()
    }

    fn has_default_route(&self) -> bool {
        super::host::has_default_route()
    }
}

/// What a zone operation asked of the network stack, for unit tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Each call, in order, as a line (`apply ZONE`, `route_localnet BRIDGE on`, ...).
    pub calls: std::cell::RefCell<Vec<String>>,
    /// The rulesets applied.
    pub rulesets: std::cell::RefCell<Vec<String>>,
    /// IPv4 forwarding is on already.
    pub forwarding: bool,
    /// Turning forwarding on fails (as it does without root).
    pub forwarding_fails: bool,
    /// The host has a default route.
    pub default_route: bool,
}

#[cfg(test)]
impl NetStack for Recorder {
    fn apply_rules(&self, zone: &str, ruleset: String) -> Result<()> {
        self.calls.borrow_mut().push(format!("apply {zone}"));
        self.rulesets.borrow_mut().push(ruleset);
        Ok(())
    }

    fn delete_rules(&self, zone: &str, table: &str) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(format!("delete {zone} {table}"));
        Ok(())
    }

    fn set_route_localnet(&self, bridge: &str, on: bool) -> Result<()> {
        let on = if on { "on" } else { "off" };
        self.calls
            .borrow_mut()
            .push(format!("route_localnet {bridge} {on}"));
        Ok(())
    }

    fn enable_ip_forward(&self) -> Result<bool> {
        self.calls.borrow_mut().push("ip_forward".into());
        if self.forwarding_fails {
            return Err(realms_sys::Error::io(
                "enabling",
                "/proc/sys/net/ipv4/ip_forward",
                std::io::Error::from_raw_os_error(13),
            )
            .into());
        }
        Ok(!self.forwarding)
    }

    fn has_default_route(&self) -> bool {
        self.default_route
    }
}
