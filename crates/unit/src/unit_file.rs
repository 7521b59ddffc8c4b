//! Unit files and drop-ins: a lossless model (parse → write is byte-identical) with
//! systemd's lookup semantics on top (last value wins, empty assignment resets a list).

use std::fmt;

use crate::error::{Error, Result};

mod dropin;
mod parse;

pub use crate::name::{NameKind, UnitName, UnitType, is_valid as is_valid_unit_name};
pub use dropin::{DropinCandidate, Layered, dropin_dirs, order_dropins};

/// A parsed unit file or drop-in: comment lines before the first section, then sections.
///
/// Every parsed line keeps its original text, so [`UnitFile::to_text`] reproduces the input
/// byte for byte until something is changed; changed or added lines are written as
/// `Key=value` with the file's line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    preamble: Vec<String>,
    sections: Vec<Section>,
    newline: &'static str,
}

/// One `[Name]` section and the lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    name: String,
    header: Option<String>,
    line: usize,
    items: Vec<Item>,
}

/// A line (or continued lines) inside a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A blank line or a comment, verbatim with its line ending.
    Text(String),
    /// A `Key=value` assignment.
    Entry(Entry),
}

/// One assignment; a value continued over several lines is joined as systemd does (each
/// trailing backslash becomes a space, comment lines in between are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    key: String,
    value: String,
    line: usize,
    raw: Option<String>,
}

impl Entry {
    /// The key, with surrounding whitespace removed.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value, joined and with surrounding whitespace removed.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The 1-based line it starts on; 0 for an entry added in memory.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl Section {
    /// The section name (between the brackets).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 1-based line of the header; 0 for a section added in memory.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Every line under the header, in order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The assignments under the header, in order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter().filter_map(|i| match i {
            Item::Entry(e) => Some(e),
            Item::Text(_) => None,
        })
    }

    fn insert_position(&self) -> usize {
        let trailing_blank = self
            .items
            .iter()
            .rev()
            .take_while(|i| matches!(i, Item::Text(t) if t.trim().is_empty()))
            .count();
        self.items.len() - trailing_blank
    }
}

impl Default for UnitFile {
    fn default() -> Self {
        UnitFile {
            preamble: Vec::new(),
            sections: Vec::new(),
            newline: "\n",
        }
    }
}

fn check_section_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.trim() != name
        || name
            .chars()
            .any(|c| c.is_control() || matches!(c, '[' | ']' | '"' | '\'' | '\\'));
    if bad {
        return Err(Error::Unwritable {
            what: "section name",
            text: name.to_owned(),
            reason: "it must be non-empty, without brackets, quotes, backslashes, control characters or surrounding spaces",
        });
    }
    Ok(())
}

fn check_entry(key: &str, value: &str) -> Result<()> {
    let bad_key = key.is_empty()
        || key.trim() != key
        || key.starts_with(['#', ';', '['])
        || key.chars().any(|c| c == '=' || c.is_control());
    if bad_key {
        return Err(Error::Unwritable {
            what: "key",
            text: key.to_owned(),
            reason: "it must be non-empty, without '=', control characters, surrounding spaces, or a leading '#', ';' or '['",
        });
    }
    let unwritable = |reason| {
        Err(Error::Unwritable {
            what: "value",
            text: value.to_owned(),
            reason,
        })
    };
    if value.contains(['\n', '\r']) {
        return unwritable("it contains a line break");
    }
    if value.trim_matches(parse::WHITESPACE) != value {
        return unwritable("surrounding whitespace would be dropped when read back");
    }
    if parse::ends_with_escape(value) {
        return unwritable("a trailing backslash would continue the line");
    }
    Ok(())
}

/// Whether a logical line as read (`raw`, all its physical lines) is still open at its end: its
/// last line ends in a continuation, or comment lines follow one (systemd skips comments inside
/// a continuation, so they do not end it).
fn continues(raw: &str) -> bool {
    let mut open = false;
    for (content, _) in parse::physical_lines(raw) {
        let comment = parse::is_comment_or_blank(content)
            && !content.trim_matches(parse::WHITESPACE).is_empty();
        if open && comment {
            continue;
        }
        open = parse::ends_with_escape(content);
    }
    open
}

impl UnitFile {
    /// An empty file (write new drop-ins with it).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse unit-file text; errors carry the line (attach the file with [`Error::in_file`]).
    ///
    /// Refused: a section header without its closing `]` or with a bad name, an assignment
    /// before the first section, a line without `=`, and `=value` without a key.
    pub fn parse(text: &str) -> Result<Self> {
        parse::parse(text)
    }

    /// Write the file back: byte-identical to the parsed input for unchanged lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Whether the last logical line written still continues (it came from a file that
        // ended inside a continuation): a blank line ends it, so what follows stays separate.
        let mut open = false;
        let mut put = |piece: &str, logical: bool| {
            if !out.is_empty() && !out.ends_with(['\n', '\r']) {
                out.push_str(self.newline);
            }
            if open {
                // A blank line ends the continuation. After a lone `\r` ending, a `\n` would
                // only turn it into `\r\n`: end the blank line with `\r` as well.
                out.push_str(if out.ends_with('\r') {
                    "\r"
                } else {
                    self.newline
                });
            }
            out.push_str(piece);
            open = logical && continues(piece);
        };
        for text in &self.preamble {
            put(text, false);
        }
        for section in &self.sections {
            match &section.header {
                Some(raw) => put(raw, true),
                None => put(&format!("[{}]{}", section.name, self.newline), false),
            }
            for item in &section.items {
                match item {
                    Item::Text(t) => put(t, false),
                    Item::Entry(Entry { raw: Some(raw), .. }) => put(raw, true),
                    Item::Entry(e) => put(&format!("{}={}{}", e.key, e.value, self.newline), false),
                }
            }
        }
        out
    }

    /// Comment and blank lines before the first section, verbatim.
    pub fn preamble(&self) -> &[String] {
        &self.preamble
    }

    /// All sections in file order (a name may repeat; systemd merges them).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Section names in order of first appearance, without repeats.
    pub fn section_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for s in &self.sections {
            if !names.contains(&s.name.as_str()) {
                names.push(&s.name);
            }
        }
        names
    }

    /// Whether a section of this name exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s.name == section)
    }

    /// All assignments in every section named `section`, in file order.
    pub fn entries<'a>(&'a self, section: &str) -> impl Iterator<Item = &'a Entry> {
        self.sections
            .iter()
            .filter(move |s| s.name == section)
            .flat_map(Section::entries)
    }

    /// The value of `key` in `section`; the last assignment wins (even an empty one).
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.entries(section)
            .filter(|e| e.key == key)
            .last()
            .map(|e| e.value.as_str())
    }

    /// The values of a list setting: every assignment in order, where an empty assignment
    /// drops everything before it.
    pub fn get_all(&self, section: &str, key: &str) -> Vec<&str> {
        list_values(self.entries(section), key)
    }

    /// Make `key` have exactly `value`: the last assignment is changed in place and earlier
    /// ones removed; if there is none, it is [`append`](Self::append)ed.
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> Result<()> {
        check_section_name(section)?;
        check_entry(key, value)?;
        let last = self
            .sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name == section)
            .flat_map(|(si, s)| {
                s.items
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| matches!(i, Item::Entry(e) if e.key == key))
                    .map(move |(ii, _)| (si, ii))
            })
            .last();
        let Some((si, ii)) = last else {
            return self.append(section, key, value);
        };
        if let Item::Entry(e) = &mut self.sections[si].items[ii] {
            e.value = value.to_owned();
            e.raw = None;
        }
        for (idx, s) in self.sections.iter_mut().enumerate() {
            if s.name != section {
                continue;
            }
            let mut pos = 0;
            s.items.retain(|i| {
                let keep = !(matches!(i, Item::Entry(e) if e.key == key) && (idx, pos) != (si, ii));
                pos += 1;
                keep
            });
        }
        Ok(())
    }

    /// Add `key=value` after the other lines of the last section named `section` (before its
    /// trailing blank lines), creating the section at the end of the file if needed.
    pub fn append(&mut self, section: &str, key: &str, value: &str) -> Result<()> {
        check_section_name(section)?;
        check_entry(key, value)?;
        let idx = match self.sections.iter().rposition(|s| s.name == section) {
            Some(i) => i,
            None => self.push_section(section),
        };
        let s = &mut self.sections[idx];
        let at = s.insert_position();
        s.items.insert(
            at,
            Item::Entry(Entry {
                key: key.to_owned(),
                value: value.to_owned(),
                line: 0,
                raw: None,
            }),
        );
        Ok(())
    }

    /// Add `key=value` as the very last line of the file, first opening `[section]` at the end
    /// unless the last section already has that name. For writing files top to bottom.
    pub fn push(&mut self, section: &str, key: &str, value: &str) -> Result<()> {
        check_section_name(section)?;
        check_entry(key, value)?;
        let idx = match self.sections.last() {
            Some(last) if last.name == section => self.sections.len() - 1,
            _ => self.push_section(section),
        };
        self.sections[idx].items.push(Item::Entry(Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            line: 0,
            raw: None,
        }));
        Ok(())
    }

    /// Add `# text` as the last line of the file (`#` alone for empty text).
    pub fn add_comment(&mut self, text: &str) -> Result<()> {
        if text.contains(['\n', '\r']) {
            return Err(Error::Unwritable {
                what: "comment",
                text: text.to_owned(),
                reason: "it contains a line break",
            });
        }
        let line = match text {
            "" => format!("#{}", self.newline),
            t => format!("# {t}{}", self.newline),
        };
        self.push_text(line);
        Ok(())
    }

    /// Add an empty line as the last line of the file.
    pub fn add_blank_line(&mut self) {
        self.push_text(self.newline.to_owned());
    }

    fn push_text(&mut self, raw: String) {
        match self.sections.last_mut() {
            Some(s) => s.items.push(Item::Text(raw)),
            None => self.preamble.push(raw),
        }
    }

    /// Add an empty section at the end (even if one of that name exists).
    pub fn add_section(&mut self, section: &str) -> Result<()> {
        check_section_name(section)?;
        self.push_section(section);
        Ok(())
    }

    fn push_section(&mut self, section: &str) -> usize {
        let newline = self.newline;
        if let Some(last) = self.sections.last_mut() {
            let ends_blank =
                matches!(last.items.last(), Some(Item::Text(t)) if t.trim().is_empty());
            if !ends_blank {
                last.items.push(Item::Text(newline.to_owned()));
            }
        }
        self.sections.push(Section {
            name: section.to_owned(),
            header: None,
            line: 0,
            items: Vec::new(),
        });
        self.sections.len() - 1
    }

    /// Remove every assignment of `key` in sections named `section`; returns how many.
    pub fn remove(&mut self, section: &str, key: &str) -> usize {
        let mut removed = 0;
        for s in self.sections.iter_mut().filter(|s| s.name == section) {
            let before = s.items.len();
            s.items
                .retain(|i| !matches!(i, Item::Entry(e) if e.key == key));
            removed += before - s.items.len();
        }
        removed
    }

    /// Remove every section named `section` with its lines; returns how many.
    pub fn remove_section(&mut self, section: &str) -> usize {
        let before = self.sections.len();
        self.sections.retain(|s| s.name != section);
        before - self.sections.len()
    }
}

/// List semantics shared by [`UnitFile::get_all`] and [`Layered::get_all`].
pub(crate) fn list_values<'a>(entries: impl Iterator<Item = &'a Entry>, key: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    for e in entries.filter(|e| e.key == key) {
        if e.value.is_empty() {
            out.clear();
        } else {
            out.push(e.value.as_str());
        }
    }
    out
}

impl fmt::Display for UnitFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests;
