//! Extending wrapping RTP counters (16-bit sequence numbers, 32-bit timestamps) to 64 bits, so
//! that order and distance survive the wrap.

/// The 64-bit value of `value` (a counter of `bits` bits) nearest to `highest`, the largest seen
/// so far; the first value lands at `1 << (bits + 1)` so that values just before it still extend.
pub fn extend(highest: Option<u64>, value: u64, bits: u32) -> u64 {
    let modulus = 1u64 << bits;
    let Some(highest) = highest else {
        return (modulus << 1) + value;
    };
    let base = (highest & !(modulus - 1)) | value;
    [base.wrapping_sub(modulus), base, base + modulus]
        .into_iter()
        .min_by_key(|c| c.abs_diff(highest))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_wrap_forward_and_back() {
        let first = extend(None, 65_535, 16);
        assert_eq!(extend(Some(first), 0, 16), first + 1, "wraps forward");
        assert_eq!(
            extend(Some(first + 1), 65_534, 16),
            first - 1,
            "a late one before the wrap"
        );
        let ts = extend(None, u64::from(u32::MAX), 32);
        assert_eq!(extend(Some(ts), 959, 32), ts + 960);
    }
}
