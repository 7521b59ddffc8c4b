//! `realms desktop titles` on a real Xvfb: windows of a realm's clients get the realm's label
//! in their titles (those there before it started and those made after), again after the
//! client sets a new title, in both title properties; a host client's window keeps its title.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use realms_tests::realms::{TestRoot, name};
use realms_tests::require;

use super::{Killed, Xvfb, copy_client, log, require_x11};

/// Waits until `xwininfo -root -tree` lists a window titled exactly `title`; returns its id.
/// xwininfo prints a title's bytes as the window has them: ISO 8859-1 in `WM_NAME`, UTF-8 in
/// `_NET_WM_NAME`; either matches.
fn window_titled(x: &Xvfb, title: &str, why: &dyn Fn() -> String) -> String {
    let quoted = |bytes: &[u8]| [b" \"", bytes, b"\":"].concat();
    let latin1: Option<Vec<u8>> = title.chars().map(|c| u8::try_from(c).ok()).collect();
    let wanted: Vec<Vec<u8>> = [Some(title.as_bytes().to_vec()), latin1]
        .into_iter()
        .flatten()
        .map(|t| quoted(&t))
        .collect();
    let start = Instant::now();
    loop {
        let tree = tree(x);
        let line = tree
            .split(|&b| b == b'\n')
            .find(|l| wanted.iter().any(|w| l.windows(w.len()).any(|s| s == w)));
        if let Some(line) = line {
            let line = String::from_utf8_lossy(line);
            return line.split_whitespace().next().unwrap().to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no window titled {title:?}:\n{}\n{}",
            String::from_utf8_lossy(&tree),
            why()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The window tree, as xwininfo prints it.
fn tree(x: &Xvfb) -> Vec<u8> {
    x.host(Command::new("xwininfo").args(["-root", "-tree"]))
        .stdout
}

fn xprop(x: &Xvfb, args: &[&str]) -> String {
    let out = x.host(Command::new("xprop").args(args).env("LC_ALL", "C.UTF-8"));
    assert!(
        out.status.success(),
        "xprop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_realms_windows_carry_its_label_in_their_titles_and_host_windows_do_not() {
    require::root();
    require_x11(&[("xprop", "x11-utils"), ("setpriv", "util-linux")]);
    let work = tempfile::tempdir().unwrap();
    let x = Xvfb::start(work.path());
    let t = TestRoot::btrfs();
    let realm = name("titled");
    t.ok(&["new", &realm]);
    copy_client(
        &t.realms_dir().join(format!("realm-{realm}/rootfs")),
        "xlogo",
    );
    let launch = |title: &str| {
        let xlogo = ["/opt/hostclients/bin/xlogo", "-title", title];
        Killed(x.launch(&t, &realm, &xlogo).spawn().unwrap())
    };
    let why = || log(&t, &realm);

    // A window of the realm's and one of the host's, before the follower starts.
    let _before = launch("before");
    window_titled(&x, "before", &why);
    // Set while it runs: the desktop's user sees the new label (the store is root's only).
    t.ok(&["config", &realm, "label", "Büro"]);
    let _host = Killed(
        Command::new("xlogo")
            .args(["-title", "host"])
            .env("DISPLAY", x.display())
            .env("XAUTHORITY", &x.auth)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    window_titled(&x, "host", &why);

    // The follower runs as the desktop's user (uid 1000, the realm user's uid too), as its
    // autostart entry runs it: no root to look into the realms' processes.
    let user_auth = work.path().join("user.Xauthority");
    std::fs::copy(&x.auth, &user_auth).unwrap();
    std::os::unix::fs::chown(&user_auth, Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let follower_log = work.path().join("titles.log");
    let mut follower = Command::new("setpriv");
    follower
        .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
        .arg(realms_tests::realms_bin())
        .arg("--root")
        .arg(t.path())
        .args(["desktop", "titles"])
        .env("DISPLAY", x.display())
        .env("XAUTHORITY", &user_auth)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&follower_log).unwrap());
    let _follower = Killed(follower.spawn().unwrap());
    let why = || {
        format!(
            "{}\nrealms desktop titles:\n{}",
            log(&t, &realm),
            std::fs::read_to_string(&follower_log).unwrap_or_default()
        )
    };

    // The window there before, a window made after, and the title set anew by its client.
    window_titled(&x, "before (Büro)", &why);
    let _after = launch("after");
    let after = window_titled(&x, "after (Büro)", &why);
    xprop(&x, &["-id", &after, "-set", "WM_NAME", "renamed"]);
    window_titled(&x, "renamed (Büro)", &why);
    xprop(
        &x,
        &[
            "-id",
            &after,
            "-f",
            "_NET_WM_NAME",
            "8u",
            "-set",
            "_NET_WM_NAME",
            "Écrit 書く",
        ],
    );
    let start = Instant::now();
    while !xprop(&x, &["-id", &after, "_NET_WM_NAME"]).contains("\"Écrit 書く (Büro)\"") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "_NET_WM_NAME not labelled: {}\n{}",
            xprop(&x, &["-id", &after, "_NET_WM_NAME"]),
            why()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The host's window keeps its own title.
    window_titled(&x, "host", &why);
    let tree = String::from_utf8_lossy(&tree(&x)).into_owned();
    assert!(!tree.contains("\"host ("), "{tree}");
}
