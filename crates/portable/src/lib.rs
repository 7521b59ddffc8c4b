//! Portable services, portablectl-compatible without systemd-portabled: find and read images
//! (directories, btrfs subvolumes, raw images with a bare filesystem or Discoverable Partitions),
//! match their unit files, and attach, detach, reattach and inspect them by writing exactly the
//! files portablectl 252 writes, so systemd runs them and portablectl recognises them.
//!
//! ```no_run
//! use realms_portable::{AttachOptions, Host, Systemd, attach};
//! # fn main() -> realms_portable::Result<()> {
//! let host = Host::open("/")?;
//! let systemd = Systemd::detect(&host);
//! let opts = AttachOptions { profile: "default".into(), ..AttachOptions::default() };
//! let done = attach(&host, &systemd, "foo-test", &["foo-test".into()], &opts)?;
//! for change in &done.changes {
//!     println!("{change}");
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod attach;
mod boolean;
pub mod changes;
pub mod dbus;
pub mod detach;
pub mod doctor;
mod error;
pub mod extract;
pub mod gpt;
pub mod image;
pub mod layout;
pub mod limit;
pub mod load;
pub mod manage;
pub mod marker;
pub mod name;
pub mod ops;
pub mod profile;
pub mod raw;
pub mod systemd;
pub mod txn;
pub mod validate;
pub mod verb;

pub use attach::{AttachOptions, Attached, CopyMode, attach};
pub use changes::{Change, ChangeKind};
pub use detach::{DetachOptions, Detached, detach};
pub use error::{Error, ImageProblem, Result};
pub use image::{Image, ImageKind};
pub use layout::Host;
pub use manage::State;
pub use systemd::Systemd;

/// Gives this process a private mount namespace (when it runs as root, once), so the mounts of
/// raw images never show on the host, even if the process is killed. Mounting a raw image calls
/// it; it only takes effect while the process is single-threaded (as the CLI is).
pub fn private_mounts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustix::process::geteuid().is_root()
            && let Err(e) = realms_sys::ns::unshare_mount_namespace()
        {
            tracing::debug!("no private mount namespace: {e}");
        }
    });
}
