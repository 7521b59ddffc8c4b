//! The launch plan: a typed description of how a realm is booted, turned into the
//! systemd-nspawn command line. Both executors (a systemd unit, or realms itself) run the same plan.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::RealmConfig;
use crate::store::{RealmStore, RootKind};
use crate::{Error, Result};

/// How the realm's root directory comes to be at `directory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum RootSetup {
    /// `directory` is the realm's own writable snapshot; nothing to mount.
    Snapshot,
    /// The launcher mounts an overlay at `directory` in a private mount namespace first.
    /// For a block or sealed image, the launcher mounts `image` read-only at `lower` first.
    Overlay {
        /// The image's tree (read-only).
        lower: PathBuf,
        /// The realm's changes.
        upper: PathBuf,
        /// Overlayfs' work directory.
        work: PathBuf,
        /// A block or sealed image to mount at `lower`.
        image: Option<PathBuf>,
    },
}

/// The realm's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Network {
    /// A private network namespace with only `lo`.
    LoopbackOnly,
    /// A veth pair whose host end joins the zone's bridge `vz-ZONE`; `forwards` are host ports
    /// DNATed to the realm's address in the zone (by the zone's nftables table, see
    /// [`crate::zone::nft`]; not nspawn's `--port`, which refuses loopback clients).
    Zone {
        /// The zone.
        zone: String,
        /// Its bridge.
        bridge: String,
        /// The realm's port forwards.
        forwards: Vec<crate::zone::PortForward>,
    },
}

/// Where the realm's `/etc/resolv.conf` comes from (nspawn's `--resolv-conf=`).
///
/// A realm in a zone reaches the outside through the zone's NAT, so the host's own resolvers
/// serve it, copied at each start (a copy, not a bind: the realm may edit its file). Resolvers
/// on the host's loopback (systemd-resolved's 127.0.0.53, a local dnsmasq) are not reachable
/// from a realm; systemd-resolved's list of upstream servers is copied instead when there is
/// one, and otherwise the realm keeps its own file (and a note says why DNS may fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResolvConf {
    /// nspawn's default: with private networking, the realm's own file is left as it is.
    Auto,
    /// The host's `/etc/resolv.conf`.
    CopyHost,
    /// systemd-resolved's `/run/systemd/resolve/resolv.conf` (the upstream servers).
    CopyUplink,
}

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLVED_UPLINK: &str = "/run/systemd/resolve/resolv.conf";

/// The realm's resolv.conf source given the host's `/etc/resolv.conf` text, and a note when
/// no source the realm can reach exists.
pub fn resolv_conf_for(host_text: &str, uplink_exists: bool) -> (ResolvConf, Option<String>) {
    let servers: Vec<std::net::IpAddr> = host_text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|a| a.split('%').next()?.parse().ok())
        .collect();
    if servers.iter().any(|a| !a.is_loopback()) {
        (ResolvConf::CopyHost, None)
    } else if uplink_exists {
        (ResolvConf::CopyUplink, None)
    } else {
        let why = if servers.is_empty() {
            "names no nameserver".to_string()
        } else {
            "names only resolvers on the host's loopback, which a realm cannot reach".to_string()
        };
        (
            ResolvConf::Auto,
            Some(format!(
                "dns: the host's {HOST_RESOLV_CONF} {why}; the realm keeps its own resolv.conf"
            )),
        )
    }
}

/// One bind mount from the host into the realm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Bind {
    /// The path on the host.
    pub host: PathBuf,
    /// The path in the realm.
    pub realm: PathBuf,
    /// Bound read-only.
    pub read_only: bool,
}

/// Everything needed to boot one realm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LaunchPlan {
    /// The realm.
    pub name: String,
    /// Its machine name.
    pub machine: String,
    /// Its root directory (nspawn `--directory`).
    pub directory: PathBuf,
    /// How the root is made.
    pub root: RootSetup,
    /// Its network.
    pub network: Network,
    /// How its resolv.conf is made.
    pub resolv_conf: ResolvConf,
    /// Its bind mounts.
    pub binds: Vec<Bind>,
    /// An ephemeral home: a tmpfs-backed overlay on this directory (skel) at /home/user.
    pub ephemeral_home: Option<PathBuf>,
    /// Environment for commands run in the realm (sockets the options made available).
    pub environment: Vec<(String, String)>,
    /// Options that could not take effect on this host, and why.
    pub notes: Vec<String>,
}

/// What the plan needs to know about the host; tests pass their own.
pub trait HostFacts {
    /// True when `path` exists on the host.
    fn exists(&self, path: &Path) -> bool;
    /// A host file's text (`None` when it cannot be read).
    fn read(&self, _path: &Path) -> Option<String> {
        None
    }
    /// The runtime directory of the desktop user's session, whose sockets (wayland, PipeWire,
    /// PulseAudio) realms get.
    fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(USER_RUN)
    }
}

/// The real host.
#[derive(Debug)]
pub struct RealHost;

impl HostFacts for RealHost {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
    /// `REALMS_HOST_RUNTIME_DIR` when set (a session of another user, the tests' servers),
    /// else `/run/user/1000`.
    fn runtime_dir(&self) -> PathBuf {
        std::env::var_os("REALMS_HOST_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(USER_RUN))
    }
}

const HOME: &str = "/home/user";
const USER_RUN: &str = "/run/user/1000";

/// Builds the plan of realm `name` from its directory and config.
pub fn plan(
    store: &RealmStore,
    name: &str,
    config: &RealmConfig,
    host: &dyn HostFacts,
) -> Result<LaunchPlan> {
    let dir = store.realm_dir(name);
    let directory = dir.join("rootfs");
    let root = match store.root_kind(name) {
        RootKind::Snapshot => RootSetup::Snapshot,
        RootKind::Overlay => {
            let image = store.overlay_lower(name)?;
            let is_file_image = image.join("image.raw").exists();
            RootSetup::Overlay {
                lower: if is_file_image {
                    dir.join("image")
                } else {
                    image.clone()
                },
                upper: dir.join("overlay/upper"),
                work: dir.join("overlay/work"),
                image: is_file_image.then_some(image),
            }
        }
    };
    let forwards = config.port_forwards();
    let mut notes = Vec::new();
    let (network, resolv_conf) = if config.use_network() {
        let zone = config.network_zone().to_string();
        let host_text = host.read(Path::new(HOST_RESOLV_CONF)).unwrap_or_default();
        let (resolv_conf, note) =
            resolv_conf_for(&host_text, host.exists(Path::new(RESOLVED_UPLINK)));
        notes.extend(note);
        let network = Network::Zone {
            bridge: crate::zone::bridge_name(&zone),
            zone,
            forwards,
        };
        (network, resolv_conf)
    } else if !forwards.is_empty() {
        return Err(Error::ForwardsWithoutNetwork {
            name: name.to_string(),
        });
    } else {
        (Network::LoopbackOnly, ResolvConf::Auto)
    };
    let mut p = LaunchPlan {
        name: name.to_string(),
        machine: name.to_string(),
        directory,
        root,
        network,
        resolv_conf,
        binds: Vec::new(),
        ephemeral_home: None,
        environment: Vec::new(),
        notes,
    };
    if config.use_ephemeral_home() {
        p.ephemeral_home = Some(store.dir().join("skel"));
    } else {
        p.bind(dir.join("home"), HOME, false);
    }
    if config.use_shared_dir() {
        p.bind(store.dir().join("Shared"), &format!("{HOME}/Shared"), false);
    }
    add_desktop(&mut p, config, host);
    add_themes(&mut p, config, host);
    for (host_path, realm_path, ro) in config.extra_binds() {
        if !host.exists(&host_path) {
            return Err(Error::NoBindSource {
                name: name.to_string(),
                path: host_path,
            });
        }
        p.binds.push(Bind {
            host: host_path,
            realm: realm_path,
            read_only: ro,
        });
    }
    Ok(p)
}

/// The seed's desktop options: sound, X11, wayland, GPU, KVM. What the host lacks is noted.
fn add_desktop(p: &mut LaunchPlan, config: &RealmConfig, host: &dyn HostFacts) {
    let run = host.runtime_dir();
    let pulse = format!("{}/pulse", run.display());
    let wayland = format!("{}/wayland-0", run.display());
    let pipewire = format!("{}/pipewire-0", run.display());
    let wanted: [(bool, &str, &str, &str, bool); 7] = [
        (
            config.use_sound(),
            "use-sound",
            &pulse,
            "/run/user/host/pulse",
            true,
        ),
        (
            config.use_sound(),
            "use-sound",
            &pipewire,
            "/run/user/host/pipewire-0",
            true,
        ),
        (
            config.use_sound(),
            "use-sound",
            "/dev/snd",
            "/dev/snd",
            false,
        ),
        (
            config.use_x11(),
            "use-x11",
            "/tmp/.X11-unix",
            "/tmp/.X11-unix",
            true,
        ),
        (
            config.use_wayland(),
            "use-wayland",
            &wayland,
            "/run/user/host/wayland-0",
            true,
        ),
        (
            config.use_gpu(),
            "use-gpu",
            "/dev/dri/renderD128",
            "/dev/dri/renderD128",
            false,
        ),
        (config.use_kvm(), "use-kvm", "/dev/kvm", "/dev/kvm", false),
    ];
    for (on, key, host_path, realm_path, ro) in wanted {
        if !on {
            continue;
        }
        if host.exists(Path::new(host_path)) {
            p.bind(PathBuf::from(host_path), realm_path, ro);
            match key {
                "use-sound" if realm_path.ends_with("pulse") => {
                    p.env("PULSE_SERVER", "unix:/run/user/host/pulse/native")
                }
                "use-sound" if ro => p.env("PIPEWIRE_REMOTE", realm_path),
                "use-x11" => p.env("DISPLAY", ":0"),
                "use-wayland" => p.env("WAYLAND_DISPLAY", "/run/user/host/wayland-0"),
                _ => {}
            }
        } else {
            p.notes.push(format!(
                "{key}: {host_path} does not exist on this host, so it is not bound"
            ));
        }
    }
}

/// use-host-themes: the host's fonts (where fontconfig scans, below the realm's own) and its
/// icon, cursor and GTK themes (a data directory after the realm's own), read-only.
fn add_themes(p: &mut LaunchPlan, config: &RealmConfig, host: &dyn HostFacts) {
    if !config.use_host_themes() {
        return;
    }
    let mut any = false;
    for (host_path, realm_path) in [
        ("/usr/share/fonts", "/usr/local/share/fonts/host"),
        ("/usr/share/icons", "/run/host-share/icons"),
        ("/usr/share/themes", "/run/host-share/themes"),
    ] {
        if host.exists(Path::new(host_path)) {
            p.bind(PathBuf::from(host_path), realm_path, true);
            any |= realm_path.starts_with("/run/host-share");
        }
    }
    if any {
        p.env(
            "XDG_DATA_DIRS",
            "/usr/local/share:/usr/share:/run/host-share",
        );
    }
}

impl LaunchPlan {
    fn bind(&mut self, host: PathBuf, realm: &str, read_only: bool) {
        self.binds.push(Bind {
            host,
            realm: PathBuf::from(realm),
            read_only,
        });
    }

    fn env(&mut self, key: &str, value: &str) {
        self.environment.push((key.to_string(), value.to_string()));
    }

    /// The systemd-nspawn arguments. `registered` is true under a systemd PID 1 (machined
    /// registration, the unit's own cgroup); otherwise `--register=no --keep-unit`.
    pub fn nspawn_args(&self, registered: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--boot".into(),
            "--notify-ready=yes".into(),
            "--keep-unit".into(),
            format!("--register={}", if registered { "yes" } else { "no" }).into(),
            "--link-journal=no".into(),
            "--console=read-only".into(),
            arg("--machine=", &self.machine),
            path_arg("--directory=", &self.directory),
        ];
        match &self.network {
            Network::LoopbackOnly => args.push("--private-network".into()),
            Network::Zone { bridge, .. } => args.push(arg("--network-bridge=", bridge)),
        }
        match self.resolv_conf {
            ResolvConf::Auto => {}
            ResolvConf::CopyHost => args.push("--resolv-conf=copy-host".into()),
            ResolvConf::CopyUplink => args.push("--resolv-conf=copy-uplink".into()),
        }
        if let Some(skel) = &self.ephemeral_home {
            // An empty upper layer means a temporary one: the home is gone at the next start.
            let mut a = OsString::from("--overlay=");
            a.push(skel.as_os_str());
            a.push("::");
            a.push(HOME);
            args.push(a);
        }
        for b in &self.binds {
            let mut a = OsString::from(if b.read_only { "--bind-ro=" } else { "--bind=" });
            a.push(b.host.as_os_str());
            a.push(":");
            a.push(b.realm.as_os_str());
            args.push(a);
        }
        args
    }
}

fn arg(flag: &str, value: &str) -> OsString {
    format!("{flag}{value}").into()
}

fn path_arg(flag: &str, value: &Path) -> OsString {
    let mut a = OsString::from(flag);
    a.push(value.as_os_str());
    a
}

#[cfg(test)]
mod tests;
