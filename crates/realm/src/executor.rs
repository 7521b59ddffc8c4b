//! Which executor runs realms' nspawn: decided once per store (from the host, or set by a
//! test or a caller), never read again from the environment at each call site.

use std::path::Path;

/// Who runs the realm's nspawn process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// A systemd unit `realm-NAME.service` (systemd is PID 1).
    Systemd,
    /// realms itself, detached, with a pid file (no systemd PID 1, as on these CI machines).
    Direct,
}

impl Executor {
    /// Systemd when the host was booted with it; `REALMS_EXECUTOR=direct|systemd` overrides.
    pub fn detect() -> Executor {
        match std::env::var("REALMS_EXECUTOR").as_deref() {
            Ok("direct") => Executor::Direct,
            Ok("systemd") => Executor::Systemd,
            _ if Path::new("/run/systemd/system").is_dir() => Executor::Systemd,
            _ => Executor::Direct,
        }
    }
}
