//! [`random_u64`]: unpredictable numbers for DNS query IDs and hash seeds, without a
//! random-number crate.

use std::hash::{BuildHasher, Hasher, RandomState};

/// A random `u64`, seeded from the operating system.
///
/// Each call builds a fresh [`RandomState`], whose keys std seeds from the operating system's
/// random source once per thread and then advances per instance, and hashes one byte with it:
/// unpredictable to an outside observer and cheap (no system call after the first on a
/// thread). Good for DNS query IDs (take 16 bits) and hash-table seeds; not a cryptographic
/// generator for keys or tokens.
///
/// ```
/// let id = lnm_core::random_u64() as u16;
/// let (a, b) = (lnm_core::random_u64(), lnm_core::random_u64());
/// assert_ne!(a, b, "a collision of two 64-bit draws is vanishingly rare");
/// # let _ = id;
/// ```
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_spread_over_the_low_bits() {
        let draws: std::collections::HashSet<u16> = (0..64).map(|_| random_u64() as u16).collect();
        assert!(draws.len() > 32, "{} distinct IDs of 64", draws.len());
    }
}
