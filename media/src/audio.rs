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

/// Goertzel power of the `hz` component of `samples` taken at `rate_hz` (unnormalized: it grows
/// with the square of the length).
pub fn goertzel_power(samples: &[f32], hz: f64, rate_hz: u32) -> f64 {
    let k = 2.0 * (std::f64::consts::TAU * hz / f64::from(rate_hz)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

/// Power of the `hz` component per sample squared, comparable between windows of any length.
pub fn tone_power(samples: &[f32], hz: f64, rate_hz: u32) -> f64 {
    goertzel_power(samples, hz, rate_hz) / (samples.len().max(1) as f64).powi(2)
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
