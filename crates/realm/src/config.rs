//! Realm configuration: the TOML options of the seed and the ones Citadel's users needed.
//!
//! `/realms/config` is the template copied into each new realm as `/realms/realm-NAME/config`.
//! A key missing from a realm's file takes its built-in default. Unknown keys and bad values
//! are errors that name the file, the line, the key and what is allowed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::value::{BindProblem, ValueProblem};
use crate::{Error, Result};

/// One realm's options. Every field is optional in the file; the accessors apply the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RealmConfig {
    /// Bind `/realms/Shared` into the realm's home.
    pub use_shared_dir: Option<bool>,
    /// Give the realm the user's sound server.
    pub use_sound: Option<bool>,
    /// Give the realm the X11 socket.
    pub use_x11: Option<bool>,
    /// Give the realm the Wayland socket.
    pub use_wayland: Option<bool>,
    /// Give the realm the GPU devices.
    pub use_gpu: Option<bool>,
    /// Give the realm `/dev/kvm`.
    pub use_kvm: Option<bool>,
    /// Put the realm in a network zone (else loopback only).
    pub use_network: Option<bool>,
    /// The network zone.
    pub network_zone: Option<String>,
    /// A fresh home from skel at every start, thrown away at stop.
    pub use_ephemeral_home: Option<bool>,
    /// Host directories bound read-write (`HOST[:REALM]`).
    pub extra_bindmounts: Option<Vec<String>>,
    /// Host directories bound read-only (`HOST[:REALM]`).
    pub extra_bindmounts_ro: Option<Vec<String>>,
    /// Host ports forwarded into the realm (`PROTO:HOST:REALM`).
    pub port_forward: Option<Vec<String>>,
    /// The application image the realm is made on.
    pub appimg: Option<String>,
    /// Start the realm at boot.
    pub autostart: Option<bool>,
    /// The label shown after the names of the realm's apps.
    pub label: Option<String>,
    /// The realm's colour, `#rrggbb`.
    pub color: Option<String>,
    /// Host fonts, icons and themes visible read-only in the realm.
    pub use_host_themes: Option<bool>,
}

/// What a key holds, for validation and for `realms config NAME` listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `true` or `false` (on, off, yes, no, 1, 0).
    Bool,
    /// A network zone name.
    Zone,
    /// An application image name.
    Image,
    /// A list of bind mounts.
    BindList,
    /// A list of port forwards.
    PortList,
    /// A short label.
    Label,
    /// A colour, `#rrggbb`.
    Color,
}

/// Every key, its type, its default (as TOML) and what it does.
pub const KEYS: &[(&str, KeyType, &str, &str)] = &[
    (
        "use-shared-dir",
        KeyType::Bool,
        "true",
        "bind /realms/Shared at /home/user/Shared",
    ),
    (
        "use-sound",
        KeyType::Bool,
        "true",
        "the PipeWire and PulseAudio sockets and the sound devices",
    ),
    (
        "use-x11",
        KeyType::Bool,
        "true",
        "the X11 socket directory /tmp/.X11-unix",
    ),
    (
        "use-wayland",
        KeyType::Bool,
        "true",
        "the wayland socket /run/user/1000/wayland-0",
    ),
    (
        "use-gpu",
        KeyType::Bool,
        "false",
        "the render device /dev/dri/renderD128",
    ),
    ("use-kvm", KeyType::Bool, "false", "the device /dev/kvm"),
    (
        "use-network",
        KeyType::Bool,
        "true",
        "a network zone; false leaves only a loopback interface",
    ),
    (
        "network-zone",
        KeyType::Zone,
        "\"clear\"",
        "the zone: bridge vz-ZONE on the host",
    ),
    (
        "use-ephemeral-home",
        KeyType::Bool,
        "false",
        "a home on tmpfs, seeded from /realms/skel at each start",
    ),
    (
        "extra-bindmounts",
        KeyType::BindList,
        "[]",
        "read-write binds, \"HOST[:REALM]\"",
    ),
    (
        "extra-bindmounts-ro",
        KeyType::BindList,
        "[]",
        "read-only binds, \"HOST[:REALM]\"",
    ),
    (
        "port-forward",
        KeyType::PortList,
        "[]",
        "host ports forwarded to the realm, \"[tcp:|udp:]HOSTPORT[:REALMPORT]\" (needs a network zone)",
    ),
    (
        "autostart",
        KeyType::Bool,
        "false",
        "start the realm at boot (`realms autostart NAME on`), beside the default realm",
    ),
    (
        "use-host-themes",
        KeyType::Bool,
        "true",
        "the host's fonts, icon, cursor and GTK themes, read-only, so apps look native",
    ),
    (
        "label",
        KeyType::Label,
        "the realm's name",
        "shown after the names of the realm's apps on the desktop (`Firefox (work)`)",
    ),
    (
        "color",
        KeyType::Color,
        "one derived from the name",
        "the realm's colour, \"#rrggbb\", on its desktop entries",
    ),
    (
        "appimg",
        KeyType::Image,
        "\"base\"",
        "the application image the realm was created from",
    ),
];

/// The text of the config file at `path` before an edit: a missing file is empty; one that is
/// not UTF-8 is an error naming it (an edit must never replace settings it could not read).
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(realms_sys::Error::io("reading the realm config", path, e).into()),
    };
    String::from_utf8(bytes).map_err(|e| Error::ConfigNotUtf8 {
        path: path.to_path_buf(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
    })
}

impl RealmConfig {
    /// Parses a config file's text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<RealmConfig> {
        let config: RealmConfig =
            toml::from_str(text).map_err(|e| crate::error::bad_file(path, text, &e))?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads a config file; a missing file is the all-defaults config.
    pub fn load(path: &Path) -> Result<RealmConfig> {
        RealmConfig::parse(&read_text(path)?, path)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if let Some(zone) = &self.network_zone {
            crate::names::validate_zone(zone)
                .map_err(|r| bad_value(path, "network-zone", zone, ValueProblem::ZoneName(r)))?;
        }
        for (key, list) in [
            ("extra-bindmounts", &self.extra_bindmounts),
            ("extra-bindmounts-ro", &self.extra_bindmounts_ro),
        ] {
            for bind in list.iter().flatten() {
                parse_bind(bind).map_err(|r| bad_value(path, key, bind, ValueProblem::Bind(r)))?;
            }
        }
        if let Some(list) = &self.port_forward {
            crate::forward::parse_list(list.iter().map(String::as_str)).map_err(|(entry, r)| {
                bad_value(path, "port-forward", &entry, ValueProblem::Forward(r))
            })?;
        }
        if let Some(label) = &self.label {
            validate_label(label).map_err(|r| bad_value(path, "label", label, r))?;
        }
        if let Some(color) = &self.color {
            validate_color(color).map_err(|r| bad_value(path, "color", color, r))?;
        }
        if let Some(img) = &self.appimg {
            image_name(img).map_err(|r| bad_value(path, "appimg", img, r))?;
        }
        Ok(())
    }

    /// `use-shared-dir`, with its default.
    pub fn use_shared_dir(&self) -> bool {
        self.use_shared_dir.unwrap_or(true)
    }
    /// `use-sound`, with its default.
    pub fn use_sound(&self) -> bool {
        self.use_sound.unwrap_or(true)
    }
    /// `use-x11`, with its default.
    pub fn use_x11(&self) -> bool {
        self.use_x11.unwrap_or(true)
    }
    /// `use-wayland`, with its default.
    pub fn use_wayland(&self) -> bool {
        self.use_wayland.unwrap_or(true)
    }
    /// `use-gpu`, with its default.
    pub fn use_gpu(&self) -> bool {
        self.use_gpu.unwrap_or(false)
    }
    /// `use-kvm`, with its default.
    pub fn use_kvm(&self) -> bool {
        self.use_kvm.unwrap_or(false)
    }
    /// `use-network`, with its default.
    pub fn use_network(&self) -> bool {
        self.use_network.unwrap_or(true)
    }
    /// `network-zone`, with its default.
    pub fn network_zone(&self) -> &str {
        self.network_zone.as_deref().unwrap_or("clear")
    }
    /// `use-ephemeral-home`, with its default.
    pub fn use_ephemeral_home(&self) -> bool {
        self.use_ephemeral_home.unwrap_or(false)
    }
    /// `use-host-themes`, with its default.
    pub fn use_host_themes(&self) -> bool {
        self.use_host_themes.unwrap_or(true)
    }
    /// `autostart`, with its default.
    pub fn autostart(&self) -> bool {
        self.autostart.unwrap_or(false)
    }
    /// `appimg`, with its default.
    pub fn appimg(&self) -> &str {
        self.appimg.as_deref().unwrap_or("base")
    }

    /// The label shown after the names of the realm's apps (default: the realm's name).
    pub fn label_or<'a>(&'a self, name: &'a str) -> &'a str {
        self.label.as_deref().unwrap_or(name)
    }

    /// The realm's colour, `#rrggbb` (default: one of a palette, picked by the name).
    pub fn color_or(&self, name: &str) -> String {
        self.color.clone().unwrap_or_else(|| default_color(name))
    }

    /// The port forwards (validated when the config was read).
    pub fn port_forwards(&self) -> Vec<crate::forward::PortForward> {
        let list = self.port_forward.iter().flatten().map(String::as_str);
        crate::forward::parse_list(list).unwrap_or_default()
    }

    /// The extra binds: (host path, path in the realm, read-only).
    pub fn extra_binds(&self) -> Vec<(PathBuf, PathBuf, bool)> {
        let rw = self.extra_bindmounts.iter().flatten().map(|b| (b, false));
        let ro = self.extra_bindmounts_ro.iter().flatten().map(|b| (b, true));
        rw.chain(ro)
            .filter_map(|(b, ro)| parse_bind(b).ok().map(|(h, r)| (h, r, ro)))
            .collect()
    }
}

/// `HOST[:REALM]`, both absolute, no `..`, no newline or comma (nspawn's separators).
pub fn parse_bind(spec: &str) -> std::result::Result<(PathBuf, PathBuf), BindProblem> {
    let (host, inside) = spec.split_once(':').unwrap_or((spec, spec));
    for p in [host, inside] {
        if !p.starts_with('/') {
            return Err(BindProblem::NotAbsolute(p.to_string()));
        }
        if p.split('/').any(|c| c == "..") || p.contains(['\n', ',', ':']) {
            return Err(BindProblem::BadCharacter(p.to_string()));
        }
    }
    Ok((PathBuf::from(host), PathBuf::from(inside)))
}

/// The TOML value a user typed on the command line, checked against the key's type.
pub fn parse_value(key: &str, value: &str) -> Result<toml::Value> {
    let (_, ty, _, _) = KEYS
        .iter()
        .find(|(k, ..)| *k == key)
        .ok_or_else(|| unknown_key(key))?;
    let invalid = |problem: ValueProblem| Error::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        problem,
    };
    match ty {
        KeyType::Bool => parse_bool(value)
            .map(toml::Value::Boolean)
            .ok_or_else(|| invalid(ValueProblem::NotBool)),
        KeyType::Zone => {
            crate::names::validate_zone(value).map_err(|r| invalid(ValueProblem::ZoneName(r)))?;
            Ok(toml::Value::String(value.to_string()))
        }
        KeyType::Image => {
            image_name(value).map_err(invalid)?;
            Ok(toml::Value::String(value.to_string()))
        }
        KeyType::Label => {
            validate_label(value).map_err(invalid)?;
            Ok(toml::Value::String(value.to_string()))
        }
        KeyType::Color => {
            validate_color(value).map_err(invalid)?;
            Ok(toml::Value::String(value.to_string()))
        }
        KeyType::PortList => {
            let items = list_items(key, value)?;
            let items: Vec<&str> = items.iter().map(String::as_str).collect();
            crate::forward::parse_list(items.iter().copied()).map_err(|(entry, r)| {
                Error::BadValue {
                    key: key.to_string(),
                    value: entry,
                    problem: ValueProblem::Forward(r),
                }
            })?;
            Ok(toml::Value::Array(
                items
                    .into_iter()
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ))
        }
        KeyType::BindList => {
            let items = list_items(key, value)?;
            let items: Vec<&str> = items.iter().map(String::as_str).collect();
            for item in &items {
                parse_bind(item).map_err(|r| invalid(ValueProblem::Bind(r)))?;
            }
            Ok(toml::Value::Array(
                items
                    .into_iter()
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ))
        }
    }
}

/// A label: 1 to 40 characters, no control characters.
fn validate_label(label: &str) -> std::result::Result<(), ValueProblem> {
    let n = label.chars().count();
    if n == 0 || n > 40 || label.chars().any(char::is_control) || label.trim() != label {
        return Err(ValueProblem::Label);
    }
    Ok(())
}

/// A colour: `#rrggbb`.
fn validate_color(color: &str) -> std::result::Result<(), ValueProblem> {
    let ok = color.len() == 7
        && color.starts_with('#')
        && color[1..].chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        return Err(ValueProblem::Color);
    }
    Ok(())
}

/// The default colour of realm `name`: one of the Tango palette, by a hash of the name (the
/// same name always gets the same colour).
pub fn default_color(name: &str) -> String {
    const PALETTE: &[&str] = &[
        "#3465a4", "#73d216", "#f57900", "#75507b", "#cc0000", "#c17d11", "#edd400", "#555753",
    ];
    let hash = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    PALETTE[hash as usize % PALETTE.len()].to_string()
}

/// The entries of a list value: the TOML form `realms config` shows (`["/a", "/b:/c"]`), or
/// entries separated by spaces or commas (`/a /b:/c`).
fn list_items(key: &str, value: &str) -> Result<Vec<String>> {
    if !value.trim_start().starts_with('[') {
        return Ok(value
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect());
    }
    let bad = |problem: ValueProblem| Error::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        problem,
    };
    let table: toml::Table = toml::from_str(&format!("list = {value}")).map_err(|e| {
        bad(ValueProblem::NotTomlList {
            message: e.message().to_string(),
        })
    })?;
    table["list"]
        .as_array()
        .ok_or_else(|| bad(ValueProblem::NotAList))?
        .iter()
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| {
                bad(ValueProblem::NotAString {
                    entry: v.to_string(),
                })
            })
        })
        .collect()
}

/// Whether `key` holds a list (so `--add` and `--remove` apply to it).
pub fn is_list(key: &str) -> bool {
    KEYS.iter()
        .any(|(k, ty, ..)| *k == key && matches!(ty, KeyType::BindList | KeyType::PortList))
}

pub(crate) fn unknown_key(key: &str) -> Error {
    Error::UnknownKey {
        key: key.to_string(),
        known: KEYS.iter().map(|(k, ..)| *k).collect::<Vec<_>>().join(", "),
    }
}

fn bad_value(path: &Path, key: &str, value: &str, problem: ValueProblem) -> Error {
    Error::BadConfigValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        value: value.to_string(),
        problem: Box::new(problem),
    }
}

/// An image name checked against the one name rule.
fn image_name(name: &str) -> std::result::Result<(), ValueProblem> {
    match realms_image::validate_name("image", name) {
        Err(realms_image::Error::InvalidName { rule, .. }) => Err(ValueProblem::ImageName(rule)),
        _ => Ok(()),
    }
}

/// Sets `key = value` in a flat TOML file, keeping every other line (and comments) as it was.
pub(crate) fn set_line(text: &str, key: &str, value: &toml::Value) -> String {
    let line = format!("{key} = {value}");
    let mut out = Vec::new();
    let mut done = false;
    for l in text.lines() {
        let is_key = l.split_once('=').is_some_and(|(k, _)| k.trim() == key)
            && !l.trim_start().starts_with('#');
        if is_key {
            if !done {
                out.push(line.clone());
                done = true;
            }
        } else {
            out.push(l.to_string());
        }
    }
    if !done {
        out.push(line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// A boolean as the command line gives it, for every option that takes one (realm config
/// keys, a zone's `nat`): true, yes, on, 1 or false, no, off, 0.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let c = RealmConfig::parse("", Path::new("c")).unwrap();
        assert!(
            c.use_shared_dir()
                && c.use_sound()
                && c.use_x11()
                && c.use_wayland()
                && c.use_network()
        );
        assert!(!c.use_gpu() && !c.use_kvm() && !c.use_ephemeral_home());
        assert_eq!(c.network_zone(), "clear");
        assert_eq!(c.appimg(), "base");
    }

    #[test]
    fn seed_lines_parse() {
        let c = RealmConfig::parse("use-gpu = true\nnetwork-zone = \"work\"\n", Path::new("c"))
            .unwrap();
        assert!(c.use_gpu());
        assert_eq!(c.network_zone(), "work");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = RealmConfig::parse(
            "use-gpu = true\nuse-gpus = true\n",
            Path::new("/realms/realm-a/config"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/realms/realm-a/config"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("use-gpus"), "{err}");
    }

    #[test]
    fn bad_type_and_syntax_are_errors_not_panics() {
        for text in [
            "use-gpu = \"yes\"\n",
            "use-gpu = \n",
            "[[[\n",
            "network-zone = \"Bad Zone\"\n",
            "extra-bindmounts = [\"relative\"]\n",
            "\u{0}",
        ] {
            let err = RealmConfig::parse(text, Path::new("cfg"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("cfg"), "{text:?}: {err}");
        }
    }

    #[test]
    fn values_from_the_command_line_are_checked() {
        assert_eq!(
            parse_value("use-kvm", "true").unwrap(),
            toml::Value::Boolean(true)
        );
        let err = parse_value("use-kvm", "maybe").unwrap_err().to_string();
        assert!(
            err.contains("use-kvm") && err.contains("true or false"),
            "{err}"
        );
        let err = parse_value("use-kvmm", "true").unwrap_err().to_string();
        assert!(err.contains("use-kvmm") && err.contains("use-kvm"), "{err}");
        assert!(parse_value("extra-bindmounts", "/a:/b /c").is_ok());
        assert!(parse_value("extra-bindmounts", "/a/../b").is_err());
    }

    #[test]
    fn port_forwards_are_checked_naming_the_key_and_the_entry() {
        let c = RealmConfig::parse(
            "port-forward = [\"tcp:8080:80\", \"udp:53\"]\n",
            Path::new("c"),
        )
        .unwrap();
        assert_eq!(c.port_forwards().len(), 2);
        assert_eq!(c.port_forwards()[0].to_string(), "tcp:8080:80");
        let err = RealmConfig::parse(
            "port-forward = [\"tcp:80:80\", \"tcp:0:1\"]\n",
            Path::new("cfg"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("cfg") && err.contains("port-forward") && err.contains("tcp:0:1"),
            "{err}"
        );
        let err = parse_value("port-forward", "tcp:8080:80 http")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("port-forward") && err.contains("'http'"),
            "{err}"
        );
        let err = parse_value("port-forward", "8080:80,tcp:8080:81")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tcp:8080:81") && err.contains("already"),
            "{err}"
        );
        assert_eq!(
            parse_value("port-forward", "tcp:8080:80, udp:53").unwrap(),
            toml::Value::Array(vec!["tcp:8080:80".into(), "udp:53".into()])
        );
    }

    #[test]
    fn binds_parse() {
        assert_eq!(
            parse_bind("/a").unwrap(),
            (PathBuf::from("/a"), PathBuf::from("/a"))
        );
        assert_eq!(
            parse_bind("/a:/b").unwrap(),
            (PathBuf::from("/a"), PathBuf::from("/b"))
        );
        assert!(parse_bind("a:/b").is_err());
    }

    #[test]
    fn set_line_replaces_or_appends_and_keeps_comments() {
        let text = "# comment\nuse-gpu = false\nuse-kvm = false\n";
        assert_eq!(
            set_line(text, "use-gpu", &toml::Value::Boolean(true)),
            "# comment\nuse-gpu = true\nuse-kvm = false\n"
        );
        assert_eq!(
            set_line(text, "network-zone", &toml::Value::String("work".into())),
            "# comment\nuse-gpu = false\nuse-kvm = false\nnetwork-zone = \"work\"\n"
        );
    }

    #[test]
    fn label_and_color_have_defaults_from_the_name_and_are_validated() {
        let c = RealmConfig::default();
        assert_eq!(c.label_or("work"), "work");
        assert_eq!(c.color_or("work"), c.color_or("work"));
        assert!(validate_color(&c.color_or("work")).is_ok());
        let set =
            RealmConfig::parse("label = \"Work\"\ncolor = \"#112233\"\n", Path::new("c")).unwrap();
        assert_eq!(
            (set.label_or("work"), set.color_or("work").as_str()),
            ("Work", "#112233")
        );
        for bad in [
            "color = \"red\"\n",
            "color = \"#12345g\"\n",
            "label = \"\"\n",
        ] {
            let err = RealmConfig::parse(bad, Path::new("c"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("c"), "{err}");
        }
        assert!(parse_value("color", "#abcdef").is_ok());
        assert!(parse_value("label", " x").is_err());
    }
}
