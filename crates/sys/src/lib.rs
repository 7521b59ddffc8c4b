//! The only crate with `unsafe`: mounts, loop devices, btrfs ioctls, in-root path resolution, atomic replace, locks and the command runner.
#![warn(missing_docs)]
#![allow(unsafe_code)]

pub mod atomic;
pub mod btrfs;
pub mod caps;
pub mod cgroup;
pub mod civil;
pub mod cmd;
pub mod device;
pub mod dm;
pub mod doctor;
mod error;
pub mod event;
pub mod failpoint;
pub mod fs;
pub mod lock;
pub mod loopdev;
pub mod mount;
pub mod ns;
pub mod perms;
pub mod proc;
pub mod random;
pub mod root;
pub mod session;
pub mod untrusted;
mod util;
pub mod x11;

pub use error::{Error, Invalidity, IoContext, Result};
