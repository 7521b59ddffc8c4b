//! dm-verity hash trees and superblocks, byte-identical to veritysetup, hashed in parallel.
