//! The manifest: which portable-service packages this machine runs, from which repository, with
//! which profile, and which of their units are enabled and started.
//!
//! `/etc/realms/provision.yaml`, then the drop-ins `/etc/realms/provision.d/*.yaml` in name
//! order: a drop-in's `default_repository` replaces the one before, and its packages are added,
//! replacing an earlier package of the same name. The schema is strict: an unknown key, a value
//! of the wrong type or a missing name is an error naming the file, line, column and key.

use realms_sys::IoContext;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, ManifestProblem, Result};

/// The default manifest, under the root.
pub const DEFAULT_PATH: &str = "etc/realms/provision.yaml";
/// The drop-in directory, under the root.
pub const DROPIN_DIR: &str = "etc/realms/provision.d";

/// A stream of a repository: which versions a machine follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Released versions (the default).
    #[default]
    Stable,
    /// The next stable.
    Testing,
    /// Further ahead.
    Next,
}

impl Stream {
    /// Its name, as in the manifest and the index file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stable => "stable",
            Stream::Testing => "testing",
            Stream::Next => "next",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stream {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "stable" => Ok(Stream::Stable),
            "testing" => Ok(Stream::Testing),
            "next" => Ok(Stream::Next),
            _ => Err(format!("unknown stream '{s}': use stable, testing or next")),
        }
    }
}

/// How an image is attached (portablectl's `--copy=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallMethod {
    /// Unit files copied, profile and image symlinked.
    #[default]
    Auto,
    /// Unit files and profile copied.
    Copy,
    /// Unit files and profile symlinked.
    Symlink,
}

/// One package of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// The package name (the image name, the prefix of its units).
    pub name: String,
    /// Its repository; the manifest's `default_repository` when absent.
    #[serde(default)]
    pub repository: Option<String>,
    /// An exact version, or `latest` (the highest the stream lists).
    #[serde(default = "latest")]
    pub version: String,
    /// The stream whose index is followed.
    #[serde(default)]
    pub track_stream: Stream,
    /// Units enabled after the attach.
    #[serde(default)]
    pub enable: Vec<String>,
    /// Units started after the attach.
    #[serde(default)]
    pub start: Vec<String>,
    /// The portable profile.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// How the image is attached.
    #[serde(default)]
    pub install_method: InstallMethod,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
    /// Commands of the image made native-looking in /usr/local/bin (see [`crate::export`]).
    #[serde(default)]
    pub export: Vec<String>,
    /// The health check after an update (`realms provision update`).
    #[serde(default)]
    pub health: Health,
    /// Whether `realms provision update` may move to a lower version (after a `track_stream`
    /// switch, or when the stream's newest went down).
    #[serde(default)]
    pub allow_downgrade: bool,
}

/// The health check of an update: every started unit active (not failed, not restarting) for
/// `settle`, then `command` (if any) run inside the package's image exits 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// How long the units must stay active: `30s`, `2min`, `500ms` or seconds as a number.
    #[serde(default = "default_settle", with = "settle")]
    pub settle: std::time::Duration,
    /// A probe run inside the package's image (argv), after the settle time.
    #[serde(default)]
    pub command: Vec<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            settle: default_settle(),
            command: Vec::new(),
        }
    }
}

fn default_settle() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

/// A duration as the manifest writes it: a number of seconds, or a number with a unit
/// (`ms`, `s`, `min`, `h`).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    let ms = match text[digits..].trim() {
        "ms" => n,
        "" | "s" | "sec" => n.checked_mul(1000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

mod settle {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Secs(n) => return Ok(Duration::from_secs(n)),
            Raw::Text(t) => t,
        };
        super::parse_duration(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "settle: '{text}' is not a duration: use e.g. 30s, 2min, 500ms or a number of seconds"
            ))
        })
    }
}

fn latest() -> String {
    "latest".into()
}

fn default_profile() -> String {
    "default".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    composable: Composable,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Composable {
    #[serde(default)]
    default_repository: Option<String>,
    #[serde(default)]
    packages: Vec<Package>,
    #[serde(default)]
    updates: Option<crate::window::Updates>,
}

/// The merged manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// The packages, each with its repository resolved.
    pub packages: Vec<Package>,
    /// When `realms provision update` may update (the last file that says wins).
    pub updates: crate::window::Updates,
}

/// Whether `text` holds nothing but blank lines and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---")
}

/// Parses one manifest file's text (`file` names it in errors); the package repositories are
/// left as written.
pub fn parse(file: &Path, text: &str) -> Result<(Option<String>, Vec<Package>)> {
    parse_all(file, text).map(|(d, p, _)| (d, p))
}

/// [`parse`], with the file's `updates` (strategy and maintenance windows), if it has one.
#[allow(clippy::type_complexity)]
pub fn parse_all(
    file: &Path,
    text: &str,
) -> Result<(Option<String>, Vec<Package>, Option<crate::window::Updates>)> {
    if is_blank(text) {
        return Ok((None, Vec::new(), None));
    }
    let doc: FileDoc = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(file, &e))?;
    let mut packages = doc.composable.packages;
    for p in &mut packages {
        p.file = file.to_path_buf();
        check_package(p)?;
    }
    if let Some(problem) = doc
        .composable
        .updates
        .iter()
        .flat_map(|u| &u.windows)
        .find_map(|w| w.problem())
    {
        return Err(Error::ManifestValue {
            file: file.to_path_buf(),
            package: "(updates)".into(),
            reason: ManifestProblem::Window(problem),
        });
    }
    if let Some(u) = &doc.composable.updates {
        let problem = match (&u.strategy, &u.fleet_lock) {
            (crate::window::Strategy::FleetLock, None) => Some(ManifestProblem::NoFleetLock),
            (_, Some(f)) if f.slots == 0 => Some(ManifestProblem::NoSlots),
            _ => None,
        };
        if let Some(problem) = problem {
            return Err(Error::ManifestValue {
                file: file.to_path_buf(),
                package: "(updates)".into(),
                reason: problem,
            });
        }
    }
    Ok((
        doc.composable.default_repository,
        packages,
        doc.composable.updates,
    ))
}

/// A YAML error as `file:line:column: message` (the message without serde_yaml's own
/// " at line L column C").
fn yaml_error(file: &Path, e: &serde_yaml_ng::Error) -> Error {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let mut message = e.to_string();
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    Error::Manifest {
        file: file.to_path_buf(),
        line,
        column,
        message: explain(&message),
    }
}

/// Adds what is allowed to serde's messages where it does not say.
fn explain(message: &str) -> String {
    if message.contains("missing field `composable`") {
        return format!("{message}: a manifest is a mapping with one key, composable");
    }
    if message.contains("invalid type") {
        let hint = "keys: name, repository, version and profile are strings; enable and start \
                    are lists of unit names; track_stream is stable, testing or next; \
                    install_method is copy, symlink or auto; health is a mapping with settle \
                    (e.g. 30s) and command (a list); allow_downgrade is true or false; export is a list of command names";
        return format!("{message} ({hint})");
    }
    message.to_string()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+'))
}

/// Whether `s` is a valid version: `latest`, or a non-empty word of letters, digits and
/// `.-+~^` starting with a letter or digit.
pub fn valid_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | '~' | '^'))
}

fn check_package(p: &Package) -> Result<()> {
    let bad = |reason: ManifestProblem| Error::ManifestValue {
        file: p.file.clone(),
        package: p.name.clone(),
        reason,
    };
    if !valid_name(&p.name) {
        return Err(bad(ManifestProblem::Name));
    }
    if !valid_version(&p.version) {
        return Err(bad(ManifestProblem::Version(p.version.clone())));
    }
    if !valid_name(&p.profile) {
        return Err(bad(ManifestProblem::ProfileName(p.profile.clone())));
    }
    if p.health
        .command
        .first()
        .is_some_and(|c| !c.starts_with('/'))
    {
        return Err(bad(ManifestProblem::HealthCommand(
            p.health.command[0].clone(),
        )));
    }
    if p.health.settle > std::time::Duration::from_secs(3600) {
        return Err(bad(ManifestProblem::HealthSettle));
    }
    for (key, units) in [("enable", &p.enable), ("start", &p.start)] {
        for u in units {
            let ok = u.starts_with(&p.name)
                && [".service", ".socket", ".timer", ".path", ".target"]
                    .iter()
                    .any(|s| u.ends_with(s))
                && !u.contains('/');
            if !ok {
                return Err(bad(ManifestProblem::Unit {
                    key,
                    unit: u.clone(),
                }));
            }
        }
    }
    for (i, name) in p.export.iter().enumerate() {
        if !crate::export::valid_name(name) {
            return Err(bad(ManifestProblem::ExportName(name.clone())));
        }
        if p.export[..i].contains(name) {
            return Err(bad(ManifestProblem::ExportTwice(name.clone())));
        }
    }
    Ok(())
}

/// The manifest files under `root`: `manifest` (or the default path when it exists), then the
/// drop-ins in name order.
pub fn files(root: &Path, manifest: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match manifest {
        Some(m) => out.push(m.to_path_buf()),
        None => {
            let p = root.join(DEFAULT_PATH);
            if p.exists() {
                out.push(p);
            }
        }
    }
    let dir = root.join(DROPIN_DIR);
    match fs::read_dir(&dir) {
        Ok(entries) => {
            let mut dropins: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            dropins.sort();
            out.extend(dropins);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading", dir, e)),
    }
    Ok(out)
}

/// Reads and merges the manifest files, resolving each package's repository.
pub fn load(root: &Path, manifest: Option<&Path>) -> Result<Manifest> {
    merge(files(root, manifest)?)
}

/// Reads and merges `files` in order (a manifest, then its drop-ins), resolving each package's
/// repository.
pub fn merge(files: Vec<PathBuf>) -> Result<Manifest> {
    let mut default_repository: Option<String> = None;
    let mut packages: Vec<Package> = Vec::new();
    let mut updates = crate::window::Updates::default();
    for file in &files {
        let text = fs::read_to_string(file).ctx("reading", file)?;
        let (default, found, file_updates) = parse_all(file, &text)?;
        if default.is_some() {
            default_repository = default;
        }
        if let Some(u) = file_updates {
            updates = u;
        }
        for p in found {
            match packages.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p,
                None => packages.push(p),
            }
        }
    }
    for p in &mut packages {
        if p.repository.is_none() {
            p.repository = default_repository.clone();
        }
        if p.repository.is_none() {
            return Err(Error::ManifestValue {
                file: p.file.clone(),
                package: p.name.clone(),
                reason: ManifestProblem::NoRepository,
            });
        }
    }
    for (i, p) in packages.iter().enumerate() {
        if let Some((q, name)) = packages[..i].iter().find_map(|q| {
            p.export
                .iter()
                .find(|n| q.export.contains(n))
                .map(|n| (q, n))
        }) {
            return Err(Error::ManifestValue {
                file: p.file.clone(),
                package: p.name.clone(),
                reason: ManifestProblem::ExportedTwice {
                    command: name.clone(),
                    other: q.name.clone(),
                },
            });
        }
    }
    Ok(Manifest {
        files,
        packages,
        updates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "\
composable:
  default_repository: https://example.org/portables
  packages:
    - name: goss
      repository: file:///media/usb1/fcos      # optional; default_repository otherwise
      version: v0.0.1                           # an exact version, or: latest
      track_stream: stable                      # stable | next | testing
      enable: [goss-serve.service]
      start: [goss.socket, goss-serve.service]
      profile: default
      install_method: copy
";

    fn err(text: &str) -> String {
        parse(Path::new("/etc/realms/provision.yaml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_seed_manifest_parses() {
        let (default, packages) = parse(Path::new("m.yaml"), SEED).unwrap();
        assert_eq!(default.as_deref(), Some("https://example.org/portables"));
        let p = &packages[0];
        assert_eq!(p.name, "goss");
        assert_eq!(p.repository.as_deref(), Some("file:///media/usb1/fcos"));
        assert_eq!(p.version, "v0.0.1");
        assert_eq!(p.track_stream, Stream::Stable);
        assert_eq!(p.start, ["goss.socket", "goss-serve.service"]);
        assert_eq!(p.install_method, InstallMethod::Copy);
        assert_eq!(p.file, Path::new("m.yaml"));
    }

    #[test]
    fn defaults_apply() {
        let (_, packages) = parse(
            Path::new("m.yaml"),
            "composable:\n  packages:\n    - name: foo\n",
        )
        .unwrap();
        let p = &packages[0];
        assert_eq!(
            (p.version.as_str(), p.profile.as_str()),
            ("latest", "default")
        );
        assert_eq!(p.install_method, InstallMethod::Auto);
    }

    #[test]
    fn an_unknown_key_names_file_line_column_and_what_is_allowed() {
        let e = err("composable:\n  packages:\n    - name: foo\n      colour: red\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:4:7: "), "{e}");
        assert!(e.contains("colour") && e.contains("install_method"), "{e}");
        let e = err("composable:\n  default_repo: x\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:2:3: "), "{e}");
        assert!(e.contains("default_repository"), "{e}");
        let e = err("other: 1\n");
        assert!(e.contains(":1:1: ") && e.contains("composable"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_file_line_column() {
        let e = err("composable:\n  packages:\n    - name: foo\n      enable: goss.service\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:4:15: "), "{e}");
        assert!(e.contains("invalid type") && e.contains("enable"), "{e}");
        let e = err("composable:\n  packages:\n    - name: foo\n      track_stream: beta\n");
        assert!(e.contains(":4:21: ") && e.contains("stable"), "{e}");
        let e = err("composable:\n  packages: {}\n");
        assert!(e.contains(":2:13: "), "{e}");
    }

    #[test]
    fn a_missing_name_names_file_line_column() {
        let e = err("composable:\n  packages:\n    - version: v1\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:3:7: "), "{e}");
        assert!(e.contains("missing field `name`"), "{e}");
    }

    #[test]
    fn a_syntax_error_names_file_line_column() {
        let e = err("composable:\n  packages:\n    - name: [foo\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:"), "{e}");
        let e = err("composable:\n\tpackages: []\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:2:"), "{e}");
    }

    #[test]
    fn bad_values_name_the_package_and_key() {
        let e = err("composable:\n  packages:\n    - name: foo_bar\n");
        assert!(e.contains("'foo_bar'") && e.contains("key name"), "{e}");
        let e = err("composable:\n  packages:\n    - name: foo\n      version: a/b\n");
        assert!(e.contains("key version"), "{e}");
        let e = err("composable:\n  packages:\n    - name: foo\n      start: [bar.service]\n");
        assert!(e.contains("key start") && e.contains("bar.service"), "{e}");
        for bad in ["../goss", "/usr/bin/goss", "a/b", "..", ".hidden", ""] {
            let e = err(&format!(
                "composable:\n  packages:\n    - name: foo\n      export: ['{bad}']\n"
            ));
            assert!(
                e.contains("key export") && e.contains("'foo'"),
                "{bad}: {e}"
            );
        }
        let e = err("composable:\n  packages:\n    - name: foo\n      export: [a, a]\n");
        assert!(e.contains("listed twice"), "{e}");
        let (_, ok) = parse(
            Path::new("m.yaml"),
            "composable:\n  packages:\n    - name: goss\n      export: [goss, goss-cli]\n",
        )
        .unwrap();
        assert_eq!(ok[0].export, ["goss", "goss-cli"]);
    }

    #[test]
    fn health_and_allow_downgrade_parse_and_default() {
        let (_, packages) = parse(
            Path::new("m.yaml"),
            "composable:\n  packages:\n    - name: foo\n      health: {settle: 3s, command: [/usr/bin/true, x]}\n      allow_downgrade: true\n    - name: bar\n      health:\n        settle: 2\n",
        )
        .unwrap();
        assert_eq!(packages[0].health.settle, std::time::Duration::from_secs(3));
        assert_eq!(packages[0].health.command, ["/usr/bin/true", "x"]);
        assert!(packages[0].allow_downgrade);
        assert_eq!(packages[1].health.settle, std::time::Duration::from_secs(2));
        assert!(packages[1].health.command.is_empty() && !packages[1].allow_downgrade);
        let (_, packages) = parse(
            Path::new("m.yaml"),
            "composable:\n  packages:\n    - name: foo\n",
        )
        .unwrap();
        assert_eq!(packages[0].health, Health::default());
        assert_eq!(
            packages[0].health.settle,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(
            parse_duration("2min"),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(
            parse_duration("500ms"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(parse_duration("5 parsecs"), None);
    }

    #[test]
    fn bad_health_and_allow_downgrade_name_file_line_column() {
        let e = err("composable:\n  packages:\n    - name: foo\n      health: {settle: soon}\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:4:"), "{e}");
        assert!(e.contains("'soon' is not a duration"), "{e}");
        let e = err("composable:\n  packages:\n    - name: foo\n      health: {probe: [x]}\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:4:"), "{e}");
        assert!(
            e.contains("probe") && e.contains("settle") && e.contains("command"),
            "{e}"
        );
        let e = err("composable:\n  packages:\n    - name: foo\n      allow_downgrade: maybe\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:4:24: "), "{e}");
        assert!(e.contains("allow_downgrade is true or false"), "{e}");
        let e = err("composable:\n  packages:\n    - name: foo\n      health: {command: [true]}\n");
        assert!(e.contains("key health.command"), "{e}");
    }

    #[test]
    fn update_windows_parse_and_bad_ones_are_refused() {
        let text = "composable:\n  updates:\n    strategy: periodic\n    windows:\n      - {days: [Sat, Sun], start_time: '22:30', length_minutes: 60}\n  packages: []\n";
        let (_, _, u) = parse_all(Path::new("m.yaml"), text).unwrap();
        let u = u.unwrap();
        assert_eq!(u.strategy, crate::window::Strategy::Periodic);
        assert_eq!(
            u.windows[0].days,
            [crate::window::Day::Sat, crate::window::Day::Sun]
        );
        let e = err(
            "composable:\n  updates:\n    windows:\n      - {days: [Sat], start_time: '25:00', length_minutes: 5}\n",
        );
        assert!(
            e.contains("key updates.windows") && e.contains("HH:MM"),
            "{e}"
        );
        let e = err("composable:\n  updates:\n    strategy: weekly\n");
        assert!(e.starts_with("/etc/realms/provision.yaml:3:15: "), "{e}");
        assert!(e.contains("immediate") && e.contains("periodic"), "{e}");
        let e = err(
            "composable:\n  updates:\n    windows:\n      - {days: [Someday], start_time: '01:00', length_minutes: 5}\n",
        );
        assert!(e.starts_with("/etc/realms/provision.yaml:4:"), "{e}");
        assert!(e.contains("Mon"), "{e}");
    }

    #[test]
    fn dropins_merge_in_name_order() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(DROPIN_DIR);
        fs::create_dir_all(&dir).unwrap();
        fs::write(root.path().join(DEFAULT_PATH), SEED).unwrap();
        fs::write(
            dir.join("20-b.yaml"),
            "composable:\n  packages:\n    - name: goss\n      version: v2\n",
        )
        .unwrap();
        fs::write(
            dir.join("10-a.yaml"),
            "composable:\n  default_repository: http://127.0.0.1/r\n  packages:\n    - name: bar\n",
        )
        .unwrap();
        fs::write(dir.join("30-empty.yaml"), "# nothing\n").unwrap();
        fs::write(dir.join("README"), "not yaml").unwrap();
        let m = load(root.path(), None).unwrap();
        assert_eq!(m.files.len(), 4);
        let names: Vec<_> = m.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["goss", "bar"]);
        assert_eq!(m.packages[0].version, "v2");
        assert_eq!(
            m.packages[0].repository.as_deref(),
            Some("http://127.0.0.1/r")
        );
        assert_eq!(
            m.packages[1].repository.as_deref(),
            Some("http://127.0.0.1/r")
        );
    }

    #[test]
    fn a_command_exported_by_two_packages_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("m.yaml");
        fs::write(
            &m,
            "composable:\n  default_repository: file:///r\n  packages:\n    - name: foo\n      export: [a, x]\n    - name: bar\n      export: [x]\n",
        )
        .unwrap();
        let e = load(root.path(), Some(&m)).unwrap_err().to_string();
        assert!(
            e.contains("'x'") && e.contains("'foo'") && e.contains("'bar'"),
            "{e}"
        );
    }

    #[test]
    fn a_package_without_any_repository_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("m.yaml");
        fs::write(&m, "composable:\n  packages:\n    - name: foo\n").unwrap();
        let e = load(root.path(), Some(&m)).unwrap_err().to_string();
        assert!(
            e.contains("default_repository") && e.contains("'foo'"),
            "{e}"
        );
    }
}
