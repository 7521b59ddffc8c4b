//! The D-Bus API on a real bus: a dbus-daemon started by the test (with the shipped policy),
//! `realms dbus` serving org.realms.Manager1, busctl calling it as root and as an unprivileged
//! user, gdbus monitor hearing its signals.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use realms_tests::realms::{TestRoot, name};
use realms_tests::require;

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
    let config = text(&busctl(&address, None, &["GetConfig", "s", &r]));
    assert!(config.contains("\"use-x11\" \"true\""), "{config}");
    let out = busctl(&address, None, &["SetConfig", "sss", &r, "label", "Work"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&busctl(&address, None, &["List"])).contains("\"Work\""));

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
