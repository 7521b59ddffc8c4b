//! X11 for apps in a realm without `xhost +`: each realm gets its own cookie, generated on the
//! host's display with the SECURITY extension (`xauth generate`), written into the realm as a
//! wildcard entry (the realm's hostname is not the host's) readable only by the realm user.

use std::path::{Path, PathBuf};

use realms_realm::{RealmStore, xauth};
use realms_sys::IoContext;
use realms_sys::cmd::Cmd;

use crate::{Error, Result};

/// The cookie file in the realm.
pub const XAUTHORITY: &str = "/run/realm-session/Xauthority";

/// The X display the caller is on: `DISPLAY` (`:N` or `:N.S`, local only).
pub fn display_number(display: &str) -> Option<u32> {
    let rest = display
        .strip_prefix(':')
        .or_else(|| display.strip_prefix("unix:"))?;
    rest.split('.').next()?.parse().ok()
}

pub use realms_sys::x11::{AuthEntry, parse_auth, write_auth};

/// The cookie of realm `name` for display `number`: made once per X server run (cached under
/// `/run/realms` with the record that revokes it when the realm stops; see
/// [`realms_realm::xauth`]). Returns its bytes, ready for the realm.
pub fn realm_cookie(
    store: &RealmStore,
    name: &str,
    number: u32,
    host_xauthority: Option<&Path>,
) -> Result<Vec<u8>> {
    let ino = xauth::socket_inode(number)?;
    if let Some(bytes) = xauth::cached(store, name, number, ino) {
        return Ok(bytes);
    }
    let tmp = store
        .run_dir()
        .join(format!(".realm-{name}.xauth.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut cmd = Cmd::new("xauth");
    cmd.arg("-v").arg("-f").arg(&tmp).args([
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
    let generated = cmd.output_string().and_then(|out| {
        let bytes = std::fs::read(&tmp).ctx("reading the generated X cookie", &tmp)?;
        Ok((out, bytes))
    });
    let _ = std::fs::remove_file(&tmp);
    let (out, bytes) = generated?;
    // Without its id the cookie could never be revoked: refused rather than handed out.
    let auth_id = authorization_id(&out).ok_or_else(|| Error::NoAuthorizationId {
        display: number,
        output: out.trim().to_string(),
    })?;
    let entries = parse_auth(&bytes).unwrap_or_default();
    let wild: Vec<AuthEntry> = entries
        .into_iter()
        .filter(|e| e.name == realms_sys::x11::MIT_MAGIC_COOKIE)
        .take(1)
        .map(|e| AuthEntry {
            family: 0xffff,
            address: Vec::new(),
            number: number.to_string().into_bytes(),
            ..e
        })
        .collect();
    let bytes = write_auth(&wild);
    let record = xauth::CookieRecord {
        display: number,
        socket_inode: ino,
        auth_id,
        host_xauthority: host_xauthority
            .map(Path::to_path_buf)
            .or_else(default_xauthority),
    };
    xauth::save(store, name, &record, &bytes)?;
    Ok(bytes)
}

/// The Xauthority xauth uses when `XAUTHORITY` is not given: this process's, else `~/.Xauthority`.
fn default_xauthority() -> Option<PathBuf> {
    std::env::var_os("XAUTHORITY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".Xauthority")))
}

/// The id in `xauth -v generate`'s `authorization id is N`.
fn authorization_id(output: &str) -> Option<u32> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("authorization id is "))
        .and_then(|id| id.trim().parse().ok())
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
    fn the_authorization_id_is_read_from_xauth_output() {
        let out = "Using authority file /run/x\nauthorization id is 1304\nWriting authority file /run/x\n";
        assert_eq!(authorization_id(out), Some(1304));
        assert_eq!(authorization_id("Using authority file /run/x\n"), None);
        assert_eq!(authorization_id("authorization id is many"), None);
    }
}
