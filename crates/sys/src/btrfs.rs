//! btrfs (in progress).
