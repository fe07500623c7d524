//! Which requests are logged when `sample_rate` is below 1.

/// FNV-1a, 64 bits: a fixed, documented hash, so the decision for a request
/// id is the same in every Tandem and every version.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// MurmurHash3's 64-bit finalizer: FNV-1a alone leaves the high bits of
/// similar short ids (`req-1`, `req-2`, ...) poorly mixed, and the decision
/// reads the high bits.
pub fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash
}

/// The sampling draw for a request id: `fmix64(fnv1a64(id))`.
pub fn id_draw(id: &str) -> u64 {
    fmix64(fnv1a64(id.as_bytes()))
}

/// Whether a request whose hash (or random number) is `draw` is kept at
/// `rate`: `draw / 2^64 < rate`.
pub fn keep(draw: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    // Top 53 bits: exactly representable in an f64.
    let fraction = (draw >> 11) as f64 / (1u64 << 53) as f64;
    fraction < rate
}

/// A random draw, or none if the host gives no randomness.
pub fn random_draw() -> Option<u64> {
    getrandom::u64().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_rate_is_the_share_kept() {
        assert!(keep(u64::MAX, 1.0));
        assert!(!keep(0, 0.0));
        let kept = (0..10_000u64)
            .filter(|i| keep(id_draw(&format!("req-{i}")), 0.25))
            .count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
    }
}
