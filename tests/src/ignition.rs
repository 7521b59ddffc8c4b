//! A stand-in for Ignition's files stage, for the configs `realms provision ignition` prints:
//! Ignition itself is not packaged in Debian (and runs only in an initramfs), so the test applies
//! the parts of a spec 3.x config those configs use to a machine's root the way Ignition does.
//!
//! - `storage.files[]`: `contents.source` as a `data:` URL (base64 or percent-encoded), written
//!   with `mode` (default 0644), parent directories created 0755; an existing file is replaced
//!   only with `overwrite: true`.
//! - `systemd.units[]`: `enabled: true` becomes an `enable NAME` line in
//!   /etc/systemd/system-preset/20-ignition.preset, as Ignition writes; PID 1 applies presets on
//!   a first boot (`preset-all`), which here is `systemctl --root ROOT preset NAME` for each unit
//!   the root has (a preset for a unit the image lacks does nothing, as with preset-all).
//!
//! Anything else in the config (disks, users, unit contents, remote sources) is refused, so a
//! config that needs more than this is noticed rather than half applied.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use serde_json::Value;

/// The bytes of a `data:` URL.
pub fn data_url(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("data:").expect("a data: url");
    let (meta, data) = rest.split_once(',').expect("a data: url has a ','");
    if meta.ends_with(";base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("valid base64");
    }
    let b = data.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("a %XX escape");
            out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Applies the Ignition config `config` (JSON text) to `root`; returns the units enabled.
pub fn apply(root: &Path, config: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(config).expect("an Ignition config is JSON");
    let version = doc["ignition"]["version"].as_str().unwrap_or("");
    assert!(version.starts_with("3."), "not a spec 3 config: {version}");
    for key in doc.as_object().unwrap().keys() {
        assert!(
            ["ignition", "storage", "systemd"].contains(&key.as_str()),
            "the stand-in does not do {key}"
        );
    }
    for f in doc["storage"]["files"].as_array().into_iter().flatten() {
        let path = f["path"].as_str().expect("files[].path");
        assert!(path.starts_with('/'), "{path} is not absolute");
        assert!(!path.split('/').any(|c| c == ".."), "{path} has '..'");
        let target = root.join(&path[1..]);
        if target.exists() && f["overwrite"].as_bool() != Some(true) {
            panic!("{path} exists and overwrite is not true: Ignition fails here");
        }
        let source = f["contents"]["source"]
            .as_str()
            .expect("the stand-in takes data: urls only");
        let mode = f["mode"].as_u64().unwrap_or(0o644) as u32;
        let parent = target.parent().unwrap();
        fs::create_dir_all(parent).unwrap();
        let tmp = parent.join(format!(".ignition-{}", std::process::id()));
        fs::write(&tmp, data_url(source)).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
        fs::rename(&tmp, &target).unwrap();
    }
    let mut enabled = Vec::new();
    let mut preset = String::new();
    for u in doc["systemd"]["units"].as_array().into_iter().flatten() {
        let name = u["name"].as_str().expect("units[].name");
        assert!(
            u.get("contents").is_none() && u.get("dropins").is_none(),
            "the stand-in does not write unit contents"
        );
        if u["enabled"].as_bool() == Some(true) {
            preset.push_str(&format!("enable {name}\n"));
            enabled.push(name.to_string());
        }
    }
    let dir = root.join("etc/systemd/system-preset");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("20-ignition.preset"), preset).unwrap();
    let mut applied = Vec::new();
    for name in enabled {
        let has = [
            "etc/systemd/system",
            "usr/lib/systemd/system",
            "lib/systemd/system",
        ]
        .iter()
        .any(|d| root.join(d).join(&name).exists());
        if has {
            crate::run::run(
                Command::new("systemctl")
                    .arg(format!("--root={}", root.display()))
                    .args(["preset", &name]),
            );
            applied.push(name);
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_decode() {
        assert_eq!(data_url("data:;base64,aGVsbG8K"), b"hello\n");
        assert_eq!(data_url("data:,a%20b%0A"), b"a b\n");
        assert_eq!(data_url("data:text/plain,x"), b"x");
    }
}
