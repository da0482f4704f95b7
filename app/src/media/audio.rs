//! Audio inside Confab: mono f32 samples in [-1, 1] at 48 kHz, moved in blocks of 10 ms (what echo
//! cancellation works on) and encoded in frames of 20 ms (what Opus sends).

/// Every sample inside the app runs at this rate; devices and files are resampled to it.
pub const SAMPLE_RATE_HZ: u32 = 48_000;

/// Samples in 10 ms.
pub const BLOCK_SAMPLES: usize = SAMPLE_RATE_HZ as usize / 100;

/// Samples in one 20 ms Opus frame.
pub const FRAME_SAMPLES: usize = 2 * BLOCK_SAMPLES;

/// Root-mean-square level in dBFS (-inf for silence).
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    10.0 * (energy / samples.len() as f64).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
        assert!((rms_dbfs(&[1.0, -1.0]) - 0.0).abs() < 1e-9);
        assert!((rms_dbfs(&[0.5; 10]) + 6.0206).abs() < 1e-3);
    }
}
