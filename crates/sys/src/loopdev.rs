//! loopdev (in progress).
