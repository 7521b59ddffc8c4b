//! The launch plan and the nspawn command line it turns into, for every option.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::RealmConfig;
use crate::store::RealmStore;

struct FakeHost(HashSet<PathBuf>, String);

impl HostFacts for FakeHost {
    fn exists(&self, path: &Path) -> bool {
        self.0.contains(path)
    }
    fn read(&self, path: &Path) -> Option<String> {
        (path == Path::new("/etc/resolv.conf")).then(|| self.1.clone())
    }
}

/// A host with these paths and a resolver on its network.
fn host(paths: &[&str]) -> FakeHost {
    FakeHost(
        paths.iter().map(PathBuf::from).collect(),
        "nameserver 192.0.2.53\n".into(),
    )
}

fn store_with_realm(name: &str) -> (tempfile::TempDir, RealmStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RealmStore::open(dir.path()).unwrap();
    std::fs::create_dir_all(store.realm_dir(name).join("rootfs")).unwrap();
    (dir, store)
}

fn args(plan: &LaunchPlan) -> Vec<String> {
    plan.nspawn_args(false)
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect()
}

fn config(text: &str) -> RealmConfig {
    RealmConfig::parse(text, Path::new("config")).unwrap()
}

#[test]
fn defaults_boot_a_snapshot_on_the_clear_zone_with_home_and_shared() {
    let (_d, store) = store_with_realm("main");
    let p = plan(&store, "main", &config(""), &host(&[])).unwrap();
    let a = args(&p);
    let dir = store.realm_dir("main");
    assert_eq!(p.root, RootSetup::Snapshot);
    for expected in [
        "--boot".to_string(),
        "--notify-ready=yes".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--machine=main".into(),
        format!("--directory={}", dir.join("rootfs").display()),
        "--network-bridge=vz-clear".into(),
        format!("--bind={}:/home/user", dir.join("home").display()),
        format!(
            "--bind={}:/home/user/Shared",
            store.dir().join("Shared").display()
        ),
    ] {
        assert!(a.contains(&expected), "missing {expected} in {a:?}");
    }
    // Nothing of the desktop exists on this fake host: nothing is bound, and each is noted.
    assert_eq!(p.notes.len(), 5, "{:?}", p.notes);
    assert_eq!(
        plan(&store, "main", &config(""), &host(&[]))
            .unwrap()
            .nspawn_args(true)[3],
        "--register=yes"
    );
}

#[test]
fn no_network_means_loopback_only() {
    let (_d, store) = store_with_realm("a");
    let p = plan(&store, "a", &config("use-network = false\n"), &host(&[])).unwrap();
    assert_eq!(p.network, Network::LoopbackOnly);
    let a = args(&p);
    assert!(a.contains(&"--private-network".to_string()));
    assert!(!a.iter().any(|x| x.starts_with("--network-bridge")));
}

#[test]
fn zone_picks_its_bridge() {
    let (_d, store) = store_with_realm("a");
    let p = plan(
        &store,
        "a",
        &config("network-zone = \"work\"\n"),
        &host(&[]),
    )
    .unwrap();
    assert!(args(&p).contains(&"--network-bridge=vz-work".to_string()));
}

#[test]
fn desktop_options_bind_what_the_host_has() {
    let (_d, store) = store_with_realm("a");
    let h = host(&[
        "/run/user/1000/pulse",
        "/run/user/1000/pipewire-0",
        "/dev/snd",
        "/tmp/.X11-unix",
        "/run/user/1000/wayland-0",
        "/dev/dri/renderD128",
        "/dev/kvm",
    ]);
    let p = plan(&store, "a", &config("use-gpu = true\nuse-kvm = true\n"), &h).unwrap();
    let a = args(&p);
    for expected in [
        "--bind-ro=/run/user/1000/pulse:/run/user/host/pulse",
        "--bind-ro=/run/user/1000/pipewire-0:/run/user/host/pipewire-0",
        "--bind=/dev/snd:/dev/snd",
        "--bind-ro=/tmp/.X11-unix:/tmp/.X11-unix",
        "--bind-ro=/run/user/1000/wayland-0:/run/user/host/wayland-0",
        "--bind=/dev/dri/renderD128:/dev/dri/renderD128",
        "--bind=/dev/kvm:/dev/kvm",
    ] {
        assert!(
            a.contains(&expected.to_string()),
            "missing {expected} in {a:?}"
        );
    }
    assert!(p.notes.is_empty());
    assert!(
        p.environment
            .contains(&("WAYLAND_DISPLAY".into(), "/run/user/host/wayland-0".into()))
    );

    let off = "use-sound = false\nuse-x11 = false\nuse-wayland = false\nuse-shared-dir = false\n";
    let a = args(&plan(&store, "a", &config(off), &h).unwrap());
    assert!(!a.iter().any(|x| x.contains("pulse")
        || x.contains("X11")
        || x.contains("wayland")
        || x.contains("Shared")));
    assert!(
        !a.iter()
            .any(|x| x.contains("renderD128") || x.contains("kvm")),
        "gpu and kvm are off by default"
    );
}

#[test]
fn extra_binds_and_ephemeral_home() {
    let (_d, store) = store_with_realm("a");
    let text = "extra-bindmounts = [\"/srv/data:/data\"]\nextra-bindmounts-ro = [\"/opt/tools\"]\nuse-ephemeral-home = true\n";
    let p = plan(
        &store,
        "a",
        &config(text),
        &host(&["/srv/data", "/opt/tools"]),
    )
    .unwrap();
    let a = args(&p);
    assert!(a.contains(&"--bind=/srv/data:/data".to_string()), "{a:?}");
    assert!(
        a.contains(&"--bind-ro=/opt/tools:/opt/tools".to_string()),
        "{a:?}"
    );
    assert!(
        a.contains(&format!(
            "--overlay={}::/home/user",
            store.dir().join("skel").display()
        )),
        "{a:?}"
    );
    assert!(
        !a.iter()
            .any(|x| x.ends_with(":/home/user") && x.starts_with("--bind=")),
        "{a:?}"
    );
    let err = plan(&store, "a", &config(text), &host(&["/opt/tools"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/srv/data"), "{err}");
}

#[test]
fn overlay_realms_mount_their_lower_layer() {
    let (_d, store) = store_with_realm("a");
    let dir = store.realm_dir("a");
    std::fs::create_dir_all(dir.join("overlay/upper")).unwrap();
    std::os::unix::fs::symlink("/storage/appimg/base.appimg", dir.join("lower")).unwrap();
    let p = plan(&store, "a", &config(""), &host(&[])).unwrap();
    assert_eq!(
        p.root,
        RootSetup::Overlay {
            lower: store.root().join("storage/appimg/base.appimg"),
            upper: dir.join("overlay/upper"),
            work: dir.join("overlay/work"),
            image: None,
        }
    );
    // A block or sealed image is mounted at realm-NAME/image first, and that is the lower layer.
    let img = store.root().join("storage/appimg/sealed.appimg");
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join("image.raw"), b"").unwrap();
    std::fs::remove_file(dir.join("lower")).unwrap();
    std::os::unix::fs::symlink("/storage/appimg/sealed.appimg", dir.join("lower")).unwrap();
    let p = plan(&store, "a", &config(""), &host(&[])).unwrap();
    assert_eq!(
        p.root,
        RootSetup::Overlay {
            lower: dir.join("image"),
            upper: dir.join("overlay/upper"),
            work: dir.join("overlay/work"),
            image: Some(img),
        }
    );
}

#[test]
fn zone_realms_get_the_hosts_resolvers_they_can_reach() {
    let (_d, store) = store_with_realm("a");
    let p = plan(&store, "a", &config(""), &host(&[])).unwrap();
    assert_eq!(p.resolv_conf, ResolvConf::CopyHost);
    assert!(args(&p).contains(&"--resolv-conf=copy-host".to_string()));
    // systemd-resolved's stub on the host's loopback: its upstream list instead.
    let mut h = host(&["/run/systemd/resolve/resolv.conf"]);
    h.1 = "# stub\nnameserver 127.0.0.53\noptions edns0\n".into();
    let p = plan(&store, "a", &config(""), &h).unwrap();
    assert!(args(&p).contains(&"--resolv-conf=copy-uplink".to_string()));
    // Only loopback resolvers and no upstream list: the realm keeps its file, and a note says so.
    h.0.clear();
    let p = plan(&store, "a", &config(""), &h).unwrap();
    assert_eq!(p.resolv_conf, ResolvConf::Auto);
    assert!(!args(&p).iter().any(|a| a.starts_with("--resolv-conf")));
    assert!(
        p.notes.iter().any(|n| n.contains("loopback")),
        "{:?}",
        p.notes
    );
    // No network: nothing to resolve with.
    let p = plan(&store, "a", &config("use-network = false\n"), &host(&[])).unwrap();
    assert_eq!(p.resolv_conf, ResolvConf::Auto);
}

#[test]
fn resolvers_mixing_loopback_and_network_are_copied() {
    assert_eq!(
        resolv_conf_for("nameserver 127.0.0.1\nnameserver fe80::1%eth0\n", false).0,
        ResolvConf::CopyHost
    );
    assert_eq!(
        resolv_conf_for("nameserver ::1\n", true).0,
        ResolvConf::CopyUplink
    );
    assert!(
        resolv_conf_for("", false)
            .1
            .unwrap()
            .contains("no nameserver")
    );
}

#[test]
fn port_forwards_ride_on_the_zone() {
    let (_d, store) = store_with_realm("a");
    let p = plan(
        &store,
        "a",
        &config("network-zone = \"web\"\nport-forward = [\"tcp:8080:80\"]\n"),
        &host(&[]),
    )
    .unwrap();
    let Network::Zone { forwards, .. } = &p.network else {
        panic!("{:?}", p.network)
    };
    assert_eq!(forwards.len(), 1);
    assert_eq!(forwards[0].to_string(), "tcp:8080:80");
    // nspawn's --port is not used: the zone's table forwards (loopback included).
    assert!(!args(&p).iter().any(|a| a.starts_with("--port")));
    let err = plan(
        &store,
        "a",
        &config("use-network = false\nport-forward = [\"8080\"]\n"),
        &host(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("port-forward") && err.contains("use-network"),
        "{err}"
    );
}

#[test]
fn host_themes_are_bound_read_only_unless_turned_off() {
    let (_d, store) = store_with_realm("a");
    let h = host(&["/usr/share/fonts", "/usr/share/icons", "/usr/share/themes"]);
    let p = plan(&store, "a", &config(""), &h).unwrap();
    let a = args(&p);
    for expected in [
        "--bind-ro=/usr/share/fonts:/usr/local/share/fonts/host",
        "--bind-ro=/usr/share/icons:/run/host-share/icons",
        "--bind-ro=/usr/share/themes:/run/host-share/themes",
    ] {
        assert!(
            a.contains(&expected.to_string()),
            "missing {expected} in {a:?}"
        );
    }
    assert!(p.environment.contains(&(
        "XDG_DATA_DIRS".into(),
        "/usr/local/share:/usr/share:/run/host-share".into()
    )));
    let off = plan(&store, "a", &config("use-host-themes = false\n"), &h).unwrap();
    assert!(
        !args(&off)
            .iter()
            .any(|x| x.contains("/usr/share/fonts") || x.contains("host-share"))
    );
    assert!(!off.environment.iter().any(|(k, _)| k == "XDG_DATA_DIRS"));
}
