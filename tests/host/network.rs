//! Network zones on the host tier, for real: bridges, the zones' nftables tables, NAT, port
//! forwards and the host-wide ownership of zones. Traffic never leaves this machine: "the
//! outside" is a network namespace of the test's own behind a veth pair, and clients and
//! servers talk only to addresses of realms, of bridges and namespaces the tests create, and
//! to 127.0.0.1. Assertions look only at the tests' own zones (other test runs may use the
//! host's nftables at the same time).

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use realms_tests::realms::{TestRoot, name};
use realms_tests::run::{output, run};

/// The zone's nftables table as `nft` lists it (empty when it does not exist).
fn table(zone: &str) -> String {
    let out =
        output(Command::new("nft").args(["list", "table", "inet", &format!("realms-zone-{zone}")]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many rules of the whole ruleset mention the zone's bridge.
fn rules_of(zone: &str) -> usize {
    let out = output(Command::new("nft").args(["list", "ruleset"]));
    let bridge = format!("\"vz-{zone}\"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&bridge))
        .count()
}

/// The IPv4 addresses (with prefix) on an interface.
fn addresses(dev: &str) -> Vec<String> {
    let out = output(Command::new("ip").args(["-o", "-4", "addr", "show", "dev", dev]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .map(str::to_string)
        .collect()
}

fn bridge_exists(zone: &str) -> bool {
    Path::new("/sys/class/net")
        .join(format!("vz-{zone}"))
        .exists()
}

/// The realm's address on host0.
fn realm_addr(t: &TestRoot, realm: &str) -> Ipv4Addr {
    let out = t.ok(&[
        "run", realm, "--", "ip", "-o", "-4", "addr", "show", "dev", "host0",
    ]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no address on host0: {out}"))
}

/// `realms zone ZONE --json`.
fn zone_json(t: &TestRoot, zone: &str) -> serde_json::Value {
    let out = t.ok(&["--json", "zone", zone]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[zone].clone()
}

/// An HTTP/1.0 GET; the body, or `None` when nothing answered within the timeout.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The same, retried until an answer comes or `deadline` passes (servers take a moment).
fn http_get_within(addr: SocketAddr, path: &str, deadline: Duration) -> Option<String> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(body) = http_get(addr, path, Duration::from_secs(2)) {
            return Some(body);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A host port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn busybox() -> String {
    let out = output(Command::new("sh").args(["-c", "command -v busybox"]));
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "busybox is missing: install busybox-static"
    );
    fs::canonicalize(&path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// "The outside" of a zone: a network namespace behind a veth pair, with an HTTP server
/// (busybox httpd) serving one file. Its /30 is routed nowhere else, so realms can reach it
/// only through the host, and replies find their way back only when NAT rewrote the source.
struct Outside {
    ns: String,
    host_addr: Ipv4Addr,
    ns_addr: Ipv4Addr,
    server: Option<Child>,
    www: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        assert!(n < 64, "too many outside namespaces in one run");
        let pid = std::process::id();
        let (b, c) = ((pid % 200) as u8 + 20, (n * 4) as u8);
        let host_addr = Ipv4Addr::new(10, 98, b, c + 1);
        let ns_addr = Ipv4Addr::new(10, 98, b, c + 2);
        let ns = name("ns");
        let (vh, vn) = (format!("{ns}h"), format!("{ns}n"));
        run(Command::new("ip").args(["netns", "add", &ns]));
        let o = Outside {
            ns: ns.clone(),
            host_addr,
            ns_addr,
            server: None,
            www: tempfile::tempdir().unwrap(),
        };
        run(Command::new("ip").args(["link", "add", &vh, "type", "veth", "peer", "name", &vn]));
        run(Command::new("ip").args(["link", "set", &vn, "netns", &ns]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_addr}/30"), "dev", &vh]));
        run(Command::new("ip").args(["link", "set", &vh, "up"]));
        o.exec(&["ip", "addr", "add", &format!("{ns_addr}/30"), "dev", &vn]);
        o.exec(&["ip", "link", "set", &vn, "up"]);
        o.exec(&["ip", "link", "set", "lo", "up"]);
        o
    }

    fn exec(&self, argv: &[&str]) -> String {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(argv));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Serves `/token` with `token` on port 8000 of the namespace's address.
    fn serve(&mut self, token: &str) {
        fs::write(self.www.path().join("token"), token).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, &busybox(), "httpd", "-f", "-p"])
            .arg(format!("{}:8000", self.ns_addr))
            .arg("-h")
            .arg(self.www.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        // Ready when the namespace itself gets an answer.
        let probe = format!(
            "for i in $(seq 50); do (exec 3<>/dev/tcp/{}/8000) 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
            self.ns_addr
        );
        self.exec(&["bash", "-c", &probe]);
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The veth pair goes with the namespace.
        let _ = output(Command::new("ip").args(["netns", "del", &self.ns]));
    }
}

/// From inside the realm, fetch `http://ADDR:8000/token` (bash's /dev/tcp: the base image has
/// no HTTP client); the body, or `None`.
fn fetch_from_realm(t: &TestRoot, realm: &str, addr: Ipv4Addr) -> Option<String> {
    let script = format!(
        "exec 3<>/dev/tcp/{addr}/8000 && printf 'GET /token HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
    );
    let out = t.realms(&["run", realm, "--", "timeout", "5", "bash", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status
        .success()
        .then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))
        .flatten()
}

#[test]
fn new_zones_have_nat_so_realms_reach_the_outside() {
    let t = TestRoot::btrfs();
    let mut outside = Outside::new();
    let token = name("tok");
    outside.serve(&token);
    let r = name("o");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    assert_eq!(
        zone_json(&t, t.zone())["nat"],
        true,
        "new zones have NAT on"
    );
    assert_eq!(
        fetch_from_realm(&t, &r, outside.ns_addr).as_deref(),
        Some(token.as_str()),
        "a realm of a new zone reaches a server outside the host's zones\n{}",
        table(t.zone())
    );
}

#[test]
fn nat_off_removes_the_zone_from_nat_zones() {
    let t = TestRoot::btrfs();
    let mut outside = Outside::new();
    let token = name("tok");
    outside.serve(&token);
    let r = name("o");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    let zone = t.zone().to_string();
    assert!(table(&zone).contains("masquerade"), "{}", table(&zone));
    assert!(fetch_from_realm(&t, &r, outside.ns_addr).is_some());

    t.ok(&["zone", &zone, "nat", "off"]);
    let rules = table(&zone);
    assert!(
        !rules.contains("masquerade"),
        "NAT off leaves no masquerade:\n{rules}"
    );
    assert_eq!(zone_json(&t, &zone)["nat"], false);
    assert_eq!(
        fetch_from_realm(&t, &r, outside.ns_addr),
        None,
        "with NAT off the zone does not reach the outside\n{rules}"
    );
    // And on again, without a restart.
    t.ok(&["zone", &zone, "nat", "on"]);
    assert_eq!(
        fetch_from_realm(&t, &r, outside.ns_addr).as_deref(),
        Some(token.as_str())
    );
}

#[test]
fn restarting_realms_does_not_append_nft_rules() {
    let t = TestRoot::btrfs();
    let (a, b) = (name("a"), name("b"));
    for r in [&a, &b] {
        t.ok(&["new", r]);
        t.ok(&["start", r]);
    }
    let zone = t.zone().to_string();
    let (before, count) = (table(&zone), rules_of(&zone));
    assert!(count > 0, "the zone has rules:\n{before}");
    for _ in 0..3 {
        t.ok(&["restart", &a]);
        t.ok(&["stop", &b]);
        t.ok(&["start", &b]);
        t.ok(&["zone", &zone, "nat", "on"]);
    }
    assert_eq!(
        table(&zone),
        before,
        "the zone's table is the same after restarts"
    );
    assert_eq!(rules_of(&zone), count, "no rule was appended anywhere");
}

#[test]
fn two_stores_cannot_share_a_bridge_with_different_subnets() {
    let (one, two) = (TestRoot::btrfs(), TestRoot::btrfs());
    let zone = one.zone().to_string();
    let (a, b) = (name("a"), name("b"));
    one.ok(&["new", &a]);
    one.ok(&["start", &a]);
    let subnet = zone_json(&one, &zone)["subnet"]
        .as_str()
        .unwrap()
        .to_string();

    two.ok(&["new", &b]);
    two.ok(&["config", &b, "network-zone", &zone]);
    let err = two.fails(&["start", &b]);
    let owner = one.realms_dir().canonicalize().unwrap();
    assert!(
        err.contains(&format!("vz-{zone}")) && err.contains(&owner.display().to_string()),
        "the error names the bridge and the store that owns it: {err}"
    );
    assert!(err.contains("network-zone"), "and what to do: {err}");
    // The second store picked a subnet of its own, and the bridge kept only the first.
    let other = zone_json(&two, &zone)["subnet"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        other, subnet,
        "a new zone does not take a subnet in use on the host"
    );
    let host = subnet.replace(".0/24", ".1/24");
    assert_eq!(addresses(&format!("vz-{zone}")), [host]);
    assert!(one.ok(&["list"]).contains("running"));

    // Once the first store lets go of the zone, the second may have it.
    one.ok(&["remove", "--stop", &a]);
    one.ok(&["zone", "remove", &zone]);
    two.ok(&["start", &b]);
    let host = other.replace(".0/24", ".1/24");
    assert_eq!(addresses(&format!("vz-{zone}")), [host]);
}

#[test]
fn two_zones_cannot_share_a_subnet() {
    let (one, two) = (TestRoot::btrfs(), TestRoot::btrfs());
    let (a, b) = (name("a"), name("b"));
    one.ok(&["new", &a]);
    one.ok(&["start", &a]);
    let subnet = zone_json(&one, one.zone())["subnet"]
        .as_str()
        .unwrap()
        .to_string();
    // Asked for by another store's zone...
    two.ok(&["new", &b]);
    let err = two.fails(&["zone", two.zone(), "subnet", &subnet]);
    let hint = format!("realms zone {} subnet A.B.C.0/24", two.zone());
    assert!(
        err.contains(&subnet) && err.contains(one.zone()) && err.contains(&hint),
        "{err}"
    );
    // ... or written into its zones.toml by hand: refused at start, before any bridge.
    let zones = two.realms_dir().join("zones.toml");
    fs::write(
        &zones,
        format!("[{}]\nsubnet = \"{subnet}\"\nnat = true\n", two.zone()),
    )
    .unwrap();
    let err = two.fails(&["start", &b]);
    assert!(err.contains(&subnet) && err.contains(one.zone()), "{err}");
    assert!(
        !bridge_exists(two.zone()),
        "nothing was set up for the refused zone"
    );
    // Within one store, too.
    let err = one.fails(&["zone", &name("y"), "subnet", &subnet]);
    assert!(err.contains(&subnet) && err.contains(one.zone()), "{err}");
}

#[test]
fn zone_remove_refuses_zones_in_use() {
    let t = TestRoot::btrfs();
    let (a, b) = (name("a"), name("b"));
    let zone = t.zone().to_string();
    t.ok(&["new", &a]);
    t.ok(&["new", &b]);
    t.ok(&["start", &a]);
    let err = t.fails(&["zone", "remove", &zone]);
    assert!(
        err.contains(&format!("{a} (running)")) && err.contains(&b),
        "the error names the realms: {err}"
    );
    t.ok(&["stop", &a]);
    let err = t.fails(&["zone", "remove", &zone]);
    assert!(err.contains(&a) && err.contains("network-zone"), "{err}");
    assert!(bridge_exists(&zone) && !table(&zone).is_empty());

    let other = name("q");
    t.ok(&["config", &a, "network-zone", &other]);
    t.ok(&["config", &b, "use-network", "false"]);
    let out = t.ok(&["--json", "zone", "remove", &zone]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["action"], "removed");
    assert!(!bridge_exists(&zone), "the bridge is gone");
    assert!(table(&zone).is_empty(), "the table is gone");
    assert!(!Path::new(&format!("/run/realms/net/{zone}.toml")).exists());
    assert!(!t.ok(&["zone"]).contains(&zone));
    let err = t.fails(&["zone", "remove", &zone]);
    assert!(err.contains("no such zone"), "{err}");
}

#[test]
fn start_warns_when_the_zone_has_no_way_out() {
    let t = TestRoot::btrfs();
    let r = name("w");
    let zone = t.zone().to_string();
    t.ok(&["new", &r]);
    t.ok(&["zone", &zone, "nat", "off"]);
    let out = t.realms(&["start", &r]);
    assert!(out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("no way out") && stderr.contains(&format!("realms zone {zone} nat on")),
        "stderr says it and how to fix it: {stderr}"
    );
    assert!(
        !stdout.contains("no way out"),
        "warnings are not results: {stdout}"
    );
    // Quiet is quiet.
    t.ok(&["stop", &r]);
    let out = t.realms(&["-q", "start", &r]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With NAT on there is nothing to say about it.
    t.ok(&["stop", &r]);
    t.ok(&["zone", &zone, "nat", "on"]);
    let out = t.realms(&["start", &r]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("no way out"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zone_realms_resolve_with_the_hosts_resolvers() {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let reachable = host
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .any(|a| !a.trim().starts_with("127.") && a.trim() != "::1");
    assert!(
        reachable,
        "this test wants a host whose /etc/resolv.conf names a resolver off loopback:\n{host}"
    );
    let t = TestRoot::btrfs();
    let r = name("d");
    t.ok(&["new", &r]);
    t.ok(&[
        "run",
        &r,
        "--",
        "sh",
        "-c",
        "echo 'nameserver 203.0.113.1' > /etc/resolv.conf",
    ]);
    t.ok(&["restart", &r]);
    assert_eq!(t.ok(&["run", &r, "--", "cat", "/etc/resolv.conf"]), host);
}

/// Binds the host's busybox into the realm and runs `busybox httpd` there as a transient
/// service on port 80, serving `/token`.
fn serve_in_realm(t: &TestRoot, realm: &str, token: &str) {
    t.ok(&[
        "run",
        realm,
        "--",
        "sh",
        "-c",
        &format!(
            "mkdir -p /srv/www && echo {token} > /srv/www/token && \
             systemd-run --unit=realms-test-web /opt/busybox httpd -f -p 80 -h /srv/www"
        ),
    ]);
}

/// The host's first global IPv4 address outside the zones and test namespaces.
fn host_address() -> Ipv4Addr {
    let out = output(Command::new("ip").args(["-o", "-4", "addr", "show", "scope", "global"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let dev = l.split_whitespace().nth(1).unwrap_or("");
            !dev.starts_with("vz-") && !dev.starts_with("ns") && !dev.starts_with("vb-")
        })
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .next()
        .expect("the host has a global IPv4 address")
}

#[test]
fn port_forward_reaches_a_server_in_the_realm() {
    let t = TestRoot::btrfs();
    let outside = Outside::new();
    let r = name("p");
    let port = free_port();
    t.ok(&["new", &r]);
    t.ok(&[
        "config",
        &r,
        "extra-bindmounts-ro",
        &format!("{}:/opt/busybox", busybox()),
    ]);
    t.ok(&["config", &r, "port-forward", &format!("tcp:{port}:80")]);
    t.ok(&["start", &r]);
    let token = name("tok");
    serve_in_realm(&t, &r, &token);
    let want = format!("{token}\n");
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(
        http_get_within(loopback, "/token", Duration::from_secs(10)).as_deref(),
        Some(want.as_str()),
        "127.0.0.1:{port} reaches port 80 of the realm\n{}",
        table(t.zone())
    );
    let host = SocketAddr::from((host_address(), port));
    assert_eq!(
        http_get(host, "/token", Duration::from_secs(3)).as_deref(),
        Some(want.as_str()),
        "{host} reaches it too"
    );
    // From another machine (a namespace behind a veth), to the host's address on that link.
    let script = format!(
        "exec 3<>/dev/tcp/{}/{port} && printf 'GET /token HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3",
        outside.host_addr
    );
    let got = outside.exec(&["timeout", "5", "bash", "-c", &script]);
    assert!(got.ends_with(&want), "from outside: {got}");

    // Stopped, the realm forwards nothing: the rule is gone.
    t.ok(&["stop", &r]);
    assert!(
        !table(t.zone()).contains(&format!("dport {port}")),
        "{}",
        table(t.zone())
    );
    assert_eq!(http_get(loopback, "/token", Duration::from_secs(1)), None);
}

#[test]
fn a_host_port_is_forwarded_to_one_realm_only() {
    let t = TestRoot::btrfs();
    let (a, b) = (name("a"), name("b"));
    let port = free_port().to_string();
    for r in [&a, &b] {
        t.ok(&["new", r]);
        t.ok(&["config", r, "port-forward", &port]);
    }
    t.ok(&["start", &a]);
    let err = t.fails(&["start", &b]);
    assert!(
        err.contains(&port) && err.contains(&format!("realm '{a}'")),
        "the error names the realm that has the port: {err}"
    );
    // Once a stops, b may have it.
    t.ok(&["stop", &a]);
    t.ok(&["start", &b]);
}

#[test]
fn port_forward_rejects_bad_entries_naming_them() {
    let t = TestRoot::btrfs();
    let r = name("p");
    t.ok(&["new", &r]);
    for bad in ["tcp:0:80", "http", "tcp:80:80:80", "sctp:80"] {
        let err = t.fails(&["config", &r, "port-forward", &format!("tcp:8080:80 {bad}")]);
        assert!(
            err.contains("port-forward") && err.contains(&format!("'{bad}'")),
            "{bad}: {err}"
        );
    }
    let err = t.fails(&["config", &r, "port-forward", "tcp:8080:80 8080:81"]);
    assert!(err.contains("already"), "{err}");
    t.ok(&["config", &r, "port-forward", "tcp:8080:80 udp:5353:53"]);
    let shown = t.ok(&["config", &r, "port-forward"]);
    assert!(
        shown.contains("\"tcp:8080:80\"") && shown.contains("\"udp:5353:53\""),
        "{shown}"
    );
}

#[test]
fn realm_removal_releases_its_lease_and_port_forwards() {
    let t = TestRoot::btrfs();
    let (a, b) = (name("a"), name("b"));
    let port = free_port();
    t.ok(&["new", &a]);
    t.ok(&["new", &b]);
    t.ok(&["config", &a, "port-forward", &format!("tcp:{port}:80")]);
    t.ok(&["start", &a]);
    t.ok(&["start", &b]);
    let addr_a = realm_addr(&t, &a);
    let zone = t.zone().to_string();
    assert!(table(&zone).contains(&format!("dport {port}")));
    let lease = t
        .path()
        .join("run/realms/leases")
        .join(&zone)
        .join(addr_a.octets()[3].to_string());
    assert_eq!(fs::read_to_string(&lease).unwrap(), a);

    t.ok(&["remove", "--stop", &a]);
    assert!(!lease.exists(), "the lease is released");
    let rules = table(&zone);
    assert!(
        !rules.contains(&format!("dport {port}")),
        "the forward is gone:\n{rules}"
    );
    // The zone stays, consistent, for the realms still in it.
    assert!(
        bridge_exists(&zone) && rules.contains("masquerade"),
        "{rules}"
    );
    let ping = t.realms(&[
        "run",
        &b,
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &zone_host(&t, &zone),
    ]);
    assert!(
        ping.status.success(),
        "b still reaches the host over the bridge"
    );
}

/// The host's address on the zone's bridge.
fn zone_host(t: &TestRoot, zone: &str) -> String {
    zone_json(t, zone)["subnet"]
        .as_str()
        .unwrap()
        .replace(".0/24", ".1")
}

#[test]
fn port_forward_warns_when_a_host_program_has_the_port() {
    let t = TestRoot::btrfs();
    let r = name("p");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    t.ok(&["new", &r]);
    t.ok(&["config", &r, "port-forward", &format!("tcp:{port}:80")]);
    let out = t.realms(&["start", &r]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("tcp:{port}:80")) && stderr.contains("listens"),
        "{stderr}"
    );
}
