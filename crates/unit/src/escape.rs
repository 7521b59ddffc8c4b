//! systemd-escape: escaping strings and paths into unit names and back, mangling, long-name hashing.
//!
//! Everything works on bytes, because escaped names can stand for non-UTF-8 paths (`\xff`).
//! Escaped output is always ASCII, hence a `String`.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

use crate::error::{Error, Result, lossy};
use crate::name::{self, NameKind, UNIT_NAME_MAX, UnitName, UnitType, is_valid_char};

/// Longest valid path in bytes (systemd's `PATH_MAX` minus the terminating NUL).
pub const PATH_MAX: usize = 4095;
/// Longest valid path component in bytes.
pub const NAME_MAX: usize = 255;

/// The key systemd uses to hash over-long unit names.
const LONG_NAME_KEY: [u8; 16] = [
    0xec, 0xf2, 0x37, 0xfb, 0x58, 0x32, 0x4a, 0x32, 0x84, 0x9f, 0x06, 0x9b, 0x0d, 0x21, 0xeb, 0x9a,
];
/// Length of the hex hash in a hashed unit name.
const HASH_HEX_LEN: usize = 16;

fn push_hex(out: &mut String, c: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('\\');
    out.push('x');
    out.push(HEX[usize::from(c >> 4)] as char);
    out.push(HEX[usize::from(c & 0xf)] as char);
}

/// Escape a string for use in a unit name (`systemd-escape STRING`).
///
/// `/` becomes `-`; `[A-Za-z0-9:_.]` stay, except a leading `.`; every other byte (including `-`
/// and `\`) becomes `\xNN` with lowercase hex.
pub fn escape(s: impl AsRef<[u8]>) -> String {
    let s = s.as_ref();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'/' => out.push('-'),
            b'.' if i == 0 => push_hex(&mut out, c),
            c if c.is_ascii_alphanumeric() || matches!(c, b':' | b'_' | b'.') => {
                out.push(c as char)
            }
            c => push_hex(&mut out, c),
        }
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Undo [`escape`] (`systemd-escape --unescape`): `-` becomes `/`, `\xNN` (either case) a byte.
///
/// A `\` not followed by `x` and two hex digits is an error. The result may contain any byte,
/// including NUL (systemd, working on C strings, would stop there).
pub fn unescape(s: impl AsRef<[u8]>) -> Result<Vec<u8>> {
    let s = s.as_ref();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'-' => out.push(b'/'),
            b'\\' => {
                let byte = match s.get(i + 1..i + 4) {
                    Some([b'x', a, b]) => hex_val(*a).zip(hex_val(*b)).map(|(a, b)| a << 4 | b),
                    _ => None,
                };
                let byte = byte.ok_or_else(|| Error::BadEscape {
                    input: lossy(s),
                    offset: i,
                })?;
                out.push(byte);
                i += 3;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(out)
}

/// [`unescape`] for callers that need text: fails if the result is not UTF-8.
pub fn unescape_str(s: &str) -> Result<String> {
    String::from_utf8(unescape(s)?).map_err(|_| Error::NotUtf8 {
        input: s.to_owned(),
    })
}

/// systemd's `path_simplify`: collapse repeated `/`, drop `.` components and trailing `/`.
///
/// `..` is kept. An absolute path that simplifies to nothing becomes `/`; a non-empty relative
/// one becomes `.`; the empty path stays empty.
pub fn simplify_path(path: &[u8]) -> Vec<u8> {
    let absolute = path.first() == Some(&b'/');
    let mut out = Vec::with_capacity(path.len());
    if absolute {
        out.push(b'/');
    }
    for comp in path
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        if out.len() > usize::from(absolute) {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    if out.is_empty() && !path.is_empty() {
        out.push(b'.');
    }
    out
}

/// Whether `path` is a valid file system path: non-empty, at most [`PATH_MAX`] bytes, no NUL,
/// no component longer than [`NAME_MAX`].
pub fn is_valid_path(path: &[u8]) -> bool {
    !path.is_empty()
        && path.len() <= PATH_MAX
        && !path.contains(&0)
        && path.split(|&c| c == b'/').all(|c| c.len() <= NAME_MAX)
}

/// Whether `path` is valid and normalized: no empty (`//`), `.` or `..` components.
///
/// One leading and one trailing `/` are allowed; `/` itself is normalized.
pub fn is_normalized_path(path: &[u8]) -> bool {
    if !is_valid_path(path) {
        return false;
    }
    let inner = path.strip_prefix(b"/").unwrap_or(path);
    let inner = inner.strip_suffix(b"/").unwrap_or(inner);
    if inner.is_empty() {
        return path == b"/";
    }
    inner
        .split(|&c| c == b'/')
        .all(|c| !matches!(c, b"" | b"." | b".."))
}

/// Escape a path (`systemd-escape --path`), as used for `.mount`, `.device`, `.swap` names.
///
/// The path is simplified first; empty or `/` gives `-`. It must then be valid and normalized
/// (no `..`), else an error names the rule. Relative paths are accepted (but are not
/// reversible). Leading and trailing `/` are dropped and the rest is [`escape`]d.
pub fn escape_path(path: impl AsRef<[u8]>) -> Result<String> {
    let input = path.as_ref();
    let simple = simplify_path(input);
    if simple.is_empty() || simple == b"/" {
        return Ok("-".to_owned());
    }
    if !is_valid_path(&simple) {
        return Err(Error::InvalidPath {
            input: lossy(input),
        });
    }
    if !is_normalized_path(&simple) {
        return Err(if simple.first() == Some(&b'/') {
            Error::NotNormalizedPath {
                input: lossy(input),
            }
        } else {
            Error::RelativePath {
                input: lossy(input),
            }
        });
    }
    let trimmed = simple.strip_prefix(b"/").unwrap_or(&simple);
    Ok(escape(trimmed))
}

/// Undo [`escape_path`] (`systemd-escape --unescape --path`); always gives an absolute path.
///
/// `-` is `/`. Otherwise the unescaped text must not start or end with `/`, and `/` + text must
/// be a normalized path. Like systemd, the unescaped text ends at a `\x00`.
pub fn unescape_path(s: impl AsRef<[u8]>) -> Result<Vec<u8>> {
    let s = s.as_ref();
    let bad = |reason| Error::BadEscapedPath {
        input: lossy(s),
        reason,
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s == b"-" {
        return Ok(b"/".to_vec());
    }
    let mut text = unescape(s)?;
    if let Some(nul) = text.iter().position(|&c| c == 0) {
        text.truncate(nul);
    }
    if text.first() == Some(&b'/') || text.last() == Some(&b'/') {
        return Err(bad("it has a leading or trailing '/' (or '-')"));
    }
    let mut path = Vec::with_capacity(text.len() + 1);
    path.push(b'/');
    path.extend_from_slice(&text);
    if !is_normalized_path(&path) {
        return Err(bad("it has empty, '.' or '..' components, or is too long"));
    }
    Ok(path)
}

/// `escaped.TYPE` (`systemd-escape --suffix=TYPE`); no further validation, like the tool.
pub fn with_suffix(escaped: &str, unit_type: UnitType) -> String {
    format!("{escaped}.{unit_type}")
}

/// Put an escaped string into a template (`systemd-escape --template=foo@.service`).
///
/// The template must be a template name; the result must be a valid unit name.
pub fn with_template(template: &str, escaped: &str) -> Result<String> {
    name::parse_template(template)?;
    name::replace_instance(template, escaped)
}

/// The instance of an instance name (`foo@bar.service` → `bar`), still escaped.
///
/// Errors if `name` is invalid, plain, or a template.
pub fn instance_of(name: &str) -> Result<&str> {
    let parsed = UnitName::parse(name)?;
    match parsed.instance() {
        Some(i) if !i.is_empty() => Ok(i),
        _ => Err(Error::InvalidUnitName {
            name: name.to_owned(),
            reason: "it has no instance (like foo@bar.service)",
        }),
    }
}

fn hash_long_name(full: &str, unit_type: UnitType) -> String {
    let keep = UNIT_NAME_MAX - 1 - (unit_type.as_str().len() + 1) - HASH_HEX_LEN - 1;
    let mut hasher = SipHasher24::new_with_key(&LONG_NAME_KEY);
    hasher.write(full.as_bytes());
    hasher.write(&[0]);
    let hash = hasher.finish().to_le_bytes();
    let mut out = String::with_capacity(UNIT_NAME_MAX);
    out.push_str(&full[..keep]);
    out.push('_');
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('.');
    out.push_str(unit_type.as_str());
    out
}

/// The unit name for a path (`unit_name_from_path`), e.g. `/home/a` + mount → `home-a.mount`.
///
/// Names of 256 bytes or more are shortened the way systemd does: the first
/// `256 - 1 - len(".type") - 16 - 1` bytes, `_`, 16 lowercase hex digits of the little-endian
/// SipHash-2-4 of the full name (with its terminating NUL), then `.type`.
pub fn from_path(path: impl AsRef<[u8]>, unit_type: UnitType) -> Result<String> {
    let escaped = escape_path(path)?;
    let mut full = with_suffix(&escaped, unit_type);
    if full.len() >= UNIT_NAME_MAX {
        full = hash_long_name(&full, unit_type);
    }
    UnitName::parse(&full)?;
    Ok(full)
}

/// The instance unit for a path (`unit_name_from_path_instance`): `prefix@ESCAPED.type`.
///
/// Not hashed: a result of 256 bytes or more is an error.
pub fn from_path_instance(
    prefix: &str,
    path: impl AsRef<[u8]>,
    unit_type: UnitType,
) -> Result<String> {
    let escaped = escape_path(path)?;
    name::build(prefix, Some(&escaped), unit_type)
}

/// Whether `name` is a plain unit name ending in `_` + 16 lowercase hex digits before the type.
pub fn is_hashed(name: &str) -> bool {
    let Ok(parsed) = UnitName::parse(name) else {
        return false;
    };
    let prefix = parsed.prefix().as_bytes();
    parsed.kind() == NameKind::Plain
        && prefix.len() > HASH_HEX_LEN
        && prefix[prefix.len() - HASH_HEX_LEN - 1] == b'_'
        && prefix[prefix.len() - HASH_HEX_LEN..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The path a unit name stands for (`unit_name_to_path`): `home-a.mount` → `/home/a`.
///
/// Uses the part before `@`/type; hashed names are refused.
pub fn to_path(name: &str) -> Result<Vec<u8>> {
    let parsed = UnitName::parse(name)?;
    if is_hashed(name) {
        return Err(Error::HashedUnitName {
            name: name.to_owned(),
        });
    }
    unescape_path(parsed.prefix())
}

fn is_glob(s: &[u8]) -> bool {
    s.iter().any(|c| matches!(c, b'*' | b'?' | b'['))
}

fn is_glob_char(c: u8) -> bool {
    matches!(c, b'[' | b']' | b'!' | b'*' | b'?')
}

/// Whether a path is under `/dev/` or `/sys/` (below the directory itself).
fn is_device_path(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut comps = path
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".");
    matches!(comps.next(), Some(b"dev" | b"sys")) && comps.next().is_some()
}

/// How [`mangle_with`] treats its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MangleOptions {
    /// The type appended when the result is not a valid unit name (systemd: service).
    pub default_type: UnitType,
    /// Keep glob characters (`*?[]!`) so the result can be used as a pattern.
    pub allow_globs: bool,
}

impl Default for MangleOptions {
    fn default() -> Self {
        MangleOptions {
            default_type: UnitType::Service,
            allow_globs: false,
        }
    }
}

/// Turn a user-given string into a unit name (`systemd-escape --mangle`).
pub fn mangle(input: impl AsRef<[u8]>) -> Result<String> {
    mangle_with(input, MangleOptions::default())
}

/// [`mangle`] with options (`unit_name_mangle_with_suffix`).
///
/// Valid names are returned as they are; paths under `/dev/` or `/sys/` become `.device`
/// units, other absolute paths `.mount` units; anything else has `/` turned into `-` and bytes
/// outside `[A-Za-z0-9:_.\-\\@]` escaped, and gets `.TYPE` appended unless it already is a
/// valid unit name. The result must be a valid unit name (or a glob, if allowed).
pub fn mangle_with(input: impl AsRef<[u8]>, opts: MangleOptions) -> Result<String> {
    let input = input.as_ref();
    let fail = || Error::Mangle {
        input: lossy(input),
    };
    if input.is_empty() {
        return Err(fail());
    }
    if let Ok(s) = std::str::from_utf8(input) {
        let keep_glob = opts.allow_globs
            && is_glob(input)
            && input
                .iter()
                .all(|&c| c == b'@' || is_valid_char(c) || is_glob_char(c));
        if name::is_valid(s) || keep_glob {
            return Ok(s.to_owned());
        }
    }
    if is_device_path(input)
        && let Ok(n) = from_path(input, UnitType::Device)
    {
        return Ok(n);
    }
    if input.first() == Some(&b'/')
        && let Ok(n) = from_path(input, UnitType::Mount)
    {
        return Ok(n);
    }
    let mut out = String::with_capacity(input.len() + 8);
    for &c in input {
        match c {
            b'/' => out.push('-'),
            c if c == b'@' || is_valid_char(c) || (opts.allow_globs && is_glob_char(c)) => {
                out.push(c as char)
            }
            c => push_hex(&mut out, c),
        }
    }
    let glob = opts.allow_globs && is_glob(out.as_bytes());
    if !glob && !name::is_valid(&out) {
        out.push('.');
        out.push_str(opts.default_type.as_str());
    }
    if glob || name::is_valid(&out) {
        Ok(out)
    } else {
        Err(fail())
    }
}

#[cfg(test)]
mod tests;
