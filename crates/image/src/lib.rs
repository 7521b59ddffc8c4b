//! Application images ("appimg"): the root filesystems realms are cloned from.
//!
//! A *tree* image is `/storage/appimg/NAME.appimg`, a read-only btrfs subvolume when the store
//! is on btrfs and a plain directory otherwise. A *block* image is a directory holding
//! `image.raw` (erofs, squashfs or ext4) and `image.meta`; a *sealed* image adds a dm-verity
//! hash area, systemd's `.roothash` sidecar and a signature over the metadata. The previous
//! version after an update is kept as `NAME.appimg.prev`. Work in progress is staged under a
//! dot-name and renamed into place.

#![warn(missing_docs)]

pub mod activate;
mod bound;
pub mod corpus;
mod error;
mod import;
mod journal;
pub mod keys;
pub mod meta;
mod name;
pub mod record;
pub mod sealed;
pub mod seals;
mod store;
pub mod unpack;

pub use error::{
    Error, Hostility, KeyProblem, OsTreeProblem, Result, SignatureProblem, SourceProblem, Tamper,
    toml_line,
};
pub use import::{Source, import};
pub use name::{ZoneNameProblem, validate_name, validate_zone};
pub use store::{ImageInfo, ImageKind, ImageStore, Staged, Users, copy_tree, delete_tree};
