//! root (in progress).
