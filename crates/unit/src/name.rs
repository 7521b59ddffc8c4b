//! Unit names: the known unit types, validity rules, and splitting `prefix@instance.type`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Unit names must be shorter than this (systemd's `UNIT_NAME_MAX`).
pub const UNIT_NAME_MAX: usize = 256;

/// The unit types systemd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UnitType {
    /// `.service`
    Service,
    /// `.mount`
    Mount,
    /// `.swap`
    Swap,
    /// `.socket`
    Socket,
    /// `.target`
    Target,
    /// `.device`
    Device,
    /// `.automount`
    Automount,
    /// `.timer`
    Timer,
    /// `.path`
    Path,
    /// `.slice`
    Slice,
    /// `.scope`
    Scope,
}

impl UnitType {
    /// Every unit type, in systemd's order.
    pub const ALL: [UnitType; 11] = [
        UnitType::Service,
        UnitType::Mount,
        UnitType::Swap,
        UnitType::Socket,
        UnitType::Target,
        UnitType::Device,
        UnitType::Automount,
        UnitType::Timer,
        UnitType::Path,
        UnitType::Slice,
        UnitType::Scope,
    ];

    /// The type as written after the dot, e.g. `"service"`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitType::Service => "service",
            UnitType::Mount => "mount",
            UnitType::Swap => "swap",
            UnitType::Socket => "socket",
            UnitType::Target => "target",
            UnitType::Device => "device",
            UnitType::Automount => "automount",
            UnitType::Timer => "timer",
            UnitType::Path => "path",
            UnitType::Slice => "slice",
            UnitType::Scope => "scope",
        }
    }

    /// The type of a suffix without the dot (`"mount"`), case-sensitive.
    pub fn from_suffix(suffix: &str) -> Option<UnitType> {
        UnitType::ALL.into_iter().find(|t| t.as_str() == suffix)
    }
}

impl fmt::Display for UnitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnitType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        UnitType::from_suffix(s).ok_or_else(|| Error::UnknownUnitType {
            suffix: s.to_owned(),
        })
    }
}

/// Whether a unit name is plain, an instance, or a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// `foo.service`
    Plain,
    /// `foo@bar.service`
    Instance,
    /// `foo@.service`
    Template,
}

/// A valid unit name split into its parts; borrowed from the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitName<'a> {
    name: &'a str,
    prefix: &'a str,
    instance: Option<&'a str>,
    unit_type: UnitType,
}

/// Whether `c` may appear in a unit name prefix or instance (besides the `@` separator).
pub(crate) fn is_valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b':' | b'-' | b'_' | b'.' | b'\\')
}

impl<'a> UnitName<'a> {
    /// Parse and validate `name` (any kind).
    ///
    /// Rules: shorter than 256 bytes, ends in `.TYPE` with a known type, the part before it is
    /// non-empty and made of `[A-Za-z0-9:_.\-\\]` and `@`, and does not start with `@`. The
    /// instance is everything between the first `@` and the last `.` (it may contain `@`).
    pub fn parse(name: &'a str) -> Result<Self> {
        let bad = |reason| Error::InvalidUnitName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() >= UNIT_NAME_MAX {
            return Err(bad("it is 256 bytes or longer"));
        }
        let dot = name
            .rfind('.')
            .ok_or_else(|| bad("it has no '.type' suffix"))?;
        let unit_type = UnitType::from_suffix(&name[dot + 1..])
            .ok_or_else(|| bad("its suffix is not a known unit type"))?;
        let stem = &name[..dot];
        if stem.is_empty() {
            return Err(bad("the part before the type is empty"));
        }
        if !stem.bytes().all(|c| c == b'@' || is_valid_char(c)) {
            return Err(bad("it contains characters outside [A-Za-z0-9:_.\\-@]"));
        }
        let (prefix, instance) = match stem.find('@') {
            Some(0) => return Err(bad("it starts with '@'")),
            Some(at) => (&stem[..at], Some(&stem[at + 1..])),
            None => (stem, None),
        };
        Ok(UnitName {
            name,
            prefix,
            instance,
            unit_type,
        })
    }

    /// The whole name.
    pub fn as_str(&self) -> &'a str {
        self.name
    }

    /// The part before `@` (or before the type for plain names).
    pub fn prefix(&self) -> &'a str {
        self.prefix
    }

    /// The instance: `None` for plain names, `Some("")` for templates.
    pub fn instance(&self) -> Option<&'a str> {
        self.instance
    }

    /// The unit type.
    pub fn unit_type(&self) -> UnitType {
        self.unit_type
    }

    /// Plain, instance or template.
    pub fn kind(&self) -> NameKind {
        match self.instance {
            None => NameKind::Plain,
            Some("") => NameKind::Template,
            Some(_) => NameKind::Instance,
        }
    }

    /// The template this name belongs to (`foo@bar.service` → `foo@.service`), if any.
    pub fn template(&self) -> Option<String> {
        self.instance
            .map(|_| format!("{}@.{}", self.prefix, self.unit_type))
    }
}

/// Whether `name` is a valid unit name of any kind.
pub fn is_valid(name: &str) -> bool {
    UnitName::parse(name).is_ok()
}

/// Whether `prefix` is valid as the part of a unit name before `@`/type.
pub fn is_valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty() && prefix.bytes().all(is_valid_char)
}

/// Whether `instance` is valid as an instance string (non-empty, valid chars or `@`).
pub fn is_valid_instance(instance: &str) -> bool {
    !instance.is_empty() && instance.bytes().all(|c| c == b'@' || is_valid_char(c))
}

/// Parse `template`, requiring it to be a template name such as `foo@.service`.
pub fn parse_template(template: &str) -> Result<UnitName<'_>> {
    let name = UnitName::parse(template)?;
    if name.kind() != NameKind::Template {
        return Err(Error::InvalidUnitName {
            name: template.to_owned(),
            reason: "it is not a template (like foo@.service)",
        });
    }
    Ok(name)
}

/// Put `instance` into a template or instance name (`foo@.service` + `bar` → `foo@bar.service`).
///
/// The instance must already be escaped and non-empty; the result is validated (e.g. its length).
pub fn replace_instance(template: &str, instance: &str) -> Result<String> {
    let name = UnitName::parse(template)?;
    if name.kind() == NameKind::Plain {
        return Err(Error::InvalidUnitName {
            name: template.to_owned(),
            reason: "it has no '@' to put an instance into",
        });
    }
    if !is_valid_instance(instance) {
        return Err(Error::InvalidUnitName {
            name: format!("{}@{instance}.{}", name.prefix(), name.unit_type()),
            reason: "the instance is empty or has characters outside [A-Za-z0-9:_.\\-@]",
        });
    }
    build(name.prefix(), Some(instance), name.unit_type())
}

/// Build `prefix[@instance].type` and validate it; `Some("")` builds a template.
pub fn build(prefix: &str, instance: Option<&str>, unit_type: UnitType) -> Result<String> {
    let s = match instance {
        Some(i) => format!("{prefix}@{i}.{unit_type}"),
        None => format!("{prefix}.{unit_type}"),
    };
    let bad = |s: String, reason| Err(Error::InvalidUnitName { name: s, reason });
    if !is_valid_prefix(prefix) {
        return bad(
            s,
            "the prefix is empty or has characters outside [A-Za-z0-9:_.\\-]",
        );
    }
    if instance.is_some_and(|i| !i.is_empty() && !is_valid_instance(i)) {
        return bad(s, "the instance has characters outside [A-Za-z0-9:_.\\-@]");
    }
    UnitName::parse(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_table() {
        use NameKind::*;
        let rows: &[(&str, Option<NameKind>)] = &[
            ("foo.service", Some(Plain)),
            ("foo@bar.service", Some(Instance)),
            ("foo@bar@bar.service", Some(Instance)),
            ("foo@.service", Some(Template)),
            (".test.service", Some(Plain)),
            (".test@.service", Some(Template)),
            ("_strange::::.service", Some(Plain)),
            ("user@1000.slice", Some(Instance)),
            ("a\\x2db.mount", Some(Plain)),
            (".service", None),
            ("", None),
            ("foo.waldo", None),
            ("@.service", None),
            ("@piep.service", None),
            ("foo@%i.service", None),
            ("foo.target.wants/plain.service", None),
            ("foo.target.conf/foo.conf", None),
            ("foo", None),
            ("foo.Service", None),
            ("foo bar.service", None),
        ];
        for (name, kind) in rows {
            assert_eq!(
                UnitName::parse(name).ok().map(|n| n.kind()),
                *kind,
                "{name:?}"
            );
        }
        let long = format!("{}.service", "a".repeat(248));
        assert_eq!(long.len(), 256);
        assert!(!is_valid(&long));
        assert!(is_valid(&long[1..]));
    }

    #[test]
    fn split_parts() {
        let n = UnitName::parse("foo-bar@a@b.socket").unwrap();
        assert_eq!(n.prefix(), "foo-bar");
        assert_eq!(n.instance(), Some("a@b"));
        assert_eq!(n.unit_type(), UnitType::Socket);
        assert_eq!(n.template().as_deref(), Some("foo-bar@.socket"));
        assert_eq!(n.as_str(), "foo-bar@a@b.socket");
        let p = UnitName::parse("foo.service").unwrap();
        assert_eq!(
            (p.prefix(), p.instance(), p.template()),
            ("foo", None, None)
        );
        let e = UnitName::parse("foo.waldo").unwrap_err();
        assert_eq!(
            e.to_string(),
            "'foo.waldo' is not a valid unit name: its suffix is not a known unit type"
        );
    }

    #[test]
    fn replace_and_build() {
        let rows: &[(&str, &str, Option<&str>)] = &[
            ("foo@.service", "waldo", Some("foo@waldo.service")),
            ("foo@xyz.service", "waldo", Some("foo@waldo.service")),
            ("xyz", "waldo", None),
            ("", "waldo", None),
            ("foo.service", "waldo", None),
            (".service", "waldo", None),
            ("foo@", "waldo", None),
            ("@bar", "waldo", None),
            ("foo@.service", "wal do", None),
        ];
        for (template, instance, want) in rows {
            assert_eq!(
                replace_instance(template, instance).ok().as_deref(),
                *want,
                "{template:?}"
            );
        }
        assert_eq!(build("foo", None, UnitType::Timer).unwrap(), "foo.timer");
        assert_eq!(
            build("foo", Some(""), UnitType::Timer).unwrap(),
            "foo@.timer"
        );
        assert!(build("fo@o", None, UnitType::Timer).is_err());
        assert!(build("", None, UnitType::Timer).is_err());
    }

    #[test]
    fn unit_types_round_trip() {
        for t in UnitType::ALL {
            assert_eq!(t.as_str().parse::<UnitType>().unwrap(), t);
        }
        assert!("waldo".parse::<UnitType>().is_err());
        assert_eq!(UnitType::ALL.len(), 11);
    }
}
