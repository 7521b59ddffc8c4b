//! fs (in progress).
