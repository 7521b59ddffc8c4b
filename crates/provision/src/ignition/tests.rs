//! The Ignition config against Ignition's own published schema for spec 3.4.0 (shipped in
//! `crates/provision/testdata`, see its README), and the Butane config against the same facts.

use super::*;
use base64::Engine;
use serde_json::Value;

const SCHEMA: &str = include_str!("../../testdata/ignition-3.4.0.schema.json");

const MANIFEST: &str = "composable:\n  default_repository: http://127.0.0.1:8080/main\n  packages:\n    - name: goss\n      start: [goss.service]\n";
const DROPIN: &str = "composable:\n  packages:\n    - name: bar\n      version: '1.0'\n";

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    /// A root trusting key `repo`, a manifest and a drop-in.
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        realms_image::keys::generate(&dir.path().join("root"), "repo").unwrap();
        fs::write(dir.path().join("m.yaml"), MANIFEST).unwrap();
        fs::write(dir.path().join("50-bar.yaml"), DROPIN).unwrap();
        Setup { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn input(&self, keys: &[PathBuf]) -> Input {
        Input {
            manifest: self.dir.path().join("m.yaml"),
            dropins: vec![self.dir.path().join("50-bar.yaml")],
            keys: keys.to_vec(),
        }
    }

    fn key_text(&self) -> Vec<u8> {
        fs::read(self.root().join("etc/realms/keys.d/repo.pub")).unwrap()
    }
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc).map(|e| e.to_string()).collect()
}

fn decode(url: &str) -> Vec<u8> {
    let b64 = url
        .strip_prefix("data:;base64,")
        .expect("a base64 data url");
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn the_ignition_config_passes_the_spec_3_4_0_schema_and_writes_what_it_says() {
    let s = Setup::new();
    let config = config(&s.root(), &s.input(&[])).unwrap();
    let text = config.to_ignition().unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let v = validator();
    assert_eq!(errors(&v, &doc), Vec::<String>::new(), "{text}");
    assert_eq!(doc["ignition"]["version"], "3.4.0");
    let files = doc["storage"]["files"].as_array().unwrap();
    let got: Vec<(&str, Vec<u8>, u64, bool)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap(),
                decode(f["contents"]["source"].as_str().unwrap()),
                f["mode"].as_u64().unwrap(),
                f["overwrite"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/etc/realms/provision.yaml",
                MANIFEST.as_bytes().to_vec(),
                0o644,
                true
            ),
            (
                "/etc/realms/provision.d/50-bar.yaml",
                DROPIN.as_bytes().to_vec(),
                0o644,
                true
            ),
            ("/etc/realms/keys.d/repo.pub", s.key_text(), 0o644, true),
        ]
    );
    let units: Vec<(&str, bool)> = doc["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["enabled"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        units,
        [
            ("realms-provision.service", true),
            ("realms-provision-update.timer", true)
        ]
    );
}

/// The schema check can fail: what Ignition would reject, the schema rejects.
#[test]
fn the_schema_rejects_what_ignition_rejects() {
    let v = validator();
    let s = Setup::new();
    let good: Value = serde_json::from_str(
        &config(&s.root(), &s.input(&[]))
            .unwrap()
            .to_ignition()
            .unwrap(),
    )
    .unwrap();
    let mut octal_string = good.clone();
    octal_string["storage"]["files"][0]["mode"] = Value::from("0644");
    let mut no_version = good.clone();
    no_version["ignition"] = serde_json::json!({});
    let mut no_unit_name = good.clone();
    no_unit_name["systemd"]["units"][0] = serde_json::json!({ "enabled": true });
    for bad in [octal_string, no_version, no_unit_name] {
        assert!(!errors(&v, &bad).is_empty(), "{bad}");
    }
}

#[test]
fn the_butane_config_is_fcos_1_5_0_with_the_same_files_inline() {
    let s = Setup::new();
    let config = config(&s.root(), &s.input(&[])).unwrap();
    let text = config.to_butane().unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(doc["variant"].as_str(), Some("fcos"), "{text}");
    assert_eq!(doc["version"].as_str(), Some("1.5.0"));
    let files = doc["storage"]["files"].as_sequence().unwrap();
    assert_eq!(files.len(), config.files.len());
    for (f, want) in files.iter().zip(&config.files) {
        assert_eq!(f["path"].as_str(), Some(want.path.as_str()));
        assert_eq!(f["mode"].as_u64(), Some(0o644));
        assert_eq!(f["overwrite"].as_bool(), Some(true));
        assert_eq!(
            f["contents"]["inline"].as_str().map(str::as_bytes),
            Some(want.contents.as_slice())
        );
    }
    let units = doc["systemd"]["units"].as_sequence().unwrap();
    assert_eq!(
        units[1]["name"].as_str(),
        Some("realms-provision-update.timer")
    );
    assert_eq!(units[1]["enabled"].as_bool(), Some(true));
}

#[test]
fn keys_by_file_or_name_and_none_is_refused() {
    let s = Setup::new();
    // A key file elsewhere, named NAME.pub: it keeps its name in keys.d.
    let other = s.dir.path().join("other");
    realms_image::keys::generate(&other, "fleet").unwrap();
    let fleet = other.join("etc/realms/keys.d/fleet.pub");
    let c = config(&s.root(), &s.input(&[fleet.clone(), "repo".into()])).unwrap();
    let paths: Vec<&str> = c.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        &paths[2..],
        [
            "/etc/realms/keys.d/fleet.pub",
            "/etc/realms/keys.d/repo.pub"
        ]
    );
    assert_eq!(c.files[2].contents, fs::read(&fleet).unwrap());
    // Not a key: refused, naming the file.
    let junk = s.dir.path().join("junk.pub");
    fs::write(&junk, "hello\n").unwrap();
    let e =
        crate::chain_text(&config(&s.root(), &s.input(std::slice::from_ref(&junk))).unwrap_err());
    assert!(e.contains(&junk.display().to_string()), "{e}");
    // No key trusted and none given.
    let e = config(&s.dir.path().join("empty"), &s.input(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--key"), "{e}");
}

#[test]
fn a_broken_manifest_is_refused_with_file_line_column() {
    let s = Setup::new();
    fs::write(
        s.dir.path().join("m.yaml"),
        "composable:\n  packages:\n    - name: goss\n      colour: red\n",
    )
    .unwrap();
    let e = config(&s.root(), &s.input(&[])).unwrap_err().to_string();
    assert!(e.contains("m.yaml:4:7:"), "{e}");
    // A package without any repository.
    fs::write(
        s.dir.path().join("m.yaml"),
        "composable:\n  packages:\n    - name: goss\n",
    )
    .unwrap();
    let mut input = s.input(&[]);
    input.dropins.clear();
    let e = config(&s.root(), &input).unwrap_err().to_string();
    assert!(e.contains("default_repository"), "{e}");
    // A drop-in PID 1 would not read.
    let mut input = s.input(&[]);
    fs::rename(s.dir.path().join("m.yaml"), s.dir.path().join("m.conf")).unwrap();
    input.dropins = vec![s.dir.path().join("m.conf")];
    input.manifest = s.dir.path().join("50-bar.yaml");
    let e = config(&s.root(), &input).unwrap_err().to_string();
    assert!(e.contains(".yaml or .yml"), "{e}");
}

#[test]
fn the_files_are_checked_as_the_machine_merges_them() {
    let s = Setup::new();
    fs::write(
        s.dir.path().join("m.yaml"),
        "composable:\n  default_repository: file:///r\n  packages:\n    - name: goss\n      export: [goss]\n",
    )
    .unwrap();
    fs::write(
        s.dir.path().join("50-bar.yaml"),
        "composable:\n  packages:\n    - name: bar\n      export: [goss]\n",
    )
    .unwrap();
    let e = config(&s.root(), &s.input(&[])).unwrap_err().to_string();
    assert!(e.contains("50-bar.yaml") && e.contains("'goss'"), "{e}");
    // The drop-in replacing the package of the same name is fine, as on the machine.
    fs::write(
        s.dir.path().join("50-bar.yaml"),
        "composable:\n  packages:\n    - name: goss\n      export: [goss]\n      version: '2'\n",
    )
    .unwrap();
    config(&s.root(), &s.input(&[])).unwrap();
}
