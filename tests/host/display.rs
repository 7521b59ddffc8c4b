//! Display in a realm without `xhost +`: a real Xvfb on the host (access control on), real X
//! clients of the host's Debian (copied with their libraries) in the realms. A realm with
//! use-x11 opens a window with its own cookie; without the cookie, or without use-x11, the same
//! client fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use realms_tests::realms::{TestRoot, name};
use realms_tests::require;

mod titles;

/// A process of the test's, killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Xvfb on a display of its own, with a cookie (so it refuses clients without one) and
/// `-noreset` (cookies generated for realms outlive the connection that asked for them, as on
/// a desktop where the session always has clients).
struct Xvfb {
    number: u32,
    auth: PathBuf,
    _server: Killed,
}

impl Xvfb {
    fn start(dir: &Path) -> Xvfb {
        let auth = dir.join("host.Xauthority");
        let number = (100..400)
            .map(|n| n + std::process::id() % 300)
            .find(|n| {
                !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                    && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            })
            .unwrap();
        let cookie: String = fs::read("/proc/sys/kernel/random/uuid")
            .map(|b| String::from_utf8_lossy(&b).replace(['-', '\n'], ""))
            .unwrap();
        let out = Command::new("xauth")
            .arg("-f")
            .arg(&auth)
            .args(["add", &format!(":{number}"), ".", &cookie])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = Command::new("Xvfb")
            .arg(format!(":{number}"))
            .arg("-auth")
            .arg(&auth)
            .args(["-nolisten", "tcp", "-noreset", "-screen", "0", "640x480x24"])
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("xvfb.log")).unwrap())
            .spawn()
            .unwrap();
        let x = Xvfb {
            number,
            auth,
            _server: Killed(server),
        };
        let start = Instant::now();
        while !x.host(&mut Command::new("xdpyinfo")).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Xvfb did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        x
    }

    fn display(&self) -> String {
        format!(":{}", self.number)
    }

    /// `realms launch REALM -- ARGS` as a desktop runs an app on this server: the session's
    /// DISPLAY and XAUTHORITY, no terminal.
    fn launch(&self, t: &TestRoot, realm: &str, args: &[&str]) -> Command {
        let mut argv = vec!["launch", "-e", LIBS, realm, "--"];
        argv.extend(args);
        let mut cmd = t.command(&argv);
        cmd.env("DISPLAY", self.display())
            .env("XAUTHORITY", &self.auth)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a host X client on this server with the host's cookie.
    fn host(&self, cmd: &mut Command) -> std::process::Output {
        cmd.env("DISPLAY", self.display())
            .env("XAUTHORITY", &self.auth)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Copies the host's `program` and the libraries it needs (but the C library, which the realm
/// has in the same version) into the realm under /opt/hostclients; returns its path there.
fn copy_client(rootfs: &Path, program: &str) -> String {
    let bin = realms_tests::require::which(program).unwrap();
    let dest = rootfs.join("opt/hostclients");
    fs::create_dir_all(dest.join("bin")).unwrap();
    fs::copy(&bin, dest.join("bin").join(program)).unwrap();
    copy_libs(rootfs, &bin);
    format!("/opt/hostclients/bin/{program}")
}

/// Copies the host directory `dir` (plugins, configuration) to /opt/hostclients/NAME in the
/// realm, with the libraries its shared objects need.
fn copy_dir(rootfs: &Path, dir: &Path, name: &str) {
    let dest = rootfs.join("opt/hostclients").join(name);
    let out = Command::new("cp")
        .arg("-a")
        .arg(dir)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".so") {
            copy_libs(rootfs, &entry.path());
        }
    }
}

/// The libraries `bin` needs, in /opt/hostclients/lib in the realm.
fn copy_libs(rootfs: &Path, bin: &Path) {
    let dest = rootfs.join("opt/hostclients");
    fs::create_dir_all(dest.join("lib")).unwrap();
    let ldd = Command::new("ldd").arg(bin).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let Some((soname, rest)) = line.trim().split_once(" => ") else {
            continue;
        };
        let libc = [
            "libc.so",
            "libm.so",
            "libpthread.so",
            "libdl.so",
            "librt.so",
            "ld-linux",
        ];
        if libc.iter().any(|l| soname.starts_with(l)) {
            continue;
        }
        let path = rest.split_whitespace().next().unwrap();
        if path.starts_with('/') && !dest.join("lib").join(soname).exists() {
            fs::copy(path, dest.join("lib").join(soname)).unwrap();
        }
    }
}

const LIBS: &str = "LD_LIBRARY_PATH=/opt/hostclients/lib";

/// The X server and clients every X11 test needs, with their Debian packages.
const X11_TOOLS: &[(&str, &str)] = &[
    ("Xvfb", "xvfb"),
    ("xauth", "xauth"),
    ("xdpyinfo", "x11-utils"),
    ("xwininfo", "x11-utils"),
    ("xlogo", "x11-apps"),
];

/// Fails the test, naming the package, unless the X11 tools and `more` are installed.
fn require_x11(more: &[(&str, &str)]) {
    for (tool, package) in X11_TOOLS.iter().chain(more) {
        require::tool(tool, package);
    }
}

fn log(t: &TestRoot, realm: &str) -> String {
    fs::read_to_string(t.path().join(format!("run/realms/realm-{realm}.apps.log")))
        .unwrap_or_default()
}

#[test]
fn x11_client_in_a_realm_uses_its_own_cookie_and_fails_without_it_or_without_use_x11() {
    require::root();
    require_x11(&[("xwd", "x11-apps"), ("convert", "imagemagick")]);
    let work = tempfile::tempdir().unwrap();
    let x = Xvfb::start(work.path());
    let t = TestRoot::btrfs();
    let (with, without) = (name("x11"), name("nox"));
    t.ok(&["new", &with]);
    t.ok(&["new", &without]);
    t.ok(&["config", &without, "use-x11", "false"]);
    for realm in [&with, &without] {
        let rootfs = t.realms_dir().join(format!("realm-{realm}/rootfs"));
        copy_client(&rootfs, "xdpyinfo");
        copy_client(&rootfs, "xlogo");
    }
    let launch = |realm: &str, args: &[&str]| x.launch(&t, realm, args);

    let out = launch(&with, &["/opt/hostclients/bin/xdpyinfo"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xdpyinfo failed in the realm with use-x11:\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        log(&t, &with)
    );
    assert!(
        log(&t, &with).contains(&format!("name of display:    :{}", x.number)),
        "{}",
        log(&t, &with)
    );

    // A window: it shows on the X server's screen (screenshot kept as an artifact).
    let app = Killed(
        launch(&with, &["/opt/hostclients/bin/xlogo"])
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    loop {
        let tree = x.host(Command::new("xwininfo").args(["-root", "-tree"]));
        if String::from_utf8_lossy(&tree.stdout).contains("\"xlogo\"") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no xlogo window:\n{}{}",
            String::from_utf8_lossy(&tree.stdout),
            log(&t, &with)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let artifacts = realms_tests::target_dir().join("realms-artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let xwd = work.path().join("screen.xwd");
    let shot = x.host(
        Command::new("xwd")
            .args(["-root", "-silent", "-out"])
            .arg(&xwd),
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = artifacts.join("desktop-x11-xlogo.png");
    let conv = Command::new("convert")
        .arg(format!("xwd:{}", xwd.display()))
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        conv.status.success(),
        "{}",
        String::from_utf8_lossy(&conv.stderr)
    );
    eprintln!(
        "screenshot of the X server with the realm's window: {}",
        png.display()
    );
    drop(app);

    // The cookie is the realm's own: a wildcard entry readable only by the realm user.
    let perms = t.ok(&[
        "run",
        &with,
        "--",
        "stat",
        "-c",
        "%U %a",
        "/run/realm-session/Xauthority",
    ]);
    assert_eq!(perms.trim(), "user 600");

    // Without the cookie the same client in the same realm is refused: no `xhost +`.
    let out = t
        .command(&[
            "run",
            &with,
            "--user",
            "user",
            "-e",
            LIBS,
            "-e",
            &format!("DISPLAY={}", x.display()),
            "-e",
            "XAUTHORITY=/nonexistent",
            "--",
            "/opt/hostclients/bin/xdpyinfo",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "xdpyinfo got in without a cookie");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unable to open display"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without use-x11 the client fails, even with a valid cookie (the realm has no X socket).
    let valid = t.ok(&[
        "run",
        &with,
        "--",
        "base64",
        "-w0",
        "/run/realm-session/Xauthority",
    ]);
    t.ok(&[
        "run",
        &without,
        "--",
        "sh",
        "-c",
        &format!(
            "echo {} | base64 -d > /home/user/stolen && chown user /home/user/stolen",
            valid.trim()
        ),
    ]);
    let out = launch(
        &without,
        &[
            "sh",
            "-c",
            "XAUTHORITY=/home/user/stolen exec /opt/hostclients/bin/xdpyinfo",
        ],
    )
    .output()
    .unwrap();
    assert!(
        !out.status.success(),
        "xdpyinfo connected from a realm without use-x11:\n{}",
        log(&t, &without)
    );
    assert!(
        log(&t, &without).contains("unable to open display"),
        "{}",
        log(&t, &without)
    );
}

/// A server of the desktop user's session (uid 1000, as on a desktop), killed when dropped.
fn session_server(runtime: &Path, argv: &[&str], log: &Path) -> Killed {
    let child = Command::new("setpriv")
        .args([
            "--reuid",
            "1000",
            "--regid",
            "1000",
            "--clear-groups",
            "env",
            "-i",
        ])
        .arg(format!("XDG_RUNTIME_DIR={}", runtime.display()))
        .arg(format!("HOME={}", runtime.display()))
        .arg("PATH=/usr/bin:/bin")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Killed(child)
}

#[test]
fn wayland_pipewire_and_pulse_clients_in_a_realm_connect_and_fail_with_use_sound_false() {
    require::root();
    for (tool, package) in [
        ("weston", "weston"),
        ("weston-info", "weston"),
        ("pipewire", "pipewire"),
        ("pipewire-pulse", "pipewire-pulse"),
        ("pw-cli", "pipewire-bin"),
        ("pactl", "pulseaudio-utils"),
        ("setpriv", "util-linux"),
    ] {
        require::tool(tool, package);
    }
    // The desktop user's runtime directory, with a headless compositor and the sound server.
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    std::os::unix::fs::chown(rt, Some(1000), Some(1000)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(rt, fs::Permissions::from_mode(0o700)).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let _weston = session_server(
        rt,
        &[
            "weston",
            "--backend=headless-backend.so",
            "--socket=wayland-0",
            "--idle-time=0",
        ],
        &logs.path().join("weston.log"),
    );
    let _pipewire = session_server(rt, &["pipewire"], &logs.path().join("pipewire.log"));
    let start = Instant::now();
    while !(rt.join("wayland-0").exists() && rt.join("pipewire-0").exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "weston or pipewire did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _pulse = session_server(
        rt,
        &["pipewire-pulse"],
        &logs.path().join("pipewire-pulse.log"),
    );
    while !rt.join("pulse/native").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pipewire-pulse did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let t = TestRoot::btrfs();
    let (sound, mute) = (name("snd"), name("mute"));
    t.ok(&["new", &sound]);
    t.ok(&["new", &mute]);
    t.ok(&["config", &mute, "use-sound", "false"]);
    for realm in [&sound, &mute] {
        let rootfs = t.realms_dir().join(format!("realm-{realm}/rootfs"));
        for client in ["pactl", "weston-info", "pw-cli"] {
            copy_client(&rootfs, client);
        }
        copy_dir(
            &rootfs,
            Path::new("/usr/lib/x86_64-linux-gnu/pipewire-0.3"),
            "pipewire-0.3",
        );
        copy_dir(
            &rootfs,
            Path::new("/usr/lib/x86_64-linux-gnu/spa-0.2"),
            "spa-0.2",
        );
        copy_dir(&rootfs, Path::new("/usr/share/pipewire"), "pipewire-conf");
        // The sockets are bound when the realm starts: the session's runtime directory.
        let out = t
            .command(&["start", realm])
            .env("REALMS_HOST_RUNTIME_DIR", rt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run = |realm: &str, args: &[&str]| {
        let mut argv = vec![
            "launch",
            "-e",
            LIBS,
            "-e",
            "PIPEWIRE_MODULE_DIR=/opt/hostclients/pipewire-0.3",
            "-e",
            "SPA_PLUGIN_DIR=/opt/hostclients/spa-0.2",
            "-e",
            "PIPEWIRE_CONFIG_DIR=/opt/hostclients/pipewire-conf",
            realm,
            "--",
        ];
        argv.extend(args);
        let out = t.command(&argv).stdin(Stdio::null()).output().unwrap();
        (out.status.success(), log(&t, realm))
    };
    let (ok, log_text) = run(&sound, &["/opt/hostclients/bin/pactl", "info"]);
    assert!(ok, "pactl info failed in the realm:\n{log_text}");
    assert!(log_text.contains("on PipeWire"), "{log_text}");
    let (ok, log_text) = run(&sound, &["/opt/hostclients/bin/pw-cli", "info", "0"]);
    assert!(
        ok && log_text.contains("PipeWire:Interface:Core"),
        "pw-cli failed in the realm:\n{log_text}"
    );
    let (ok, log_text) = run(&sound, &["/opt/hostclients/bin/weston-info"]);
    assert!(
        ok && log_text.contains("wl_compositor"),
        "weston-info failed in the realm:\n{log_text}"
    );

    // use-sound = false: neither the Pulse nor the PipeWire client gets through.
    let (ok, log_text) = run(&mute, &["/opt/hostclients/bin/pactl", "info"]);
    assert!(
        !ok,
        "pactl info connected from a realm with use-sound = false:\n{log_text}"
    );
    assert!(log_text.contains("Connection refused"), "{log_text}");
    let (ok, log_text) = run(&mute, &["/opt/hostclients/bin/pw-cli", "info", "0"]);
    assert!(
        !ok || !log_text.contains("PipeWire:Interface:Core"),
        "pw-cli connected from a realm with use-sound = false:\n{log_text}"
    );
}

/// use-kvm (like use-gpu for the render node): the device works for the realm user, not only
/// for root, through the device's own group; without the option there is no device.
#[test]
fn kvm_device_is_usable_by_the_realm_user_with_use_kvm() {
    require::root();
    require::path(Path::new("/dev/kvm"), "the KVM device");
    let t = TestRoot::btrfs();
    let (kvm, plain) = (name("kvm"), name("nokvm"));
    t.ok(&["new", &kvm]);
    t.ok(&["new", &plain]);
    t.ok(&["config", &kvm, "use-kvm", "true"]);
    let open = "exec 3</dev/kvm && echo kvm-opened-by-$(id -un)";
    let out = t
        .command(&["launch", &kvm, "--", "sh", "-c", open])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        log(&t, &kvm)
    );
    assert!(
        log(&t, &kvm).contains("kvm-opened-by-user"),
        "{}",
        log(&t, &kvm)
    );
    // The same user without the device's group (plain `realms run`) is refused: the group is
    // what makes it work.
    let out = t
        .command(&["run", &kvm, "--user", "user", "--", "sh", "-c", open])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the realm user opened /dev/kvm without its group"
    );
    let out = t
        .command(&["launch", &plain, "--", "sh", "-c", open])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a realm without use-kvm has /dev/kvm"
    );
}

/// The cached X cookies of `realm` (`realm-NAME.x11-N-INO.xauth`; not their `-id` records).
fn cached_cookies(t: &TestRoot, realm: &str) -> Vec<PathBuf> {
    let prefix = format!("realm-{realm}.x11-");
    let mut out: Vec<PathBuf> = fs::read_dir(t.path().join("run/realms"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            f.starts_with(&prefix) && f.ends_with(".xauth")
        })
        .collect();
    out.sort();
    out
}

/// Regression: a stopped realm's X cookie stayed valid on the X server until the server
/// exited, and a new realm of the same name inherited it from the cache under /run/realms.
#[test]
fn a_stopped_or_removed_realms_x_cookie_is_revoked_and_the_next_start_gets_a_fresh_one() {
    require::root();
    require_x11(&[]);
    let work = tempfile::tempdir().unwrap();
    let x = Xvfb::start(work.path());
    let t = TestRoot::btrfs();
    let realm = name("xrev");
    let prepare = || {
        t.ok(&["new", &realm]);
        let rootfs = t.realms_dir().join(format!("realm-{realm}/rootfs"));
        copy_client(&rootfs, "xdpyinfo");
    };
    // xdpyinfo in the realm, as a desktop launches it: its cookie is made (or reused) then.
    let launch_xdpyinfo = || {
        let out = x
            .launch(&t, &realm, &["/opt/hostclients/bin/xdpyinfo"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "xdpyinfo failed in the realm:\n{}{}",
            String::from_utf8_lossy(&out.stderr),
            log(&t, &realm)
        );
        let cookies = cached_cookies(&t, &realm);
        assert_eq!(cookies.len(), 1, "{cookies:?}");
        fs::read(&cookies[0]).unwrap()
    };
    // A host client on a copy of a cookie: does the X server take it?
    let copies = std::cell::Cell::new(0);
    let keep = |cookie: &[u8]| {
        copies.set(copies.get() + 1);
        let path = work.path().join(format!("cookie-{}", copies.get()));
        fs::write(&path, cookie).unwrap();
        path
    };
    let works = |auth: &Path| {
        Command::new("xdpyinfo")
            .env("DISPLAY", x.display())
            .env("XAUTHORITY", auth)
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .status
            .success()
    };

    prepare();
    let first = launch_xdpyinfo();
    let first_copy = keep(&first);
    assert!(works(&first_copy), "the realm's cookie does not work");
    // The same cookie while the realm runs.
    assert_eq!(launch_xdpyinfo(), first);
    // A client connected with the realm's cookie (on the host, so that only the revocation,
    // not the realm's end, can end it).
    let mut client = Command::new("xlogo")
        .env("DISPLAY", x.display())
        .env("XAUTHORITY", &first_copy)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let tree = x.host(Command::new("xwininfo").args(["-root", "-tree"]));
        if String::from_utf8_lossy(&tree.stdout).contains("\"xlogo\"") {
            break;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = client.kill();
            panic!("no xlogo window on the realm's cookie");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let records: Vec<String> = cached_cookies(&t, &realm)
        .iter()
        .map(|c| fs::read_to_string(format!("{}-id", c.display())).unwrap())
        .collect();
    let said = t.said(&["stop", &realm]);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = client.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = client.kill();
            let _ = client.wait();
            panic!(
                "the client on the stopped realm's cookie is still connected:\n{said}\n{records:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("X connection"), "{stderr}");
    assert!(
        !works(&first_copy),
        "the stopped realm's cookie still works"
    );
    assert!(cached_cookies(&t, &realm).is_empty());
    assert!(works(&x.auth), "the host's own cookie was revoked");

    // The next start: a fresh cookie that works; the old one stays refused.
    let second = launch_xdpyinfo();
    assert_ne!(second, first);
    let second_copy = keep(&second);
    assert!(works(&second_copy));
    assert!(!works(&first_copy));

    // A realm whose systemd-nspawn was killed (what runs in it lives on, orphaned): its next
    // start revokes the cookie it left.
    let pid_file = t.path().join(format!("run/realms/realm-{realm}.pid"));
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let killed = Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(killed.success());
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "nspawn lives on");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(works(&second_copy), "killing nspawn alone revokes nothing");
    let after_kill = launch_xdpyinfo();
    assert_ne!(after_kill, second);
    assert!(
        !works(&second_copy),
        "the killed realm's cookie still works"
    );
    let after_kill_copy = keep(&after_kill);
    assert!(works(&after_kill_copy));

    // Regression: a realm powered off from inside kept its cookie valid until its next start.
    // Now the next command that changes anything (here a config key) revokes it.
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
    // Its own connection may end with the realm: only the result counts.
    let _ = t.realms(&["run", &realm, "--", "systemctl", "poweroff"]);
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists()
        || t.ok(&["--json", "list"]).contains("\"running\": true")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the realm did not power off"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(works(&after_kill_copy), "powering off alone revoked it");
    t.ok(&["config", &realm, "use-gpu", "true"]);
    assert!(
        !works(&after_kill_copy),
        "the powered-off realm's cookie still works"
    );
    assert!(cached_cookies(&t, &realm).is_empty());
    assert!(!pid_file.exists(), "its pid file is left");
    let last = launch_xdpyinfo();
    assert!(last != after_kill && last != second);
    let last_copy = keep(&last);
    assert!(works(&last_copy));

    // Removed (while running) and made again under the same name: nothing is inherited.
    t.ok(&["remove", &realm, "--stop"]);
    assert!(!works(&last_copy), "the removed realm's cookie still works");
    assert!(cached_cookies(&t, &realm).is_empty());
    prepare();
    let third = launch_xdpyinfo();
    assert!(third != first && third != second && third != after_kill && third != last);
    assert!(works(&keep(&third)));

    // A cookie that cannot be revoked (the host's Xauthority gone) is a warning, not a failed
    // stop; the cache goes all the same.
    let aside = work.path().join("host.Xauthority.aside");
    fs::rename(&x.auth, &aside).unwrap();
    let said = t.said(&["stop", &realm]);
    fs::rename(&aside, &x.auth).unwrap();
    assert!(said.contains("could not revoke its X cookie"), "{said}");
    assert!(cached_cookies(&t, &realm).is_empty());

    // The X server gone: nothing to revoke, nothing said.
    let fourth = launch_xdpyinfo();
    assert!(works(&keep(&fourth)));
    drop(x);
    let said = t.said(&["stop", &realm]);
    assert!(!said.contains("X cookie"), "{said}");
    assert!(cached_cookies(&t, &realm).is_empty());
    t.ok(&["remove", &realm]);
}
