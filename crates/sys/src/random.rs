//! The one source of randomness for keys, salts and UUIDs: the kernel's (`/dev/urandom`).

use std::io::Read;

use crate::error::{Error, Result};

/// `N` random bytes from the kernel.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("reading random bytes from", "/dev/urandom", e))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_draws_differ() {
        assert_ne!(super::bytes::<16>().unwrap(), super::bytes::<16>().unwrap());
    }
}
