//! The `--json` contract of docs/json.md: one JSON value on stdout, one action object per
//! command that changes something, kebab-case keys; without `--json`, progress on stderr only.

use realms_tests::realms::{TestRoot, name};
use serde_json::Value;

/// `realms --json ARGS` must succeed and print exactly one JSON value.
#[track_caller]
fn json(t: &TestRoot, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = t.ok(&all);
    let value: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "`realms {}` printed no single JSON value ({e}):\n{out}",
            args.join(" ")
        )
    });
    assert_kebab(&value, &args.join(" "));
    value
}

/// Keys are kebab-case; environment variable names (all capitals) are data, not keys.
fn assert_kebab(v: &Value, what: &str) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let env_name = k
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
                assert!(
                    env_name || !k.chars().any(|c| c == '_' || c.is_ascii_uppercase()),
                    "`realms {what}`: key '{k}' is not kebab-case"
                );
                assert_kebab(v, what);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| assert_kebab(i, what)),
        _ => {}
    }
}

#[track_caller]
fn action(t: &TestRoot, args: &[&str], want: &str, kind: &str, subject: &str) -> Value {
    let v = json(t, args);
    assert_eq!(v["action"], want, "`realms {}`: {v}", args.join(" "));
    assert_eq!(v[kind], subject, "`realms {}`: {v}", args.join(" "));
    v
}

#[test]
fn every_command_prints_one_json_result() {
    let t = TestRoot::btrfs();
    let (r, c, d) = (name("j"), name("jc"), name("jd"));
    action(&t, &["new", &r], "created", "realm", &r);
    let v = action(
        &t,
        &["config", &r, "use-gpu", "true"],
        "configured",
        "realm",
        &r,
    );
    assert_eq!(v["value"], true);
    assert_eq!(json(&t, &["config", &r, "use-gpu"])["use-gpu"], true);
    action(&t, &["default", &r], "set-default", "realm", &r);
    assert_eq!(json(&t, &["default"])["name"], r.as_str());
    action(&t, &["start", &r], "started", "realm", &r);
    action(&t, &["current", &r], "set-current", "realm", &r);
    assert_eq!(json(&t, &["current"])["name"], r.as_str());
    action(&t, &["restart", &r], "restarted", "realm", &r);
    let status = json(&t, &["status", &r]);
    assert_eq!(status["running"], true, "{status}");
    action(&t, &["stop", &r], "stopped", "realm", &r);
    action(&t, &["snapshot", &r, "s1"], "snapshotted", "realm", &r);
    assert_eq!(
        json(&t, &["snapshot", "list", &r])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    action(
        &t,
        &["snapshot", "restore", &r, "s1"],
        "restored",
        "realm",
        &r,
    );
    action(
        &t,
        &["snapshot", "remove", &r, "s1"],
        "removed",
        "snapshot",
        "s1",
    );
    action(&t, &["clone", &r, &c], "cloned", "realm", &c);
    action(&t, &["rename", &c, &d], "renamed", "realm", &d);
    action(&t, &["autostart", &d, "on"], "autostart", "realm", &d);
    action(&t, &["remove", &d], "removed", "realm", &d);
    let list = json(&t, &["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(json(&t, &["zone"]).is_object());
    action(
        &t,
        &["zone", t.zone(), "nat", "off"],
        "configured",
        "zone",
        t.zone(),
    );
    let images = json(&t, &["appimg", "list"]);
    assert_eq!(images[0]["kind"], "tree", "{images}");
    action(
        &t,
        &["appimg", "key", "generate", "jk"],
        "generated",
        "key",
        "jk",
    );
    assert!(json(&t, &["appimg", "key", "list"]).is_array());
}

/// Regression: progress went to stdout in some commands and to stderr in others, with
/// `[+]`, `[+] `, `[!]` and bare lines mixed.
#[test]
fn progress_goes_to_stderr_in_one_style() {
    let t = TestRoot::btrfs();
    let r = name("p");
    for args in [
        vec!["new", r.as_str()],
        vec!["start", r.as_str()],
        vec!["stop", r.as_str()],
        vec!["default", r.as_str()],
    ] {
        let out = t.realms(&args);
        assert!(out.status.success(), "{args:?}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            stdout.is_empty(),
            "`realms {}` wrote to stdout: {stdout}",
            args.join(" ")
        );
        assert!(
            !stderr.is_empty(),
            "`realms {}` said nothing",
            args.join(" ")
        );
        for line in stderr.lines() {
            assert!(
                line.starts_with("[+] ") || line.starts_with("[!] ") || line.starts_with("  "),
                "`realms {}`: a line out of style: {line}",
                args.join(" ")
            );
        }
    }
}
