//! Everyday use: the defects a new user met in the first hour, each pinned by a test named
//! after it.

use std::fs;
use std::io::Write;
use std::process::Stdio;

use realms_tests::realms::{TestRoot, name};

/// Regression: `realms shell` panicked in every form (the global `--root DIR` and
/// `shell --root` shared one clap id).
#[test]
fn shell_runs_as_the_realm_user_and_as_root() {
    let t = TestRoot::btrfs();
    let r = name("sh");
    t.ok(&["new", &r]);
    for (extra, want) in [(None, "1000"), (Some("--root"), "0")] {
        let mut args = vec!["shell", r.as_str()];
        args.extend(extra);
        let mut child = t
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo uid=$(id -u)\nexit 3\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stdout.contains(&format!("uid={want}")),
            "{args:?}: {stdout}{stderr}"
        );
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
    }
}

/// Regression: one hand-edited realm config with a syntax error made `realms list` fail for
/// every realm.
#[test]
fn one_broken_config_does_not_break_list() {
    let t = TestRoot::btrfs();
    let (good, bad) = (name("ok"), name("bad"));
    t.ok(&["new", &good]);
    t.ok(&["new", &bad]);
    let config = t.realms_dir().join(format!("realm-{bad}/config"));
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("use-gpu = tru\n");
    fs::write(&config, text).unwrap();

    let list = t.ok(&["list"]);
    let good_line = list.lines().find(|l| l.contains(&good)).unwrap();
    assert!(good_line.contains("stopped"), "{list}");
    let bad_line = list.lines().find(|l| l.contains(&bad)).unwrap();
    assert!(
        bad_line.contains("broken config") && bad_line.contains(&config.display().to_string()),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "list"])).unwrap();
    let rows = json.as_array().unwrap();
    let row = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap().clone();
    assert!(row(&good).get("error").is_none(), "{json}");
    assert!(
        row(&bad)["error"].as_str().unwrap().contains("line"),
        "{json}"
    );
    // The realm with a good config still starts.
    t.ok(&["start", &good]);
}

/// Regression: `restart` stopped a realm before checking its config and bind mounts, leaving
/// it down.
#[test]
fn restart_with_a_bad_config_leaves_the_realm_running() {
    let t = TestRoot::btrfs();
    let r = name("rs");
    t.ok(&["new", &r]);
    t.ok(&["start", &r]);
    let config = t.realms_dir().join(format!("realm-{r}/config"));
    let good = fs::read_to_string(&config).unwrap();

    let missing = t.path().join("no-such-dir");
    fs::write(
        &config,
        format!("{good}\nextra-bindmounts = [\"{}\"]\n", missing.display()),
    )
    .unwrap();
    let err = t.fails(&["restart", &r]);
    assert!(err.contains("no-such-dir"), "{err}");
    assert!(running(&t, &r));

    fs::write(&config, format!("{good}\nuse-gpu = \n")).unwrap();
    let err = t.fails(&["restart", &r]);
    assert!(err.contains("line"), "{err}");
    assert!(running(&t, &r));

    fs::write(&config, good).unwrap();
    t.ok(&["restart", &r]);
    assert_eq!(t.ok(&["run", &r, "--", "echo", "up"]).trim(), "up");
}

fn running(t: &TestRoot, realm: &str) -> bool {
    let list: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "list"])).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == realm)
        .cloned();
    row.unwrap_or_else(|| panic!("{realm} not listed: {list}"))["running"] == true
}

/// Regression: options the host cannot give (use-sound without a Pulse socket, ...) were said
/// only with `-v`.
#[test]
fn start_says_which_options_the_host_lacks() {
    let t = TestRoot::btrfs();
    let r = name("lack");
    t.ok(&["new", &r]);
    t.ok(&["config", &r, "use-kvm", "true"]);
    t.ok(&["config", &r, "use-gpu", "true"]);
    let said = t.said(&["start", &r]);
    for (key, host_path) in [
        ("use-kvm", "/dev/kvm"),
        ("use-gpu", "/dev/dri/renderD128"),
        ("use-x11", "/tmp/.X11-unix"),
    ] {
        let lines: Vec<&str> = said.lines().filter(|l| l.contains(key)).collect();
        if std::path::Path::new(host_path).exists() {
            assert!(lines.is_empty(), "{key}: {said}");
        } else {
            assert_eq!(lines.len(), 1, "{key}: {said}");
            assert!(
                lines[0].starts_with("[!] ") && lines[0].contains(host_path),
                "{said}"
            );
        }
    }
}
