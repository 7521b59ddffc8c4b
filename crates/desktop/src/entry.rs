//! Desktop entry files (Desktop Entry Specification 1.5): parsing into groups of keys with
//! their locale variants, and writing them back.

use std::path::Path;

use crate::error::EntryProblem;
use crate::{Error, Result};

/// One `Key[locale]=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The key, without its locale.
    pub key: String,
    /// The locale in brackets, if any (`de_DE@euro`).
    pub locale: Option<String>,
    /// The value, still escaped as in the file.
    pub value: String,
}

/// One `[Group]` and its items in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's name (`Desktop Entry`, `Desktop Action new-window`).
    pub name: String,
    /// The items, each key (with its locale) once.
    pub items: Vec<Item>,
}

impl Group {
    /// The unlocalised value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.key == key && i.locale.is_none())
            .map(|i| i.value.as_str())
    }

    /// Sets the unlocalised value of `key`, replacing it or appending it.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .items
            .iter_mut()
            .find(|i| i.key == key && i.locale.is_none())
        {
            Some(item) => item.value = value,
            None => self.items.push(Item {
                key: key.to_string(),
                locale: None,
                value,
            }),
        }
    }

    /// Removes `key` and all its locale variants.
    pub fn remove(&mut self, key: &str) {
        self.items.retain(|i| i.key != key);
    }

    /// True when boolean `key` is `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("true")
    }
}

/// A parsed desktop entry: the `[Desktop Entry]` group first, then the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopEntry {
    /// All groups in file order; the first is `Desktop Entry`.
    pub groups: Vec<Group>,
}

/// The largest desktop entry read (they are a few KiB; anything bigger is not one).
pub const MAX_ENTRY_BYTES: usize = 1 << 20;

impl DesktopEntry {
    /// Parses `bytes`; `path` (in the realm) is only used in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<DesktopEntry> {
        let bad = |line: usize, problem: EntryProblem| Error::BadEntry {
            path: path.to_path_buf(),
            line,
            problem,
        };
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(bad(0, EntryProblem::TooLarge));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad(0, EntryProblem::NotUtf8))?;
        let mut groups: Vec<Group> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let n = n + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| bad(n, EntryProblem::UnclosedGroup))?;
                if name.is_empty()
                    || name.contains(['[', ']'])
                    || name.chars().any(char::is_control)
                {
                    return Err(bad(n, EntryProblem::BadGroupName));
                }
                if groups.iter().any(|g| g.name == name) {
                    return Err(bad(n, EntryProblem::DuplicateGroup(name.to_string())));
                }
                if groups.is_empty() && name != "Desktop Entry" {
                    return Err(bad(n, EntryProblem::FirstGroup));
                }
                groups.push(Group {
                    name: name.to_string(),
                    items: Vec::new(),
                });
                continue;
            }
            let group = groups
                .last_mut()
                .ok_or_else(|| bad(n, EntryProblem::KeyBeforeGroup))?;
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad(n, EntryProblem::NotALine))?;
            let key = key.trim();
            let (key, locale) = match key.split_once('[') {
                Some((k, rest)) => {
                    let locale = rest
                        .strip_suffix(']')
                        .filter(|l| !l.is_empty() && l.chars().all(is_locale_char))
                        .ok_or_else(|| bad(n, EntryProblem::BadLocale(key.to_string())))?;
                    (k, Some(locale.to_string()))
                }
                None => (key, None),
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad(n, EntryProblem::BadKey(key.to_string())));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad(n, EntryProblem::ControlCharacters(key.to_string())));
            }
            let duplicate = group
                .items
                .iter()
                .any(|i| i.key == key && i.locale == locale);
            if duplicate {
                return Err(bad(
                    n,
                    EntryProblem::DuplicateKey {
                        key: key.to_string(),
                        group: group.name.clone(),
                    },
                ));
            }
            group.items.push(Item {
                key: key.to_string(),
                locale,
                value: value.trim_start().to_string(),
            });
        }
        if groups.is_empty() {
            return Err(bad(0, EntryProblem::NoMainGroup));
        }
        Ok(DesktopEntry { groups })
    }

    /// The `[Desktop Entry]` group.
    pub fn main(&self) -> &Group {
        &self.groups[0]
    }

    /// The `[Desktop Entry]` group, to change.
    pub fn main_mut(&mut self) -> &mut Group {
        &mut self.groups[0]
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (i, group) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{}]\n", group.name));
            for item in &group.items {
                match &item.locale {
                    Some(l) => out.push_str(&format!("{}[{l}]={}\n", item.key, item.value)),
                    None => out.push_str(&format!("{}={}\n", item.key, item.value)),
                }
            }
        }
        out
    }
}

fn is_locale_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '.' | '-')
}

/// Splits a list value (`a;b;c;`) into its entries (`\;` is a literal semicolon).
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(';') => cur.push(';'),
                Some(other) => {
                    cur.push('\\');
                    cur.push(other);
                }
                None => cur.push('\\'),
            },
            ';' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Undoes the string escapes of a value (`\s`, `\n`, `\t`, `\r`, `\\`).
pub fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Escapes a string for a value (the inverse of [`unescape`]).
pub fn escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DesktopEntry> {
        DesktopEntry::parse(
            text.as_bytes(),
            Path::new("/usr/share/applications/t.desktop"),
        )
    }

    #[test]
    fn parses_groups_keys_and_locales_and_writes_them_back() {
        let text = "# comment\n[Desktop Entry]\nType=Application\nName=Editor\nName[de]=Bearbeiter\nExec=ed %f\n\n[Desktop Action new]\nName=New\nExec=ed --new\n";
        let e = parse(text).unwrap();
        assert_eq!(e.groups.len(), 2);
        assert_eq!(e.main().get("Name"), Some("Editor"));
        assert_eq!(e.main().items[2].locale.as_deref(), Some("de"));
        assert_eq!(e.groups[1].get("Exec"), Some("ed --new"));
        let again = parse(&e.to_text()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        for (text, line, what) in [
            ("[Desktop Entry]\nName\n", 2, "KEY=VALUE"),
            ("[Other]\nName=x\n", 1, "first group"),
            ("Name=x\n", 1, "before"),
            ("[Desktop Entry]\nName=a\nName=b\n", 3, "twice"),
            ("[Desktop Entry]\nName[=a\n", 2, "locale"),
            ("[Desktop Entry]\nNa me=a\n", 2, "not a key"),
            ("[Desktop Entry\n", 1, "']'"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("/usr/share/applications/t.desktop: line {line}:")),
                "{err}"
            );
            assert!(err.contains(what), "{err}");
        }
        assert!(
            parse("")
                .unwrap_err()
                .to_string()
                .contains("no [Desktop Entry]")
        );
        let binary = DesktopEntry::parse(b"[Desktop Entry]\nName=\xff\n", Path::new("b"));
        assert!(binary.unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn lists_and_escapes() {
        assert_eq!(split_list("a;b\\;c;"), vec!["a", "b;c"]);
        assert_eq!(split_list("a"), vec!["a"]);
        assert_eq!(unescape("a\\sb\\\\c\\n"), "a b\\c\n");
        assert_eq!(escape("a\\b\nc"), "a\\\\b\\nc");
        assert_eq!(unescape(&escape("x \\ \" y")), "x \\ \" y");
    }
}
