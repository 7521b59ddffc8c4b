//! os-release(5): parsing, lookup in a root, common keys, and extension-release matching.
//!
//! The format is shell-like `KEY=value` lines: single quotes are literal, double quotes honour
//! `\"`, `\\`, `` \` `` and `\$` (and backslash-newline), unquoted backslashes escape the next
//! character. Like systemd, unquoted whitespace inside a value is kept and trailing whitespace
//! dropped, and adjacent quoted parts are joined.

use std::io;

use crate::error::{Error, Problem, Result};

mod extension;

pub use extension::{
    ExtensionCheck, ExtensionKind, Scope, extension_release_path, load_extension_release,
    strip_image_version, systemd_architecture,
};

/// Where os-release is looked for, in order; the first that exists is used alone.
pub const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// A parsed os-release (or extension-release) file: its assignments in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    entries: Vec<(String, String)>,
    path: Option<String>,
}

/// Cursor over the text that counts lines.
struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn rest_of_line(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            s.push(c);
            self.next();
        }
        s
    }
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Read a quoted part after its opening quote; `line` is where it opened.
fn quoted(cur: &mut Cursor<'_>, quote: char, out: &mut String) -> Result<()> {
    let line = cur.line;
    let kind = if quote == '"' { "double" } else { "single" };
    loop {
        match cur.next() {
            None => return Err(Error::syntax(line, Problem::UnterminatedQuote(kind))),
            Some(c) if c == quote => return Ok(()),
            Some('\\') if quote == '"' => match cur.peek() {
                Some('\n') => {
                    cur.next();
                }
                Some(c @ ('"' | '\\' | '`' | '$')) => {
                    cur.next();
                    out.push(c);
                }
                _ => out.push('\\'),
            },
            Some(c) => out.push(c),
        }
    }
}

/// Read a value up to the end of its (logical) line.
fn value(cur: &mut Cursor<'_>) -> Result<String> {
    while cur.peek().is_some_and(is_blank) {
        cur.next();
    }
    let mut out = String::new();
    let mut keep = 0;
    while let Some(c) = cur.next() {
        match c {
            '\n' => break,
            '\'' | '"' => {
                quoted(cur, c, &mut out)?;
                keep = out.len();
            }
            '\\' => match cur.next() {
                Some('\n') | None => {}
                Some(e) => {
                    out.push(e);
                    keep = out.len();
                }
            },
            c if is_blank(c) => out.push(c),
            c => {
                out.push(c);
                keep = out.len();
            }
        }
    }
    out.truncate(keep);
    Ok(out)
}

impl OsRelease {
    /// Parse os-release text. Comments (`#`, `;`) and blank lines are skipped; a line that is
    /// not `KEY=value` with a shell variable name, or an unterminated quote, is an error
    /// naming the line.
    pub fn parse(text: &str) -> Result<OsRelease> {
        let mut cur = Cursor {
            chars: text
                .strip_prefix('\u{feff}')
                .unwrap_or(text)
                .chars()
                .peekable(),
            line: 1,
        };
        let mut entries = Vec::new();
        loop {
            while cur.peek().is_some_and(|c| is_blank(c) || c == '\n') {
                cur.next();
            }
            let Some(first) = cur.peek() else { break };
            let line = cur.line;
            if first == '#' || first == ';' {
                cur.rest_of_line();
                continue;
            }
            let mut key = String::new();
            while let Some(c) = cur.peek() {
                if c == '=' || c == '\n' {
                    break;
                }
                key.push(c);
                cur.next();
            }
            if cur.next() != Some('=') {
                return Err(Error::syntax(
                    line,
                    Problem::MissingEquals(key.trim_end().to_owned()),
                ));
            }
            let key = key.trim_end();
            if !is_valid_key(key) {
                let problem = if key.is_empty() {
                    Problem::MissingKey(format!("={}", cur.rest_of_line()))
                } else {
                    Problem::BadKey(key.to_owned())
                };
                return Err(Error::syntax(line, problem));
            }
            let v = value(&mut cur)?;
            entries.push((key.to_owned(), v));
        }
        Ok(OsRelease {
            entries,
            path: None,
        })
    }

    /// Build from assignments (for tests and for writing images).
    pub fn from_entries<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> OsRelease {
        OsRelease {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            path: None,
        }
    }

    /// The root-relative path this was loaded from, if a loader read it.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// All assignments in file order (repeated keys included).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether the file had no assignments.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`; the last assignment wins, as in a shell.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` if it is set and not empty.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Set `key`, replacing the last assignment of it or appending one.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.entries.iter_mut().rev().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_owned(),
            None => self.entries.push((key.to_owned(), value.to_owned())),
        }
    }

    /// `ID=`, the lower-case OS identifier.
    pub fn id(&self) -> Option<&str> {
        self.get_nonempty("ID")
    }

    /// `ID_LIKE=`, split on whitespace.
    pub fn id_like(&self) -> Vec<&str> {
        self.get("ID_LIKE")
            .map_or_else(Vec::new, |v| v.split_whitespace().collect())
    }

    /// `NAME=`.
    pub fn name(&self) -> Option<&str> {
        self.get_nonempty("NAME")
    }

    /// `PRETTY_NAME=`.
    pub fn pretty_name(&self) -> Option<&str> {
        self.get_nonempty("PRETTY_NAME")
    }

    /// `VERSION=`.
    pub fn version(&self) -> Option<&str> {
        self.get_nonempty("VERSION")
    }

    /// `VERSION_ID=`.
    pub fn version_id(&self) -> Option<&str> {
        self.get_nonempty("VERSION_ID")
    }

    /// `VERSION_CODENAME=`.
    pub fn version_codename(&self) -> Option<&str> {
        self.get_nonempty("VERSION_CODENAME")
    }

    /// `BUILD_ID=`.
    pub fn build_id(&self) -> Option<&str> {
        self.get_nonempty("BUILD_ID")
    }

    /// `IMAGE_ID=`.
    pub fn image_id(&self) -> Option<&str> {
        self.get_nonempty("IMAGE_ID")
    }

    /// `IMAGE_VERSION=`.
    pub fn image_version(&self) -> Option<&str> {
        self.get_nonempty("IMAGE_VERSION")
    }

    /// `VARIANT_ID=`.
    pub fn variant_id(&self) -> Option<&str> {
        self.get_nonempty("VARIANT_ID")
    }

    /// `SYSEXT_LEVEL=`.
    pub fn sysext_level(&self) -> Option<&str> {
        self.get_nonempty("SYSEXT_LEVEL")
    }

    /// `ARCHITECTURE=`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_nonempty("ARCHITECTURE")
    }

    /// `PORTABLE_PREFIXES=`, split on whitespace (empty when unset).
    pub fn portable_prefixes(&self) -> Vec<&str> {
        self.get("PORTABLE_PREFIXES")
            .map_or_else(Vec::new, |v| v.split_whitespace().collect())
    }

    /// `PORTABLE_PRETTY_NAME=`.
    pub fn portable_pretty_name(&self) -> Option<&str> {
        self.get_nonempty("PORTABLE_PRETTY_NAME")
    }

    /// Write back as os-release text: one `KEY=value` line per assignment, double-quoting
    /// values with characters outside `[A-Za-z0-9._-]` and escaping `"`, `\`, `` ` `` and `$`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            out.push_str(k);
            out.push('=');
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                out.push_str(v);
            } else {
                out.push('"');
                for c in v.chars() {
                    if matches!(c, '"' | '\\' | '`' | '$') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            out.push('\n');
        }
        out
    }
}

/// Read `path` with `read` and parse it; `Ok(None)` when the file does not exist.
pub(crate) fn read_parsed<F>(read: &F, path: &str) -> Result<Option<OsRelease>>
where
    F: Fn(&str) -> io::Result<Option<String>>,
{
    let text = read(path).map_err(|error| Error::Read {
        path: path.to_owned(),
        error,
    })?;
    let Some(text) = text else { return Ok(None) };
    let mut parsed = OsRelease::parse(&text).map_err(|e| e.in_file(path))?;
    parsed.path = Some(path.to_owned());
    Ok(Some(parsed))
}

/// Load a root's os-release: `/etc/os-release` if it exists, else `/usr/lib/os-release`.
///
/// `read` gets a root-relative absolute path and returns the file's text, or `Ok(None)` if it
/// does not exist; it is the only access to the root (resolve symlinks inside the root there).
pub fn load<F>(read: F) -> Result<OsRelease>
where
    F: Fn(&str) -> io::Result<Option<String>>,
{
    for path in OS_RELEASE_PATHS {
        if let Some(found) = read_parsed(&read, path)? {
            return Ok(found);
        }
    }
    Err(Error::OsReleaseMissing)
}

#[cfg(test)]
mod tests;
