//! The D-Bus API on a real bus, two ways:
//! - on the host: a dbus-daemon started by the test (with the shipped policy), `realms dbus`
//!   serving org.realms.Manager1, busctl calling it as root and as an unprivileged
//!   user, gdbus monitor hearing all five signals, errors compared with the CLI's;
//! - in a booted systemd container, as the package installs it: the system bus activates the
//!   service through realms-dbus.service, realms started over D-Bus are nested nspawn units, and
//!   the callers are real users of the container (root, a member of the admin group, others).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use realms_tests::container::Container;
use realms_tests::fixtures::debian_base;
use realms_tests::realms::{TestRoot, name};
use realms_tests::require;
use realms_tests::run::run;
use realms_tests::scratch::{Scratch, unique};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn busctl(address: &str, uid: Option<u32>, args: &[&str]) -> Output {
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &uid.to_string(),
                "--clear-groups",
                "busctl",
            ]);
            c
        }
        None => Command::new("busctl"),
    };
    // Starting a realm can take longer than busctl's 25 s default while other tests load the
    // machine.
    cmd.arg(format!("--address={address}"))
        .arg("--timeout=300")
        .args([
            "--", // arguments of the call may start with '-'
            "call",
            "org.realms.Manager1",
            "/org/realms/Manager1",
            "org.realms.Manager1",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dbus_api_methods_signals_and_access_control_on_a_real_bus() {
    require::root();
    for (tool, package) in [
        ("dbus-daemon", "dbus-daemon"),
        ("gdbus", "libglib2.0-bin"),
        ("stdbuf", "coreutils"),
        ("busctl", "systemd"),
        ("setpriv", "util-linux"),
    ] {
        require::tool(tool, package);
    }
    let dir = tempfile::tempdir().unwrap();
    // /tmp/... is traversable by everyone; the socket must be reachable by the unprivileged
    // caller.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("bus");
    let address = format!("unix:path={}", socket.display());
    let policy =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/dbus/org.realms.Manager1.conf");
    let config = dir.path().join("bus.conf");
    fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <deny own="*"/>
  </policy>
  <include>{}</include>
</busconfig>
"#,
            policy.canonicalize().unwrap().display()
        ),
    )
    .unwrap();
    let _bus = Killed(
        Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("bus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the bus socket", || socket.exists());

    let t = TestRoot::btrfs();
    let service_log = dir.path().join("service.log");
    let mut service = Killed(
        t.command(&[
            "dbus",
            "--address",
            &address,
            "--admin-group",
            "nonexistent-realms-admins",
        ])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&service_log).unwrap())
        .spawn()
        .unwrap(),
    );
    wait_for("org.realms.Manager1 on the bus", || {
        busctl(&address, None, &["List"]).status.success()
    });
    let monitor_log = dir.path().join("monitor.log");
    let _monitor = Killed(
        Command::new("stdbuf")
            .args([
                "-oL",
                "gdbus",
                "monitor",
                "--address",
                &address,
                "--dest",
                "org.realms.Manager1",
            ])
            .stdout(fs::File::create(&monitor_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));

    let r = name("bus");
    t.ok(&["new", &r]);
    let out = busctl(&address, None, &["SetCurrent", "s", &r]);
    assert!(
        out.status.success(),
        "{}\nservice: {:?}\n{}\nbus: {}",
        text(&out),
        service.0.try_wait(),
        fs::read_to_string(&service_log).unwrap_or_default(),
        fs::read_to_string(dir.path().join("bus.log")).unwrap_or_default()
    );
    let list = text(&busctl(&address, None, &["List"]));
    assert!(list.contains(&format!("\"{r}\" true true")), "{list}");
    // The default realm: one of its own (a default realm cannot be removed, as `r` is below).
    let d = name("busd");
    t.ok(&["new", &d]);
    let out = busctl(&address, None, &["SetDefault", "s", &d]);
    assert!(out.status.success(), "{}", text(&out));
    let list = text(&busctl(&address, None, &["List"]));
    assert!(
        list.contains(&format!("\"{d}\" false false true")),
        "{list}"
    );
    assert!(
        t.ok(&["default"]).contains(&d),
        "the CLI does not see the default"
    );
    let config = text(&busctl(&address, None, &["GetConfig", "s", &r]));
    assert!(config.contains("\"use-x11\" \"true\""), "{config}");
    let out = busctl(&address, None, &["SetConfig", "sss", &r, "label", "Work"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&busctl(&address, None, &["List"])).contains("\"Work\""));

    // Launch runs the command in the realm as its user, detached; the reply is the launcher's
    // PID. Its output goes to the realm's apps log.
    let out = busctl(
        &address,
        None,
        &[
            "Launch",
            "sas",
            &r,
            "3",
            "sh",
            "-c",
            "id -un > $HOME/launched-by-dbus; echo launched-output",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let pid: u32 = text(&out)
        .trim()
        .strip_prefix("u ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("Launch replied {}", text(&out)));
    assert!(pid > 1);
    wait_for("the launched command's file in the realm", || {
        t.realms(&["run", &r, "--", "cat", "/home/user/launched-by-dbus"])
            .stdout
            .starts_with(b"user\n")
    });
    let apps_log = t.path().join(format!("run/realms/realm-{r}.apps.log"));
    wait_for("the launched command's output in the apps log", || {
        fs::read_to_string(&apps_log)
            .unwrap_or_default()
            .contains("launched-output")
    });
    let out = busctl(
        &address,
        None,
        &["Launch", "sas", "no-such-realm", "1", "true"],
    );
    assert!(!out.status.success(), "Launch in no realm was accepted");
    assert!(text(&out).contains("no-such-realm"), "{}", text(&out));

    // Everyone may read; an unprivileged caller may not change anything.
    let out = busctl(&address, Some(65534), &["List"]);
    assert!(
        out.status.success() && text(&out).contains(&r),
        "{}",
        text(&out)
    );
    let out = busctl(&address, Some(65534), &["Stop", "s", &r]);
    assert!(!out.status.success(), "an unprivileged Stop was accepted");
    assert!(text(&out).contains("only root"), "{}", text(&out));
    let out = busctl(&address, Some(65534), &["SetDefault", "s", &r]);
    assert!(
        !out.status.success(),
        "an unprivileged SetDefault was accepted"
    );
    assert!(text(&out).contains("only root"), "{}", text(&out));
    let out = busctl(&address, Some(65534), &["Launch", "sas", &r, "1", "true"]);
    assert!(!out.status.success(), "an unprivileged Launch was accepted");
    assert!(text(&out).contains("only root"), "{}", text(&out));
    assert!(t.ok(&["list", "--json"]).contains("\"running\": true"));

    // Errors carry the CLI's text.
    let cli = t.fails(&["current", "no-such-realm"]);
    let cli = cli.trim().strip_prefix("error: ").unwrap();
    let out = busctl(&address, None, &["SetCurrent", "s", "no-such-realm"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(cli),
        "D-Bus said {}, the CLI {cli}",
        text(&out)
    );

    let out = busctl(&address, None, &["Stop", "s", &r]);
    assert!(out.status.success(), "{}", text(&out));
    t.ok(&["remove", &r]);
    wait_for("the signals", || {
        fs::read_to_string(&monitor_log)
            .unwrap_or_default()
            .contains("Manager1.RealmRemoved")
    });
    let signals = fs::read_to_string(&monitor_log).unwrap();
    for member in [
        "RealmNew",
        "RealmStarted",
        "CurrentChanged",
        "RealmStopped",
        "RealmRemoved",
    ] {
        let line = format!("org.realms.Manager1.{member} ('{r}',)");
        assert!(signals.contains(&line), "no {line} in:\n{signals}");
    }
}

/// The shipped files of the D-Bus API, installed where the package puts them (the destination is
/// read from the .deb's asset list in crates/cli/Cargo.toml, so the two cannot drift apart).
const SHIPPED: &[&str] = &[
    "dist/dbus/org.realms.Manager1.conf",
    "dist/dbus/org.realms.Manager1.service",
    "dist/systemd/realms-dbus.service",
];

/// Where the package installs `file` (a path under dist/), per its asset list.
fn installed_path(file: &str) -> String {
    let manifest = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/cli/Cargo.toml"
    ))
    .unwrap();
    let name = file.rsplit('/').next().unwrap();
    let dir = file.rsplit_once('/').unwrap().0;
    let line = manifest
        .lines()
        .find(|l| {
            l.contains(&format!("\"../../{file}\"")) || l.contains(&format!("\"../../{dir}/*\""))
        })
        .unwrap_or_else(|| panic!("the .deb's assets do not ship {file}"));
    let dest = line.split('"').nth(3).expect("an asset's destination");
    format!("/{}/{name}", dest.trim_matches('/'))
}

/// The output of `busctl --system call` on the API inside container `c`, as `user` (root when
/// `None`).
fn busctl_in(c: &Container, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = c.nsenter();
    if let Some(user) = user {
        cmd.args(["runuser", "-u", user, "--"]);
    }
    // Starting a realm (a nested container) can take long while other tests load the machine.
    cmd.args(["busctl", "--system", "--timeout=300", "call"])
        .args([
            "org.realms.Manager1",
            "/org/realms/Manager1",
            "org.realms.Manager1",
        ])
        .args(args);
    realms_tests::run::output(&mut cmd)
}

fn unit_state(c: &Container, unit: &str) -> String {
    text(&c.exec(&["systemctl", "is-active", unit]))
        .trim()
        .to_string()
}

/// The signals dbus-monitor printed so far: (member, first string argument).
fn signals_seen(log: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(member) = line.split("member=").nth(1) else {
            continue;
        };
        let arg = lines
            .peek()
            .and_then(|l| l.trim().strip_prefix("string \""))
            .map(|a| a.trim_end_matches('"').to_string())
            .unwrap_or_default();
        out.push((member.trim().to_string(), arg));
    }
    out
}

#[test]
fn dbus_api_activated_by_the_system_bus_of_a_booted_container() {
    let tree = Scratch::snapshot(debian_base(), "dbusboot");
    let root = tree.path();
    // The container's own realm store (the base image, one realm) and the realms binary.
    fs::create_dir_all(root.join("storage/appimg")).unwrap();
    run(Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(debian_base())
        .arg(root.join("storage/appimg/base.appimg")));
    fs::copy(realms_tests::realms_bin(), root.join("usr/bin/realms")).unwrap();
    for file in SHIPPED {
        let dest = root.join(installed_path(file).trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file),
            &dest,
        )
        .unwrap();
    }
    let (first, second) = (name("dbus"), name("dbnew"));
    run(Command::new(realms_tests::realms_bin())
        .arg("--root")
        .arg(root)
        .args(["new", &first]));

    let c = Container::boot(root, &unique("dbusboot"), &["--private-network"]);
    // ann may only read; carl is in the group realms-dbus.service's `realms dbus` admits
    // by default.
    c.sh("groupadd realms && useradd ann && useradd -G realms carl");
    let ann_uid = c.sh("id -u ann").trim().to_string();
    c.sh(&format!(
        "systemd-analyze verify {}",
        installed_path("dist/systemd/realms-dbus.service")
    ));

    // Nothing runs the service until someone calls it: the bus activates it.
    assert_ne!(unit_state(&c, "realms-dbus.service"), "active");
    let out = busctl_in(&c, None, &["List"]);
    assert!(out.status.success(), "List failed: {}", text(&out));
    assert!(
        text(&out).contains(&format!("\"{first}\" false false false \"base\"")),
        "{}",
        text(&out)
    );
    assert_eq!(unit_state(&c, "realms-dbus.service"), "active");

    // Signals, heard by dbus-monitor on the system bus; a probe signal shows it is listening.
    let dir = tempfile::tempdir().unwrap();
    let monitor_log = dir.path().join("monitor.log");
    let _monitor = Killed(
        c.nsenter()
            .args([
                "dbus-monitor",
                "--system",
                "type='signal',interface='org.realms.Manager1'",
            ])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&monitor_log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("dbus-monitor to listen", || {
        c.exec(&[
            "dbus-send",
            "--system",
            "--type=signal",
            "/org/realms/Test",
            "org.realms.Manager1.Probe",
        ]);
        signals_seen(&monitor_log)
            .iter()
            .any(|(member, _)| member == "Probe")
    });
    let heard = |member: &str, realm: &str| {
        signals_seen(&monitor_log)
            .iter()
            .any(|(m, a)| m == member && a == realm)
    };
    c.sh(&format!("realms new {second}"));
    wait_for("RealmNew", || heard("RealmNew", &second));

    // Root starts a realm over D-Bus: a nested nspawn unit of the container's systemd.
    let out = busctl_in(&c, None, &["Start", "s", &first]);
    assert!(
        out.status.success(),
        "Start failed: {}\nservice log:\n{}",
        text(&out),
        text(&c.exec(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "realms-dbus.service",
            "-u",
            "realm-*"
        ]))
    );
    assert_eq!(unit_state(&c, &format!("realm-{first}.service")), "active");
    wait_for("RealmStarted", || heard("RealmStarted", &first));

    // Everyone may read; ann may not change anything, and is told why.
    let out = busctl_in(&c, Some("ann"), &["List"]);
    assert!(
        out.status.success() && text(&out).contains(&format!("\"{first}\" true")),
        "{}",
        text(&out)
    );
    let out = busctl_in(&c, Some("ann"), &["Stop", "s", &first]);
    assert!(!out.status.success(), "ann's Stop was accepted");
    let refusal = format!(
        "Stop changes realms: only root and members of group 'realms' may call it, not uid {ann_uid}"
    );
    assert!(text(&out).contains(&refusal), "{}", text(&out));
    assert_eq!(unit_state(&c, &format!("realm-{first}.service")), "active");
    // carl, a member of the admin group, may.
    let out = busctl_in(
        &c,
        Some("carl"),
        &["SetConfig", "sss", &first, "label", "Carl"],
    );
    assert!(out.status.success(), "carl's SetConfig: {}", text(&out));
    assert!(text(&busctl_in(&c, Some("ann"), &["List"])).contains("\"Carl\""));

    // A failing call carries the text the CLI prints for the same failure.
    let cli = c.exec(&["realms", "start", "no-such-realm"]);
    assert!(!cli.status.success());
    let cli = text(&cli);
    let cli = cli.trim().strip_prefix("error: ").unwrap_or(&cli);
    let out = busctl_in(&c, None, &["Start", "s", "no-such-realm"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(cli),
        "D-Bus said {}, the CLI {cli}",
        text(&out)
    );

    let out = busctl_in(&c, None, &["Stop", "s", &first]);
    assert!(out.status.success(), "Stop failed: {}", text(&out));
    assert_ne!(unit_state(&c, &format!("realm-{first}.service")), "active");
    wait_for("RealmStopped", || heard("RealmStopped", &first));
    c.stop();
}
