//! mount (in progress).
