//! Names of realms, images and zones: `[a-z][a-z0-9-]{0,30}`.

use crate::{Error, Result};

const RULE: &str = "names are a lowercase letter followed by up to 30 lowercase letters, digits or \
dashes ([a-z][a-z0-9-]{0,30})";

/// Checks a realm or image name against `[a-z][a-z0-9-]{0,30}`; `kind` is used in the error.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 31
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            kind,
            name: name.to_string(),
            rule: RULE,
        })
    }
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
}
