//! systemd's boolean words, for `read-only` arguments and the extension-release xattr.

use crate::{Error, Result};

/// Parses a boolean as systemd does (yes/no, true/false, on/off, 1/0, y/n, t/f).
pub fn parse_bool(s: &str) -> Result<bool> {
    match s {
        "1" | "yes" | "y" | "true" | "t" | "on" => Ok(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Ok(false),
        _ => Err(Error::BadBool(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_words() {
        assert!(parse_bool("on").unwrap());
        assert!(!parse_bool("0").unwrap());
        assert_eq!(
            parse_bool("maybe").unwrap_err().to_string(),
            "Failed to parse boolean argument: maybe"
        );
    }
}
