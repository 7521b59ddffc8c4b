//! State storage: one state partition (its own GPT type), an elastic encrypted loopback image
//! inside it, the resize policy, and the systemd generator that mounts it all at boot.
#![warn(missing_docs)]

pub mod boot;
pub mod encrypt;
pub mod entries;
mod error;
pub mod generator;
pub mod gpt;
pub mod guid;
pub mod resize;
mod scratch;
pub mod setup;

pub use error::{Error, GptProblem, InUseBy, Result};
pub use guid::{Guid, STATE_PARTITION_TYPE};
