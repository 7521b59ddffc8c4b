//! X11 for apps in a realm without `xhost +`: each realm gets its own cookie, generated on the
//! host's display with the SECURITY extension (`xauth generate`), written into the realm as a
//! wildcard entry (the realm's hostname is not the host's) readable only by the realm user.

use std::path::{Path, PathBuf};

use realms_realm::RealmStore;
use realms_sys::IoContext;
use realms_sys::cmd::Cmd;

use crate::Result;

/// The cookie file in the realm.
pub const XAUTHORITY: &str = "/run/realm-session/Xauthority";

/// The X display the caller is on: `DISPLAY` (`:N` or `:N.S`, local only).
pub fn display_number(display: &str) -> Option<u32> {
    let rest = display
        .strip_prefix(':')
        .or_else(|| display.strip_prefix("unix:"))?;
    rest.split('.').next()?.parse().ok()
}

/// One `.Xauthority` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// The address family (256 local, 65535 wildcard).
    pub family: u16,
    /// The host name (local) or address.
    pub address: Vec<u8>,
    /// The display number as text.
    pub number: Vec<u8>,
    /// `MIT-MAGIC-COOKIE-1`.
    pub name: Vec<u8>,
    /// The cookie.
    pub data: Vec<u8>,
}

/// Parses an `.Xauthority` file.
pub fn parse_auth(bytes: &[u8]) -> Option<Vec<AuthEntry>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let take_u16 = |r: &mut &[u8]| -> Option<u16> {
        let (head, tail) = r.split_first_chunk::<2>()?;
        *r = tail;
        Some(u16::from_be_bytes(*head))
    };
    let take_field = |r: &mut &[u8]| -> Option<Vec<u8>> {
        let len = usize::from(take_u16(r)?);
        if r.len() < len {
            return None;
        }
        let (field, tail) = r.split_at(len);
        *r = tail;
        Some(field.to_vec())
    };
    while !rest.is_empty() {
        out.push(AuthEntry {
            family: take_u16(&mut rest)?,
            address: take_field(&mut rest)?,
            number: take_field(&mut rest)?,
            name: take_field(&mut rest)?,
            data: take_field(&mut rest)?,
        });
    }
    Some(out)
}

/// Writes `.Xauthority` entries.
pub fn write_auth(entries: &[AuthEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend(e.family.to_be_bytes());
        for field in [&e.address, &e.number, &e.name, &e.data] {
            let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
            out.extend(len.to_be_bytes());
            out.extend(&field[..usize::from(len)]);
        }
    }
    out
}

/// The cookie file of realm `name` for display `number`: made once per X server (the key is
/// the server socket's inode, so a restarted server gets a new cookie), kept under
/// `/run/realms` (mode 0600). Returns its bytes, ready for the realm.
pub fn realm_cookie(
    store: &RealmStore,
    name: &str,
    number: u32,
    host_xauthority: Option<&Path>,
) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    let ino = std::fs::metadata(&socket)
        .ctx("finding the X server's socket", &socket)?
        .ino();
    let cached = store
        .run_dir()
        .join(format!("realm-{name}.x11-{number}-{ino}.xauth"));
    if let Ok(bytes) = std::fs::read(&cached) {
        return Ok(bytes);
    }
    let tmp = store
        .run_dir()
        .join(format!(".realm-{name}.xauth.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut cmd = Cmd::new("xauth");
    cmd.arg("-q").arg("-f").arg(&tmp).args([
        "generate",
        &format!(":{number}"),
        ".",
        "trusted",
        "timeout",
        "0",
    ]);
    if let Some(auth) = host_xauthority {
        cmd.env("XAUTHORITY", auth);
    }
    let generated = cmd
        .run()
        .and_then(|()| std::fs::read(&tmp).ctx("reading the generated X cookie", &tmp));
    let _ = std::fs::remove_file(&tmp);
    let entries = parse_auth(&generated?).unwrap_or_default();
    let wild: Vec<AuthEntry> = entries
        .into_iter()
        .filter(|e| e.name == b"MIT-MAGIC-COOKIE-1")
        .take(1)
        .map(|e| AuthEntry {
            family: 0xffff,
            address: Vec::new(),
            number: number.to_string().into_bytes(),
            ..e
        })
        .collect();
    let bytes = write_auth(&wild);
    // Cookies of an earlier server of this realm go.
    if let Ok(dir) = std::fs::read_dir(store.run_dir()) {
        let prefix = format!("realm-{name}.x11-");
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    realms_sys::atomic::write_file(&cached, &bytes, 0o600)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays() {
        assert_eq!(display_number(":0"), Some(0));
        assert_eq!(display_number(":12.1"), Some(12));
        assert_eq!(display_number("unix:3"), Some(3));
        assert_eq!(display_number("host:0"), None);
        assert_eq!(display_number(""), None);
    }

    #[test]
    fn auth_files_round_trip_and_truncated_ones_are_refused() {
        let e = AuthEntry {
            family: 0xffff,
            address: Vec::new(),
            number: b"87".to_vec(),
            name: b"MIT-MAGIC-COOKIE-1".to_vec(),
            data: vec![7; 16],
        };
        let bytes = write_auth(&[e.clone(), e.clone()]);
        assert_eq!(parse_auth(&bytes), Some(vec![e.clone(), e]));
        assert_eq!(parse_auth(&bytes[..bytes.len() - 1]), None);
        assert_eq!(parse_auth(b""), Some(vec![]));
    }
}
