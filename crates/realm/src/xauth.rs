//! The X cookies of realms: generated on the host's X server for each realm (by the desktop
//! crate), cached under `/run/realms` as `realm-NAME.x11-DISPLAY-INODE.xauth` beside a record
//! of how to revoke them (`….xauth-id`: the SECURITY authorization id, the display, the host's
//! Xauthority). When the realm stops, is removed or starts afresh, its cookies are revoked on
//! the X server (their clients are disconnected, the cookie refused from then on) and deleted,
//! so a later start, or a new realm of the same name, gets a fresh one.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use realms_sys::IoContext;
use realms_sys::x11::X11Error;

use crate::Result;
use crate::store::RealmStore;

/// How a cached cookie is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieRecord {
    /// The X display number.
    pub display: u32,
    /// The inode of the X server's socket when the cookie was made (a restarted server has
    /// another, and its authorization ids are not this cookie's).
    pub socket_inode: u64,
    /// The authorization id the SECURITY extension gave the cookie.
    pub auth_id: u32,
    /// The host's Xauthority, whose cookie lets realms talk to the server to revoke it.
    pub host_xauthority: Option<PathBuf>,
}

impl CookieRecord {
    fn to_text(&self) -> Vec<u8> {
        let mut out = format!(
            "display {}\nsocket-inode {}\nauthorization-id {}\n",
            self.display, self.socket_inode, self.auth_id
        )
        .into_bytes();
        if let Some(p) = &self.host_xauthority
            && !p.as_os_str().as_bytes().contains(&b'\n')
        {
            out.extend(b"xauthority ");
            out.extend(p.as_os_str().as_bytes());
            out.push(b'\n');
        }
        out
    }

    fn parse(bytes: &[u8]) -> Option<CookieRecord> {
        let (mut display, mut inode, mut id, mut auth) = (None, None, None, None);
        for line in bytes.split(|b| *b == b'\n') {
            let Some(space) = line.iter().position(|b| *b == b' ') else {
                continue;
            };
            let (key, value) = (&line[..space], &line[space + 1..]);
            let number = || std::str::from_utf8(value).ok();
            match key {
                b"display" => display = number().and_then(|v| v.parse().ok()),
                b"socket-inode" => inode = number().and_then(|v| v.parse().ok()),
                b"authorization-id" => id = number().and_then(|v| v.parse().ok()),
                b"xauthority" => {
                    auth = Some(PathBuf::from(std::ffi::OsStr::from_bytes(value)));
                }
                _ => {}
            }
        }
        Some(CookieRecord {
            display: display?,
            socket_inode: inode?,
            auth_id: id?,
            host_xauthority: auth,
        })
    }
}

/// The inode of display `display`'s socket (identifies one run of the X server).
pub fn socket_inode(display: u32) -> Result<u64> {
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
    Ok(fs::metadata(&socket)
        .ctx("finding the X server's socket", &socket)?
        .ino())
}

/// The cached cookie of realm `name` for display `display` whose socket has inode `inode`.
pub fn cookie_file(store: &RealmStore, name: &str, display: u32, inode: u64) -> PathBuf {
    store
        .run_dir()
        .join(format!("realm-{name}.x11-{display}-{inode}.xauth"))
}

/// The cached cookie of realm `name` for this run of X server `display`, if it is there with
/// its record (a cookie cached without one, by an older realms, could never be revoked).
pub fn cached(store: &RealmStore, name: &str, display: u32, inode: u64) -> Option<Vec<u8>> {
    let cookie = cookie_file(store, name, display, inode);
    record_file(&cookie).exists().then_some(())?;
    fs::read(&cookie).ok()
}

fn record_file(cookie: &Path) -> PathBuf {
    let mut s = cookie.as_os_str().to_owned();
    s.push("-id");
    PathBuf::from(s)
}

/// Caches a freshly generated cookie of realm `name` (an `.Xauthority` file's bytes) with its
/// record; the record first, so no cookie is ever cached that could not be revoked. Other
/// cookies of the realm (of an earlier X server) are revoked and deleted.
pub fn save(store: &RealmStore, name: &str, record: &CookieRecord, cookie: &[u8]) -> Result<()> {
    let path = cookie_file(store, name, record.display, record.socket_inode);
    for warning in revoke_except(store, name, Some(&path)) {
        tracing::warn!("{warning}");
    }
    realms_sys::atomic::write_file(record_file(&path), &record.to_text(), 0o600)?;
    realms_sys::atomic::write_file(&path, cookie, 0o600)?;
    Ok(())
}

/// Revokes every cached cookie of realm `name` on its X server and deletes it; returns what
/// could not be revoked (the X server gone, say), as warnings: a stop never fails on them.
pub fn revoke(store: &RealmStore, name: &str) -> Vec<String> {
    revoke_except(store, name, None)
}

fn revoke_except(store: &RealmStore, name: &str, keep: Option<&Path>) -> Vec<String> {
    let prefix = format!("realm-{name}.x11-");
    let mut cookies: Vec<PathBuf> = fs::read_dir(store.run_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.starts_with(&prefix).then(|| {
                let cookie = file.strip_suffix("-id").unwrap_or(&file);
                store.run_dir().join(cookie)
            })
        })
        .filter(|p| Some(p.as_path()) != keep)
        .collect();
    cookies.sort();
    cookies.dedup();
    let mut warnings = Vec::new();
    for cookie in cookies {
        let record_path = record_file(&cookie);
        if let Some(record) = fs::read(&record_path)
            .ok()
            .and_then(|b| CookieRecord::parse(&b))
            && let Err(e) = revoke_one(&record)
        {
            warnings.push(format!(
                "realm '{name}': could not revoke its X cookie (authorization {} on :{}): {}",
                record.auth_id,
                record.display,
                chain(&e)
            ));
        }
        let _ = fs::remove_file(&cookie);
        let _ = fs::remove_file(&record_path);
    }
    warnings
}

/// An error with its sources, for a warning line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// Revokes one cookie, unless its X server is gone (then the cookie went with it): its socket
/// is missing, another server's (another inode), or nothing listens on it (a killed server
/// leaves the file).
fn revoke_one(record: &CookieRecord) -> std::result::Result<(), X11Error> {
    match socket_inode(record.display) {
        Ok(inode) if inode == record.socket_inode => {
            match realms_sys::x11::revoke(
                record.display,
                record.host_xauthority.as_deref(),
                record.auth_id,
            ) {
                Err(X11Error::Connect { source, .. })
                    if source.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    Ok(())
                }
                other => other,
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = CookieRecord {
            display: 7,
            socket_inode: 123_456,
            auth_id: 1304,
            host_xauthority: Some("/home/u/.Xauthority".into()),
        };
        assert_eq!(CookieRecord::parse(&r.to_text()), Some(r.clone()));
        let none = CookieRecord {
            host_xauthority: None,
            ..r
        };
        assert_eq!(CookieRecord::parse(&none.to_text()), Some(none));
        assert_eq!(CookieRecord::parse(b"display 7\nsocket-inode 1\n"), None);
    }

    /// Cookies of an X server that is gone are deleted without a word; the realm's others and
    /// other realms' stay until their turn.
    #[test]
    fn revoking_deletes_the_realms_cookies_and_records_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = RealmStore::open(dir.path()).unwrap();
        fs::create_dir_all(store.run_dir()).unwrap();
        // No server has this display (the socket is missing): nothing to revoke, no warning.
        let gone = CookieRecord {
            display: 65_000,
            socket_inode: 1,
            auth_id: 5,
            host_xauthority: None,
        };
        save(&store, "a", &gone, b"cookie").unwrap();
        save(&store, "ab", &gone, b"cookie").unwrap();
        let a = cookie_file(&store, "a", 65_000, 1);
        assert!(a.exists() && record_file(&a).exists());
        assert_eq!(
            cached(&store, "a", 65_000, 1).as_deref(),
            Some(&b"cookie"[..])
        );
        // A cookie without a record (an older realms) is not used, and goes too.
        let old = cookie_file(&store, "a", 65_001, 2);
        fs::write(&old, b"old").unwrap();
        assert_eq!(cached(&store, "a", 65_001, 2), None);
        assert!(revoke(&store, "a").is_empty());
        assert!(!a.exists() && !record_file(&a).exists() && !old.exists());
        assert!(cookie_file(&store, "ab", 65_000, 1).exists());
    }
}
