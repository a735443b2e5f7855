//! The one hash function of the crate: xxHash64, as Envoy uses it for consistent hashing.
//!
//! Envoy hashes request properties (header value, cookie value, source IP as text, query
//! parameter value) with `xxHash64(value, seed = 0)` and places ring-hash points at
//! `xxHash64("<address>_<i>")`. Using the same function keeps sluice's hashing stable across
//! versions and platforms (it is specified, not `std`'s randomly keyed SipHash).

use twox_hash::XxHash64;

/// Hashes a request property (header, cookie, source IP text, query value) for
/// [`PickContext::hash`](crate::PickContext::hash): xxHash64 with seed 0, as Envoy does.
pub fn hash_key(bytes: &[u8]) -> u64 {
    XxHash64::oneshot(0, bytes)
}

/// xxHash64 with an explicit seed (Maglev derives an endpoint's offset and skip from seeds 0 and 1).
pub fn hash_with_seed(bytes: &[u8], seed: u64) -> u64 {
    XxHash64::oneshot(seed, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_xxhash64_reference_vectors() {
        // Published xxHash64 test vectors (seed 0).
        assert_eq!(hash_key(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(hash_key(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(hash_key(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_ne!(hash_with_seed(b"abc", 1), hash_key(b"abc"));
    }
}
