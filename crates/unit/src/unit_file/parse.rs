//! The unit-file parser: physical lines → comments, sections and (continued) assignments.

use super::{Entry, Item, Section, UnitFile};
use crate::error::{Error, Problem, Result};

/// systemd's whitespace set for unit files.
pub(crate) const WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// Whether `s` ends in an odd run of backslashes, i.e. continues on the next line.
pub(crate) fn ends_with_escape(s: &str) -> bool {
    s.bytes().rev().take_while(|&c| c == b'\\').count() % 2 == 1
}

/// Split into (content, raw) pairs; a line ends at `\n`, `\r\n` or a lone `\r`, and raw keeps
/// the ending. The last line may have no ending.
pub(crate) fn physical_lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (content_len, raw_len) = match rest.find(['\n', '\r']) {
            None => (rest.len(), rest.len()),
            Some(i) if rest[i..].starts_with("\r\n") => (i, i + 2),
            Some(i) => (i, i + 1),
        };
        let (raw, tail) = rest.split_at(raw_len);
        rest = tail;
        Some((&raw[..content_len], raw))
    })
}

pub(crate) fn is_comment_or_blank(content: &str) -> bool {
    let lead = content.trim_start_matches(WHITESPACE);
    lead.is_empty() || lead.starts_with(['#', ';'])
}

/// A logical line being assembled from continued physical lines.
struct Pending {
    line: usize,
    raw: String,
    logical: String,
}

struct Parser {
    file: UnitFile,
}

impl Parser {
    /// Interpret a complete logical line.
    fn finish(&mut self, p: Pending) -> Result<()> {
        let l = p.logical.trim_matches(WHITESPACE);
        if l.is_empty() {
            self.file.push_text(p.raw);
            return Ok(());
        }
        if let Some(inner) = l.strip_prefix('[') {
            let Some(name) = inner.strip_suffix(']') else {
                return Err(Error::syntax(
                    p.line,
                    Problem::UnterminatedSection(l.to_owned()),
                ));
            };
            let bad = name.is_empty()
                || name
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'));
            if bad {
                return Err(Error::syntax(p.line, Problem::BadSectionName(l.to_owned())));
            }
            self.file.sections.push(Section {
                name: name.to_owned(),
                header: Some(p.raw),
                line: p.line,
                items: Vec::new(),
            });
            return Ok(());
        }
        let Some(section) = self.file.sections.last_mut() else {
            return Err(Error::syntax(p.line, Problem::OutsideSection(l.to_owned())));
        };
        let Some((key, value)) = l.split_once('=') else {
            return Err(Error::syntax(p.line, Problem::MissingEquals(l.to_owned())));
        };
        let key = key.trim_matches(WHITESPACE);
        if key.is_empty() {
            return Err(Error::syntax(p.line, Problem::MissingKey(l.to_owned())));
        }
        section.items.push(Item::Entry(Entry {
            key: key.to_owned(),
            value: value.trim_matches(WHITESPACE).to_owned(),
            line: p.line,
            raw: Some(p.raw),
        }));
        Ok(())
    }
}

/// Start or continue a logical line; returns it when complete.
fn feed(
    pending: Option<Pending>,
    number: usize,
    content: &str,
    raw: &str,
) -> (Option<Pending>, Option<Pending>) {
    let mut p = match pending {
        Some(mut p) => {
            p.raw.push_str(raw);
            if is_comment_or_blank(content) && !content.trim_matches(WHITESPACE).is_empty() {
                // A comment inside a continuation is skipped; the value goes on after it.
                return (Some(p), None);
            }
            p.logical.push_str(content);
            p
        }
        None => Pending {
            line: number,
            raw: raw.to_owned(),
            logical: content.to_owned(),
        },
    };
    if ends_with_escape(&p.logical) {
        p.logical.pop();
        p.logical.push(' ');
        (Some(p), None)
    } else {
        (None, Some(p))
    }
}

pub(super) fn parse(text: &str) -> Result<UnitFile> {
    let newline = match text.find('\n') {
        Some(i) if text[..i].ends_with('\r') => "\r\n",
        _ => "\n",
    };
    let mut parser = Parser {
        file: UnitFile {
            newline,
            ..UnitFile::default()
        },
    };
    let mut pending: Option<Pending> = None;
    for (idx, (content, raw)) in physical_lines(text).enumerate() {
        let content = match idx {
            0 => content.strip_prefix('\u{feff}').unwrap_or(content),
            _ => content,
        };
        if pending.is_none() && is_comment_or_blank(content) {
            parser.file.push_text(raw.to_owned());
            continue;
        }
        let (still, done) = feed(pending.take(), idx + 1, content, raw);
        pending = still;
        if let Some(done) = done {
            parser.finish(done)?;
        }
    }
    if let Some(p) = pending {
        parser.finish(p)?;
    }
    Ok(parser.file)
}
