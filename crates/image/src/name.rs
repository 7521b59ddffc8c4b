//! The one place that says what a name may be: realm, image and snapshot names
//! (`[a-z][a-z0-9-]{0,30}`) and network zone names (`[a-z][a-z0-9-]{0,11}`, shorter because
//! `vz-ZONE` must fit in an interface name). Both rules are the same shape with another length.

use crate::{Error, Result};

const RULE: &str = "names are a lowercase letter followed by up to 30 lowercase letters, digits or \
dashes ([a-z][a-z0-9-]{0,30})";

/// Checks a realm or image name against `[a-z][a-z0-9-]{0,30}`; `kind` is used in the error.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    if follows_rule(name, 31) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            rule: RULE,
        })
    }
}

/// A lowercase letter followed by lowercase letters, digits or dashes, `max` bytes at most.
fn follows_rule(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= max
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// Words of `realms zone` that cannot be zone names.
pub const ZONE_RESERVED: &[&str] = &["remove"];

/// Checks a network zone name: zone names become interface names (`vz-` + name, 15 bytes at
/// most). The error is the rule the name breaks.
pub fn validate_zone(zone: &str) -> std::result::Result<(), ZoneNameProblem> {
    if ZONE_RESERVED.contains(&zone) {
        return Err(ZoneNameProblem::Reserved(zone.to_string()));
    }
    if follows_rule(zone, 12) {
        Ok(())
    } else {
        Err(ZoneNameProblem::Rule)
    }
}

/// Which rule a network zone name breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneNameProblem {
    /// The name is a word of `realms zone`.
    #[error("'{0}' is a word of `realms zone`, not a zone name")]
    Reserved(String),
    /// The name does not follow `[a-z][a-z0-9-]{0,11}`.
    #[error(
        "zone names are a lowercase letter followed by up to 11 lowercase letters, digits or dashes \
         ([a-z][a-z0-9-]{{0,11}}), so that the bridge name vz-ZONE fits in an interface name"
    )]
    Rule,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["a", "main", "work-2", "a234567890123456789012345678901"] {
            assert!(validate_name("realm", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "A",
            "ab_c",
            "a.b",
            "a/b",
            "a2345678901234567890123456789012",
            "é",
        ] {
            let err = validate_name("realm", bad).unwrap_err().to_string();
            assert!(err.contains("[a-z][a-z0-9-]{0,30}"), "{bad}: {err}");
        }
    }

    #[test]
    fn zone_names_follow_the_shorter_rule_and_skip_the_reserved_words() {
        for good in ["a", "clear", "work-2", "abcdefghijkl"] {
            assert!(validate_zone(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "Work", "a_b", "abcdefghijklm"] {
            let err = validate_zone(bad).unwrap_err().to_string();
            assert!(err.contains("[a-z][a-z0-9-]{0,11}"), "{bad}: {err}");
        }
        let err = validate_zone("remove").unwrap_err().to_string();
        assert!(err.contains("a word of `realms zone`"), "{err}");
        // A zone name is always a valid realm or image name too (the rules differ only in length).
        assert!(validate_name("zone", "abcdefghijkl").is_ok());
    }
}
