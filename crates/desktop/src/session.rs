//! The session directory of apps in a realm: `/run/realm-session` (the realm user's, mode
//! 0700), their `XDG_RUNTIME_DIR`, holding the realm's X cookie and links to the host's
//! wayland and PipeWire sockets that the realm's options bound at `/run/user/host`
//! (PulseAudio clients find theirs through `PULSE_SERVER`: libpulse wants
//! `$XDG_RUNTIME_DIR/pulse` to be a directory of its own). Everything in it is written through the realm's root (a symlink the realm
//! made never leads to a host file).

use std::path::Path;

use realms_sys::IoContext;
use realms_sys::root::RootDir;
use rustix::fs::AtFlags;
use rustix::process::{Gid, Uid};

use crate::Result;

/// The directory, in the realm.
pub const SESSION_DIR: &str = "/run/realm-session";

/// The sockets linked into the session directory: (name there, bound path, the variable
/// that names it).
const SOCKETS: &[(&str, &str, &str)] = &[
    ("wayland-0", "/run/user/host/wayland-0", "WAYLAND_DISPLAY"),
    ("pipewire-0", "/run/user/host/pipewire-0", "PIPEWIRE_REMOTE"),
];

/// Sets up the session directory in the realm whose init is `leader` for user `uid`, with
/// `cookie` as its `Xauthority`; returns the environment that points apps at it.
pub fn setup(leader: u32, uid: u32, cookie: Option<&[u8]>) -> Result<Vec<(String, String)>> {
    let root = RootDir::open(format!("/proc/{leader}/root"))?;
    root.create_dir_all(SESSION_DIR, 0o700)?;
    let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid)));
    let run = root.open_dir("/run")?;
    rustix::fs::chownat(
        &run,
        "realm-session",
        owner.0,
        owner.1,
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .ctx("handing to the realm user", Path::new(SESSION_DIR))?;
    let dir = root.open_dir(SESSION_DIR)?;
    let mut env = vec![("XDG_RUNTIME_DIR".to_string(), SESSION_DIR.to_string())];
    for (name, bound, var) in SOCKETS {
        let link = format!("{SESSION_DIR}/{name}");
        if root.symlink_metadata(bound)?.is_some() {
            if root.read_link(&link).ok().as_deref() != Some(Path::new(bound)) {
                root.symlink(bound, &link)?;
            }
            env.push((var.to_string(), name.to_string()));
        } else if root.symlink_metadata(&link)?.is_some() {
            root.remove_file(&link)?;
        }
    }
    let pulse = "/run/user/host/pulse/native";
    if root.symlink_metadata(pulse)?.is_some() {
        env.push(("PULSE_SERVER".to_string(), format!("unix:{pulse}")));
    }
    if let Some(cookie) = cookie {
        let file = format!("{SESSION_DIR}/Xauthority");
        if root.read(&file).ok().as_deref() != Some(cookie) {
            root.write_atomic(&file, cookie, 0o600)?;
            rustix::fs::chownat(
                &dir,
                "Xauthority",
                owner.0,
                owner.1,
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .ctx("handing to the realm user", Path::new(&file))?;
        }
        env.push(("XAUTHORITY".to_string(), file));
    }
    Ok(env)
}
