//! Realms on the host tier: real btrfs snapshots, real overlays, real systemd-nspawn boots, real
//! bridges and nftables. Each test has its own root and unique realm and zone names.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use realms_tests::realms::{TestRoot, name};

/// Tests that change host-global network settings (ip_forward) run one at a time.
static NET: Mutex<()> = Mutex::new(());

fn run_in(t: &TestRoot, realm: &str, script: &str) -> String {
    t.ok(&["run", realm, "--", "sh", "-c", script])
}

/// The end-to-end flow of the issue, on any store.
fn lifecycle_flow(t: &TestRoot) {
    let (a, b) = (name("a"), name("b"));
    t.ok(&["new", &a]);
    t.ok(&["new", &b]);
    let os = t.ok(&["run", &a, "--", "cat", "/etc/os-release"]);
    assert!(os.contains("ID=debian") && os.contains("bookworm"), "{os}");

    run_in(t, &a, "echo only-in-a > /etc/written-in-a");
    assert_eq!(run_in(t, &a, "cat /etc/written-in-a").trim(), "only-in-a");
    let out = t.realms(&["run", &b, "--", "cat", "/etc/written-in-a"]);
    assert!(
        !out.status.success(),
        "realm b sees a file written in realm a"
    );
    assert!(
        !t.path()
            .join("storage/appimg/base.appimg/etc/written-in-a")
            .exists()
    );

    // The exit status of the command becomes ours.
    assert_eq!(
        t.realms(&["run", &a, "--", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );

    let err = t.fails(&["remove", &a]);
    assert!(err.contains("running") && err.contains("--stop"), "{err}");
    t.ok(&["remove", "--stop", &a]);
    assert!(!t.realms_dir().join(format!("realm-{a}")).exists());
    let leftovers: Vec<_> = fs::read_dir(t.realms_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&a))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let run_dir = t.path().join("run/realms");
    let run_left = walk(&run_dir)
        .into_iter()
        .filter(|p| p.contains(&a) || fs::read_to_string(p).is_ok_and(|c| c.trim() == a));
    assert_eq!(
        run_left.count(),
        0,
        "runtime files of a remain under {}",
        run_dir.display()
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("realm-{a}")),
        "a mount of realm a remains"
    );
    assert!(
        !Path::new(&format!("/sys/class/net/vb-{a}")).exists(),
        "the veth of realm a remains"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn lifecycle_on_btrfs_snapshots() {
    let t = TestRoot::btrfs();
    lifecycle_flow(&t);
}

#[test]
fn lifecycle_on_a_store_that_is_not_btrfs() {
    let t = TestRoot::plain();
    let r = name("o");
    let out = t.said(&["new", &r]);
    assert!(out.contains("overlay"), "{out}");
    assert!(run_in(&t, &r, "findmnt -n -o FSTYPE /").contains("overlay"));
    lifecycle_flow(&t);
}

#[test]
fn new_prints_the_seed_lines_and_snapshots_the_image() {
    let t = TestRoot::btrfs();
    let r = name("s");
    let out = t.said(&["new", &r]);
    assert!(
        out.contains("[+] Populating realm home directory with files from /realms/skel"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Create a snapshot of '/storage/appimg/base.appimg' in '/realms/realm-{r}/rootfs'"
        )),
        "{out}"
    );
    let rootfs = t.realms_dir().join(format!("realm-{r}/rootfs"));
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&rootfs).unwrap());
    assert_eq!(ino, 256, "the realm's rootfs is a btrfs subvolume");
}

#[test]
fn no_network_leaves_only_loopback() {
    let t = TestRoot::btrfs();
    let r = name("n");
    t.ok(&["new", &r]);
    t.ok(&["config", &r, "use-network", "false"]);
    let links = t.ok(&["run", &r, "--", "ip", "-o", "link"]);
    let names: Vec<&str> = links.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(names, ["lo"], "{links}");
}

#[test]
fn zones_connect_their_realms_and_isolate_them_from_other_zones() {
    let _net = NET.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestRoot::btrfs();
    let (clear, work) = (name("clear"), name("work"));
    let (a, b, c) = (name("za"), name("zb"), name("zc"));
    for (r, zone) in [(&a, &clear), (&b, &clear), (&c, &work)] {
        t.ok(&["new", r]);
        t.ok(&["config", r, "network-zone", zone]);
        t.ok(&["start", r]);
    }
    let addr = |r: &str| {
        let out = run_in(&t, r, "ip -o -4 addr show dev host0");
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let (addr_a, addr_b) = (addr(&a), addr(&b));
    let ping = |from: &str, to: &str| {
        t.realms(&["run", from, "--", "ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    };
    assert!(ping(&a, &addr_b), "realms in one zone reach each other");
    assert!(ping(&b, &addr_a));
    let gateway = run_in(&t, &a, "ip route show default");
    let host = gateway.split_whitespace().nth(2).unwrap().to_string();
    assert!(ping(&a, &host), "a realm reaches the host over its bridge");
    // Even with forwarding on, the rules keep zones apart.
    let forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    let crossed = ping(&c, &addr_a);
    fs::write("/proc/sys/net/ipv4/ip_forward", forward.trim()).unwrap();
    assert!(
        !crossed,
        "a realm in another zone reached a realm of zone {clear}"
    );
    // The zone's NAT is on unless turned off.
    assert!(t.ok(&["zone", &clear]).contains("nat on"));
    assert!(t.said(&["zone", &clear, "nat", "off"]).contains("nat off"));
}

#[test]
fn shared_dir_is_at_home_user_shared() {
    let t = TestRoot::btrfs();
    let r = name("sh");
    t.ok(&["new", &r]);
    fs::write(t.realms_dir().join("Shared/hello.txt"), "from the host\n").unwrap();
    assert_eq!(
        run_in(&t, &r, "cat /home/user/Shared/hello.txt").trim(),
        "from the host"
    );
    t.ok(&["config", &r, "use-shared-dir", "false"]);
    t.ok(&["restart", &r]);
    assert!(
        t.realms(&["run", &r, "--", "cat", "/home/user/Shared/hello.txt"])
            .status
            .code()
            != Some(0)
    );
}

#[test]
fn home_comes_from_skel_and_belongs_to_the_realm_user() {
    let t = TestRoot::btrfs();
    fs::write(t.realms_dir().join("skel/.bashrc-realm"), "# skel\n").unwrap();
    let r = name("h");
    t.ok(&["new", &r]);
    let out = t.ok(&[
        "run",
        "--user",
        "user",
        &r,
        "--",
        "sh",
        "-c",
        "id -u; echo $HOME; cat ~/.bashrc-realm; touch ~/mine",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1000", "/home/user", "# skel"]
    );
    assert!(
        t.realms_dir().join(format!("realm-{r}/home/mine")).exists(),
        "the home is the realm's home directory"
    );

    t.ok(&["config", &r, "use-ephemeral-home", "true"]);
    t.ok(&["restart", &r]);
    let out = t.ok(&[
        "run",
        "--user",
        "user",
        &r,
        "--",
        "sh",
        "-c",
        "cat ~/.bashrc-realm; ls ~; touch ~/gone",
    ]);
    assert!(out.contains("# skel") && !out.contains("mine"), "{out}");
    t.ok(&["restart", &r]);
    assert!(
        !run_in(&t, &r, "ls /home/user").contains("gone"),
        "an ephemeral home is new at each start"
    );
}

#[test]
fn default_and_current_behave_as_in_the_seed() {
    let t = TestRoot::btrfs();
    let (main, project) = (name("main"), name("proj"));
    t.ok(&["new", &main]);
    t.ok(&["new", &project]);
    assert_eq!(
        t.said(&["default", &main]).trim(),
        format!("[+] default realm set to '{main}'")
    );
    assert_eq!(t.ok(&["default"]).trim(), format!("Default Realm: {main}"));
    assert_eq!(
        t.said(&["default", &project]).trim(),
        format!("[+] default realm changed from '{main}' to '{project}'")
    );
    assert_eq!(
        t.ok(&["default"]).trim(),
        format!("Default Realm: {project}")
    );
    assert_eq!(
        fs::read_link(t.realms_dir().join("default.realm")).unwrap(),
        Path::new(&format!("realm-{project}"))
    );

    let out = t.said(&["current", &main]);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("[+]"))
            .collect::<Vec<_>>(),
        [
            format!("[+] Started realm '{main}'"),
            format!("[+] Realm '{main}' set as current realm")
        ]
    );
    assert_eq!(t.ok(&["current"]).trim(), format!("Current Realm: {main}"));
    assert_eq!(
        fs::read_link(t.path().join("run/realms/current.realm")).unwrap(),
        Path::new(&format!("/realms/realm-{main}"))
    );
    let list = t.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with('>') && l.contains(&main) && l.contains("running")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains('*') && l.contains(&project) && l.contains("stopped")),
        "{list}"
    );

    let err = t.fails(&["remove", &project]);
    assert!(err.contains("default realm"), "{err}");
    // `realms start` without a name starts the default realm (what the boot unit runs).
    t.ok(&["start"]);
    assert!(
        t.ok(&["list"])
            .lines()
            .any(|l| l.contains(&project) && l.contains("running"))
    );
}

#[test]
fn update_appimg_changes_only_realms_made_afterwards() {
    for t in [TestRoot::btrfs(), TestRoot::plain()] {
        let before = name("u");
        t.ok(&["new", &before]);
        t.ok(&["start", &before]);
        let out = t.said(&[
            "update-appimg",
            "base",
            "--",
            "sh",
            "-c",
            "echo v2 > /etc/v",
        ]);
        assert!(out.contains("Updated base appimg"), "{out}");
        let after = name("u");
        t.ok(&["new", &after]);
        assert_eq!(run_in(&t, &after, "cat /etc/v").trim(), "v2");
        t.ok(&["restart", &before]);
        assert!(
            t.realms(&["run", &before, "--", "cat", "/etc/v"])
                .status
                .code()
                != Some(0),
            "an older realm changed"
        );

        let failed = t.realms(&[
            "update-appimg",
            "base",
            "--",
            "sh",
            "-c",
            "echo v3 > /etc/v; exit 3",
        ]);
        assert_eq!(failed.status.code(), Some(3));
        let third = name("u");
        t.ok(&["new", &third]);
        assert_eq!(
            run_in(&t, &third, "cat /etc/v").trim(),
            "v2",
            "a failed update changed the image"
        );

        let images = t.ok(&["appimg", "list"]);
        assert!(
            images
                .lines()
                .any(|l| l.starts_with("base") && l.contains("yes")),
            "{images}"
        );
        t.ok(&["appimg", "rollback", "base"]);
        let fourth = name("u");
        t.ok(&["new", &fourth]);
        assert!(
            t.realms(&["run", &fourth, "--", "cat", "/etc/v"])
                .status
                .code()
                != Some(0),
            "rollback kept v2"
        );
    }
}

#[test]
fn appimg_remove_refuses_images_that_overlay_realms_sit_on() {
    let t = TestRoot::plain();
    let r = name("d");
    t.ok(&["new", &r]);
    let err = t.fails(&["appimg", "remove", "base"]);
    assert!(err.contains(&r) && err.contains("overlay"), "{err}");
    t.ok(&["remove", &r]);
    t.ok(&["appimg", "remove", "base"]);
    assert!(!t.path().join("storage/appimg/base.appimg").exists());

    let t = TestRoot::btrfs();
    t.ok(&["new", &r]);
    let out = t.said(&["appimg", "remove", "base"]);
    assert!(out.contains(&r) && out.contains("independent"), "{out}");
    assert!(
        t.ok(&["run", &r, "--", "cat", "/etc/debian_version"])
            .starts_with("12")
    );
}

#[test]
fn bad_names_config_and_values_get_clear_errors() {
    let t = TestRoot::btrfs();
    let err = t.fails(&["new", "Bad_Name"]);
    assert!(
        err.contains("Bad_Name") && err.contains("[a-z][a-z0-9-]{0,30}"),
        "{err}"
    );
    let r = name("c");
    t.ok(&["new", &r]);
    let err = t.fails(&["config", &r, "use-gpu", "maybe"]);
    assert!(
        err.contains("use-gpu") && err.contains("true or false"),
        "{err}"
    );
    let err = t.fails(&["config", &r, "use-gpus", "true"]);
    assert!(
        err.contains("use-gpus") && err.contains("use-gpu,"),
        "{err}"
    );
    let config = t.realms_dir().join(format!("realm-{r}/config"));
    fs::write(&config, "use-gpu = true\nuse-sound = yes please\n").unwrap();
    let err = t.fails(&["start", &r]);
    assert!(
        err.contains(&config.to_string_lossy().into_owned()) && err.contains("line 2"),
        "{err}"
    );
    fs::write(&config, "use-kvm = true\n").unwrap();
    assert!(t.ok(&["config", &r, "use-kvm"]).contains("use-kvm = true"));
    t.ok(&["config", &r, "use-kvm", "false"]);
    assert_eq!(fs::read_to_string(&config).unwrap(), "use-kvm = false\n");
}

#[test]
fn leftovers_of_interrupted_commands_are_removed() {
    let t = TestRoot::btrfs();
    // A staging realm and a staging image of a process that no longer exists.
    let dead = 4_000_000;
    fs::create_dir_all(t.realms_dir().join(format!(".staging-realm-x-{dead}/home"))).unwrap();
    fs::create_dir_all(
        t.path()
            .join(format!("storage/appimg/.staging-y-{dead}/usr")),
    )
    .unwrap();
    fs::create_dir_all(t.realms_dir().join(".removing-realm-z-1")).unwrap();
    t.ok(&["new", &name("l")]);
    assert!(
        !t.realms_dir()
            .join(format!(".staging-realm-x-{dead}"))
            .exists()
    );
    assert!(
        !t.path()
            .join(format!("storage/appimg/.staging-y-{dead}"))
            .exists()
    );
    assert!(!t.realms_dir().join(".removing-realm-z-1").exists());
}

#[test]
fn appimg_import_takes_directories_and_tarballs() {
    let t = TestRoot::btrfs();
    let tree = realms_tests::fixtures::portable_image();
    let dir = tempfile::tempdir().unwrap();
    for (ext, flag) in [
        ("tar", ""),
        ("tar.gz", "--gzip"),
        ("tar.xz", "--xz"),
        ("tar.zst", "--zstd"),
    ] {
        let tarball = dir.path().join(format!("img.{ext}"));
        realms_tests::run::run(
            std::process::Command::new("tar")
                .arg("-c")
                .args((!flag.is_empty()).then_some(flag))
                .arg("-f")
                .arg(&tarball)
                .arg("-C")
                .arg(tree)
                .arg("."),
        );
        let img = format!("t{}", ext.replace('.', ""));
        t.ok(&["appimg", "import", &img, &tarball.to_string_lossy()]);
        assert!(
            t.path()
                .join(format!("storage/appimg/{img}.appimg/usr/bin/busybox"))
                .exists()
        );
    }
    t.ok(&["appimg", "import", "fromdir", &tree.to_string_lossy()]);
    let list = t.ok(&["appimg", "list"]);
    assert!(
        list.contains("fromdir") && list.contains("Foo Test Portable 1"),
        "{list}"
    );
    let err = t.fails(&["appimg", "import", "bad", "/nonexistent.tar.gz"]);
    assert!(err.contains("no such tarball"), "{err}");
    let err = t.fails(&["appimg", "import", "notos", &dir.path().to_string_lossy()]);
    assert!(err.contains("not an operating system tree"), "{err}");
    assert!(!t.path().join("storage/appimg/notos.appimg").exists());
}
