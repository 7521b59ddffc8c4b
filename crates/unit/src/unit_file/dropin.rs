//! Drop-ins: which `.d/` directories apply to a unit, which `.conf` files win, and lookups
//! across a unit file and its drop-ins.

use super::{Entry, UnitFile, list_values};
use crate::error::Result;
use crate::name::{NameKind, UnitName, is_valid_prefix};

/// The drop-in directory names for `unit`, most specific first, e.g. for
/// `foo-bar@x.service`: `foo-bar@x.service.d`, `foo-bar@.service.d`, `foo-.service.d`,
/// `service.d`.
///
/// Instances also use their template's directories; names with dashes also use every
/// prefix up to a dash (`foo-bar-baz` → `foo-bar-`, `foo-`); the type-wide directory comes
/// last. The same `.conf` name in an earlier directory overrides later ones.
pub fn dropin_dirs(unit: &str) -> Result<Vec<String>> {
    let name = UnitName::parse(unit)?;
    let mut dirs = Vec::new();
    push_dirs(&name, &mut dirs);
    dirs.push(format!("{}.d", name.unit_type()));
    Ok(dirs)
}

fn push_unique(dirs: &mut Vec<String>, dir: String) {
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

fn push_dirs(name: &UnitName<'_>, dirs: &mut Vec<String>) {
    push_unique(dirs, format!("{}.d", name.as_str()));
    if name.kind() == NameKind::Instance
        && let Some(template) = name.template()
        && let Ok(t) = UnitName::parse(&template)
    {
        push_dirs(&t, dirs);
    }
    let mut prefix = name.prefix().to_owned();
    while let Some(next) = shorter_prefix(&prefix) {
        if !is_valid_prefix(&next) {
            break;
        }
        push_unique(dirs, format!("{next}.{}.d", name.unit_type()));
        prefix = next;
    }
}

/// The next prefix up to a dash: `foo-bar-baz` → `foo-bar-`, `foo-bar-` → `foo-`, `foo-` →
/// none. A trailing dash is chopped once before looking; a leading dash ends the chain.
fn shorter_prefix(prefix: &str) -> Option<String> {
    let mut cur = prefix;
    let mut chopped = false;
    loop {
        let dash = cur.rfind('-')?;
        if dash == 0 {
            return None;
        }
        if dash + 1 < cur.len() || chopped {
            return Some(cur[..=dash].to_owned());
        }
        cur = &cur[..dash];
        chopped = true;
    }
}

/// A `.conf` file found in one of a unit's drop-in directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropinCandidate {
    /// Index of the unit search-path directory it was found under; 0 is the most important
    /// (e.g. `/etc/systemd/system` before `/run/systemd/system` before `/usr/lib/...`).
    pub search_path: usize,
    /// The drop-in directory name, e.g. `foo.service.d`.
    pub dir: String,
    /// The file name, e.g. `10-override.conf`.
    pub file: String,
    /// An empty file or a symlink to `/dev/null`: hides same-named files of lower priority.
    pub masked: bool,
}

/// The drop-ins systemd applies to `unit`, in application order (by file name).
///
/// Files not ending in `.conf` or in directories that do not apply to `unit` are ignored.
/// Of files with the same name the one in the most important place wins: unit-specific
/// directories before the type-wide one, then by search path, then by specificity (see
/// [`dropin_dirs`]). A winning masked file removes the name altogether.
pub fn order_dropins(
    unit: &str,
    candidates: impl IntoIterator<Item = DropinCandidate>,
) -> Result<Vec<DropinCandidate>> {
    let dirs = dropin_dirs(unit)?;
    let type_wide = dirs.len() - 1;
    let mut ranked: Vec<((bool, usize, usize), DropinCandidate)> = candidates
        .into_iter()
        .filter(|c| c.file.ends_with(".conf"))
        .filter_map(|c| {
            let spec = dirs.iter().position(|d| *d == c.dir)?;
            Some(((spec == type_wide, c.search_path, spec), c))
        })
        .collect();
    ranked.sort_by(|a, b| a.1.file.cmp(&b.1.file).then(a.0.cmp(&b.0)));
    ranked.dedup_by(|later, first| later.1.file == first.1.file);
    Ok(ranked
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| !c.masked)
        .collect())
}

/// A unit file with its drop-ins applied in order, for lookups with systemd's semantics.
#[derive(Debug, Clone)]
pub struct Layered<'a> {
    layers: Vec<&'a UnitFile>,
}

impl<'a> Layered<'a> {
    /// The main unit file followed by its drop-ins (in [`order_dropins`] order).
    pub fn new(main: &'a UnitFile, dropins: impl IntoIterator<Item = &'a UnitFile>) -> Self {
        let mut layers = vec![main];
        layers.extend(dropins);
        Layered { layers }
    }

    fn entries(&self, section: &str) -> impl Iterator<Item = &'a Entry> {
        self.layers.iter().flat_map(move |f| f.entries(section))
    }

    /// The effective value: the last assignment in the last file that has one.
    pub fn get(&self, section: &str, key: &str) -> Option<&'a str> {
        self.entries(section)
            .filter(|e| e.key() == key)
            .last()
            .map(Entry::value)
    }

    /// The effective list: assignments across all files, an empty one resetting the list.
    pub fn get_all(&self, section: &str, key: &str) -> Vec<&'a str> {
        list_values(self.entries(section), key)
    }
}
